"""Artifact Registry v1 routes (artifactregistry.v1.json): repositories create (an operation),
get, list, delete (an operation), and `dockerImages` list/get for what builds pushed. Calls need
artifactregistry.googleapis.com enabled (SERVICE_DISABLED otherwise) and, under --enforce-iam,
`artifactregistry.repositories.*` / `artifactregistry.dockerimages.*` on the project
(roles/artifactregistry.admin, .writer, .reader). Operations are polled through the route that
handlers.py shares with Cloud Build.
"""
from __future__ import annotations

import hashlib
import uuid

from provision.emulator.builds.registry import image_view
from provision.emulator.common import page
from provision.emulator.errors import ApiError, error_info
from provision.emulator.http import Ctx, Router

router = Router()
API = "artifactregistry"
DOC = "artifactregistry.v1"
SERVICE = "artifactregistry.googleapis.com"
BASE = "/v1/projects/<id:project>/locations/<id:location>/repositories"
OP_METADATA = "type.googleapis.com/google.devtools.artifactregistry.v1.OperationMetadata"
REPO_TYPE = "type.googleapis.com/google.devtools.artifactregistry.v1.Repository"
EMPTY = "type.googleapis.com/google.protobuf.Empty"


def _project(ctx: Ctx, project: str, permission: str) -> dict:
    record = ctx.world.crm.lookup(project)
    if record is None or not ctx.allows(permission, ctx.world.crm.policy_chain(record["projectId"])):
        raise ApiError("PERMISSION_DENIED", f"Permission '{permission}' denied on resource 'projects/{project}' (or it "
                                            "may not exist).",
                       [error_info("IAM_PERMISSION_DENIED", SERVICE, {"permission": permission})])
    ctx.world.serviceusage.require_enabled(record, SERVICE)
    return record


def _operation(ctx: Ctx, record: dict, location: str, response: dict) -> dict:
    with ctx.world.db.transaction():
        n = ctx.world.docs.next_counter("artifactregistry.operation")
    op_id = uuid.UUID(bytes=hashlib.sha256(f"ar:{record['number']}:{n}".encode()).digest()[:16], version=4)
    return ctx.world.operations.start(f"projects/{record['projectId']}/locations/{location}/operations/{op_id}",
                                      {"@type": OP_METADATA}, response=response, project=record["projectId"],
                                      seconds=ctx.world.latency.seconds("op:artifactregistry.repositories.create"))


@router.route("POST", BASE, api=API, discovery=(DOC, "artifactregistry.projects.locations.repositories.create"))
def create(ctx: Ctx, project: str, location: str):
    record = _project(ctx, project, "artifactregistry.repositories.create")
    repo = ctx.world.builds.registry.create(record, location, ctx.query.get("repositoryId", ""), ctx.json())
    return _operation(ctx, record, location, {"@type": REPO_TYPE, **repo})


@router.route("GET", BASE, api=API, discovery=(DOC, "artifactregistry.projects.locations.repositories.list"))
def list_repositories(ctx: Ctx, project: str, location: str):
    record = _project(ctx, project, "artifactregistry.repositories.list")
    chunk, token = page(ctx.query, ctx.world.builds.registry.repositories(record, location), default_size=1000, max_size=1000)
    out: dict = {"repositories": chunk} if chunk else {}
    if token:
        out["nextPageToken"] = token
    return out


@router.route("GET", BASE + "/<id:repo>", api=API, discovery=(DOC, "artifactregistry.projects.locations.repositories.get"))
def get(ctx: Ctx, project: str, location: str, repo: str):
    record = _project(ctx, project, "artifactregistry.repositories.get")
    return ctx.world.builds.registry.get(record, location, repo)


@router.route("DELETE", BASE + "/<id:repo>", api=API,
              discovery=(DOC, "artifactregistry.projects.locations.repositories.delete"))
def delete(ctx: Ctx, project: str, location: str, repo: str):
    record = _project(ctx, project, "artifactregistry.repositories.delete")
    ctx.world.builds.registry.delete(record, location, repo)
    return _operation(ctx, record, location, {"@type": EMPTY})


@router.route("GET", BASE + "/<id:repo>/dockerImages", api=API,
              discovery=(DOC, "artifactregistry.projects.locations.repositories.dockerImages.list"))
def list_images(ctx: Ctx, project: str, location: str, repo: str):
    record = _project(ctx, project, "artifactregistry.dockerimages.list")
    views = [image_view(r) for r in ctx.world.builds.registry.images(record, location, repo)]
    chunk, token = page(ctx.query, views, default_size=100, max_size=1000)
    out: dict = {"dockerImages": chunk} if chunk else {}
    if token:
        out["nextPageToken"] = token
    return out


@router.route("GET", BASE + "/<id:repo>/dockerImages/<path:image>", api=API,
              discovery=(DOC, "artifactregistry.projects.locations.repositories.dockerImages.get"))
def get_image(ctx: Ctx, project: str, location: str, repo: str, image: str):
    record = _project(ctx, project, "artifactregistry.dockerimages.get")
    return image_view(ctx.world.builds.registry.image(record, location, repo, image))
