"""The hosted viewer deployed by `provision apply` against the emulator, end to end through the real
clients: the source archive built and pushed with builds:submit, the Cloud Run service with IAP
answering a member on its run.app host, a QIDO through it returning the imported studies as the
viewer's service account; a no-op re-apply writes nothing; removing a member revokes them; allUsers
on the service is drift in status; removing hosting deletes the service."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests
from cloudrun_helpers import Browser
from test_apply_support import blueprint_dict, load, mark, records, write_dicom, writes

from provision.gcp.context import Ctx
from provision.gcp.target import Target
from provision.resources import hosting_calls, iam
from provision.running import audit, lifecycle

ANA, BOB = "user:ana@example.com", "user:bob@example.com"


pytestmark = pytest.mark.usefixtures("small_ohif_dist")   # the hosted archive from a one-page viewer


def _bp(tmp_path, pid, members=(ANA,), hosting=True):
    data_dir = tmp_path / "data"
    if not data_dir.exists():
        write_dicom(data_dir, studies=2)
    data = blueprint_dict(pid, data_dir)
    if hosting:
        data["viewer"]["hosting"] = {"region": "us-central1", "members": list(members)}
    return load(tmp_path, data)


def _as(member: str) -> dict:
    return {"Authorization": f"Bearer emulator:{member}"}   # IAP's programmatic access as a member


def test_apply_deploys_the_viewer_behind_iap_and_converges(emulator_factory, tmp_path):
    rec = tmp_path / "rec.jsonl"
    emu = emulator_factory(record=rec)
    target = Target(emulator=emu.url)
    pid = "ohif-host-live"
    bp = _bp(tmp_path, pid, members=(ANA, BOB))

    result = lifecycle.apply(bp, target)
    url = result.outputs["viewer_url"]
    number = result.outputs["project_number"]
    assert url == f"https://ohif-viewer-{number}.us-central1.run.app"
    assert f"viewer: {url}" in result.render()
    # On an emulator on loopback, the address a person's browser opens it at (provision/emulator/door.py).
    local = f"http://ohif-viewer-{number}.us-central1.run.app.localhost:{emu.url.rsplit(':', 1)[1]}/"
    assert result.outputs["viewer_local_url"] == local and f"open {local} in your browser" in result.render()
    browser = Browser(emu.url)
    seen = mark(rec)   # what apply itself asked of the store is not the viewer's
    studies = browser.get(url + "/dicomweb/primary/studies", headers=_as(ANA))
    assert studies.status_code == 200, studies.text
    assert len(studies.json()) == 2
    config = browser.get(url + "/app-config.js", headers=_as(ANA))
    assert "googleapis.com" not in config.text and f"{url}/dicomweb/primary" in config.text
    account = f"serviceAccount:ohif-viewer-viewer@{pid}.iam.gserviceaccount.com"
    qido = [r for r in records(rec)[seen:] if r["path"].endswith("/dicomWeb/studies") and r["method"] == "GET"]
    assert qido and {r["principal"] for r in qido} == {account}
    # Google's audit entries name only the viewer's account; `provision audit` also reads the viewer's
    # access log (its stdout, through Cloud Logging), which names the member and the store.
    study = studies.json()[0]["0020000D"]["Value"][0]
    assert browser.get(f"{url}/dicomweb/primary/studies/{study}/series", headers=_as(ANA)).status_code == 200
    # The app's stdout reaches Cloud Logging a moment after the answer (on Google too): wait for the line.
    deadline = time.monotonic() + 15
    while True:
        report = audit.audit(bp, target, audit.parse_since("1h"))
        viewer_rows = [r for r in report.rows if r.service == audit.VIEWER_SERVICE]
        if any(r.principal == "ana@example.com" and r.store == "primary" and r.study == study for r in viewer_rows):
            break
        assert time.monotonic() < deadline, report.render()
        time.sleep(0.1)
    assert any(r.principal == account.split(":", 1)[1] and r.action == "SearchForStudies" for r in report.rows), \
        report.render()
    assert browser.get(url + "/dicomweb/primary/studies", headers=_as("user:eve@example.com")).status_code == 403

    # Nothing changed: reads only, no build, no deploy.
    before = mark(rec)
    again = lifecycle.apply(bp, target)
    assert not again.changed and again.outputs["viewer_url"] == url
    assert writes(records(rec)[before:]) == []

    # Bob removed: revoked on the IAP resource, and IAP refuses him.
    fewer = _bp(tmp_path, pid, members=(ANA,))
    plan = lifecycle.plan(fewer, target)
    assert plan.step("viewer-access").changes == [f"- {BOB} roles/iap.httpsResourceAccessor"]
    assert not {"viewer-build", "viewer-service"} & {s.id for s in plan.changes}
    lifecycle.apply(fewer, target)
    assert browser.get(url + "/dicomweb/primary/studies", headers=_as(BOB)).status_code == 403

    # Someone makes it public: status says so, loudly; the viewer URL is there too.
    name = f"projects/{pid}/locations/us-central1/services/ohif-viewer"
    iam.add(Ctx(target), hosting_calls.run_service_io(Ctx(target), name), [("roles/run.invoker", "allUsers")])
    report = lifecycle.status(fewer, target)
    invoker = next(r for r in report.resources if r["id"] == "viewer-invoker")
    assert invoker["state"] == "drift" and any(d.startswith("DRIFT: allUsers") for d in invoker["details"])
    assert report.outputs["viewer_url"] == url and json.loads(json.dumps(report.to_json()))["outputs"]
    assert report.outputs["viewer_local_url"] == local and f"open {local} in your browser" in report.render()

    # Someone turns IAP off: status says so, loudly, and apply turns it back on without a build.
    services = Ctx(target).target.run().projects().locations().services()
    current = services.get(name=name).execute()
    op = services.patch(name=name, body={**{k: v for k, v in current.items() if k in ("template", "labels",
                                                                                         "annotations")},
                                         "iapEnabled": False}).execute()
    hosting_calls.wait_run(Ctx(target), op)
    report = lifecycle.status(fewer, target)
    svc_state = next(r for r in report.resources if r["id"] == "viewer-service")
    assert svc_state["state"] == "drift" and any("IAP is OFF" in d for d in svc_state["details"])
    fixed = lifecycle.apply(fewer, target)
    assert "viewer-build" not in {s.id for s in fixed.plan.changes}
    assert hosting_calls.get_service(Ctx(target), name)["iapEnabled"] is True
    assert browser.get(url + "/dicomweb/primary/studies", headers=_as(BOB)).status_code == 403

    # Hosting removed: the service and the viewer's account go; the repository stays (said so).
    bare = _bp(tmp_path, pid, hosting=False)
    plan = lifecycle.plan(bare, target)
    assert plan.step("viewer-service").action == "delete"
    assert any(s.kind == "artifact-repo" and s.action == "keep" for s in plan.steps)
    lifecycle.apply(bare, target)
    assert hosting_calls.get_service(Ctx(target), name) is None
    assert browser.get(url + "/", headers=_as(ANA)).status_code == 404


def test_apply_killed_mid_deploy_converges_on_the_next_apply_without_a_second_deploy(emulator, tmp_path):
    import threading

    target = Target(emulator=emulator.url)
    pid = "ohif-host-kill"
    bp = _bp(tmp_path, pid)
    cancel = threading.Event()

    def listener(event) -> None:   # interrupted once the service's deploy has started
        if event.kind == "progress" and event.step == "viewer-service" and "deploying" in event.message:
            cancel.set()

    with pytest.raises(Exception):   # noqa: B017 - interrupted: ApplyFailed naming the interrupted step
        lifecycle.apply(bp, target, listener, cancel=cancel)
    name = f"projects/{pid}/locations/us-central1/services/ohif-viewer"
    assert hosting_calls.get_service(Ctx(target), name) is not None   # the deploy had started

    plan = lifecycle.plan(bp, target)
    assert "viewer-build" not in {s.id for s in plan.changes}    # that archive is on the service already
    result = lifecycle.apply(bp, target)
    service = hosting_calls.get_service(Ctx(target), name)
    assert service["latestReadyRevision"].rsplit("/", 1)[1].startswith("ohif-viewer-00001-")   # one deploy only
    studies = Browser(emulator.url).get(result.outputs["viewer_url"] + "/dicomweb/primary/studies", headers=_as(ANA))
    assert studies.status_code == 200 and len(studies.json()) == 2

    # Destroy removes the service (and its grants) with the rest.
    done = lifecycle.destroy(bp, target, delete_data=True)
    assert "viewer-service" in {s.id for s in done.steps}
    assert hosting_calls.get_service(Ctx(target), name) is None


def test_the_demo_prints_the_hosted_url_and_a_command_that_reaches_it(emulator, tmp_path):
    """`provision demo` against a kept emulator: the hosted viewer's URL, and the printed plain-HTTP command
    (IAP's programmatic access as the demo's member, on the emulator's port) answers with the studies."""
    import shlex

    from provision.demo.run import run_demo

    result = run_demo(out_dir=tmp_path / "out", emulator_url=emulator.url)
    text = result.render()
    url = result.outcome.apply.outputs["viewer_url"]
    assert f"hosted viewer: {url}" in text
    (line,) = [ln for ln in text.splitlines() if ln.strip().startswith("curl ")]
    words = shlex.split(line)
    headers = dict(words[i + 1].split(": ", 1) for i, w in enumerate(words) if w == "-H")
    assert headers["Host"] == url.split("//")[1] and words[-1].startswith(emulator.url + "/")
    answer = requests.get(words[-1], headers=headers, timeout=30)
    assert answer.status_code == 200 and len(answer.json()) == len(result.studies)
    assert f"provision smoke --browser {result.blueprint.relative_to(Path.cwd()) if result.blueprint.is_relative_to(Path.cwd()) else result.blueprint}" in text
