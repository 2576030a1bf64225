"""The project's billing link: read, link, verify by reading it back (Cloud Billing v1)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from provision.gcp.context import Ctx
from provision.gcp.errors import is_status
from provision.gcp.retry import NotYet
from provision.resources.base import Draft, Key, Live, Reads
from provision.resources.steps import CREATE, NOOP, UPDATE, Options, Step, field_change

if TYPE_CHECKING:  # for annotations only: no import at run time
    from provision.blueprint.models import Blueprint


def account_name(account: str) -> str:
    return account if account.startswith("billingAccounts/") else f"billingAccounts/{account}"


def read(ctx: Ctx, project_id: str) -> str | None:
    """The linked billing account name (`billingAccounts/X`), "" when none, None when unreadable (no project)."""
    svc = ctx.target.billing()

    def get() -> str | None:
        try:
            info = svc.projects().getBillingInfo(name=f"projects/{project_id}").execute(num_retries=0)
        except Exception as exc:  # noqa: BLE001
            if is_status(exc, 403, 404):
                return None
            raise
        return info.get("billingAccountName") or ""

    return ctx.call(get)


def link(ctx: Ctx, project_id: str, account: str) -> None:
    """Link the project to the billing account, then read back until the link shows."""
    want = account_name(account)
    svc = ctx.target.billing()
    ctx.execute(svc.projects().updateBillingInfo(name=f"projects/{project_id}", body={"billingAccountName": want}))
    verify(ctx, project_id, account)


def verify(ctx: Ctx, project_id: str, account: str) -> None:
    want = account_name(account)

    def check() -> Any:
        got = read(ctx, project_id)
        if got != want:
            raise NotYet(f"billing link of {project_id} not visible yet (reads {got or 'none'})")

    ctx.call(check)


def test_permissions(ctx: Ctx, account: str, permissions: list[str]) -> list[str]:
    """Which of `permissions` the caller holds on the billing account (testIamPermissions)."""
    svc = ctx.target.billing()
    req = svc.billingAccounts().testIamPermissions(resource=account_name(account), body={"permissions": permissions})
    return list(ctx.execute(req).get("permissions") or [])


# ---------------------------------------------------------------------------- kind
KIND = "billing"


def reads(bp: Blueprint, live: Live, phase: int) -> Reads:
    # Read even when the blueprint names no account: the apis kind refuses to plan Healthcare without one.
    return {Key.BILLING: lambda ctx: read(ctx, bp.project.id)} if phase == 1 else {}


def diff(bp: Blueprint, live: Live, opts: Options, draft: Draft) -> None:
    spec, pid = bp.project, bp.project.id
    if opts.destroy or not spec.billing_account:
        return   # provision never unlinks billing: other things in the project may need it
    want = account_name(spec.billing_account)
    was = live.billing if live.project is not None else None
    resource = f"projects/{pid}/billingInfo"
    if live.project is not None and was == want:
        draft.add(Step(KIND, KIND, resource, NOOP, [], ["project"]))
        return
    account = spec.billing_account

    def run(ctx: Ctx) -> str:
        link(ctx, pid, account)
        return f"linked {want}"

    draft.add(Step(KIND, KIND, resource, UPDATE if was else CREATE, [f"link {want}" + (f" (now {was})" if was else "")],
                   ["project"], run,
                   fields=[field_change("billing_account", was or None, want)]))
