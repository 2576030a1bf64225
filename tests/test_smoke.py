"""DICOMweb smoke against the emulator: a store set up through the real clients, the demo studies
stored with STOW-RS, then the viewer's requests. Passes on a good store; fails clearly for a wrong
store path, an empty store, and a caller without roles/healthcare.dicomViewer."""
from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
import requests

from emulator_helpers import CONTROL, ready_store
from provision.demo.studies import write_demo_studies
from provision.checks.dicomweb import CHECK_NAMES, run_dicomweb_smoke

ORIGIN = "http://127.0.0.1:3000"
REPO = Path(__file__).resolve().parent.parent
OWNER, VIEWER, STRANGER = "user:ana@example.com", "user:vic@example.com", "user:eve@example.com"


@pytest.fixture(scope="session")
def demo_studies(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo-data")
    studies = write_demo_studies(out)
    return studies, [pydicom.dcmread(p) for s in studies for p in s.files]


def store_demo(env, datasets) -> None:
    client = env.dicomweb
    for i in range(0, len(datasets), 32):
        client.store_instances(datasets[i:i + 32])


def session_for(member: str | None) -> requests.Session:
    s = requests.Session()
    if member:
        s.headers["Authorization"] = f"Bearer emulator:{member}"
    return s


def record(name: str, report) -> None:
    """Keep the timings as evidence (out/ is git-ignored; CI uploads it)."""
    out = REPO / "out" / "smoke"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(report.to_json() + "\n")


def test_passes_on_the_demo_store(emulator, demo_studies):
    studies, datasets = demo_studies
    env = ready_store(emulator, project="smoke-demo", dataset="imaging", store="primary")
    store_demo(env, datasets)
    report = run_dicomweb_smoke(env.dicomweb_url, session=session_for(None), origin=ORIGIN, min_studies=2)
    record("dicomweb-emulator", report)
    assert report.ok, report.summary()
    assert [c.name for c in report.checks] == list(CHECK_NAMES)
    assert report.studies_found == 2
    assert {s["study_uid"] for s in report.studies} == {s.study_uid for s in studies}
    frame = report.check("frame")
    assert "1 part(s)" in frame.detail and ("32768 bytes" in frame.detail or "131072 bytes" in frame.detail)
    assert report.check("rendered").detail.startswith("JPEG ")
    assert "Access-Control-Allow-Origin" in report.check("cors").detail
    doc = json.loads(report.to_json())
    assert doc["ok"] and all(c["ms"] > 0 for c in doc["checks"])
    print("\n" + report.summary())


def test_wrong_store_path(emulator, demo_studies):
    env = ready_store(emulator, project="smoke-wrong", dataset="imaging", store="primary")
    store_demo(env, demo_studies[1][:2])
    wrong = env.dicomweb_url.replace("/dicomStores/primary/", "/dicomStores/primry/")
    report = run_dicomweb_smoke(wrong, session=session_for(None), origin=ORIGIN, min_studies=1)
    assert not report.ok
    failed = report.check("studies")
    assert failed.status in (403, 404), failed.detail
    assert "/dicomStores/primry/dicomWeb/studies?" in failed.detail
    assert "store path" in failed.detail
    assert [c.name for c in report.failures] == ["studies"]


def test_empty_store(emulator):
    env = ready_store(emulator, project="smoke-empty", dataset="imaging", store="primary")
    report = run_dicomweb_smoke(env.dicomweb_url, session=session_for(None), origin=ORIGIN, min_studies=1)
    assert not report.ok
    detail = report.check("studies").detail
    assert "found 0 studies, expected at least 1" in detail and "nothing has been imported" in detail
    # The same store with smoke.min_studies 0 is fine, and the image checks are skipped.
    assert run_dicomweb_smoke(env.dicomweb_url, origin=ORIGIN, min_studies=0).ok


def test_enforced_iam_viewer_passes_stranger_gets_403(emulator_factory, demo_studies):
    emu = emulator_factory(enforce_iam=True)
    requests.put(f"{emu.url}/_emulator/policies/organizations/1", json={"bindings": [
        {"role": "roles/resourcemanager.projectCreator", "members": [OWNER]}]}, timeout=10, headers=CONTROL).raise_for_status()
    requests.put(f"{emu.url}/_emulator/policies/billingAccounts/012345-6789AB-CDEF01", json={"bindings": [
        {"role": "roles/billing.user", "members": [OWNER]}]}, timeout=10, headers=CONTROL).raise_for_status()
    env = ready_store(emu, project="smoke-iam", dataset="imaging", store="primary", member=OWNER, parent="organizations/1")
    store_demo(env, demo_studies[1])
    env.stores.setIamPolicy(resource=env.store, body={"policy": {"bindings": [
        {"role": "roles/healthcare.dicomViewer", "members": [VIEWER]}]}}).execute()

    viewer = run_dicomweb_smoke(env.dicomweb_url, session=session_for(VIEWER), origin=ORIGIN, min_studies=2)
    assert viewer.ok, viewer.summary()
    assert "emulator:" not in viewer.to_json()  # the bearer token is never reported

    stranger = run_dicomweb_smoke(env.dicomweb_url, session=session_for(STRANGER), origin=ORIGIN, min_studies=2)
    assert not stranger.ok
    failed = stranger.check("studies")
    assert failed.status == 403
    assert "roles/healthcare.dicomViewer" in failed.detail and "answered 403" in failed.detail
    # The preflight carries no credentials and still succeeds: CORS is not the problem here.
    assert stranger.check("cors").ok, stranger.check("cors").detail

    anonymous = run_dicomweb_smoke(env.dicomweb_url, origin=ORIGIN, min_studies=2)
    assert anonymous.check("studies").status == 401 and "expired" in anonymous.check("studies").detail


def test_blueprint_smoke_dicomweb_only(emulator, demo_studies):
    from types import SimpleNamespace

    from provision.running.smoke import run_blueprint_smoke

    env = ready_store(emulator, project="smoke-bp", dataset="imaging", store="primary")
    store_demo(env, demo_studies[1])
    env.stores.create(parent=env.dataset, dicomStoreId="empty", body={}).execute()
    bp = SimpleNamespace(
        project=SimpleNamespace(id=env.project),
        dataset=SimpleNamespace(id="imaging", location=env.location),
        dicom_stores=[SimpleNamespace(id="primary", import_=SimpleNamespace(uri="gs://b/**")),
                      SimpleNamespace(id="empty", import_=SimpleNamespace(uri="gs://b/**"))],
        viewer=SimpleNamespace(origin=ORIGIN, oauth_client_id=None),
        smoke=SimpleNamespace(min_studies=2, browser=False),
    )
    result = run_blueprint_smoke(bp, emulator_url=emulator.url)
    assert list(result.stores) == ["primary", "empty"]
    assert result.stores["primary"].ok and not result.stores["empty"].ok and not result.ok
    assert result.browser is None
    doc = json.loads(result.to_json())
    assert doc["ok"] is False and doc["dicomweb"]["primary"]["ok"] is True and doc["browser"] is None
    assert "found 0 studies" in result.summary()


def _bp_for(env, stores, min_studies=2):
    from types import SimpleNamespace

    return SimpleNamespace(
        project=SimpleNamespace(id=env.project),
        dataset=SimpleNamespace(id="imaging", location=env.location),
        dicom_stores=stores,
        viewer=SimpleNamespace(origin=ORIGIN, oauth_client_id=None),
        smoke=SimpleNamespace(min_studies=min_studies, browser=False),
    )


def test_blueprint_smoke_store_without_import_needs_no_study(emulator, demo_studies):
    """A store without `import` is checked (QIDO + CORS) with no minimum; frame checks are skipped, not failed."""
    from types import SimpleNamespace

    from provision.running.smoke import run_blueprint_smoke

    env = ready_store(emulator, project="smoke-noimp", dataset="imaging", store="primary")
    store_demo(env, demo_studies[1])
    env.stores.create(parent=env.dataset, dicomStoreId="scratch", body={}).execute()
    bp = _bp_for(env, [SimpleNamespace(id="primary", import_=SimpleNamespace(uri="gs://b/**")),
                       SimpleNamespace(id="scratch", import_=None)])
    result = run_blueprint_smoke(bp, emulator_url=emulator.url)
    assert result.ok, result.summary()
    scratch = result.stores["scratch"]
    assert scratch.min_studies == 0 and scratch.check("cors").ok and not scratch.check("cors").skipped
    assert scratch.check("frame").skipped and "no import" in scratch.check("frame").detail
    assert "import step" not in result.summary()


def test_blueprint_smoke_retries_transient_faults(emulator, demo_studies):
    """429 / 5xx / resets on the smoke's GETs are retried under a short deadline, and said in the detail."""
    from types import SimpleNamespace

    from provision.emulator.faults import Faults
    from provision.running.smoke import run_blueprint_smoke

    env = ready_store(emulator, project="smoke-faults", dataset="imaging", store="primary")
    store_demo(env, demo_studies[1])
    emulator.world.faults = Faults.parse("transient=0.3", 4)
    bp = _bp_for(env, [SimpleNamespace(id="primary", import_=SimpleNamespace(uri="gs://b/**"))])
    result = run_blueprint_smoke(bp, emulator_url=emulator.url)
    emulator.world.faults = Faults.parse(None)
    assert result.ok, result.summary()
    assert any("retr" in c.detail for c in result.stores["primary"].checks), result.summary()
