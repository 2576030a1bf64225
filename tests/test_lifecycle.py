"""The blueprint is the truth, within what provision made (issue 8): the ownership record,
revocation, removal, replacement, drift, re-import and plan-time refusals, against the emulator
through the real client libraries."""
from __future__ import annotations

import json
import re

import pytest

from provision.running import lifecycle
from provision.errors import ProvisionError
from provision.gcp.context import Ctx
from provision.gcp.target import Target
from provision.running.lifecycle import NeedsFlag, Options
from provision.resources.record import OBJECT, RecordStore, bucket_for
from provision.resources import bucket as bucket_mod
from provision.resources import bucket_iam, bucket_reads, dataset, dicom_store, iam, store_calls
from test_apply_support import blueprint_dict, load, mark, records, write_dicom, writes

VIEWER = "roles/healthcare.dicomViewer"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("dicom")
    write_dicom(d, studies=2)
    return d


def record_of(target: Target, pid: str):
    ctx = Ctx(target)
    number = ctx.target.projects().get_project(name=f"projects/{pid}", retry=None).name.split("/")[-1]
    return RecordStore(pid).read(ctx, number)


def store_policy(target: Target, name: str) -> dict:
    ctx = Ctx(target)
    return iam.dicom_store_io(ctx, name).read()


# ---------------------------------------------------------------------------- the record
def test_apply_keeps_a_readable_record_of_what_it_made_and_granted(emulator, tmp_path, data_dir):
    target = Target(emulator=emulator.url)
    bp = load(tmp_path, blueprint_dict("ohif-life-rec", data_dir))
    result = lifecycle.apply(bp, target)
    blob = Ctx(target).target.storage().bucket(bucket_for("ohif-life-rec")).blob(OBJECT)
    doc = json.loads(blob.download_as_bytes())
    assert doc["format"] == "provision-record/1" and doc["project"] == "ohif-life-rec"
    store = result.outputs["dicom_stores"]["primary"]["name"]
    assert {(r["kind"], r["name"]) for r in doc["resources"]} == {
        ("project", "ohif-life-rec"), ("bucket", "ohif-life-rec-dicom"), ("dataset", result.outputs["dataset"]),
        ("dicom-store", store)} | {("audit-log", f"{s}/{t}") for s in ("healthcare.googleapis.com",
                                                                         "storage.googleapis.com")
                                    for t in ("DATA_READ", "DATA_WRITE", "ADMIN_READ")}
    agent = f"serviceAccount:{result.outputs['service_agent']}"
    assert {(g["resource"], g["role"], g["member"]) for g in doc["grants"]} == {
        ("projects/ohif-life-rec", "roles/serviceusage.serviceUsageConsumer", "group:radiology@example.com"),
        ("gs://ohif-life-rec-dicom", "roles/storage.objectViewer", agent),
        (store, VIEWER, "group:radiology@example.com")}
    assert all(r["created"].endswith("Z") for r in doc["resources"])
    # no label marks any more: the record replaces them
    assert not [k for k in dicom_store.read(Ctx(target), store).labels if k.startswith(iam.MARK_PREFIX)]


def test_a_foreign_write_between_read_and_write_is_kept(emulator, tmp_path, data_dir):
    target = Target(emulator=emulator.url)
    lifecycle.apply(load(tmp_path, blueprint_dict("ohif-life-cas", data_dir)), target)
    ctx = Ctx(target)
    number = ctx.target.projects().get_project(name="projects/ohif-life-cas", retry=None).name.split("/")[-1]
    ours, theirs = RecordStore("ohif-life-cas"), RecordStore("ohif-life-cas")
    ours.read(ctx, number)
    theirs.read(ctx, number)
    theirs.add_grants(ctx, "projects/ohif-life-cas", [("roles/x", "user:theirs@example.com")])
    ours.add_grants(ctx, "projects/ohif-life-cas", [("roles/x", "user:ours@example.com")])   # 412, re-read, re-apply
    final = RecordStore("ohif-life-cas").read(ctx, number)
    assert {("roles/x", "user:theirs@example.com"), ("roles/x", "user:ours@example.com")} <= \
        final.pairs_on("projects/ohif-life-cas")


def test_a_record_bucket_of_another_project_is_refused(emulator, tmp_path, data_dir):
    target = Target(emulator=emulator.url)
    lifecycle.apply(load(tmp_path, blueprint_dict("ohif-life-squat", None, bucket=None, dicom_stores=[{"id": "s"}],
                                                    smoke={"min_studies": 0})), target)
    # another project takes the name of the record bucket of a project still to be made
    ctx = Ctx(target)
    ctx.target.storage("ohif-life-squat").create_bucket(bucket_for("ohif-life-victim"), project="ohif-life-squat")
    victim = load(tmp_path, blueprint_dict("ohif-life-victim", None, bucket=None, dicom_stores=[{"id": "s"}],
                                           smoke={"min_studies": 0}), "victim.yaml")
    with pytest.raises(ProvisionError, match="belongs to another project"):
        lifecycle.apply(victim, target)


# ---------------------------------------------------------------------------- defect 1
def test_apply_grants_on_its_own_bucket_only_never_on_a_foreign_one(emulator_factory, tmp_path, data_dir):
    rec = tmp_path / "rec.jsonl"
    emu = emulator_factory(record=rec)
    target = Target(emulator=emu.url)
    lifecycle.apply(load(tmp_path, blueprint_dict("ohif-life-teach", data_dir), "teach.yaml"), target)
    foreign = "ohif-life-teach-dicom"
    before = iam.bucket_io(Ctx(target), foreign).read()
    d = blueprint_dict("ohif-life-two", data_dir)
    d["dicom_stores"].append({"id": "teaching", "import": {"uri": f"gs://{foreign}/dicom/**.dcm"}})
    bp = load(tmp_path, d)
    plan = lifecycle.plan(bp, target)
    assert [s.resource for s in plan.steps if s.kind == "bucket-iam"] == ["gs://ohif-life-two-dicom"]
    seen = mark(rec)
    result = None
    with pytest.raises(lifecycle.ApplyFailed) as err:   # the foreign owner never granted our agent
        lifecycle.apply(bp, target)
    result = err.value.result
    status = {s.id: s.status for s in result.steps}
    assert status["import:primary"] == "done" and status["import:teaching"] == "failed"
    agent = f"serviceAccount:{result.outputs['service_agent']}"
    assert not iam.missing(iam.bucket_io(Ctx(target), "ohif-life-two-dicom").read(), [(bucket_iam.VIEWER, agent)])
    assert iam.bucket_io(Ctx(target), foreign).read()["bindings"] == before["bindings"]
    assert not [r for r in writes(records(rec)[seen:]) if f"/b/{foreign}" in r["path"]], "wrote on a foreign bucket"


# ---------------------------------------------------------------------------- defect 2: removal
def test_a_member_removed_from_the_blueprint_loses_access(emulator, tmp_path, data_dir):
    target = Target(emulator=emulator.url)
    d = blueprint_dict("ohif-life-rm", data_dir)
    d["dicom_stores"][0]["iam"].append({"member": "user:x@example.com", "roles": [VIEWER]})
    lifecycle.apply(load(tmp_path, d), target)
    store = lifecycle.plan_mod.store_name(load(tmp_path, d), "primary")
    assert not iam.missing(store_policy(target, store), [(VIEWER, "user:x@example.com")])
    d["dicom_stores"][0]["iam"].pop()
    bp = load(tmp_path, d, "without-x.yaml")
    report = lifecycle.status(bp, target)
    assert not report.in_sync
    assert {r["id"]: r["state"] for r in report.resources}["store-iam:primary"] == "extra"
    plan = lifecycle.plan(bp, target)
    step = plan.step("store-iam:primary")
    assert step.action == "delete" and step.changes == [f"- user:x@example.com {VIEWER}"]
    lifecycle.apply(bp, target)
    policy = store_policy(target, store)
    assert iam.missing(policy, [(VIEWER, "user:x@example.com")])
    assert not iam.missing(policy, [(VIEWER, "group:radiology@example.com")])
    assert (VIEWER, "user:x@example.com") not in record_of(target, "ohif-life-rm").pairs_on(store)
    assert lifecycle.status(bp, target).in_sync and not lifecycle.plan(bp, target).has_changes


def test_a_removed_store_is_deleted_when_empty_and_kept_with_data_until_delete_data(emulator, tmp_path, data_dir):
    target = Target(emulator=emulator.url)
    d = blueprint_dict("ohif-life-stores", data_dir)
    d["dicom_stores"].append({"id": "scratch"})
    full = load(tmp_path, d)
    lifecycle.apply(full, target)
    ctx = Ctx(target)
    scratch, primary = (lifecycle.plan_mod.store_name(full, s) for s in ("scratch", "primary"))
    d["dicom_stores"] = [s for s in d["dicom_stores"] if s["id"] != "scratch"]
    lifecycle.apply(load(tmp_path, d, "no-scratch.yaml"), target)
    assert dicom_store.read(ctx, scratch) is None                       # empty: deleted
    assert not record_of(target, "ohif-life-stores").owns("dicom-store", scratch)
    # a store with studies: kept and reported, by plan, apply and status
    d["dicom_stores"] = [{"id": "other"}]
    d["smoke"] = {"min_studies": 0}
    bp = load(tmp_path, d, "no-primary.yaml")
    plan = lifecycle.plan(bp, target)
    kept = plan.step("store:primary")
    assert kept.action == "keep" and kept.changes == ["kept: holds 2 studies (--delete-data deletes it)"]
    assert plan.step("store-iam:primary").action == "delete"   # access it granted goes, the data stays
    lifecycle.apply(bp, target)
    assert store_calls.count_studies(ctx, primary) == 2
    assert iam.missing(store_policy(target, primary), [(VIEWER, "group:radiology@example.com")])
    assert {r["id"]: r["state"] for r in lifecycle.status(bp, target).resources}["store:primary"] == "kept"
    lifecycle.apply(bp, target, opts=Options(delete_data=True))
    assert dicom_store.read(ctx, primary) is None
    assert not lifecycle.plan(bp, target).has_changes


# ---------------------------------------------------------------------------- defect 3: replacement
def test_a_dataset_location_change_is_a_replace_refused_without_the_flag(emulator_factory, tmp_path, data_dir):
    rec = tmp_path / "rec.jsonl"
    emu = emulator_factory(record=rec)
    target = Target(emulator=emu.url)
    d = blueprint_dict("ohif-life-move", data_dir)
    us = load(tmp_path, d)
    lifecycle.apply(us, target)
    old_ds, old_store = lifecycle.plan_mod.dataset_name(us), lifecycle.plan_mod.store_name(us, "primary")
    d["dataset"]["location"] = "europe-west4"
    eu = load(tmp_path, d, "eu.yaml")
    plan = lifecycle.plan(eu, target)
    step = plan.step("dataset")
    assert step.action == "replace"
    assert step.changes[0] == "location us-central1 -> europe-west4: a dataset's location cannot change"
    assert "primary: 2 studies" in " ".join(step.changes)
    assert plan.step("dataset:us-central1/imaging").action == "delete"
    assert plan.step("store:us-central1/imaging/primary").action == "delete"
    seen = mark(rec)
    with pytest.raises(NeedsFlag) as err:
        lifecycle.apply(eu, target)
    assert err.value.needs == "replace" and "nothing was changed" in str(err.value)
    assert writes(records(rec)[seen:]) == []
    assert lifecycle.status(eu, target).in_sync is False
    result = lifecycle.apply(eu, target, opts=Options(replace=True))
    ctx = Ctx(target)
    assert dataset.read(ctx, old_ds) is None and dicom_store.read(ctx, old_store) is None   # no second dataset left
    new_store = result.outputs["dicom_stores"]["primary"]["name"]
    assert "/locations/europe-west4/" in new_store and store_calls.count_studies(ctx, new_store) == 2
    assert not iam.missing(store_policy(target, new_store), [(VIEWER, "group:radiology@example.com")])
    assert record_of(target, "ohif-life-move").names("dataset") == [lifecycle.plan_mod.dataset_name(eu)]
    assert not lifecycle.plan(eu, target).has_changes


def test_replace_keeps_a_kept_store_and_its_dataset_unless_delete_data(emulator, tmp_path, data_dir):
    """Issue 18: a store dropped from the blueprint and kept for its studies survives `--replace` of
    its dataset; only --delete-data deletes it, and the plan says which."""
    target = Target(emulator=emulator.url)
    d = blueprint_dict("ohif-life-keepmv", data_dir)
    d["dicom_stores"].append({"id": "neuro", "import": {"uri": "gs://ohif-life-keepmv-dicom/dicom/**.dcm"}})
    lifecycle.apply(load(tmp_path, d), target)
    ctx = Ctx(target)
    old_ds = lifecycle.plan_mod.dataset_name(load(tmp_path, d))
    neuro = f"{old_ds}/dicomStores/neuro"
    d["dicom_stores"].pop()
    lifecycle.apply(load(tmp_path, d, "no-neuro.yaml"), target)
    assert store_calls.count_studies(ctx, neuro) == 2                       # kept: holds studies
    d["dataset"]["location"] = "europe-west4"
    eu = load(tmp_path, d, "eu.yaml")
    plan = lifecycle.plan(eu, target)
    assert plan.step("store:us-central1/imaging/neuro").action == "keep"
    assert plan.step("dataset:us-central1/imaging").action == "keep"
    said = " ".join(plan.step("dataset").changes)
    assert "is kept" in said and "neuro: 2 studies" in said and "--delete-data" in said, said
    lifecycle.apply(eu, target, opts=Options(replace=True))
    assert store_calls.count_studies(ctx, neuro) == 2                       # the replace did not touch it
    assert dataset.read(ctx, old_ds) is not None
    assert store_calls.read(ctx, f"{old_ds}/dicomStores/primary") is None    # re-imported in the new one
    assert not lifecycle.plan(eu, target).has_changes
    # --delete-data names the loss: now it goes, with its dataset
    plan = lifecycle.plan(eu, target, opts=Options(delete_data=True))
    assert "and its 2 studies" in " ".join(plan.step("store:us-central1/imaging/neuro").changes)
    lifecycle.apply(eu, target, opts=Options(delete_data=True))
    assert dicom_store.read(ctx, neuro) is None and dataset.read(ctx, old_ds) is None


def test_a_bucket_location_change_is_a_replace(emulator, tmp_path, data_dir):
    target = Target(emulator=emulator.url)
    d = blueprint_dict("ohif-life-bloc", data_dir)
    lifecycle.apply(load(tmp_path, d), target)
    d["bucket"]["location"] = "EU"
    bp = load(tmp_path, d, "eu.yaml")
    step = lifecycle.plan(bp, target).step("bucket")
    assert step.action == "replace" and step.changes[0] == "location US -> EU: a bucket's location cannot change"
    with pytest.raises(NeedsFlag):
        lifecycle.apply(bp, target)
    lifecycle.apply(bp, target, opts=Options(replace=True))
    ctx = Ctx(target)
    assert bucket_mod.read(ctx, "ohif-life-bloc-dicom").location == "EU"
    assert len(bucket_reads.list_objects(ctx, "ohif-life-bloc-dicom")) == 5   # uploaded again
    assert not lifecycle.plan(bp, target).has_changes


# ---------------------------------------------------------------------------- defect 4: drift
def test_a_foreign_data_access_grant_on_a_managed_store_is_drift(emulator, tmp_path, data_dir):
    target = Target(emulator=emulator.url)
    bp = load(tmp_path, blueprint_dict("ohif-life-drift", data_dir))
    lifecycle.apply(bp, target)
    store = lifecycle.plan_mod.store_name(bp, "primary")
    ctx = Ctx(target)
    iam.add(ctx, iam.dicom_store_io(ctx, store), [("roles/healthcare.dicomEditor", "user:intruder@example.com")])
    report = lifecycle.status(bp, target)
    row = {r["id"]: r for r in report.resources}["store-iam:primary"]
    assert not report.in_sync and row["state"] == "drift"
    assert row["details"] == ["user:intruder@example.com has roles/healthcare.dicomEditor: not in the blueprint and "
                              "not granted by provision (left alone)"]
    plan = lifecycle.plan(bp, target)
    assert not plan.has_changes and "drift: user:intruder@example.com" in plan.render()
    lifecycle.apply(bp, target)   # never removes what provision did not make
    assert not iam.missing(store_policy(target, store), [("roles/healthcare.dicomEditor", "user:intruder@example.com")])


# ---------------------------------------------------------------------------- defect 5: re-import
def test_an_emptied_store_is_imported_again(emulator, tmp_path, data_dir):
    target = Target(emulator=emulator.url)
    bp = load(tmp_path, blueprint_dict("ohif-life-empty", data_dir))
    result = lifecycle.apply(bp, target)
    store = result.outputs["dicom_stores"]["primary"]["name"]
    session = target.session()
    root = f"{target.root('healthcare')}/v1/{store}/dicomWeb/studies"
    for study in session.get(root, headers={"Accept": "application/dicom+json"}).json():
        uid = study["0020000D"]["Value"][0]
        assert session.delete(f"{root}/{uid}").status_code in (200, 204)
    step = lifecycle.plan(bp, target).step("import:primary")
    assert step.action == "create" and "again: the store holds 0 studies" in step.changes[0]
    lifecycle.apply(bp, target)
    assert store_calls.count_studies(Ctx(target), store) == 2
    # and on demand
    with pytest.raises(ProvisionError, match="no such store"):
        lifecycle.plan(bp, target, opts=Options(reimport=frozenset({"nope"})))
    forced = lifecycle.plan(bp, target, opts=Options(reimport=frozenset({"primary"})))
    assert forced.step("import:primary").changes[0].startswith("import gs://ohif-life-empty-dicom/dicom/**.dcm (--reimport)")


# ---------------------------------------------------------------------------- defect 6: refused at plan
def test_billing_missing_for_healthcare_is_a_plan_error(emulator_factory, tmp_path):
    rec = tmp_path / "rec.jsonl"
    target = Target(emulator=emulator_factory(record=rec).url)
    d = blueprint_dict("ohif-life-nobill", None, bucket=None, dicom_stores=[{"id": "s"}], smoke={"min_studies": 0})
    d["project"].pop("billing_account")
    with pytest.raises(ProvisionError, match="healthcare.googleapis.com can only be enabled on a project with billing") as err:
        lifecycle.apply(load(tmp_path, d), target)
    assert writes(records(rec)) == []
    # a blueprint mistake: exit 2, at the blueprint's line
    assert err.value.exit_code == 2 and re.match(r".*\.yaml:\d+:\d+: ", str(err.value)), str(err.value)


def test_a_bucket_name_taken_by_someone_unreadable_is_a_plan_error(emulator_factory, tmp_path):
    from emulator_helpers import CONTROL
    import requests

    emu = emulator_factory(enforce_iam=True)
    for resource, role in (("organizations/123456789012", "roles/resourcemanager.projectCreator"),
                           ("billingAccounts/012345-6789AB-CDEF01", "roles/billing.user")):
        requests.put(f"{emu.url}/_emulator/policies/{resource}", json={"bindings": [{"role": role, "members": [
            "user:them@example.com", "user:us@example.com"]}]}, headers=CONTROL, timeout=10).raise_for_status()
    them = Target(emulator=emu.url, token="emulator:user:them@example.com")
    lifecycle.apply(load(tmp_path, blueprint_dict("ohif-life-them", None, dicom_stores=[{"id": "s"}],
                                                    smoke={"min_studies": 0}), "them.yaml"), them)
    us = Target(emulator=emu.url, token="emulator:user:us@example.com")
    d = blueprint_dict("ohif-life-us", None, dicom_stores=[{"id": "s"}], smoke={"min_studies": 0})
    d["bucket"]["name"] = "ohif-life-them-dicom"
    with pytest.raises(ProvisionError, match="the name is taken .*403"):
        lifecycle.plan(load(tmp_path, d, "us.yaml"), us)


def test_an_import_source_bucket_that_does_not_exist_is_a_plan_error(emulator, tmp_path):
    target = Target(emulator=emulator.url)
    lifecycle.apply(load(tmp_path, blueprint_dict("ohif-life-src", None, bucket=None, dicom_stores=[{"id": "s"}],
                                                    smoke={"min_studies": 0})), target)
    d = blueprint_dict("ohif-life-src", None, bucket=None,
                       dicom_stores=[{"id": "s", "import": {"uri": "gs://ohif-life-nowhere/**.dcm"}}])
    with pytest.raises(ProvisionError, match="gs://ohif-life-nowhere does not exist"):
        lifecycle.plan(load(tmp_path, d, "src.yaml"), target)


def test_an_import_source_bucket_the_caller_cannot_list_is_a_plan_error(emulator_factory, tmp_path, data_dir):
    from emulator_helpers import CONTROL
    import requests

    emu = emulator_factory(enforce_iam=True)
    for resource, role in (("organizations/123456789012", "roles/resourcemanager.projectCreator"),
                           ("billingAccounts/012345-6789AB-CDEF01", "roles/billing.user")):
        requests.put(f"{emu.url}/_emulator/policies/{resource}", json={"bindings": [{"role": role, "members": [
            "user:them@example.com", "user:us@example.com"]}]}, headers=CONTROL, timeout=10).raise_for_status()
    lifecycle.apply(load(tmp_path, blueprint_dict("ohif-life-priv", data_dir, smoke={"min_studies": 1}), "p.yaml"),
                      Target(emulator=emu.url, token="emulator:user:them@example.com"))
    us = Target(emulator=emu.url, token="emulator:user:us@example.com")
    d = blueprint_dict("ohif-life-reader", None, bucket=None,
                       dicom_stores=[{"id": "s", "import": {"uri": "gs://ohif-life-priv-dicom/dicom/**.dcm"}}])
    with pytest.raises(ProvisionError, match=r"you cannot list gs://ohif-life-priv-dicom \(403\)"):
        lifecycle.plan(load(tmp_path, d, "r.yaml"), us)


# ---------------------------------------------------------------------------- adoption of the old labels
def test_grants_marked_by_labels_of_an_earlier_version_are_adopted_then_revocable(emulator, tmp_path, data_dir):
    target = Target(emulator=emulator.url)
    d = blueprint_dict("ohif-life-legacy", data_dir)
    bp = load(tmp_path, d)
    lifecycle.apply(bp, target)
    ctx = Ctx(target)
    store = lifecycle.plan_mod.store_name(bp, "primary")
    old = (VIEWER, "user:old@example.com")
    # what an earlier provision left: the grant, marked by a label, and no record entry
    iam.add(ctx, iam.dicom_store_io(ctx, store), [old])
    iam.dicom_store_labels(ctx, store).patch({iam.mark_key(old): iam.MARK_VALUE})
    plan = lifecycle.plan(bp, target)
    assert plan.step("record").action == "update"
    assert plan.step("store-iam:primary").changes == [f"- user:old@example.com {VIEWER}"]
    lifecycle.apply(bp, target)
    assert iam.missing(store_policy(target, store), [old])
    assert not iam.marks(dicom_store.read(ctx, store).labels)
    assert not lifecycle.plan(bp, target).has_changes


# ---------------------------------------------------------------------------- destroy after removals
def test_destroy_after_earlier_removals_leaves_nothing_provision_made(emulator, tmp_path, data_dir):
    target = Target(emulator=emulator.url)
    d = blueprint_dict("ohif-life-end", data_dir)
    d["dicom_stores"].append({"id": "extra", "iam": [{"member": "user:y@example.com", "roles": [VIEWER]}]})
    d["iam"].append({"member": "user:y@example.com", "roles": ["roles/serviceusage.serviceUsageConsumer"]})
    lifecycle.apply(load(tmp_path, d), target)
    # a foreign grant provision must leave alone, before the removals
    ctx = Ctx(target)
    iam.add(ctx, iam.project_io(ctx, "ohif-life-end"), [("roles/browser", "user:colleague@example.com")])
    # the blueprint drops a store and a member; a replaced dataset would leave its old one the same way
    d["dicom_stores"].pop()
    d["iam"].pop()
    bp = load(tmp_path, d, "smaller.yaml")
    lifecycle.apply(bp, target)
    lifecycle.destroy(bp, target, delete_data=True)
    rec = record_of(target, "ohif-life-end")
    assert rec.resources.keys() == {("project", "ohif-life-end")} and not rec.grants
    policy = iam.project_io(ctx, "ohif-life-end").read()
    assert not iam.missing(policy, [("roles/browser", "user:colleague@example.com")])
    assert not [p for p in iam.unconditional(policy) if p[1] in ("user:y@example.com", "group:radiology@example.com")]
    assert dataset.read(ctx, lifecycle.plan_mod.dataset_name(bp)) is None
    assert not bucket_mod.read(ctx, "ohif-life-end-dicom").exists
    assert lifecycle.destroy(bp, target).steps == []


# ---------------------------------------------------------------------------- the command line
def test_cli_apply_refuses_a_replace_until_replace_is_given_and_reimports_on_demand(emulator, tmp_path, data_dir):
    from typer.testing import CliRunner

    from provision.cli import app

    def run(*args):
        return CliRunner().invoke(app, [*args, "--emulator", emulator.url, "--yes", "--no-smoke"])

    d = blueprint_dict("ohif-life-cli", data_dir)
    path = tmp_path / "bp.yaml"
    load(tmp_path, d, path.name)
    assert run("apply", str(path)).exit_code == 0
    d["dataset"]["location"] = "europe-west4"
    load(tmp_path, d, path.name)
    refused = run("apply", str(path))
    assert refused.exit_code == 1
    assert "-/+ dataset" in refused.output and "(apply --replace)" in refused.output, refused.output
    assert "Traceback" not in refused.output
    done = run("apply", str(path), "--replace")
    assert done.exit_code == 0, done.output
    again = run("apply", str(path), "--reimport", "primary")
    assert again.exit_code == 0 and "import:primary" in again.output, again.output
    typo = run("apply", str(path), "--reimport", "primray")
    assert typo.exit_code == 2 and "--reimport primray: no such store" in typo.output
