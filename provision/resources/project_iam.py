"""Additive grants on the project (Resource Manager v3 getIamPolicy / setIamPolicy, version 3)."""
from __future__ import annotations

from typing import Iterable

from provision.gcp.context import Ctx
from provision.resources import iam
from provision.resources.iam import Pair


def read(ctx: Ctx, project_id: str) -> dict:
    return iam.read(ctx, iam.project_io(ctx, project_id))


def missing(policy: dict | None, pairs: Iterable[Pair]) -> list[Pair]:
    return iam.missing(policy, pairs)


def grant(ctx: Ctx, project_id: str, pairs: Iterable[Pair]) -> list[Pair]:
    """Add the pairs not yet granted (marking them as added by provision); re-read until visible.
    Never removes anything."""
    return iam.add_marked(ctx, iam.project_io(ctx, project_id), iam.project_labels(ctx, project_id), pairs)


def revoke(ctx: Ctx, project_id: str, pairs: Iterable[Pair]) -> list[Pair]:
    """Remove those of these pairs provision added (destroy); others, and conditional bindings, stay."""
    return iam.remove_marked(ctx, iam.project_io(ctx, project_id), iam.project_labels(ctx, project_id), pairs)


def test_permissions(ctx: Ctx, project_id: str, permissions: list[str]) -> list[str]:
    """Which of `permissions` the caller holds on the project."""
    client = ctx.target.projects()
    resp = ctx.call(lambda: client.test_iam_permissions(
        request={"resource": f"projects/{project_id}", "permissions": permissions}, retry=None))
    return list(resp.permissions)
