"""What the emulator's "buildpack" does with a source archive: find the start command, and name
the image it would produce. No HTTP and no state here.

Choices (a real buildpack build runs a container; offline nothing is built):
- The start command is the `Procfile`'s `web:` process (what Google's buildpacks run), or the
  build's `GOOGLE_ENTRYPOINT` environment variable. Without either, the build fails the way the
  Python buildpack fails ("an entrypoint must be manually set"); the buildpack's fallback for a
  `main.py` (gunicorn `main:app`) is not modelled.
- The image digest is the sha256 of the archive's bytes: a real image digest is not reproducible
  (the base layers move), this one is, so the same archive always gives the same image.
"""
from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

ENTRYPOINT_ENV = "GOOGLE_ENTRYPOINT"
# The Python buildpack's missing-entrypoint failure, as its build log prints it
# (GoogleCloudPlatform/buildpacks issues #92, #178, #324).
NO_ENTRYPOINT = ('Failure: (ID: 194879d1) Failed to run /bin/build: for Python, an entrypoint must be manually '
                 'set, either with "GOOGLE_ENTRYPOINT" env var or by creating a "Procfile" file')


class BuildFailed(Exception):
    """The build fails: `kind` is Cloud Build's FailureInfo type, `lines` go to the build log."""

    def __init__(self, kind: str, detail: str, lines: list[str]):
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.lines = lines


def digest(path: Path) -> str:
    """`sha256:HEX` of the archive's bytes (the module docstring's choice)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()


def procfile_web(path: Path) -> str | None:
    """The `web:` command of the archive's top-level Procfile, or None when there is none.
    Raises BuildFailed (FETCH_SOURCE_FAILED) when the archive is not a readable gzipped tar."""
    try:
        with tarfile.open(path, mode="r|*") as tar:   # streamed: stops at the Procfile
            for member in tar:
                if member.isfile() and member.name.lstrip("./") == "Procfile" and "/" not in member.name.lstrip("./"):
                    fh = tar.extractfile(member)
                    data = fh.read(64 * 1024) if fh is not None else b""
                    return _web_line(data.decode("utf-8", "replace"))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BuildFailed("FETCH_SOURCE_FAILED", f"The source archive is not a gzipped tar: {exc}.",
                          [f"Failed to extract the source archive: {exc}"]) from None
    return None


def _web_line(text: str) -> str | None:
    for line in text.splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() == "web" and command.strip():
            return command.strip()
    return None


def entrypoint(path: Path, build_env: dict[str, str]) -> str:
    """The command the built image starts with (module docstring), or BuildFailed (USER_BUILD_STEP)."""
    command = procfile_web(path) or (build_env.get(ENTRYPOINT_ENV) or "").strip()
    if not command:
        raise BuildFailed("USER_BUILD_STEP", "Build step failed: the buildpack found no entrypoint.",
                          ["===> BUILDING", NO_ENTRYPOINT, "ERROR: failed to build: exit status 1",
                           "ERROR: failed to build: executing lifecycle: failed with status code: 51"])
    return command
