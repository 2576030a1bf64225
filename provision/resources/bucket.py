"""The Cloud Storage bucket: create or adopt, read-only when `create: false`, and the upload of a
local tree under a prefix (parallel, skipping objects already there with the same checksum).

Only DICOM Part-10 files are uploaded (the 4 bytes `DICM` after the 128-byte preamble): the
import fails on any object that is not DICOM ("Returns an error if any of the files to import
are not DICOM files", ImportDicomDataRequest), so a README.txt in the tree would fail it on
every apply. Files left out are counted in one note.

Kind `bucket`: create (recorded first), `-/+ replace` when the location of a bucket provision
made differs (a bucket's location cannot change), delete a recorded bucket the blueprint no
longer names (kept while it holds objects, unless delete_data). A bucket provision did not make
is never deleted. Reads `bucket`, `bucket_owner`, `bucket_objects`, `old_bucket:<name>`.
"""
from __future__ import annotations

import base64
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision.gcp.context import Ctx
from provision.errors import ProvisionError
from provision.gcp.errors import StepError, is_already_exists, is_status
from provision.gcp.retry import Cancelled
from provision.resources.base import Draft, Live, Reads
from provision.resources.steps import CREATE, DELETE, NOOP, REPLACE, Options, Step, field_change

UPLOAD_WORKERS = 8
KIND = "bucket"
COUNT_CAP = 1000


@dataclass
class BucketState:
    name: str
    exists: bool
    accessible: bool = True          # False: it exists but belongs to someone who did not share it (403)
    location: str = ""
    project_number: str = ""
    labels: dict = field(default_factory=dict)
    requester_pays: bool = False     # known only when Cloud Storage asked for a billing project


def read(ctx: Ctx, name: str) -> BucketState:
    client = ctx.target.storage()

    def get() -> BucketState:
        try:
            b = client.get_bucket(name, retry=None)
        except Exception as exc:  # noqa: BLE001
            if is_status(exc, 404):
                return BucketState(name, exists=False, accessible=True)
            if is_status(exc, 403):
                return BucketState(name, exists=True, accessible=False)
            if is_requester_pays(exc):   # someone's Requester Pays bucket, asked without a billing project
                return BucketState(name, exists=True, accessible=True, requester_pays=True)
            raise
        return BucketState(name, exists=True, location=b.location or "", project_number=str(b.project_number or ""),
                           labels=dict(b.labels or {}))

    return ctx.call(get)


def create(ctx: Ctx, project_id: str, spec: Any, project_number: str | None = None) -> BucketState:
    """Create the bucket in the project; adopt it if it already exists and is ours."""
    client = ctx.target.storage(project_id)

    def attempt() -> BucketState | None:
        try:
            b = client.create_bucket(spec.name, project=project_id, location=spec.location, retry=None)
        except Exception as exc:  # noqa: BLE001
            if is_already_exists(exc):
                return None
            raise
        return BucketState(spec.name, True, True, b.location or "", str(b.project_number or ""))

    made = ctx.call(attempt)
    if made is not None:
        return made
    live = read(ctx, spec.name)
    if live.exists and live.accessible and (not project_number or not live.project_number
                                           or live.project_number == project_number):
        ctx.note(f"bucket gs://{spec.name} already exists: adopted")
        return live
    raise StepError("bucket", f"gs://{spec.name}",
                    "the bucket name is taken by another project (bucket names are global)",
                    fix="choose another bucket.name, or set `create: false` if the bucket is yours to read",
                    action="create")


def delete(ctx: Ctx, name: str, *, force: bool = False) -> bool:
    """Delete the bucket (and, with force, its objects). Returns False when it holds objects and not force."""
    client = ctx.target.storage()
    bucket = client.bucket(name)
    blobs = ctx.call(lambda: list(client.list_blobs(name, max_results=1, retry=None)))
    if blobs and not force:
        return False
    if force:
        for blob in ctx.call(lambda: list(client.list_blobs(name, retry=None))):
            ctx.call(lambda b=blob: _ignore_404(lambda: b.delete(retry=None)))
    ctx.call(lambda: _ignore_404(lambda: bucket.delete(retry=None)))
    return True


def _ignore_404(fn):
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001
        if is_status(exc, 404):
            return None
        raise


# ---------------------------------------------------------------------------- upload
@dataclass
class LocalFile:
    path: Path
    name: str          # object name
    size: int
    crc32c: str        # base64, as Cloud Storage reports it
    md5: str


def _checksums(path: Path) -> tuple[str, str]:
    import google_crc32c

    crc = google_crc32c.Checksum()
    md5 = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            crc.update(chunk)
            md5.update(chunk)
    return base64.b64encode(crc.digest()).decode(), base64.b64encode(md5.digest()).decode()


class LocalFiles(list):
    """The files to upload (LocalFile items), the directory they come from (`root`) and `skipped`:
    the relative paths of the files left out because they are not DICOM. `pending` keeps both on
    the files it selects."""

    def __init__(self, items=(), skipped: list[str] | None = None, root: Path | None = None):
        super().__init__(items)
        self.skipped = list(skipped or [])
        self.root = root


def is_dicom(path: Path) -> bool:
    """A DICOM Part-10 file: 128 bytes of preamble, then `DICM`."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def local_files(upload: Any) -> LocalFiles:
    """Every regular DICOM file under `upload.from_`, named `prefix + relative/path`; the other
    files are listed in `skipped` (dot files and dot directories are ignored altogether)."""
    root = Path(upload.from_)
    prefix = upload.prefix or ""
    out = LocalFiles(root=root)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in sorted(filenames):
            if fn.startswith("."):
                continue
            p = Path(dirpath) / fn
            if not p.is_file():
                continue
            rel = p.relative_to(root).as_posix()
            if not is_dicom(p):
                out.skipped.append(rel)
                continue
            crc, md5 = _checksums(p)
            out.append(LocalFile(p, prefix + rel, p.stat().st_size, crc, md5))
    return out


def skipped_note(files: list[LocalFile]) -> str | None:
    """One line about the files left out of the upload (None when there are none)."""
    skipped = getattr(files, "skipped", None) or []
    if not skipped:
        return None
    root = getattr(files, "root", None)
    where = f" in {root}" if root else ""
    example = skipped[0] if len(skipped) == 1 else f"e.g. {skipped[0]}"
    return f"{len(skipped)} file(s){where} are not DICOM Part-10 files (no DICM preamble) and are not uploaded ({example})"


def upload_notes(files: list[LocalFile]) -> list[str]:
    """The plan's notes about the local upload tree: [] or the skipped-files note."""
    note = skipped_note(files)
    return [f"upload: {note}"] if note else []


def is_requester_pays(exc: Exception) -> bool:
    """Cloud Storage's 400 for a Requester Pays bucket asked without a billing project ("Bucket is a
    requester pays bucket but no user project provided.", reason `required`)."""
    return is_status(exc, 400) and "requester pays" in str(exc).lower()


def list_objects(ctx: Ctx, bucket: str, prefix: str = "", user_project: str | None = None) -> dict[str, dict]:
    """name -> {crc32c, md5, generation, size} for the objects under `prefix`. `user_project`: the
    billing project of a Requester Pays bucket (sent as `userProject`, as gsutil -u and gcloud
    --billing-project do)."""
    client = ctx.target.storage()

    def list_all() -> dict[str, dict]:
        out = {}
        for b in client.list_blobs(client.bucket(bucket, user_project=user_project), prefix=prefix or None,
                                   retry=None):
            out[b.name] = {"crc32c": b.crc32c, "md5": b.md5_hash, "generation": str(b.generation or ""),
                           "size": b.size}
        return out

    return ctx.call(list_all)


def pending(files: list[LocalFile], remote: dict[str, dict]) -> LocalFiles:
    """Local files whose object is missing or differs (crc32c, else md5)."""
    out = LocalFiles(skipped=getattr(files, "skipped", None), root=getattr(files, "root", None))
    for f in files:
        r = remote.get(f.name)
        if r is None:
            out.append(f)
        elif r.get("crc32c"):
            if r["crc32c"] != f.crc32c:
                out.append(f)
        elif r.get("md5") != f.md5:
            out.append(f)
    return out


def upload(ctx: Ctx, bucket: str, files: list[LocalFile]) -> int:
    """Upload in parallel (8 workers), reporting counts; returns how many were uploaded. Files the
    listing left out as not DICOM (`files.skipped`) are named in one note."""
    note = skipped_note(files)
    if note:
        ctx.note(note)
    if not files:
        return 0
    client = ctx.target.storage()
    b = client.bucket(bucket)
    total = len(files)
    done = 0
    ctx.progress(f"uploading {total} file(s) to gs://{bucket}", 0, total)

    def one(f: LocalFile) -> None:
        if ctx.cancel is not None and ctx.cancel.is_set():
            raise Cancelled()  # interrupted: start no new file
        def put():
            blob = b.blob(f.name)
            blob.crc32c = f.crc32c  # the server checks what it received
            # local_files only lists DICOM Part-10 files, whatever their extension.
            blob.upload_from_filename(str(f.path), content_type="application/dicom", retry=None, checksum="crc32c")
        ctx.call(put)

    with ThreadPoolExecutor(max_workers=UPLOAD_WORKERS, thread_name_prefix="upload") as pool:
        futures = [pool.submit(one, f) for f in files]
        try:
            for fut in as_completed(futures):
                fut.result()
                done += 1
                ctx.progress(f"uploaded {done}/{total}", done, total)
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
    return done


def count_objects(ctx: Ctx, name: str, cap: int = COUNT_CAP) -> int:
    """How many objects the bucket holds, counting at most `cap` (0 when it is gone)."""
    client = ctx.target.storage()

    def count() -> int:
        try:
            return sum(1 for _ in client.list_blobs(name, max_results=cap, retry=None))
        except Exception as exc:  # noqa: BLE001
            if is_status(exc, 404):
                return 0
            raise

    return ctx.call(count)


def _many(n: int, cap: int = COUNT_CAP) -> str:
    return f"{n}+" if n >= cap else str(n)


# ---------------------------------------------------------------------------- kind
def is_ours(bp: Any, live: Live) -> bool:
    """The blueprint's bucket belongs to its project (same project number), or does not exist yet
    and this blueprint creates it."""
    if not bp.bucket:
        return False
    b = live.get("bucket")
    if b is not None and b.exists:
        return bool(b.accessible and b.project_number and live.project_number
                    and b.project_number == live.project_number)
    return bool(bp.bucket.create)


def reads(bp: Any, live: Live, phase: int) -> Reads:
    out: Reads = {}
    name = bp.bucket.name if bp.bucket else None
    if phase == 1 and name:
        out["bucket"] = lambda ctx: read(ctx, name)
    if phase == 2 and name:
        b = live.get("bucket")
        if bp.bucket.create and b.exists and b.project_number and b.project_number != live.project_number:
            from provision.resources import project as project_mod

            # to name the owner in the error; None if hidden
            out["bucket_owner"] = lambda ctx: project_mod.read(ctx, b.project_number)
    if phase == 3:
        state = live.get("bucket")
        moved = state is not None and state.location and bp.bucket and \
            state.location.upper() != bp.bucket.location.upper()
        for old in live.record.names(KIND):
            if old == name and (live.opts.destroy or moved):   # what destroy or a replace would delete
                out["bucket_objects"] = lambda ctx: count_objects(ctx, name)
            elif old != name:
                out[f"old_bucket:{old}"] = lambda ctx, old=old: (read(ctx, old), count_objects(ctx, old))
    return out


def diff(bp: Any, live: Live, opts: Options, draft: Draft) -> None:
    name = bp.bucket.name if bp.bucket else None
    for old in live.record.names(KIND):
        if old != name:
            state, objects = live.get(f"old_bucket:{old}", (None, 0))
            _remove(draft, old, state, objects, opts, "the blueprint no longer names it")
    if not name:
        return
    b, spec, state = bp.bucket, bp.bucket, live.get("bucket")
    ours = live.record.owns(KIND, name)
    if opts.destroy:
        if not state.exists:
            if ours:
                _remove(draft, name, state, 0, opts, "destroy")
            return
        if not is_ours(bp, live):
            draft.keep(KIND, KIND, f"gs://{name}", "belongs to another project: not deleted")
        elif not ours:
            draft.keep(KIND, KIND, f"gs://{name}", "not created by provision (adopted, or create: false): not deleted")
        else:
            _remove(draft, name, state, live.get("bucket_objects", 0), opts, "destroy")
        return
    pid = bp.project.id
    if not b.create:
        if not state.exists:
            raise ProvisionError(f"bucket gs://{name} does not exist, and the blueprint says `create: false`; "
                                 "create it, or set `bucket.create: true`")
        draft.add(Step(KIND, KIND, f"gs://{name}", NOOP, ["exists; read only (create: false)"], ["project", "billing"]))
        return
    if not state.exists:
        draft.add(Step(KIND, KIND, f"gs://{name}", CREATE, [f"create gs://{name} in {spec.location}"], ["project", "billing"],
                       lambda ctx: _create(ctx, pid, spec), claims=[("resource", KIND, name)]))
        return
    if not state.accessible:
        raise ProvisionError(f"bucket gs://{name}: the name is taken (it answers 403: it exists in a project you "
                             "cannot read; bucket names are global); pick another bucket.name, or set "
                             "create: false if it is yours to read and you are granted access")
    if not is_ours(bp, live):
        owner = live.get("bucket_owner")
        who = owner.project_id if owner is not None else f"number {state.project_number}"
        raise ProvisionError(f"bucket gs://{name}: bucket name taken by project {who} (this blueprint's project is "
                             f"{pid}); pick another name or set create: false to only read it")
    if state.location and state.location.upper() != spec.location.upper():
        if ours:
            n = live.get("bucket_objects", 0)
            draft.add(Step(KIND, KIND, f"gs://{name}", REPLACE,
                           [f"location {state.location} -> {spec.location}: a bucket's location cannot change",
                            f"its {_many(n)} object(s) are deleted with it, then the bucket is created again in "
                            f"{spec.location}" + (" and the upload runs again" if spec.upload else
                                                  " (empty: nothing uploads them again)"),
                            "the stores keep the studies already imported"],
                           ["project", "billing"], lambda ctx: _replace(ctx, pid, spec),
                           fields=[field_change("location", state.location, spec.location)]))
            live.read["bucket_replace"] = True
            return
        draft.add(Step(KIND, KIND, f"gs://{name}", NOOP, [], ["project", "billing"],
                       drift=[f"location {state.location}, the blueprint says {spec.location}: the bucket was not "
                              "created by provision, so it is not replaced (move its objects yourself, or pick "
                              "another bucket.name)"]))
        return
    draft.add(Step(KIND, KIND, f"gs://{name}", NOOP, [], ["project", "billing"]))


def _create(ctx: Ctx, project_id: str, spec: Any) -> str:
    ctx.facts["record"].add_resource(ctx, KIND, spec.name)
    create(ctx, project_id, spec, ctx.facts.get("project_number"))
    return f"gs://{spec.name}"


def _replace(ctx: Ctx, project_id: str, spec: Any) -> str:
    delete(ctx, spec.name, force=True)
    create(ctx, project_id, spec, ctx.facts.get("project_number"))
    return f"gs://{spec.name} created again in {spec.location}"


def _remove(draft: Draft, name: str, state: BucketState | None, objects: int, opts: Options, why: str) -> None:
    """A recorded bucket to delete: kept while it holds objects, unless delete_data."""
    resource = f"gs://{name}"
    step_id = KIND if why == "destroy" else f"{KIND}:{name}"
    deps = [f"bucket-iam:{name}", "bucket-iam"]
    if state is None or not state.exists:
        draft.add(Step(step_id, KIND, resource, DELETE, ["already gone: forget it in the record"], [],
                       lambda ctx: (ctx.facts["record"].drop_resource(ctx, KIND, name), "forgotten")[1], forgets=1))
    elif objects and not opts.delete_data:
        draft.keep(step_id, KIND, resource, f"kept: holds {_many(objects)} object(s) (--delete-data deletes them "
                                            "with the bucket)")
    else:
        what = f"delete gs://{name}" + (f" and its {_many(objects)} object(s)" if objects else "")
        draft.add(Step(step_id, KIND, resource, DELETE, [what], deps,
                       lambda ctx: _delete_recorded(ctx, name, force=opts.delete_data)))


def _delete_recorded(ctx: Ctx, name: str, *, force: bool) -> str:
    if not delete(ctx, name, force=force):
        raise StepError(ctx.step, f"gs://{name}", "the bucket received objects since the plan: not deleted",
                        fix="plan again (--delete-data deletes a bucket with its objects)", action="delete")
    ctx.facts["record"].drop_resource(ctx, KIND, name)
    return "deleted"
