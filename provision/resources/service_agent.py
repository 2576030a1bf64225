"""The Cloud Healthcare Service Agent: `service-<projectNumber>@gcp-sa-healthcare.iam.gserviceaccount.com`.

It may not exist until asked for, so apply calls Service Usage v1beta1
`services/healthcare.googleapis.com:generateServiceIdentity` (what `gcloud beta services
identity create` does) and waits for its operation. Agents created on request do not get their
default role, so `roles/healthcare.serviceAgent` is then granted on the project (additively).
That grant is also how a later run sees, with reads only, that the agent exists.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from provision.gcp.context import Ctx
from provision.gcp.quota import SU_WRITES
from provision.resources import iam
from provision.resources.base import Draft, Live, Reads
from provision.resources.healthcare_names import agent_email, agent_member
from provision.resources.steps import CREATE, NOOP, Options, Step

if TYPE_CHECKING:  # for annotations only: no import at run time
    from provision.blueprint.models import Blueprint

SERVICE = "healthcare.googleapis.com"
AGENT_ROLE = "roles/healthcare.serviceAgent"


def exists(project_policy: dict[str, Any] | None, project_number: str) -> bool:
    """Whether the project policy already grants the agent its role (our mark that it exists)."""
    return not iam.missing(project_policy, [(AGENT_ROLE, agent_member(project_number))])


def ensure(ctx: Ctx, project_id: str, project_number: str) -> str:
    """Create the agent (idempotent) and grant it its role; returns its email."""
    su = ctx.target.serviceusage("v1beta1")

    def attempt() -> dict[str, Any]:
        op = su.services().generateServiceIdentity(parent=f"projects/{project_id}/services/{SERVICE}").execute(num_retries=0)
        return ctx.wait_serviceusage(op, version="v1beta1", kind="serviceusage.generateServiceIdentity")

    ctx.progress("generating the Healthcare service agent")
    op = ctx.call(attempt, quota=SU_WRITES)
    email = (op.get("response") or {}).get("email") or agent_email(project_number)
    ctx.progress(f"granting {AGENT_ROLE} to {email}")
    iam.add(ctx, iam.project_io(ctx, project_id), [(AGENT_ROLE, f"serviceAccount:{email}")])
    return email


# ---------------------------------------------------------------------------- kind
KIND = "service-agent"


def reads(bp: Blueprint, live: Live, phase: int) -> Reads:
    return {}   # the project policy (project_iam) tells whether the agent exists


def diff(bp: Blueprint, live: Live, opts: Options, draft: Draft) -> None:
    if opts.destroy:
        return   # the agent is Google's, and keeps the role it needs to exist
    project, pid = live.project, bp.project.id
    ok = project is not None and exists(live.project_policy, project.number)
    draft.facts.agent_exists = ok

    def run(ctx: Ctx) -> str:
        email = ensure(ctx, pid, ctx.facts.known_project_number())
        ctx.facts.agent = f"serviceAccount:{email}"
        return email

    resource = agent_email(project.number) if project else agent_email("<number>")
    draft.add(Step(KIND, KIND, resource, NOOP if ok else CREATE,
                   [] if ok else ["generate the Cloud Healthcare Service Agent", f"+ {AGENT_ROLE}"],
                   ["project-iam", "apis"], None if ok else run))
