"""Refused before any write (DESIGN §4): what Google would refuse halfway through apply is found at plan
and refused with the blueprint's FILE:LINE:COL, exit 2, and not one write request in the emulator's
--record. Through the CLI, as a user runs it, against a real emulator over HTTP."""
from __future__ import annotations

import json

import requests
from typer.testing import CliRunner

from emulator_helpers import CONTROL, create_project
from provision.cli import app
from provision.gcp.target import Target
from provision.running import lifecycle
from test_apply_support import BILLING, ORG, blueprint_dict, load, records, write_dicom, writes


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def line_col(path, needle: str, at: str | None = None) -> str:
    """`LINE:COL` of `at` (default: `needle`) on the first line holding `needle` (1-based), to hold messages
    to the real position."""
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return f"{n}:{line.index(at or needle) + 1}"
    raise AssertionError(f"{needle!r} not in {path}")


def put_policy(url: str, parent: str, constraint: str, spec: dict) -> None:
    r = requests.post(f"{url}/v2/{parent}/policies", json={"name": f"{parent}/policies/{constraint}", "spec": spec},
                      timeout=10)
    assert r.status_code == 200, r.text


def test_a_typo_on_a_new_project_is_refused_at_its_line_before_any_write(emulator_factory, tmp_path):
    """The issue's walk: a new project, billing, a bucket with 2 studies to upload, `us-centrall`."""
    rec = tmp_path / "rec.jsonl"
    emu = emulator_factory(record=rec)
    data = tmp_path / "data"
    write_dicom(data, studies=2)
    bp = load(tmp_path, blueprint_dict("ohif-typo-new", data,
                                       dataset={"id": "imaging", "location": "us-centrall", "time_zone": "UTC"}))
    assert run("validate", str(bp.source)).exit_code == 0
    planned = run("plan", str(bp.source), "--emulator", emu.url)
    assert planned.exit_code == 2, planned.output
    where = f"{bp.source}:{line_col(bp.source, 'us-centrall')}"
    assert f"{where}: dataset.location: us-centrall is not a Cloud Healthcare location" in planned.output
    assert "did you mean us-central1?" in planned.output and "provision's list" in planned.output
    assert "Traceback" not in planned.output
    applied = run("apply", str(bp.source), "--emulator", emu.url, "--yes", "--json")
    assert applied.exit_code == 2, applied.output
    doc = json.loads(applied.stdout)
    assert doc["exit_code"] == 2 and "did you mean us-central1" in doc["results"][0]["error"]
    assert writes(records(rec)) == []   # not the project, not billing, not the bucket, not one upload


def test_an_eu_only_organization_refuses_us_locations_at_plan(emulator_factory, tmp_path):
    rec = tmp_path / "rec.jsonl"
    emu = emulator_factory(record=rec)
    put_policy(emu.url, ORG, "gcp.resourceLocations", {"rules": [{"values": {"allowedValues": ["in:eu-locations"]}}]})
    before = len(records(rec))
    bp = load(tmp_path, blueprint_dict("ohif-eu-only"))   # under ORG; bucket US, dataset us-central1
    planned = run("plan", str(bp.source), "--emulator", emu.url)
    assert planned.exit_code == 2, planned.output
    out = planned.output
    assert f"{bp.source}:{line_col(bp.source, 'us-central1')}: dataset.location: us-central1 (the Healthcare dataset) " \
           f"is outside the locations the organization policy gcp.resourceLocations allows on {ORG}" in out
    assert f"{bp.source}:{line_col(bp.source, 'location: US', 'US')}" in out and "(the DICOM bucket)" in out
    assert "allowed: in:eu-locations" in out
    after = records(rec)[before:]
    assert writes(after) == []
    assert any(r["path"] == f"/v2/{ORG}/policies/gcp.resourceLocations:getEffectivePolicy" for r in after)

    # In the EU, the same blueprint plans; an existing project under the organization is read directly.
    eu = load(tmp_path, blueprint_dict("ohif-eu-only", bucket={"name": "ohif-eu-only-dicom", "location": "EU"},
                                       dataset={"id": "imaging", "location": "europe-west4"},
                                       dicom_stores=[{"id": "primary"}], smoke={"min_studies": 0}), "eu.yaml")
    assert run("plan", str(eu.source), "--emulator", emu.url).exit_code == 0
    create_project(emu.url, "ohif-eu-there", parent=ORG)
    there = load(tmp_path, blueprint_dict("ohif-eu-there", bucket=None, dicom_stores=[{"id": "primary"}],
                                          smoke={"min_studies": 0}), "there.yaml")
    before = len(records(rec))
    refused = run("plan", str(there.source), "--emulator", emu.url)
    assert refused.exit_code == 2 and "us-central1 (the Healthcare dataset)" in refused.output
    assert any("/v2/projects/ohif-eu-there/policies/" in r["path"] for r in records(rec)[before:])


def test_a_member_outside_the_allowed_customers_is_refused_at_its_line(emulator_factory, tmp_path):
    rec = tmp_path / "rec.jsonl"
    emu = emulator_factory(record=rec)
    put_policy(emu.url, ORG, "iam.allowedPolicyMemberDomains", {"rules": [{"values": {"allowedValues": ["C0emul8r1"]}}]})
    before = len(records(rec))
    bp = load(tmp_path, blueprint_dict("ohif-drs", bucket=None, smoke={"min_studies": 0}, dicom_stores=[
        {"id": "primary", "iam": [{"member": "group:radiology@partner.org", "roles": ["roles/healthcare.dicomViewer"]}]}]))
    planned = run("plan", str(bp.source), "--emulator", emu.url)
    assert planned.exit_code == 2, planned.output
    where = f"{bp.source}:{line_col(bp.source, 'group:radiology@partner.org')}"
    assert f"{where}: group:radiology@partner.org is outside the customers the organization policy " \
           "iam.allowedPolicyMemberDomains allows" in planned.output
    assert "C0emul8r1: example.com" in planned.output
    assert "group:radiology@example.com" not in planned.output   # the project grant's member is allowed
    assert writes(records(rec)[before:]) == []

    # The customer's second domain, once the emulator knows it, passes.
    r = requests.put(f"{emu.url}/_emulator/customers/C0partner", headers=CONTROL, timeout=10,
                     json={"domains": ["partner.org"], "organization": "organizations/999"})
    assert r.status_code == 200
    requests.patch(f"{emu.url}/v2/{ORG}/policies/iam.allowedPolicyMemberDomains", timeout=10, json={
        "name": f"{ORG}/policies/iam.allowedPolicyMemberDomains",
        "spec": {"rules": [{"values": {"allowedValues": ["C0emul8r1", "C0partner"]}}]}}).raise_for_status()
    assert run("plan", str(bp.source), "--emulator", emu.url).exit_code == 0


def test_without_permission_to_read_policies_plan_notes_it_and_goes_on(emulator_factory, tmp_path):
    owner = "user:owner@example.com"
    emu = emulator_factory(enforce_iam=True, record=tmp_path / "rec.jsonl")
    for resource, role in ((ORG, "roles/resourcemanager.projectCreator"), (f"billingAccounts/{BILLING}", "roles/billing.user")):
        r = requests.put(f"{emu.url}/_emulator/policies/{resource}", headers=CONTROL, timeout=10,
                         json={"bindings": [{"role": role, "members": [owner]}]})
        assert r.status_code == 200
    bp = load(tmp_path, blueprint_dict("ohif-no-read", bucket=None, dicom_stores=[{"id": "primary"}]))
    plan = lifecycle.plan(bp, Target(emulator=emu.url, token=f"emulator:{owner}"))
    assert plan.step("project").action == "create"
    assert any(f"organization policies not checked: you may not read them on {ORG}" in n
               and "roles/orgpolicy.policyViewer" in n for n in plan.notes), plan.notes


def test_a_new_project_in_a_folder_inherits_the_organizations_policy(emulator_factory, tmp_path):
    rec = tmp_path / "rec.jsonl"
    emu = emulator_factory(record=rec)
    r = requests.put(f"{emu.url}/_emulator/folders/777", json={"parent": ORG}, headers=CONTROL, timeout=10)
    assert r.status_code == 200
    put_policy(emu.url, ORG, "gcp.resourceLocations", {"rules": [{"values": {"allowedValues": ["in:us-locations"]}}]})
    before = len(records(rec))
    project = {"id": "ohif-in-folder", "parent": "folders/777", "billing_account": BILLING}
    bp = load(tmp_path, blueprint_dict("ohif-in-folder", bucket=None, dicom_stores=[{"id": "primary"}],
                                       smoke={"min_studies": 0}, project=project,
                                       dataset={"id": "imaging", "location": "europe-west4"}))
    planned = run("plan", str(bp.source), "--emulator", emu.url)
    assert planned.exit_code == 2, planned.output
    assert "europe-west4 (the Healthcare dataset) is outside the locations the organization policy " \
           "gcp.resourceLocations allows on folders/777; allowed: in:us-locations" in planned.output
    after = records(rec)[before:]
    assert writes(after) == [] and any(x["path"].startswith("/v2/folders/777/policies/") for x in after)
    us = load(tmp_path, blueprint_dict("ohif-in-folder", bucket=None, dicom_stores=[{"id": "primary"}],
                                       smoke={"min_studies": 0}, project=project), "us.yaml")   # us-central1
    assert run("plan", str(us.source), "--emulator", emu.url).exit_code == 0


def test_in_a_fleet_the_refused_blueprint_is_its_own_outcome(emulator, tmp_path):
    good = load(tmp_path, blueprint_dict("ohif-fleet-good", bucket=None, dicom_stores=[{"id": "primary"}],
                                         smoke={"min_studies": 0}), "good.yaml")
    load(tmp_path, blueprint_dict("ohif-fleet-typo", bucket=None, dicom_stores=[{"id": "primary"}],
                                  smoke={"min_studies": 0}, dataset={"id": "imaging", "location": "europe-wset4"}),
         "typo.yaml")
    planned = run("plan", str(tmp_path), "--emulator", emulator.url, "--json")
    assert planned.exit_code == 2, planned.output
    doc = json.loads(planned.stdout)
    by_project = {r["project"]: r for r in doc["results"]}
    assert by_project["ohif-fleet-good"]["ok"] and by_project["ohif-fleet-good"]["plan"]["changes"] > 0
    assert "did you mean europe-west4" in by_project["ohif-fleet-typo"]["error"]
    assert str(good.source) not in by_project["ohif-fleet-typo"]["error"]


def test_a_bucket_opt_out_the_organization_forbids_is_refused_at_its_key(emulator_factory, tmp_path):
    """`bucket.uniform_access: false` / `public_access_prevention: inherited` where the organization enforces
    storage.uniformBucketLevelAccess / storage.publicAccessPrevention: refused at plan, nothing written."""
    rec = tmp_path / "rec.jsonl"
    emu = emulator_factory(record=rec)
    put_policy(emu.url, ORG, "storage.uniformBucketLevelAccess", {"rules": [{"enforce": True}]})
    put_policy(emu.url, ORG, "storage.publicAccessPrevention", {"rules": [{"enforce": True}]})
    before = len(records(rec))
    bp = load(tmp_path, blueprint_dict("ohif-bucket-optout", bucket={
        "name": "ohif-bucket-optout-dicom", "location": "US", "create": True,
        "uniform_access": False, "public_access_prevention": "inherited"}))
    planned = run("plan", str(bp.source), "--emulator", emu.url)
    assert planned.exit_code == 2, planned.output
    assert (f"{bp.source}:{line_col(bp.source, 'uniform_access', 'false')}: bucket.uniform_access: false, but the organization "
            f"policy storage.uniformBucketLevelAccess is enforced on {ORG}") in planned.output
    assert (f"{bp.source}:{line_col(bp.source, 'public_access_prevention', 'inherited')}: bucket.public_access_prevention: "
            "inherited, but the organization policy storage.publicAccessPrevention is enforced") in planned.output
    assert writes(records(rec)[before:]) == []

    # Without the opt-outs the same blueprint plans: provision's defaults satisfy both constraints.
    ok = load(tmp_path, blueprint_dict("ohif-bucket-optout", bucket={
        "name": "ohif-bucket-optout-dicom", "location": "US", "create": True},
        dicom_stores=[{"id": "primary"}], smoke={"min_studies": 0}), "ok.yaml")
    assert run("plan", str(ok.source), "--emulator", emu.url).exit_code == 0


def test_a_no_op_re_apply_reads_no_policy_and_a_change_is_still_checked(emulator_factory, tmp_path):
    """Policies refuse writes: a plan that writes nothing reads none (Org Policy reads are quota a fleet
    waits for), and the bucket constraints are read only for a blueprint that turns their protection
    off. The next change is checked again: a member outside the allowed customers is refused."""
    rec = tmp_path / "rec.jsonl"
    emu = emulator_factory(record=rec)
    put_policy(emu.url, ORG, "iam.allowedPolicyMemberDomains", {"rules": [{"values": {"allowedValues": ["C0emul8r1"]}}]})
    grant = {"member": "group:radiology@example.com", "roles": ["roles/healthcare.dicomViewer"]}
    data = blueprint_dict("ohif-noop-policy", bucket=None, smoke={"min_studies": 0},
                          dicom_stores=[{"id": "primary", "iam": [grant]}])
    bp = load(tmp_path, data)

    def policies_read(since: int) -> list[str]:
        return sorted(r["path"].rsplit("/", 1)[1] for r in records(rec)[since:] if r["api"] == "orgpolicy")

    before = len(records(rec))
    first = run("apply", str(bp.source), "--emulator", emu.url, "--yes", "--no-smoke")
    assert first.exit_code == 0, first.output
    assert policies_read(before) == ["gcp.resourceLocations:getEffectivePolicy",
                                     "iam.allowedPolicyMemberDomains:getEffectivePolicy"]

    before = len(records(rec))
    again = run("apply", str(bp.source), "--emulator", emu.url, "--yes", "--no-smoke")
    assert again.exit_code == 0 and "no changes" in again.output, again.output
    assert policies_read(before) == [] and writes(records(rec)[before:]) == []

    data["dicom_stores"][0]["iam"].append({"member": "group:radiology@partner.org",
                                           "roles": ["roles/healthcare.dicomViewer"]})
    changed = load(tmp_path, data, "changed.yaml")
    before = len(records(rec))
    refused = run("apply", str(changed.source), "--emulator", emu.url, "--yes", "--no-smoke")
    assert refused.exit_code == 2, refused.output
    assert "group:radiology@partner.org is outside the customers the organization policy " \
           "iam.allowedPolicyMemberDomains allows" in refused.output
    assert "iam.allowedPolicyMemberDomains:getEffectivePolicy" in policies_read(before)
    assert writes(records(rec)[before:]) == []
