"""Healthcare locations come from the target, not from a list in the code.

Validation checks the form of `dataset.location` only; plan reads `projects.locations.list` of the
target (when the project exists and Healthcare is enabled; otherwise provision's own dated list decides)
and refuses a location it does not offer, naming the nearest ones, before any write (exit 2). The emulator answers Google's list (reference/google-evidence.md §4.3).
Everything here runs against a real emulator over HTTP, through the CLI where a user would.
"""
from __future__ import annotations

import json

import requests
from googleapiclient.errors import HttpError
from typer.testing import CliRunner

from emulator_helpers import create_project, healthcare
from provision.running import lifecycle
from provision.cli import app
from provision.gcp.context import Ctx
from provision.gcp.target import Target
from provision.checks.locations import SHIPPED, SHIPPED_AS_OF
from provision.resources import dataset
from test_apply_support import BILLING, blueprint_dict, load, records, writes

# reference/google-evidence.md §4.3 (Google's locations page, 2026-04-08): 27 regions plus us and eu.
EVIDENCE_REGIONS = (
    "northamerica-northeast1 northamerica-northeast2 us-central1 us-east1 us-east4 us-west1 us-west2 us-west3 "
    "southamerica-east1 asia-east1 asia-east2 asia-northeast1 asia-northeast2 asia-northeast3 asia-south1 "
    "asia-southeast1 asia-southeast2 australia-southeast1 australia-southeast2 europe-north1 europe-west2 "
    "europe-west3 europe-west4 europe-west6 me-west1 me-central1 me-central2"
).split()
EVIDENCE = EVIDENCE_REGIONS + ["us", "eu"]


def test_the_shipped_list_is_the_evidence():
    assert list(SHIPPED) == EVIDENCE


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def blueprint(tmp_path, project_id: str, location: str, name: str = "bp.yaml"):
    """A small blueprint on an existing project (no parent, no bucket): only the dataset matters here."""
    data = blueprint_dict(project_id, None, bucket=None, dicom_stores=[{"id": "primary"}],
                          dataset={"id": "imaging", "location": location, "time_zone": "UTC"},
                          project={"id": project_id, "billing_account": BILLING}, smoke={"min_studies": 0})
    return load(tmp_path, data, name)


def location_reads(recs: list[dict], project_id: str) -> list[dict]:
    return [r for r in recs if r["method"] == "GET" and r["path"] == f"/v1/projects/{project_id}/locations"]


def test_typo_passes_validate_but_plan_fails_naming_the_nearest(emulator_factory, tmp_path):
    rec = tmp_path / "rec.jsonl"
    emu = emulator_factory(record=rec)
    create_project(emu.url, "ohif-loc-typo")
    bp = blueprint(tmp_path, "ohif-loc-typo", "us-centrall")
    checked = run("validate", str(bp.source))
    assert checked.exit_code == 0, checked.output
    before = len(records(rec))
    planned = run("plan", str(bp.source), "--emulator", emu.url)
    assert planned.exit_code == 2, planned.output   # a blueprint mistake, as validate's: exit 2
    out = planned.output
    assert "us-centrall is not a Cloud Healthcare location of project ohif-loc-typo" in out
    assert "did you mean us-central1" in out and "dataset.location" in out and str(bp.source) in out
    assert "europe-west4" in out   # the whole list the target offers follows the nearest ones
    assert "Traceback" not in out
    after = records(rec)[before:]
    assert writes(after) == []     # nothing changed
    listed = location_reads(after, "ohif-loc-typo")
    assert listed and all(r["status"] == 200 for r in listed)

    as_json = run("plan", str(bp.source), "--emulator", emu.url, "--json")
    assert as_json.exit_code == 2 and "us-central1" in as_json.output


def test_unsupported_region_is_refused_and_a_zone_never_gets_that_far(emulator, tmp_path):
    create_project(emulator.url, "ohif-loc-ew1")
    bp = blueprint(tmp_path, "ohif-loc-ew1", "europe-west1")   # a Google region, but not a Healthcare one
    planned = run("plan", str(bp.source), "--emulator", emulator.url)
    assert planned.exit_code == 2, planned.output
    assert "europe-west1 is not a Cloud Healthcare location" in planned.output
    assert "did you mean" in planned.output and "europe-west2" in planned.output
    zone = tmp_path / "zone.yaml"
    zone.write_text(bp.source.read_text().replace("europe-west1", "europe-west4-a"))
    refused = run("plan", str(zone), "--emulator", emulator.url)
    assert refused.exit_code == 2 and "that is a zone" in refused.output
    assert "did you mean 'europe-west4'" in refused.output


def test_offered_region_and_multi_region_plan_fine_after_reading_the_list(emulator_factory, tmp_path):
    rec = tmp_path / "rec.jsonl"
    emu = emulator_factory(record=rec)
    create_project(emu.url, "ohif-loc-ok")
    for location in ("europe-west4", "us"):
        bp = blueprint(tmp_path, "ohif-loc-ok", location, f"{location}.yaml")
        before = len(records(rec))
        planned = run("plan", str(bp.source), "--emulator", emu.url, "--json")
        assert planned.exit_code == 0, planned.output
        doc = json.loads(planned.stdout)["results"][0]["plan"]
        step = next(s for s in doc["steps"] if s["id"] == "dataset")
        assert step["resource"] == f"projects/ohif-loc-ok/locations/{location}/datasets/imaging"
        assert len(location_reads(records(rec)[before:], "ohif-loc-ok")) == 1


def test_emulator_serves_googles_list_and_plan_reads_every_page(emulator_factory, tmp_path):
    rec = tmp_path / "rec.jsonl"
    emu = emulator_factory(record=rec)
    create_project(emu.url, "ohif-loc-list")
    raw = requests.get(f"{emu.url}/v1/projects/ohif-loc-list/locations", timeout=10).json()
    assert list(raw) == ["locations"]   # one page: no nextPageToken
    assert [loc["locationId"] for loc in raw["locations"]] == EVIDENCE and len(EVIDENCE) == 29
    for loc in raw["locations"]:
        assert loc["name"] == f"projects/ohif-loc-list/locations/{loc['locationId']}"
        assert set(loc) <= {"name", "locationId", "displayName", "labels", "metadata"}   # Location (healthcare.v1)

    before = len(records(rec))
    got = dataset.read_locations(Ctx(Target(emulator=emu.url)), "ohif-loc-list", page_size=4)
    assert got == EVIDENCE
    pages = location_reads(records(rec)[before:], "ohif-loc-list")
    assert len(pages) == 8 and pages[0]["query"]["pageSize"] == ["4"] and "pageToken" in pages[-1]["query"]

    # A dataset in a location outside the list fails at create, as on Google: 400 INVALID_ARGUMENT.
    try:
        healthcare(emu.url).projects().locations().datasets().create(
            parent="projects/ohif-loc-list/locations/us-centrall", datasetId="d", body={}).execute()
    except HttpError as exc:
        err = json.loads(exc.content)["error"]
        assert exc.status_code == 400 and err["status"] == "INVALID_ARGUMENT" and "us-centrall" in err["message"]
    else:
        raise AssertionError("the emulator created a dataset in a location Google does not offer")


def test_new_project_or_healthcare_off_is_checked_against_the_shipped_list(emulator_factory, tmp_path):
    """No list to ask for (the project does not exist, or its Healthcare API is off): provision's own
    dated list decides, before any write, and the message says which list it was."""
    rec = tmp_path / "rec.jsonl"
    emu = emulator_factory(record=rec)
    new = blueprint(tmp_path, "ohif-loc-new", "us-centrall", "new.yaml")   # the project does not exist yet
    planned = run("plan", str(new.source), "--emulator", emu.url)
    assert planned.exit_code == 2, planned.output
    assert "did you mean us-central1" in planned.output and "provision's list" in planned.output
    assert f"{new.source}:" in planned.output and "Traceback" not in planned.output
    assert writes(records(rec)) == [] and location_reads(records(rec), "ohif-loc-new") == []

    create_project(emu.url, "ohif-loc-off", enable=())                   # exists, Healthcare not enabled yet
    off = blueprint(tmp_path, "ohif-loc-off", "us-centrall", "off.yaml")
    before = len(records(rec))
    planned = run("plan", str(off.source), "--emulator", emu.url)
    assert planned.exit_code == 2, planned.output
    assert "provision's list" in planned.output and "did you mean us-central1" in planned.output
    reads = location_reads(records(rec)[before:], "ohif-loc-off")
    assert reads and reads[-1]["status"] == 403   # SERVICE_DISABLED: the shipped list decides instead
    assert writes(records(rec)[before:]) == []

    fine = blueprint(tmp_path, "ohif-loc-new", "europe-west4", "fine.yaml")
    plan = lifecycle.plan(fine, Target(emulator=emu.url))
    assert plan.step("dataset").action == "create" and plan.step("project").action == "create"
    assert any("checked against provision's list" in n and SHIPPED_AS_OF in n for n in plan.notes)


def test_destroy_does_not_check_the_location(emulator_factory, tmp_path):
    rec = tmp_path / "rec.jsonl"
    emu = emulator_factory(record=rec)
    create_project(emu.url, "ohif-loc-gone")
    bp = blueprint(tmp_path, "ohif-loc-gone", "us-centrall")
    before = len(records(rec))
    destroyed = run("destroy", str(bp.source), "--emulator", emu.url, "--yes")
    assert destroyed.exit_code == 0, destroyed.output
    assert location_reads(records(rec)[before:], "ohif-loc-gone") == []


def test_an_existing_dataset_is_not_checked_and_no_list_is_named(emulator_factory, tmp_path):
    """Once the dataset exists where the blueprint says, Google offers its location: the plan asks for
    no list and says nothing of provision's shipped one (a note saying so misled users after apply)."""
    emu = emulator_factory()
    create_project(emu.url, "ohif-loc-there")
    bp = blueprint(tmp_path, "ohif-loc-there", "us-central1")
    target = Target(emulator=emu.url)
    lifecycle.apply(bp, target)
    plan = lifecycle.plan(bp, target)
    assert not plan.has_changes
    assert not [n for n in plan.notes if "provision's list" in n or "checked against" in n], plan.notes
