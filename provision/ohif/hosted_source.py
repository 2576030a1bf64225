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
without a name or time. Nothing of the machine that built it (user, umask, clock, file system
order) reaches the archive. The app does not import this module: it is the provisioner's.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

__all__ = ["Artifact", "build_source", "source_files"]

APP_DIR = Path(__file__).resolve().parent.parent / "hosted"
MTIME = 315532800          # 1980-01-01T00:00:00Z: a fixed time every tool accepts
PROCFILE = b"web: python -m hosted\n"
_SKIP_NAMES = {".provision-complete"}


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


def build_source(out_dir: Path, *, config_js: str, dist: Path | None = None, ohif_version: str | None = None,
                 level: int = 6) -> Artifact:
    """Write `hosted-source-<sha256[:16]>.tar.gz` into `out_dir` (atomically) and describe it."""
    from provision.ohif import fetch

    ohif_version = ohif_version or fetch.PINNED
    dist = Path(dist) if dist else fetch.ensure_viewer(ohif_version)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".hosted-source-", suffix=".tmp", dir=out_dir)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as raw:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=level) as gz, \
                    tarfile.open(fileobj=gz, mode="w|", format=tarfile.GNU_FORMAT) as tar:
                for name, content in source_files(config_js=config_js, dist=dist, ohif_version=ohif_version):
                    if isinstance(content, bytes):
                        tar.addfile(_info(name, len(content)), io.BytesIO(content))
                    else:
                        with content.open("rb") as fh:
                            tar.addfile(_info(name, os.fstat(fh.fileno()).st_size), fh)
        with open(tmp, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        sha = digest.hexdigest()
        target = out_dir / f"hosted-source-{sha[:16]}.tar.gz"
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Artifact(target, sha, target.stat().st_size)
