"""The Cloud Storage bucket: create or adopt, read-only when `create: false`, and the upload of a
local tree under a prefix (parallel, skipping objects already there with the same checksum).

Only DICOM Part-10 files are uploaded (the 4 bytes `DICM` after the 128-byte preamble): the
import fails on any object that is not DICOM ("Returns an error if any of the files to import
are not DICOM files", ImportDicomDataRequest), so a README.txt in the tree would fail it on
every apply. Files left out are counted in one note.
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
from provision.gcp.errors import StepError, is_already_exists, is_status
from provision.gcp.retry import Cancelled

UPLOAD_WORKERS = 8


@dataclass
class BucketState:
    name: str
    exists: bool
    accessible: bool = True          # False: it exists but belongs to someone who did not share it (403)
    location: str = ""
    project_number: str = ""
    labels: dict = field(default_factory=dict)


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


def list_objects(ctx: Ctx, bucket: str, prefix: str = "") -> dict[str, dict]:
    """name -> {crc32c, md5, generation, size} for the objects under `prefix`."""
    client = ctx.target.storage()

    def list_all() -> dict[str, dict]:
        out = {}
        for b in client.list_blobs(bucket, prefix=prefix or None, retry=None):
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
