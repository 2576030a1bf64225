"""The Healthcare service agent's read access to the import bucket.

On a bucket of this blueprint's project, provision grants `roles/storage.objectViewer` to the
agent (additive RMW, 412 conflicts retried). On a foreign bucket it grants nothing: it checks
what it can (the bucket's policy, if we may read it) and, when the agent lacks access, says
exactly what to ask the bucket's owner.
"""
from __future__ import annotations

from provision.gcp.context import Ctx
from provision.gcp.errors import is_status
from provision.resources import iam

VIEWER = "roles/storage.objectViewer"
# Roles that let the agent read objects for an import.
READER_ROLES = {VIEWER, "roles/storage.objectAdmin", "roles/storage.admin", "roles/storage.legacyObjectReader",
                "roles/storage.objectUser"}


def read(ctx: Ctx, bucket: str) -> dict:
    return iam.read(ctx, iam.bucket_io(ctx, bucket))


def grant(ctx: Ctx, bucket: str, member: str) -> list[iam.Pair]:
    """Grant the agent read access, marking it as added by provision (a bucket label)."""
    return iam.add_marked(ctx, iam.bucket_io(ctx, bucket), iam.bucket_labels(ctx, bucket), [(VIEWER, member)])


def revoke(ctx: Ctx, bucket: str, member: str) -> list[iam.Pair]:
    """Remove the agent's read access if provision added it."""
    return iam.remove_marked(ctx, iam.bucket_io(ctx, bucket), iam.bucket_labels(ctx, bucket), [(VIEWER, member)])


def agent_can_read(policy: dict | None, member: str) -> bool:
    for b in (policy or {}).get("bindings") or []:
        if b.get("condition") or b.get("role") not in READER_ROLES:
            continue
        if member in (b.get("members") or []) or "allUsers" in (b.get("members") or []):
            return True
    return False


def check_foreign(ctx: Ctx, bucket: str, member: str) -> bool | None:
    """Whether the agent can read a bucket we do not own: True/False, None when we cannot tell."""
    try:
        policy = ctx.call(iam.bucket_io(ctx, bucket).read)
    except Exception as exc:  # noqa: BLE001
        if is_status(exc, 403, 404):
            return None
        raise
    return agent_can_read(policy, member)


def ask_owner(bucket: str, member: str) -> str:
    """What to ask a foreign bucket's owner for."""
    email = member.split(":", 1)[-1]
    return (f"ask the owner of gs://{bucket} to grant {member} the role {VIEWER} on the bucket:\n"
            f"    gcloud storage buckets add-iam-policy-binding gs://{bucket} --member={member} --role={VIEWER}\n"
            f"  (or: gsutil iam ch serviceAccount:{email}:objectViewer gs://{bucket}), then apply again")
