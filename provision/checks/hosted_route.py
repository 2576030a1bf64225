"""The browser's way to the hosted viewer on an emulator: Playwright routing of every https request.

The emulator answers a Cloud Run service's `*.run.app` host (by the Host header) and Google's sign-in
hosts (by path) on its one plain-HTTP port. Chromium asks for https URLs, so each is fetched from the
emulator with `route.fetch` and fulfilled. Playwright does not route the request a fulfilled 302 to
another https host leads to (the browser would then resolve the real host), so such a redirect is
handed to the page as a one-line `location.replace`, which is routed again (its Set-Cookie kept).

What IAP's sign-in needs is routed: the run.app host, accounts.google.com and IAP's redirect handler
on iap.googleapis.com. Anything else is aborted and listed as having tried to leave the machine. Each
request is recorded without its query, with whether it carried a Bearer token or an `access_token`
URL parameter (the hosted viewer's browser must never hold a Google token).
"""
from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

SIGN_IN_HOSTS = ("accounts.google.com", "iap.googleapis.com")
REDIRECTS = (301, 302, 303, 307, 308)


@dataclass
class HostedRoute:
    """A Playwright route handler (`context.route(re.compile("^https://"), HostedRoute(...))`)."""

    emulator: str                     # the emulator's base URL (http://127.0.0.1:PORT)
    service_host: str                 # the viewer's run.app host
    timeout_ms: float = 60000
    requests: list[str] = field(default_factory=list)        # "METHOD host/path -> status"
    bearer: list[str] = field(default_factory=list)          # requests with `Authorization: Bearer`
    token_in_url: list[str] = field(default_factory=list)    # requests with access_token in the URL
    refused: list[str] = field(default_factory=list)         # hosts this route does not serve (aborted)
    forbidden: bool = False           # the service's host answered a page with 403 (IAP: not a member)
    failed: list[str] = field(default_factory=list)          # fetches from the emulator that failed
    closing: bool = False             # set when the browser is being closed: fetches it cuts off are not failures

    def hosts(self) -> set[str]:
        return {self.service_host, *SIGN_IN_HOSTS}

    def __call__(self, route: Any) -> None:   # Playwright's Route
        request = route.request
        parts = urlsplit(request.url)
        host = (parts.hostname or "").lower()
        where = f"{request.method} {host}{parts.path}"
        if host not in self.hosts():
            self.refused.append(where)
            route.abort("blockedbyclient")
            return
        headers = dict(request.headers)
        if headers.get("authorization", "").lower().startswith("bearer "):
            self.bearer.append(where)
        if "access_token" in parse_qs(parts.query) or "access_token=" in parts.fragment:
            self.token_in_url.append(where)
        if host.endswith(".run.app"):
            headers["host"] = host
        target = self.emulator + parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            resp = route.fetch(url=target, headers=headers, max_redirects=0, timeout=self.timeout_ms)
        except Exception as exc:  # noqa: BLE001 - Playwright's Error (this module does not import Playwright)
            # Aborted, not raised into Playwright's dispatcher: the page sees a failed request, the report why.
            self.requests.append(f"{where} -> failed")
            if not self.closing:
                self.failed.append(f"{where}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
            with contextlib.suppress(Exception):   # the route may already be gone with its page
                route.abort()
            return
        self.requests.append(f"{where} -> {resp.status}")
        if resp.status == 403 and host == self.service_host and request.is_navigation_request():
            self.forbidden = True
        location = resp.headers.get("location", "")
        if location.startswith("/") and not location.startswith("//"):
            location = f"https://{host}{location}"   # IAP's own redirects are relative to the host
        if resp.status in REDIRECTS and location.startswith("https://"):
            if "access_token=" in location:
                self.token_in_url.append(f"redirect to {urlsplit(location).hostname}")
            cookies = {k: v for k, v in resp.headers.items() if k.lower() == "set-cookie"}
            route.fulfill(status=200, headers={**cookies, "content-type": "text/html", "cache-control": "no-store"},
                          body=f"<script>location.replace({json.dumps(location)})</script>")
            return
        route.fulfill(response=resp)
