"""Cloud Billing routes, and the control route that adds billing accounts:
`PUT /_emulator/billing-accounts/<id>` with `{"displayName", "open", "parent"?, "currencyCode"?}`.

A project or billing account that does not exist (or that the caller may not see) answers
Google's 403 "The caller does not have permission".
"""
from __future__ import annotations

from provision.emulator import iam
from provision.emulator.common import page
from provision.emulator.errors import invalid_argument, permission_denied
from provision.emulator.http import Ctx, Router
from provision.emulator.resourcemanager.handlers import caller_project

router = Router()
API = "cloudbilling"
V1 = "cloudbilling.v1"
MAX_PAGE = 100


def _account(ctx: Ctx, account: str, permission: str | None) -> dict:
    billing = ctx.world.billing
    doc = billing.account(account)
    if doc is None or (permission and not ctx.allows(permission, [billing.account_policy(account)])):
        raise permission_denied()
    return doc


def _page(ctx: Ctx, items: list) -> tuple[list, str]:
    return page(ctx.query, items, default_size=50, max_size=MAX_PAGE,
                too_large=invalid_argument(f"Requested page size cannot exceed {MAX_PAGE}."))


@router.route("GET", "/v1/projects/<id:project>/billingInfo", api=API)
def get_billing_info(ctx: Ctx, project: str):
    record = caller_project(ctx, project, "resourcemanager.projects.get")
    return ctx.world.billing.billing_info(record["projectId"])


@router.route("PUT", "/v1/projects/<id:project>/billingInfo", api=API,
              discovery=(V1, "cloudbilling.projects.updateBillingInfo"))
def update_billing_info(ctx: Ctx, project: str):
    body = ctx.json()
    name = body.get("billingAccountName") or ""
    permission = ("resourcemanager.projects.createBillingAssignment" if name
                  else "resourcemanager.projects.deleteBillingAssignment")
    record = caller_project(ctx, project, permission)
    if name and ctx.world.billing.account(name) is not None:
        _account(ctx, name, "billing.resourceAssociations.create")
    ctx.world.latency.sleep("sync:billing.updateBillingInfo")
    return ctx.world.billing.link(record["projectId"], name)


@router.route("GET", "/v1/billingAccounts", api=API)
def list_accounts(ctx: Ctx):
    billing = ctx.world.billing
    visible = [a for a in billing.accounts()
               if ctx.allows("billing.accounts.get", [billing.account_policy(a["name"])])]
    chunk, token = _page(ctx, visible)
    return {"billingAccounts": chunk, "nextPageToken": token}


@router.route("GET", "/v1/billingAccounts/<id:account>", api=API)
def get_account(ctx: Ctx, account: str):
    return _account(ctx, account, "billing.accounts.get")


@router.route("GET", "/v1/billingAccounts/<id:account>/projects", api=API)
def list_account_projects(ctx: Ctx, account: str):
    _account(ctx, account, "billing.resourceAssociations.list")
    chunk, token = _page(ctx, ctx.world.billing.projects_of(account))
    return {"projectBillingInfo": chunk, "nextPageToken": token}


@router.route("POST", "/v1/billingAccounts/<id:account>:testIamPermissions", api=API,
              discovery=(V1, "cloudbilling.billingAccounts.testIamPermissions"))
def test_account_permissions(ctx: Ctx, account: str):
    _account(ctx, account, None)
    asked = list(ctx.json().get("permissions") or [])
    policy = ctx.world.billing.account_policy(account)
    held = [p for p in asked if ctx.allows(p, [policy])]
    return {"permissions": held} if held else {}


@router.route("GET", "/v1/billingAccounts/<id:account>:getIamPolicy", api=API,
              discovery=(V1, "cloudbilling.billingAccounts.getIamPolicy"))
def get_account_policy(ctx: Ctx, account: str):
    _account(ctx, account, "billing.accounts.getIamPolicy")
    raw = ctx.query.get("options.requestedPolicyVersion")
    try:
        version = int(raw) if raw not in (None, "") else None
    except ValueError:
        raise invalid_argument(f"Invalid value for options.requestedPolicyVersion: {raw!r}") from None
    return iam.view(ctx.world.billing.account_policy(account), version)


@router.route("POST", "/v1/billingAccounts/<id:account>:setIamPolicy", api=API,
              discovery=(V1, "cloudbilling.billingAccounts.setIamPolicy"))
def set_account_policy(ctx: Ctx, account: str):
    """Read-modify-write with the etag (a stale one is 409 ABORTED, as for projects); only the
    account's own policy changes. `updateMask` may name bindings and etag (the rest is kept)."""
    _account(ctx, account, "billing.accounts.setIamPolicy")
    body = ctx.json()
    if not isinstance(body.get("policy"), dict):
        raise invalid_argument("Request contains an invalid argument.", [("policy", "policy must be set")])
    return ctx.world.billing.set_account_policy(account, body["policy"])


@router.route("PUT", "/_emulator/billing-accounts/<id:account>", api="emulator")
def put_account(ctx: Ctx, account: str):
    """Add or replace a billing account: `{"displayName": "...", "open": true}`."""
    body = ctx.json(validate=False)
    if not isinstance(body, dict):
        raise invalid_argument("Body must be a JSON object.")
    return ctx.world.billing.put_account(account, display_name=str(body.get("displayName") or account),
                                         open_=bool(body.get("open", True)), parent=body.get("parent"),
                                         currency=str(body.get("currencyCode") or "USD"))
