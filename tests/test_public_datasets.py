"""Public datasets and other teams' stores as read-only viewer sources (issue 13).

Everything runs against the real emulator over HTTP with the real client libraries: the
stand-ins at the real names (IDC's two releases, the NIH Chest X-ray store, its Requester Pays
bucket), the plan's access notes under --enforce-iam, the Requester Pays import, the OHIF config
evaluated in Node, and the DICOMweb smoke of every source.
"""
from __future__ import annotations

import pytest
import requests

from emulator_helpers import CONTROL
from provision.running import flow
from provision.running import lifecycle
from provision.errors import ProvisionError
from provision.gcp.target import Target
from provision.ohif.config import write_config
from test_apply_support import BILLING, ORG, blueprint_dict, load, records
from test_ohif_config import node_eval

IDC = "projects/nci-idc-data/locations/us-central1/datasets/idc"
NIH = "projects/chc-nih-chest-xray/locations/us-central1/datasets/nih-chest-xray/dicomStores/nih-chest-xray"
NIH_BUCKET = "gcs-public-data--healthcare-nih-chest-xray"
OWNER = "user:owner@example.com"


def seed_policy(emu, resource: str, bindings: list[dict]) -> None:
    r = requests.put(f"{emu.url}/_emulator/policies/{resource}", json={"bindings": bindings}, timeout=10,
                     headers=CONTROL)
    assert r.status_code == 200, r.text


def as_member(emu, member: str) -> Target:
    return Target(emulator=emu.url, token=f"emulator:{member}")


@pytest.fixture
def iam_emulator(emulator_factory, tmp_path):
    """--enforce-iam; OWNER may create projects under the organization and use the billing account."""
    emu = emulator_factory(enforce_iam=True, record=tmp_path / "rec.jsonl")
    seed_policy(emu, ORG, [{"role": "roles/resourcemanager.projectCreator", "members": [OWNER]}])
    seed_policy(emu, f"billingAccounts/{BILLING}", [{"role": "roles/billing.user", "members": [OWNER]}])
    return emu


def sources_blueprint(project_id: str, sources: list[dict], **over) -> dict:
    return blueprint_dict(project_id, bucket=None, dicom_stores=[{"id": "primary"}], viewer_sources=sources,
                          smoke={"min_studies": 0}, **over)


# ------------------------------------------------------------------ Requester Pays import


def test_requester_pays_import_is_billed_to_the_blueprints_project(emulator_factory, tmp_path):
    rec = tmp_path / "rec.jsonl"
    emu = emulator_factory(record=rec)
    target = Target(emulator=emu.url)
    uri = f"gs://{NIH_BUCKET}/dicom/**.dcm"
    bp = load(tmp_path, blueprint_dict("ohif-nih-copy", bucket=None, smoke={"min_studies": 2},
                                       dicom_stores=[{"id": "primary", "import": {"uri": uri}}]))
    first = lifecycle.plan(bp, target)     # the project does not exist yet: nothing can pay for a listing
    assert "Requester Pays" in first.step("import:primary").changes[0]
    assert "objects counted at apply" in first.step("import:primary").changes[0]
    result = lifecycle.apply(bp, target)
    assert {s.id: s.message for s in result.steps}["import:primary"] == "2 studies in the store"
    plan = lifecycle.plan(bp, target)
    assert not plan.has_changes
    note = next(n for n in plan.notes if n.startswith(f"gs://{NIH_BUCKET} is Requester Pays"))
    assert "project ohif-nih-copy is billed" in note and "2 matching object(s)" in note
    assert "userProject=ohif-nih-copy" in note
    # Every read of the bucket named the blueprint's project as its billing project; the import took none.
    reads = [r for r in records(rec) if f"/b/{NIH_BUCKET}" in r["path"]]
    assert reads and all(r["query"].get("userProject") == ["ohif-nih-copy"] for r in reads if r["status"] == 200)
    assert all(r["status"] in (200, 400) for r in reads)
    imports = [r for r in records(rec) if r["path"].endswith(":import")]
    assert imports and imports[0]["request"] == {"gcsSource": {"uri": uri}}


# ------------------------------------------------------------------ plan: resolution and access


def test_latest_idc_is_resolved_at_plan_and_named(emulator, tmp_path):
    target = Target(emulator=emulator.url)
    bp = load(tmp_path, sources_blueprint("ohif-idc-latest", [{"name": "idc", "idc": "latest"},
                                                              {"name": "idc23", "idc": 23}]))
    plan = lifecycle.plan(bp, target)
    latest = plan.step("source:idc")
    assert latest.action == "no-op" and latest.resource == f"{IDC}/dicomStores/idc-store-v24"
    assert "release v24, the latest of the 2 IDC publishes (v23, v24)" in latest.changes[0]
    assert plan.step("source:idc23").resource == f"{IDC}/dicomStores/idc-store-v23"
    doc = plan.to_json()
    assert [s["id"] for s in doc["steps"] if s["kind"] == "viewer-source"] == ["source:idc", "source:idc23"]
    pinned = flow.pinned(bp, target)
    assert [s.idc for s in pinned.viewer_sources] == ["v24", "v23"] and bp.viewer_sources[0].idc == "latest"


def test_latest_idc_that_cannot_be_listed_is_a_plan_error(emulator_factory, tmp_path):
    emu = emulator_factory(public_datasets=False)
    bp = load(tmp_path, sources_blueprint("ohif-idc-gone", [{"name": "idc", "idc": "latest"}]))
    with pytest.raises(ProvisionError, match=r"idc: latest` cannot be resolved.*403.*pin a release"):
        lifecycle.plan(bp, Target(emulator=emu.url))


def test_plan_notes_how_to_get_missing_access_and_writes_nothing_to_sources(iam_emulator, tmp_path):
    rec = tmp_path / "rec.jsonl"
    sources = [{"name": "nih", "public": "nih-chest-xray"}, {"name": "idc", "idc": "latest"},
               {"name": "teamb", "contact": "imaging-admins@team-b.example.com",
                "store": "projects/team-b-imaging/locations/us-central1/datasets/imaging/dicomStores/primary"}]
    bp = load(tmp_path, sources_blueprint("ohif-src-notes", sources))
    before = len(records(rec))
    plan = lifecycle.plan(bp, as_member(iam_emulator, OWNER))
    nih = next(n for n in plan.notes if n.startswith("viewer source nih:"))
    assert f"you ({OWNER}) lack healthcare.dicomStores.dicomWebRead on {NIH}" in nih
    assert "https://cloud.google.com/healthcare-api/docs/resources/public-datasets/nih-chest" in nih
    assert "provision writes nothing to project chc-nih-chest-xray" in nih
    assert not any(n.startswith("viewer source idc:") for n in plan.notes)   # any signed-in account may read IDC
    teamb = next(n for n in plan.notes if n.startswith("viewer source teamb:"))
    assert "imaging-admins@team-b.example.com" in teamb
    assert ("gcloud healthcare dicom-stores add-iam-policy-binding primary --project=team-b-imaging "
            f"--location=us-central1 --dataset=imaging --member={OWNER} --role=roles/healthcare.dicomViewer") in teamb
    assert any("the viewer's users need it" in n for n in plan.notes)
    # Reads only, and nothing at all sent to the sources' projects but reads.
    touched = [r for r in records(rec)[before:] if "nci-idc-data" in r["path"] or "chc-nih-chest-xray" in r["path"]]
    assert touched and all(r["method"] == "GET" or r["path"].endswith(":testIamPermissions") for r in touched)
    # Once the dataset's owners grant access, the note is gone.
    seed_policy(iam_emulator, NIH, [{"role": "roles/healthcare.dicomViewer", "members": [OWNER]}])
    again = lifecycle.plan(bp, as_member(iam_emulator, OWNER))
    assert not any(n.startswith("viewer source nih:") for n in again.notes)


# ------------------------------------------------------------------ config and smoke


def test_config_with_several_sources_evaluates_in_node(emulator, tmp_path):
    target = Target(emulator=emulator.url)
    sources = [{"name": "idc", "idc": "latest"}, {"name": "nih", "public": "nih-chest-xray"},
               {"name": "proxy", "public": "idc-proxy"},
               {"name": "teamb", "label": "Team B (read-only)",
                "store": "projects/team-b-imaging/locations/us-central1/datasets/imaging/dicomStores/primary"},
               {"name": "pacs", "dicomweb": "https://pacs.example.org/dicomWeb"}]
    bp = load(tmp_path, sources_blueprint("ohif-src-config", sources,
                                          viewer={"origin": "https://viewer.example.com",
                                                  "oauth_client_id": "123456789012-abc.apps.googleusercontent.com"}))
    with pytest.raises(ProvisionError, match="not resolved yet"):   # latest is never written unresolved
        write_config(bp, tmp_path / "unpinned.js")
    for label, url in (("emulator", emulator.url), ("google", None)):
        path = write_config(flow.pinned(bp, target), tmp_path / f"{label}.js", emulator_url=url)
        cfg = node_eval(path)
        assert cfg["defaultDataSourceName"] == "primary"
        by_name = {s["sourceName"]: s["configuration"] for s in cfg["dataSources"]}
        assert list(by_name) == ["primary", "idc", "nih", "proxy", "teamb", "pacs"]
        base = url or "https://healthcare.googleapis.com"
        assert by_name["idc"]["qidoRoot"] == f"{base}/v1/{IDC}/dicomStores/idc-store-v24/dicomWeb"
        assert by_name["nih"]["wadoRoot"] == f"{base}/v1/{NIH}/dicomWeb"
        assert by_name["proxy"]["qidoRoot"].startswith("https://proxy.imaging.datacommons.cancer.gov/current/")
        assert by_name["pacs"]["wadoUriRoot"] == "https://pacs.example.org/dicomWeb"
        assert by_name["idc"]["friendlyName"] == "NCI Imaging Data Commons v24 (public, read-only)"
        assert by_name["nih"]["friendlyName"] == "NIH Chest X-ray (public, read-only)"
        assert by_name["teamb"]["friendlyName"] == "Team B (read-only)"
        assert by_name["pacs"]["friendlyName"] == "pacs.example.org (read-only)"
        for name in ("idc", "nih", "proxy", "teamb", "pacs"):
            assert by_name[name]["dicomUploadEnabled"] is False and "configurationAPI" not in by_name[name]
        assert by_name["primary"]["dicomUploadEnabled"] is True
        assert ("configurationAPI" in by_name["primary"]) is (url is None)
        assert ("oidc" in cfg) is (url is None)


def test_dicomweb_smoke_runs_on_every_source(emulator, tmp_path):
    target = Target(emulator=emulator.url)
    bp = load(tmp_path, sources_blueprint("ohif-src-smoke", [{"name": "idc", "idc": "latest"},
                                                             {"name": "idc23", "idc": "v23"}]))
    lifecycle.apply(bp, target)
    report = flow.smoke(bp, target)
    assert report.ok, report.summary()
    assert set(report.stores) == {"primary", "source:idc", "source:idc23"}
    assert report.stores["source:idc"].studies_found == 3 and report.stores["source:idc23"].studies_found == 2
    assert report.stores["source:idc"].root.endswith("/idc-store-v24/dicomWeb")
    assert [c.name for c in report.stores["source:idc"].checks] == ["studies", "series", "series_metadata", "frame",
                                                                     "rendered", "cors"]
    assert "source:idc" in report.to_dict()["dicomweb"]


def test_source_smoke_under_enforced_iam_denies_with_how_to_get_access(iam_emulator, tmp_path, monkeypatch):
    owner = as_member(iam_emulator, OWNER)
    bp = load(tmp_path, sources_blueprint("ohif-src-deny", [{"name": "idc", "idc": "latest"},
                                                            {"name": "nih", "public": "nih-chest-xray"}]))
    lifecycle.apply(bp, owner)
    denied = flow.smoke(bp, owner)
    assert not denied.ok
    assert denied.stores["source:idc"].ok and denied.stores["primary"].ok
    nih = denied.stores["source:nih"]
    assert nih.check("studies").status == 403
    assert "How to get access to source nih" in nih.check("studies").detail
    assert "public-datasets/nih-chest" in nih.check("studies").detail

    # --browser: the denied source is "not run" with the reason, never silently skipped (no real browser here:
    # tests/test_browser.py drives one; this one records which data sources would be opened).
    from provision.checks import browser

    opened = []
    monkeypatch.setattr(browser, "run_browser_smoke", lambda config_js, *, data_source=None, **kw: (
        opened.append(data_source), browser.BrowserReport(data_source=data_source or ""))[1])
    with_browser = flow.smoke(bp, owner, browser=True, out_dir=tmp_path / "smoke")
    assert opened == ["idc"]  # the empty default store is not run either (it holds no study)
    assert not with_browser.ok and with_browser.browser_sources["idc"].ok
    assert "DICOMweb smoke of source nih failed" in with_browser.to_dict()["browser_sources_not_run"]["nih"]
    assert "browser smoke of data source nih NOT RUN" in with_browser.summary()
    seed_policy(iam_emulator, NIH, [{"role": "roles/healthcare.dicomViewer", "members": [OWNER]}])
    allowed = flow.smoke(bp, owner)
    assert allowed.ok, allowed.summary()
    assert allowed.stores["source:nih"].studies_found == 2


def test_plan_and_smoke_json_with_sources_meet_the_published_schema(emulator, tmp_path):
    from test_cli_contract import one_document, run

    path = tmp_path / "bp.yaml"
    load(tmp_path, sources_blueprint("ohif-src-json", [{"name": "idc", "idc": "latest"}]), "bp.yaml")
    plan = one_document(run("plan", str(path), "--json", "--emulator", emulator.url))
    step = next(s for r in plan["results"] for s in r["plan"]["steps"] if s["id"] == "source:idc")
    assert step["action"] == "no-op" and step["resource"].endswith("/idc-store-v24")
    assert one_document(run("apply", str(path), "--yes", "--json", "--emulator", emulator.url))["exit_code"] == 0
    smoke = one_document(run("smoke", str(path), "--json", "--emulator", emulator.url))
    assert smoke["results"][0]["smoke"]["dicomweb"]["source:idc"]["ok"] is True
    config = run("config", str(path), "--out", "-", "--emulator", emulator.url)
    assert config.exit_code == 0 and "idc-store-v24/dicomWeb" in config.stdout


def test_demo_shows_the_idc_stand_in_as_a_second_source(tmp_path):
    from provision.demo.run import run_demo

    result = run_demo(out_dir=tmp_path / "out")
    assert result.outcome.ok
    smoke = result.outcome.smoke
    assert set(smoke.stores) == {"primary", "source:idc"} and smoke.stores["source:idc"].studies_found == 3
    cfg = node_eval(result.outcome.config)
    assert [s["sourceName"] for s in cfg["dataSources"]] == ["primary", "idc"]
    assert cfg["defaultDataSourceName"] == "primary"
    assert cfg["dataSources"][1]["configuration"]["qidoRoot"].endswith(f"{IDC}/dicomStores/idc-store-v24/dicomWeb")
    assert "idc-store-v24/dicomWeb" in result.render()


def test_readme_worked_example_plans_as_it_says(iam_emulator, tmp_path):
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("### A worked example", 1)[1]
    text = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    path = tmp_path / "teaching.yaml"
    path.write_text(text)
    from provision.blueprint.load import load_blueprint

    bp = load_blueprint(path)
    seed_policy(iam_emulator, f"billingAccounts/{BILLING}", [{"role": "roles/billing.user",
                                                              "members": ["user:ana@example.com"]}])
    plan = lifecycle.plan(bp, as_member(iam_emulator, "user:ana@example.com"))
    shown = plan.render()
    for excerpt in ("the latest of the 2 IDC publishes (v23, v24)", "is Requester Pays (billing.requesterPays): project",
                    "viewer source nih: you (user:ana@example.com) lack healthcare.dicomStores.dicomWebRead",
                    "ask the store's owners (imaging-admins@team-b.example.com) to run: gcloud healthcare dicom-stores "
                    "add-iam-policy-binding primary --project=team-b-imaging"):
        assert excerpt in shown, excerpt
