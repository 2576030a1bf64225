"""What several kinds read of Cloud Storage: the objects under a prefix, whether an error says a
bucket is Requester Pays, and whether the blueprint's bucket belongs to its project.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from provision.gcp.context import Ctx
from provision.gcp.errors import is_status
from provision.resources.base import Live

if TYPE_CHECKING:  # for annotations only: no import at run time
    from provision.blueprint.models import Blueprint


def is_requester_pays(exc: Exception) -> bool:
    """Cloud Storage's 400 for a Requester Pays bucket asked without a billing project ("Bucket is a
    requester pays bucket but no user project provided.", reason `required`)."""
    return is_status(exc, 400) and "requester pays" in str(exc).lower()


def list_objects(ctx: Ctx, bucket: str, prefix: str = "", user_project: str | None = None) -> dict[str, dict[str, Any]]:
    """name -> {crc32c, md5, generation, size} for the objects under `prefix`. `user_project`: the
    billing project of a Requester Pays bucket (sent as `userProject`, as gsutil -u and gcloud
    --billing-project do)."""
    client = ctx.target.storage()

    def list_all() -> dict[str, dict[str, Any]]:
        out = {}
        for b in client.list_blobs(client.bucket(bucket, user_project=user_project), prefix=prefix or None,
                                   retry=None):
            out[b.name] = {"crc32c": b.crc32c, "md5": b.md5_hash, "generation": str(b.generation or ""),
                           "size": b.size}
        return out

    return ctx.call(list_all)


def is_ours(bp: Blueprint, live: Live) -> bool:
    """The blueprint's bucket belongs to its project (same project number), or does not exist yet
    and this blueprint creates it."""
    if not bp.bucket:
        return False
    b = live.bucket
    if b is not None and b.exists:
        return bool(b.accessible and b.project_number and live.project_number
                    and b.project_number == live.project_number)
    return bool(bp.bucket.create)
