"""The hosted viewer's configuration, read from environment variables (what Cloud Run sets).

    HOSTED_DIST              the OHIF dist directory (default: `ohif/` beside this package, as the
                             source archive lays it out)
    HOSTED_APP_CONFIG        the OHIF config JavaScript itself, or
    HOSTED_APP_CONFIG_FILE   a file holding it (default: `app-config.js` beside this package)
    HOSTED_SOURCES           JSON object {name: upstream DICOMweb root}, one per store and viewer
                             source, in config order; each is served at /dicomweb/NAME. In the
                             config, every quoted upstream root is replaced by its same-origin URL.
    HOSTED_ACCESS            iap (default) | google-sign-in (static viewer only, no proxy)
    HOSTED_IAP_AUDIENCE      the audience IAP signs for this service; for IAP on Cloud Run:
                             /projects/PROJECT_NUMBER/locations/REGION/services/SERVICE
    HOSTED_IAP_JWKS_URL      IAP's public keys (default Google's; an emulator serves its own)
    HOSTED_WRITE             read-only (default) | read-write (STOW-RS and DELETE forwarded)
    HOSTED_UPSTREAM_AUTH     google (default: google.auth.default(), the metadata server on
                             Cloud Run) | none (no Authorization: an emulator's anonymous owner) |
                             token:VALUE (a fixed bearer token, e.g. the emulator's emulator:MEMBER)
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

__all__ = ["IAP_ISSUER", "IAP_JWKS_URL", "Settings", "SettingsError", "from_env"]

IAP_ISSUER = "https://cloud.google.com/iap"
IAP_JWKS_URL = "https://www.gstatic.com/iap/verify/public_key-jwk"
HERE = Path(__file__).resolve().parent
ACCESS_MODES = ("iap", "google-sign-in")
WRITE_MODES = ("read-only", "read-write")
# A source's name is its OHIF sourceName (a store ID: letters, digits, _ - .), used as a URL segment.
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


class SettingsError(ValueError):
    """A setting is missing or wrong; the message names the variable and what would be valid."""


@dataclass(frozen=True)
class Settings:
    """Everything the app needs; `from_env` builds it from the environment."""

    dist: Path
    config_js: str
    sources: dict[str, str] = field(default_factory=dict)
    access: str = "iap"
    iap_audience: str | None = None
    iap_jwks_url: str = IAP_JWKS_URL
    read_write: bool = False
    upstream_auth: str = "google"

    def __post_init__(self) -> None:
        if self.access not in ACCESS_MODES:
            raise SettingsError(f"HOSTED_ACCESS={self.access!r}: use one of {', '.join(ACCESS_MODES)}")
        if self.access == "iap" and not self.iap_audience:
            raise SettingsError("HOSTED_IAP_AUDIENCE is required with HOSTED_ACCESS=iap "
                                "(/projects/PROJECT_NUMBER/locations/REGION/services/SERVICE)")
        if not (self.dist / "index.html").is_file():
            raise SettingsError(f"HOSTED_DIST={self.dist}: no index.html there (not an OHIF build)")
        for name, root in self.sources.items():
            if not name or set(name) - _NAME_CHARS or name in (".", ".."):
                raise SettingsError(f"HOSTED_SOURCES: name {name!r} must be letters, digits, - _ . (a store ID)")
            if not root.startswith(("https://", "http://")) or root.endswith("/"):
                raise SettingsError(f"HOSTED_SOURCES[{name!r}]={root!r}: an absolute http(s) DICOMweb root "
                                    "without a trailing slash")
        if not (self.upstream_auth in ("google", "none") or self.upstream_auth.startswith("token:")):
            raise SettingsError("HOSTED_UPSTREAM_AUTH: use google, none or token:VALUE")


def _config_js(env: Mapping[str, str]) -> str:
    if env.get("HOSTED_APP_CONFIG"):
        return env["HOSTED_APP_CONFIG"]
    path = Path(env.get("HOSTED_APP_CONFIG_FILE") or HERE.parent / "app-config.js")
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"HOSTED_APP_CONFIG_FILE={path}: cannot read it ({exc.strerror or exc}); "
                            "set HOSTED_APP_CONFIG or HOSTED_APP_CONFIG_FILE") from None


def _sources(env: Mapping[str, str]) -> dict[str, str]:
    raw = env.get("HOSTED_SOURCES") or "{}"
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"HOSTED_SOURCES is not JSON ({exc.msg}): use {{\"NAME\": \"https://.../dicomWeb\"}}") from None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise SettingsError('HOSTED_SOURCES must be a JSON object {"NAME": "https://.../dicomWeb"}')
    return value


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from `env` (default: os.environ); raises SettingsError with the variable's name."""
    env = os.environ if env is None else env
    write = env.get("HOSTED_WRITE", "read-only")
    if write not in WRITE_MODES:
        raise SettingsError(f"HOSTED_WRITE={write!r}: use one of {', '.join(WRITE_MODES)}")
    return Settings(
        dist=Path(env.get("HOSTED_DIST") or HERE.parent / "ohif"),
        config_js=_config_js(env),
        sources=_sources(env),
        access=env.get("HOSTED_ACCESS", "iap"),
        iap_audience=env.get("HOSTED_IAP_AUDIENCE") or None,
        iap_jwks_url=env.get("HOSTED_IAP_JWKS_URL") or IAP_JWKS_URL,
        read_write=write == "read-write",
        upstream_auth=env.get("HOSTED_UPSTREAM_AUTH", "google"),
    )
