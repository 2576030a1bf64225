"""Kind `upload`: local files under `bucket.upload.from` copied to the bucket under its prefix,
only those missing or different (checksums). Reads `local` (phase 1) and `remote` (phase 2).
Uploaded objects are data, not resources: they are never deleted by apply."""
from __future__ import annotations

from typing import Any

from provision.gcp.context import Ctx
from provision.words import plural
from provision.resources import bucket as bucket_mod
from provision.resources.base import Draft, Live, Reads
from provision.resources.steps import CREATE, NOOP, Options, Step

KIND = "upload"


def reads(bp: Any, live: Live, phase: int) -> Reads:
    up = bp.bucket.upload if bp.bucket else None
    if up is None:
        return {}
    if phase == 1:
        return {"local": lambda ctx: bucket_mod.local_files(up)}
    state = live.get("bucket")
    if phase == 2 and state.exists and state.accessible:
        return {"remote": lambda ctx: bucket_mod.list_objects(ctx, bp.bucket.name, up.prefix or "")}
    return {}


def pending(live: Live) -> list[bucket_mod.LocalFile]:
    """The local files the upload step will send (all of them into a bucket to be created or replaced)."""
    state = live.get("bucket")
    if state is None or not state.exists or live.get("bucket_replace", False):
        return list(live.get("local", []))
    return bucket_mod.pending(live.get("local", []), live.get("remote", {}))


def diff(bp: Any, live: Live, opts: Options, draft: Draft) -> None:
    if opts.destroy or not (bp.bucket and bp.bucket.upload):
        return
    b = bp.bucket
    todo = pending(live)
    n, total = len(todo), len(live.get("local", []))

    def run(ctx: Ctx) -> str:
        remote = bucket_mod.list_objects(ctx, b.name, b.upload.prefix or "")
        files = bucket_mod.pending(bucket_mod.local_files(b.upload), remote)
        done = bucket_mod.upload(ctx, b.name, files)
        return f"uploaded {plural(done, 'file')}" if done else "already uploaded"

    for note in bucket_mod.upload_notes(live.get("local", [])):
        draft.note(note)
    draft.add(Step(KIND, KIND, f"gs://{b.name}/{b.upload.prefix or ''}", CREATE if n else NOOP,
                   [f"upload {n} of {plural(total, 'file')} from {b.upload.from_}"] if n else [], ["bucket"],
                   run if n else None))
