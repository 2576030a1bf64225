"""Fetch the released OHIF viewer (npm package `@ohif/app`) once into a cache outside the repo.

    python -m provision.ohif.fetch        # prints the dist directory (the Makefile runs this)

Layout, under `$PROVISION_CACHE` (default `~/.cache/provision`):

    ohif/<version>/ohif-app-<version>.tgz    the tarball from `npm pack`
    ohif/<version>/dist/                     its `package/dist`, unpacked once

The tarball is checked against the registry's published sha512 integrity (pinned here
for the pinned version) before anything is unpacked, and unpacking accepts only regular
files and directories under `package/dist/` (no links, no absolute or `..` paths).
`dist/` appears atomically (unpacked beside it, then renamed), so an interrupted run
leaves no half-made viewer and the next run finishes the job. The second call is a
couple of `stat`s.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath
from typing import Callable

from provision.errors import ProvisionError

__all__ = ["PACKAGE", "PINNED", "cache_root", "ensure_viewer", "viewer_dir"]

PACKAGE = "@ohif/app"
PINNED = "3.13.2"
# `npm view @ohif/app@<version> dist.integrity`, for the versions we know.
INTEGRITY = {
    "3.13.2": "sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA==",
}
NPM_TIMEOUT_S = 600
_COMPLETE = ".provision-complete"


def cache_root() -> Path:
    """`$PROVISION_CACHE`, or `~/.cache/provision`."""
    env = os.environ.get("PROVISION_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "provision"


def viewer_dir(version: str = PINNED) -> Path:
    """Where the viewer of `version` lives in the cache (it may not be there yet)."""
    return cache_root() / "ohif" / version


def _tarball_name(version: str) -> str:
    return f"ohif-app-{version}.tgz"


def _integrity(path: Path) -> str:
    digest = hashlib.sha512()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return "sha512-" + base64.b64encode(digest.digest()).decode()


def _verify(path: Path, version: str) -> bool:
    expected = INTEGRITY.get(version)
    return expected is None or _integrity(path) == expected


def _npm_pack(version: str, dest: Path) -> Path:
    npm = shutil.which("npm")
    if not npm:
        raise ProvisionError(
            f"cannot fetch the OHIF viewer: npm is not installed. Install Node.js 18 or later "
            f"(which brings npm), or put {PACKAGE}@{version}'s tarball at {dest / _tarball_name(version)}."
        )
    with tempfile.TemporaryDirectory(prefix=".npm-pack-", dir=dest) as tmp:
        cmd = [npm, "pack", f"{PACKAGE}@{version}", "--pack-destination", tmp, "--json", "--silent"]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=NPM_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise ProvisionError(
                f"cannot fetch the OHIF viewer: `npm pack {PACKAGE}@{version}` took more than {NPM_TIMEOUT_S} s; "
                "check the network or the npm registry setting (`npm config get registry`)."
            ) from None
        if done.returncode != 0:
            tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-6:])
            offline = any(code in tail for code in ("ENOTFOUND", "ETIMEDOUT", "EAI_AGAIN", "ECONNREFUSED", "ECONNRESET"))
            why = "the npm registry is not reachable (offline?)" if offline else "npm failed"
            raise ProvisionError(
                f"cannot fetch the OHIF viewer: `npm pack {PACKAGE}@{version}` failed: {why}: {tail[:600]}"
            )
        made = sorted(Path(tmp).glob("*.tgz"))
        if len(made) != 1:
            raise ProvisionError(f"cannot fetch the OHIF viewer: `npm pack` made {len(made)} tarballs in {tmp}")
        target = dest / _tarball_name(version)
        os.replace(made[0], target)
    return target


def _extract_dist(tarball: Path, into: Path) -> None:
    """Unpack `package/dist/**` of `tarball` into `into` (regular files and directories only)."""
    root = PurePosixPath("package/dist")
    with tarfile.open(tarball, "r:gz") as tar:
        for member in tar:
            name = PurePosixPath(member.name)
            if name.is_absolute() or ".." in name.parts:
                raise ProvisionError(f"refusing {tarball}: member {member.name!r} escapes the package")
            try:
                rel = name.relative_to(root)
            except ValueError:
                continue
            if not (member.isfile() or member.isdir()):
                continue  # links and devices are never needed to serve a static viewer
            target = into.joinpath(*rel.parts) if rel.parts else into
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(member)
            assert src is not None
            with src, target.open("wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            os.chmod(target, 0o644)
    if not (into / "index.html").is_file():
        raise ProvisionError(f"{tarball} has no package/dist/index.html: not an OHIF viewer build")


# What the first fetch costs (3.13.2: a 49.9 MB tarball, 204 MB unpacked), said before it starts.
DOWNLOAD_SIZE = "about 50 MB, 200 MB unpacked"


def ensure_viewer(version: str = PINNED, on_fetch: Callable[[str], None] | None = None) -> Path:
    """The unpacked `dist` directory of `@ohif/app@version`, fetching it with npm the first time
    (`on_fetch` hears what is about to be downloaded, and where, before it starts)."""
    home = viewer_dir(version)
    dist = home / "dist"
    if (dist / _COMPLETE).is_file():
        return dist
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ProvisionError(f"cannot create the viewer cache {home}: {exc}; set PROVISION_CACHE to a writable directory") from None

    tarball = home / _tarball_name(version)
    legacy = home.parent / _tarball_name(version)  # an older layout kept the tarball one level up
    if not tarball.is_file() and legacy.is_file() and _verify(legacy, version):
        shutil.copyfile(legacy, tarball)
    if tarball.is_file() and not _verify(tarball, version):
        tarball.unlink()  # truncated or tampered: fetch again
    if not tarball.is_file():
        if on_fetch is not None:
            on_fetch(f"downloading the OHIF viewer ({PACKAGE}@{version}, {DOWNLOAD_SIZE}) once, with npm, "
                     f"into {home}")
        tarball = _npm_pack(version, home)
        if not _verify(tarball, version):
            tarball.unlink()
            raise ProvisionError(
                f"the {PACKAGE}@{version} tarball from npm does not match its published integrity "
                f"{INTEGRITY[version]}; refusing to use it"
            )

    staging = Path(tempfile.mkdtemp(prefix=".dist-", dir=home))
    try:
        _extract_dist(tarball, staging)
        (staging / _COMPLETE).write_text(json.dumps({"package": PACKAGE, "version": version}) + "\n")
        if (dist / _COMPLETE).is_file():  # another process finished first: use theirs
            return dist
        if dist.exists():  # a partial dist from an older, interrupted layout: replace it
            shutil.rmtree(dist)
        try:
            os.replace(staging, dist)
        except OSError:
            if not (dist / _COMPLETE).is_file():  # another process won the race: fine
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return dist


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    version = args[0] if args else PINNED
    try:
        print(ensure_viewer(version, on_fetch=lambda m: print(m + " ...", file=sys.stderr)))
    except ProvisionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
