"""The hosted viewer's artifact for one blueprint and target: the source archive (built locally,
byte-reproducible: provision.ohif.hosted_source) and the environment the service runs it with.

The archive's `app-config.js` names each store's DICOMweb root at the target's Healthcare endpoint
(Google's, or the emulator's), which the viewer rewrites to its own same-origin paths
(HOSTED_SOURCES); no sign-in block, no Google configuration API: in iap mode the browser never calls
Google. So the archive, and its sha256, depend on the blueprint, the provision version, the OHIF
release and the target's Healthcare endpoint (a choice: one archive for both worlds would need the
app to learn its upstream apart from the config).

With `access: google-sign-in` the archive's config is the one `provision config` writes for Google
Cloud, byte for byte: Google's sign-in (`oidc`, the blueprint's OAuth client), roots at
https://healthcare.googleapis.com and OHIF's Google configuration API; the app serves it as it is
(no proxy). It is the same on an emulator: a browser reaches Google's hosts there by routing, as the
browser smoke's google-via-emulator mode does. A choice against pointing the roots at the emulator's
own http://127.0.0.1 URL: Debian's chromium 156 refuses a fetch from an https run.app page to a
loopback URL ("Permission was denied for this request to access the `loopback` address space":
Local Network Access, tried with and without COEP), and the artifact that runs offline would no
longer be the one that would be deployed.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provision.ohif.config import hosted_sources, render_config, render_hosted_config
from provision.ohif.fetch import PINNED, cache_root, ensure_viewer
from provision.ohif.hosted_source import APP_DIR, build_source
from provision.resources.hosting_names import audience, behind_iap

if TYPE_CHECKING:  # for annotations only: no import at run time
    from provision.blueprint.models import Blueprint


@dataclass(frozen=True)
class Archive:
    """The archive to run (its local file and sha256) and what the viewer proxies."""

    path: Path
    sha256: str
    size: int
    sources: dict[str, str] = field(default_factory=dict)
    jwks_url: str | None = None     # IAP's keys when not Google's (an emulator's)
    access: str = "iap"             # the app's HOSTED_ACCESS: iap (proxy behind IAP) | google-sign-in (static)

    @property
    def object(self) -> str:
        """Its object in the ownership record's bucket."""
        return f"hosted/{self.sha256}.tar.gz"


def _pinned(bp: Blueprint, releases: Any) -> Any:
    """`idc: latest` replaced by the newest release plan listed (as the config and the smoke use it)."""
    sources = getattr(bp, "viewer_sources", None) or []
    if not any(getattr(s, "idc", None) == "latest" for s in sources) or not isinstance(releases, list) or not releases:
        return bp
    latest = f"v{max(releases)}"
    return bp.model_copy(update={"viewer_sources": [s.model_copy(update={"idc": latest}) if s.idc == "latest" else s
                                                    for s in sources]})


# The gzip level of an archive for an emulator: it goes over loopback and is unpacked on this machine, so
# level 1 (61 MB instead of 50 for OHIF 3.13, in ~1.6 s of CPU instead of ~5.3) makes every emulator
# deploy and `provision demo` seconds faster. Google Cloud's keeps build_source's default (level 6):
# it is uploaded over the internet.
EMULATOR_LEVEL = 1


def _inputs_key(config_js: str, dist: Path, level: int | None = None) -> str:
    """What the archive is made of, cheaply: the config, the gzip level, the app's files, the dist's
    names, sizes and modification times (a changed file is a new key; an unchanged tree costs a walk
    of `stat`s)."""
    h = hashlib.sha256(config_js.encode() + (b"" if level is None else f"\0level={level}".encode()))
    for path in sorted(APP_DIR.iterdir()):
        if path.is_file() and path.suffix in (".py", ".txt"):
            h.update(path.name.encode() + b"\0" + path.read_bytes())
    for root, dirs, files in os.walk(dist):
        dirs.sort()
        for name in sorted(files):
            st = os.stat(os.path.join(root, name))
            h.update(f"{os.path.relpath(os.path.join(root, name), dist)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _build(config_js: str, level: int | None = None) -> tuple[Path, str, int]:
    """The archive's (path, sha256, size): built once per set of inputs, found again by a small index
    (building it compresses the whole viewer, seconds; plan, apply and status all need its sha256).
    `level`: the gzip level (None: build_source's default)."""
    out = cache_root() / "hosted"
    dist = ensure_viewer(PINNED)
    key = _inputs_key(config_js, dist, level)
    memo = out / f"inputs-{key[:32]}.json"
    try:
        known = json.loads(memo.read_text())
        path = out / known["file"]
        if path.is_file() and path.stat().st_size == known["size"]:
            os.utime(path)   # recently used: the cache's pruning keeps it (hosted_source.prune)
            return path, known["sha256"], known["size"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    art = build_source(out, config_js=config_js, dist=dist) if level is None else \
        build_source(out, config_js=config_js, dist=dist, level=level)
    fd, tmp = tempfile.mkstemp(prefix=".inputs-", suffix=".tmp", dir=out)   # blueprints of a fleet build side by side
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps({"file": art.path.name, "sha256": art.sha256, "size": art.size}))
    os.replace(tmp, memo)
    return art.path, art.sha256, art.size


def prepare(bp: Blueprint, target: Any, releases: Any = None) -> Archive:
    """Build (or find, same bytes) the archive for `bp` on `target`, in the provision cache."""
    bp = _pinned(bp, releases)
    if not behind_iap(bp):   # google-sign-in: Google's own config, on every target (module docstring)
        path, sha, size = _build(render_config(bp))
        return Archive(path, sha, size, access="google-sign-in")
    base = target.root("healthcare")
    path, sha, size = _build(render_hosted_config(bp, base), EMULATOR_LEVEL if target.is_emulator else None)
    jwks = f"{target.emulator}/iap/verify/public_key-jwk" if target.is_emulator else None
    return Archive(path, sha, size, hosted_sources(bp, base), jwks)


def environment(archive: Archive, number: str, region: str, service: str) -> list[dict[str, str]]:
    """The service's env (provision/hosted/settings.py): in iap mode the proxied sources and IAP's audience;
    in google-sign-in mode only the mode (the static viewer: nothing to proxy, no assertion to check)."""
    if archive.access != "iap":
        return [{"name": "HOSTED_ACCESS", "value": archive.access}]
    env = {"HOSTED_ACCESS": "iap", "HOSTED_SOURCES": json.dumps(archive.sources),
           "HOSTED_IAP_AUDIENCE": audience(number, region, service)}
    if archive.jwks_url:
        env["HOSTED_IAP_JWKS_URL"] = archive.jwks_url
    return [{"name": k, "value": v} for k, v in env.items()]
