"""Enabled services (Service Usage v1): list, enable what is missing, verify by listing again.

As Terraform does: a single service goes through `services/{svc}:enable` (batchEnable refuses
a single item in some cases), several through one `services:batchEnable` (at most 20 per call);
the operation is awaited (an `operations/noop.DONE_OPERATION` answer is already done); then
`services?filter=state:ENABLED` is listed until every requested service shows, because enabling
is eventually consistent.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from provision.errors import ProvisionError
from provision.gcp.context import Ctx
from provision.gcp.retry import ENABLE_PREDICATES, NotYet
from provision.resources.base import Draft, Live, Reads
from provision.resources.hosting_names import HOSTING_APIS, deploys
from provision.resources.steps import CREATE, NOOP, Options, Step, field_change

if TYPE_CHECKING:  # for annotations only: no import at run time
    from provision.blueprint.models import Blueprint

BATCH = 20


def read(ctx: Ctx, project_id: str) -> set[str]:
    """Names of the services enabled on the project."""
    svc = ctx.target.serviceusage()

    def list_all() -> set[str]:
        out: set[str] = set()
        token = None
        for _ in range(100):  # 100 pages of 200: far more services than exist
            req = svc.services().list(parent=f"projects/{project_id}", filter="state:ENABLED", pageSize=200,
                                      pageToken=token)
            page = req.execute(num_retries=0)
            for s in page.get("services") or []:
                name = s.get("config", {}).get("name") or s.get("name", "").rsplit("/", 1)[-1]
                if s.get("state", "ENABLED") == "ENABLED":
                    out.add(name)
            token = page.get("nextPageToken")
            if not token:
                break
        return out

    return ctx.call(list_all)


def enable(ctx: Ctx, project_id: str, services: list[str]) -> None:
    """Enable `services` (those not yet enabled) and wait until they all list as ENABLED."""
    if not services:
        return
    su = ctx.target.serviceusage()
    todo = sorted(services)
    for i in range(0, len(todo), BATCH):
        chunk = todo[i:i + BATCH]
        ctx.progress(f"enabling {', '.join(chunk)}")
        if len(chunk) == 1:
            req = lambda c=chunk: su.services().enable(name=f"projects/{project_id}/services/{c[0]}", body={})  # noqa: E731
        else:
            req = lambda c=chunk: su.services().batchEnable(parent=f"projects/{project_id}", body={"serviceIds": c})  # noqa: E731

        def attempt(make: Callable[[], Any] = req) -> Any:
            op = make().execute(num_retries=0)
            return ctx.wait_serviceusage(op)

        ctx.call(attempt, also=ENABLE_PREDICATES)
    verify(ctx, project_id, services)


def verify(ctx: Ctx, project_id: str, services: list[str]) -> None:
    def check() -> Any:
        enabled = read(ctx, project_id)
        left = sorted(set(services) - enabled)
        if left:
            raise NotYet(f"waiting for {', '.join(left)} to show as enabled")

    ctx.progress("verifying enabled services")
    ctx.call(check)


# ---------------------------------------------------------------------------- kind
KIND = "apis"
# Services Google refuses to enable on a project without a billing account.
BILLABLE = {"healthcare.googleapis.com"}


def wanted(bp: Blueprint) -> list[str]:
    """The services the blueprint needs: its `apis`, and those of the hosted viewer when it deploys
    (derived: nobody lists them)."""
    return list(dict.fromkeys([*bp.apis, *(HOSTING_APIS if deploys(bp) else ())]))


def reads(bp: Blueprint, live: Live, phase: int) -> Reads:
    if phase == 2 and live.project is not None:
        return {"enabled": lambda ctx: read(ctx, bp.project.id)}
    return {}


def diff(bp: Blueprint, live: Live, opts: Options, draft: Draft) -> None:
    if opts.destroy:
        return   # provision never disables services: other things in the project may use them
    pid = bp.project.id
    todo = [a for a in wanted(bp) if a not in live.get("enabled", set())]
    billable = sorted(set(todo) & BILLABLE)
    no_billing = not bp.project.billing_account and (live.project is None or live.billing == "")
    if billable and no_billing:
        where = "the new project" if live.project is None else f"project {pid}"
        raise ProvisionError(f"{', '.join(billable)} can only be enabled on a project with billing, and {where} has "
                             "no billing account while the blueprint sets none: set project.billing_account "
                             "(`gcloud billing accounts list` shows yours, e.g. 012345-6789AB-CDEF01) and plan again")
    draft.add(Step(KIND, KIND, f"projects/{pid}/services", CREATE if todo else NOOP, [f"+ {a}" for a in todo],
                   ["project", "billing"],
                   (lambda ctx: (enable(ctx, pid, todo), f"enabled {', '.join(todo)}")[1]) if todo else None,
                   fields=[field_change(f"services.{a}", "disabled", "enabled") for a in todo]))
