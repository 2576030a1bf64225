"""The hosted viewer with `access: google-sign-in` in a real browser: `provision apply` deploys it on an
--enforce-iam emulator holding the demo studies (Cloud Run, IAP off, public), the OAuth web client is
registered exactly as the checklist apply prints says (the service's run.app origin and its /callback),
then Debian's chromium (Playwright, offline) opens the run.app URL. The user signs in with the emulated
Google account, sees every study and an image drawn, and every DICOMweb request goes to the Healthcare
API (Google's host, routed to the emulator) with a token of that session, none to the service itself. A
signed-in user without a Healthcare role of their own sees Healthcare's 403, not the studies. At the
viewer's local door (its `.localhost` twin, not routed) OHIF renews the user's token silently."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests

from emulator_helpers import CONTROL
from provision.checks.browser import CHROMIUM, run_browser_smoke
from provision.gcp.target import Target
from provision.ohif.config import GOOGLE_SCOPES, render_config
from provision.running import flow
from test_apply_support import BILLING, ORG, load
from test_browser_google import sign_in_as
from browser_marks import DRIVES_CHROMIUM

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "out" / "hosted-sign-in"
OWNER = "user:ana@example.com"
VIEWER = "vic@example.com"       # roles of their own on the project: the README's viewer roles
NOBODY = "eve@example.com"       # signed in to Google, no role on anything
CLIENT = "123456789012-provisionhostedgsi.apps.googleusercontent.com"
PROJECT, DISPLAY = "ohif-hosted-gsi", "Hosted Sign-In"

pytestmark = DRIVES_CHROMIUM


@pytest.fixture(scope="module")
def hosted_gsi(tmp_path_factory):
    """Applied by the provisioner with viewer.hosting access google-sign-in; the OAuth client registered from
    the checklist that apply printed."""
    from provision.demo.studies import write_demo_studies
    from provision.emulator.server import EmulatorServer
    from provision.emulator.world import Options
    from provision.ohif.fetch import ensure_viewer

    ensure_viewer()   # the real OHIF release goes into the archive the emulator runs
    tmp = tmp_path_factory.mktemp("hosted-gsi")
    data = tmp / "data"
    studies = write_demo_studies(data)
    emu = EmulatorServer(Options(host="127.0.0.1", port=0, enforce_iam=True)).start()
    try:
        for resource, role in ((ORG, "roles/resourcemanager.projectCreator"),
                               (f"billingAccounts/{BILLING}", "roles/billing.user")):
            requests.put(f"{emu.url}/_emulator/policies/{resource}", json={"bindings": [{"role": role, "members": [OWNER]}]},
                         headers=CONTROL, timeout=10).raise_for_status()
        blueprint = {
            "version": 1,
            "project": {"id": PROJECT, "display_name": DISPLAY, "parent": ORG, "billing_account": BILLING},
            "iam": [{"member": f"user:{VIEWER}", "roles": ["roles/browser", "roles/healthcare.dicomViewer"]}],
            "bucket": {"name": f"{PROJECT}-dicom", "location": "US", "create": True,
                       "upload": {"from": str(data), "prefix": "dicom/"}},
            "dataset": {"id": "imaging", "location": "us-central1"},
            "dicom_stores": [{"id": "primary", "import": {"uri": f"gs://{PROJECT}-dicom/dicom/**.dcm"}}],
            "viewer": {"oauth_client_id": CLIENT, "config_out": str(tmp / "google.js"),
                       "hosting": {"region": "us-central1", "access": "google-sign-in"}},
            "smoke": {"min_studies": 1},
        }
        bp = load(tmp, blueprint)
        outcome = flow.apply_and_check(bp, Target(emulator=emu.url, token=f"emulator:{OWNER}"), run_smoke=False)
        assert outcome.error is None, outcome.error
        url = outcome.apply.outputs["viewer_url"]
        checklist = outcome.oauth_checklist
        uris = re.findall(r"^\s+(http\S+)", checklist.split("Authorized redirect URIs:")[1].split("- Create")[0], re.M)
        assert uris == [f"{url}/callback", f"{url}/silent-refresh.html"]
        requests.put(f"{emu.url}/_emulator/oauth/clients/{CLIENT}", json={
            "project": PROJECT, "redirect_uris": uris, "javascript_origins": [url]}, headers=CONTROL,
            timeout=10).raise_for_status()
        yield {"emu": emu, "bp": bp, "url": url, "studies": studies, "local": outcome.apply.outputs["viewer_local_url"]}
    finally:
        emu.stop()


def _expected(studies) -> list[dict]:
    return [{"patient_name": s.patient_name_ohif, "study_uid": s.study_uid} for s in studies]


def test_a_signed_in_user_without_a_role_of_their_own_is_refused_by_healthcare(hosted_gsi):
    emu, bp, url = hosted_gsi["emu"], hosted_gsi["bp"], hosted_gsi["url"]
    sign_in_as(emu, NOBODY)
    report = run_browser_smoke(render_config(bp), expected_studies=_expected(hosted_gsi["studies"][:1]),
                               out_dir=OUT / "no-role", emulator_host=emu.url, google_via=emu.url,
                               hosted={"url": url}, timeout_s=30)
    assert not report.ok and report.sign_in["signed_in"] and report.studies_shown == []
    assert "answered 403: Permission 'healthcare.dicomStores.dicomWebRead' denied" in report.problems[0]
    assert report.bearer_requests == [] and report.external_requests == []


def test_smoke_browser_signs_in_at_the_hosted_url_and_reads_the_studies_with_the_users_own_token(hosted_gsi):
    """`provision smoke --browser` with a hosted google-sign-in viewer on an emulator: the DICOMweb checks, then
    the browser at the run.app URL, signed in with the emulator's Google account (here one with the role).
    The service serves Google's config; every DICOMweb request goes to the Healthcare API with a token of
    this session, none to the service."""
    emu, bp, url = hosted_gsi["emu"], hosted_gsi["bp"], hosted_gsi["url"]
    sign_in_as(emu, VIEWER)
    result = flow.smoke(bp, Target(emulator=emu.url, token=f"emulator:user:{VIEWER}"), browser=True,
                        out_dir=OUT / "smoke")
    assert result.ok, result.summary()
    report = result.browser
    print("\n" + report.summary())
    assert report.mode == "hosted-google-sign-in" and report.viewer_url.startswith(f"{url}/viewer?StudyInstanceUIDs=")
    config_js = render_config(bp)   # what the archive holds, byte for byte: Google's config
    assert report.config_sha256 == hashlib.sha256(config_js.encode()).hexdigest()   # served by the service
    assert sorted(report.studies_shown) == ["Phantom, CT", "Phantom, MR"] and report.canvas["page"]["levels"] >= 16
    assert report.sign_in["signed_in"] and report.sign_in["tokens_issued"] >= 1
    assert report.dicomweb_requests >= 5 and report.dicomweb_unauthorized == []
    store = f"projects/{PROJECT}/locations/us-central1/datasets/imaging/dicomStores/primary/dicomWeb"
    assert f"GET healthcare.googleapis.com/v1/{store}/studies -> 200" in report.google_requests
    assert any(r.startswith(f"GET healthcare.googleapis.com/v1/{store}/studies/") and "/frames/" in r
               and r.endswith("-> 200") for r in report.google_requests)
    host = url.split("//")[1]
    assert {r.split()[1].split("/")[0] for r in report.routed_requests} == {host}
    assert f"GET {host}/callback -> 200" in report.routed_requests   # the SPA answers the sign-in's return
    assert report.bearer_requests == [] and not any("dicom" in r.lower() for r in report.routed_requests)
    assert report.external_requests == [] and report.page_errors == []


def test_at_its_local_door_the_viewer_renews_the_users_token_silently(hosted_gsi):
    """OHIF renews the token 60 s before it expires in a hidden iframe: accounts.google.com with prompt=none,
    whose 302 goes back to /silent-refresh.html. Opened at the address apply prints for a local browser (the
    run.app host's `.localhost` twin, which Chromium reaches itself: nothing routes the viewer's own requests),
    with a 62 s token the renewal comes at once. Under COEP require-corp Chromium refuses that redirect in the
    frame (ERR_BLOCKED_BY_RESPONSE) and the renewal never completes; the google-sign-in viewer isolates itself
    with Document-Isolation-Policy instead (hosted/middleware.py), and stays cross-origin isolated. Google's
    hosts are routed to the emulator for OHIF's run (its config names https://accounts.google.com); the same
    iframe is then opened with nothing routed at all, through the emulator's own door, and lands too."""
    emu, bp, url = hosted_gsi["emu"], hosted_gsi["bp"], hosted_gsi["url"]
    local = hosted_gsi["local"].rstrip("/")
    assert local == f"http://{url.split('//')[1]}.localhost:{emu.url.rsplit(':', 1)[1]}"
    # The door's origin on the web client too, as one registers a local address to try a viewer.
    uris = [f"{origin}{path}" for origin in (url, local) for path in ("/callback", "/silent-refresh.html")]
    requests.put(f"{emu.url}/_emulator/oauth/clients/{CLIENT}", json={
        "project": PROJECT, "redirect_uris": uris, "javascript_origins": [url, local]}, headers=CONTROL,
        timeout=10).raise_for_status()
    sign_in_as(emu, VIEWER, lifetime=62)
    try:
        report = run_browser_smoke(render_config(bp), expected_studies=_expected(hosted_gsi["studies"]),
                                   out_dir=OUT / "door-renewal", emulator_host=emu.url, google_via=emu.url,
                                   hosted={"url": local}, renewal=True)
    finally:
        sign_in_as(emu, VIEWER)   # the hour-long token again for the module's other tests
    print("\n" + report.summary())
    assert report.ok, report.summary()
    assert report.mode == "hosted-google-sign-in" and report.viewer_url.startswith(f"{local}/viewer?StudyInstanceUIDs=")
    assert report.sign_in["renewed"] and report.sign_in["tokens_issued"] >= 2
    assert report.cross_origin_isolated is True    # Document-Isolation-Policy, in Chromium
    assert report.routed_requests == []            # the viewer's own host was reached by the browser itself
    assert set(report.google_requests) >= {"GET accounts.google.com/o/oauth2/v2/auth -> 302"}
    assert report.dicomweb_requests >= 5 and report.dicomweb_unauthorized == []
    assert report.external_requests == [] and report.page_errors == []
    # The same hidden iframe with nothing routed at all: a page of the service at its door, an iframe to the
    # emulator's authorization endpoint at ITS door (the 302 is the emulator's own answer), back to the page.
    assert _silent_frame_lands(local, emu.url) == f"{local}/silent-refresh.html"


def _silent_frame_lands(local: str, emulator: str) -> str:
    """Where OHIF's renewal iframe (prompt=none) ends up, opened from the service's /silent-refresh.html page
    at its local door, in Chromium with no request routing ("blocked": the browser refused a response)."""
    from playwright.sync_api import sync_playwright

    from provision.checks.browser_chromium import chromium_args

    query = urlencode({"client_id": CLIENT, "redirect_uri": f"{local}/silent-refresh.html", "prompt": "none",
                       "response_type": "id_token token", "scope": " ".join(GOOGLE_SCOPES), "nonce": "n1",
                       "state": "s1"})
    auth = f"http://accounts.google.com.localhost:{emulator.rsplit(':', 1)[1]}/o/oauth2/v2/auth?{query}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=chromium_args(offline=True))
        try:
            page = browser.new_page()
            page.goto(f"{local}/silent-refresh.html", wait_until="domcontentloaded")
            assert page.evaluate("() => self.crossOriginIsolated") is True
            return page.evaluate("""auth => new Promise(done => {
                const frame = document.createElement('iframe');
                frame.onload = () => { try { done(frame.contentWindow.location.href.split('#')[0]); }
                                       catch (e) { done('blocked'); } };   // an error page is cross-origin
                frame.src = auth; document.body.appendChild(frame); })""", auth)
        finally:
            browser.close()
