"""Before changing anything: does the caller hold the permissions the plan needs?

First, user credentials without a quota project (gcloud's ADC, the classic trap): one read of
Service Usage, which Google refuses to them ("... requires a quota project, which is not set by
default"), so apply would fail at its first enable; preflight stops with the exact fix instead.

Then asks `testIamPermissions` where Google answers it: the parent folder or organization (to
create the project), the billing account (to link it), the project when it exists (everything
else). Every missing permission is listed with the predefined role that grants it. The
answer of the service (or the emulator, which grants everything without --enforce-iam)
decides; a resource kind whose testIamPermissions is not served is skipped with a note. The
parent's and the billing account's answers are the same for every blueprint of a run, so they are
asked once per run (provision/gcp/shared.py). Google's libraries are imported where they are used (provision/gcp/__init__.py says why).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Callable

from provision.errors import ProvisionError
from provision.gcp.context import Ctx
from provision.gcp.errors import is_quota_project_missing, is_status, parse, quota_project_fix, role_for
from provision.gcp.shared import shared_reads
from provision.resources import billing as billing_mod
from provision.resources import project_iam

if TYPE_CHECKING:  # for annotations only: no import at run time
    from provision.blueprint.models import Blueprint

# What apply needs on an existing project, by purpose.
PROJECT_PERMISSIONS = [
    "resourcemanager.projects.get",
    "resourcemanager.projects.getIamPolicy",
    "serviceusage.services.list",
    "serviceusage.services.enable",
    "healthcare.locations.list",   # plan checks the dataset location against the target's list
    "healthcare.datasets.get",
    "healthcare.datasets.create",
    "healthcare.dicomStores.get",
    "healthcare.dicomStores.create",
    "healthcare.dicomStores.import",
    "healthcare.dicomStores.getIamPolicy",
    "healthcare.dicomStores.setIamPolicy",
    "storage.buckets.get",
    "storage.buckets.create",
    "storage.buckets.getIamPolicy",
    "storage.buckets.setIamPolicy",
    "storage.objects.list",
    "storage.objects.get",      # the ownership record (gs://<project>-provision-state/record.json)
    "storage.objects.create",
]
# setIamPolicy: the service agent's role, at least; update: the store label that marks a finished import.
IAM_PERMISSIONS = ["resourcemanager.projects.setIamPolicy", "healthcare.dicomStores.update"]
# What deploying the hosted viewer needs (viewer.hosting): README "The hosted viewer" lists the roles.
HOSTING_PERMISSIONS = ["run.services.create", "run.services.update", "run.services.setIamPolicy",
                       "iam.serviceAccounts.create", "iam.serviceAccounts.actAs",
                       "artifactregistry.repositories.create", "cloudbuild.builds.create",
                       "iap.webServices.setIamPolicy"]
CREATE_PERMISSIONS = ["resourcemanager.projects.create"]
BILLING_PERMISSIONS = ["billing.resourceAssociations.create"]


@dataclass
class Missing:
    resource: str
    permission: str
    role: str
    title: str

    def text(self) -> str:
        return f"{self.permission} on {self.resource}: ask for {self.title} ({self.role})"


class PreflightError(ProvisionError):
    def __init__(self, missing: list[Missing], project: str):
        self.missing = missing
        lines = [f"preflight: you lack {len(missing)} permission(s) this blueprint needs (project {project}); "
                 "nothing was changed:"]
        by_role: dict[tuple[str, str], list[Missing]] = {}
        for m in missing:
            by_role.setdefault((m.role, m.resource), []).append(m)
        for (role, resource), ms in by_role.items():
            lines.append(f"  - {ms[0].title} ({role}) on {resource}: grants {', '.join(m.permission for m in ms)}")
        lines.append("  fix: ask an administrator for these roles (or run as an account that has them), then try again")
        super().__init__("\n".join(lines))


class QuotaProjectError(ProvisionError):
    """User credentials without a quota project, refused by Service Usage."""

    def __init__(self, project: str | None, google_message: str):
        self.project = project
        super().__init__(
            "preflight: Service Usage refuses your credentials: they are a user's Application Default Credentials "
            "(`gcloud auth application-default login`) without a quota project, and Google answers: "
            f"{google_message!r}. Nothing was changed.\n  fix: {quota_project_fix(project)}")


def _user_credentials_without_quota_project(creds: Any) -> bool:
    """An `authorized_user` credential (a user's refresh token) that names no quota project."""
    try:
        from google.oauth2.credentials import Credentials
    except ImportError:  # pragma: no cover
        return False
    return (isinstance(creds, Credentials) and creds.refresh_token is not None
            and not getattr(creds, "quota_project_id", None))


def check_quota_project(ctx: Ctx, bp: Blueprint, project_visible: bool) -> None:
    """Raise QuotaProjectError when Service Usage refuses these credentials for want of a quota project."""
    if not _user_credentials_without_quota_project(ctx.target.credentials()):
        return
    name = f"projects/{bp.project.id}/services/serviceusage.googleapis.com"
    try:
        ctx.execute(ctx.target.serviceusage().services().get(name=name))
    except Exception as exc:  # noqa: BLE001 - a probe: only the quota-project answer matters here
        if is_quota_project_missing(exc):
            ge = parse(exc)
            raise QuotaProjectError(bp.project.id if project_visible else None, ge.message if ge else str(exc)) from None


def _project_needs(bp: Blueprint) -> list[str]:
    perms = list(PROJECT_PERMISSIONS) + IAM_PERMISSIONS  # setIamPolicy: the service agent's role, at least
    if not bp.bucket or not bp.bucket.create:
        perms = [p for p in perms if p != "storage.buckets.create"]
    hosting = getattr(bp.viewer, "hosting", None)
    if hosting is not None and hosting.access == "iap":
        perms += HOSTING_PERMISSIONS
    return perms


def check(ctx: Ctx, bp: Blueprint, project_visible: bool, billing: str | None = None) -> tuple[list[Missing], list[str]]:
    """(missing permissions, notes). Reads only.

    `project_visible`: the project could be read. A project we cannot read may still exist
    (Google answers 403 either way): testIamPermissions on it tells, since it answers for an
    existing project even to a caller who holds nothing there. `billing`: the linked account
    as read (the billing permission is only needed to make a link that is not there)."""
    check_quota_project(ctx, bp, project_visible)
    notes: list[str] = []
    jobs: list[Callable[[], Any]] = []
    found_project = _on_project(ctx, bp, project_visible)
    if found_project is not None:
        jobs.append(lambda: found_project)
    elif bp.project.parent:
        jobs.append(partial(_on_parent, ctx, bp.project.parent, notes))
    if bp.project.billing_account and billing != billing_mod.account_name(bp.project.billing_account):
        jobs.append(partial(_on_billing, ctx, bp.project.billing_account, notes))
    missing: list[Missing] = []
    for found in ctx.parallel(jobs):
        for resource, perm in found or []:
            role, title = role_for(perm)
            missing.append(Missing(resource, perm, role, title))
    return missing, notes


def _on_project(ctx: Ctx, bp: Blueprint, project_visible: bool) -> list[tuple[str, str]] | None:
    """(resource, permission) the caller lacks on the project; None when the project is absent (or wholly
    hidden from us): then the parent decides."""
    pid = bp.project.id
    try:
        got = project_iam.test_permissions(ctx, pid, _project_needs(bp))
    except Exception as exc:  # noqa: BLE001
        if not project_visible and is_status(exc, 403, 404):
            return None
        raise
    return [(f"projects/{pid}", p) for p in _project_needs(bp) if p not in got]


def _on_parent(ctx: Ctx, parent: str, notes: list[str]) -> list[tuple[str, str]]:
    """(resource, permission) the caller lacks to create the project under `parent`."""
    kind = parent.split("/")[0]
    client = ctx.target.folders() if kind == "folders" else ctx.target.organizations()
    ask = lambda: list(client.test_iam_permissions(  # noqa: E731
        request={"resource": parent, "permissions": CREATE_PERMISSIONS}, retry=None).permissions)
    try:   # the same question for every blueprint under this parent: asked once per run
        got = set(shared_reads(ctx.target).get(("testIamPermissions", parent, tuple(CREATE_PERMISSIONS)),
                                               lambda: ctx.call(ask)))
    except Exception as exc:  # noqa: BLE001
        if is_status(exc, 404, 501):
            notes.append(f"could not check permissions on {parent} (testIamPermissions not served)")
            return []
        raise
    return [(parent, p) for p in CREATE_PERMISSIONS if p not in got]


def _on_billing(ctx: Ctx, account: str, notes: list[str]) -> list[tuple[str, str]]:
    """(resource, permission) the caller lacks to link the billing `account` (its ID)."""
    acct = billing_mod.account_name(account)
    try:
        got = shared_reads(ctx.target).get(   # one billing account for the fleet: asked once per run
            ("testIamPermissions", acct, tuple(BILLING_PERMISSIONS)),
            lambda: billing_mod.test_permissions(ctx, account, BILLING_PERMISSIONS))
    except Exception as exc:  # noqa: BLE001
        if is_status(exc, 403):
            raise ProvisionError(f"billing account {account} not found or not yours; you need "
                                 "Billing Account User (roles/billing.user) on it") from None
        if is_status(exc, 404, 501):
            notes.append(f"could not check permissions on {acct} (not found or not served)")
            return []
        raise
    return [(acct, p) for p in BILLING_PERMISSIONS if p not in got]
