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

With `access: google-sign-in` the service is a public static site: `viewer-invoker` grants
roles/run.invoker to `allUsers` instead of IAP's agent (so `allUsers` there is what the plan states,
not drift), and `viewer-access` only revokes the IAP accessor grants provision made while the viewer
was behind IAP (switching back grants them again); with none recorded it is not planned at all.
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
    PUBLIC_INVOKER,
    PUBLIC_MEMBERS,
    behind_iap,
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
    if phase not in (2, 3) or live.project is None or not deploys(bp) or live.opts.destroy:
        return {}
    name, number = service_name(bp), live.project_number or ""
    resource = iap_resource(number, region(bp), service_id(bp))
    if phase == 3:   # google-sign-in: IAP's policy only to revoke what provision granted there (the record, phase 3)
        return {IAP_POLICY: lambda ctx: calls.read_policy_or_none(ctx, calls.iap_io(ctx, resource))} \
            if not behind_iap(bp) and live.record.pairs_on(resource) else {}
    out = {SERVICE_POLICY: lambda ctx: calls.read_policy_or_none(ctx, calls.run_service_io(ctx, name))}
    if behind_iap(bp):
        out[IAP_POLICY] = lambda ctx: calls.read_policy_or_none(ctx, calls.iap_io(ctx, resource))
    return out


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
    iap_on = behind_iap(bp)
    agent = f"serviceAccount:{iap_agent(number)}" if number else "serviceAccount:service-<number>@gcp-sa-iap..."
    d = iam.diff_grants(policy, [(INVOKER_ROLE, agent if iap_on else PUBLIC_INVOKER)], live.record.pairs_on(name))
    extra = [] if policy is not None or not iap_on else ["+ generate IAP's service agent (iap.googleapis.com)"]
    if not iap_on and any(m == PUBLIC_INVOKER for _, m in d.add):
        extra.append("(access google-sign-in: the static viewer is public, as a static site needs; its users "
                     "read the stores with their own Google token)")
    _add(draft, "viewer-invoker", name, policy is not None, d, _invoker(bp, d), public_drift(policy) if iap_on else [],
         extra=extra)
    resource = iap_resource(number or "<number>", region(bp), service_id(bp))
    recorded = live.record.pairs_on(resource)
    if not iap_on and not recorded:
        return
    members = [(ACCESSOR_ROLE, m) for m in hosting_block(bp).members] if iap_on else []
    iap_policy = live.get(IAP_POLICY)
    d2 = iam.diff_grants(iap_policy, members, recorded)
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
        if not behind_iap(bp):   # google-sign-in: allUsers, as planned (no service agent to make)
            return iam.apply_diff(ctx, calls.run_service_io(ctx, service_name(bp)), d)
        email = calls.ensure_iap_agent(ctx, bp.project.id, ctx.facts.project_number or "")
        want = iam.GrantDiff([(INVOKER_ROLE, f"serviceAccount:{email}")], d.remove, d.forget, [])
        return iam.apply_diff(ctx, calls.run_service_io(ctx, service_name(bp)), want)
    return run


def _accessors(bp: Blueprint, d: iam.GrantDiff) -> Callable[[Ctx], str]:
    def run(ctx: Ctx) -> str:
        resource = iap_resource(ctx.facts.project_number or "", region(bp), service_id(bp))
        return iam.apply_diff(ctx, calls.iap_io(ctx, resource), d)
    return run
