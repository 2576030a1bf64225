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
from typing import Any, Iterator


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
    """Content-addressed bytes on disk: one file per SHA-256, shared by objects and DICOM instances."""

    def __init__(self, root: Path | None):
        self._tmp = None if root else tempfile.TemporaryDirectory(prefix="provision-emulator-")
        self.root = Path(root) if root else Path(self._tmp.name)
        self.root.mkdir(parents=True, exist_ok=True)

    def put(self, data: bytes) -> str:
        """Store bytes; returns their key (hex SHA-256). Writing is atomic."""
        key = hashlib.sha256(data).hexdigest()
        path = self.path(key)
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        return key

    def put_file(self, src: Path) -> str:
        """Store a file's bytes (without holding more than one chunk in memory at a time)."""
        h = hashlib.sha256()
        with open(src, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        key = h.hexdigest()
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

    def close(self) -> None:
        if self._tmp:
            self._tmp.cleanup()
