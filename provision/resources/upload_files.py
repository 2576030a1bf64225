"""The local tree of DICOM files to upload and the upload itself, shared by the upload kind (which
sends the files) and the dicom-import kind (which waits for the files the upload will send).

Only DICOM Part-10 files are uploaded (the 4 bytes `DICM` after the 128-byte preamble): the
import fails on any object that is not DICOM ("Returns an error if any of the files to import
are not DICOM files", ImportDicomDataRequest,
https://cloud.google.com/healthcare-api/docs/reference/rest/v1/projects.locations.datasets.dicomStores/import),
so a README.txt in the tree would fail it on every apply. Files left out are counted in one note.
Uploads run in parallel and skip objects already there with the same checksum.
"""
from __future__ import annotations

import base64
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from collections.abc import Iterable
from typing import Any

import google_crc32c

from provision.gcp.context import Ctx
from provision.gcp.retry import Cancelled
from provision.resources.base import Live
from provision.resources.states import LocalFile

UPLOAD_WORKERS = 8


def _checksums(path: Path) -> tuple[str, str]:
    crc = google_crc32c.Checksum()
    md5 = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            crc.update(chunk)
            md5.update(chunk)
    return base64.b64encode(crc.digest()).decode(), base64.b64encode(md5.digest()).decode()


class LocalFiles(list[Any]):
    """The files to upload (LocalFile items), the directory they come from (`root`) and `skipped`:
    the relative paths of the files left out because they are not DICOM. `pending` keeps both on
    the files it selects."""

    def __init__(self, items: Iterable[Any] = (), skipped: list[str] | None = None, root: Path | None = None) -> None:
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


def pending(files: list[LocalFile], remote: dict[str, dict[str, Any]]) -> LocalFiles:
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
        def put() -> Any:
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


def to_upload(live: Live) -> list[LocalFile]:
    """The local files the upload step will send (all of them into a bucket to be created or replaced)."""
    state = live.bucket
    if state is None or not state.exists or live.bucket_replace:
        return list(live.local)
    return pending(live.local, live.remote)
