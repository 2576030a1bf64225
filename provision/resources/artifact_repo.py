"""Kind `artifact-repo`: the Artifact Registry repository the viewer's image is built into.

`cloud-run-source-deploy` (format DOCKER) in the hosting region: the repository `gcloud run deploy
--source` makes and every source deploy of the project shares. Created when missing (recorded
first); one that exists is used and never deleted by provision. One provision made stays when
the blueprint stops deploying the viewer (it holds the built images, and other services may push
there): the plan says so and how to delete it; `destroy --delete-data` deletes it.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from provision.gcp.context import Ctx
from provision.resources import hosting_calls as calls
from provision.resources.base import Draft, Live, Reads
from provision.resources.hosting_names import (
    REPOSITORY,
    deploys,
    region,
    repository_name,
)
from provision.resources.steps import CREATE, DELETE, NOOP, Options, Step

if TYPE_CHECKING:  # for annotations only: no import at run time
    from provision.blueprint.models import Blueprint

KIND = "artifact-repo"
RESOURCE = "artifact-repository"   # the record's kind


def _key(name: str) -> str:
    return f"artifact_repo:{name}"


def _wanted(bp: Blueprint, opts: Options) -> str | None:
    return repository_name(bp.project.id, region(bp)) if deploys(bp) and not opts.destroy else None


def reads(bp: Blueprint, live: Live, phase: int) -> Reads:
    if live.project is None:
        return {}
    wanted = _wanted(bp, live.opts)
    if phase == 2 and wanted:
        return {_key(wanted): lambda ctx: calls.get_repository(ctx, wanted)}
    if phase == 3:
        return {_key(n): (lambda ctx, n=n: calls.get_repository(ctx, n))  # type: ignore[misc]  # a lambda with a bound default (mypy cannot infer it)
                for n in live.record.names(RESOURCE) if n != wanted}
    return {}


def diff(bp: Blueprint, live: Live, opts: Options, draft: Draft) -> None:
    wanted = _wanted(bp, opts)
    if wanted:
        exists = live.get(_key(wanted)) is not None
        changes = [] if exists else [(f"+ Artifact Registry repository {REPOSITORY} in {region(bp)} (Docker; where "
                                     "the viewer's image is built, as `gcloud run deploy --source` does)")]
        draft.add(Step(KIND, KIND, wanted, NOOP if exists else CREATE, changes, ["apis", "record"],
                       None if exists else _create(bp.project.id, region(bp)),
                       claims=[] if exists else [("resource", RESOURCE, wanted)]))
    for name in live.record.names(RESOURCE):
        if name == wanted:
            continue
        step_id = f"{KIND}:{name.split('/')[3]}"
        if live.has(_key(name)) and live.get(_key(name)) is None:
            draft.add(Step(step_id, KIND, name, DELETE, ["- already gone: forget it in the record"], ["record"],
                           _forget(name)))
        elif opts.destroy and opts.delete_data:
            draft.add(Step(step_id, KIND, name, DELETE, [f"- {name} and its images (made by provision)"],
                           ["viewer-service"], _delete(name)))
        else:
            draft.keep(step_id, KIND, name, "kept: it holds the viewer's built images and other source deploys of "
                       "the project may use it; delete it with `gcloud artifacts repositories delete "
                       f"{REPOSITORY} --location={name.split('/')[3]}` (or destroy --delete-data)")


def _create(pid: str, location: str) -> Callable[[Ctx], str]:
    def run(ctx: Ctx) -> str:
        name = repository_name(pid, location)
        ctx.facts.record.add_resource(ctx, RESOURCE, name)   # before it exists (record.py)
        ctx.progress(f"creating Artifact Registry repository {REPOSITORY} in {location}")
        calls.create_repository(ctx, pid, location)
        return f"created {name}"
    return run


def _delete(name: str) -> Callable[[Ctx], str]:
    def run(ctx: Ctx) -> str:
        calls.delete_repository(ctx, name)
        ctx.facts.record.drop_resource(ctx, RESOURCE, name)
        return f"deleted {name}"
    return run


def _forget(name: str) -> Callable[[Ctx], str]:
    return lambda ctx: (ctx.facts.record.drop_resource(ctx, RESOURCE, name), "forgotten")[1]
