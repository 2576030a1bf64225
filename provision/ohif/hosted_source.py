"""The hosted viewer's source archive: what `builds:submit` sends to Cloud Run, byte-reproducible.

    art = build_source(out_dir, config_js=text)       # -> Artifact(path, sha256, size)

The archive (a gzipped tar, the form Cloud Run's `builds:submit` takes as `storageSource`) holds:

    Procfile              web: python -m hosted     (the buildpack's entrypoint)
    requirements.txt      provision/hosted/requirements.txt (pinned: the buildpack installs exactly these)
    hosted/*.py           the app (provision/hosted/, which imports nothing of provision)
    app-config.js         the OHIF config of this blueprint (upstream roots; the app makes them same-origin)
    ohif/**               the pinned OHIF release's dist, as provision.ohif.fetch verified and unpacked it
    hosted-source.json    what went in: the OHIF version, the app's version

Same inputs, same bytes, same sha256: entries in sorted order, every mtime fixed, owner root:root
with empty names, modes 0644 (files only, no directory entries), GNU tar format, and a gzip header
without a name or time (its extra field lists the compressed parts: provision.ohif.deflate_parts). Nothing of the machine that built it (user, umask, clock, file system
order) reaches the archive. The app does not import this module: it is the provisioner's.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from provision.ohif import deflate_parts

__all__ = ["KEEP_ARCHIVES", "Artifact", "build_source", "prune", "source_files"]

APP_DIR = Path(__file__).resolve().parent.parent / "hosted"
MTIME = 315532800          # 1980-01-01T00:00:00Z: a fixed time every tool accepts
PROCFILE = b"web: python -m hosted\n"
_SKIP_NAMES = {".provision-complete"}
# The cache's bound (prune): every config (and every emulator port: it is in the config) is a new
# ~50 MB archive, so the cache grew without end (6.9 GB seen). Least recently used go first, but
# never one younger than GRACE_S: a fleet builds all its archives in the plan and uploads them
# later, possibly from other processes (--shard), which hold no lock we could see.
KEEP_ARCHIVES = 8
KEEP_PARTS = 2
GRACE_S = 3600.0


@dataclass(frozen=True)
class Artifact:
    """A built archive: where it is, its sha256 (hex) and its size in bytes."""

    path: Path
    sha256: str
    size: int


def _app_files() -> Iterator[tuple[str, Path]]:
    for path in sorted(APP_DIR.glob("*.py")):
        yield f"hosted/{path.name}", path


def _dist_files(dist: Path) -> Iterator[tuple[str, Path]]:
    for root, dirs, files in os.walk(dist):
        dirs.sort()
        for name in sorted(files):
            if name in _SKIP_NAMES:
                continue
            path = Path(root) / name
            if path.is_symlink() or not path.is_file():
                continue  # provision.ohif.fetch unpacks regular files only; anything else is not ours
            yield "ohif/" + path.relative_to(dist).as_posix(), path


def source_files(*, config_js: str, dist: Path, ohif_version: str) -> list[tuple[str, bytes | Path]]:
    """Every entry of the archive, sorted by name: (name in the archive, bytes or a file to read)."""
    from provision.hosted import __version__

    manifest = json.dumps({"ohif": ohif_version, "hosted": __version__}, sort_keys=True).encode() + b"\n"
    entries: list[tuple[str, bytes | Path]] = [
        ("Procfile", PROCFILE),
        ("requirements.txt", (APP_DIR / "requirements.txt").read_bytes()),
        ("app-config.js", config_js.encode("utf-8")),
        ("hosted-source.json", manifest),
        *_app_files(),
        *_dist_files(dist),
    ]
    return sorted(entries, key=lambda e: e[0])


def _info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, MTIME, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _entry(name: str, content: bytes | Path) -> Iterator[bytes]:
    """One tar entry as `tarfile.addfile` writes it in GNU format: header block(s), data, padding."""
    data = content if isinstance(content, bytes) else content.read_bytes()
    yield _info(name, len(data)).tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
    yield data
    yield tarfile.NUL * (-len(data) % tarfile.BLOCKSIZE)


def _entries(entries: list[tuple[str, bytes | Path]]) -> Iterator[bytes]:
    for name, content in entries:
        yield from _entry(name, content)


_PART_LOCK = threading.Lock()   # a fleet's blueprints build side by side: the viewer's part is compressed once
_PART_MAGIC = b"provision-deflate-part-1\n"


def _viewer_part(out_dir: Path, entries: list[tuple[str, bytes | Path]], level: int) -> Path:
    """The cached compressed part of the viewer's files (the same for every blueprint: only the
    config differs), keyed by their names, sizes and modification times and the level; built once."""
    h = hashlib.sha256(f"{level}\n".encode())
    for name, content in entries:
        if isinstance(content, Path):
            st = content.stat()
            h.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        else:
            h.update(f"{name}\0{len(content)}\0bytes\n".encode() + content)
    path = out_dir / f"viewer-part-{h.hexdigest()[:32]}.deflate"
    with _PART_LOCK:
        if path.is_file():
            return path
        part = deflate_parts.compress(_entries(entries), level, last=False)
        fd, tmp = tempfile.mkstemp(prefix=".viewer-part-", suffix=".tmp", dir=out_dir)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(_PART_MAGIC + struct.pack("<IQ", part.crc, part.length) + part.data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return path


class _Hashing:
    """A file that hashes what is written to it."""

    def __init__(self, raw: BinaryIO):
        self.raw, self.digest = raw, hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.raw.write(data)


def build_source(out_dir: Path, *, config_js: str, dist: Path | None = None, ohif_version: str | None = None,
                 level: int = 6) -> Artifact:
    """Write `hosted-source-<sha256[:16]>.tar.gz` into `out_dir` (atomically) and describe it.

    The bytes are those of a GNU tar (`tarfile`, stream mode) in one gzip member; the viewer's files,
    most of the archive, are compressed once per OHIF dist and level (provision.ohif.deflate_parts)
    and copied into each blueprint's archive: compressing them took seconds a blueprint."""
    from provision.ohif import fetch

    ohif_version = ohif_version or fetch.PINNED
    dist = Path(dist) if dist else fetch.ensure_viewer(ohif_version)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = source_files(config_js=config_js, dist=dist, ohif_version=ohif_version)
    viewer = [i for i, (name, _) in enumerate(entries) if name.startswith("ohif/")]
    first, end = (viewer[0], viewer[-1] + 1) if viewer else (len(entries), len(entries))
    part_path = _viewer_part(out_dir, entries[first:end], level)
    fd, tmp = tempfile.mkstemp(prefix=".hosted-source-", suffix=".tmp", dir=out_dir)
    try:
        with os.fdopen(fd, "wb") as raw, part_path.open("rb") as part_file:
            if part_file.read(len(_PART_MAGIC)) != _PART_MAGIC:
                raise OSError(f"{part_path}: not a compressed part of this version")
            part_crc, part_len = struct.unpack("<IQ", part_file.read(12))
            head = deflate_parts.compress(_entries(entries[:first]), level, last=False)
            tail_tar = b"".join(_entries(entries[end:])) + tarfile.NUL * (2 * tarfile.BLOCKSIZE)
            size = head.length + part_len + len(tail_tar)   # then zeros to a whole record, as tarfile.close() writes
            tail_tar += tarfile.NUL * (-size % tarfile.RECORDSIZE)
            tail = deflate_parts.compress([tail_tar], level, last=True)
            out = _Hashing(raw)
            part_size = part_path.stat().st_size - len(_PART_MAGIC) - 12
            deflate_parts.write(out, [head, (part_file, part_crc, part_len, part_size), tail], level)
        sha = out.digest.hexdigest()
        target = out_dir / f"hosted-source-{sha[:16]}.tar.gz"
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    os.utime(part_path)   # recently used: prune keeps it
    prune(out_dir)
    return Artifact(target, sha, target.stat().st_size)


def _remove_old(paths: list[Path], keep: int, now: float, grace_s: float) -> None:
    aged = []
    for path in paths:
        try:
            aged.append((path.stat().st_mtime, path))
        except OSError:
            continue   # removed meanwhile (another process pruned)
    aged.sort(reverse=True)
    for mtime, path in aged[keep:]:
        if now - mtime >= grace_s:
            path.unlink(missing_ok=True)


def prune(out_dir: Path, *, keep: int = KEEP_ARCHIVES, keep_parts: int = KEEP_PARTS,
          grace_s: float = GRACE_S) -> None:
    """Bound the archive cache in `out_dir`: keep the `keep` most recently used archives (by
    modification time: a build and a reuse both set it) and the `keep_parts` newest compressed
    viewer parts, and anything used in the last `grace_s` seconds; remove the rest, and the
    index entries (`inputs-*.json`) that name a removed archive. Removal is unlink: a process
    reading an archive it opened keeps reading it."""
    now = time.time()
    _remove_old(list(out_dir.glob("hosted-source-*.tar.gz")), keep, now, grace_s)
    _remove_old(list(out_dir.glob("viewer-part-*.deflate")), keep_parts, now, grace_s)
    for memo in out_dir.glob("inputs-*.json"):
        try:
            name = json.loads(memo.read_text()).get("file")
        except (OSError, ValueError, AttributeError):
            continue   # being written by another process, or not ours: left alone
        if isinstance(name, str) and not (out_dir / name).exists():
            memo.unlink(missing_ok=True)
