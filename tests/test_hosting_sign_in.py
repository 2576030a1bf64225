"""`viewer.hosting.access: google-sign-in` deployed by `provision apply` against the emulator, through the
real clients: the same hosted app in its static mode on Cloud Run with IAP off and `allUsers` as its
invoker (a public static site: the plan and status say so), serving Google's own config (sign-in with the
blueprint's OAuth client, roots at healthcare.googleapis.com); the viewer's account reads no store; the
OAuth checklist apply prints names the service's exact origin and /callback. Switching to iap and back
converges (IAP, the invoker, the members' and the account's grants follow), a no-op re-apply writes
nothing, destroy removes the service."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cloudrun_helpers import Browser
from typer.testing import CliRunner
from test_apply_support import ORG, blueprint_dict, load, mark, records, writes

from provision.gcp.context import Ctx
from provision.gcp.target import Target
from provision.resources import hosting_calls, iam, store_calls
from provision.cli import app
from provision.running import lifecycle

ANA = "user:ana@example.com"
CLIENT = "123456789012-provisionhosted.apps.googleusercontent.com"
ALL = ("roles/run.invoker", "allUsers")


pytestmark = pytest.mark.usefixtures("small_ohif_dist")   # the hosted archive from a one-page viewer


def _bp(tmp_path, pid: str, access: str | None = "google-sign-in"):
    data = blueprint_dict(pid)
    data["dicom_stores"][0].pop("import")
    data["smoke"] = {"min_studies": 0}
    data["viewer"]["oauth_client_id"] = CLIENT
    if access == "google-sign-in":
        data["viewer"]["hosting"] = {"region": "us-central1", "access": "google-sign-in"}
    elif access == "iap":
        data["viewer"]["hosting"] = {"region": "us-central1", "members": [ANA]}
    return load(tmp_path, data)


def _names(pid: str) -> tuple[str, str, str]:
    service = f"projects/{pid}/locations/us-central1/services/ohif-viewer"
    store = f"projects/{pid}/locations/us-central1/datasets/imaging/dicomStores/primary"
    return service, store, f"serviceAccount:ohif-viewer-viewer@{pid}.iam.gserviceaccount.com"


def _pairs(ctx: Ctx, io) -> set:
    return iam.unconditional(hosting_calls.read_policy_or_none(ctx, io) or {})


def test_google_sign_in_deploys_the_public_static_viewer_and_switches_with_iap(emulator_factory, tmp_path):
    rec = tmp_path / "rec.jsonl"
    emu = emulator_factory(record=rec)
    target, ctx = Target(emulator=emu.url), Ctx(Target(emulator=emu.url))
    pid = "ohif-host-gsi"
    service, store, account = _names(pid)
    bp = _bp(tmp_path, pid)

    plan = lifecycle.plan(bp, target)
    assert "+ iap.googleapis.com" not in plan.step("apis").changes and "+ run.googleapis.com" in plan.step("apis").changes
    assert "IAP off, public (invoker allUsers)" in plan.step("viewer-service").changes[0]
    assert "+ allUsers roles/run.invoker" in plan.step("viewer-invoker").changes
    assert not any("service agent" in c for c in plan.step("viewer-invoker").changes)
    assert "viewer-access" not in {s.id for s in plan.steps}            # no IAP resource to grant on
    assert not any(account in c for c in plan.step("store-iam:primary").changes)   # each user's own token reads
    assert any("ohif-viewer is public (roles/run.invoker for allUsers)" in n and "roles/healthcare.dicomViewer" in n for n in plan.notes)

    # Before apply `config` cannot know the service's origin: it says so, and no checklist for viewer.origin.
    early = CliRunner().invoke(app, ["config", str(bp.source), "--emulator", emu.url])
    assert early.exit_code == 0, early.output
    assert ("the web client needs the Cloud Run service's own origin, https://ohif-viewer-PROJECT_NUMBER.us-central1"
            ".run.app, known once `provision apply` has deployed it (here its URL could not be read: 403 "
            "PERMISSION_DENIED Permission 'run.services.get' denied on resource") in early.output   # no project yet
    assert "Authorized JavaScript origins" not in early.output and bp.viewer.origin not in early.output

    applied = CliRunner().invoke(app, ["apply", str(bp.source), "--yes", "--no-smoke", "--emulator", emu.url])
    assert applied.exit_code == 0, applied.output
    url = re.search(r"^viewer: (https://\S+)", applied.output, re.M).group(1)
    # Once deployed, `config` prints the checklist apply printed: the service's origin, read back from Cloud Run.
    late = CliRunner().invoke(app, ["config", str(bp.source), "--emulator", emu.url])
    assert late.exit_code == 0, late.output
    checklist = re.compile(r"^OAuth for the OHIF viewer.*?^Current client ID: .*?$", re.M | re.S)
    assert checklist.search(late.output).group(0) == checklist.search(applied.output).group(0)
    late_origins = late.output.split("Authorized JavaScript origins:")[1].split("- Authorized redirect URIs:")
    assert late_origins[0].split() == [url] and f"{url}/callback" in late_origins[1].split()
    assert f"{url}/silent-refresh.html" in late_origins[1].split() and bp.viewer.origin not in late.output
    number = re.fullmatch(r"https://ohif-viewer-(\d+)\.us-central1\.run\.app", url).group(1)   # checked on IAP below
    # The console step apply prints, for this service's exact origin and its /callback.
    origins = applied.output.split("Authorized JavaScript origins:")[1].split("- Authorized redirect URIs:")
    assert origins[0].split() == [url]
    assert f"{url}/callback" in origins[1].split() and f"Current client ID: {CLIENT}" in applied.output

    svc = hosting_calls.get_service(ctx, service)
    assert svc["iapEnabled"] is False and not svc.get("invokerIamDisabled") and svc["launchStage"] == "GA"
    assert {e["name"]: e["value"] for e in svc["template"]["containers"][0]["env"]} == {
        "HOSTED_ACCESS": "google-sign-in"}
    assert ALL in _pairs(ctx, hosting_calls.run_service_io(ctx, service))
    assert ("roles/healthcare.dicomViewer", account) not in iam.unconditional(store_calls.read_iam(ctx, store))
    # Public: anyone loads the viewer and its config, no sign-in in front; the config is Google's own.
    browser = Browser(emu.url)
    page = browser.get(url + "/", follow=False)
    assert page.status_code == 200 and "viewer" in page.text
    # Isolated by Document-Isolation-Policy, not COEP, so OHIF's hidden renewal iframe may follow Google's
    # redirect (hosted/middleware.py; tests/test_hosted_sign_in_browser.py renews in Chromium).
    assert page.headers["document-isolation-policy"] == "isolate-and-require-corp"
    assert page.headers["cross-origin-opener-policy"] == "same-origin" and "cross-origin-embedder-policy" not in page.headers
    config = browser.get(url + "/app-config.js", follow=False).text
    assert f"client_id: '{CLIENT}'" in config and "authority: 'https://accounts.google.com'" in config
    assert f"'https://healthcare.googleapis.com/v1/{store}/dicomWeb'" in config and emu.url not in config
    assert "redirect_uri: '/callback'" in config
    # No proxy: a DICOMweb path on the service is the SPA's page, never the store's answer.
    assert browser.get(url + "/dicomweb/primary/studies", follow=False).headers["content-type"].startswith("text/html")

    report = lifecycle.status(bp, target)
    assert report.in_sync, report.render()
    assert report.outputs["viewer_url"] == url and any("ohif-viewer is public (roles/run.invoker for allUsers)" in n for n in report.notes)
    assert "viewer: " + url in report.render()

    before = mark(rec)
    again = CliRunner().invoke(app, ["apply", str(bp.source), "--yes", "--no-smoke", "--emulator", emu.url, "--json"])
    assert again.exit_code == 0, again.output
    (doc,) = json.loads(again.stdout)["results"]
    assert not doc["apply"]["changed"] and writes(records(rec)[before:]) == []
    assert f"{url}/callback" in doc["oauth_checklist"] and doc["apply"]["outputs"]["viewer_url"] == url

    # To iap: IAP on, IAP's agent instead of allUsers, the member and the account's store grant added.
    gated = _bp(tmp_path, pid, access="iap")
    plan = lifecycle.plan(gated, target)
    assert {"viewer-build", "viewer-service", "viewer-invoker", "viewer-access"} <= {s.id for s in plan.changes}
    assert "- allUsers roles/run.invoker" in plan.step("viewer-invoker").changes
    assert plan.step("viewer-access").changes == [f"+ {ANA} roles/iap.httpsResourceAccessor"]
    assert f"+ {account} roles/healthcare.dicomViewer" in plan.step("store-iam:primary").changes
    lifecycle.apply(gated, target)
    svc = hosting_calls.get_service(ctx, service)
    assert svc["iapEnabled"] is True and svc["launchStage"] == "BETA"
    invokers = _pairs(ctx, hosting_calls.run_service_io(ctx, service))
    assert ALL not in invokers and ("roles/run.invoker", f"serviceAccount:service-{number}@gcp-sa-iap.iam.gserviceaccount.com") in invokers
    resource = f"projects/{number}/iap_web/cloud_run-us-central1/services/ohif-viewer"
    assert ("roles/iap.httpsResourceAccessor", ANA) in _pairs(ctx, hosting_calls.iap_io(ctx, resource))
    assert Browser(emu.url).get(url + "/", follow=False).status_code == 302      # IAP's sign-in now
    assert lifecycle.status(gated, target).in_sync

    # And back: IAP off, allUsers again, the member's IAP grant and the account's store grant revoked.
    plan = lifecycle.plan(bp, target)
    assert plan.step("viewer-access").changes == [f"- {ANA} roles/iap.httpsResourceAccessor"]
    assert "+ allUsers roles/run.invoker" in plan.step("viewer-invoker").changes
    assert any(c.startswith("~ IAP on -> off") for c in plan.step("viewer-service").changes)
    assert f"- {account} roles/healthcare.dicomViewer" in plan.step("store-iam:primary").changes
    lifecycle.apply(bp, target)
    assert hosting_calls.get_service(ctx, service)["iapEnabled"] is False
    assert ("roles/iap.httpsResourceAccessor", ANA) not in _pairs(ctx, hosting_calls.iap_io(ctx, resource))
    assert ALL in _pairs(ctx, hosting_calls.run_service_io(ctx, service))
    assert ("roles/healthcare.dicomViewer", account) not in iam.unconditional(store_calls.read_iam(ctx, store))
    assert Browser(emu.url).get(url + "/", follow=False).status_code == 200
    before = mark(rec)
    assert not lifecycle.apply(bp, target).changed and writes(records(rec)[before:]) == []
    assert lifecycle.status(bp, target).in_sync
    # IAP turned on behind provision's back: a change apply undoes (no drift alarm: nothing got more open).
    services = ctx.target.run().projects().locations().services()
    current = services.get(name=service).execute()
    hosting_calls.wait_run(ctx, services.patch(name=service, body={
        **{k: v for k, v in current.items() if k in ("template", "labels", "annotations")}, "iapEnabled": True})
        .execute())
    plan = lifecycle.plan(bp, target)
    assert plan.step("viewer-service").changes[0].startswith("~ IAP on -> off")
    assert not any(c.startswith("DRIFT") for c in plan.step("viewer-service").changes)
    lifecycle.apply(bp, target)
    assert hosting_calls.get_service(ctx, service)["iapEnabled"] is False

    # Destroy removes the service and its public grant with the rest.
    done = lifecycle.destroy(bp, target, delete_data=True)
    assert "viewer-service" in {s.id for s in done.steps}
    assert hosting_calls.get_service(ctx, service) is None
    assert Browser(emu.url).get(url + "/", follow=False).status_code == 404
    bp = _bp(tmp_path, pid)   # the file again as it was (the iap blueprint above was written over it)
    gone = CliRunner().invoke(app, ["config", str(bp.source), "--emulator", emu.url])
    assert gone.exit_code == 0, gone.output
    assert "known once `provision apply` has deployed it (here the service is not deployed)" in gone.output
    assert url not in gone.output and "Authorized JavaScript origins" not in gone.output


def test_google_sign_in_is_refused_under_domain_restricted_sharing(emulator_factory, tmp_path):
    """An organization that allows only its own customers in IAM policies refuses the public invoker: plan says
    so at viewer.hosting.access (exit 2, nothing written) rather than failing at setIamPolicy mid-apply."""
    from test_refused_before_write import line_col, put_policy, run

    rec = tmp_path / "rec.jsonl"
    emu = emulator_factory(record=rec)
    put_policy(emu.url, ORG, "iam.allowedPolicyMemberDomains", {"rules": [{"values": {"allowedValues": ["C0emul8r1"]}}]})
    before = len(records(rec))
    bp = _bp(tmp_path, "ohif-host-gsi-drs")
    planned = run("plan", str(bp.source), "--emulator", emu.url)
    assert planned.exit_code == 2, planned.output
    assert f"{bp.source}:{line_col(bp.source, 'google-sign-in')}: google-sign-in makes the viewer's Cloud Run " \
           "service public (roles/run.invoker for allUsers)" in planned.output
    assert "iam.allowedPolicyMemberDomains" in planned.output and "Traceback" not in planned.output
    assert writes(records(rec)[before:]) == []


def test_config_says_plainly_when_the_hosted_viewers_origin_cannot_be_read(tmp_path):
    """`provision config` for Google Cloud without credentials: the config is written, and instead of a checklist
    for viewer.origin (which is not where the hosted viewer runs) it says the origin is known after apply, and why
    it could not be read. A blueprint without hosting still gets the checklist for viewer.origin."""
    env = {"PROVISION_EMULATOR_HOST": "", "GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "none.json")}
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    hosted, plain = _bp(tmp_path / "a", "ohif-cfg-gsi"), _bp(tmp_path / "b", "ohif-cfg-plain", access=None)
    result = CliRunner().invoke(app, ["config", str(hosted.source)], env=env)
    assert result.exit_code == 0, result.output
    assert f"client_id: '{CLIENT}'" in Path(hosted.viewer.config_out).read_text()   # written all the same
    assert "https://ohif-viewer-PROJECT_NUMBER.us-central1.run.app, known once `provision apply` has deployed it " \
           "(here its URL could not be read: no Google Cloud credentials found;" in result.output
    assert "Authorized JavaScript origins" not in result.output and hosted.viewer.origin not in result.output
    result = CliRunner().invoke(app, ["config", str(plain.source)], env=env)
    assert result.exit_code == 0, result.output
    assert result.output.split("Authorized JavaScript origins:")[1].split()[0] == plain.viewer.origin
