"""Kind `viewer-account`: the hosted viewer's own service account (IAM v1 projects.serviceAccounts).

The viewer reads the stores as this account (its Cloud Run identity), so nobody's own token ever
reaches the browser. It is `<service>-viewer@PROJECT.iam.gserviceaccount.com`; its only role is
roles/healthcare.dicomViewer on the blueprint's stores, which the store grants kind adds (one
grant path for every store grant). Recorded before it is made, deleted (and forgotten) once the
blueprint no longer deploys the viewer, after the service that runs as it is gone.

Viewer sources in other projects cannot be granted by provision: the plan says who must grant
what to this account.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from provision.gcp.context import Ctx
from provision.resources import hosting_calls as calls
from provision.resources.base import Draft, Live, Reads
from provision.resources.hosting_names import (
    SERVICE_ACCOUNT,
    VIEWER_ROLE,
    account_email,
    account_id,
    deploys,
    service_id,
)
from provision.resources.steps import CREATE, DELETE, NOOP, Options, Step

if TYPE_CHECKING:  # for annotations only: no import at run time
    from provision.blueprint.models import Blueprint

KIND = "viewer-account"


def _key(email: str) -> str:
    return f"viewer_account:{email}"


def _wanted(bp: Blueprint, opts: Options) -> str | None:
    return account_email(bp) if deploys(bp) and not opts.destroy else None


def reads(bp: Blueprint, live: Live, phase: int) -> Reads:
    if live.project is None:
        return {}
    pid = bp.project.id
    if phase == 2 and _wanted(bp, live.opts):
        email = account_email(bp)
        return {_key(email): lambda ctx: calls.get_account(ctx, pid, email)}
    if phase == 3:
        return {_key(e): (lambda ctx, e=e: calls.get_account(ctx, pid, e))  # type: ignore[misc]  # a lambda with a bound default (mypy cannot infer it)
                for e in live.record.names(SERVICE_ACCOUNT) if e != _wanted(bp, live.opts)}
    return {}


def diff(bp: Blueprint, live: Live, opts: Options, draft: Draft) -> None:
    pid = bp.project.id
    wanted = _wanted(bp, opts)
    if wanted:
        exists = live.get(_key(wanted)) is not None
        changes = [] if exists else [(f"+ service account {wanted} (the hosted viewer's identity: it reads the "
                                     f"stores with {VIEWER_ROLE}, nothing else)")]
        draft.add(Step(KIND, KIND, wanted, NOOP if exists else CREATE, changes, ["apis", "record"],
                       None if exists else _create(pid, account_id(service_id(bp))),
                       claims=[] if exists else [("resource", SERVICE_ACCOUNT, wanted)]))
        _foreign_sources(bp, wanted, draft)
    for email in live.record.names(SERVICE_ACCOUNT):
        if email == wanted:
            continue
        gone = live.has(_key(email)) and live.get(_key(email)) is None
        draft.add(Step(f"viewer-account:{email.split('@')[0]}", KIND, email, DELETE,
                       [f"- service account {email} (made by provision for the hosted viewer"
                        + (", already gone: forget it in the record)" if gone else ")")],
                       ["viewer-service", "record"], _delete(pid, email)))


def finish(bp: Blueprint, live: Live, opts: Options, draft: Draft) -> None:
    """An account is deleted after its store grants are revoked (a grant to a deleted account would stay
    behind as `deleted:serviceAccount:...`)."""
    revokes = [s.id for s in draft.steps if s.changing and (s.kind == "dicom-store-iam"
                                                            or (s.kind == "viewer-service" and s.action == DELETE))]
    for s in draft.steps:
        if s.kind == KIND and s.action == DELETE:
            s.deps += [r for r in revokes if r not in s.deps]


def _foreign_sources(bp: Blueprint, email: str, draft: Draft) -> None:
    """Viewer sources in other projects: the account needs read access there, which only their owners can grant."""
    for s in getattr(bp, "viewer_sources", None) or []:
        store = getattr(s, "store", None)
        if store and store.split("/")[1] != bp.project.id:
            project, location, dataset, name = store.split("/")[1::2]
            who = getattr(s, "contact", None) or f"the owners of project {project}"
            draft.note(f"viewer source {s.name}: the hosted viewer reads it as {email}, which needs {VIEWER_ROLE} "
                       f"on {store}; provision cannot grant it there. Ask {who} to run: gcloud healthcare "
                       f"dicom-stores add-iam-policy-binding {name} --project={project} --location={location} "
                       f"--dataset={dataset} --member=serviceAccount:{email} --role={VIEWER_ROLE}")
        elif getattr(s, "public", None) == "nih-chest-xray":
            draft.note(f"viewer source {s.name}: the NIH Chest X-ray store is shared on request; ask for access for "
                       f"serviceAccount:{email} too (the hosted viewer reads it as that account)")


def _create(pid: str, account: str) -> Callable[[Ctx], str]:
    def run(ctx: Ctx) -> str:
        email = f"{account}@{pid}.iam.gserviceaccount.com"
        ctx.facts.record.add_resource(ctx, SERVICE_ACCOUNT, email)   # before it exists (record.py)
        ctx.progress(f"creating service account {email}")
        calls.create_account(ctx, pid, account, "OHIF viewer (provision)")
        return f"created {email}"
    return run


def _delete(pid: str, email: str) -> Callable[[Ctx], str]:
    def run(ctx: Ctx) -> str:
        calls.delete_account(ctx, pid, email)
        ctx.facts.record.drop_resource(ctx, SERVICE_ACCOUNT, email)   # after it is gone
        return f"deleted {email}"
    return run
