"""Grants on the project (Resource Manager v3 getIamPolicy / setIamPolicy, version 3).

Kind `project-iam`: adds the blueprint's pairs, revokes the pairs provision added that the
blueprint no longer names, reports foreign data-access grants as drift. Reads `project_policy`.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from provision.gcp.context import Ctx
from provision.resources import iam
from provision.resources.base import Draft, Key, Live, Reads
from provision.resources.steps import CREATE, DELETE, NOOP, UPDATE, Options, Step

if TYPE_CHECKING:  # for annotations only: no import at run time
    from provision.blueprint.models import Blueprint

KIND = "project-iam"
# Basic roles on a project are how people administer it; reporting every owner would drown the signal.
PROJECT_LEVEL_IGNORED = ("roles/owner", "roles/editor", "roles/viewer")


def read(ctx: Ctx, project_id: str) -> dict[str, Any]:
    return iam.read(ctx, iam.project_io(ctx, project_id))


def test_permissions(ctx: Ctx, project_id: str, permissions: list[str]) -> list[str]:
    """Which of `permissions` the caller holds on the project."""
    client = ctx.target.projects()
    resp = ctx.call(lambda: client.test_iam_permissions(
        request={"resource": f"projects/{project_id}", "permissions": permissions}, retry=None))
    return list(resp.permissions)


def reads(bp: Blueprint, live: Live, phase: int) -> Reads:
    if phase == 2 and live.project is not None:
        return {Key.PROJECT_POLICY: lambda ctx: read(ctx, bp.project.id)}
    return {}


def diff(bp: Blueprint, live: Live, opts: Options, draft: Draft) -> None:
    pid = bp.project.id
    resource = f"projects/{pid}"
    desired = [] if opts.destroy else iam.pairs_of(bp.iam)
    exists = live.project is not None
    d = iam.diff_grants(live.project_policy if exists else None, desired, live.record.pairs_on(resource),
                        ignore_roles=PROJECT_LEVEL_IGNORED, ignore_members=[draft.facts.agent or ""])
    if opts.destroy and exists:
        for line in iam.left_alone(live.project_policy, iam.pairs_of(bp.iam), live.record.pairs_on(resource),
                                   f"project {pid}"):
            draft.note(line)
    if not (desired or d.changing or d.foreign):
        return
    action = NOOP if not d.changing else (CREATE if not exists else UPDATE if d.add else DELETE)
    draft.add(Step(KIND, KIND, resource, action, d.describe(), ["apis", "record"], _run(pid, d) if d.changing else None,
                   drift=d.drift(), fields=d.fields(), claims=[("grant", resource, r, m) for r, m in d.add]))


def _run(pid: str, d: iam.GrantDiff) -> Callable[[Ctx], Any]:
    return lambda ctx: iam.apply_diff(ctx, iam.project_io(ctx, pid), d)
