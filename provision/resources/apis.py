"""Enabled services (Service Usage v1): list, enable what is missing, verify.

As Terraform does: a single service goes through `services/{svc}:enable` (batchEnable refuses
a single item in some cases), several through one `services:batchEnable` (at most 20 per call);
the operation is awaited (an `operations/noop.DONE_OPERATION` answer is already done).

Enable is verified (DESIGN §4), and the finished operation is that verification when it can be:
its response is, in the discovery document's words, "the new state of the services after
enabling" (`BatchEnableServicesResponse.services`, `EnableServiceResponse.service`), and
batchEnable is atomic (all or none). So a done operation whose response names every requested
service with state ENABLED is Service Usage's own answer about exactly those services: reading
them back would ask the same service the same question, at the price of a read from the fleet's
shared Service Usage read quota (240 a minute). Terraform re-lists `services?filter=state:ENABLED`
after enabling because that listing can lag behind the operation; that lag only matters to a
reader of the listing, which here is the next plan (where a lagging listing plans an enable that
Service Usage answers with `noop.DONE_OPERATION`: no harm). What neither the operation nor the
listing proves is that the other APIs see the service yet: SERVICE_DISABLED right after enabling
is retried where it happens (retry.service_disabled_after_enable), whichever way enable was
verified. A response that does not name them all (an `Empty`, a service left out) is checked by
reading exactly those services back with `services:batchGet` (at most 30 a call) until they show
ENABLED.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from provision.errors import PlanRefused
from provision.gcp.context import Ctx
from provision.gcp.quota import CHAIN_HEAD, SU_WRITES
from provision.gcp.retry import ENABLE_PREDICATES, NotYet
from provision.resources.base import Draft, Live, Reads
from provision.resources.hosting_names import hosting_apis
from provision.resources.steps import CREATE, NOOP, Options, Step, field_change

if TYPE_CHECKING:  # for annotations only: no import at run time
    from provision.blueprint.models import Blueprint

BATCH = 20       # services per batchEnable (Google's limit)
GET_BATCH = 30   # names per services:batchGet (Google's limit)


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
    """Enable `services` (those not yet enabled) and make sure they all are (module docstring)."""
    if not services:
        return
    su = ctx.target.serviceusage()
    todo = sorted(services)
    shown: set[str] = set()
    for i in range(0, len(todo), BATCH):
        chunk = todo[i:i + BATCH]
        ctx.progress(f"enabling {', '.join(chunk)}")
        if len(chunk) == 1:
            req = lambda c=chunk: su.services().enable(name=f"projects/{project_id}/services/{c[0]}", body={})  # noqa: E731
        else:
            req = lambda c=chunk: su.services().batchEnable(parent=f"projects/{project_id}", body={"serviceIds": c})  # noqa: E731

        def attempt(make: Callable[[], Any] = req) -> Any:
            op = make().execute(num_retries=0)
            return ctx.wait_serviceusage(op, kind="serviceusage.enable")

        shown |= enabled_in(ctx.call(attempt, also=ENABLE_PREDICATES, quota=SU_WRITES, priority=CHAIN_HEAD))
    left = sorted(set(services) - shown)
    if left:
        verify(ctx, project_id, left)


def enabled_in(op: dict[str, Any]) -> set[str]:
    """The services a finished enable operation's response says are ENABLED (none when its response
    names none: e.g. an `Empty`)."""
    response = op.get("response") or {}
    views = list(response.get("services") or []) + ([response["service"]] if response.get("service") else [])
    return {_name(v) for v in views if v.get("state") == "ENABLED"}


def _name(view: dict[str, Any]) -> str:
    return str((view.get("config") or {}).get("name") or view.get("name", "").rsplit("/", 1)[-1])


def states(ctx: Ctx, project_id: str, services: list[str]) -> dict[str, str]:
    """Each service's state (ENABLED, DISABLED) read with `services:batchGet`, at most 30 a call."""
    su = ctx.target.serviceusage()
    out: dict[str, str] = {}
    for i in range(0, len(services), GET_BATCH):
        names = [f"projects/{project_id}/services/{s}" for s in services[i:i + GET_BATCH]]
        page = su.services().batchGet(parent=f"projects/{project_id}", names=names).execute(num_retries=0)
        out.update({_name(v): v.get("state", "") for v in page.get("services") or []})
    return out


def verify(ctx: Ctx, project_id: str, services: list[str]) -> None:
    """Read `services` back until every one shows ENABLED."""
    def check() -> None:
        got = states(ctx, project_id, services)
        left = sorted(s for s in services if got.get(s) != "ENABLED")
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
    return list(dict.fromkeys([*bp.apis, *hosting_apis(bp)]))


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
        # A blueprint mistake only the target shows: exit 2 at the blueprint's line, as for a location
        # the target does not offer, rather than a run-time failure.
        raise PlanRefused([f"{bp.where('project')}: {', '.join(billable)} can only be enabled on a project with "
                           f"billing, and {where} has no billing account while the blueprint sets none: set "
                           "project.billing_account (`gcloud billing accounts list` shows yours, e.g. "
                           "012345-6789AB-CDEF01) and plan again"])

    def run(ctx: Ctx) -> str:
        enable(ctx, pid, todo)
        return f"enabled {', '.join(todo)}"

    draft.add(Step(KIND, KIND, f"projects/{pid}/services", CREATE if todo else NOOP, [f"+ {a}" for a in todo],
                   ["project", "billing"], run if todo else None,
                   fields=[field_change(f"services.{a}", "disabled", "enabled") for a in todo]))
