"""The API calls of the hosted viewer's resources (shared by the hosting kinds, below them):
IAM v1 service accounts, Artifact Registry v1 repositories, Cloud Run Admin v2 services and their
operations, and IAP's service agent (Service Usage v1beta1 generateServiceIdentity).

Reads answer None for what is absent, and also while the API that holds it is not enabled yet
(a fresh project: apply enables it first, so absent is what it is). Every call goes through
`ctx.call` (the one retry policy); operations are polled with growing intervals under the step's
deadline (provision.gcp.operations.wait).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from provision.gcp.context import Ctx
from provision.gcp.errors import is_already_exists, is_service_disabled, is_status
from provision.gcp.retry import NotYet
from provision.resources.hosting_names import REPOSITORY, iap_agent

if TYPE_CHECKING:  # for annotations only: no import at run time
    from provision.resources.iam import PolicyIO

IAP_SERVICE = "iap.googleapis.com"


def absent_ok(ctx: Ctx, fn: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    """`fn()`'s answer, or None for 404 (and 403 SERVICE_DISABLED: nothing can exist there yet)."""
    def attempt() -> dict[str, Any] | None:
        try:
            return fn()
        except Exception as exc:
            if is_status(exc, 404) or is_service_disabled(exc):
                return None
            raise
    return ctx.call(attempt)


# ---------------------------------------------------------------------------- service accounts
def _accounts(ctx: Ctx) -> Any:
    return ctx.target.iam_admin().projects().serviceAccounts()


def get_account(ctx: Ctx, project_id: str, email: str) -> dict[str, Any] | None:
    return absent_ok(ctx, lambda: _accounts(ctx).get(name=f"projects/{project_id}/serviceAccounts/{email}")
                     .execute(num_retries=0))


def create_account(ctx: Ctx, project_id: str, account_id: str, display: str) -> dict[str, Any]:
    """Create the account (adopting one that exists), then read it back until it shows."""
    def attempt() -> None:
        try:
            _accounts(ctx).create(name=f"projects/{project_id}", body={
                "accountId": account_id, "serviceAccount": {"displayName": display}}).execute(num_retries=0)
        except Exception as exc:
            if not is_already_exists(exc):
                raise
    ctx.call(attempt)
    email = f"{account_id}@{project_id}.iam.gserviceaccount.com"

    def visible() -> dict[str, Any]:
        found = get_account(ctx, project_id, email)
        if found is None:
            raise NotYet(f"service account {email} not visible yet")
        return found
    return ctx.call(visible)


def delete_account(ctx: Ctx, project_id: str, email: str) -> None:
    absent_ok(ctx, lambda: _accounts(ctx).delete(name=f"projects/{project_id}/serviceAccounts/{email}")
              .execute(num_retries=0))


# ---------------------------------------------------------------------------- Artifact Registry
def _repos(ctx: Ctx) -> Any:
    return ctx.target.artifactregistry().projects().locations().repositories()


def get_repository(ctx: Ctx, name: str) -> dict[str, Any] | None:
    return absent_ok(ctx, lambda: _repos(ctx).get(name=name).execute(num_retries=0))


def create_repository(ctx: Ctx, project_id: str, location: str) -> dict[str, Any]:
    """A Docker repository `cloud-run-source-deploy` in `location` (as gcloud makes it), adopted when it exists."""
    parent = f"projects/{project_id}/locations/{location}"
    body = {"format": "DOCKER", "description": "Cloud Run Source Deployments"}

    def attempt() -> dict[str, Any] | None:
        try:
            return cast("dict[str, Any]", _repos(ctx).create(parent=parent, repositoryId=REPOSITORY, body=body)
                        .execute(num_retries=0))
        except Exception as exc:
            if is_already_exists(exc):
                return None
            raise
    op = ctx.call(attempt)
    if op is not None and not op.get("done"):
        wait_op(ctx, op, lambda name: ctx.target.artifactregistry().projects().locations().operations().get(name=name),
                kind="artifactregistry.repositories.create")
    name = f"{parent}/repositories/{REPOSITORY}"

    def visible() -> dict[str, Any]:
        found = get_repository(ctx, name)
        if found is None:
            raise NotYet(f"repository {name} not visible yet")
        return found
    return ctx.call(visible)


def delete_repository(ctx: Ctx, name: str) -> None:
    op = absent_ok(ctx, lambda: _repos(ctx).delete(name=name).execute(num_retries=0))
    if op and not op.get("done"):
        wait_op(ctx, op, lambda n: ctx.target.artifactregistry().projects().locations().operations().get(name=n))


# ---------------------------------------------------------------------------- operations
def wait_op(ctx: Ctx, op: dict[str, Any], getter: Callable[[str], Any],
            on_poll: Callable[[dict[str, Any]], None] | None = None, kind: str | None = None) -> dict[str, Any]:
    """Poll a google.longrunning.Operation of `kind` (a polls.TYPICAL key: first polled when such
    operations are usually done) by name through `getter(name)` (a discovery request) until done."""
    return ctx.wait_operation(op, lambda name: getter(name).execute(num_retries=0), on_poll, kind=kind)


def wait_run(ctx: Ctx, op: dict[str, Any], on_poll: Callable[[dict[str, Any]], None] | None = None,
             kind: str | None = None) -> dict[str, Any]:
    """A Cloud Run Admin v2 operation (projects/P/locations/R/operations/ID)."""
    return wait_op(ctx, op, lambda n: ctx.target.run().projects().locations().operations().get(name=n), on_poll,
                   kind=kind)


def wait_build(ctx: Ctx, op: dict[str, Any], on_poll: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """The Cloud Build operation builds:submit answers with (polled through Cloud Build v1)."""
    return wait_op(ctx, op, lambda n: ctx.target.cloudbuild().projects().locations().operations().get(name=n),
                   on_poll, kind="cloudbuild.build")


# ---------------------------------------------------------------------------- Cloud Run services
def _services(ctx: Ctx) -> Any:
    return ctx.target.run().projects().locations().services()


def get_service(ctx: Ctx, name: str) -> dict[str, Any] | None:
    return absent_ok(ctx, lambda: _services(ctx).get(name=name).execute(num_retries=0))


def service_policy(ctx: Ctx, name: str) -> dict[str, Any] | None:
    return absent_ok(ctx, lambda: _services(ctx).getIamPolicy(resource=name, options_requestedPolicyVersion=3)
                     .execute(num_retries=0))


def delete_service(ctx: Ctx, name: str) -> None:
    op = absent_ok(ctx, lambda: _services(ctx).delete(name=name).execute(num_retries=0))
    if op and not op.get("done"):
        wait_run(ctx, op)


# ---------------------------------------------------------------------------- IAP's service agent
def ensure_iap_agent(ctx: Ctx, project_id: str, number: str) -> str:
    """Create IAP's service agent (idempotent: generateServiceIdentity); its email."""
    su = ctx.target.serviceusage("v1beta1")

    def attempt() -> dict[str, Any]:
        op = su.services().generateServiceIdentity(parent=f"projects/{project_id}/services/{IAP_SERVICE}") \
            .execute(num_retries=0)
        return ctx.wait_serviceusage(op, version="v1beta1")
    op = ctx.call(attempt)
    return (op.get("response") or {}).get("email") or iap_agent(number)


# ---------------------------------------------------------------------------- policies
def run_service_io(ctx: Ctx, name: str) -> PolicyIO:
    """Cloud Run Admin v2 services getIamPolicy (GET) / setIamPolicy, as an iam.PolicyIO."""
    from provision.resources.iam import PolicyIO

    def read_policy() -> dict[str, Any]:
        return cast("dict[str, Any]", _services(ctx).getIamPolicy(resource=name, options_requestedPolicyVersion=3)
                    .execute(num_retries=0))

    def write_policy(policy: dict[str, Any]) -> dict[str, Any]:
        body = {k: v for k, v in policy.items() if k in ("version", "etag", "bindings")}
        return cast("dict[str, Any]", _services(ctx).setIamPolicy(resource=name, body={"policy": body})
                    .execute(num_retries=0))

    return PolicyIO(name, read_policy, write_policy)


def iap_io(ctx: Ctx, resource: str) -> PolicyIO:
    """IAP v1 getIamPolicy / setIamPolicy on an iap_web resource (POST v1/{resource}:verb), as an iam.PolicyIO."""
    from provision.resources.iam import PolicyIO

    def read_policy() -> dict[str, Any]:
        return cast("dict[str, Any]", ctx.target.iap().v1().getIamPolicy(resource=resource, body={
            "options": {"requestedPolicyVersion": 3}}).execute(num_retries=0))

    def write_policy(policy: dict[str, Any]) -> dict[str, Any]:
        body = {k: v for k, v in policy.items() if k in ("version", "etag", "bindings")}
        return cast("dict[str, Any]", ctx.target.iap().v1().setIamPolicy(resource=resource, body={"policy": body})
                    .execute(num_retries=0))

    return PolicyIO(resource, read_policy, write_policy)


def read_policy_or_none(ctx: Ctx, io: PolicyIO) -> dict[str, Any] | None:
    """A policy, None while its resource (or its API) is absent."""
    return absent_ok(ctx, io.read)
