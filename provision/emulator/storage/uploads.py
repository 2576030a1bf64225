"""Bytes on their way in: the hashing, spilling sink a media or multipart body is written to,
checksum verification, and resumable-upload sessions (a SQLite row plus a spool file under the
blob store, so a session survives a restart when `--data-dir` is set). Parsing the HTTP body
is the handlers' job; sessions take a plain `read(n)` callable."""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import tempfile
import threading
from pathlib import Path
from typing import IO, Any, Callable

import google_crc32c

from provision.emulator.errors import ApiError
from provision.emulator.storage.common import b64, gcs_error, upload_gone
from provision.emulator.worldview import WorldView

SPILL_BYTES = 8 << 20        # upload bodies beyond this go to a temp file, not memory

SCHEMA = ("CREATE TABLE IF NOT EXISTS storage_uploads ("
          " upload_id TEXT PRIMARY KEY, bucket TEXT NOT NULL, name TEXT NOT NULL, meta TEXT NOT NULL,"
          " conditions TEXT NOT NULL, received INTEGER NOT NULL DEFAULT 0, total INTEGER,"
          " created REAL NOT NULL, result TEXT)")


class Sink:
    """One upload's bytes as they arrive: hashed on the fly (MD5, CRC32C), held in memory while
    small and spilled to a temp file (next to the blob store, so storing it is a rename) once large."""

    def __init__(self, tmp_dir: Path, spill: int = SPILL_BYTES):
        self.tmp_dir = tmp_dir
        self.spill = spill
        self.md5 = hashlib.md5()
        self.crc = google_crc32c.Checksum()
        self.size = 0
        self.buf = bytearray()
        self.file: IO[bytes] | None = None
        self.path: Path | None = None

    def write(self, data: bytes) -> None:
        """Hash and keep `data` (spilling to disk once past the threshold)."""
        if not data:
            return
        self.md5.update(data)
        self.crc.update(data)
        self.size += len(data)
        if self.file is None and len(self.buf) + len(data) > self.spill:
            fd, name = tempfile.mkstemp(dir=self.tmp_dir, prefix="up-")
            self.file = os.fdopen(fd, "wb")
            self.path = Path(name)
            self.file.write(self.buf)
            self.buf = bytearray()
        if self.file is not None:
            self.file.write(data)
        else:
            self.buf += data

    @property
    def md5_b64(self) -> str:
        """MD5 of everything written, base64."""
        return b64(self.md5.digest())

    @property
    def crc32c_b64(self) -> str:
        """CRC32C of everything written, base64."""
        return b64(self.crc.digest())

    def store(self, blobs) -> str:
        """Move the bytes into the blob store; returns the blob key."""
        if self.file is not None:
            self.file.close()
            self.file = None
            key = blobs.put_file(self.path)
            self.path = None
            return key
        return blobs.put(bytes(self.buf))

    def discard(self) -> None:
        """Drop the bytes (the upload failed); removes the spill file if there is one."""
        if self.file is not None:
            self.file.close()
            self.file = None
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None


def hash_file(path: Path) -> tuple[int, str, str]:
    """(size, md5 base64, crc32c base64) of a file, in one pass."""
    md5, crc, size = hashlib.md5(), google_crc32c.Checksum(), 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            md5.update(chunk)
            crc.update(chunk)
            size += len(chunk)
    return size, b64(md5.digest()), b64(crc.digest())


def verify_hashes(declared: dict[str, str], md5_b64: str, crc_b64: str) -> None:
    """A client-declared crc32c / md5Hash that differs from what arrived is a 400, as on Google."""
    given = declared.get("crc32c")
    if given and given != crc_b64:
        raise gcs_error(400, f'Provided CRC32C "{given}" doesn\'t match calculated CRC32C "{crc_b64}".', "invalid")
    given = declared.get("md5Hash")
    if given and given != md5_b64:
        raise gcs_error(400, f'Provided MD5 hash "{given}" doesn\'t match calculated MD5 hash "{md5_b64}".', "invalid")


class UploadSessions:
    """Resumable-upload sessions: a `storage_uploads` row (what is known about the object, bytes
    received, the final record once done) and a spool file `upload_dir/<upload_id>` holding exactly
    the `received` bytes. `commit(bucket, name, *, blob, size, md5, crc32c, meta, conditions, epoch)`
    makes the finished bytes the live object."""

    def __init__(self, world: WorldView, upload_dir: Path, commit: Callable[..., dict]):
        self.world = world
        self.db = world.db
        self.blobs = world.blobs
        self.upload_dir = upload_dir
        self.commit = commit
        self._session_locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def _session_lock(self, upload_id: str) -> threading.Lock:
        with self._locks_guard:
            return self._session_locks.setdefault(upload_id, threading.Lock())

    def open(self, bucket: str, name: str, meta: dict, conditions: dict[str, int], total: int | None) -> str:
        """Record a new session (the caller has checked name, bucket and preconditions); returns its id."""
        upload_id = "ADPyc" + secrets.token_urlsafe(48)
        (self.upload_dir / upload_id).touch()
        self.db.execute("INSERT INTO storage_uploads (upload_id, bucket, name, meta, conditions, received, total, "
                        "created) VALUES (?,?,?,?,?,0,?,?)",
                        (upload_id, bucket, name, json.dumps({**meta, "name": name}), json.dumps(conditions), total,
                         self.world.clock()))
        return upload_id

    def _session(self, upload_id: str, bucket: str) -> dict:
        row = self.db.execute("SELECT bucket, name, meta, conditions, received, total, result FROM storage_uploads "
                              "WHERE upload_id=?", (upload_id,)).fetchone()
        if row is None or row[0] != bucket:
            raise upload_gone()
        b, name, meta, cond, received, total, result = row
        return {"bucket": b, "name": name, "meta": json.loads(meta), "conditions": json.loads(cond),
                "received": received, "total": total, "result": json.loads(result) if result else None}

    def chunk(self, upload_id: str, bucket: str, *, first: int | None, total: int | None,
              read: Callable[[int], bytes], length: int, declared: dict[str, str]) -> tuple[str, Any]:
        """One PUT of a resumable session. `first` is the chunk's first byte offset (None: a status
        query), `total` the object size once the client knows it. Answers ("done", object record)
        or ("partial", bytes received so far).

        The chunk is read in full (into a temp file past SPILL_BYTES) before the session's lock is
        taken, so a stalled client never blocks others on the same session; a chunk cut short
        (the client went away) changes nothing, and the session's bytes on disk are always the
        `received` ones. A reset of the world meanwhile ends the session (404)."""
        epoch = self.world.epoch
        sess = self._session(upload_id, bucket)
        if sess["result"] is not None:
            return "done", sess["result"]
        with tempfile.SpooledTemporaryFile(max_size=SPILL_BYTES, dir=str(self.upload_dir)) as spool:
            got = 0
            if first is not None and length:
                try:
                    while got < length:
                        chunk = read(min(length - got, 1 << 20))
                        if not chunk:
                            break
                        spool.write(chunk)
                        got += len(chunk)
                except OSError:
                    got = -1
                if got != length:
                    raise gcs_error(400, f"Invalid request. The request body ended after {max(got, 0)} of the "
                                         f"{length} byte(s) its Content-Length declared.", "invalid")
            with self._session_lock(upload_id):
                if self.world.epoch != epoch:
                    raise upload_gone()
                sess = self._session(upload_id, bucket)
                if sess["result"] is not None:
                    return "done", sess["result"]
                try:
                    return self._append_chunk(upload_id, bucket, sess, spool, first, length, total, declared, epoch)
                except FileNotFoundError:
                    raise upload_gone() from None  # the world was reset under us

    def _append_chunk(self, upload_id: str, bucket: str, sess: dict, spool, first: int | None, length: int,
                      total: int | None, declared: dict[str, str], epoch: int) -> tuple[str, Any]:
        path = self.upload_dir / upload_id
        received = sess["received"]
        if first is not None and length:
            if first > received:
                raise gcs_error(400, f"Invalid request. According to the Content-Range header, the upload "
                                     f"offset is {first} byte(s), which exceeds already uploaded size of "
                                     f"{received} byte(s).", "invalid")
            try:
                with open(path, "r+b") as fh:
                    fh.truncate(received)  # whatever an earlier, interrupted append left is not the session's
                    fh.seek(received)
                    spool.seek(received - first)
                    while True:
                        chunk = spool.read(1 << 20)
                        if not chunk:
                            break
                        fh.write(chunk)
            finally:
                received = path.stat().st_size
                self.db.execute("UPDATE storage_uploads SET received=? WHERE upload_id=?", (received, upload_id))
        if total is None:
            total = sess["total"]
        if total is not None and received > total:
            raise gcs_error(400, f"Invalid request. The upload size {received} exceeds the declared object "
                                 f"size {total}.", "invalid")
        if total is None or received < total:
            self.db.execute("UPDATE storage_uploads SET received=?, total=? WHERE upload_id=?",
                            (received, total, upload_id))
            return "partial", received
        # complete: hash, check what the client declared, commit
        size, md5, crc = hash_file(path)
        meta = sess["meta"]
        try:
            verify_hashes({**{k: meta[k] for k in ("crc32c", "md5Hash") if meta.get(k)}, **declared}, md5, crc)
            key = self.blobs.put_file(path)
            obj = self.commit(bucket, sess["name"], blob=key, size=size, md5=md5, crc32c=crc, meta=meta,
                              conditions=sess["conditions"], epoch=epoch)
        except ApiError:
            # the upload failed for good (checksum mismatch, precondition): the session ends with it
            self.db.execute("DELETE FROM storage_uploads WHERE upload_id=?", (upload_id,))
            path.unlink(missing_ok=True)
            raise
        self.db.execute("UPDATE storage_uploads SET received=?, total=?, result=? WHERE upload_id=?",
                        (size, total, json.dumps(obj), upload_id))
        return "done", obj

    def cancel(self, upload_id: str, bucket: str) -> None:
        """End a session (404 when there is none for this bucket) and remove its spool file."""
        with self._session_lock(upload_id):
            self._session(upload_id, bucket)
            self.db.execute("DELETE FROM storage_uploads WHERE upload_id=?", (upload_id,))
            (self.upload_dir / upload_id).unlink(missing_ok=True)

    def forget_bucket(self, bucket: str) -> list[str]:
        """Drop the bucket's session rows (the caller holds the transaction); returns their ids,
        whose spool files `remove_files` deletes once the transaction has committed."""
        uploads = [r[0] for r in self.db.execute("SELECT upload_id FROM storage_uploads WHERE bucket=?", (bucket,))]
        self.db.execute("DELETE FROM storage_uploads WHERE bucket=?", (bucket,))
        return uploads

    def remove_files(self, upload_ids: list[str]) -> None:
        """Delete the spool files of sessions already forgotten."""
        for upload_id in upload_ids:
            (self.upload_dir / upload_id).unlink(missing_ok=True)

    def in_progress(self) -> int:
        """How many sessions have not finished."""
        return self.db.execute("SELECT COUNT(*) FROM storage_uploads WHERE result IS NULL").fetchone()[0]

    def clear_rows(self) -> None:
        """Forget every session row (a world reset)."""
        self.db.execute("DELETE FROM storage_uploads")

    def clear_files(self) -> None:
        """Delete every spool file (a world reset)."""
        for path in self.upload_dir.iterdir():
            path.unlink(missing_ok=True)
