"""Browser smoke: the real OHIF viewer (@ohif/app from the cache) in Debian's headless Chromium,
against the emulator holding the demo studies.

These run in `make test` and CI (the Makefile installs chromium and fetches the viewer). They are
skipped only when /usr/bin/chromium is absent, and say so loudly.
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pydicom
import pytest
import requests
from PIL import Image

from emulator_helpers import CONTROL, ready_store
from provision.demo.studies import write_demo_studies
from provision.errors import ProvisionError
from provision.checks.browser import run_browser_smoke
from provision.checks.browser_chromium import chromium_args
from provision.ohif.config import render_config
from provision.running import output
from browser_marks import DRIVES_CHROMIUM

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "out" / "smoke"

pytestmark = DRIVES_CHROMIUM


@pytest.fixture(scope="session")
def viewer_dist():
    from provision.ohif.fetch import ensure_viewer

    return ensure_viewer()  # fetched once by `make test`; a clear ProvisionError if npm cannot


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    studies = write_demo_studies(tmp_path_factory.mktemp("demo-data"))
    return studies, [pydicom.dcmread(p) for s in studies for p in s.files]


def blueprint_for(env, store_id: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(
        project=SimpleNamespace(id=env.project),
        dataset=SimpleNamespace(id=env.dataset_id, location=env.location),
        dicom_stores=[SimpleNamespace(id=store_id or env.store_id)],
        viewer=SimpleNamespace(origin="http://127.0.0.1:3000", oauth_client_id=None),
    )


def stored_demo_env(emu, datasets, **kw):
    env = ready_store(emu, project=kw.pop("project", "browser-demo"), dataset="imaging", store="primary", **kw)
    client = env.dicomweb
    for i in range(0, len(datasets), 32):
        client.store_instances(datasets[i:i + 32])
    return env


def expected(studies) -> list[dict]:
    return [{"patient_name": s.patient_name_ohif, "study_uid": s.study_uid} for s in studies]


def keep(name: str, report) -> None:
    (OUT / name).mkdir(parents=True, exist_ok=True)
    (OUT / name / "report.json").write_text(report.to_json() + "\n")
    print("\n" + report.summary())


def test_missing_study_is_named(emulator, demo, viewer_dist):
    studies, datasets = demo
    env = stored_demo_env(emulator, datasets)
    config = render_config(blueprint_for(env), emulator_url=emulator.url)
    ghost = {"patient_name": "Ghost, Patient", "study_uid": "2.25.12345"}
    report = run_browser_smoke(config, expected_studies=expected(studies) + [ghost], out_dir=OUT / "missing-study",
                               emulator_host=emulator.url, dist=viewer_dist, timeout_s=45)
    keep("missing-study", report)
    assert not report.ok
    (problem,) = report.problems
    assert "'Ghost, Patient' (2.25.12345) is missing" in problem
    assert "did not return it" in problem and "'Phantom, CT'" in problem
    assert report.external_requests == []


def test_wrong_store_path_fails_clearly(emulator, demo, viewer_dist):
    studies, datasets = demo
    env = stored_demo_env(emulator, datasets[:2])
    config = render_config(blueprint_for(env, store_id="primry"), emulator_url=emulator.url)
    report = run_browser_smoke(config, expected_studies=expected(studies[:1]), out_dir=OUT / "wrong-store",
                               emulator_host=emulator.url, dist=viewer_dist, timeout_s=45)
    keep("wrong-store", report)
    assert not report.ok
    assert "study list: GET " in report.problems[0] and "/dicomStores/primry/dicomWeb/studies?" in report.problems[0]
    assert "answered 403" in report.problems[0] and "the store path is wrong" in report.problems[0]
    assert report.external_requests == []
    assert any(Path(p).name == "failure.png" for p in report.screenshots)


def test_nothing_leaves_the_machine(emulator, demo, viewer_dist):
    """A data source on another host is blocked in the browser itself and reported, with no wait."""
    studies, _ = demo
    env = ready_store(emulator, project="browser-leak", dataset="imaging", store="primary")
    config = render_config(blueprint_for(env), emulator_url="http://dicomweb.example.org")
    report = run_browser_smoke(config, expected_studies=expected(studies[:1]), out_dir=OUT / "external",
                               emulator_host=emulator.url, dist=viewer_dist, timeout_s=45)
    assert not report.ok
    assert any("dicomweb.example.org" in r for r in report.external_requests)
    assert any("left the machine" in p for p in report.problems)
    assert any("failed in the browser" in p for p in report.problems)
    assert report.timings["total"] < 30


def test_token_mode_with_enforced_iam(emulator_factory, demo, viewer_dist):
    """The viewer takes a token from ?token= (how the smoke drives it on Google Cloud): a member with
    roles/healthcare.dicomViewer on the store sees the studies and the image, through real CORS preflights."""
    studies, datasets = demo
    emu = emulator_factory(enforce_iam=True)
    owner, viewer = "user:ana@example.com", "user:vic@example.com"
    requests.put(f"{emu.url}/_emulator/policies/organizations/1", json={"bindings": [
        {"role": "roles/resourcemanager.projectCreator", "members": [owner]}]}, timeout=10, headers=CONTROL).raise_for_status()
    requests.put(f"{emu.url}/_emulator/policies/billingAccounts/012345-6789AB-CDEF01", json={"bindings": [
        {"role": "roles/billing.user", "members": [owner]}]}, timeout=10, headers=CONTROL).raise_for_status()
    env = stored_demo_env(emu, datasets, project="browser-iam", member=owner, parent="organizations/1")
    env.stores.setIamPolicy(resource=env.store, body={"policy": {"bindings": [
        {"role": "roles/healthcare.dicomViewer", "members": [viewer]}]}}).execute()
    config = render_config(blueprint_for(env), emulator_url=emu.url)
    token = f"emulator:{viewer}"
    report = run_browser_smoke(config, expected_studies=expected(studies), token=token, out_dir=OUT / "token",
                               emulator_host=emu.url, dist=viewer_dist)
    keep("token", report)
    assert report.ok, report.summary()
    assert token not in report.to_json()


def test_chromium_flags():
    online = chromium_args(offline=False)
    assert {"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"} <= set(online)
    assert not any(a.startswith(("--proxy-server", "--host-resolver-rules")) for a in online)
    offline = chromium_args(offline=True)
    assert "--proxy-server=http://127.0.0.1:9" in offline
    assert any(a.startswith("--host-resolver-rules=MAP * ~NOTFOUND") and "EXCLUDE 127.0.0.1" in a for a in offline)


def test_missing_chromium_is_a_clear_error(tmp_path):
    with pytest.raises(ProvisionError, match="is not installed"):
        run_browser_smoke("window.config = {};", expected_studies=[{"patient_name": "A, B"}],
                          chromium=str(tmp_path / "no-chromium"), out_dir=tmp_path)


def test_blank_image_is_reported(emulator, demo, viewer_dist):
    """A study whose pixels are all air draws a black viewport: the smoke says the canvas is blank."""
    import copy

    studies, datasets = demo
    ct = [copy.deepcopy(ds) for ds in datasets if ds.StudyInstanceUID == studies[0].study_uid][:4]
    for ds in ct:
        ds.PixelData = bytes(len(ds.PixelData))  # stored 0 = -1024 HU: black in both windows
    env = stored_demo_env(emulator, ct, project="browser-blank")
    config = render_config(blueprint_for(env), emulator_url=emulator.url)
    report = run_browser_smoke(config, expected_studies=expected(studies[:1]), out_dir=OUT / "blank",
                               emulator_host=emulator.url, dist=viewer_dist, timeout_s=45)
    keep("blank", report)
    assert not report.ok
    (problem,) = report.problems
    assert "viewport canvas is blank" in problem and studies[0].study_uid in problem
    assert report.timings["image_drawn"] < 15  # decided once the render settles, not at the 45 s deadline


def test_blueprint_smoke_with_browser_lists_and_draws_the_demo_studies_offline(emulator, demo, viewer_dist):
    """What `provision smoke --browser` runs: DICOMweb on every store, then the viewer on the first, with no
    token (an emulator that does not check IAM): both demo studies listed, an image drawn, nothing external."""
    from provision.running.smoke import run_blueprint_smoke

    studies, datasets = demo
    env = stored_demo_env(emulator, datasets, project="browser-bp")
    bp = blueprint_for(env)
    bp.smoke = SimpleNamespace(min_studies=2, browser=True)
    result = run_blueprint_smoke(bp, emulator_url=emulator.url, browser=True, out_dir=OUT / "pass")
    assert result.ok, result.summary()
    report = result.browser
    assert report is not None
    keep("pass", report)
    assert report.external_requests == []
    assert report.page_errors == []
    assert sorted(report.studies_shown) == ["Phantom, CT", "Phantom, MR"]   # the most recent studies, as listed
    page = report.canvas["page"]
    assert page["levels"] >= 16 and page["nonBlack"] >= 0.05
    shots = {Path(p).name: Path(p) for p in report.screenshots}
    assert set(shots) == {"study-list.png", "viewer.png", "viewport.png"}
    with Image.open(shots["viewport.png"]) as img:
        gray = img.convert("L")
        assert sum(1 for n in gray.histogram() if n) >= 16  # an image, not a blank canvas
    assert {"launch", "study_list", "first_frame", "image_drawn", "total"} <= set(report.timings)
    assert json.loads(report.to_json())["ok"] is True


def test_demo_browser_smoke_opens_the_idc_source_and_draws_an_image(tmp_path, viewer_dist):
    """`provision demo --browser` (the CLI prints `result.render()`; one run serves every assertion, the
    demo with a browser being the suite's costliest test): the browser opens the hosted viewer at its
    run.app URL through IAP and draws the image; then the viewer opens the IDC stand-in (the demo's
    second data source) with ?datasources=idc, lists its v24 studies and draws one of them."""
    from provision.demo.run import run_demo

    result = run_demo(out_dir=tmp_path / "out", browser=True)
    smoke = result.outcome.smoke
    assert result.outcome.ok and smoke.ok, smoke.summary()
    text = result.render()
    assert "browser smoke passed" in text
    assert "the hosted viewer at https://ohif-viewer-" in text and "0 request(s) carried a Google token" in text
    assert (tmp_path / "out" / "smoke" / "viewport.png").stat().st_size > 1000
    assert smoke.browser.ok and smoke.browser.data_source == ""
    idc = smoke.browser_sources["idc"]
    keep("source-idc", idc)
    assert idc.ok and idc.data_source == "idc"
    assert len(idc.studies_expected) == 3 and idc.studies_shown == idc.studies_expected  # the v24 studies
    assert not set(idc.studies_shown) & set(smoke.browser.studies_shown)  # not the default store's list
    assert "/viewer/idc?StudyInstanceUIDs=" in idc.viewer_url
    assert idc.canvas["page"]["levels"] >= 16 and idc.canvas["page"]["nonBlack"] >= 0.05  # drawn, not blank
    assert str(tmp_path / "out" / "smoke" / "source-idc" / "viewport.png") in idc.screenshots
    doc = smoke.to_dict()
    assert doc["browser_sources"]["idc"]["ok"] is True and "browser_sources_not_run" not in doc
    # the report of a real browser run is a document the --json schema describes, printed as built
    printed = output.envelope("smoke", [output.result("demo.yaml", "demo", smoke=doc)], 0)
    assert json.dumps(printed["results"][0]["smoke"], sort_keys=True) == json.dumps(doc, sort_keys=True)
    assert "browser smoke of data source idc passed" in text
