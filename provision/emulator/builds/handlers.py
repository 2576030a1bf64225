"""Routes: Cloud Run Admin v2 `projects.locations.builds.submit` (run.v2.json), Cloud Build v1
`projects.locations.operations.get` and `projects.locations.builds.get` (cloudbuild.v1.json).

Cloud Build's and Artifact Registry's operations share one path
(`/v1/projects/P/locations/L/operations/ID`: the emulator answers every Google host on one
port), so one route serves both and tells them apart by the operation it finds; such a request
is recorded with api `cloudbuild` either way.

Permissions under --enforce-iam (our reading of Cloud Run's and Cloud Build's IAM pages):
submit needs `run.builds.create` on the project (roles/run.admin, roles/run.sourceDeveloper,
roles/editor) and, when the request names a service account, `iam.serviceAccounts.actAs` on it;
polling a build needs `cloudbuild.builds.get` (roles/cloudbuild.builds.viewer/editor). Submit
needs run, cloudbuild and artifactregistry enabled (SERVICE_DISABLED for the first one that is
not); polling needs cloudbuild.
"""
from __future__ import annotations

from provision.emulator import discovery
from provision.emulator.builds.state import METADATA_TYPE, SERVICES
from provision.emulator.errors import ApiError, error_info, not_found
from provision.emulator.http import Ctx, Router

router = Router()
LOC = "/projects/<id:project>/locations/<id:region>"


def _denied(permission: str, resource: str, service: str) -> ApiError:
    return ApiError("PERMISSION_DENIED", f"Permission '{permission}' denied on resource '{resource}' (or resource "
                                         "may not exist).",
                    [error_info("IAM_PERMISSION_DENIED", service, {"permission": permission})])


def _project(ctx: Ctx, project: str, permission: str, services: tuple[str, ...], resource: str) -> dict:
    record = ctx.world.crm.lookup(project)
    if record is None or not ctx.allows(permission, ctx.world.crm.policy_chain(record["projectId"])):
        raise _denied(permission, resource, services[0])
    for service in services:
        ctx.world.serviceusage.require_enabled(record, service)
    return record


def _act_as(ctx: Ctx, account: str | None) -> None:
    if not account or not ctx.world.options.enforce_iam:
        return
    email = account.rsplit("/", 1)[-1]
    doc = ctx.world.docs.get("service-account", email) or {}
    owner = email.split("@", 1)[-1].split(".", 1)[0]
    chain = [doc.get("policy"), *(ctx.world.crm.policy_chain(owner) if ctx.world.crm.lookup(owner) else [])]
    if not ctx.allows("iam.serviceAccounts.actAs", chain):
        raise ApiError("PERMISSION_DENIED", f"Permission 'iam.serviceaccounts.actAs' denied on service account "
                                            f"{email} (or it may not exist).")


@router.route("POST", f"/v2{LOC}/builds:submit", api="run", discovery=("run.v2", "run.projects.locations.builds.submit"))
def submit(ctx: Ctx, project: str, region: str):
    parent = f"projects/{project}/locations/{region}"
    record = _project(ctx, project, "run.builds.create", SERVICES, parent)
    body = discovery.with_enum_names("run.v2", "GoogleCloudRunV2SubmitBuildRequest", ctx.json())
    _act_as(ctx, body.get("serviceAccount"))
    return ctx.world.builds.submit(record, region, body, ctx.principal)


@router.route("GET", f"/v1{LOC}/operations/<id:op>", api="cloudbuild",
              discovery=("cloudbuild.v1", "cloudbuild.projects.locations.operations.get"))
def get_operation(ctx: Ctx, project: str, region: str, op: str):
    """A Cloud Build operation, or an Artifact Registry one (module docstring)."""
    record = ctx.world.crm.lookup(project)
    found = None
    if record is not None:
        for p in (record["number"], record["projectId"]):
            found = ctx.world.operations.get(f"projects/{p}/locations/{region}/operations/{op}")
            if found:
                break
    is_build = found is None or (found.get("metadata") or {}).get("@type") == METADATA_TYPE
    if is_build:
        _project(ctx, project, "cloudbuild.builds.get", ("cloudbuild.googleapis.com",), f"projects/{project}")
    else:
        _project(ctx, project, "artifactregistry.repositories.get", ("artifactregistry.googleapis.com",),
                 f"projects/{project}/locations/{region}")
    if found is None:
        raise not_found(f"Operation 'projects/{project}/locations/{region}/operations/{op}' not found.")
    return found


@router.route("GET", f"/v1{LOC}/builds/<id:build>", api="cloudbuild",
              discovery=("cloudbuild.v1", "cloudbuild.projects.locations.builds.get"))
def get_build(ctx: Ctx, project: str, region: str, build: str):
    record = _project(ctx, project, "cloudbuild.builds.get", ("cloudbuild.googleapis.com",), f"projects/{project}")
    found = ctx.world.builds.get_build(record["number"], region, build)
    if found is None:
        raise not_found(f"Build '{build}' not found.")
    return found
