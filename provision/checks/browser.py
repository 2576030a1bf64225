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
(`routed_requests`): none may carry a bearer token. `hosted={"url": its .localhost twin}` opens the
viewer at its local door instead (provision/emulator/door.py): Chromium reaches that host itself,
nothing routes it, and the sign-in's 302 back to it is passed on as it is. The report says whether
the viewer page was cross-origin isolated (`cross_origin_isolated`).

Waits are Playwright's (responses, selectors, in-page predicates) under one deadline per
phase; there are no fixed sleeps.

The jobs are in modules of their own: browser_chromium.py (starting Chromium), browser_session.py
(the page and what it records of each request), browser_pages.py (what the study list and the
viewer must show), browser_google.py (Google's hosts routed to an emulator, and the sign-in
phases), browser_hosted.py (the hosted viewer behind IAP), browser_report.py (the result).
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from provision.checks import browser_google, browser_hosted, browser_pages
from provision.checks.browser_chromium import CHROMIUM, launch, require_browser
from provision.checks.browser_report import BrowserReport
from provision.checks.browser_session import LOOPBACK, Abort, Session, host_of
from provision.ohif.fetch import ensure_viewer
from provision.ohif.serve import ViewerServer

__all__ = ["BrowserReport", "run_browser_smoke"]

SCREENSHOTS = ("study-list.png", "viewer.png", "viewport.png", "failure.png", "dialog.png", "signed-out.png")


def _viewer_binding(origin: str | None) -> tuple[str, int, str | None]:
    """(host, port, base URL) to serve the viewer on: the origin itself when it is a loopback http
    origin with a port (so its redirect URIs are the registered ones); else any free port."""
    if origin:
        parts = urlsplit(origin)
        if parts.scheme == "http" and (parts.hostname or "") in ("127.0.0.1", "localhost") and parts.port:
            return "127.0.0.1", parts.port, origin.rstrip("/")
    return "127.0.0.1", 0, None


def _allowed_hosts(*urls: str | None) -> set[str]:
    """Loopback and the hosts of `urls` (the emulator's): where an offline browser may go."""
    return set(LOOPBACK) | {host_of(url) or url for url in urls if url}


def _fresh_out_dir(out_dir: Path | str) -> Path:
    """The screenshot folder, without the screenshots of an earlier run (a stale one would mislead)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOTS:
        (out / old).unlink(missing_ok=True)
    return out


# Long only by its keyword options and their docstring (issue 20): the body is a few named steps.
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
    expected = browser_pages.expected_studies(expected_studies)
    signs_in = bool(hosted and google_via)   # the hosted viewer with access google-sign-in
    source_root = browser_pages.source_root(config_js, data_source) if data_source and (signs_in or not hosted) else None
    sync_api = require_browser(chromium)
    if dist is None and not hosted:
        dist = ensure_viewer()
    out = _fresh_out_dir(out_dir)
    report = BrowserReport(studies_expected=[e["patient_name"] for e in expected], data_source=data_source or "")
    offline = emulator_host is not None or google_via is not None
    report.mode = "google-via-emulator" if google_via else ("emulator" if emulator_host else "google")
    oidc = "oidc:" in config_js
    t0 = time.perf_counter()
    server, base = _serve(config_js, dist, hosted, origin if google_via and oidc else None)
    report.viewer_url = base
    try:
        with sync_api.sync_playwright() as pw, tempfile.TemporaryDirectory(prefix="provision-chromium-") as profile:
            t = time.perf_counter()
            context = launch(pw, profile, chromium=chromium, offline=offline)
            report.timings["launch"] = round(time.perf_counter() - t, 2)
            session: Session | None = None
            try:
                context.add_init_script(browser_pages.RENDER_PROBE_JS)
                session = Session(context, base, report, roots=browser_pages.dicomweb_roots(config_js), token=token,
                                  out=out, timeout_ms=timeout_s * 1000, offline=offline,
                                  allowed_hosts=_allowed_hosts(emulator_host, google_via),
                                  errors=(sync_api.Error, sync_api.TimeoutError), google_via=google_via,
                                  oidc=oidc, data_source=data_source, source_root=source_root)
                if google_via:
                    browser_google.route_google(session)
                if hosted:
                    browser_hosted.route_hosted(session, emulator_host or google_via, hosted, signs_in=signs_in)
                _drive(session, expected, renewal=renewal, dialog=dialog, sign_out=sign_out)
            finally:
                if session is not None:
                    session.closing = True
                    if session.hosted is not None:
                        session.hosted.closing = True
                context.close()
    finally:
        if server is not None:
            server.stop()
    _sum_up(report, tokens_expected=bool(token) or oidc)
    report.timings["total"] = round(time.perf_counter() - t0, 2)
    return report


def _serve(config_js: str, dist: Path | None, hosted: Mapping[str, Any] | None,
           origin: str | None) -> tuple[ViewerServer | None, str]:
    """(the local viewer server, or None for the hosted viewer; the base URL the browser opens).
    Sign-in redirects to the origin's /callback, so with `origin` it serves there; else any free port will do."""
    if hosted:
        return None, str(hosted["url"]).rstrip("/")
    assert dist is not None   # located by the caller when the viewer is served here
    host, port, base = _viewer_binding(origin)
    server = ViewerServer(dist, config_js, host=host, port=port)
    server.start()
    return server, base or server.url


def _drive(s: Session, expected: list[dict[str, str]], *, renewal: bool, dialog: Mapping[str, str] | None,
           sign_out: bool) -> None:
    """The phases, in order, until one fails: the study list, then the viewer (and, when asked, renewal,
    the data-source dialog and sign-out)."""
    try:
        browser_pages.study_list(s, expected)
        # The viewer opens the first expected study that the list does show.
        first = next(e for e in expected if e["patient_name"] in s.report.studies_shown)
        browser_pages.viewer(s, first["study_uid"])
        if renewal:
            browser_google.renew(s)
        if dialog:
            browser_google.walk_dialog(s, dialog)
        if sign_out:
            browser_google.sign_out(s)
    except Abort:
        s.screenshot("failure.png")
    finally:
        if s.oidc:
            s.report.sign_in.update(signed_in=s.signed_in, tokens_issued=len(s.issued))
        if s.hosted:
            browser_hosted.hosted_findings(s)


def _sum_up(report: BrowserReport, *, tokens_expected: bool) -> None:
    """The problems read from the whole run's records: page errors, requests that left the machine,
    DICOMweb requests without a token of this session (when they needed one), failed DICOMweb answers."""
    if report.page_errors:
        report.problems.append("the page raised errors: " + " | ".join(report.page_errors[:5]))
    if report.external_requests:
        report.problems.append(
            f"{len(report.external_requests)} request(s) left the machine in emulator mode (aborted): "
            + ", ".join(report.external_requests[:10])
        )
    if report.dicomweb_unauthorized and tokens_expected:
        report.problems.append(f"{len(report.dicomweb_unauthorized)} of {report.dicomweb_requests} DICOMweb request(s) "
                               "carried no access token of this session: " + ", ".join(report.dicomweb_unauthorized[:5]))
    if report.problems and report.failed_requests:
        report.problems.append("failed DICOMweb requests: " + ", ".join(report.failed_requests[:10]))
