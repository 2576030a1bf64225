"""Cloud Run Admin v2 routes (run.v2.json): services create/get/list/patch/delete, their
getIamPolicy/setIamPolicy/testIamPermissions, and operations get/list. Bodies are checked
against the discovery document; calls need run.googleapis.com enabled in the project
(SERVICE_DISABLED otherwise) and, under --enforce-iam, `run.services.*` on the service or its
project, plus iam.serviceAccounts.actAs on the revision's service account to deploy as it.
A denial reads "Permission 'P' denied on resource 'R' (or resource may not exist).", as
Cloud Run answers it.
"""
from __future__ import annotations

from provision.emulator import discovery, iam
from provision.emulator.cloudrun.state import REGION_RE, SERVICE
from provision.emulator.cloudrun.views import service_view
from provision.emulator.common import page
from provision.emulator.errors import ApiError, error_info, invalid_argument, not_found
from provision.emulator.http import Ctx, Router

router = Router()
API = "run"
DOC = "run.v2"
BASE = "/v2/projects/<id:project>/locations/<id:region>"


def _denied(permission: str, resource: str) -> ApiError:
    return ApiError("PERMISSION_DENIED", f"Permission '{permission}' denied on resource '{resource}' (or resource "
                                         "may not exist).",
                    [error_info("IAM_PERMISSION_DENIED", "run.googleapis.com", {"permission": permission})])


def _project(ctx: Ctx, project: str, region: str, permission: str | None, resource: str) -> dict:
    """The project, enabled for Cloud Run, when the caller holds `permission` on it (None: a
    per-service permission, checked by `_service` against the service's policy too)."""
    record = ctx.world.crm.lookup(project)
    if record is None or (permission and not ctx.allows(permission, ctx.world.crm.policy_chain(record["projectId"]))):
        raise _denied(permission or "run.services.get", resource)
    ctx.world.serviceusage.require_enabled(record, SERVICE)
    if region != "-" and not REGION_RE.match(region):
        raise invalid_argument(f"Location '{region}' is not a valid Cloud Run region.")
    return record


def _service(ctx: Ctx, project: str, region: str, service: str, verb: str) -> tuple[dict, dict]:
    """(project record, service record) when the caller holds run.services.<verb> on it."""
    resource = f"projects/{project}/locations/{region}/services/{service}"
    permission = f"run.services.{verb}"
    record = _project(ctx, project, region, None, resource)
    rec = ctx.world.docs.get("run-service", f"{record['projectId']}/{region}/{service}")
    if not ctx.allows(permission, ctx.world.cloudrun.policy_chain(rec) if rec else
                      ctx.world.crm.policy_chain(record["projectId"])):
        raise _denied(permission, resource)
    if rec is None:
        rec = ctx.world.cloudrun.get(record, region, service)   # the 404
    return record, rec


def _act_as(ctx: Ctx, body: dict) -> None:
    """Deploying as a service account needs iam.serviceAccounts.actAs on it (roles/iam.serviceAccountUser)."""
    account = (body.get("template") or {}).get("serviceAccount")
    if not account or not ctx.world.options.enforce_iam:
        return
    doc = ctx.world.docs.get("service-account", account) or {}
    project = account.split("@", 1)[-1].split(".", 1)[0]
    chain = [doc.get("policy"), *(ctx.world.crm.policy_chain(project) if ctx.world.crm.lookup(project) else [])]
    if not ctx.allows("iam.serviceAccounts.actAs", chain):
        raise ApiError("PERMISSION_DENIED", f"Permission 'iam.serviceaccounts.actAs' denied on service account "
                                            f"{account} (or it may not exist).")


def _body(ctx: Ctx) -> dict:
    """The Service in the body, enums by name (gapic clients send them as numbers)."""
    return discovery.with_enum_names(DOC, "GoogleCloudRunV2Service", ctx.json())


def _flag(ctx: Ctx, name: str) -> bool:
    return (ctx.query.get(name) or "").lower() == "true"


@router.route("POST", f"{BASE}/services", api=API, discovery=(DOC, "run.projects.locations.services.create"))
def create(ctx: Ctx, project: str, region: str):
    record = _project(ctx, project, region, "run.services.create", f"projects/{project}/locations/{region}")
    body = _body(ctx)
    _act_as(ctx, body)
    return ctx.world.cloudrun.create(record, region, ctx.query.get("serviceId", ""), body, ctx.principal,
                                     validate_only=_flag(ctx, "validateOnly"))


@router.route("GET", f"{BASE}/services", api=API, discovery=(DOC, "run.projects.locations.services.list"))
def list_services(ctx: Ctx, project: str, region: str):
    record = _project(ctx, project, region, "run.services.list", f"projects/{project}/locations/{region}")
    views = [service_view(r) for r in ctx.world.cloudrun.list(record, region)]
    chunk, token = page(ctx.query, views, default_size=100, max_size=1000)
    out: dict = {"services": chunk} if chunk else {}
    if token:
        out["nextPageToken"] = token
    return out


@router.route("GET", f"{BASE}/services/<id:service>", api=API, discovery=(DOC, "run.projects.locations.services.get"))
def get(ctx: Ctx, project: str, region: str, service: str):
    return service_view(_service(ctx, project, region, service, "get")[1])


@router.route("PATCH", f"{BASE}/services/<id:service>", api=API,
              discovery=(DOC, "run.projects.locations.services.patch"))
def patch(ctx: Ctx, project: str, region: str, service: str):
    body = _body(ctx)
    record = _project(ctx, project, region, "run.services.update", f"projects/{project}/locations/{region}")
    if ctx.world.docs.get("run-service", f"{record['projectId']}/{region}/{service}") is not None \
            or not _flag(ctx, "allowMissing"):
        record, _ = _service(ctx, project, region, service, "update")
    _act_as(ctx, body)
    return ctx.world.cloudrun.patch(record, region, service, body, ctx.principal, force=_flag(ctx, "forceNewRevision"),
                                    allow_missing=_flag(ctx, "allowMissing"))


@router.route("DELETE", f"{BASE}/services/<id:service>", api=API,
              discovery=(DOC, "run.projects.locations.services.delete"))
def delete(ctx: Ctx, project: str, region: str, service: str):
    record, _ = _service(ctx, project, region, service, "delete")
    return ctx.world.cloudrun.delete(record, region, service, ctx.query.get("etag"))


@router.route("GET", f"{BASE}/services/<id:service>:getIamPolicy", api=API,
              discovery=(DOC, "run.projects.locations.services.getIamPolicy"))
def get_iam_policy(ctx: Ctx, project: str, region: str, service: str):
    _, rec = _service(ctx, project, region, service, "getIamPolicy")
    version = ctx.query.get("options.requestedPolicyVersion")
    return iam.view(rec["policy"], int(version) if version and version.isdigit() else None)


@router.route("POST", f"{BASE}/services/<id:service>:setIamPolicy", api=API,
              discovery=(DOC, "run.projects.locations.services.setIamPolicy"))
def set_iam_policy(ctx: Ctx, project: str, region: str, service: str):
    body = ctx.json()
    _, rec = _service(ctx, project, region, service, "setIamPolicy")
    return iam.view(ctx.world.cloudrun.set_policy(rec, body.get("policy") or {}), 3)


@router.route("POST", f"{BASE}/services/<id:service>:testIamPermissions", api=API,
              discovery=(DOC, "run.projects.locations.services.testIamPermissions"))
def test_iam_permissions(ctx: Ctx, project: str, region: str, service: str):
    body = ctx.json()
    # No permission is needed to ask which permissions one has (the answer is the subset held).
    record = _project(ctx, project, region, None, f"projects/{project}/locations/{region}/services/{service}")
    rec = ctx.world.cloudrun.get(record, region, service)
    chain = ctx.world.cloudrun.policy_chain(rec)
    held = [p for p in (body.get("permissions") or []) if ctx.allows(str(p), chain)]
    return {"permissions": held} if held else {}


@router.route("GET", f"{BASE}/operations/<id:op>", api=API, discovery=(DOC, "run.projects.locations.operations.get"))
def get_operation(ctx: Ctx, project: str, region: str, op: str):
    record = _project(ctx, project, region, "run.operations.get", f"projects/{project}/locations/{region}")
    name = f"projects/{project}/locations/{region}/operations/{op}"
    found = ctx.world.operations.get(name) or ctx.world.operations.get(
        f"projects/{record['projectId']}/locations/{region}/operations/{op}")
    if found is None:
        raise not_found(f"Operation '{name}' not found.")
    return found


@router.route("GET", f"{BASE}/operations", api=API, discovery=(DOC, "run.projects.locations.operations.list"))
def list_operations(ctx: Ctx, project: str, region: str):
    record = _project(ctx, project, region, "run.operations.list", f"projects/{project}/locations/{region}")
    ops = ctx.world.operations.list(f"projects/{record['projectId']}/locations/{region}/operations/")
    chunk, token = page(ctx.query, ops, default_size=100, max_size=1000)
    out: dict = {"operations": chunk} if chunk else {}
    if token:
        out["nextPageToken"] = token
    return out
