"""Safe for patient data by default, end to end through the real clients against the emulator:
locked-down buckets (the blueprint's and the record's, the record in the dataset's region), Data
Access audit logs written with updateMask and owned like grants, a study read that `provision
audit` lists with its principal, opt-outs flagged in the plan, and no-op re-applies with zero writes."""
from __future__ import annotations

import json

import pytest
import requests
from typer.testing import CliRunner

from provision import cli
from provision.gcp.context import Ctx
from provision.gcp.target import Target
from provision.resources import audit_logs, iam
from provision.resources.record import bucket_for
from provision.running import audit, lifecycle, output
from test_apply_support import blueprint_dict, load, mark, records, write_dicom, writes

ALL = {(s, t) for s in audit_logs.SERVICES for t in audit_logs.LOG_TYPES}
OTHERS = {"service": "bigquery.googleapis.com",
          "auditLogConfigs": [{"logType": "DATA_READ", "exemptedMembers": ["user:batch@example.com"]}]}


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data"
    write_dicom(d, studies=2)
    return d


def policy(target: Target, pid: str) -> dict:
    return iam.project_io(Ctx(target), pid).read()


def set_configs(target: Target, pid: str, configs: list[dict]) -> None:
    """Another party's write of the project's audit configs (a compliance team's, say)."""
    io = iam.project_io(Ctx(target), pid, audit_logs.MASK)
    current = io.read()
    io.write(dict(current, auditConfigs=configs))


def test_both_buckets_are_locked_down_and_the_record_sits_in_the_datasets_region(emulator, tmp_path, data_dir):
    target = Target(emulator=emulator.url)
    bp = load(tmp_path, blueprint_dict("ohif-safe-bkt", data_dir))
    plan = lifecycle.plan(bp, target)
    assert "uniform bucket-level access on, public access prevention enforced" in plan.step("bucket").changes
    lifecycle.apply(bp, target)
    gcs = Ctx(target).target.storage()
    for name in ("ohif-safe-bkt-dicom", bucket_for("ohif-safe-bkt")):
        cfg = gcs.get_bucket(name).iam_configuration
        assert cfg.uniform_bucket_level_access_enabled is True, name
        assert cfg.public_access_prevention == "enforced", name
    assert gcs.get_bucket(bucket_for("ohif-safe-bkt")).location == "US-CENTRAL1"   # the dataset's, not US
    assert gcs.get_bucket("ohif-safe-bkt-dicom").location == "US"                  # as the blueprint says


def test_an_adopted_bucket_without_them_is_reported_and_changed_only_when_asked(emulator, tmp_path, data_dir):
    target = Target(emulator=emulator.url)
    lifecycle.apply(load(tmp_path, blueprint_dict("ohif-safe-adopt", data_dir)), target)
    gcs = Ctx(target).target.storage()
    open_bucket = gcs.create_bucket("ohif-safe-adopt-open", project="ohif-safe-adopt")   # made by someone else
    assert open_bucket.iam_configuration.public_access_prevention == "inherited"
    raw = blueprint_dict("ohif-safe-adopt", data_dir)
    raw["bucket"]["name"] = "ohif-safe-adopt-open"
    raw["dicom_stores"][0]["import"]["uri"] = "gs://ohif-safe-adopt-open/dicom/**.dcm"
    plan = lifecycle.plan(load(tmp_path, raw, "adopt.yaml"), target)
    step = plan.step("bucket")
    assert step.action == "no-op" and any("uniform bucket-level access is off" in d for d in step.drift)
    assert any("public access prevention is inherited" in d for d in step.drift)
    assert any("ohif-safe-adopt-open (not created by provision" in n for n in plan.notes)
    status = lifecycle.status(load(tmp_path, raw, "adopt.yaml"), target)
    assert next(r for r in status.resources if r["id"] == "bucket")["state"] == "drift"

    raw["bucket"]["uniform_access"] = True
    raw["bucket"]["public_access_prevention"] = "enforced"
    asked = load(tmp_path, raw, "asked.yaml")
    step = lifecycle.plan(asked, target).step("bucket")
    assert step.action == "update" and step.changes == ["uniform_access: False -> True",
                                                        "public_access_prevention: inherited -> enforced"]
    lifecycle.apply(asked, target)
    cfg = gcs.get_bucket("ohif-safe-adopt-open").iam_configuration
    assert cfg.uniform_bucket_level_access_enabled and cfg.public_access_prevention == "enforced"


def test_bucket_opt_outs_are_flagged_in_the_plan(emulator, tmp_path, data_dir):
    target = Target(emulator=emulator.url)
    raw = blueprint_dict("ohif-safe-optout", data_dir)
    raw["bucket"].update(uniform_access=False, public_access_prevention="inherited")
    plan = lifecycle.plan(load(tmp_path, raw), target)
    safety = [n for n in plan.notes if n.startswith("safety:")]
    assert any("bucket.uniform_access: false" in n for n in safety)
    assert any("bucket.public_access_prevention: inherited" in n for n in safety)
    lifecycle.apply(load(tmp_path, raw), target)
    cfg = Ctx(target).target.storage().get_bucket("ohif-safe-optout-dicom").iam_configuration
    assert not cfg.uniform_bucket_level_access_enabled and cfg.public_access_prevention == "inherited"


def test_audit_configs_are_written_others_kept_and_removed_only_when_provision_added_them(emulator_factory,
                                                                                         tmp_path, data_dir):
    rec = tmp_path / "rec.jsonl"
    emu = emulator_factory(record=rec)
    target = Target(emulator=emu.url)
    bp = load(tmp_path, blueprint_dict("ohif-safe-audit", data_dir))
    plan = lifecycle.plan(bp, target)
    assert any("log volume" in n and "costs money" in n for n in plan.notes)
    lifecycle.apply(bp, target)
    sets = [r for r in records(rec) if r["path"].endswith("ohif-safe-audit:setIamPolicy")
            and (r["request"] or {}).get("policy", {}).get("auditConfigs")]
    assert sets and all("auditConfigs" in r["request"]["updateMask"] for r in sets)
    assert audit_logs.present(policy(target, "ohif-safe-audit")) == ALL

    # another party's config arrives; a re-apply leaves it, and writes nothing at all
    set_configs(target, "ohif-safe-audit", policy(target, "ohif-safe-audit")["auditConfigs"] + [OTHERS])
    before = mark(rec)
    assert not lifecycle.apply(bp, target).changed
    assert writes(records(rec)[before:]) == []

    # a project grant written now sends bindings only: not the audit configs it read back, which a
    # write without updateMask would not set anyway (Google's default mask is bindings,etag)
    granted = blueprint_dict("ohif-safe-audit", data_dir)
    granted["iam"].append({"member": "user:ana@example.com", "roles": ["roles/serviceusage.serviceUsageConsumer"]})
    before = mark(rec)
    assert lifecycle.apply(load(tmp_path, granted, "granted.yaml"), target).changed
    grant_sets = [r for r in records(rec)[before:] if r["path"].endswith("ohif-safe-audit:setIamPolicy")]
    assert grant_sets and all("auditConfigs" not in r["request"]["policy"] for r in grant_sets), grant_sets

    # the blueprint turns them off: the plan flags it; what provision added goes, the other stays
    raw = blueprint_dict("ohif-safe-audit", data_dir)
    raw["audit_logs"] = {"data_access": False}
    off = load(tmp_path, raw, "off.yaml")
    plan = lifecycle.plan(off, target)
    assert any(n.startswith("safety: Data Access audit logs off") for n in plan.notes)
    assert plan.step("audit-logs").action == "delete"
    lifecycle.apply(off, target)
    assert policy(target, "ohif-safe-audit")["auditConfigs"] == [OTHERS]
    assert not lifecycle.apply(off, target).changed


def test_configs_that_were_there_before_provision_stay_when_the_blueprint_turns_them_off(emulator, tmp_path,
                                                                                         data_dir):
    target = Target(emulator=emulator.url)
    raw = blueprint_dict("ohif-safe-theirs", data_dir)
    raw["audit_logs"] = {"data_access": False}
    off = load(tmp_path, raw)
    lifecycle.apply(off, target)
    theirs = {"service": "healthcare.googleapis.com", "auditLogConfigs": [{"logType": "DATA_READ"}]}
    set_configs(target, "ohif-safe-theirs", [theirs])
    plan = lifecycle.plan(off, target)
    assert not plan.has_changes and any("provision did not turn on stay on" in n for n in plan.notes)
    assert policy(target, "ohif-safe-theirs")["auditConfigs"] == [theirs]


def test_a_study_read_is_an_audit_entry_that_provision_audit_lists_with_its_principal(emulator, tmp_path,
                                                                                      data_dir):
    target = Target(emulator=emulator.url)
    bp = load(tmp_path, blueprint_dict("ohif-safe-trail", data_dir))
    result = lifecycle.apply(bp, target)
    root = result.outputs["dicom_stores"]["primary"]["dicomweb"]
    ana = {"Authorization": "Bearer emulator:user:ana@example.com"}
    studies = requests.get(f"{root}/studies", headers=ana).json()
    uid = studies[0]["0020000D"]["Value"][0]
    got = requests.get(f"{root}/studies/{uid}", headers=dict(ana, Accept='multipart/related; type="application/dicom"'))
    assert got.status_code == 200
    requests.get(f"{root}/studies/{uid}/metadata", headers=ana).raise_for_status()

    report = audit.audit(bp, target, audit.parse_since("1h"))
    mine = [r for r in report.rows if r.principal == "ana@example.com"]
    assert {(r.action, r.store, r.study) for r in mine} >= {("RetrieveStudy", "primary", uid),
                                                            ("RetrieveStudyMetadata", "primary", uid),
                                                            ("SearchForStudies", "primary", "")}
    assert all(r.count == 1 and r.first == r.last for r in mine)

    out = CliRunner().invoke(cli.app, ["audit", str(bp.source), "--since", "1h", "--json", "--emulator",
                                       emulator.url])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    import jsonschema

    jsonschema.validate(doc, output.schema())
    rows = doc["results"][0]["audit"]["rows"]
    assert {"principal": "ana@example.com", "action": "RetrieveStudy", "store": "primary", "study": uid} in [
        {k: r[k] for k in ("principal", "action", "store", "study")} for r in rows]
    text = CliRunner().invoke(cli.app, ["audit", str(bp.source), "--emulator", emulator.url])
    assert "ana@example.com" in text.stdout and "RetrieveStudy" in text.stdout and uid in text.stdout


def test_no_entries_when_the_audit_logs_are_off(emulator, tmp_path, data_dir):
    target = Target(emulator=emulator.url)
    raw = blueprint_dict("ohif-safe-quiet", data_dir)
    raw["audit_logs"] = {"data_access": False}
    bp = load(tmp_path, raw)
    result = lifecycle.apply(bp, target)
    requests.get(f"{result.outputs['dicom_stores']['primary']['dicomweb']}/studies").raise_for_status()
    report = audit.audit(bp, target, audit.parse_since("1h"))
    assert report.rows == [] and report.entries == 0 and report.notes


def test_since_takes_durations_and_refuses_the_rest():
    assert audit.parse_since("7d").days == 7 and audit.parse_since("12h").seconds == 12 * 3600
    for bad in ("", "7", "seven days", "0d", "3y"):
        with pytest.raises(Exception, match="give a duration"):
            audit.parse_since(bad)


def test_an_exempted_member_is_drift_and_destroy_keeps_the_logs_while_data_is_kept(emulator, tmp_path, data_dir):
    target = Target(emulator=emulator.url)
    bp = load(tmp_path, blueprint_dict("ohif-safe-exempt", data_dir))
    lifecycle.apply(bp, target)
    configs = policy(target, "ohif-safe-exempt")["auditConfigs"]
    for cfg in configs:
        if cfg["service"] == "healthcare.googleapis.com":
            cfg["auditLogConfigs"][0]["exemptedMembers"] = ["user:quiet@example.com"]
    set_configs(target, "ohif-safe-exempt", configs)
    status = lifecycle.status(bp, target)
    row = next(r for r in status.resources if r["id"] == "audit-logs")
    assert row["state"] == "drift" and any("user:quiet@example.com is exempted" in d for d in row["details"])

    plan = lifecycle.destroy_plan(bp, target)            # the store holds studies: kept, and so are the logs
    assert any(k.startswith("audit-logs ") and "stay on while" in k for k in plan.kept)
    assert "audit-logs" not in [s.id for s in plan.steps]
    plan = lifecycle.destroy_plan(bp, target, delete_data=True)
    assert plan.steps[[s.id for s in plan.steps].index("audit-logs")].action == "delete"


def test_a_record_bucket_from_before_is_locked_down_and_its_location_noted(emulator, tmp_path, data_dir):
    target = Target(emulator=emulator.url)
    bp = load(tmp_path, blueprint_dict("ohif-safe-old", data_dir))
    lifecycle.apply(bp, target)
    gcs = Ctx(target).target.storage()
    name = bucket_for("ohif-safe-old")
    saved = gcs.bucket(name).blob("record.json").download_as_bytes()
    for blob in gcs.list_blobs(name, versions=True):
        blob.delete()
    gcs.bucket(name).delete()
    gcs.create_bucket(name, project="ohif-safe-old", location="US").blob("record.json").upload_from_string(saved)

    plan = lifecycle.plan(bp, target)                     # as an earlier provision left it: US, open
    step = plan.step("record")
    assert step.action == "update" and any(c.startswith(f"lock down gs://{name}") for c in step.changes)
    assert any(f"gs://{name} is in US, not in the dataset's location US-CENTRAL1" in n for n in plan.notes)
    lifecycle.apply(bp, target)
    cfg = gcs.get_bucket(name).iam_configuration
    assert cfg.uniform_bucket_level_access_enabled and cfg.public_access_prevention == "enforced"
    assert not lifecycle.apply(bp, target).changed


def test_reading_the_trail_takes_the_private_logs_viewer_role(emulator_factory, tmp_path, data_dir):
    emu = emulator_factory(enforce_iam=True)
    admin = "user:admin@example.com"
    for resource, role in (("organizations/123456789012", "roles/owner"),
                           ("billingAccounts/012345-6789AB-CDEF01", "roles/billing.user")):
        requests.put(f"{emu.url}/_emulator/policies/{resource}", json={"bindings": [
            {"role": role, "members": [admin]}]}, headers={"X-Emulator-Control": "1"}).raise_for_status()
    raw = blueprint_dict("ohif-safe-private", data_dir)
    raw["iam"].append({"member": "user:auditor@example.com", "roles": ["roles/logging.viewer"]})
    raw["iam"].append({"member": "user:officer@example.com", "roles": ["roles/logging.privateLogViewer"]})
    raw["dicom_stores"][0]["iam"].append({"member": "user:ana@example.com", "roles": ["roles/healthcare.dicomViewer"]})
    bp = load(tmp_path, raw)
    result = lifecycle.apply(bp, Target(emulator=emu.url, token=f"emulator:{admin}"))
    root = result.outputs["dicom_stores"]["primary"]["dicomweb"]
    requests.get(f"{root}/studies", headers={"Authorization": "Bearer emulator:user:ana@example.com"}).raise_for_status()

    officer = audit.audit(bp, Target(emulator=emu.url, token="emulator:user:officer@example.com"),
                          audit.parse_since("1h"))
    assert ("ana@example.com", "SearchForStudies") in {(r.principal, r.action) for r in officer.rows}
    assert "admin@example.com" in {r.principal for r in officer.rows}     # the caller, under --enforce-iam
    auditor = audit.audit(bp, Target(emulator=emu.url, token="emulator:user:auditor@example.com"),
                          audit.parse_since("1h"))
    assert auditor.rows == [] and any("privateLogViewer" in n for n in auditor.notes)


def test_a_read_only_bucket_without_them_is_reported_with_what_its_owner_can_do(emulator, tmp_path, data_dir):
    target = Target(emulator=emulator.url)
    lifecycle.apply(load(tmp_path, blueprint_dict("ohif-safe-ro", data_dir)), target)
    gcs = Ctx(target).target.storage()
    shared = gcs.create_bucket("ohif-safe-ro-shared", project="ohif-safe-ro")
    shared.blob("dicom/a.dcm").upload_from_filename(str(next(data_dir.rglob("*.dcm"))))
    raw = blueprint_dict("ohif-safe-ro", None)
    raw["bucket"] = {"name": "ohif-safe-ro-shared", "create": False}
    raw["dicom_stores"][0]["import"]["uri"] = "gs://ohif-safe-ro-shared/dicom/**.dcm"
    plan = lifecycle.plan(load(tmp_path, raw, "ro.yaml"), target)
    assert plan.step("bucket").action == "no-op" and len(plan.step("bucket").drift) == 2
    note = next(n for n in plan.notes if n.startswith("gs://ohif-safe-ro-shared (create: false"))
    assert "gcloud storage buckets update gs://ohif-safe-ro-shared --uniform-bucket-level-access" in note


def test_an_organizations_audit_config_applies_to_its_projects(emulator, tmp_path, data_dir):
    target = Target(emulator=emulator.url)
    raw = blueprint_dict("ohif-safe-org", data_dir)           # under organizations/123456789012
    raw["audit_logs"] = {"data_access": False}
    bp = load(tmp_path, raw)
    result = lifecycle.apply(bp, target)
    requests.put(f"{emulator.url}/_emulator/policies/organizations/123456789012", headers={"X-Emulator-Control": "1"},
                 json={"bindings": [], "auditConfigs": [{"service": "allServices", "auditLogConfigs": [
                     {"logType": "DATA_READ", "exemptedMembers": ["user:batch@example.com"]}]}]}).raise_for_status()
    root = result.outputs["dicom_stores"]["primary"]["dicomweb"]
    for who in ("ana", "batch"):
        requests.get(f"{root}/studies", headers={"Authorization": f"Bearer emulator:user:{who}@example.com"})
    rows = audit.audit(bp, target, audit.parse_since("1h")).rows
    assert {(r.principal, r.action) for r in rows} == {("ana@example.com", "SearchForStudies")}


def test_asking_for_one_setting_on_an_adopted_bucket_changes_that_one_only(emulator, tmp_path, data_dir):
    target = Target(emulator=emulator.url)
    lifecycle.apply(load(tmp_path, blueprint_dict("ohif-safe-one", data_dir)), target)
    gcs = Ctx(target).target.storage()
    gcs.create_bucket("ohif-safe-one-open", project="ohif-safe-one")
    raw = blueprint_dict("ohif-safe-one", data_dir)
    raw["bucket"].update(name="ohif-safe-one-open", uniform_access=True)
    raw["dicom_stores"][0]["import"]["uri"] = "gs://ohif-safe-one-open/dicom/**.dcm"
    bp = load(tmp_path, raw, "one.yaml")
    step = lifecycle.plan(bp, target).step("bucket")
    assert step.changes == ["uniform_access: False -> True"]
    assert any("public access prevention is inherited" in d for d in step.drift)   # reported, not changed
    lifecycle.apply(bp, target)
    cfg = gcs.get_bucket("ohif-safe-one-open").iam_configuration
    assert cfg.uniform_bucket_level_access_enabled and cfg.public_access_prevention == "inherited"
