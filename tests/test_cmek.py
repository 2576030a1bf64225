"""CMEK (`dataset.kms_key`): the key checked at plan (in the dataset's location, existing, readable), the
Healthcare service agent granted roles/cloudkms.cryptoKeyEncrypterDecrypter on it before the dataset is
created (owned in the record like any grant), the dataset created with `encryptionSpec.kmsKeyName`, and a
change of key planned as `-/+ replace`. Through the CLI and the library, against a real emulator."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from emulator_helpers import create_project, discovery_client, healthcare
from provision.cli import app
from provision.gcp.target import Target
from provision.running import lifecycle
from provision.running.lifecycle import Options
from test_apply_support import blueprint_dict, load, records, writes
from test_refused_before_write import line_col

KEYS = "ohif-cmek-keys"
ROLE = "roles/cloudkms.cryptoKeyEncrypterDecrypter"


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def make_key(url: str, location: str, key: str, ring: str = "imaging") -> str:
    rings = discovery_client(url, "cloudkms", "v1").projects().locations().keyRings()
    parent = f"projects/{KEYS}/locations/{location}"
    names = [r["name"] for r in rings.list(parent=parent).execute().get("keyRings", [])]
    if f"{parent}/keyRings/{ring}" not in names:
        rings.create(parent=parent, keyRingId=ring, body={}).execute()
    return rings.cryptoKeys().create(parent=f"{parent}/keyRings/{ring}", cryptoKeyId=key,
                                     body={"purpose": "ENCRYPT_DECRYPT"}).execute()["name"]


def key_policy(url: str, key: str) -> dict:
    keys = discovery_client(url, "cloudkms", "v1").projects().locations().keyRings().cryptoKeys()
    return keys.getIamPolicy(resource=key).execute()


def cmek_blueprint(tmp_path, project: str, key: str, name: str = "bp.yaml"):
    return load(tmp_path, blueprint_dict(project, bucket=None, dicom_stores=[{"id": "primary"}], smoke={"min_studies": 0},
                                         dataset={"id": "imaging", "location": "us-central1", "kms_key": key}), name)


def test_a_key_in_another_location_or_missing_is_refused_at_plan(emulator_factory, tmp_path):
    rec = tmp_path / "rec.jsonl"
    emu = emulator_factory(record=rec)
    create_project(emu.url, KEYS)
    elsewhere = make_key(emu.url, "europe-west4", "dicom")
    before = len(records(rec))
    bp = cmek_blueprint(tmp_path, "ohif-cmek-far", elsewhere)
    planned = run("plan", str(bp.source), "--emulator", emu.url)
    assert planned.exit_code == 2, planned.output
    where = f"{bp.source}:{line_col(bp.source, 'kms_key', 'projects/')}"
    assert f"{where}: dataset.kms_key: the key is in europe-west4, the dataset in us-central1" in planned.output
    assert f"projects/{KEYS}/locations/us-central1/keyRings/imaging/cryptoKeys/dicom" in planned.output   # the fix

    missing = cmek_blueprint(tmp_path, "ohif-cmek-far", f"projects/{KEYS}/locations/us-central1/keyRings/imaging/"
                                                       "cryptoKeys/nope", "missing.yaml")
    planned = run("plan", str(missing.source), "--emulator", emu.url)
    assert planned.exit_code == 2 and "does not exist" in planned.output and "gcloud kms keys create" in planned.output
    assert writes(records(rec)[before:]) == []


def test_the_agent_is_granted_on_the_key_before_the_dataset_is_created(emulator_factory, tmp_path):
    rec = tmp_path / "rec.jsonl"
    emu = emulator_factory(record=rec)
    create_project(emu.url, KEYS)
    key = make_key(emu.url, "us-central1", "dicom")
    bp = cmek_blueprint(tmp_path, "ohif-cmek-new", key)
    target = Target(emulator=emu.url)
    plan = lifecycle.plan(bp, target)
    assert plan.step("kms-key-iam").action == "create" and "kms-key-iam" in plan.step("dataset").deps
    before = len(records(rec))
    result = lifecycle.apply(bp, target)
    assert result.ok, result.error
    recs = records(rec)[before:]
    grant = next(i for i, r in enumerate(recs) if r["path"] == f"/v1/{key}:setIamPolicy" and r["status"] == 200)
    create = next(i for i, r in enumerate(recs) if r["method"] == "POST" and r["path"].endswith("/datasets"))
    assert grant < create   # the grant first: Healthcare refuses a CMEK dataset its agent cannot use
    assert recs[create]["request"]["encryptionSpec"] == {"kmsKeyName": key}
    number = result.outputs.get("service_agent") or ""
    members = [m for b in key_policy(emu.url, key)["bindings"] if b["role"] == ROLE for m in b["members"]]
    assert members == [f"serviceAccount:{number}"] and "gcp-sa-healthcare" in number
    got = healthcare(emu.url).projects().locations().datasets().get(
        name="projects/ohif-cmek-new/locations/us-central1/datasets/imaging").execute()
    assert got["encryptionSpec"]["kmsKeyName"] == key
    record = json.loads(run("status", str(bp.source), "--emulator", emu.url, "--json").stdout)
    assert record["exit_code"] == 0
    assert not lifecycle.apply(bp, target).changed   # a second apply: reads only


def test_changing_the_key_is_a_replace_and_the_old_grant_goes(emulator_factory, tmp_path):
    emu = emulator_factory()
    create_project(emu.url, KEYS)
    first, second = make_key(emu.url, "us-central1", "one"), make_key(emu.url, "us-central1", "two")
    target = Target(emulator=emu.url)
    assert lifecycle.apply(cmek_blueprint(tmp_path, "ohif-cmek-swap", first), target).ok
    swapped = cmek_blueprint(tmp_path, "ohif-cmek-swap", second, "two.yaml")
    plan = lifecycle.plan(swapped, target)
    step = plan.step("dataset")
    assert step.action == "replace" and any("a dataset's CMEK key is set at creation only" in c for c in step.changes)
    assert plan.step("store:primary").action == "create"   # the stores go with the dataset, and come back
    refused = run("apply", str(swapped.source), "--emulator", emu.url, "--yes")
    assert refused.exit_code == 1 and "--replace" in refused.output
    assert lifecycle.apply(swapped, target, opts=Options(replace=True)).ok
    got = healthcare(emu.url).projects().locations().datasets().get(
        name="projects/ohif-cmek-swap/locations/us-central1/datasets/imaging").execute()
    assert got["encryptionSpec"]["kmsKeyName"] == second
    assert not [b for b in key_policy(emu.url, first).get("bindings", []) if b["role"] == ROLE]
    assert not lifecycle.plan(swapped, target).has_changes


def test_destroy_revokes_the_agents_grant_after_the_dataset_goes(emulator_factory, tmp_path):
    rec = tmp_path / "rec.jsonl"
    emu = emulator_factory(record=rec)
    create_project(emu.url, KEYS)
    key = make_key(emu.url, "us-central1", "dicom")
    bp = cmek_blueprint(tmp_path, "ohif-cmek-gone", key)
    target = Target(emulator=emu.url)
    assert lifecycle.apply(bp, target).ok
    before = len(records(rec))
    result = lifecycle.destroy(bp, target)
    assert {r.status for r in result.results} == {"done"}
    assert any(s.id.startswith("kms-key-iam") for s in result.steps)
    recs = records(rec)[before:]
    deleted = next(i for i, r in enumerate(recs) if r["method"] == "DELETE" and r["path"].endswith("/datasets/imaging"))
    revoked = next(i for i, r in enumerate(recs) if r["path"] == f"/v1/{key}:setIamPolicy")
    assert deleted < revoked   # never a dataset left encrypted with a key its agent may no longer use
    assert not [b for b in key_policy(emu.url, key).get("bindings", []) if b["role"] == ROLE]


def test_a_key_change_keeps_studies_no_import_brings_back_unless_delete_data(emulator_factory, tmp_path):
    from dicomweb_client import DICOMwebClient

    from dicom_factory import ct_series

    emu = emulator_factory()
    create_project(emu.url, KEYS)
    first, second = make_key(emu.url, "us-central1", "one"), make_key(emu.url, "us-central1", "two")
    target = Target(emulator=emu.url)
    assert lifecycle.apply(cmek_blueprint(tmp_path, "ohif-cmek-keep", first), target).ok
    store = "projects/ohif-cmek-keep/locations/us-central1/datasets/imaging/dicomStores/primary"
    DICOMwebClient(url=f"{emu.url}/v1/{store}/dicomWeb").store_instances(ct_series("kept", slices=2, size=16))
    swapped = cmek_blueprint(tmp_path, "ohif-cmek-keep", second, "two.yaml")
    step = lifecycle.plan(swapped, target, opts=Options(replace=True)).step("dataset")
    assert step.action == "keep" and "primary: 1 study" in step.changes[0] and "--delete-data" in step.changes[0]
    assert lifecycle.apply(swapped, target, opts=Options(replace=True)).ok   # only the new key's grant is made
    studies = DICOMwebClient(url=f"{emu.url}/v1/{store}/dicomWeb").search_for_studies()
    assert len(studies) == 1   # the study stays, and so does the dataset with its key
    got = healthcare(emu.url).projects().locations().datasets().get(
        name="projects/ohif-cmek-keep/locations/us-central1/datasets/imaging").execute()
    assert got["encryptionSpec"]["kmsKeyName"] == first
    forced = lifecycle.plan(swapped, target, opts=Options(replace=True, delete_data=True)).step("dataset")
    assert forced.action == "replace" and any("lost: primary: 1 study" in c for c in forced.changes)


def test_a_key_you_may_read_but_not_grant_on_is_refused_at_plan(emulator_factory, tmp_path):
    import requests

    from emulator_helpers import CONTROL
    from provision.errors import PlanRefused
    from test_apply_support import BILLING, ORG

    owner, security = "user:owner@example.com", "user:security@example.com"
    emu = emulator_factory(enforce_iam=True)
    for resource, role in ((ORG, "roles/resourcemanager.projectCreator"), (f"billingAccounts/{BILLING}", "roles/billing.user")):
        requests.put(f"{emu.url}/_emulator/policies/{resource}", headers=CONTROL, timeout=10,
                     json={"bindings": [{"role": role, "members": [owner]}]}).raise_for_status()
    create_project(emu.url, KEYS, member=security, billing=False, enable=())   # the security team's keys
    rings = discovery_client(emu.url, "cloudkms", "v1", security).projects().locations().keyRings()
    rings.create(parent=f"projects/{KEYS}/locations/us-central1", keyRingId="imaging", body={}).execute()
    key = rings.cryptoKeys().create(parent=f"projects/{KEYS}/locations/us-central1/keyRings/imaging",
                                    cryptoKeyId="dicom", body={"purpose": "ENCRYPT_DECRYPT"}).execute()["name"]

    def grant(role: str) -> None:
        policy = rings.cryptoKeys().getIamPolicy(resource=key).execute()
        policy["bindings"] = [{"role": role, "members": [owner]}]
        rings.cryptoKeys().setIamPolicy(resource=key, body={"policy": policy}).execute()

    bp = cmek_blueprint(tmp_path, "ohif-cmek-perm", key)
    target = Target(emulator=emu.url, token=f"emulator:{owner}")

    def refusal() -> str:
        try:
            lifecycle.plan(bp, target)
        except PlanRefused as exc:
            return str(exc)
        raise AssertionError("plan let through a key its caller may not use")

    assert "you cannot read" in refusal() and "roles/cloudkms.viewer" in refusal()   # nothing on the key yet
    grant("roles/cloudkms.viewer")
    said = refusal()
    assert "cloudkms.cryptoKeys.setIamPolicy" in said and "roles/cloudkms.admin" in said
    grant("roles/cloudkms.admin")
    assert lifecycle.plan(bp, target).step("kms-key-iam").action == "create"
