"""Cloud Run Admin v2 routes: services (create, get, list, patch, delete), their operations and IAM.

Permissions are Cloud Run's (`run.services.*`, `run.operations.get`), checked against the service's
own policy and the project's; a missing project and a denial look the same (403), as elsewhere.
"""
from __future__ import annotations

from provision.emulator import iam
from provision.emulator.common import ANONYMOUS_OWNER, page
from provision.emulator.errors import invalid_argument, not_found
from provision.emulator.http import Ctx, Router

router = Router()
API = "run"
DOC = "run.v2"
M = "run.projects.locations"
LOC = "/v2/projects/<id:project>/locations/<id:location>"
SVC = LOC + "/services/<id:service>"
MAX_PAGE = 500


def _target(ctx: Ctx, permission: str, project: str, location: str, service: str | None = None):
    backend = ctx.world.run
    resource = f"projects/{project}/locations/{location}" + (f"/services/{service}" if service else "")
    record = backend.project(project, permission, resource)
    name = f"projects/{record['projectId']}/locations/{location}/services/{service}" if service else None
    ctx.require(permission, resource, backend.policies(record["projectId"], name))
    if name and backend.get(name) is None:
        raise not_found(f"Resource '{name}' was not found")
    return record, name


def _pending(op: dict) -> dict:
    return {k: v for k, v in op.items() if k in ("name", "metadata")}


@router.route("POST", LOC + "/services", api=API, discovery=(DOC, f"{M}.services.create"))
def create_service(ctx: Ctx, project: str, location: str):
    record, _ = _target(ctx, "run.services.create", project, location)
    body = ctx.json()
    caller = (ctx.principal or ANONYMOUS_OWNER).split(":", 1)[-1]
    return _pending(ctx.world.run.create(record, location, ctx.query.get("serviceId"), body, caller,
                                         validate_only=ctx.query.get("validateOnly") == "true"))


@router.route("GET", LOC + "/services", api=API)
def list_services(ctx: Ctx, project: str, location: str):
    record, _ = _target(ctx, "run.services.list", project, location)
    items = ctx.world.run.list(f"projects/{record['projectId']}/locations/{location}")
    chunk, token = page(ctx.query, items, default_size=100, max_size=MAX_PAGE,
                        too_large=invalid_argument(f"page_size cannot exceed {MAX_PAGE}."))
    out = {"services": chunk} if chunk else {}
    if token:
        out["nextPageToken"] = token
    return out


@router.route("GET", SVC, api=API)
def get_service(ctx: Ctx, project: str, location: str, service: str):
    _, name = _target(ctx, "run.services.get", project, location, service)
    return ctx.world.run.get(name)


@router.route("PATCH", SVC, api=API, discovery=(DOC, f"{M}.services.patch"))
def patch_service(ctx: Ctx, project: str, location: str, service: str):
    record, name = _target(ctx, "run.services.update", project, location, service)
    caller = (ctx.principal or ANONYMOUS_OWNER).split(":", 1)[-1]
    return _pending(ctx.world.run.update(record, name, ctx.json(), caller))


@router.route("DELETE", SVC, api=API)
def delete_service(ctx: Ctx, project: str, location: str, service: str):
    record, name = _target(ctx, "run.services.delete", project, location, service)
    return _pending(ctx.world.run.delete(record, name))


@router.route("GET", LOC + "/operations/<id:op>", api=API)
def get_operation(ctx: Ctx, project: str, location: str, op: str):
    record, _ = _target(ctx, "run.operations.get", project, location)
    name = f"projects/{record['projectId']}/locations/{location}/operations/{op}"
    view = ctx.world.operations.get(name)
    if view is None:
        raise not_found(f"Operation '{name}' was not found")
    return view


@router.route("GET", SVC + ":getIamPolicy", api=API)
def get_policy(ctx: Ctx, project: str, location: str, service: str):
    _, name = _target(ctx, "run.services.getIamPolicy", project, location, service)
    raw = ctx.query.get("options.requestedPolicyVersion")
    try:
        version = int(raw) if raw not in (None, "") else None
    except ValueError:
        raise invalid_argument(f"Invalid value for options.requestedPolicyVersion: {raw!r}") from None
    return iam.view(ctx.world.run.policy(name), version)


@router.route("POST", SVC + ":setIamPolicy", api=API, discovery=(DOC, f"{M}.services.setIamPolicy"))
def set_policy(ctx: Ctx, project: str, location: str, service: str):
    _, name = _target(ctx, "run.services.setIamPolicy", project, location, service)
    body = ctx.json()
    if not isinstance(body.get("policy"), dict):
        raise invalid_argument("Request contains an invalid argument.", [("policy", "policy must be set")])
    return ctx.world.run.set_policy(name, body["policy"])


@router.route("POST", SVC + ":testIamPermissions", api=API, discovery=(DOC, f"{M}.services.testIamPermissions"))
def test_permissions(ctx: Ctx, project: str, location: str, service: str):
    backend = ctx.world.run
    record = backend.project(project, "run.services.get", f"projects/{project}/locations/{location}/services/{service}")
    name = f"projects/{record['projectId']}/locations/{location}/services/{service}"
    asked = list(ctx.json().get("permissions") or [])
    held = [p for p in asked if ctx.allows(p, backend.policies(record["projectId"], name))]
    return {"permissions": held} if held else {}
