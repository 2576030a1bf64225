"""The demo's hosted viewer in a person's own browser, as `provision demo` tells them to open it: Debian's
chromium (Playwright, offline, NO request routing) goes to the printed `http://…run.app.localhost:PORT/`
address, which it resolves to loopback by itself (provision/emulator/door.py), signs in on the emulated
Google accounts page through emulated IAP, and OHIF's study list shows the demo's studies. Another
address gets IAP's 403 page. Every request stays on `.localhost` names; none carries a Google token; a study's
frames come through the door."""
from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from provision.checks.browser_chromium import CHROMIUM, chromium_args
from provision.demo.run import DEMO_MEMBER
from browser_marks import DRIVES_CHROMIUM

pytestmark = DRIVES_CHROMIUM


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """`provision demo` against a kept emulator on loopback: (what it printed, the studies)."""
    from provision.demo.run import run_demo
    from provision.emulator.server import EmulatorServer
    from provision.emulator.world import Options
    from provision.ohif.fetch import ensure_viewer

    ensure_viewer()   # the real OHIF release goes into the archive the emulator runs
    emu = EmulatorServer(Options(host="127.0.0.1", port=0)).start()
    try:
        result = run_demo(out_dir=tmp_path_factory.mktemp("door") / "out", emulator_url=emu.url)
        yield emu, result.render(), result
    finally:
        emu.stop()


def printed_address(text: str) -> str:
    (line,) = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("http://") and ".localhost" in ln]
    return line


def open_browser(p):
    return p.chromium.launch(executable_path=CHROMIUM, args=chromium_args(offline=True))


def test_the_demos_member_opens_the_printed_address_and_sees_the_studies(demo):
    from playwright.sync_api import sync_playwright

    emu, text, result = demo
    url = printed_address(text)
    port = urlsplit(emu.url).port
    assert url == f"http://{urlsplit(result.outcome.apply.outputs['viewer_url']).hostname}.localhost:{port}/"
    assert f"sign in on the emulated Google page as {DEMO_MEMBER}" in text
    names = sorted(s.patient_name_ohif for s in result.studies)
    seen: list[tuple[str, str | None]] = []
    with sync_playwright() as p:
        browser = open_browser(p)
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            page.on("request", lambda r: seen.append((r.url, r.headers.get("authorization"))))
            page.goto(url, wait_until="domcontentloaded")
            assert urlsplit(page.url).hostname == "accounts.google.com.localhost"   # IAP sent us to sign in
            page.click("#account")   # the emulator's own account, one click: a member in demo.yaml
            page.wait_for_function("names => names.every(n => document.body && document.body.innerText.includes(n))",
                                   arg=names, timeout=90_000)
            assert page.url.startswith(url)
            assert page.evaluate("() => self.isSecureContext && self.crossOriginIsolated") is True
            # The viewer's same-origin DICOMweb works at the door too (the app writes its roots and
            # BulkDataURIs for the Host the browser used): a study's frames come through it.
            study = result.studies[0].study_uid
            with page.expect_response(lambda r: "/frames/" in r.url, timeout=90_000) as frame:
                page.goto(f"{url}viewer?StudyInstanceUIDs={study}", wait_until="domcontentloaded")
            assert frame.value.status == 200 and frame.value.url.startswith(f"{url}dicomweb/primary/")
        finally:
            browser.close()
    hosts = {urlsplit(u).hostname for u, _ in seen if u.startswith("http")}
    assert hosts and all(h.endswith(".localhost") for h in hosts), hosts
    assert {"accounts.google.com.localhost", "iap.googleapis.com.localhost", urlsplit(url).hostname} <= hosts
    assert not [u for u, auth in seen if auth], "a request carried an Authorization header"


def test_another_address_gets_iaps_403_page_and_can_switch_to_the_member(demo):
    from playwright.sync_api import sync_playwright

    _, text, result = demo
    url = printed_address(text)
    with sync_playwright() as p:
        browser = open_browser(p)
        try:
            page = browser.new_context().new_page()
            page.goto(url, wait_until="domcontentloaded")
            page.fill("#identifier", "eve@example.com")
            with page.expect_navigation(url=lambda u: u.startswith(url)) as nav:
                page.click("#next")
            assert nav.value is not None and nav.value.status == 403
            body = page.inner_text("body")
            # IAP's page offers another account: back to the accounts page, then in as the member.
            page.click("text=Sign in with a different account")
            page.wait_for_selector("#account", timeout=30_000)
            page.click("#account")
            page.wait_for_function("n => document.body && document.body.innerText.includes(n)",
                                   arg=result.studies[0].patient_name_ohif, timeout=90_000)
        finally:
            browser.close()
    assert "403" in body and "eve@example.com" in body
    assert not any(s.patient_name_ohif in body for s in result.studies)
