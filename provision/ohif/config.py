"""The OHIF viewer's configuration (`window.config = {...};`) for a blueprint.

The file has the form of OHIF's own `platform/app/public/config/google.js` (v3.9 and
later, checked against the copy shipped in @ohif/app 3.13.2): the same top-level keys,
the Google `oidc` block and one `dicomweb` data source per DICOM store, with the options
Google's DICOMweb needs. It is emitted by our own small serializer, so that:

- the output is stable: same blueprint, same bytes (keys in a fixed order, no time stamp,
  no absolute path);
- it is valid JavaScript that OHIF loads as `/app-config.js`;
- it holds no secret (an OAuth client ID is public; no token is ever written).

Two targets:

- Google Cloud (`emulator_url=None`): roots at `https://healthcare.googleapis.com/v1/...`,
  the `oidc` block when `viewer.oauth_client_id` is set (without it the block is left out
  and `config_warnings` / `oauth_checklist` say so; a placeholder client ID would only
  fail later, at sign-in, with a less clear message).
- An emulator (`emulator_url="http://127.0.0.1:8765"`): roots at the emulator, no
  `oidc`, and no `configurationAPI`, whose Google hosts are hard-coded in OHIF and cannot
  be pointed at an emulator by config (`initialUrl` and `baseHealthcareUrl` in OHIF's
  extensions/default/src/DataSourceConfigurationAPI/GoogleCloudDataSourceConfigurationAPI.ts,
  https://github.com/OHIF/Viewers). This is what
  `provision viewer` serves; the browser smoke runs the Google form instead, unchanged, with
  the browser's requests for Google's hosts routed to the emulator (provision.checks.browser).
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Literal

from provision.blueprint.sources import resolve

if TYPE_CHECKING:  # for annotations only: no import at run time
    from provision.blueprint.models import Blueprint

__all__ = [
    "GOOGLE_SCOPES",
    "HEALTHCARE_URL",
    "config_dict",
    "config_warnings",
    "data_sources",
    "dicomweb_root",
    "oauth_checklist",
    "hosted_sources",
    "render_config",
    "render_hosted_config",
    "source_root",
    "write_config",
]

HEALTHCARE_URL = "https://healthcare.googleapis.com"
GOOGLE_SCOPES: tuple[str, ...] = (
    "email",
    "profile",
    "openid",
    "https://www.googleapis.com/auth/cloudplatformprojects.readonly",
    "https://www.googleapis.com/auth/cloud-healthcare",
)
OHIF_VERSION = "3.13.2"  # the viewer release this config is written for (see provision.ohif.fetch)

Format = Literal["js", "json"]


# ------------------------------------------------------------------------ the data


def dicomweb_root(bp: Blueprint, store_id: str, *, emulator_url: str | None = None) -> str:
    """`{base}/v1/projects/P/locations/L/datasets/D/dicomStores/S/dicomWeb` for one store."""
    base = emulator_url.rstrip("/") if emulator_url else HEALTHCARE_URL
    return (
        f"{base}/v1/projects/{bp.project.id}/locations/{bp.dataset.location}"
        f"/datasets/{bp.dataset.id}/dicomStores/{store_id}/dicomWeb"
    )


# Comments written above keys in the emitted JavaScript (keyed by the key's name).
_COMMENTS: dict[str, tuple[str, ...]] = {
    "routerBasename": ("The viewer is served at the root of its origin.",),
    "oidc": (
        "Sign in with Google (OAuth web client of this project; the client ID is public).",
        "OHIF uses the first entry only.",
    ),
    "post_logout_redirect_uri": (
        "google.js names /logout-redirect.html, which the released viewer does not ship;",
        "'/' is OHIF's own default.",
    ),
    "thumbnailRendering": (
        "'wadors': thumbnails are drawn from frames/1, which the viewer fetches anyway.",
        "'rendered' (google.js) adds a series-level /rendered call per series, answered",
        "by a fallback to instance level where series level is not served.",
    ),
    "omitQuotationForMultipartRequest": (
        "Google expects the multipart Accept without quotes; unquoted it is also a",
        "CORS-safelisted header, which saves one preflight per frame.",
    ),
    "configurationAPI": ("Lets the study list browse projects, datasets and stores of this account.",),
}


def source_root(source: Any, *, emulator_url: str | None = None) -> str:
    """A viewer source's DICOMweb root: a Healthcare store's at Google (or the emulator), a plain
    root as the blueprint writes it (on both targets: it is no Google URL to redirect)."""
    if source.store:
        base = emulator_url.rstrip("/") if emulator_url else HEALTHCARE_URL
        return f"{base}/v1/{source.store}/dicomWeb"
    root: str = source.dicomweb   # a source without a store has a DICOMweb root (the blueprint's rules)
    return root


def data_sources(bp: Blueprint, *, emulator_url: str | None = None) -> list[dict[str, Any]]:
    """One OHIF `dicomweb` data source per store, in blueprint order, then one per viewer source
    (read-only). A blueprint whose sources say `idc: latest` must be pinned first
    (provision.resources.viewer_source.pin: it asks IDC which release is the latest)."""
    out = _store_sources(bp, emulator_url=emulator_url)
    for source in _viewer_sources(bp):
        root = source_root(source, emulator_url=emulator_url)
        # Read-only: no upload (OHIF's dicomUploadEnabled), and no configurationAPI: a source is one
        # fixed store, and the Google configuration API would browse the user's own projects from it
        # (and fetch cloudresourcemanager/v1/projects/<the source's project>, which its readers may not
        # read). The friendly name says whose data it is; the first store stays the default source.
        out.append(_dicomweb_source(source.name, source.label, source.name, root, upload=False))
    return out


def _viewer_sources(bp: Blueprint) -> list[Any]:
    if not getattr(bp, "viewer_sources", None):
        return []

    return resolve(bp)


def _store_sources(bp: Blueprint, *, emulator_url: str | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for store in bp.dicom_stores:
        root = dicomweb_root(bp, store.id, emulator_url=emulator_url)
        on_emulator = emulator_url and emulator_url.rstrip("/") != HEALTHCARE_URL
        friendly = f"{bp.dataset.id}/{store.id} ({'emulator' if on_emulator else bp.project.id})"
        source = _dicomweb_source(store.id, friendly, "GCP", root, upload=True)
        if not emulator_url:
            source["configuration"]["configurationAPI"] = "ohif.dataSourceConfigurationAPI.google"
        out.append(source)
    return out


def _dicomweb_source(source_name: str, friendly: str, name: str, root: str, *, upload: bool) -> dict[str, Any]:
    """One OHIF dicomweb data source with Google's options (one root for QIDO, WADO and WADO-URI)."""
    return {
        "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
        "sourceName": source_name,
        "configuration": {
            "friendlyName": friendly,
            "name": name,
            "wadoUriRoot": root,
            "qidoRoot": root,
            "wadoRoot": root,
            "qidoSupportsIncludeField": True,
            "imageRendering": "wadors",
            "thumbnailRendering": "wadors",
            "enableStudyLazyLoad": True,
            "supportsFuzzyMatching": True,
            "supportsWildcard": False,
            "dicomUploadEnabled": upload,
            "omitQuotationForMultipartRequest": True,
            "bulkDataURI": {"enabled": True},
        },
    }


def _oidc(bp: Blueprint) -> list[dict[str, Any]]:
    return [
        {
            "authority": "https://accounts.google.com",
            "client_id": bp.viewer.oauth_client_id,
            "redirect_uri": "/callback",
            "response_type": "id_token token",
            "scope": " ".join(GOOGLE_SCOPES),
            "post_logout_redirect_uri": "/",
            "revoke_uri": "https://accounts.google.com/o/oauth2/revoke?token=",
            "automaticSilentRenew": True,
            "revokeAccessTokenOnSignout": True,
        }
    ]


def config_dict(bp: Blueprint, *, emulator_url: str | None = None, oidc: bool = True) -> dict[str, Any]:
    """The whole `window.config` object, keys in the order they are emitted.

    `oidc=False` leaves the sign-in block out even for Google Cloud: the viewer then takes
    an access token from its `?token=` URL parameter (what the browser smoke does with ADC).
    """
    sources = data_sources(bp, emulator_url=emulator_url)
    cfg: dict[str, Any] = {
        "routerBasename": "/",
        "enableGoogleCloudAdapter": False,
        "showWarningMessageForCrossOrigin": True,
        "showCPUFallbackMessage": True,
        "showLoadingIndicator": True,
        "strictZSpacingForVolumeViewport": True,
    }
    if oidc and not emulator_url and getattr(bp.viewer, "oauth_client_id", None):
        cfg["oidc"] = _oidc(bp)
    cfg.update(
        {
            "extensions": [],
            "modes": [],
            "showStudyList": True,
            "defaultDataSourceName": sources[0]["sourceName"],
            "dataSources": sources,
        }
    )
    return cfg


# ------------------------------------------------------------------ JavaScript output

_IDENT = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")
_JS_ESCAPES = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\r": "\\r", "\t": "\\t", "<": "\\x3c"}


def _js_string(value: str) -> str:
    out = []
    for ch in value:
        if ch in _JS_ESCAPES:
            out.append(_JS_ESCAPES[ch])
        elif ord(ch) < 0x20 or ch in "\u2028\u2029" or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "'" + "".join(out) + "'"


def _js_key(key: str) -> str:
    return key if _IDENT.match(key) else _js_string(key)


def _js(value: Any, indent: int) -> Iterable[str]:
    """Lines of a JavaScript literal; the first line continues the caller's line."""
    pad = "  " * indent
    if isinstance(value, bool):
        yield "true" if value else "false"
    elif value is None:
        yield "null"
    elif isinstance(value, int):
        yield str(value)
    elif isinstance(value, str):
        yield _js_string(value)
    elif isinstance(value, list):
        if not value:
            yield "[]"
            return
        yield "["
        for item in value:
            lines = list(_js(item, indent + 1))
            lines[-1] += ","
            yield pad + "  " + lines[0]
            yield from lines[1:]
        yield pad + "]"
    elif isinstance(value, dict):
        if not value:
            yield "{}"
            return
        if len(value) == 1 and not isinstance(next(iter(value.values())), (dict, list)):
            ((key, item),) = value.items()
            yield f"{{ {_js_key(key)}: {next(iter(_js(item, 0)))} }}"
            return
        yield "{"
        for key, item in value.items():
            for comment in _COMMENTS.get(key, ()):
                yield f"{pad}  // {comment}"
            lines = list(_js(item, indent + 1))
            lines[-1] += ","
            yield f"{pad}  {_js_key(key)}: {lines[0]}"
            yield from lines[1:]
        yield pad + "}"
    else:  # pragma: no cover - the config holds only the types above
        raise TypeError(f"cannot write {type(value).__name__} into the OHIF config")


def hosted_sources(bp: Blueprint, base: str) -> dict[str, str]:
    """What the hosted viewer proxies (its HOSTED_SOURCES): each store and each Cloud Healthcare viewer
    source, by source name, at `base` (Google's Healthcare root, or an emulator's). A plain DICOMweb
    root is left to the browser: the viewer's own token must never be sent to a host that is not Google's."""
    out = {store.id: dicomweb_root(bp, store.id, emulator_url=base) for store in bp.dicom_stores}
    for source in _viewer_sources(bp):
        if source.store:
            out[source.name] = source_root(source, emulator_url=base)
    return out


def render_hosted_config(bp: Blueprint, base: str) -> str:
    """The config the hosted viewer serves (access: iap): the roots at `base`, which the viewer makes
    same-origin (hosted_sources); no sign-in block and no Google configuration API (IAP signs users
    in, and the browser never calls Google)."""
    return render_config(bp, emulator_url=base, hosted=True)


def render_config(bp: Blueprint, *, emulator_url: str | None = None, fmt: Format = "js", oidc: bool = True,
                  hosted: bool = False) -> str:
    """The OHIF config for `bp` as JavaScript (`fmt="js"`) or its data sources as JSON (`fmt="json"`).

    `oidc=False`: no sign-in block (for `?token=`, see config_dict). `hosted`: the hosted viewer's
    (render_hosted_config)."""
    if fmt == "json":
        return json.dumps(data_sources(bp, emulator_url=emulator_url), indent=2) + "\n"
    if fmt != "js":
        raise ValueError(f"unknown config format {fmt!r}; use 'js' or 'json'")
    target = "the emulator (no sign-in)" if emulator_url else "Google Cloud Healthcare"
    if hosted:
        target = "the hosted viewer (DICOMweb through its same-origin proxy, no sign-in)"
    project = "".join(ch if ch.isprintable() and ch not in "\u2028\u2029" else " " for ch in str(bp.project.id))
    head = [
        "/** @type {AppTypes.Config} */",
        f"// OHIF viewer {OHIF_VERSION} configuration for project {project}, written by `provision config`",
        f"// for {target}. Regenerate it rather than editing it; it holds no secret.",
    ]
    if not emulator_url and not getattr(bp.viewer, "oauth_client_id", None):
        head.append("// No viewer.oauth_client_id in the blueprint: no sign-in block (see `provision config` checklist).")
    elif not emulator_url and not oidc:
        head.append("// No sign-in block: the viewer takes its access token from the ?token= URL parameter.")
    body = list(_js(config_dict(bp, emulator_url=emulator_url, oidc=oidc), 0))
    body[0] = "window.config = " + body[0]
    body[-1] += ";"
    return "\n".join(head + body) + "\n"


def write_config(
    bp: Blueprint, path: str | os.PathLike[str], *, emulator_url: str | None = None, fmt: Format = "js"
) -> Path:
    """Write the config atomically (temp file in the same directory, then os.replace); returns the path."""
    target = Path(path)
    text = render_config(bp, emulator_url=emulator_url, fmt=fmt)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return target


# ----------------------------------------------------------------------- checklist


def config_warnings(bp: Blueprint, *, emulator_url: str | None = None) -> list[str]:
    """What the emitted config lacks for its target (empty when nothing is missing)."""
    if emulator_url:
        return []
    if not getattr(bp.viewer, "oauth_client_id", None):
        return [
            "viewer.oauth_client_id is not set: the config has no sign-in (oidc) block, so on Google Cloud "
            "the viewer can only be opened with ?token=. Create the OAuth web client (see the checklist) "
            "and put its client ID in the blueprint."
        ]
    return []


def oauth_checklist(bp: Blueprint, origin: str | None = None) -> str:
    """The two console steps no public API can do, for this project, as a numbered checklist. `origin`:
    where the viewer is served, when not `viewer.origin` (the hosted viewer's run.app URL with
    `viewer.hosting.access: google-sign-in`)."""
    project = bp.project.id
    origin = (origin or bp.viewer.origin).rstrip("/")
    client_id = getattr(bp.viewer, "oauth_client_id", None)
    lines = [
        f"OAuth for the OHIF viewer of project {project}: two steps in the Google Cloud console",
        "(no public API creates an OAuth consent screen or an OAuth web client).",
        "",
        "1. OAuth consent screen",
        f"   https://console.cloud.google.com/apis/credentials/consent?project={project}",
        "   - User type: Internal (users of your organization) or External (then add test users).",
        "   - App name and support email: your choice.",
        "   - Scopes (Add or remove scopes):",
        *[f"       {scope}" for scope in GOOGLE_SCOPES],
        "",
        "2. OAuth client ID, type 'Web application'",
        f"   https://console.cloud.google.com/apis/credentials/oauthclient?project={project}",
        "   - Authorized JavaScript origins:",
        f"       {origin}",
        "   - Authorized redirect URIs:",
        f"       {origin}/callback",
        f"       {origin}/silent-refresh.html   (OHIF renews the token silently through this page)",
        "   - Create, then copy the client ID (NUMBER-ID.apps.googleusercontent.com) into the blueprint:",
        "       viewer:",
        "         oauth_client_id: <client ID>",
        "   and run `provision config` again (with viewer.hosting: `provision apply`, which redeploys the viewer).",
    ]
    if client_id:
        lines += ["", f"Current client ID: {client_id} (written into the config's oidc block)."]
    else:
        lines += [
            "",
            "WARNING: viewer.oauth_client_id is missing: the emitted config has no sign-in block, and users",
            "cannot log in to the viewer until steps 1-2 are done and the client ID is in the blueprint.",
        ]
    return "\n".join(lines) + "\n"
