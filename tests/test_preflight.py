"""Preflight: testIamPermissions before any change, every missing permission named with its role.
Runs against an emulator with --enforce-iam, each caller a bearer token `emulator:MEMBER`."""
from __future__ import annotations

import pytest
import requests

from emulator_helpers import CONTROL
from provision.running import lifecycle
from provision.gcp.target import Target
from provision.checks.preflight import PreflightError
from test_apply_support import BILLING, ORG, blueprint_dict, load, records, write_dicom, writes

OWNER = "user:owner@example.com"


def seed_policy(emu, resource: str, bindings: list[dict]) -> None:
    r = requests.put(f"{emu.url}/_emulator/policies/{resource}", json={"bindings": bindings}, timeout=10, headers=CONTROL)
    assert r.status_code == 200, r.text


def as_member(emu, member: str) -> Target:
    return Target(emulator=emu.url, token=f"emulator:{member}")


@pytest.fixture
def iam_emulator(emulator_factory, tmp_path):
    emu = emulator_factory(enforce_iam=True, record=tmp_path / "rec.jsonl")
    seed_policy(emu, ORG, [{"role": "roles/resourcemanager.projectCreator", "members": [OWNER]}])
    seed_policy(emu, f"billingAccounts/{BILLING}", [{"role": "roles/billing.user", "members": [OWNER]}])
    return emu


def test_missing_billing_permission_is_named_with_its_role_and_nothing_changes(iam_emulator, tmp_path):
    bp = load(tmp_path, blueprint_dict("ohif-pre-one", bucket=None,
                                       dicom_stores=[{"id": "primary"}]))
    with pytest.raises(PreflightError) as err:
        lifecycle.apply(bp, as_member(iam_emulator, "user:nobody@example.com"))
    text = str(err.value)
    assert "billing.resourceAssociations.create" in text
    assert "Billing Account User (roles/billing.user)" in text
    assert f"billingAccounts/{BILLING}" in text
    assert writes(records(tmp_path / "rec.jsonl")) == []


def test_every_missing_project_permission_is_listed(iam_emulator, tmp_path):
    data = tmp_path / "data"
    write_dicom(data, studies=1)
    bp = load(tmp_path, blueprint_dict("ohif-pre-two", data, smoke={"min_studies": 1}))
    owner = as_member(iam_emulator, OWNER)
    lifecycle.apply(bp, owner)          # the owner builds it all, under enforced IAM
    # A radiologist who only reads images may not apply it.
    with pytest.raises(PreflightError) as err:
        lifecycle.plan(bp, as_member(iam_emulator, "group:radiology@example.com"))
    text = str(err.value)
    for title, role in [("Service Usage Admin", "roles/serviceusage.serviceUsageAdmin"),
                        ("Healthcare Dataset Administrator", "roles/healthcare.datasetAdmin"),
                        ("Storage Admin", "roles/storage.admin"),
                        ("Project IAM Admin", "roles/resourcemanager.projectIamAdmin")]:
        assert f"{title} ({role})" in text, text
    assert "serviceusage.services.enable" in text and "storage.buckets.setIamPolicy" in text
    # The owner passes preflight and the re-apply is a no-op.
    assert not lifecycle.apply(bp, owner).changed


def test_without_enforce_iam_everything_is_granted(emulator, tmp_path):
    bp = load(tmp_path, blueprint_dict("ohif-pre-three", bucket=None, dicom_stores=[{"id": "primary"}]))
    plan = lifecycle.plan(bp, Target(emulator=emulator.url))
    assert plan.step("project").action == "create"


def test_the_bearer_token_never_appears_in_results_events_or_errors(iam_emulator, tmp_path):
    import json

    from provision.redact import redact
    from test_apply_support import Events

    token = f"emulator:{OWNER}"
    bp = load(tmp_path, blueprint_dict("ohif-pre-token", bucket=None, dicom_stores=[{"id": "s"}]))
    events = Events()
    result = lifecycle.apply(bp, as_member(iam_emulator, OWNER), events)
    with pytest.raises(PreflightError) as err:
        lifecycle.apply(bp, as_member(iam_emulator, "user:nobody@example.com"), events)
    text = json.dumps(result.to_json()) + result.render() + result.plan.render() + str(err.value)
    text += "".join(e.text() for e in events.events) + repr(as_member(iam_emulator, OWNER))
    assert token not in text and "emulator:user:nobody" not in text
    assert "ya29" not in redact("401 for Bearer ya29.a0AfH6SMB and access_token=ya29.x")


def test_missing_project_creator_on_the_parent_is_named(iam_emulator, tmp_path):
    # This caller may use the billing account but holds nothing on the organization.
    member = "user:billing-only@example.com"
    seed_policy(iam_emulator, f"billingAccounts/{BILLING}", [{"role": "roles/billing.user", "members": [OWNER, member]}])
    bp = load(tmp_path, blueprint_dict("ohif-pre-parent", bucket=None, dicom_stores=[{"id": "primary"}]))
    with pytest.raises(PreflightError) as err:
        lifecycle.plan(bp, as_member(iam_emulator, member))
    text = str(err.value)
    assert "resourcemanager.projects.create" in text and ORG in text
    assert "roles/resourcemanager.projectCreator" in text
    assert writes(records(tmp_path / "rec.jsonl")) == []
