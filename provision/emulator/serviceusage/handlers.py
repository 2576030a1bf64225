"""Service Usage routes (v1, plus v1beta1 generateServiceIdentity). A project that does not exist
and a caller without the permission get the same 403 ("Permission denied to ... service"),
with the AUTH_PERMISSION_DENIED ErrorInfo Service Usage attaches.

Calls answer the way the recorded exchanges show: `:enable` and `:batchEnable` answer just the
operation's name, `:disable` its name and metadata; an already-enabled service answers the
synchronous `operations/noop.DONE_OPERATION`, which cannot be polled (404). Evidence: Terraform's
maintainers found that Service Usage "can return an Operation that doesn't require refreshing because
it's already done, and returns an error if you try to query it again"
(hashicorp/terraform-provider-google#1630); no recording shows a 200 for it. Which error code Google
answers is not recorded: 404 NOT_FOUND is this emulator's choice.
"""
from __future__ import annotations

from provision.emulator import iam
from provision.emulator.common import page
from provision.emulator.errors import ApiError, error_info, invalid_argument, not_found
from provision.emulator.http import Ctx, Router

router = Router()
API = "serviceusage"
V1 = "serviceusage.v1"
V1BETA1 = "serviceusage.v1beta1"
DEFAULT_PAGE, MAX_PAGE = 50, 200


def _denied(message: str, permission: str) -> ApiError:
    return ApiError("PERMISSION_DENIED", message, [
        error_info("AUTH_PERMISSION_DENIED", "serviceusage.googleapis.com", {"permission": permission})])


def _project(ctx: Ctx, project: str, permission: str, message: str) -> dict:
    """The ACTIVE project the caller may act on, else the 403 Service Usage answers."""
    crm = ctx.world.crm
    record = crm.lookup(project)
    if record is None or record["state"] != "ACTIVE":
        raise _denied(message, permission)
    if ctx.world.options.enforce_iam and not iam.allowed(ctx.principal or "", permission,
                                                         crm.policy_chain(record["projectId"])):
        raise _denied(message, permission)
    return record


def _service_project(ctx: Ctx, project: str, service: str, verb: str) -> dict:
    return _project(ctx, project, f"serviceusage.services.{verb}", f"Permission denied to {verb} service [{service}]")


def _started(op: dict, *keys: str) -> dict:
    """The answer to the call that started an operation (noop answers are complete already)."""
    if op.get("name") == "operations/noop.DONE_OPERATION":
        return op
    return {k: op[k] for k in ("name", *keys) if k in op}


def _operation(ctx: Ctx, op: str) -> dict:
    """A Service Usage operation; under --enforce-iam the caller needs serviceusage.services.get
    on its project (a denial reads like a miss, as on Google)."""
    name = f"operations/{op}"
    found = ctx.world.operations.get(name)
    if found is None or not op.startswith(("acf.", "acat.")):
        raise not_found(f"Operation '{name}' not found.")
    if ctx.world.options.enforce_iam:
        project, _ = ctx.world.operations.owner(name)
        record = ctx.world.crm.lookup(project) if project else None
        if record is None or not ctx.allows("serviceusage.services.get", ctx.world.crm.policy_chain(record["projectId"])):
            raise _denied(f"Permission denied to get operation [{name}]", "serviceusage.services.get")
    return found


@router.route("GET", "/v1/projects/<id:project>/services", api=API)
def list_services(ctx: Ctx, project: str):
    record = _project(ctx, project, "serviceusage.services.list",
                      f"Permission denied to list services for consumer container [projects/{project}]")
    flt = (ctx.query.get("filter") or "").strip()
    state = None
    if flt:
        key, _, value = flt.partition(":")
        if key.strip() != "state" or value.strip() not in ("ENABLED", "DISABLED"):
            raise invalid_argument(f"Invalid filter: {flt!r}. Supported filters are state:ENABLED and state:DISABLED.")
        state = value.strip()
    too_large = invalid_argument(f"Requested page size cannot exceed {MAX_PAGE}.", [("page_size", f"must be at most {MAX_PAGE}")])
    services = ctx.world.serviceusage.list(record["number"], state)
    chunk, token = page(ctx.query, services, default_size=DEFAULT_PAGE, max_size=MAX_PAGE, too_large=too_large)
    out: dict = {"services": chunk} if chunk else {}
    if token:
        out["nextPageToken"] = token
    return out


@router.route("GET", "/v1/projects/<id:project>/services:batchGet", api=API)
def batch_get(ctx: Ctx, project: str):
    names = ctx.query.getlist("names")
    record = _project(ctx, project, "serviceusage.services.get",
                      f"Permission denied to get services for consumer container [projects/{project}]")
    if not names or len(names) > MAX_PAGE:
        raise invalid_argument("Request contains an invalid argument.", [("names", f"between 1 and {MAX_PAGE} names")])
    su = ctx.world.serviceusage
    out = []
    for name in names:
        service = name.rsplit("/", 1)[-1]
        su.require_known([service])
        out.append(su.service(record["number"], service))
    return {"services": out}


@router.route("GET", "/v1/projects/<id:project>/services/<id:service>", api=API)
def get_service(ctx: Ctx, project: str, service: str):
    record = _service_project(ctx, project, service, "get")
    ctx.world.serviceusage.require_known([service])
    return ctx.world.serviceusage.service(record["number"], service)


@router.route("POST", "/v1/projects/<id:project>/services/<id:service>:enable", api=API,
              discovery=(V1, "serviceusage.services.enable"))
def enable(ctx: Ctx, project: str, service: str):
    record = _service_project(ctx, project, service, "enable")
    ctx.json()
    return _started(ctx.world.serviceusage.enable(record, service))


@router.route("POST", "/v1/projects/<id:project>/services/<id:service>:disable", api=API,
              discovery=(V1, "serviceusage.services.disable"))
def disable(ctx: Ctx, project: str, service: str):
    record = _service_project(ctx, project, service, "disable")
    ctx.json()
    return _started(ctx.world.serviceusage.disable(record, service), "metadata")


@router.route("POST", "/v1/projects/<id:project>/services:batchEnable", api=API,
              discovery=(V1, "serviceusage.services.batchEnable"))
def batch_enable(ctx: Ctx, project: str):
    body = ctx.json()
    ids = list(body.get("serviceIds") or [])
    record = _project(ctx, project, "serviceusage.services.enable",
                      f"Permission denied to enable service [{','.join(ids)}]")
    return _started(ctx.world.serviceusage.batch_enable(record, ids))


@router.route("GET", "/v1/operations/<id:op>", api=API)
def get_operation(ctx: Ctx, op: str):
    return _operation(ctx, op)


@router.route("POST", "/v1beta1/projects/<id:project>/services/<id:service>:generateServiceIdentity", api=API)
def generate_service_identity(ctx: Ctx, project: str, service: str):
    record = _service_project(ctx, project, service, "enable")
    ctx.json(validate=False)
    return _started(ctx.world.serviceusage.generate_service_identity(record, service), "metadata")


@router.route("GET", "/v1beta1/operations/<id:op>", api=API)
def get_operation_v1beta1(ctx: Ctx, op: str):
    return _operation(ctx, op)
