"""Kind `upload`: local files under `bucket.upload.from` copied to the bucket under its prefix,
only those missing or different (checksums). Reads `local` (phase 1) and `remote` (phase 2).
Uploaded objects are data, not resources: they are never deleted by apply."""
from __future__ import annotations

from typing import TYPE_CHECKING

from provision.gcp.context import Ctx
from provision.resources.base import Draft, Key, Live, Reads
from provision.resources.bucket_reads import list_objects
from provision.resources.steps import CREATE, NOOP, Options, Step
from provision.resources.upload_files import local_files, pending, to_upload, upload, upload_notes
from provision.words import plural

if TYPE_CHECKING:  # for annotations only: no import at run time
    from provision.blueprint.models import Blueprint

KIND = "upload"


def reads(bp: Blueprint, live: Live, phase: int) -> Reads:
    up = bp.bucket.upload if bp.bucket else None
    if up is None:
        return {}
    if phase == 1:
        return {Key.LOCAL: lambda ctx: local_files(up)}
    state, name = live.bucket, bp.bucket.name if bp.bucket else ""
    if phase == 2 and state is not None and state.exists and state.accessible:
        return {Key.REMOTE: lambda ctx: list_objects(ctx, name, up.prefix or "")}
    return {}


def diff(bp: Blueprint, live: Live, opts: Options, draft: Draft) -> None:
    if opts.destroy or not (bp.bucket and bp.bucket.upload):
        return
    b, up = bp.bucket, bp.bucket.upload
    todo = to_upload(live)
    n, total = len(todo), len(live.local)

    def run(ctx: Ctx) -> str:
        remote = list_objects(ctx, b.name, up.prefix or "")
        files = pending(local_files(up), remote)
        done = upload(ctx, b.name, files)
        return f"uploaded {plural(done, 'file')}" if done else "already uploaded"

    for note in upload_notes(live.local):
        draft.note(note)
    draft.add(Step(KIND, KIND, f"gs://{b.name}/{up.prefix or ''}", CREATE if n else NOOP,
                   [f"upload {n} of {plural(total, 'file')} from {up.from_}"] if n else [], ["bucket"],
                   run if n else None))
