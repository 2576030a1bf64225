"""Where emulator state lives: one SQLite database (in memory, or a file under --data-dir so state
survives a restart) and a content-addressed blob directory, so object and DICOM bytes never sit
in the process's memory.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterator


class Database:
    """A shared SQLite connection guarded by one re-entrant lock (handlers run on many threads)."""

    def __init__(self, path: Path | None):
        self.lock = threading.RLock()
        self.conn = sqlite3.connect(str(path) if path else ":memory:", check_same_thread=False, isolation_level=None)
        if path:
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("CREATE TABLE IF NOT EXISTS docs (kind TEXT, key TEXT, body TEXT, PRIMARY KEY (kind, key))")

    def execute(self, sql: str, params: tuple | list = ()) -> sqlite3.Cursor:
        with self.lock:
            return self.conn.execute(sql, params)

    def transaction(self) -> "_Txn":
        """`with db.transaction():` groups writes atomically (a crash never leaves half a change)."""
        return _Txn(self)

    def close(self) -> None:
        with self.lock:
            self.conn.close()


class _Txn:
    def __init__(self, db: Database):
        self.db = db
        self.depth_owner = False

    def __enter__(self) -> Database:
        self.db.lock.acquire()
        if not self.db.conn.in_transaction:
            self.db.conn.execute("BEGIN")
            self.depth_owner = True
        return self.db

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if self.depth_owner:
                self.db.conn.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.db.lock.release()


def distinct_values(db: Database, table: str, column: str, among: list[str] | None) -> set[str]:
    """The distinct values of `table`.`column`, only those in `among` when it is given."""
    with db.lock:
        if among is None:
            return {row[0] for row in db.conn.execute(f"SELECT DISTINCT {column} FROM {table}")}
        out: set[str] = set()
        for i in range(0, len(among), 500):
            chunk = among[i:i + 500]
            marks = ",".join("?" * len(chunk))
            out.update(row[0] for row in db.conn.execute(
                f"SELECT DISTINCT {column} FROM {table} WHERE {column} IN ({marks})", chunk))
        return out


class DocStore:
    """JSON documents by (kind, key): the control-plane resources of every API."""

    def __init__(self, db: Database):
        self.db = db

    def get(self, kind: str, key: str) -> dict | None:
        row = self.db.execute("SELECT body FROM docs WHERE kind=? AND key=?", (kind, key)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, kind: str, key: str, doc: dict) -> dict:
        self.db.execute("INSERT OR REPLACE INTO docs (kind, key, body) VALUES (?, ?, ?)", (kind, key, json.dumps(doc)))
        return doc

    def delete(self, kind: str, key: str) -> bool:
        return self.db.execute("DELETE FROM docs WHERE kind=? AND key=?", (kind, key)).rowcount > 0

    def next_counter(self, name: str) -> int:
        """Increment and return a persisted counter (call inside a transaction): project numbers
        and operation names come from these, so a seed and a call sequence give the same names."""
        doc = self.get("counter", name) or {"value": 0}
        doc["value"] += 1
        self.put("counter", name, doc)
        return doc["value"]

    def list(self, kind: str, prefix: str = "") -> list[tuple[str, dict]]:
        """Documents of a kind whose key starts with `prefix`, in key order."""
        rows = self.db.execute(
            "SELECT key, body FROM docs WHERE kind=? AND key >= ? AND key < ? ORDER BY key",
            (kind, prefix, prefix + "\U0010ffff"),
        ).fetchall()
        return [(k, json.loads(b)) for k, b in rows]

    def dump(self) -> dict[str, dict[str, Any]]:
        """Every document, grouped by kind (for /_emulator/state)."""
        out: dict[str, dict[str, Any]] = {}
        for kind, key, body in self.db.execute("SELECT kind, key, body FROM docs ORDER BY kind, key"):
            out.setdefault(kind, {})[key] = json.loads(body)
        return out

    def clear(self) -> None:
        self.db.execute("DELETE FROM docs")


class BlobStore:
    """Content-addressed bytes on disk: one file per SHA-256, shared by objects and DICOM instances.

    Bytes nothing refers to any more (a deleted object or instance, an overwritten object, a
    refused upload) are garbage-collected by `sweep`: a blob file is removed when no row of any
    backend names its key (`referenced`) and no thread has pinned it. A thread pins every key it
    stores (`put`, `put_file`) or is about to refer to (`pin`: an import's listed objects) until
    it calls `release_pins`, which the HTTP layer does after each request and a background job when
    it ends: so a blob stored (or found already there) but not yet committed is never swept.
    Lock order: the database's lock, then this store's.
    """

    def __init__(self, root: Path | None):
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if root:
            self.root = Path(root)
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix="provision-emulator-")
            self.root = Path(self._tmp.name)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._pins: dict[str, int] = {}
        self._local = threading.local()

    # ------------------------------------------------------------------ pins
    def pin(self, key: str) -> None:
        """Keep `key` from being swept until this thread calls `release_pins`."""
        with self._lock:
            self._pins[key] = self._pins.get(key, 0) + 1
        self._local.__dict__.setdefault("pins", []).append(key)

    def release_pins(self) -> int:
        """Drop every pin this thread holds; returns how many it held."""
        keys = self._local.__dict__.pop("pins", None) or []
        if keys:
            with self._lock:
                for key in keys:
                    n = self._pins.get(key, 0) - 1
                    if n > 0:
                        self._pins[key] = n
                    else:
                        self._pins.pop(key, None)
        return len(keys)

    # ------------------------------------------------------------------ bytes
    def put(self, data: bytes) -> str:
        """Store bytes; returns their key (hex SHA-256), pinned for this thread. Writing is atomic."""
        key = hashlib.sha256(data).hexdigest()
        self.pin(key)            # before looking: a sweep never removes it from under us
        path = self.path(key)
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        return key

    def put_file(self, src: str | os.PathLike[str]) -> str:
        """Store a file's bytes (without holding more than one chunk in memory at a time); the key is
        pinned for this thread."""
        h = hashlib.sha256()
        with open(src, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        key = h.hexdigest()
        self.pin(key)
        path = self.path(key)
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            os.replace(src, path)
        else:
            os.unlink(src)
        return key

    def path(self, key: str) -> Path:
        return self.root / key[:2] / key

    def get(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def open(self, key: str):
        return open(self.path(key), "rb")

    def iter_chunks(self, key: str, size: int = 1 << 16) -> Iterator[bytes]:
        with self.open(key) as fh:
            yield from iter(lambda: fh.read(size), b"")

    # ------------------------------------------------------------------ garbage
    def _files(self) -> Iterator[tuple[str, int]]:
        """(key, size) of every blob file (upload spools and temporary files are not blobs)."""
        for sub in os.scandir(self.root):
            if not (sub.is_dir(follow_symlinks=False) and len(sub.name) == 2 and _is_hex(sub.name)):
                continue
            for entry in os.scandir(sub.path):
                if len(entry.name) == 64 and entry.name.startswith(sub.name) and _is_hex(entry.name):
                    try:
                        yield entry.name, entry.stat(follow_symlinks=False).st_size
                    except FileNotFoundError:
                        continue

    def usage(self) -> dict[str, int]:
        """How many blob files there are and their bytes."""
        files = total = 0
        for _key, size in self._files():
            files += 1
            total += size
        return {"files": files, "bytes": total}

    def sweep(self, referenced: Callable[[list[str] | None], set[str]], db_lock: Any) -> dict[str, int]:
        """Remove the blob files nothing refers to. `referenced(keys)` answers which of `keys` (all
        keys when None) a backend row names. Candidates are found without locks, then checked
        again under the database's lock (no commit can add a reference meanwhile) and this store's
        (no pin can be taken meanwhile) before each file goes."""
        on_disk = dict(self._files())
        if not on_disk:
            return {"files": 0, "bytes": 0}
        live = referenced(None)
        candidates = [k for k in on_disk if k not in live]
        freed = removed = 0
        for i in range(0, len(candidates), 500):
            batch = candidates[i:i + 500]
            with db_lock:
                still = referenced(batch)
                with self._lock:
                    for key in batch:
                        if key in still or self._pins.get(key):
                            continue
                        try:
                            os.unlink(self.path(key))
                        except FileNotFoundError:
                            continue
                        removed += 1
                        freed += on_disk[key]
        return {"files": removed, "bytes": freed}

    def close(self) -> None:
        if self._tmp:
            self._tmp.cleanup()


_HEX = frozenset("0123456789abcdef")


def _is_hex(name: str) -> bool:
    return all(c in _HEX for c in name)
