"""One browser session of the browser smoke (provision/checks/browser.py): the page it drives, and what
it records of every request the viewer makes.

It records requests that would leave the machine in emulator mode, failed DICOMweb answers, which
DICOMweb requests carried a token of this session (tokens are held in memory only, and known in the
report by their fingerprint), the config the browser loaded, page errors and console errors. It
opens pages and catches the request a phase waits for, takes screenshots, and says why a phase
stopped (`fail`). The phases themselves are in browser_pages.py, browser_google.py and
browser_hosted.py.
"""
from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote, urlsplit

from provision.checks.browser_report import BrowserReport
from provision.checks.hosted_route import HostedRoute
from provision.redact import redact

LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
# The Google hosts the viewer calls (sign-in, tokens, keys, user info, DICOMweb, the configuration API).
GOOGLE_HOSTS = ("accounts.google.com", "oauth2.googleapis.com", "www.googleapis.com", "openidconnect.googleapis.com",
                "healthcare.googleapis.com", "cloudresourcemanager.googleapis.com")
GOOGLE_URL = re.compile(r"^https://(" + "|".join(re.escape(h) for h in GOOGLE_HOSTS) + r")(/|$)")
# What OHIF's /silent-refresh.html loads from a CDN (an es5 shim Chromium does not need).
STUBBED_URL = re.compile(r"^https://cdnjs\.cloudflare\.com/ajax/libs/es5-shim/")
UNAUTHENTICATED_MESSAGE = "Request had invalid authentication credentials."  # Google's 401 message


class Abort(Exception):
    """A phase failed: stop driving the page (its problem is already recorded)."""


def fingerprint(token: str) -> str:
    """A token's short SHA-256, to tell tokens apart in a report without holding them."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def host_of(url: str) -> str:
    """The URL's host name, lower case ("" when it has none)."""
    return (urlsplit(url).hostname or "").lower()


class Session:
    """One browser context over the viewer at `base`, recording into `report`."""

    def __init__(self, context: Any, base: str, report: BrowserReport, *, roots: list[str], token: str | None, out: Path,
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
        self.blocked_sign_in: list[str] = []  # sign-in navigations the browser itself refused ("host/path: reason")
        self.token_routes: list[str] = []
        self.signed_in = not oidc
        self.hosted: HostedRoute | None = None
        self.closing = False                 # set once the phases are over: the close cuts off what is in flight
        if token:
            self.remember(token)
        context.set_default_timeout(timeout_ms)
        context.on("request", self._on_request)
        context.on("response", self._on_response)
        context.on("requestfailed", self._on_request_failed)
        self.page = context.pages[0] if context.pages else context.new_page()
        self.page.on("pageerror", self._on_page_error)
        self.page.on("console", lambda msg: report.console_errors.append(self.secret_free(msg.text)[:300])
                     if msg.type == "error" else None)

    # ---- bookkeeping

    def remember(self, token: str) -> str:
        """Hold `token` (in memory, to keep it out of every text) and return its fingerprint."""
        fp = fingerprint(token)
        self.tokens[fp] = token
        return fp

    def secret_free(self, text: str) -> str:
        """`text` without the token, raw or as it stands in the viewer's URL, nor any other token material."""
        for token in self.tokens.values():
            text = text.replace(token, "<token>").replace(quote(token, safe=""), "<token>")
        return redact(text)

    def _on_page_error(self, exc: Any) -> None:
        text = self.secret_free(str(exc))[:500]
        if self.signed_in and not text.startswith(UNAUTHENTICATED_MESSAGE):
            self.report.page_errors.append(text)
        else:
            # OHIF's Google configuration API asks for the project as each page loads, before the signed-in
            # user is restored, and throws Google's 401 message; it asks again once signed in.
            note = f"OHIF's Google configuration API raised before the user was signed in: {text}"
            if note not in self.report.notes:
                self.report.notes.append(note)

    def is_dicomweb(self, url: str) -> bool:
        """Whether `url` is under one of the config's DICOMweb roots."""
        return any(url.startswith(r) for r in self.roots)

    def _on_request(self, request: Any) -> None:
        url = request.url
        if self.offline and url.startswith(("http:", "https:", "ws:", "wss:")) and host_of(url) not in self.allowed_hosts \
                and not (self.google_via and (GOOGLE_URL.match(url) or STUBBED_URL.match(url))):
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

    def _on_response(self, response: Any) -> None:
        if response.status >= 400 and self.is_dicomweb(response.url):
            self.report.failed_requests.append(
                f"{response.request.method} {self.secret_free(response.url)} -> {response.status}")
        if response.url.split("?")[0].endswith("/app-config.js") and response.url.startswith(self.base):
            try:
                self.report.config_sha256 = hashlib.sha256(response.body()).hexdigest()
            except self.Error:
                pass

    def _on_request_failed(self, request: Any) -> None:
        if request.url.startswith("https://accounts.google.com/") and request.is_navigation_request():
            # e.g. the hidden renewal iframe's redirect, refused under the page's embedder policy
            self.blocked_sign_in.append(f"{host_of(request.url)}{urlsplit(request.url).path}: {request.failure}")
        if self.is_dicomweb(request.url):
            self.report.failed_requests.append(f"{request.method} {self.secret_free(request.url)} -> {request.failure}")

    # ---- driving the page

    def spa_navigate(self, path: str) -> None:
        """Go to `path` inside the running app (as its own links do), without loading the page again."""
        self.page.evaluate("p => { history.pushState({}, '', p); dispatchEvent(new PopStateEvent('popstate')); }", path)

    def screenshot(self, name: str, locator: Any = None) -> bytes | None:
        """The page (or `locator`) as PNG, saved in the output folder and listed in the report (None: none taken)."""
        path = self.out / name
        try:
            png: bytes = (locator or self.page).screenshot(path=str(path), timeout=15000,
                                                    **({} if locator else {"full_page": True}))
        except self.Error:
            return None
        self.report.screenshots.append(str(path))
        return png

    def fail(self, problem: str) -> Abort:
        """Record `problem` and return the Abort to raise, which ends the phases."""
        self.report.problems.append(problem)
        return Abort(problem)

    def wait_until(self, condition: Callable[[], Any], seconds: float) -> bool:
        """Let the page run (events are only handled inside Playwright calls) until `condition()` or timeout."""
        deadline = time.perf_counter() + seconds
        while not condition():
            if time.perf_counter() >= deadline:
                return False
            self.page.wait_for_timeout(100)
        return True

    def open_and_catch(self, url: str, predicate: Callable[[Any], bool], what: str) -> Any:
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
                                f"not a member of viewer.hosting.members ({self.page_text()[:300]})") from None
            if self.oidc and not self.signed_in:
                raise self.fail(f"sign-in did not complete within {self.timeout_ms / 1000:.0f} s: {self._sign_in_trouble()}") from None
            raise self.fail(f"{what} within {self.timeout_ms / 1000:.0f} s (now at {self.page.url.split('?')[0]})") from None
        except self.Error as exc:
            raise self.fail(f"opening {self.secret_free(url)} failed: {self.secret_free(str(exc)).splitlines()[0]}") from None

    def _open_hosted(self, url: str, predicate: Callable[[Any], bool]) -> Any:
        """open_and_catch behind IAP: also stops, at once, on IAP's 403 page (the account is no member)."""
        caught: list[Any] = []

        def listen(request: Any) -> None:
            if predicate(request) and not caught:
                caught.append(request)

        self.page.on("request", listen)
        try:
            self.page.goto(url, wait_until="commit", timeout=self.timeout_ms)
            done = self.wait_until(lambda: bool(caught) or bool(self.hosted and self.hosted.forbidden),
                                   self.timeout_ms / 1000)
        finally:
            self.page.remove_listener("request", listen)
        if not caught:
            if done:
                self.page.wait_for_load_state("domcontentloaded")   # IAP's 403 page, to quote it
            raise self.Timeout("no matching request")
        return caught[0], caught[0].response()

    def page_text(self) -> str:
        """The page's visible text on one line ("" when it cannot be read)."""
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
