"""IAM v1 `projects.serviceAccounts` routes: create, get, list, delete, getIamPolicy and
setIamPolicy (iam.v1.json). Calls need
iam.googleapis.com enabled in the project (SERVICE_DISABLED otherwise) and, under --enforce-iam,
the matching `iam.serviceAccounts.*` permission on the project."""
from __future__ import annotations

from provision.emulator import iam
from provision.emulator.common import page
from provision.emulator.errors import ApiError, error_info
from provision.emulator.http import Ctx, Router
from provision.emulator.iamadmin.state import SERVICE

router = Router()
API = "iam"
DOC = "iam.v1"


def _project(ctx: Ctx, project: str, permission: str) -> dict:
    """The project (enabled for IAM), after the permission check; a project the caller may not
    see answers like one without the permission, as Google does."""
    record = ctx.world.crm.lookup(project)
    if record is None or not ctx.allows(permission, ctx.world.crm.policy_chain(record["projectId"])):
        raise ApiError("PERMISSION_DENIED", f"Permission '{permission}' denied on resource (or it may not exist).",
                       [error_info("IAM_PERMISSION_DENIED", "iam.googleapis.com", {"permission": permission})])
    ctx.world.serviceusage.require_enabled(record, SERVICE)
    return record


@router.route("POST", "/v1/projects/<id:project>/serviceAccounts", api=API,
              discovery=(DOC, "iam.projects.serviceAccounts.create"))
def create(ctx: Ctx, project: str):
    record = _project(ctx, project, "iam.serviceAccounts.create")
    body = ctx.json()
    return ctx.world.iamadmin.create(record, str(body.get("accountId") or ""), body.get("serviceAccount") or {})


@router.route("GET", "/v1/projects/<id:project>/serviceAccounts", api=API,
              discovery=(DOC, "iam.projects.serviceAccounts.list"))
def list_accounts(ctx: Ctx, project: str):
    record = _project(ctx, project, "iam.serviceAccounts.list")
    chunk, token = page(ctx.query, ctx.world.iamadmin.list(record), default_size=20, max_size=100)
    out: dict = {"accounts": chunk} if chunk else {}
    if token:
        out["nextPageToken"] = token
    return out


def _account(ctx: Ctx, project: str, account: str, permission: str) -> dict:
    doc = ctx.world.iamadmin.find(project, account)
    _project(ctx, doc.get("projectId") or account.split("@", 1)[-1].split(".", 1)[0], permission)
    return doc


@router.route("GET", "/v1/projects/<id:project>/serviceAccounts/<id:account>", api=API,
              discovery=(DOC, "iam.projects.serviceAccounts.get"))
def get(ctx: Ctx, project: str, account: str):
    return ctx.world.iamadmin.view(_account(ctx, project, account, "iam.serviceAccounts.get"))


@router.route("DELETE", "/v1/projects/<id:project>/serviceAccounts/<id:account>", api=API,
              discovery=(DOC, "iam.projects.serviceAccounts.delete"))
def delete(ctx: Ctx, project: str, account: str):
    doc = _account(ctx, project, account, "iam.serviceAccounts.delete")
    ctx.world.iamadmin.delete(doc["email"])
    return {}


@router.route("POST", "/v1/projects/<id:project>/serviceAccounts/<id:account>:getIamPolicy", api=API,
              discovery=(DOC, "iam.projects.serviceAccounts.getIamPolicy"))
def get_iam_policy(ctx: Ctx, project: str, account: str):
    """Who may act as or impersonate the account (roles/iam.serviceAccountUser, ...TokenCreator)."""
    doc = _account(ctx, project, account, "iam.serviceAccounts.getIamPolicy")
    version = ctx.query.get("options.requestedPolicyVersion")
    return iam.view(doc["policy"], int(version) if version and version.isdigit() else None)


@router.route("POST", "/v1/projects/<id:project>/serviceAccounts/<id:account>:setIamPolicy", api=API,
              discovery=(DOC, "iam.projects.serviceAccounts.setIamPolicy"))
def set_iam_policy(ctx: Ctx, project: str, account: str):
    body = ctx.json()
    doc = _account(ctx, project, account, "iam.serviceAccounts.setIamPolicy")
    return iam.view(ctx.world.iamadmin.set_policy(doc["email"], body.get("policy") or {}), 3)
