"""Org Policy v2 routes (`/v2/{projects|folders|organizations}/*/policies`), and two control routes that
shape what the policies apply to: `PUT /_emulator/folders/<N>` `{"parent": "organizations/M"}` (a folder's
place in the hierarchy) and `PUT /_emulator/customers/<C0...>` `{"domains": [...], "organization": ...}`
(which domains a Workspace customer ID of `iam.allowedPolicyMemberDomains` stands for; state.py).

Permissions, as Google names them: `orgpolicy.policy.get` (get, getEffectivePolicy),
`orgpolicy.policies.list`, `orgpolicy.policy.set` (create, patch, delete), held on the resource or an
ancestor (roles/orgpolicy.policyViewer, roles/orgpolicy.policyAdmin).
"""
from __future__ import annotations

from provision.emulator.errors import invalid_argument, permission_denied
from provision.emulator.http import Ctx, Router

router = Router()
API = "orgpolicy"
V2 = "orgpolicy.v2"
KINDS = ("projects", "folders", "organizations")
BASE = "/v2/<any(projects,folders,organizations):kind>/<id:rid>/policies"


def _target(ctx: Ctx, kind: str, rid: str, permission: str) -> tuple[str, str]:
    """(storage key, wire name) of the resource, once the caller may act on it."""
    op = ctx.world.orgpolicy
    key, wire = op.resource(kind, rid)
    chain = [ctx.world.docs.get("policy", node) for node in op.ancestry(key)]
    if key.startswith("projects/"):
        chain[0] = ctx.world.crm.policy(key.split("/", 1)[1])
    if not ctx.allows(permission, chain):
        raise permission_denied(f"Permission '{permission}' denied on resource '{wire}' (or it may not exist).")
    return key, wire


def _method(name: str) -> tuple[str, str]:
    # Every kind's method has the same request schema; the projects one stands for all three.
    return (V2, f"orgpolicy.projects.policies.{name}")


@router.route("POST", BASE, api=API, discovery=_method("create"))
def create_policy(ctx: Ctx, kind: str, rid: str):
    key, wire = _target(ctx, kind, rid, "orgpolicy.policy.set")
    return ctx.world.orgpolicy.create(key, wire, ctx.json())


@router.route("GET", BASE, api=API, discovery=_method("list"))
def list_policies(ctx: Ctx, kind: str, rid: str):
    key, wire = _target(ctx, kind, rid, "orgpolicy.policies.list")
    found = ctx.world.orgpolicy.list(key, wire)
    return {"policies": found} if found else {}


@router.route("GET", BASE + "/<id:constraint>", api=API, discovery=_method("get"))
def get_policy(ctx: Ctx, kind: str, rid: str, constraint: str):
    key, wire = _target(ctx, kind, rid, "orgpolicy.policy.get")
    return ctx.world.orgpolicy.get(key, wire, constraint)


@router.route("PATCH", BASE + "/<id:constraint>", api=API, discovery=_method("patch"))
def patch_policy(ctx: Ctx, kind: str, rid: str, constraint: str):
    key, wire = _target(ctx, kind, rid, "orgpolicy.policy.set")
    return ctx.world.orgpolicy.patch(key, wire, constraint, ctx.json())


@router.route("DELETE", BASE + "/<id:constraint>", api=API, discovery=_method("delete"))
def delete_policy(ctx: Ctx, kind: str, rid: str, constraint: str):
    key, wire = _target(ctx, kind, rid, "orgpolicy.policy.set")
    ctx.world.orgpolicy.delete(key, wire, constraint)
    return {}


@router.route("GET", BASE + "/<id:constraint>:getEffectivePolicy", api=API, discovery=_method("getEffectivePolicy"))
def get_effective_policy(ctx: Ctx, kind: str, rid: str, constraint: str):
    key, wire = _target(ctx, kind, rid, "orgpolicy.policy.get")
    return ctx.world.orgpolicy.effective(key, wire, constraint)


@router.route("PUT", "/_emulator/folders/<id:folder>", api="emulator")
def put_folder(ctx: Ctx, folder: str):
    """Place a folder in the hierarchy: `{"parent": "organizations/N"}` (or another folder)."""
    body = ctx.json(validate=False)
    return ctx.world.orgpolicy.put_folder(f"folders/{folder}", str((body or {}).get("parent") or ""))


@router.route("PUT", "/_emulator/customers/<id:customer>", api="emulator")
def put_customer(ctx: Ctx, customer: str):
    """A Workspace customer: `{"domains": ["example.org"], "organization": "organizations/N"}`."""
    body = ctx.json(validate=False)
    if not isinstance(body, dict) or not isinstance(body.get("domains"), list):
        raise invalid_argument('Body must be {"domains": [...], "organization": "organizations/N"}.')
    return ctx.world.orgpolicy.put_customer(customer, [str(d) for d in body["domains"]], body.get("organization"))
