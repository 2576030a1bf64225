"""Kind `viewer-access`: who may reach the hosted viewer (DESIGN.md §5b).

- `viewer-invoker`: IAP's service agent (Service Usage v1beta1 generateServiceIdentity for
  iap.googleapis.com: service-N@gcp-sa-iap.iam.gserviceaccount.com) gets roles/run.invoker on the
  service (Cloud Run services getIamPolicy/setIamPolicy): IAP calls the service as that agent, and
  nobody else may invoke it. `allUsers` or `allAuthenticatedUsers` holding a role on the service
  is drift, reported loudly (never granted by provision, and not revoked: it is not its grant).
- `viewer-access`: roles/iap.httpsResourceAccessor for `hosting.members` on the service's IAP
  resource `projects/NUMBER/iap_web/cloud_run-REGION/services/SERVICE` (IAP v1 getIamPolicy /
  setIamPolicy). A member the blueprint drops is revoked (provision's own grants only).
Both through the one non-authoritative IAM path (provision/resources/iam.py), recorded first.
When the viewer is no longer deployed, the service's deletion takes these grants with it.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from provision.gcp.context import Ctx
from provision.resources import hosting_calls as calls
from provision.resources import iam
from provision.resources.base import Draft, Live, Reads
from provision.resources.hosting_names import (
    ACCESSOR_ROLE,
    INVOKER_ROLE,
    PUBLIC_MEMBERS,
    deploys,
    hosting_block,
    iap_agent,
    iap_resource,
    region,
    service_id,
    service_name,
)
from provision.resources.steps import CREATE, DELETE, NOOP, UPDATE, Options, Step

if TYPE_CHECKING:  # for annotations only: no import at run time
    from provision.blueprint.models import Blueprint

KIND = "viewer-access"
SERVICE_POLICY = "viewer_service_policy"
IAP_POLICY = "viewer_iap_policy"


def reads(bp: Blueprint, live: Live, phase: int) -> Reads:
    if phase != 2 or live.project is None or not deploys(bp) or live.opts.destroy:
        return {}
    name, number = service_name(bp), live.project_number or ""
    resource = iap_resource(number, region(bp), service_id(bp))
    return {SERVICE_POLICY: lambda ctx: calls.read_policy_or_none(ctx, calls.run_service_io(ctx, name)),
            IAP_POLICY: lambda ctx: calls.read_policy_or_none(ctx, calls.iap_io(ctx, resource))}


def public_drift(policy: dict[str, Any] | None) -> list[str]:
    """allUsers / allAuthenticatedUsers on the service: anyone may invoke it (IAP aside)."""
    return [f"DRIFT: {m} holds {r} on the viewer's service (not granted by provision): remove it with `gcloud run "
            f"services remove-iam-policy-binding --member={m} --role={r}`" for r, m in sorted(iam.unconditional(policy or {}))
            if m in PUBLIC_MEMBERS]


def diff(bp: Blueprint, live: Live, opts: Options, draft: Draft) -> None:
    if not deploys(bp) or opts.destroy:
        return
    number = live.project_number
    name = service_name(bp)
    policy = live.get(SERVICE_POLICY)
    agent = f"serviceAccount:{iap_agent(number)}" if number else "serviceAccount:service-<number>@gcp-sa-iap..."
    d = iam.diff_grants(policy, [(INVOKER_ROLE, agent)], live.record.pairs_on(name))
    _add(draft, "viewer-invoker", name, policy is not None, d, _invoker(bp, d), public_drift(policy),
         extra=[] if policy is not None else ["+ generate IAP's service agent (iap.googleapis.com)"])
    resource = iap_resource(number or "<number>", region(bp), service_id(bp))
    members = [(ACCESSOR_ROLE, m) for m in hosting_block(bp).members]
    iap_policy = live.get(IAP_POLICY)
    d2 = iam.diff_grants(iap_policy, members, live.record.pairs_on(resource))
    _add(draft, "viewer-access", resource, iap_policy is not None, d2, _accessors(bp, d2), [])


def _add(draft: Draft, step_id: str, resource: str, exists: bool, d: iam.GrantDiff, run: Any, drift: list[str],
         extra: tuple[str, ...] | list[str] = ()) -> None:
    action = NOOP if not d.changing else (CREATE if not exists else UPDATE if d.add else DELETE)
    known = "<number>" not in resource and "<number>" not in "".join(m for _, m in d.add)
    draft.add(Step(step_id, KIND, resource, action, [*extra, *d.describe()], ["viewer-service", "record"],
                   run if d.changing else None, drift=drift, fields=d.fields(),
                   claims=[("grant", resource, r, m) for r, m in d.add] if known else []))


def _invoker(bp: Blueprint, d: iam.GrantDiff) -> Callable[[Ctx], str]:
    def run(ctx: Ctx) -> str:
        email = calls.ensure_iap_agent(ctx, bp.project.id, ctx.facts.project_number or "")
        want = iam.GrantDiff([(INVOKER_ROLE, f"serviceAccount:{email}")], d.remove, d.forget, [])
        return iam.apply_diff(ctx, calls.run_service_io(ctx, service_name(bp)), want)
    return run


def _accessors(bp: Blueprint, d: iam.GrantDiff) -> Callable[[Ctx], str]:
    def run(ctx: Ctx) -> str:
        resource = iap_resource(ctx.facts.project_number or "", region(bp), service_id(bp))
        return iam.apply_diff(ctx, calls.iap_io(ctx, resource), d)
    return run
