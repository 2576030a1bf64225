"""Whether the Healthcare service agent may read a bucket, shared by the bucket-iam kind (which
grants on the blueprint's own bucket and reports on others) and the dicom-import kind (which
warns before an import that would be refused): the roles that allow reading objects, the
bucket's policy when we may read it, and what to ask a foreign bucket's owner.
"""
from __future__ import annotations

from typing import Any

from provision.gcp.context import Ctx
from provision.gcp.errors import is_status
from provision.resources import iam
from provision.resources.bucket_reads import is_requester_pays

VIEWER = "roles/storage.objectViewer"
# Roles that let the agent read objects for an import.
READER_ROLES = {VIEWER, "roles/storage.objectAdmin", "roles/storage.admin", "roles/storage.legacyObjectReader",
                "roles/storage.objectUser"}


def read_if_there(ctx: Ctx, bucket: str) -> dict[str, Any] | None:
    """The bucket's policy, None when the bucket is gone or hidden from us."""
    try:
        return ctx.call(iam.bucket_io(ctx, bucket).read)
    except Exception as exc:  # noqa: BLE001
        if is_status(exc, 403, 404):
            return None
        if is_requester_pays(exc):   # a Requester Pays bucket of someone else: we cannot tell
            return None
        raise


def agent_can_read(policy: dict[str, Any] | None, member: str | None) -> bool:
    """Whether an unconditional reader binding of `policy` names `member` or allUsers (member None:
    the agent, not known yet, which only allUsers covers)."""
    for b in (policy or {}).get("bindings") or []:
        if b.get("condition") or b.get("role") not in READER_ROLES:
            continue
        if member in (b.get("members") or []) or "allUsers" in (b.get("members") or []):
            return True
    return False


def check_foreign(ctx: Ctx, bucket: str, member: str) -> bool | None:
    """Whether the agent can read a bucket we do not own: True/False, None when we cannot tell."""
    policy = read_if_there(ctx, bucket)
    return None if policy is None else agent_can_read(policy, member)


def ask_owner(bucket: str, member: str) -> str:
    """What to ask a foreign bucket's owner for."""
    email = member.split(":", 1)[-1]
    return (f"ask the owner of gs://{bucket} to grant {member} the role {VIEWER} on the bucket:\n"
            f"    gcloud storage buckets add-iam-policy-binding gs://{bucket} --member={member} --role={VIEWER}\n"
            f"  (or: gsutil iam ch serviceAccount:{email}:objectViewer gs://{bucket}), then apply again")
