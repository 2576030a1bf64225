"""The hosted viewer in a real browser: `provision apply` deploys it (Cloud Run behind IAP) on the emulator
holding the demo studies, then Debian's chromium (through Playwright, offline) opens its run.app URL,
routed to the emulator for that host and for Google's sign-in hosts (provision/checks/hosted_route.py).

A member signs in through the emulator's Google sign-in and IAP, sees every study in OHIF's list and an
image drawn (judged as the browser smoke judges it), with no Google token in the browser and no request to
a Google API; a signed-in non-member gets IAP's 403 and no study; the viewer's deep link survives a reload.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from cloudrun_helpers import sign_in
from test_apply_support import blueprint_dict, load

from provision.checks.browser import run_browser_smoke
from provision.checks.browser_chromium import CHROMIUM, chromium_args
from provision.checks.hosted_route import HostedRoute
from provision.demo.studies import write_demo_studies
from provision.gcp.target import Target
from provision.running import lifecycle
from provision.running.smoke import hosted_roots
from browser_marks import DRIVES_CHROMIUM

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "out" / "hosted"
MEMBER, OTHER = "ana@example.com", "eve@example.com"

pytestmark = DRIVES_CHROMIUM


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """The demo studies imported and the viewer deployed by apply, members: [user:ana]; one emulator for the module."""
    from provision.emulator.server import EmulatorServer
    from provision.emulator.world import Options
    from provision.ohif.fetch import ensure_viewer

    ensure_viewer()   # the real OHIF release goes into the archive the emulator runs
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path_factory.mktemp("hosted")
    studies = write_demo_studies(tmp / "data")
    emu = EmulatorServer(Options(host="127.0.0.1", port=0)).start()
    try:
        yield _deploy(emu, tmp, studies)
    finally:
        emu.stop()


def _deploy(emu, tmp, studies):
    data = blueprint_dict("ohif-hosted-browser", tmp / "data")
    data["viewer"]["hosting"] = {"region": "us-central1", "members": [f"user:{MEMBER}"]}
    bp = load(tmp, data)
    result = lifecycle.apply(bp, Target(emulator=emu.url))
    return emu, bp, result.outputs["viewer_url"], studies


def _expected(studies) -> list[dict]:
    return [{"patient_name": s.patient_name_ohif, "study_uid": s.study_uid} for s in studies]


def _open(context, emu_url: str, host: str, path: str):
    page = context.new_page()
    route = HostedRoute(emu_url, host)
    context.route(re.compile(r"^https://"), route)
    page.goto(f"https://{host}{path}", wait_until="commit")
    return page, route


def test_a_non_member_gets_iaps_403_and_no_study(deployed):
    from playwright.sync_api import sync_playwright

    emu, _, url, studies = deployed
    sign_in(emu.url, OTHER)
    host = url.split("//")[1]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=chromium_args(offline=True))
        try:
            context = browser.new_context()
            page, route = _open(context, emu.url, host, "/")
            page.wait_for_function("document.body && document.body.innerText.includes('403')", timeout=30000)
            text, title = page.inner_text("body"), page.title()
            page.screenshot(path=str(OUT / "non-member.png"))
        finally:
            browser.close()
    assert title == "Error 403 (Forbidden)" and "don't have access" in text and f"signed in as {OTHER}" in text
    assert not any(s.patient_name_ohif in text for s in studies)
    assert not any("/dicomweb/" in r for r in route.requests)
    assert f"GET {host}/ -> 403" in route.requests


def test_the_deep_link_works_after_a_reload(deployed):
    from playwright.sync_api import sync_playwright

    from provision.checks.browser_pages import CANVAS_STATS_JS

    emu, _, url, studies = deployed
    sign_in(emu.url, MEMBER)
    host = url.split("//")[1]
    deep = f"/viewer?StudyInstanceUIDs={studies[1].study_uid}"
    drawn = ("() => { const s = (" + CANVAS_STATS_JS + ")(); return s && s.levels >= 16 && s.nonBlack >= 0.05 ? s : false; }")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=chromium_args(offline=True))
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page, route = _open(context, emu.url, host, deep)   # signs in, lands on the deep link
            page.wait_for_function(drawn, timeout=60000, polling=200)
            before = len(route.requests)
            page.reload(wait_until="commit")
            page.wait_for_function(drawn, timeout=60000, polling=200)
            landed = page.url
            page.screenshot(path=str(OUT / "deep-link-reloaded.png"))
        finally:
            browser.close()
    assert landed == f"{url}{deep}"
    after = route.requests[before:]
    assert f"GET {host}/viewer -> 200" in after    # the SPA fallback answers the reloaded deep link
    assert not any(r.split()[1].startswith("accounts.google.com") for r in after)   # the IAP cookie held
    assert any(f"/dicomweb/primary/studies/{studies[1].study_uid}/" in r for r in after)


def test_smoke_browser_opens_the_hosted_viewer_and_a_member_sees_every_study_with_no_google_token(deployed):
    """`provision smoke --browser` with viewer.hosting deployed: the DICOMweb checks, then the browser on the
    hosted URL (signed in as the emulator's browser account, here a member), not a locally served viewer:
    every study listed and drawn, no Google token anywhere in the browser."""
    from provision.running import flow

    emu, bp, url, _ = deployed
    sign_in(emu.url, MEMBER)
    result = flow.smoke(bp, Target(emulator=emu.url), browser=True, out_dir=OUT / "smoke")
    assert result.ok, result.summary()
    report = result.browser
    print("\n" + report.summary())
    assert report.sign_in["iap"] is True    # through the emulator's Google sign-in, then IAP
    assert sorted(report.studies_shown) == ["Phantom, CT", "Phantom, MR"]
    assert report.canvas["page"]["levels"] >= 16 and report.canvas["page"]["nonBlack"] >= 0.05
    assert report.viewer_url.startswith(f"{url}/viewer?StudyInstanceUIDs=")
    assert report.cross_origin_isolated is True   # COOP/COEP: SharedArrayBuffer for OHIF's MPR
    # No Google token anywhere in the browser, and no request to a Google API (IAP's own sign-in
    # handler on iap.googleapis.com is the one googleapis.com URL a browser visits, as on Google).
    assert report.bearer_requests == [] and report.token_in_url == [] and report.external_requests == []
    hosts = {r.split()[1].split("/")[0] for r in report.routed_requests}
    assert hosts == {url.split("//")[1], "accounts.google.com", "iap.googleapis.com"}
    google_apis = [r for r in report.routed_requests if "googleapis.com" in r.split()[1]]
    assert google_apis and all(re.match(r"GET iap\.googleapis\.com/v1/oauth/clientIds/[^/]+:handleRedirect ", r)
                               for r in google_apis)
    dicomweb = [r for r in report.routed_requests if "/dicomweb/primary/" in r]
    assert any("/frames/" in r and r.endswith("-> 200") for r in dicomweb)


def test_on_google_cloud_the_hosted_browser_smoke_says_why_it_cannot_run():
    from provision.running.smoke import BlueprintSmoke, _hosted_browser

    url = "https://ohif-viewer-123.us-central1.run.app"
    result = _hosted_browser(None, BlueprintSmoke(), [], [], url, None, OUT / "google")
    assert not result.ok and result.browser is None
    assert url in result.browser_not_run and "interactive Google sign-in" in result.browser_not_run
    assert "NOT RUN" in result.summary()


def test_smoke_signed_in_as_a_non_member_names_iaps_403_at_once(deployed):
    import time

    emu, bp, url, _ = deployed
    sign_in(emu.url, OTHER)
    started = time.monotonic()
    report = run_browser_smoke("", expected_studies=[{"patient_name": "Phantom, CT"}], emulator_host=emu.url,
                               out_dir=OUT / "smoke-non-member", hosted={"url": url, "roots": hosted_roots(bp, url)})
    assert not report.ok and report.studies_shown == []
    (problem,) = report.problems
    assert problem.startswith(f"IAP answered 403 at {url}: the account signed in to Google in this browser is not a "
                              "member of viewer.hosting.members")
    assert f"signed in as {OTHER}" in problem
    assert time.monotonic() - started < 30   # not the 60 s deadline
