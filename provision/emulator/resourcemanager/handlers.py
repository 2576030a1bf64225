"""Resource Manager routes: v3 (what the provisioner's gapic client calls) and the v1 project
methods (what the OHIF viewer and the recorded exchanges call). Every miss is Google's 403
"The caller does not have permission", never a 404, and a denied caller gets the same answer.
"""
from __future__ import annotations

from provision.emulator import iam
from provision.emulator.common import ANONYMOUS_OWNER, page
from provision.emulator.errors import invalid_argument, not_found, permission_denied
from provision.emulator.http import Ctx, Router
from provision.emulator.resourcemanager.state import parent_from_v1

router = Router()
API = "cloudresourcemanager"
V1 = "cloudresourcemanager.v1"
V3 = "cloudresourcemanager.v3"
MAX_PAGE = 1000


# ----- helpers -------------------------------------------------------------------------------
def caller_project(ctx: Ctx, project: str, permission: str) -> dict:
    """The project the caller may act on; a missing project and a denial look the same (403).
    Cloud Billing's project methods answer the same way."""
    crm = ctx.world.crm
    record = crm.lookup(project)
    if record is None or not ctx.allows(permission, crm.policy_chain(record["projectId"])):
        raise permission_denied()
    return record


def _check_create(ctx: Ctx, parent: str) -> None:
    if not ctx.world.options.enforce_iam:
        return
    if not parent:
        if (ctx.principal or "").startswith("serviceAccount:"):
            raise permission_denied("Service accounts cannot create projects without a parent.")
        return
    if not ctx.allows("resourcemanager.projects.create", [ctx.world.crm.parent_policy(parent)]):
        raise permission_denied()


def _pending(op: dict) -> dict:
    """A create call's own answer: the operation as just started (Google never answers done)."""
    return {k: v for k, v in op.items() if k in ("name", "metadata")}


def _projects_page(ctx: Ctx, records: list[dict], render) -> dict:
    """A list answer: one page of `records`, each rendered as v1 or v3, and the next page's token."""
    chunk, token = page(ctx.query, records, default_size=500, max_size=MAX_PAGE)
    out: dict = {"projects": [render(r) for r in chunk]} if chunk else {}
    if token:
        out["nextPageToken"] = token
    return out


def _visible(ctx: Ctx, records: list[dict]) -> list[dict]:
    crm = ctx.world.crm
    return [r for r in records if ctx.allows("resourcemanager.projects.get", crm.policy_chain(r["projectId"]))
            and (not r.get("standIn") or _holds_really(ctx, r))]


def _holds_really(ctx: Ctx, record: dict) -> bool:
    """A public-dataset stand-in's project (provision/emulator/publicdata.py) belongs to its publisher:
    listed only to who really holds projects.get on it, even without --enforce-iam (where the
    anonymous caller stands for the owner of what it creates, not of everything)."""
    who = ctx.principal or ("" if ctx.world.options.enforce_iam else ANONYMOUS_OWNER)
    return iam.allowed(who, "resourcemanager.projects.get", ctx.world.crm.policy_chain(record["projectId"]))


def _requested_version(body: dict) -> int | None:
    options = body.get("options") or {}
    version = options.get("requestedPolicyVersion")
    return int(version) if version is not None else None


PROJECT_OPERATIONS = ("operations/cp.", "operations/dp.", "operations/up.", "operations/ud.")


def _operation(ctx: Ctx, name: str) -> dict:
    """A project operation (create `cp.`, delete `dp.`, update `up.`, undelete `ud.`); others are another API's."""
    op = ctx.world.operations.get(name) if name.startswith(PROJECT_OPERATIONS) else None
    if op is None:
        raise not_found(f"Operation \"{name}\" not found.")
    if ctx.world.options.enforce_iam:
        # The caller needs resourcemanager.projects.get on the operation's project; whoever
        # started a create may always poll it (a create that failed leaves no project to ask).
        project, caller = ctx.world.operations.owner(name)
        record = ctx.world.crm.lookup(project) if project else None
        if not (caller and caller == ctx.principal) and (
                record is None or not ctx.allows("resourcemanager.projects.get",
                                                  ctx.world.crm.policy_chain(record["projectId"]))):
            raise permission_denied()
    return op


# ----- IAM: the same methods in v3 and v1 ------------------------------------------------------
@router.route("POST", "/v3/projects/<id:project>:getIamPolicy", api=API,
              discovery=(V3, "cloudresourcemanager.projects.getIamPolicy"))
@router.route("POST", "/v1/projects/<id:project>:getIamPolicy", api=API,
              discovery=(V1, "cloudresourcemanager.projects.getIamPolicy"))
def projects_get_iam_policy(ctx: Ctx, project: str) -> dict:
    record = caller_project(ctx, project, "resourcemanager.projects.getIamPolicy")
    body = ctx.json()
    ctx.world.latency.sleep("sync:crm.projects.getIamPolicy")
    return ctx.world.crm.get_iam_policy(record["projectId"], _requested_version(body))


@router.route("POST", "/v3/projects/<id:project>:setIamPolicy", api=API,
              discovery=(V3, "cloudresourcemanager.projects.setIamPolicy"))
@router.route("POST", "/v1/projects/<id:project>:setIamPolicy", api=API,
              discovery=(V1, "cloudresourcemanager.projects.setIamPolicy"))
def projects_set_iam_policy(ctx: Ctx, project: str) -> dict:
    record = caller_project(ctx, project, "resourcemanager.projects.setIamPolicy")
    body = ctx.json()
    if "policy" not in body:
        raise invalid_argument("Request contains an invalid argument.", [("policy", "policy must be set")])
    ctx.world.latency.sleep("sync:crm.projects.setIamPolicy")
    return ctx.world.crm.set_iam_policy(record["projectId"], body.get("policy") or {}, body.get("updateMask"))


@router.route("POST", "/v3/projects/<id:project>:testIamPermissions", api=API,
              discovery=(V3, "cloudresourcemanager.projects.testIamPermissions"))
@router.route("POST", "/v1/projects/<id:project>:testIamPermissions", api=API,
              discovery=(V1, "cloudresourcemanager.projects.testIamPermissions"))
def projects_test_iam_permissions(ctx: Ctx, project: str) -> dict:
    record = ctx.world.crm.lookup(project)
    if record is None:
        raise permission_denied()
    asked = list(ctx.json().get("permissions") or [])
    held = ctx.world.crm.held_permissions(record["projectId"], ctx.principal, asked)
    return {"permissions": held} if held else {}


# ----- v3 ------------------------------------------------------------------------------------
@router.route("POST", "/v3/projects", api=API, discovery=(V3, "cloudresourcemanager.projects.create"))
def v3_create(ctx: Ctx):
    body = ctx.json()
    parent = body.get("parent") or ""
    _check_create(ctx, parent)
    op = ctx.world.crm.create(project_id=body.get("projectId"), display_name=body.get("displayName"),
                              parent=parent, labels=body.get("labels"), creator=ctx.principal)
    return _pending(op)


@router.route("GET", "/v3/projects:search", api=API)
def v3_search(ctx: Ctx):
    records = _visible(ctx, ctx.world.crm.search(ctx.query.get("query")))
    return _projects_page(ctx, records, ctx.world.crm.v3)


@router.route("POST", "/v3/projects/<id:project>:undelete", api=API,
              discovery=(V3, "cloudresourcemanager.projects.undelete"))
def v3_undelete(ctx: Ctx, project: str):
    record = caller_project(ctx, project, "resourcemanager.projects.undelete")
    ctx.json()
    return _pending(ctx.world.crm.undelete(record["projectId"]))


@router.route("GET", "/v3/projects/<id:project>", api=API)
def v3_get(ctx: Ctx, project: str):
    return ctx.world.crm.v3(caller_project(ctx, project, "resourcemanager.projects.get"))


@router.route("GET", "/v3/projects", api=API)
def v3_list(ctx: Ctx):
    parent = ctx.query.get("parent")
    if not parent:
        raise invalid_argument("Request contains an invalid argument.", [("parent", "parent must be set")])
    records = [r for r in _visible(ctx, ctx.world.crm.list(parent=parent))
               if ctx.query.get("showDeleted") in ("true", "True", "1") or r["state"] == "ACTIVE"]
    return _projects_page(ctx, records, ctx.world.crm.v3)


@router.route("PATCH", "/v3/projects/<id:project>", api=API, discovery=(V3, "cloudresourcemanager.projects.patch"))
def v3_patch(ctx: Ctx, project: str):
    record = caller_project(ctx, project, "resourcemanager.projects.update")
    body = ctx.json()
    mask = {p.strip() for p in (ctx.query.get("updateMask") or "").split(",") if p.strip()}
    if not mask:
        mask = {k for k in ("displayName", "labels") if k in body}
    unknown = mask - {"displayName", "display_name", "labels"}
    if unknown:
        raise invalid_argument(f"Invalid update mask: {', '.join(sorted(unknown))} cannot be updated.")
    changes = {}
    if mask & {"displayName", "display_name"}:
        changes["display_name"] = body.get("displayName") or ""
    if "labels" in mask:
        changes["labels"] = body.get("labels") or {}
    return _pending(ctx.world.crm.update_operation(record["projectId"], **changes))


@router.route("DELETE", "/v3/projects/<id:project>", api=API)
def v3_delete(ctx: Ctx, project: str):
    record = caller_project(ctx, project, "resourcemanager.projects.delete")
    return _pending(ctx.world.crm.delete(record["projectId"]))


@router.route("POST", "/v3/<any(folders,organizations):kind>/<id:number>:testIamPermissions", api=API,
              discovery=(V3, "cloudresourcemanager.folders.testIamPermissions"))
def v3_parent_test_iam_permissions(ctx: Ctx, kind: str, number: str):
    """Preflight asks the parent whether the caller may create projects under it."""
    asked = list(ctx.json().get("permissions") or [])
    held = ctx.world.crm.held_on_parent(f"{kind}/{number}", ctx.principal, asked)
    return {"permissions": held} if held else {}


@router.route("GET", "/v3/organizations:search", api=API)
def v3_search_organizations(ctx: Ctx):
    """Organizations the caller may see (resourcemanager.organizations.get), from the emulator's Workspace
    customers (orgpolicy/state.py): display name the customer's first domain. `query` takes
    `directoryCustomerId:ID` or `domain:NAME` (Google's two search keys)."""
    key, _, value = (ctx.query.get("query") or "").partition(":")
    found = []
    for org in ctx.world.orgpolicy.organizations():
        if key.strip().lower() == "directorycustomerid" and org["directoryCustomerId"] != value.strip():
            continue
        if key.strip().lower() == "domain" and org["displayName"] != value.strip().lower():
            continue
        if ctx.allows("resourcemanager.organizations.get", [ctx.world.crm.parent_policy(org["name"])]):
            found.append(org)
    return {"organizations": found} if found else {}


@router.route("GET", "/v3/operations/<id:op>", api=API)
def v3_operation(ctx: Ctx, op: str):
    return _operation(ctx, f"operations/{op}")


# ----- v1 ------------------------------------------------------------------------------------
@router.route("GET", "/v1/projects", api=API)
def v1_list(ctx: Ctx):
    records = _visible(ctx, ctx.world.crm.list(filter_=ctx.query.get("filter")))
    return _projects_page(ctx, records, ctx.world.crm.v1)


@router.route("POST", "/v1/projects", api=API, discovery=(V1, "cloudresourcemanager.projects.create"))
def v1_create(ctx: Ctx):
    body = ctx.json()
    parent = parent_from_v1(body.get("parent"))
    _check_create(ctx, parent)
    op = ctx.world.crm.create(project_id=body.get("projectId"), display_name=body.get("name"),
                              parent=parent, labels=body.get("labels"), creator=ctx.principal)
    return {"name": op["name"]}


@router.route("GET", "/v1/projects/<id:project>", api=API)
def v1_get(ctx: Ctx, project: str):
    return ctx.world.crm.v1(caller_project(ctx, project, "resourcemanager.projects.get"))


@router.route("PUT", "/v1/projects/<id:project>", api=API, discovery=(V1, "cloudresourcemanager.projects.update"))
def v1_update(ctx: Ctx, project: str):
    record = caller_project(ctx, project, "resourcemanager.projects.update")
    body = ctx.json()
    updated = ctx.world.crm.update(record["projectId"], display_name=body.get("name") or "",
                                   labels=body.get("labels") or {})
    return ctx.world.crm.v1(updated)


@router.route("DELETE", "/v1/projects/<id:project>", api=API)
def v1_delete(ctx: Ctx, project: str):
    record = caller_project(ctx, project, "resourcemanager.projects.delete")
    return ctx.world.crm.delete(record["projectId"], operation=False)


@router.route("POST", "/v1/projects/<id:project>:undelete", api=API,
              discovery=(V1, "cloudresourcemanager.projects.undelete"))
def v1_undelete(ctx: Ctx, project: str):
    record = caller_project(ctx, project, "resourcemanager.projects.undelete")
    ctx.json()
    return ctx.world.crm.undelete(record["projectId"], operation=False)


# /v1/operations/<id> is also Service Usage's path (another host on Google, one port here):
# project operations are the `cp.` / `dp.` / `up.` ones, the static prefix wins the match.
@router.route("GET", "/v1/operations/cp.<id:rest>", api=API)
def v1_create_operation(ctx: Ctx, rest: str):
    return ctx.world.crm.op_v1(_operation(ctx, f"operations/cp.{rest}"))


@router.route("GET", "/v1/operations/dp.<id:rest>", api=API)
def v1_delete_operation(ctx: Ctx, rest: str):
    return ctx.world.crm.op_v1(_operation(ctx, f"operations/dp.{rest}"))
