"""The hosted viewer's artifact for one blueprint and target: the source archive (built locally,
byte-reproducible: provision.ohif.hosted_source) and the environment the service runs it with.

The archive's `app-config.js` names each store's DICOMweb root at the target's Healthcare endpoint
(Google's, or the emulator's), which the viewer rewrites to its own same-origin paths
(HOSTED_SOURCES); no sign-in block, no Google configuration API: in iap mode the browser never calls
Google. So the archive, and its sha256, depend on the blueprint, the provision version, the OHIF
release and the target's Healthcare endpoint (a choice: one archive for both worlds would need the
app to learn its upstream apart from the config).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision.ohif.config import hosted_sources, render_hosted_config
from provision.ohif.fetch import cache_root
from provision.ohif.hosted_source import build_source
from provision.resources.hosting_names import audience


@dataclass(frozen=True)
class Archive:
    """The archive to run (its local file and sha256) and what the viewer proxies."""

    path: Path
    sha256: str
    size: int
    sources: dict[str, str] = field(default_factory=dict)
    jwks_url: str | None = None     # IAP's keys when not Google's (an emulator's)

    @property
    def object(self) -> str:
        """Its object in the ownership record's bucket."""
        return f"hosted/{self.sha256}.tar.gz"


def _pinned(bp: Any, releases: Any) -> Any:
    """`idc: latest` replaced by the newest release plan listed (as the config and the smoke use it)."""
    sources = getattr(bp, "viewer_sources", None) or []
    if not any(getattr(s, "idc", None) == "latest" for s in sources) or not isinstance(releases, list) or not releases:
        return bp
    latest = f"v{max(releases)}"
    return bp.model_copy(update={"viewer_sources": [s.model_copy(update={"idc": latest}) if s.idc == "latest" else s
                                                    for s in sources]})


def prepare(bp: Any, target: Any, releases: Any = None) -> Archive:
    """Build (or find, same bytes) the archive for `bp` on `target`, in the provision cache."""
    bp = _pinned(bp, releases)
    base = target.root("healthcare")
    art = build_source(cache_root() / "hosted", config_js=render_hosted_config(bp, base))
    jwks = f"{target.emulator}/iap/verify/public_key-jwk" if target.is_emulator else None
    return Archive(art.path, art.sha256, art.size, hosted_sources(bp, base), jwks)


def environment(archive: Archive, number: str, region: str, service: str) -> list[dict]:
    """The service's env (provision/hosted/settings.py): iap mode, the proxied sources, IAP's audience."""
    env = {"HOSTED_ACCESS": "iap", "HOSTED_SOURCES": json.dumps(archive.sources),
           "HOSTED_IAP_AUDIENCE": audience(number, region, service)}
    if archive.jwks_url:
        env["HOSTED_IAP_JWKS_URL"] = archive.jwks_url
    return [{"name": k, "value": v} for k, v in env.items()]
