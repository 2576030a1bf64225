"""Google mode against an emulator, in the browser smoke (provision/checks/browser.py): Google's hosts
routed to the emulator, and the phases of a real sign-in that follow the viewer's first page: silent
renewal, OHIF's data-source dialog, sign-out.

A request for a Google host is fetched from the emulator (`route.fetch`, the same path and query)
and fulfilled, a 302 passed on to the browser, not followed; the tokens the authorization endpoint
issues are remembered (by fingerprint in the report). The es5 shim OHIF's /silent-refresh.html
loads from a CDN is answered locally with an empty script.
"""
from __future__ import annotations

import json
import re
import time
from typing import Any, Mapping
from urllib.parse import unquote, urlsplit

import requests

from provision.checks.browser_session import GOOGLE_URL, STUBBED_URL, Session, fingerprint, host_of


def route_google(s: Session) -> None:
    """Answer the browser's requests for Google's hosts (and the CDN shim) from `s.google_via`."""
    s.page.context.route(GOOGLE_URL, lambda route: _answer_google(s, route))
    s.page.context.route(STUBBED_URL, lambda route: _answer_stubbed(s, route))


def _answer_google(s: Session, route: Any) -> None:
    """A request for a Google host, answered by the emulator (the same path and query)."""
    request = route.request
    parts = urlsplit(request.url)
    headers = dict(request.headers)
    if s.inject_token and s.token and "authorization" not in headers and \
            (s.is_dicomweb(request.url) or parts.hostname == "cloudresourcemanager.googleapis.com"):
        headers["authorization"] = f"Bearer {s.token}"
    target = f"{s.google_via}{parts.path}" + (f"?{parts.query}" if parts.query else "")
    try:
        resp = route.fetch(url=target, headers=headers, max_redirects=0, timeout=s.timeout_ms)
    except s.Error as exc:
        s.report.google_requests.append(f"{request.method} {parts.hostname}{parts.path} -> failed")
        if s.closing:   # the smoke is over and closing the browser cut this fetch off: not the emulator's fault
            return
        s.report.problems.append(f"the emulator did not answer {request.method} {parts.hostname}{parts.path}: "
                                 f"{s.secret_free(str(exc)).splitlines()[0]}")
        route.abort()
        return
    s.report.google_requests.append(f"{request.method} {parts.hostname}{parts.path} -> {resp.status}")
    if parts.path.endswith("/revoke"):
        s.revokes += 1
    location = resp.headers.get("location", "")
    if resp.status in (301, 302, 303) and "access_token=" in location:
        got = dict(pair.split("=", 1) for pair in urlsplit(location).fragment.split("&") if "=" in pair)

        fp = s.remember(unquote(got.get("access_token", "")))
        s.issued.append(fp)
        if "prompt=none" in parts.query:
            s.silent.append(fp)
        s.signed_in = True
    if s.hosted and resp.status in (301, 302, 303) and location.startswith("https://") \
            and host_of(location) == s.hosted.service_host:
        # Back to the hosted viewer's /callback: a page that goes there, so that navigation is routed too.
        # At the viewer's local door (http://….run.app.localhost:PORT) the browser follows the 302 itself.
        route.fulfill(status=200, headers={"content-type": "text/html", "cache-control": "no-store"},
                      body=f"<script>location.replace({json.dumps(location)})</script>")
        return
    route.fulfill(response=resp)


def _answer_stubbed(s: Session, route: Any) -> None:
    s.report.stubbed_requests.append(f"{route.request.method} {route.request.url.split('?')[0]}")
    route.fulfill(status=200, body="/* es5-shim: not needed by Chromium; answered locally */",
                  content_type="text/javascript; charset=utf-8")


def _stored_token(s: Session) -> str | None:
    """The fingerprint of the access token oidc-client holds for the signed-in user (None: no user)."""
    try:
        token = s.page.evaluate("() => { const k = Object.keys(sessionStorage).find(k => k.startsWith('oidc.user:'));"
                                " return k ? JSON.parse(sessionStorage.getItem(k)).access_token : null; }")
    except s.Error:
        return None
    return fingerprint(token) if token else None


def renew(s: Session) -> None:
    """Silent renewal: OHIF's hidden iframe asks for a token with prompt=none, then the new token is used."""
    t = time.perf_counter()
    # Any renewal of this session counts: with a short token the first may come while the viewer loads.
    if not s.wait_until(lambda: s.silent, s.timeout_ms / 1000):
        raise s.fail(f"silent renewal: no prompt=none authorization within {s.timeout_ms / 1000:.0f} s "
                     "(oidc-client renews 60 s before the token expires)" + _blocked(s))
    # oidc-client stores the renewed user once the hidden iframe has called back; then OHIF uses it
    if not s.wait_until(lambda: _stored_token(s) in s.silent, s.timeout_ms / 1000):
        raise s.fail("silent renewal: a new token was issued but OHIF did not store the renewed user" + _blocked(s))
    seen = len(s.seen_auth)
    s.spa_navigate("/")  # the study list again, in the same page, as the renewed user
    # any renewed token (renewal goes on while the page loads) on a DICOMweb request of the new list
    used = s.wait_until(lambda: bool(set(s.silent) & set(s.seen_auth[seen:])), s.timeout_ms / 1000)
    s.report.sign_in["renewed"] = used
    s.report.timings["renewal"] = round(time.perf_counter() - t, 2)
    if not used:
        raise s.fail("silent renewal: a new token was issued but no DICOMweb request carried it")


def _blocked(s: Session) -> str:
    """Why the hidden iframe never called back, when the browser refused its sign-in navigation itself."""
    if not s.blocked_sign_in:
        return ""
    return ("; the browser refused the answer of " + ", ".join(s.blocked_sign_in[:3]) + " ("
            "under the page's Cross-Origin-Embedder-Policy a frame's cross-origin redirect needs "
            "Cross-Origin-Resource-Policy: cross-origin, which Google's sign-in is not known to send)")


def walk_dialog(s: Session, pick: Mapping[str, str]) -> None:
    """OHIF's data-source dialog: project, location, data set, DICOM store through its own UI."""
    t = time.perf_counter()
    s.spa_navigate("/")
    walked: list[str] = []
    try:
        status = _pick_in_dialog(s, pick, walked)
    except (s.Error, s.Timeout) as exc:
        s.screenshot("dialog.png")
        raise s.fail(f"data-source dialog: stopped after {walked or 'opening it'}: "
                     f"{s.secret_free(str(exc)).splitlines()[0]}") from None
    store = pick["store"]
    s.report.dialog = {"walked": walked, "study_query_status": status}
    if pick.get("shows"):
        try:
            s.page.get_by_text(pick["shows"], exact=True).first.wait_for()
            s.report.dialog["shows"] = pick["shows"]
        except s.Timeout:
            s.report.problems.append(f"data-source dialog: the list of store {store} does not show {pick['shows']!r}")
    s.screenshot("dialog.png")
    s.report.timings["dialog"] = round(time.perf_counter() - t, 2)
    if status not in (200, 204):
        s.report.problems.append(f"data-source dialog: the study query of store {store} answered {status}")


def _pick_in_dialog(s: Session, pick: Mapping[str, str], walked: list[str]) -> int | None:
    """Open the dialog and select each of `pick`'s names in turn (appended to `walked`); the status of
    the study query the chosen store's list sends (None: it failed in the browser)."""
    page, store = s.page, pick["store"]
    skip = page.get_by_text("Skip all", exact=True)  # the viewer's onboarding tour, left over the list
    if skip.count():
        skip.first.click()
    page.get_by_role("button", name="Source").click(timeout=s.timeout_ms)
    modal = page.get_by_role("dialog")
    modal.get_by_text("Configure Data Source").wait_for()
    # It opens on the stores of the configured data set; its Project box starts the walk over.
    modal.get_by_text("Project", exact=True).first.click()
    response = None
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
    return response.status if response else None


def sign_out(s: Session) -> None:
    """OHIF's /logout, and whether the token it held still works at the emulator afterwards."""
    page, t = s.page, time.perf_counter()
    last = s.tokens.get(s.issued[-1]) if s.issued else None
    page.goto(s.base + "/logout", wait_until="commit")
    removed = True
    try:
        page.wait_for_function("() => !Object.keys(sessionStorage).some(k => k.startsWith('oidc.user:'))",
                               timeout=s.timeout_ms)
    except s.Timeout:
        removed = False
    try:  # a revocation would follow the removal at once
        page.wait_for_event("request", lambda r: r.url.split("?")[0].endswith("/revoke"), timeout=2000)
    except s.Timeout:
        pass
    valid = None
    if last and s.google_via:
        valid = requests.get(f"{s.google_via}/oauth2/v3/tokeninfo", params={"access_token": last},
                             timeout=10).status_code == 200
    s.report.sign_in["signed_out"] = {"user_removed": removed, "revoke_requests": s.revokes,
                                      "token_still_valid": valid}
    s.screenshot("signed-out.png")
    s.report.timings["sign_out"] = round(time.perf_counter() - t, 2)
    if not removed:
        s.report.problems.append("sign-out: the signed-in user is still stored after /logout")
    if not s.revokes:
        s.report.notes.append(
            "sign-out: OHIF removed the user but revoked no token (its oidc-client 1.x skips any access token "
            "containing '.', and Google's do); the token stays valid until it expires")
