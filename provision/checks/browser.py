"""Browser smoke: the real OHIF viewer, served with our config, driven in headless Chromium.

    report = run_browser_smoke(config_js, expected_studies=[{"patient_name": "Phantom, CT", "study_uid": ...}],
                               token=None, emulator_host="http://127.0.0.1:8765")
    report.ok, report.problems, report.timings, report.screenshots

1. The viewer (`@ohif/app`, from the cache) is served on 127.0.0.1 with `config_js` as
   `/app-config.js`, and Debian's `/usr/bin/chromium` is launched through Playwright with a
   fresh profile (never `playwright install`).
2. Study list (`/`): waits for OHIF's QIDO answer, then for every expected study's patient
   name as OHIF shows it ("Phantom, CT"). A missing study is named, with what the store
   returned and what the list shows.
3. Viewer (`/viewer?StudyInstanceUIDs=<first>`, `&token=` when a token is given, which is
   how OHIF takes a token without a sign-in): waits for a viewport canvas to hold an image
   (read in the page: distinct gray levels and non-black pixels), then screenshots the
   viewport and checks it again with Pillow.
4. Page errors (`pageerror`) fail the run; failed DICOMweb answers are listed.

`data_source="idc"` drives a data source other than the default: the study list is opened with
`/?datasources=idc` and the viewer at `/viewer/idc?StudyInstanceUIDs=...` (the link OHIF's own
list gives; its viewer route ignores `?datasources=`), and the study query and the first frame
must go to that source's DICOMweb root.

Emulator mode (`emulator_host` given): nothing may leave the machine. Chromium resolves no
host name and sends anything not on loopback to a closed proxy port, so such requests
fail in the browser itself; each is recorded and fails the run. No request is intercepted
by Playwright (its routing would answer CORS preflights itself and hide what the emulator
answers).

With a token against Google Cloud, OHIF has no way to give the study list a token (only
the viewer route reads `?token=`), so on the study list the smoke adds the header to
DICOMweb requests itself, as a signed-in viewer would. The viewer page is then driven with
OHIF's own `?token=`. The token never appears in the report, screenshots are of pages that
show none, and the URL parameter is removed by OHIF on load.

Google mode against an emulator (`google_via` given): the config is the one `provision config`
writes for Google Cloud, unchanged (authority https://accounts.google.com, roots at
https://healthcare.googleapis.com, OHIF's Google configuration API), and the browser's requests
for Google's hosts are routed by Playwright to the emulator (`route.fetch` + `route.fulfill`; a
302 is passed on to the browser, not followed). Everything else is as offline as emulator mode.
With an `oidc` block the viewer signs in for real: OHIF's oidc-client reads Google's discovery
document, navigates to the authorization endpoint, which answers with a 302 to `/callback` and
the tokens in the fragment, and validates the ID token against the JWKS. The viewer is served
at the blueprint's origin when it is a loopback `http` origin (that origin's port), so the
redirect URIs are the ones the OAuth checklist prints. The report then says whether every
DICOMweb request carried a token issued in this session (`dicomweb_unauthorized` lists those
that did not), and, when asked: silent renewal (`renewal=True`: a `prompt=none` authorization in
OHIF's hidden iframe through /silent-refresh.html, then the new token on DICOMweb requests),
the data-source dialog walk (`dialog=...`: project, location, data set, store through OHIF's own
UI, then the study list of the chosen store), and sign-out (`sign_out=True`: what /logout
does; OHIF 3.13.2's oidc-client removes the user but revokes no Google access token, because
it skips any token containing a '.', which Google's `ya29.` tokens do; the report says so).
/silent-refresh.html loads an es5 shim from cdnjs.cloudflare.com; that one request is answered
locally with an empty script (Chromium needs no shim) and listed in `stubbed_requests`.

The hosted viewer with `access: google-sign-in` (`hosted` and `google_via` given): the viewer
runs at its run.app URL (routed to the emulator, checks/hosted_route.py, for that host only) with
Google's own config; it signs in with Google and calls Google's hosts (routed as in Google mode)
with the user's token, never its own service. The authorization endpoint's 302 back to the
run.app `/callback` is handed to the page as a `location.replace` (Playwright does not route what
a fulfilled redirect to another https host leads to). The report lists the requests to the service
(`routed_requests`): none may carry a bearer token.

Waits are Playwright's (responses, selectors, in-page predicates) under one deadline per
phase; there are no fixed sleeps.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import quote, unquote, urlsplit

import requests
from PIL import Image

from provision.checks.answers import frame_problem, http_problem, ohif_patient_name
from provision.checks.hosted_route import HostedRoute
from provision.errors import ProvisionError
from provision.ohif.fetch import ensure_viewer
from provision.ohif.serve import ViewerServer
from provision.redact import redact
from provision.words import plural

__all__ = ["CHROMIUM", "GOOGLE_HOSTS", "BrowserReport", "chromium_args", "run_browser_smoke"]

CHROMIUM = "/usr/bin/chromium"
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
# Called by OHIF's Google configuration API on the study list (hard-coded hosts: OHIF's
# extensions/default/src/DataSourceConfigurationAPI/GoogleCloudDataSourceConfigurationAPI.ts).
GOOGLE_CONFIG_API = "https://cloudresourcemanager.googleapis.com/v1/**"
# The Google hosts the viewer calls (sign-in, tokens, keys, user info, DICOMweb, the configuration API).
GOOGLE_HOSTS = ("accounts.google.com", "oauth2.googleapis.com", "www.googleapis.com", "openidconnect.googleapis.com",
                "healthcare.googleapis.com", "cloudresourcemanager.googleapis.com")
_GOOGLE_URL = re.compile(r"^https://(" + "|".join(re.escape(h) for h in GOOGLE_HOSTS) + r")(/|$)")
# What OHIF's /silent-refresh.html loads from a CDN (an es5 shim Chromium does not need).
_STUBBED_URL = re.compile(r"^https://cdnjs\.cloudflare\.com/ajax/libs/es5-shim/")

# Read in the page: copy the largest viewport canvas into a scratch 2D canvas (never
# touching the viewport canvas' own context) and count gray levels and non-black pixels.
_CANVAS_STATS_JS = """
() => {
  const canvases = [...document.querySelectorAll('canvas.cornerstone-canvas, .cornerstone-viewport-element canvas')]
    .filter(c => c.width > 0 && c.height > 0 && c.offsetParent !== null);
  if (!canvases.length) return null;
  const c = canvases.reduce((a, b) => (a.width * a.height >= b.width * b.height ? a : b));
  const w = Math.min(c.width, 512), h = Math.min(c.height, 512);
  const scratch = document.createElement('canvas');
  scratch.width = w; scratch.height = h;
  const ctx = scratch.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(c, 0, 0, w, h);
  const d = ctx.getImageData(0, 0, w, h).data;
  const levels = new Set();
  let nonBlack = 0;
  for (let i = 0; i < d.length; i += 4) {
    const g = (d[i] * 3 + d[i + 1] * 6 + d[i + 2]) / 10 | 0;
    levels.add(g);
    if (g > 16) nonBlack++;
  }
  return { width: c.width, height: c.height, levels: levels.size, nonBlack: nonBlack / (w * h),
           canvases: canvases.length };
}
"""
# Cornerstone dispatches CORNERSTONE_IMAGE_RENDERED (not bubbling) on the viewport element after
# each render; a capturing listener on the document sees it. A canvas still blank this long after
# the first render is blank for good, so a black study fails in seconds, not at the deadline.
_RENDER_PROBE_JS = """
document.addEventListener('CORNERSTONE_IMAGE_RENDERED', () => {
  window.__provisionRenders = (window.__provisionRenders || 0) + 1;
  window.__provisionFirstRender = window.__provisionFirstRender || performance.now();
}, true);
"""
SETTLE_MS = 1500
UNAUTHENTICATED_MESSAGE = "Request had invalid authentication credentials."  # Google's 401 message
MIN_LEVELS = 16  # a drawn phantom or patient image has dozens; a blank or text-only canvas has few
MIN_NON_BLACK = 0.05


@dataclass
class BrowserReport:
    viewer_url: str = ""
    problems: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds
    screenshots: list[str] = field(default_factory=list)
    studies_expected: list[str] = field(default_factory=list)
    studies_shown: list[str] = field(default_factory=list)
    canvas: dict[str, Any] = field(default_factory=dict)
    page_errors: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    mode: str = "emulator"                 # emulator | google | google-via-emulator | hosted | hosted-google-sign-in
    config_sha256: str = ""                # of the /app-config.js the browser loaded
    google_requests: list[str] = field(default_factory=list)   # "GET host/path -> status" (no query, no token)
    stubbed_requests: list[str] = field(default_factory=list)
    dicomweb_requests: int = 0
    dicomweb_unauthorized: list[str] = field(default_factory=list)  # DICOMweb requests without a token of this session
    sign_in: dict[str, Any] = field(default_factory=dict)
    dialog: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    data_source: str = ""                  # the OHIF sourceName driven ("": the default data source)
    # The hosted viewer (hosted=...): every https request as routed, and those carrying a Google token.
    routed_requests: list[str] = field(default_factory=list)   # "GET host/path -> status" (no query)
    bearer_requests: list[str] = field(default_factory=list)   # with `Authorization: Bearer` (must stay empty)
    token_in_url: list[str] = field(default_factory=list)      # with access_token in the URL (must stay empty)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, **asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def summary(self) -> str:
        t = ", ".join(f"{k} {v:.2f} s" for k, v in self.timings.items())
        of = f" of data source {self.data_source}" if self.data_source else ""
        head = f"browser smoke{of} {'passed' if self.ok else 'FAILED'} ({t})"
        lines = [head] + [f"  - {p}" for p in self.problems]
        if self.mode == "hosted":
            parts = urlsplit(self.viewer_url)
            lines.append(f"  the hosted viewer at {parts.scheme}://{parts.netloc}, signed in through IAP; "
                         f"{len(self.bearer_requests) + len(self.token_in_url)} request(s) carried a Google token")
        elif self.mode == "hosted-google-sign-in":
            parts = urlsplit(self.viewer_url)
            lines.append(f"  the hosted viewer at {parts.scheme}://{parts.netloc}, signed in with Google; "
                         f"{self.dicomweb_requests} DICOMweb request(s) to Google with the user's token, "
                         f"{len(self.bearer_requests)} with a token to the service")
        if self.screenshots:
            lines.append("  screenshots: " + ", ".join(self.screenshots))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


class _Abort(Exception):
    """A phase failed: stop driving the page (its problem is already recorded)."""


def chromium_args(*, offline: bool) -> list[str]:
    """Flags for Debian's chromium in a container (--no-sandbox and --disable-dev-shm-usage, as
    Puppeteer's troubleshooting guide advises for containers: https://pptr.dev/troubleshooting; the
    others stop background calls home), plus offline isolation."""
    args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-domain-reliability",
        "--no-first-run",
        "--no-default-browser-check",
        "--metrics-recording-only",
    ]
    if offline:
        # No name resolves and anything not on loopback goes to a closed proxy port
        # (Chromium never proxies loopback): nothing leaves the machine, and CORS stays real.
        # `*.localhost` names are loopback by definition (RFC 6761 §6.3): an emulator's local door.
        args += ["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE *.localhost, EXCLUDE 127.0.0.1",
                 "--proxy-server=http://127.0.0.1:9"]
    return args


def _expected(studies: Iterable[Any]) -> list[dict[str, str]]:
    out = []
    for s in studies:
        get = s.get if isinstance(s, Mapping) else lambda k, d=None, s=s: getattr(s, k, d)
        name = get("patient_name_ohif") or get("patient_name") or ""
        if "^" in name:
            name = ohif_patient_name(name)
        out.append({"patient_name": name, "study_uid": get("study_uid") or ""})
    if not out:
        raise ValueError("expected_studies is empty: name at least one study the list must show")
    return out


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def _dicomweb_roots(config_js: str) -> list[str]:
    return sorted(set(re.findall(r"qidoRoot:\s*'([^']+)'", config_js)))


def _source_root(config_js: str, name: str) -> str:
    """The qidoRoot of the data source `name` in `config_js` (the first root after its sourceName)."""
    m = re.search(rf"sourceName:\s*'{re.escape(name)}'.*?qidoRoot:\s*'([^']+)'", config_js, re.DOTALL)
    if not m:
        raise ProvisionError(f"cannot run the browser smoke of data source {name!r}: the config has no such data source")
    return m.group(1)


def _pn_from_qido(study: dict[str, Any]) -> str:
    value = ((study.get("00100010") or {}).get("Value") or [None])[0]
    if isinstance(value, dict):
        value = value.get("Alphabetic", "")
    return ohif_patient_name(value or "")


def _image_stats(png: bytes) -> dict[str, Any]:
    with Image.open(io.BytesIO(png)) as img:
        gray = img.convert("L")
        hist = gray.histogram()
        total = gray.width * gray.height
    return {
        "levels": sum(1 for n in hist if n),
        "nonBlack": round(sum(hist[17:]) / total, 4) if total else 0.0,
        "size": [gray.width, gray.height],
    }


def _viewer_binding(origin: str | None) -> tuple[str, int, str | None]:
    """(host, port, base URL) to serve the viewer on: the origin itself when it is a loopback http
    origin with a port (so its redirect URIs are the registered ones); else any free port."""
    if origin:
        parts = urlsplit(origin)
        if parts.scheme == "http" and (parts.hostname or "") in ("127.0.0.1", "localhost") and parts.port:
            return "127.0.0.1", parts.port, origin.rstrip("/")
    return "127.0.0.1", 0, None


def fingerprint(token: str) -> str:
    """A token's short SHA-256, to tell tokens apart in a report without holding them."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def run_browser_smoke(
    config_js: str,
    *,
    expected_studies: list[Any],
    token: str | None = None,
    out_dir: Path | str = Path("out/smoke"),
    emulator_host: str | None = None,
    timeout_s: float = 60.0,
    dist: Path | None = None,
    chromium: str = CHROMIUM,
    google_via: str | None = None,
    origin: str | None = None,
    renewal: bool = False,
    dialog: Mapping[str, str] | None = None,
    sign_out: bool = False,
    data_source: str | None = None,
    hosted: Mapping[str, Any] | None = None,
) -> BrowserReport:
    """Drive the real OHIF viewer with `config_js`; returns a report (raises only when the browser cannot run).

    `google_via`: route Google's hosts to this emulator (module docstring); `origin`: the viewer's
    origin (the blueprint's `viewer.origin`). `renewal`, `dialog` ({"project", "location",
    "dataset", "store"}: names to pick in OHIF's data-source dialog) and `sign_out` add those phases.
    `data_source`: an OHIF sourceName other than the default, opened with `?datasources=` (module docstring).
    `hosted`: {"url": the hosted viewer's run.app URL, "roots": its same-origin DICOMweb roots}: drive the viewer
    that runs there, with `emulator_host` answering for its host and IAP's sign-in (checks/hosted_route.py);
    nothing is served locally and `config_js` is not used. With `google_via` too (access google-sign-in):
    `config_js` is the config the service serves, whose roots and sign-in are Google's (module docstring)."""
    expected = _expected(expected_studies)
    signs_in = bool(hosted and google_via)   # the hosted viewer with access google-sign-in
    source_root = _source_root(config_js, data_source) if data_source and (signs_in or not hosted) else None
    if not Path(chromium).exists():
        raise ProvisionError(f"cannot run the browser smoke: {chromium} is not installed (Debian: apt-get install chromium)")
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import TimeoutError as PlaywrightTimeout
        from playwright.sync_api import sync_playwright
    except ImportError:
        import sys

        # Not `pip install 'provision[browser]'`: an unrelated `provision` is on the package index.
        raise ProvisionError(f"cannot run the browser smoke: the Python package playwright is not installed in "
                             f"{sys.executable}; install it there (`{sys.executable} -m pip install "
                             "'playwright>=1.44'`, or `pipx inject provision playwright`), or in a checkout run "
                             "`make test`, which sets everything up") from None

    if dist is None and not hosted:
        dist = ensure_viewer()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for old in ("study-list.png", "viewer.png", "viewport.png", "failure.png", "dialog.png", "signed-out.png"):
        (out / old).unlink(missing_ok=True)

    report = BrowserReport(studies_expected=[e["patient_name"] for e in expected], data_source=data_source or "")
    offline = emulator_host is not None or google_via is not None
    report.mode = "google-via-emulator" if google_via else ("emulator" if emulator_host else "google")
    allowed_hosts = set(LOOPBACK)
    for url in (emulator_host, google_via):
        if url:
            allowed_hosts.add(_host(url) or url)
    t0 = time.perf_counter()
    # Sign-in redirects to the origin's /callback: serve there. Without sign-in any free port will do.
    host, port, base = _viewer_binding(origin if google_via and "oidc:" in config_js and not hosted else None)
    server = None
    if hosted:
        base = str(hosted["url"]).rstrip("/")
    else:
        assert dist is not None   # located above when the viewer is served here
        server = ViewerServer(dist, config_js, host=host, port=port)
        server.start()
        base = base or server.url
    report.viewer_url = base
    try:
        with sync_playwright() as pw, tempfile.TemporaryDirectory(prefix="provision-chromium-") as profile:
            t = time.perf_counter()
            try:
                context = pw.chromium.launch_persistent_context(
                    profile,
                    executable_path=chromium,
                    headless=True,
                    args=chromium_args(offline=offline),
                    viewport={"width": 1280, "height": 900},
                    device_scale_factor=1,
                    service_workers="block",
                    env={**os.environ, "TZ": "UTC"},
                )
            except PlaywrightError as exc:
                raise ProvisionError(f"cannot run the browser smoke: chromium did not start: {str(exc).splitlines()[0]}") from None
            report.timings["launch"] = round(time.perf_counter() - t, 2)
            try:
                drive = _Drive(context, base, report, roots=_dicomweb_roots(config_js), token=token, out=out,
                               timeout_ms=timeout_s * 1000, offline=offline, allowed_hosts=allowed_hosts,
                               errors=(PlaywrightError, PlaywrightTimeout), google_via=google_via,
                               oidc="oidc:" in config_js, data_source=data_source, source_root=source_root)
                if hosted:
                    drive.route_hosted(emulator_host or google_via, hosted, signs_in=signs_in)
                drive.run(expected, renewal=renewal, dialog=dialog, sign_out=sign_out)
            finally:
                context.close()
    finally:
        if server is not None:
            server.stop()

    if report.page_errors:
        report.problems.append("the page raised errors: " + " | ".join(report.page_errors[:5]))
    if report.external_requests:
        report.problems.append(
            f"{len(report.external_requests)} request(s) left the machine in emulator mode (aborted): "
            + ", ".join(report.external_requests[:10])
        )
    if report.dicomweb_unauthorized and (token or "oidc:" in config_js):
        report.problems.append(f"{len(report.dicomweb_unauthorized)} of {report.dicomweb_requests} DICOMweb request(s) "
                               "carried no access token of this session: " + ", ".join(report.dicomweb_unauthorized[:5]))
    if report.problems and report.failed_requests:
        report.problems.append("failed DICOMweb requests: " + ", ".join(report.failed_requests[:10]))
    report.timings["total"] = round(time.perf_counter() - t0, 2)
    return report


class _Drive:
    """One browser session over the served viewer: the study list, then the viewer (and, when asked,
    renewal, the data-source dialog and sign-out)."""

    def __init__(self, context, base: str, report: BrowserReport, *, roots: list[str], token: str | None, out: Path,
                 timeout_ms: float, offline: bool, allowed_hosts: set[str], errors: tuple[type[BaseException], type[BaseException]],
                 google_via: str | None = None, oidc: bool = False, data_source: str | None = None,
                 source_root: str | None = None) -> None:  # noqa: ANN001
        self.base, self.report, self.roots, self.token, self.out = base, report, roots, token, out
        # A data source other than the default: its name in the URLs, and the one root its pages must ask.
        self.data_source = data_source
        self.page_roots = [source_root] if source_root else roots
        self.timeout_ms, self.offline, self.allowed_hosts = timeout_ms, offline, allowed_hosts
        self.Error, self.Timeout = errors
        self.google_via, self.oidc = google_via, oidc
        self.inject_token = False            # token mode: add the header to the study list's Google calls
        self.tokens: dict[str, str] = {}     # fingerprint -> token, issued in this session (memory only)
        self.issued: list[str] = []          # fingerprints, in the order the authorization endpoint issued them
        self.silent: list[str] = []          # fingerprints issued to prompt=none (silent renewal)
        self.seen_auth: list[str] = []       # fingerprints seen on DICOMweb requests, in order
        self.revokes = 0
        self.token_routes: list[str] = []
        self.signed_in = not oidc
        self.hosted: HostedRoute | None = None
        if token:
            self._remember(token)
        context.set_default_timeout(timeout_ms)
        context.on("request", self._on_request)
        context.on("response", self._on_response)
        context.on("requestfailed", self._on_request_failed)
        if google_via:
            context.route(_GOOGLE_URL, self._route_google)
            context.route(_STUBBED_URL, self._route_stubbed)
        context.add_init_script(_RENDER_PROBE_JS)
        self.page = context.pages[0] if context.pages else context.new_page()
        self.page.on("pageerror", self._on_page_error)
        self.page.on("console", lambda msg: report.console_errors.append(self.secret_free(msg.text)[:300])
                     if msg.type == "error" else None)

    def route_hosted(self, emulator: str | None, hosted: Mapping[str, Any], *, signs_in: bool = False) -> None:
        """Reach the hosted viewer's run.app host and IAP's sign-in through `emulator` (hosted_route.py);
        its DICOMweb roots are the hosted viewer's same-origin ones. `signs_in` (access google-sign-in): only
        the run.app host is routed here; Google's hosts, the roots and the sign-in stay Google mode's."""
        if not emulator:
            raise ProvisionError("the hosted viewer's browser smoke runs against an emulator only "
                                 "(IAP's interactive Google sign-in cannot be automated on Google Cloud)")
        self.hosted = HostedRoute(emulator, _host(self.base), timeout_ms=self.timeout_ms)
        if signs_in:
            self.report.mode = "hosted-google-sign-in"
            self.allowed_hosts.add(self.hosted.service_host)
            self.page.context.route(re.compile(r"^https://" + re.escape(self.hosted.service_host) + r"(/|$)"),
                                    self.hosted)
            return
        self.report.mode = "hosted"
        roots: Mapping[str, str] = hosted.get("roots") or {}   # source name -> same-origin root
        self.roots = sorted(roots.values())
        self.page_roots = [roots[self.data_source]] if self.data_source and self.data_source in roots else self.roots
        self.allowed_hosts |= self.hosted.hosts()
        self.page.context.route(re.compile(r"^https://"), self.hosted)

    # ---- bookkeeping

    def _remember(self, token: str) -> str:
        fp = fingerprint(token)
        self.tokens[fp] = token
        return fp

    def secret_free(self, text: str) -> str:
        """`text` without the token, raw or as it stands in the viewer's URL, nor any other token material."""
        for token in self.tokens.values():
            text = text.replace(token, "<token>").replace(quote(token, safe=""), "<token>")
        return redact(text)

    def _on_page_error(self, exc) -> None:  # noqa: ANN001
        text = self.secret_free(str(exc))[:500]
        if self.signed_in and not text.startswith(UNAUTHENTICATED_MESSAGE):
            self.report.page_errors.append(text)
        else:
            # OHIF's Google configuration API asks for the project as each page loads, before the signed-in
            # user is restored, and throws Google's 401 message; it asks again once signed in.
            note = f"OHIF's Google configuration API raised before the user was signed in: {text}"
            if note not in self.report.notes:
                self.report.notes.append(note)

    def spa_navigate(self, path: str) -> None:
        """Go to `path` inside the running app (as its own links do), without loading the page again."""
        self.page.evaluate("p => { history.pushState({}, '', p); dispatchEvent(new PopStateEvent('popstate')); }", path)

    def _is_dicomweb(self, url: str) -> bool:
        return any(url.startswith(r) for r in self.roots)

    def _on_request(self, request) -> None:  # noqa: ANN001
        url = request.url
        if self.offline and url.startswith(("http:", "https:", "ws:", "wss:")) and _host(url) not in self.allowed_hosts \
                and not (self.google_via and (_GOOGLE_URL.match(url) or _STUBBED_URL.match(url))):
            self.report.external_requests.append(f"{request.method} {self.secret_free(url)}")
        if url.startswith(("http:", "https:")) and "/dicomWeb/" in url and request.method != "OPTIONS":
            self.report.dicomweb_requests += 1
            auth = request.headers.get("authorization", "")
            fp = fingerprint(auth[7:]) if auth.lower().startswith("bearer ") else None
            if fp is None and self.token and (self.inject_token or self.token_routes):
                fp = fingerprint(self.token)  # the header our route adds on the study list (token mode)
            if fp is None or fp not in self.tokens:
                self.report.dicomweb_unauthorized.append(f"{request.method} {self.secret_free(url.split('?')[0])}")
            else:
                self.seen_auth.append(fp)

    def _on_response(self, response) -> None:  # noqa: ANN001
        if response.status >= 400 and self._is_dicomweb(response.url):
            self.report.failed_requests.append(
                f"{response.request.method} {self.secret_free(response.url)} -> {response.status}")
        if response.url.split("?")[0].endswith("/app-config.js") and response.url.startswith(self.base):
            try:
                self.report.config_sha256 = hashlib.sha256(response.body()).hexdigest()
            except self.Error:
                pass

    def _on_request_failed(self, request) -> None:  # noqa: ANN001
        if self._is_dicomweb(request.url):
            self.report.failed_requests.append(f"{request.method} {self.secret_free(request.url)} -> {request.failure}")

    def _route_google(self, route) -> None:  # noqa: ANN001
        """A request for a Google host, answered by the emulator (the same path and query)."""
        request = route.request
        parts = urlsplit(request.url)
        headers = dict(request.headers)
        if self.inject_token and self.token and "authorization" not in headers and \
                (self._is_dicomweb(request.url) or parts.hostname == "cloudresourcemanager.googleapis.com"):
            headers["authorization"] = f"Bearer {self.token}"
        target = self.google_via + parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            resp = route.fetch(url=target, headers=headers, max_redirects=0, timeout=self.timeout_ms)
        except self.Error as exc:
            self.report.google_requests.append(f"{request.method} {parts.hostname}{parts.path} -> failed")
            self.report.problems.append(f"the emulator did not answer {request.method} {parts.hostname}{parts.path}: "
                                        f"{self.secret_free(str(exc)).splitlines()[0]}")
            route.abort()
            return
        self.report.google_requests.append(f"{request.method} {parts.hostname}{parts.path} -> {resp.status}")
        if parts.path.endswith("/revoke"):
            self.revokes += 1
        location = resp.headers.get("location", "")
        if resp.status in (301, 302, 303) and "access_token=" in location:
            got = dict(pair.split("=", 1) for pair in urlsplit(location).fragment.split("&") if "=" in pair)

            fp = self._remember(unquote(got.get("access_token", "")))
            self.issued.append(fp)
            if "prompt=none" in parts.query:
                self.silent.append(fp)
            self.signed_in = True
        if self.hosted and resp.status in (301, 302, 303) and _host(location) == self.hosted.service_host:
            # Back to the hosted viewer's /callback: a page that goes there, so that navigation is routed too.
            route.fulfill(status=200, headers={"content-type": "text/html", "cache-control": "no-store"},
                          body=f"<script>location.replace({json.dumps(location)})</script>")
            return
        route.fulfill(response=resp)

    def _route_stubbed(self, route) -> None:  # noqa: ANN001
        self.report.stubbed_requests.append(f"{route.request.method} {route.request.url.split('?')[0]}")
        route.fulfill(status=200, body="/* es5-shim: not needed by Chromium; answered locally */",
                      content_type="text/javascript; charset=utf-8")

    def screenshot(self, name: str, locator=None) -> bytes | None:  # noqa: ANN001
        path = self.out / name
        try:
            png = (locator or self.page).screenshot(path=str(path), timeout=15000,
                                                    **({} if locator else {"full_page": True}))
        except self.Error:
            return None
        self.report.screenshots.append(str(path))
        return png

    def fail(self, problem: str) -> _Abort:
        self.report.problems.append(problem)
        return _Abort(problem)

    def open_and_catch(self, url: str, predicate, what: str):  # noqa: ANN001
        """Open url and return (request, response or None) of the first request matching predicate."""
        try:
            if self.hosted:
                return self._open_hosted(url, predicate)
            with self.page.expect_request(predicate, timeout=self.timeout_ms) as caught:
                self.page.goto(url, wait_until="commit", timeout=self.timeout_ms)
            request = caught.value
            return request, request.response()  # None when the request failed (network, CORS)
        except self.Timeout:
            if self.hosted and self.hosted.forbidden:
                raise self.fail(f"IAP answered 403 at {self.base}: the account signed in to Google in this browser is "
                                f"not a member of viewer.hosting.members ({self._page_text()[:300]})") from None
            if self.oidc and not self.signed_in:
                raise self.fail(f"sign-in did not complete within {self.timeout_ms / 1000:.0f} s: {self._sign_in_trouble()}") from None
            raise self.fail(f"{what} within {self.timeout_ms / 1000:.0f} s (now at {self.page.url.split('?')[0]})") from None
        except self.Error as exc:
            raise self.fail(f"opening {self.secret_free(url)} failed: {self.secret_free(str(exc)).splitlines()[0]}") from None

    def _open_hosted(self, url: str, predicate):  # noqa: ANN001
        """open_and_catch behind IAP: also stops, at once, on IAP's 403 page (the account is no member)."""
        caught: list[Any] = []

        def listen(request) -> None:  # noqa: ANN001
            if predicate(request) and not caught:
                caught.append(request)

        self.page.on("request", listen)
        try:
            self.page.goto(url, wait_until="commit", timeout=self.timeout_ms)
            done = self._wait_until(lambda: bool(caught) or bool(self.hosted and self.hosted.forbidden),
                                    self.timeout_ms / 1000)
        finally:
            self.page.remove_listener("request", listen)
        if not caught:
            if done:
                self.page.wait_for_load_state("domcontentloaded")   # IAP's 403 page, to quote it
            raise self.Timeout("no matching request")
        return caught[0], caught[0].response()

    # ---- the run

    def _page_text(self) -> str:
        try:
            return " ".join((self.page.evaluate("() => document.body ? document.body.innerText : ''") or "").split())
        except self.Error:
            return ""

    def _sign_in_trouble(self) -> str:
        """What the page shows when sign-in stopped (Google's error page names the error)."""
        try:
            text = self.page.evaluate("() => document.body ? document.body.innerText : ''")
        except self.Error:
            text = ""
        error = re.search(r"Error \d{3}: [a-z_]+", text or "")
        where = self.secret_free(self.page.url.split("#")[0].split("?")[0])
        if error:
            return (f"Google's authorization page at {where} says {error.group(0)!r} (the OAuth client, its "
                    "redirect URIs or the scopes do not match the config)")
        return f"the page is at {where}"

    def run(self, expected: list[dict[str, str]], *, renewal: bool = False, dialog: Mapping[str, str] | None = None,
             sign_out: bool = False) -> None:
        try:
            self.study_list(expected)
            # The viewer opens the first expected study that the list does show.
            first = next(e for e in expected if e["patient_name"] in self.report.studies_shown)
            self.viewer(first["study_uid"])
            if renewal:
                self.renew()
            if dialog:
                self.walk_dialog(dialog)
            if sign_out:
                self.sign_out()
        except _Abort:
            self.screenshot("failure.png")
        finally:
            if self.oidc:
                self.report.sign_in.update(signed_in=self.signed_in, tokens_issued=len(self.issued))
            if self.hosted:
                self._hosted_findings()

    def _hosted_findings(self) -> None:
        """What the routed requests say: where the browser went, and any Google token it held."""
        got, report = self.hosted, self.report
        assert got is not None   # called only when the viewer is hosted
        report.routed_requests, report.bearer_requests, report.token_in_url = got.requests, got.bearer, got.token_in_url
        report.external_requests += [f"{r} (not routed)" for r in got.refused]
        if report.mode == "hosted-google-sign-in":
            # The OAuth implicit flow hands the token to /callback in its fragment, by design; the token is for
            # Google's APIs only, never for the service.
            if got.bearer:
                report.problems.append("the browser sent `Authorization: Bearer` to the hosted viewer's own "
                                       "service: " + ", ".join(got.bearer[:5]))
            return
        report.sign_in["iap"] = any(r.split()[1].startswith("accounts.google.com/") for r in got.requests)
        if got.bearer:
            report.problems.append("the browser sent `Authorization: Bearer` (a token it must never hold): "
                                   + ", ".join(got.bearer[:5]))
        if got.token_in_url:
            report.problems.append("an access_token was in a URL the browser opened: " + ", ".join(got.token_in_url[:5]))

    def _wait_until(self, condition, seconds: float) -> bool:  # noqa: ANN001
        """Let the page run (events are only handled inside Playwright calls) until `condition()` or timeout."""
        deadline = time.perf_counter() + seconds
        while not condition():
            if time.perf_counter() >= deadline:
                return False
            self.page.wait_for_timeout(100)
        return True

    def _stored_token(self) -> str | None:
        """The fingerprint of the access token oidc-client holds for the signed-in user (None: no user)."""
        try:
            token = self.page.evaluate("() => { const k = Object.keys(sessionStorage).find(k => k.startsWith('oidc.user:'));"
                                       " return k ? JSON.parse(sessionStorage.getItem(k)).access_token : null; }")
        except self.Error:
            return None
        return fingerprint(token) if token else None

    def renew(self) -> None:
        """Silent renewal: OHIF's hidden iframe asks for a token with prompt=none, then the new token is used."""
        t = time.perf_counter()
        before = len(self.silent)
        if not self._wait_until(lambda: len(self.silent) > before, self.timeout_ms / 1000):
            raise self.fail(f"silent renewal: no prompt=none authorization within {self.timeout_ms / 1000:.0f} s "
                            "(oidc-client renews 60 s before the token expires)")
        # oidc-client stores the renewed user once the hidden iframe has called back; then OHIF uses it
        if not self._wait_until(lambda: self._stored_token() in self.silent, self.timeout_ms / 1000):
            raise self.fail("silent renewal: a new token was issued but OHIF did not store the renewed user")
        seen = len(self.seen_auth)
        self.spa_navigate("/")  # the study list again, in the same page, as the renewed user
        # any renewed token (renewal goes on while the page loads) on a DICOMweb request of the new list
        used = self._wait_until(lambda: bool(set(self.silent) & set(self.seen_auth[seen:])), self.timeout_ms / 1000)
        self.report.sign_in["renewed"] = used
        self.report.timings["renewal"] = round(time.perf_counter() - t, 2)
        if not used:
            raise self.fail("silent renewal: a new token was issued but no DICOMweb request carried it")

    def walk_dialog(self, pick: Mapping[str, str]) -> None:
        """OHIF's data-source dialog: project, location, data set, DICOM store through its own UI."""
        page, t = self.page, time.perf_counter()
        store = pick["store"]
        self.spa_navigate("/")
        walked: list[str] = []
        try:
            skip = page.get_by_text("Skip all", exact=True)  # the viewer's onboarding tour, left over the list
            if skip.count():
                skip.first.click()
            page.get_by_role("button", name="Source").click(timeout=self.timeout_ms)
            modal = page.get_by_role("dialog")
            modal.get_by_text("Configure Data Source").wait_for()
            # It opens on the stores of the configured data set; its Project box starts the walk over.
            modal.get_by_text("Project", exact=True).first.click()
            steps = (("Project", "project"), ("Location", "location"), ("Data set", "dataset"), ("DICOM store", "store"))
            for label, key in steps:
                modal.get_by_text(re.compile(rf"^Select (an? )?{label}$", re.I)).wait_for()  # "Select a project"
                row = modal.locator("div.group").filter(has=page.get_by_text(pick[key], exact=True)).first
                row.hover()
                if key == "store":
                    with page.expect_request(lambda r: f"/dicomStores/{store}/dicomWeb/studies" in r.url) as caught:
                        row.get_by_role("button", name="Select").click()
                    response = caught.value.response()
                else:
                    row.get_by_role("button", name="Select").click()
                walked.append(f"{label}: {pick[key]}")
        except (self.Error, self.Timeout) as exc:
            self.screenshot("dialog.png")
            raise self.fail(f"data-source dialog: stopped after {walked or 'opening it'}: "
                            f"{self.secret_free(str(exc)).splitlines()[0]}") from None
        status = response.status if response else None
        self.report.dialog = {"walked": walked, "study_query_status": status}
        if pick.get("shows"):
            try:
                page.get_by_text(pick["shows"], exact=True).first.wait_for()
                self.report.dialog["shows"] = pick["shows"]
            except self.Timeout:
                self.report.problems.append(f"data-source dialog: the list of store {store} does not show {pick['shows']!r}")
        self.screenshot("dialog.png")
        self.report.timings["dialog"] = round(time.perf_counter() - t, 2)
        if status not in (200, 204):
            self.report.problems.append(f"data-source dialog: the study query of store {store} answered {status}")

    def sign_out(self) -> None:
        """OHIF's /logout, and whether the token it held still works at the emulator afterwards."""
        page, t = self.page, time.perf_counter()
        last = self.tokens.get(self.issued[-1]) if self.issued else None
        page.goto(self.base + "/logout", wait_until="commit")
        removed = True
        try:
            page.wait_for_function("() => !Object.keys(sessionStorage).some(k => k.startsWith('oidc.user:'))",
                                   timeout=self.timeout_ms)
        except self.Timeout:
            removed = False
        try:  # a revocation would follow the removal at once
            page.wait_for_event("request", lambda r: r.url.split("?")[0].endswith("/revoke"), timeout=2000)
        except self.Timeout:
            pass
        valid = None
        if last and self.google_via:
            valid = requests.get(f"{self.google_via}/oauth2/v3/tokeninfo", params={"access_token": last},
                                 timeout=10).status_code == 200
        self.report.sign_in["signed_out"] = {"user_removed": removed, "revoke_requests": self.revokes,
                                             "token_still_valid": valid}
        self.screenshot("signed-out.png")
        self.report.timings["sign_out"] = round(time.perf_counter() - t, 2)
        if not removed:
            self.report.problems.append("sign-out: the signed-in user is still stored after /logout")
        if not self.revokes:
            self.report.notes.append(
                "sign-out: OHIF removed the user but revoked no token (its oidc-client 1.x skips any access token "
                "containing '.', and Google's do); the token stays valid until it expires")

    def study_list(self, expected: list[dict[str, str]]) -> None:
        report, page = self.report, self.page
        t = time.perf_counter()
        if self.token and self.google_via:
            self.inject_token = True  # the Google route adds it (module docstring)
        elif self.token:
            # Only the viewer route takes ?token=; give the study list's DICOMweb requests the header.
            def add_token(route) -> None:  # noqa: ANN001
                route.continue_(headers={**route.request.headers, "authorization": f"Bearer {self.token}"})

            self.token_routes = [f"{r}/**" for r in self.page_roots] + ([] if self.offline else [GOOGLE_CONFIG_API])
            for pattern in self.token_routes:
                page.route(pattern, add_token)
        query = f"?datasources={quote(self.data_source, safe='')}" if self.data_source else ""
        request, response = self.open_and_catch(
            f"{self.base}/{query}", lambda r: _is_study_query(r.url, self.page_roots),
            f"study list{query}: the viewer sent no study query to "
            f"{', '.join(self.page_roots) or '(no qidoRoot in the config)'} "
            "(the app did not start, or the config's data source is wrong)",
        )
        report.timings["study_query"] = round(time.perf_counter() - t, 2)
        if response is None:
            raise self.fail(
                f"study list: GET {request.url} failed in the browser ({request.failure}): the DICOMweb server is not "
                "reachable from the viewer, or its CORS answer does not allow the viewer's origin"
            )
        status = response.status
        if status not in (200, 204):
            try:
                body = response.body()
            except self.Error:
                body = b""
            raise self.fail(self.secret_free(http_problem("GET", response.url, status, body, "study list")))
        try:
            returned = response.json() if status == 200 else []
        except (self.Error, ValueError):
            returned = []
        names_returned = [_pn_from_qido(s) for s in returned if isinstance(s, dict)]
        want = [e["patient_name"] for e in expected]
        # Wait for the expected studies the store did return (those the list must show); one it
        # did not return will never appear, so it is not waited for.
        showable = [w for w in want if w in names_returned]
        try:
            page.wait_for_function(
                "want => { const text = document.body ? document.body.innerText : ''; "
                "return want.every(w => text.includes(w)); }",
                arg=showable,
                timeout=self.timeout_ms,
            )
        except self.Timeout:
            pass
        text = page.evaluate("() => document.body ? document.body.innerText : ''")
        report.studies_shown = [w for w in want if w in text]
        report.timings["study_list"] = round(time.perf_counter() - t, 2)
        self.screenshot("study-list.png")
        missing = [e for e in expected if e["patient_name"] not in text]
        for e in missing:
            where = ("the store's study query did not return it" if e["patient_name"] not in names_returned
                     else "the store returned it but the list does not show it")
            report.problems.append(
                f"study list: study of {e['patient_name']!r} ({e['study_uid'] or 'no UID given'}) is missing: {where}; "
                f"the store returned {plural(len(names_returned), 'study')} ({', '.join(map(repr, names_returned)) or 'none'})"
            )
        self.inject_token = False
        for pattern in self.token_routes:
            page.unroute(pattern)
        self.token_routes = []
        if len(missing) == len(expected):
            raise _Abort("no expected study is shown")

    def viewer(self, study_uid: str) -> None:
        report, page = self.report, self.page
        path = f"/viewer/{quote(self.data_source, safe='')}" if self.data_source else "/viewer"
        url = f"{self.base}{path}?StudyInstanceUIDs={quote(study_uid, safe='')}"
        report.viewer_url = url
        if self.token:
            url += f"&token={quote(self.token, safe='')}"
        t = time.perf_counter()
        request, response = self.open_and_catch(
            url, lambda r: "/frames/" in r.url and any(r.url.startswith(root) for root in self.page_roots),
            f"viewer: no frame was requested after opening study {study_uid}",
        )
        report.timings["first_frame"] = round(time.perf_counter() - t, 2)
        if response is None:
            raise self.fail(f"viewer: the first frame request failed in the browser ({request.failure})")
        if response.status != 200:
            report.problems.append(f"viewer: the first frame request answered {response.status}")
        else:  # judged as the DICOMweb smoke judges its own frames/1 answer

            try:
                problem, _ = frame_problem(response.url, response.headers.get("content-type", ""), response.body())
            except self.Error:
                problem = None
            if problem:
                report.problems.append(f"viewer: {self.secret_free(problem)}")
        try:
            handle = page.wait_for_function(
                f"() => {{ const s = ({_CANVAS_STATS_JS})(); if (!s) return false; "
                f"if (s.levels >= {MIN_LEVELS} && s.nonBlack >= {MIN_NON_BLACK}) return s; "
                f"const first = window.__provisionFirstRender; "
                f"return first && performance.now() - first > {SETTLE_MS} ? s : false; }}",
                timeout=self.timeout_ms,
                polling=100,
            )
            stats = handle.json_value()
        except self.Timeout:
            stats = page.evaluate(_CANVAS_STATS_JS)
        report.timings["image_drawn"] = round(time.perf_counter() - t, 2)
        report.canvas = {"page": stats}
        self.screenshot("viewer.png")
        if not stats:
            raise self.fail(f"viewer: no viewport canvas appeared for study {study_uid}")
        png = self.screenshot("viewport.png", page.locator("canvas.cornerstone-canvas").first)
        shot = _image_stats(png) if png else {}
        if shot:
            report.canvas["screenshot"] = shot
        blank_in_page = stats["levels"] < MIN_LEVELS or stats["nonBlack"] < MIN_NON_BLACK
        blank_on_screen = bool(shot) and (shot["levels"] < MIN_LEVELS or shot["nonBlack"] < MIN_NON_BLACK)
        if blank_in_page or blank_on_screen:
            raise self.fail(
                f"viewer: the viewport canvas is blank for study {study_uid} "
                f"(in page: {stats['levels']} gray levels, {stats['nonBlack']:.1%} non-black"
                + (f"; screenshot: {shot['levels']} levels, {shot['nonBlack']:.1%} non-black" if shot else "")
                + f"; needs {MIN_LEVELS} levels and {MIN_NON_BLACK:.0%})"
            )


def _is_study_query(url: str, roots: list[str]) -> bool:
    return any(url.split("?")[0] == f"{r}/studies" for r in roots)
