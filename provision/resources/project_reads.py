"""The project as read (`ProjectState`), and the label that says provision created it: shared by
the project kind, the bucket kind (which names the project owning a bucket whose name is taken)
and the record kind (which records a project created by a run killed before it could).

A GET of a project that does not exist answers 403 on Google (the caller cannot tell "absent"
from "not yours"); both read as absent.
"""
from __future__ import annotations

from typing import Any

from provision.gcp.context import Ctx
from provision.gcp.errors import is_status
from provision.resources.states import ProjectState

# Set in the create request itself: the record lives inside the project, so it can only name the
# project once it exists; this label says "provision made it" even if a kill came in between.
CREATED_LABEL = "provision-created"


def state_of(pb: Any) -> ProjectState:
    """A resourcemanager_v3.Project as ProjectState."""
    state = pb.state.name if hasattr(pb.state, "name") else str(pb.state)
    return ProjectState(project_id=pb.project_id, number=pb.name.split("/")[-1], display_name=pb.display_name,
                        parent=pb.parent, labels=dict(pb.labels), state=state)


def read(ctx: Ctx, project_id: str) -> ProjectState | None:
    """The project, or None when it does not exist (or is not visible to us: 403)."""
    client = ctx.target.projects()

    def get() -> ProjectState | None:
        try:
            return state_of(client.get_project(name=f"projects/{project_id}", retry=None))
        except Exception as exc:  # noqa: BLE001
            if is_status(exc, 403, 404):
                return None
            raise

    return ctx.call(get)
