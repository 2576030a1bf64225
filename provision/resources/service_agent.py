"""The Cloud Healthcare Service Agent: `service-<projectNumber>@gcp-sa-healthcare.iam.gserviceaccount.com`.

It may not exist until asked for, so apply calls Service Usage v1beta1
`services/healthcare.googleapis.com:generateServiceIdentity` (what `gcloud beta services
identity create` does) and waits for its operation. Agents created on request do not get their
default role, so `roles/healthcare.serviceAgent` is then granted on the project (additively).
That grant is also how a later run sees, with reads only, that the agent exists.
"""
from __future__ import annotations

from provision.gcp.context import Ctx
from provision.resources import iam

SERVICE = "healthcare.googleapis.com"
AGENT_ROLE = "roles/healthcare.serviceAgent"


def email_for(project_number: str) -> str:
    return f"service-{project_number}@gcp-sa-healthcare.iam.gserviceaccount.com"


def member_for(project_number: str) -> str:
    return f"serviceAccount:{email_for(project_number)}"


def exists(project_policy: dict | None, project_number: str) -> bool:
    """Whether the project policy already grants the agent its role (our mark that it exists)."""
    return not iam.missing(project_policy, [(AGENT_ROLE, member_for(project_number))])


def ensure(ctx: Ctx, project_id: str, project_number: str) -> str:
    """Create the agent (idempotent) and grant it its role; returns its email."""
    su = ctx.target.serviceusage("v1beta1")

    def attempt() -> dict:
        op = su.services().generateServiceIdentity(parent=f"projects/{project_id}/services/{SERVICE}").execute(num_retries=0)
        return ctx.wait_serviceusage(op, version="v1beta1")

    ctx.progress("generating the Healthcare service agent")
    op = ctx.call(attempt)
    email = (op.get("response") or {}).get("email") or email_for(project_number)
    ctx.progress(f"granting {AGENT_ROLE} to {email}")
    iam.add(ctx, iam.project_io(ctx, project_id), [(AGENT_ROLE, f"serviceAccount:{email}")])
    return email
