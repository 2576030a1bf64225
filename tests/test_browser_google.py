"""The production path in the real viewer: the unchanged Google config `provision config` writes (sign-in
with Google, roots at healthcare.googleapis.com, OHIF's Google configuration API) in OHIF 3.13.2 in
Debian's chromium, Google's hosts routed to an emulator under --enforce-iam. One environment (applied
by the provisioner) and one browser run cover sign-in, studies listed, image drawn, a token of the
session on every DICOMweb request, silent renewal, the data-source dialog walk and sign-out; a second
run is the user without the role. Nothing leaves 127.0.0.1.
"""
from __future__ import annotations

import hashlib
import re
import socket

import pytest
import requests
from typer.testing import CliRunner

from emulator_helpers import CONTROL
from provision.running import lifecycle
from provision.cli import app
from provision.emulator.server import EmulatorServer
from provision.emulator.world import Options
from provision.gcp.target import Target
from provision.checks.browser import run_browser_smoke
from provision.ohif.config import oauth_checklist, render_config
from test_apply_support import BILLING, ORG, load
from test_browser import OUT, keep
from browser_marks import DRIVES_CHROMIUM

pytestmark = DRIVES_CHROMIUM

OWNER = "user:ana@example.com"
VIEWER = "vic@example.com"        # README's viewer roles, exactly
NOBODY = "eve@example.com"        # signed in to Google, no role on anything
CLIENT = "123456789012-provisionbrowser.apps.googleusercontent.com"
PROJECT, DISPLAY = "ohif-browser-prod", "Browser Prod"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def google_env(tmp_path_factory):
    """An enforce-iam emulator holding the demo studies, applied from a blueprint by the provisioner,
    with the OAuth web client registered exactly as the OAuth checklist says."""
    from provision.demo.studies import write_demo_studies

    tmp = tmp_path_factory.mktemp("browser-google")
    data = tmp / "data"
    studies = write_demo_studies(data)
    emu = EmulatorServer(Options(host="127.0.0.1", port=0, enforce_iam=True)).start()
    try:
        for resource, role in ((ORG, "roles/resourcemanager.projectCreator"), (f"billingAccounts/{BILLING}", "roles/billing.user")):
            requests.put(f"{emu.url}/_emulator/policies/{resource}", json={"bindings": [{"role": role, "members": [OWNER]}]},
                         headers=CONTROL, timeout=10).raise_for_status()
        origin = f"http://127.0.0.1:{free_port()}"
        mr = next(s for s in studies if s.modality == "MR")
        mr_dir = mr.files[0].parent.relative_to(data).parts[0]
        viewer_roles = [{"member": f"user:{VIEWER}", "roles": ["roles/browser", "roles/healthcare.dicomViewer"]}]
        blueprint = {
            "version": 1,
            "project": {"id": PROJECT, "display_name": DISPLAY, "parent": ORG, "billing_account": BILLING},
            "iam": viewer_roles,
            "bucket": {"name": f"{PROJECT}-dicom", "location": "US", "create": True,
                       "upload": {"from": str(data), "prefix": "dicom/"}},
            "dataset": {"id": "imaging", "location": "us-central1"},
            "dicom_stores": [{"id": "primary", "import": {"uri": f"gs://{PROJECT}-dicom/dicom/**.dcm"}},
                             {"id": "teaching", "import": {"uri": f"gs://{PROJECT}-dicom/dicom/{mr_dir}/**.dcm"}}],
            "viewer": {"origin": origin, "oauth_client_id": CLIENT, "config_out": str(tmp / "google.js")},
            "smoke": {"min_studies": 1},
        }
        bp = load(tmp, blueprint)
        target = Target(emulator=emu.url, token=f"emulator:{OWNER}")
        assert lifecycle.apply(bp, target).ok
        # The console step, as the checklist prints it: origins and redirect URIs, nothing else.
        checklist = oauth_checklist(bp)
        uris = re.findall(r"^\s+(http\S+)", checklist.split("Authorized redirect URIs:")[1].split("- Create")[0], re.M)
        assert uris == [f"{origin}/callback", f"{origin}/silent-refresh.html"]
        requests.put(f"{emu.url}/_emulator/oauth/clients/{CLIENT}", json={
            "project": PROJECT, "redirect_uris": uris, "javascript_origins": [origin]}, headers=CONTROL,
            timeout=10).raise_for_status()
        yield {"emu": emu, "bp": bp, "path": tmp / "bp.yaml", "studies": studies, "origin": origin}
    finally:
        emu.stop()


def sign_in_as(emu, email: str, lifetime: int = 3599) -> None:
    requests.put(f"{emu.url}/_emulator/oauth/account", json={"email": email}, headers=CONTROL, timeout=10).raise_for_status()
    requests.put(f"{emu.url}/_emulator/oauth/settings", json={"token_lifetime_s": lifetime}, headers=CONTROL,
                 timeout=10).raise_for_status()


def expected(studies):
    return [{"patient_name": s.patient_name_ohif, "study_uid": s.study_uid} for s in studies]


def test_google_config_signed_in_renewal_dialog_and_sign_out(google_env, tmp_path):
    emu, bp = google_env["emu"], google_env["bp"]
    # the config the browser runs is what `provision config` writes for Google Cloud, byte for byte
    out = tmp_path / "google.js"
    result = CliRunner().invoke(app, ["config", str(google_env["path"]), "--out", str(out)],
                                env={"PROVISION_EMULATOR_HOST": ""})
    assert result.exit_code == 0, result.output
    config_js = render_config(bp)
    assert out.read_text() == config_js
    assert "authority: 'https://accounts.google.com'" in config_js and "configurationAPI:" in config_js
    assert "https://healthcare.googleapis.com/v1/projects/" in config_js and emu.url not in config_js
    # a 62 s token: oidc-client renews it 60 s before expiry, so within the run
    sign_in_as(emu, VIEWER, lifetime=62)
    mr = next(s for s in google_env["studies"] if s.modality == "MR")
    report = run_browser_smoke(config_js, expected_studies=expected(google_env["studies"]), out_dir=OUT / "google",
                               google_via=emu.url, origin=google_env["origin"], renewal=True, sign_out=True,
                               dialog={"project": DISPLAY, "location": "us-central1", "dataset": "imaging",
                                       "store": "teaching", "shows": mr.patient_name_ohif})
    keep("google", report)
    assert report.ok, report.summary()
    assert report.config_sha256 == hashlib.sha256(out.read_bytes()).hexdigest()  # what the browser loaded
    assert report.mode == "google-via-emulator" and report.viewer_url.startswith(google_env["origin"] + "/viewer?")
    assert report.studies_shown == ["Phantom, CT", "Phantom, MR"] and report.canvas["page"]["levels"] >= 16
    # signed in through Google's endpoints, each answered by the emulator
    calls = report.google_requests
    for call in ("GET accounts.google.com/.well-known/openid-configuration -> 200",
                 "GET accounts.google.com/o/oauth2/v2/auth -> 302", "GET www.googleapis.com/oauth2/v3/certs -> 200",
                 "GET openidconnect.googleapis.com/v1/userinfo -> 200",
                 f"GET cloudresourcemanager.googleapis.com/v1/projects/{PROJECT} -> 200",
                 "GET cloudresourcemanager.googleapis.com/v1/projects -> 200",   # the dialog's project list
                 f"GET healthcare.googleapis.com/v1/projects/{PROJECT}/locations -> 200"):
        assert call in calls, call
    assert report.sign_in["signed_in"] and report.sign_in["renewed"] and report.sign_in["tokens_issued"] >= 2
    # a token of this session on every DICOMweb request
    assert report.dicomweb_requests >= 5 and report.dicomweb_unauthorized == []
    assert report.external_requests == [] and report.page_errors == []
    assert report.stubbed_requests == ["GET https://cdnjs.cloudflare.com/ajax/libs/es5-shim/4.5.7/es5-shim.min.js"] * \
        len(report.stubbed_requests) and report.stubbed_requests     # /silent-refresh.html's shim, answered locally
    assert report.dialog["walked"] == [f"Project: {DISPLAY}", "Location: us-central1", "Data set: imaging",
                                       "DICOM store: teaching"]
    assert report.dialog["study_query_status"] == 200 and report.dialog["shows"] == mr.patient_name_ohif
    # sign-out: OHIF forgets the user, but its oidc-client revokes no Google token (it contains a '.')
    assert report.sign_in["signed_out"] == {"user_removed": True, "revoke_requests": 0, "token_still_valid": True}
    assert any("revoked no token" in n for n in report.notes)
    assert "ya29." not in report.to_json() and "eyJ" not in report.to_json()


def test_signed_in_user_without_the_role_is_refused(google_env):
    emu = google_env["emu"]
    sign_in_as(emu, NOBODY)
    report = run_browser_smoke(render_config(google_env["bp"]), expected_studies=expected(google_env["studies"][:1]),
                               out_dir=OUT / "google-denied", google_via=emu.url, origin=google_env["origin"],
                               timeout_s=30)
    keep("google-denied", report)
    assert not report.ok and report.sign_in["signed_in"]
    assert "answered 403: Permission 'healthcare.dicomStores.dicomWebRead' denied" in report.problems[0]
    assert "Likely cause: the caller lacks roles/healthcare.dicomViewer on the store" in report.problems[0]
    assert report.dicomweb_unauthorized == []      # eve's token was sent; IAM refused it
    assert report.external_requests == []
