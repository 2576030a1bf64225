"""IAP's sign-in in a real browser (Debian chromium through Playwright, offline): the run.app,
accounts.google.com and iap.googleapis.com requests are routed to the emulator (Playwright's
`route.fetch` with the run.app Host header), and the page ends on the service's answer with the
IAP cookie set for the run.app host.

Playwright does not route the request that a fulfilled 302 leads to (the browser then resolves
the real host and fails): a redirect to another routed https host is handed to the page as a
tiny script navigation, which is routed again. A browser test of the hosted viewer needs the same.
"""
from __future__ import annotations

import json
import re
from urllib.parse import urlsplit


from provision.checks.browser_chromium import CHROMIUM, chromium_args
from cloudrun_helpers import behind_iap, deploy, ready_project, service_body, sign_in, upload_source
from browser_marks import DRIVES_CHROMIUM

pytestmark = DRIVES_CHROMIUM
PROJECT = "iap-browser-1"


def route_to(emulator_url: str, visited: list[str]):
    def handle(route) -> None:  # noqa: ANN001 - Playwright's Route
        parts = urlsplit(route.request.url)
        headers = dict(route.request.headers)
        if parts.hostname.endswith(".run.app"):
            headers["host"] = parts.hostname
        resp = route.fetch(url=emulator_url + parts.path + (f"?{parts.query}" if parts.query else ""),
                           headers=headers, max_redirects=0)
        visited.append(f"{parts.hostname}{parts.path} {resp.status}")
        location = resp.headers.get("location", "")
        if resp.status in (301, 302, 303) and location.startswith("https://"):
            cookies = {k: v for k, v in resp.headers.items() if k.lower() == "set-cookie"}
            route.fulfill(status=200, headers={**cookies, "content-type": "text/html"},
                          body=f"<script>location.replace({json.dumps(location)})</script>")
            return
        route.fulfill(response=resp)

    return handle


def test_a_member_signs_in_through_iap_in_chromium(emulator):
    from playwright.sync_api import sync_playwright

    number = ready_project(emulator.url, PROJECT)
    source = upload_source(emulator.url, PROJECT, "iap-browser-1-src")
    service = deploy(emulator.url, PROJECT, "viewer", service_body(source, iapEnabled=True))["response"]
    behind_iap(emulator.url, PROJECT, number, service, "ana@example.com")
    sign_in(emulator.url, "ana@example.com")
    visited: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=chromium_args(offline=True))
        try:
            context = browser.new_context()
            context.route(re.compile(r"^https://"), route_to(emulator.url, visited))
            page = context.new_page()
            page.goto(service["uri"] + "/studies")
            page.wait_for_function("document.body && document.body.innerText.includes('x-goog-iap-jwt-assertion')",
                                   timeout=15000)
            answer = json.loads(page.inner_text("body"))
            cookies = [c for c in context.cookies(service["uri"]) if c["name"].startswith("__Host-GCP_IAP_AUTH_TOKEN_")]
        finally:
            browser.close()
    assert answer["path"] == "/studies"
    assert {k.lower(): v for k, v in answer["headers"].items()}["x-goog-authenticated-user-email"] == \
        "accounts.google.com:ana@example.com"
    assert cookies and cookies[0]["secure"] and cookies[0]["httpOnly"]
    hosts = [v.split("/")[0] for v in visited]
    assert hosts[0].endswith(".run.app") and "accounts.google.com" in hosts and "iap.googleapis.com" in hosts
