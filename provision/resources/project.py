"""The project: create under its parent with labels, adopt an existing one, update label drift.

Labels are merged, not replaced: labels the blueprint does not name stay (non-authoritative,
like IAM). A GET of a project that does not exist answers 403 on Google (the caller cannot
tell "absent" from "not yours"); both read as absent, and create then tells them apart.
Google's libraries are imported where they are used (provision/gcp/__init__.py says why).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from provision.gcp.context import Ctx
from provision.gcp.errors import StepError, is_already_exists, is_status
from provision.gcp.quota import CHAIN_HEAD, CRM_WRITES
from provision.gcp.retry import NotYet
from provision.resources.base import Draft, Key, Live, Reads
from provision.resources.healthcare_names import agent_member
from provision.resources.project_reads import CREATED_LABEL, read, state_of
from provision.resources.states import ProjectState
from provision.resources.steps import CREATE, DELETE, NOOP, UPDATE, Options, Step, field_change

if TYPE_CHECKING:  # for annotations only: no import at run time
    from provision.blueprint.models import Blueprint


def desired_changes(spec: Any, live: ProjectState) -> list[str]:
    """Human-readable drift: labels to set, display name to change."""
    out = []
    for k, v in sorted((spec.labels or {}).items()):
        if live.labels.get(k) != v:
            was = live.labels.get(k)
            out.append(f"label {k}={v}" + (f" (was {was})" if was is not None else ""))
    if spec.display_name and spec.display_name != live.display_name:
        out.append(f"display name {live.display_name!r} -> {spec.display_name!r}")
    return out


def create(ctx: Ctx, spec: Any) -> ProjectState:
    """Create the project and wait for it; adopt it when it already exists and is ours."""
    from google.cloud import resourcemanager_v3

    client = ctx.target.projects()
    project = resourcemanager_v3.Project(project_id=spec.id, display_name=spec.display_name or spec.id,
                                         labels={**(spec.labels or {}), CREATED_LABEL: "true"})
    if spec.parent:
        project.parent = spec.parent

    def attempt() -> ProjectState | None:
        try:
            operation = client.create_project(project=project, retry=None)
        except Exception as exc:  # noqa: BLE001
            if is_already_exists(exc):
                return None  # adopt below
            raise
        ctx.progress("waiting for project creation")
        return state_of(ctx.wait_crm(operation, kind="crm.projects.create"))

    created = ctx.call(attempt, quota=CRM_WRITES, priority=CHAIN_HEAD)
    if created is None:
        live = read(ctx, spec.id)
        if live is None:
            raise StepError("project", f"projects/{spec.id}",
                            f"the project ID {spec.id!r} is already taken (project IDs are global, and stay taken "
                            "for 30 days after deletion), or it exists and you cannot see it",
                            fix="choose another project.id, or ask the project's owner for access "
                                "(roles/browser at least)", action="create")
        ctx.note(f"project {spec.id} already exists: adopted")
        return update(ctx, spec, live)
    # The finished CreateProject operation's response is the project itself (its number, state,
    # labels): an ACTIVE one is what the read-back would say, so it is not read again (Terraform
    # goes on to link billing straight after the operation, too). Anything else is read back.
    if created.state == "ACTIVE" and created.number:
        return created
    return verify(ctx, spec.id)


def verify(ctx: Ctx, project_id: str) -> ProjectState:
    """Read the project back until it is visible and ACTIVE."""

    def check() -> ProjectState:
        live = read(ctx, project_id)
        if live is None:
            raise NotYet(f"project {project_id} not visible yet")
        if live.state != "ACTIVE":
            raise StepError("project", f"projects/{project_id}",
                            f"the project is in state {live.state} (pending deletion)",
                            fix=f"restore it with `gcloud projects undelete {project_id}`, or choose another project.id")
        return live

    return ctx.call(check)


def update(ctx: Ctx, spec: Any, live: ProjectState) -> ProjectState:
    """Set the blueprint's labels (keeping others) and display name, when they differ."""
    if live.state != "ACTIVE":
        return verify(ctx, spec.id)
    labels = dict(live.labels)
    labels.update(spec.labels or {})
    paths = []
    if labels != live.labels:
        paths.append("labels")
    if spec.display_name and spec.display_name != live.display_name:
        paths.append("display_name")
    if not paths:
        return live
    from google.cloud import resourcemanager_v3
    from google.protobuf import field_mask_pb2

    client = ctx.target.projects()
    project = resourcemanager_v3.Project(name=live.name, labels=labels,
                                         display_name=spec.display_name or live.display_name)

    def attempt() -> Any:
        operation = client.update_project(project=project, update_mask=field_mask_pb2.FieldMask(paths=paths), retry=None)
        return ctx.wait_crm(operation)

    ctx.call(attempt, quota=CRM_WRITES)

    def check() -> ProjectState:
        now = read(ctx, spec.id)
        if now is None or any(now.labels.get(k) != v for k, v in (spec.labels or {}).items()):
            raise NotYet(f"project {spec.id} labels not updated yet")
        return now

    return ctx.call(check)


def delete(ctx: Ctx, project_id: str) -> None:
    client = ctx.target.projects()

    def attempt() -> Any:
        try:
            operation = client.delete_project(name=f"projects/{project_id}", retry=None)
        except Exception as exc:  # noqa: BLE001
            if is_status(exc, 403, 404):
                return None
            raise
        return ctx.wait_crm(operation, kind="crm.projects.delete")

    ctx.call(attempt)


# ---------------------------------------------------------------------------- kind
KIND = "project"


def reads(bp: Blueprint, live: Live, phase: int) -> Reads:
    return {Key.PROJECT: lambda ctx: read(ctx, bp.project.id)} if phase == 1 else {}


def diff(bp: Blueprint, live: Live, opts: Options, draft: Draft) -> None:
    spec, pid, project = bp.project, bp.project.id, live.project
    resource = f"projects/{pid}"
    if project is not None:
        draft.facts.project_number = project.number
        draft.facts.agent = agent_member(project.number)
    if opts.destroy:
        if project is None:
            return
        if not opts.delete_project:
            draft.keep(KIND, KIND, resource, "kept (--delete-project deletes it)")
        elif not live.record.owns(KIND, pid):
            draft.keep(KIND, KIND, resource, "not created by provision: not deleted")
        else:
            # after every other change (added by plan.build once all kinds have spoken)
            def run(ctx: Ctx) -> str:
                delete(ctx, pid)
                return "deletion requested"

            draft.add(Step(KIND, KIND, resource, DELETE, [f"delete project {pid}"], ["*"], run))
        return
    if project is None:
        changes = [f"create project {pid}" + (f" under {spec.parent}" if spec.parent else "")]
        changes += [f"label {k}={v}" for k, v in sorted((spec.labels or {}).items())]

        def run_create(ctx: Ctx) -> str:
            st = create(ctx, spec)
            ctx.facts.project_number = st.number
            ctx.facts.agent = agent_member(st.number)
            ctx.facts.record.project_number = st.number   # the record step writes it down next
            return f"project {pid} (number {st.number})"

        draft.add(Step(KIND, KIND, resource, CREATE, changes, [], run_create, claims=[("resource", KIND, pid)]))
        return
    drift = desired_changes(spec, project)
    words = " and ".join(w for w, on in (("labels", any(c.startswith("label") for c in drift)),
                                         ("display name", any(c.startswith("display") for c in drift))) if on)
    fields = [field_change(f"labels.{k}", project.labels.get(k), v) for k, v in sorted((spec.labels or {}).items())
              if project.labels.get(k) != v]
    if spec.display_name and spec.display_name != project.display_name:
        fields.append(field_change("display_name", project.display_name, spec.display_name))
    draft.add(Step(KIND, KIND, resource, UPDATE if drift else NOOP, drift, [],
                   (lambda ctx: (update(ctx, spec, project), f"{words} updated")[1]) if drift else None, fields=fields))
