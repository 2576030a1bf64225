"""A deploy's source archive unpacked into a fresh directory, reusing what earlier deploys unpacked.

    unpack(archive, into)          # raises Unreadable (its message says why)

Every hosted-viewer archive holds the same 213 MB OHIF dist; only a few small files (the config)
differ between blueprints and emulator ports. provision.ohif.deflate_parts compresses such an
archive as independent parts and lists them in the gzip header's comment (`provision-parts:`
compressed length, inflated length, CRC-32 of each). Here a large part (>= CACHE_MIN bytes
compressed) is unpacked once into a tree keyed by the sha256 of its compressed bytes, under
`$TMPDIR/provision-run-sources` (the same file system as the instance's directory, so its files
are hard-linked, not copied, and it outlives one emulator process); small parts are inflated on
every deploy. Any other gzipped tar is extracted whole, as before.

Correctness, since a wrong tree would run stale files:
- a tree is keyed by the part's compressed bytes, and built by inflating those bytes alone, whose
  result must have the length and CRC-32 the header lists (else: the whole archive is extracted);
- it is built in a temp dir and renamed into place: a crash mid-unpack leaves only a `.tmp-` dir,
  which nothing trusts (removed after an hour);
- its files are hard links shared with running instances: before each reuse every file's size and
  mtime are checked against the tree's manifest (an app that wrote into a shipped file changed its
  mtime), and a changed tree is unpacked again;
- at most KEEP_TREES trees are kept, least recently used removed first; removing one never touches
  a running instance (its own links keep the files).
Known difference from Cloud Run, where each instance has its own file system: instances running at
the same time share the linked files' inodes, so an app that writes *into* a shipped file (not a
new file, not a rename over it) is seen by the other instances of that part. The hosted viewer
writes none; a deploy after such a write gets a fresh tree (the mtime check above).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import threading
import time
import uuid
import zlib
from pathlib import Path, PurePosixPath

COMMENT_PREFIX = b"provision-parts:"   # as provision.ohif.deflate_parts writes it (the emulator imports no provisioner code)
CACHE_MIN = 1 << 20
KEEP_TREES = 2   # one OHIF release at two gzip levels; each tree is ~215 MB
STALE_TMP_S = 3600.0
_LOCK = threading.Lock()   # deploys of one emulator build a tree one at a time (another process: the rename decides)


class Unreadable(Exception):
    """The archive cannot be extracted (not a gzipped tar, or an entry that is not safe)."""


def default_root() -> Path:
    """Where unpacked parts are kept: `$TMPDIR/provision-run-sources`."""
    return Path(tempfile.gettempdir()) / "provision-run-sources"


def _check(member: tarfile.TarInfo) -> None:
    parts = PurePosixPath(member.name).parts
    if member.name.startswith("/") or ".." in parts or not (member.isfile() or member.isdir()):
        raise Unreadable(f"The source archive has an entry that cannot be extracted safely: {member.name!r}.")


def extract(archive: Path, into: Path) -> None:
    """Extract a whole (gzipped) tar into `into`: regular files and directories only, no absolute
    path, no `..`, no link (tarfile's `data` filter refuses the rest, where this Python has it)."""
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            members = tar.getmembers()
            for m in members:
                _check(m)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(into, members=members, filter="data")
            else:  # pragma: no cover - Python without extraction filters; the checks above hold
                tar.extractall(into, members=members)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise Unreadable(f"The source archive could not be read as a gzipped tar: {exc}.") from None


def parts_of(archive: Path) -> tuple[int, list[tuple[int, int, int]]] | None:
    """(offset of the first part, [(compressed length, inflated length, CRC-32)]) from the gzip
    comment, when the archive has one that adds up to the file; else None."""
    try:
        with archive.open("rb") as fh:
            head = fh.read(10)
            if len(head) < 10 or head[:4] != b"\x1f\x8b\x08\x10":   # gzip, deflate, FCOMMENT only
                return None
            comment = fh.read(1 << 16).split(b"\0", 1)[0]
            if not comment.startswith(COMMENT_PREFIX):
                return None
            parts = [tuple(int(x, 16) for x in p.split(b",")) for p in comment[len(COMMENT_PREFIX):].split(b";")]
            size = archive.stat().st_size
            fh.seek(size - 4)
            isize = int.from_bytes(fh.read(4), "little")
    except (OSError, ValueError):
        return None
    offset = 10 + len(comment) + 1
    if not parts or any(len(p) != 3 for p in parts):
        return None
    listed = [(p[0], p[1], p[2]) for p in parts]
    if offset + sum(p[0] for p in listed) + 8 != size or sum(p[1] for p in listed) & 0xFFFFFFFF != isize:
        return None
    return offset, listed


class _Inflated:
    """A raw-deflate part read as the bytes it inflates to, counting their length and CRC-32."""

    def __init__(self, fh, size: int, last: bool):
        self.fh, self.left, self.last = fh, size, last
        self.z = zlib.decompressobj(-zlib.MAX_WBITS)
        self.buf, self.crc, self.length = b"", 0, 0

    def read(self, n: int = -1) -> bytes:
        while (n < 0 or len(self.buf) < n) and self.left:
            chunk = self.fh.read(min(self.left, 1 << 16))   # 64 KiB in: a bounded amount out, even of zeros
            if not chunk:
                raise Unreadable("The source archive ends early.")
            self.left -= len(chunk)
            self.buf += self.z.decompress(chunk)
        out, self.buf = (self.buf, b"") if n < 0 else (self.buf[:n], self.buf[n:])
        self.crc, self.length = zlib.crc32(out, self.crc), self.length + len(out)
        return out

    def verify(self, length: int, crc: int) -> None:
        """Read the rest; the part must end where listed (finished only if last) with this length and CRC."""
        while self.read(1 << 20):
            pass
        if self.z.eof != self.last or self.z.unused_data or self.length != length or self.crc != crc:
            raise _NotAsListed


class _NotAsListed(Exception):
    """A part did not inflate to what the header lists: the whole archive is extracted instead."""


def _unpack_part(fh, size: int, length: int, crc: int, last: bool, into: Path) -> None:
    stream = _Inflated(fh, size, last)
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:   # type: ignore[call-overload]
            for member in tar:
                _check(member)
                if hasattr(tarfile, "data_filter"):
                    tar.extract(member, into, filter="data")
                else:  # pragma: no cover
                    tar.extract(member, into)
    except (tarfile.TarError, zlib.error, EOFError):
        raise _NotAsListed from None
    try:
        stream.verify(length, crc)
    except zlib.error:
        raise _NotAsListed from None


def _manifest(tree: Path) -> list[list]:
    out = []
    for root, _dirs, files in os.walk(tree):
        for name in files:
            st = os.stat(os.path.join(root, name))
            out.append([os.path.relpath(os.path.join(root, name), tree), st.st_size, st.st_mtime_ns])
    return sorted(out)


def _intact(entry: Path) -> list[list] | None:
    """The tree's manifest if every file is as unpacked (size and mtime), else None."""
    try:
        manifest = json.loads((entry / "manifest.json").read_text())
        tree = entry / "tree"
        for rel, size, mtime in manifest:
            st = os.stat(tree / rel)
            if st.st_size != size or st.st_mtime_ns != mtime:
                return None
        return manifest
    except (OSError, ValueError, TypeError):
        return None


def _tree(root: Path, key: str, fh, size: int, length: int, crc: int, last: bool) -> tuple[Path, list[list]]:
    entry = root / key
    with _LOCK:
        manifest = _intact(entry)
        if manifest is not None:
            os.utime(entry)   # recently used
            return entry / "tree", manifest
        shutil.rmtree(entry, ignore_errors=True)   # absent, or changed since it was unpacked
        tmp = root / f".tmp-{key[:16]}-{uuid.uuid4().hex[:8]}"
        try:
            (tmp / "tree").mkdir(parents=True)
            _unpack_part(fh, size, length, crc, last, tmp / "tree")
            manifest = _manifest(tmp / "tree")
            (tmp / "manifest.json").write_text(json.dumps(manifest))
            try:
                os.rename(tmp, entry)
            except OSError:   # another emulator process renamed its tree first: the same bytes
                shutil.rmtree(tmp, ignore_errors=True)
                manifest = _intact(entry)
                if manifest is None:
                    raise _NotAsListed from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _prune(root, keep=entry)
        return entry / "tree", manifest


def _prune(root: Path, keep: Path) -> None:
    now, aged = time.time(), []
    for path in root.iterdir():
        try:
            mtime = path.stat().st_mtime
        except OSError:
            continue
        if path.name.startswith(".tmp-"):
            if now - mtime > STALE_TMP_S:   # a crashed unpack (a live one is younger)
                shutil.rmtree(path, ignore_errors=True)
        elif path != keep:
            aged.append((mtime, path))
    for _, path in sorted(aged, reverse=True)[KEEP_TREES - 1:]:
        shutil.rmtree(path, ignore_errors=True)


def _link(tree: Path, manifest: list[list], into: Path) -> None:
    for rel, _size, _mtime in manifest:
        dst = into / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(tree / rel, dst)
        except FileExistsError:
            raise _NotAsListed from None   # two parts name one file: the whole archive decides
        except FileNotFoundError:
            raise _NotAsListed from None   # pruned meanwhile by another process
        except OSError:
            shutil.copy2(tree / rel, dst)   # another file system, or too many links


def unpack(archive: Path, into: Path, root: Path | None = None) -> None:
    """Unpack `archive` into the empty directory `into` (module docstring): its parts from the
    trees of earlier deploys where the header lists them, else extracted whole."""
    layout = parts_of(archive)
    if layout is not None:
        root = root or default_root()
        try:
            root.mkdir(parents=True, exist_ok=True)
            offset, parts = layout
            with archive.open("rb") as fh:
                for i, (size, length, crc) in enumerate(parts):
                    last = i == len(parts) - 1
                    fh.seek(offset)
                    if size >= CACHE_MIN:
                        digest = hashlib.sha256()
                        while chunk := fh.read(min(1 << 20, offset + size - fh.tell())):
                            digest.update(chunk)
                        digest.update(f"\0{length:x},{crc:x},{int(last)}".encode())
                        fh.seek(offset)
                        tree, manifest = _tree(root, digest.hexdigest(), fh, size, length, crc, last)
                        _link(tree, manifest, into)
                    else:
                        _unpack_part(fh, size, length, crc, last, into)
                    offset += size
            return
        except (_NotAsListed, Unreadable, OSError):
            shutil.rmtree(into, ignore_errors=True)   # whatever was put there: start again, whole
            into.mkdir(parents=True)
    extract(archive, into)
