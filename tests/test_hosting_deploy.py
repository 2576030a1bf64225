"""The hosted viewer's resources (viewer.hosting, issue 17) planned and applied against the emulator
through the real clients: the APIs it needs, its service account and that account's read access to
exactly the blueprint's stores; access google-sign-in refused at plan with its blueprint line."""
from __future__ import annotations

import pytest

from provision.errors import PlanRefused
from provision.gcp.context import Ctx
from provision.gcp.target import Target
from provision.resources import iam, store_calls
from provision.running import lifecycle
from test_apply_support import blueprint_dict, load, mark, records, writes

HOSTING = {"region": "us-central1", "members": ["user:ana@example.com"]}
ACCOUNT = "ohif-viewer-viewer@{pid}.iam.gserviceaccount.com"


def _bp(tmp_path, pid: str, hosting: dict | None = HOSTING, **over):
    data = blueprint_dict(pid, **over)
    data["dicom_stores"][0].pop("import")
    data["smoke"] = {"min_studies": 0}
    if hosting is not None:
        data["viewer"]["hosting"] = dict(hosting)
    return load(tmp_path, data)


def _store_policy(target: Target, bp) -> set:
    name = f"projects/{bp.project.id}/locations/us-central1/datasets/imaging/dicomStores/primary"
    return iam.unconditional(store_calls.read_iam(Ctx(target), name))


def test_hosting_enables_its_apis_and_makes_the_viewer_account_with_read_access_to_the_stores(emulator_factory,
                                                                                               tmp_path):
    rec = tmp_path / "rec.jsonl"
    emu = emulator_factory(record=rec)
    target = Target(emulator=emu.url)
    pid = "ohif-host-acct"
    bp = _bp(tmp_path, pid)
    plan = lifecycle.plan(bp, target)
    apis = plan.step("apis")
    assert {"+ run.googleapis.com", "+ iap.googleapis.com", "+ artifactregistry.googleapis.com",
            "+ cloudbuild.googleapis.com", "+ iam.googleapis.com"} <= set(apis.changes)
    account = ACCOUNT.format(pid=pid)
    assert plan.step("viewer-account").action == "create" and plan.step("viewer-account").resource == account
    ids = [s.id for s in plan.steps]
    assert ids.index("viewer-account") < ids.index("store-iam:primary")
    assert "viewer-account" in plan.step("store-iam:primary").deps
    assert f"+ serviceAccount:{account} roles/healthcare.dicomViewer" in plan.step("store-iam:primary").changes

    lifecycle.apply(bp, target)
    assert ("roles/healthcare.dicomViewer", f"serviceAccount:{account}") in _store_policy(target, bp)
    got = Ctx(target).target.iam_admin().projects().serviceAccounts().get(
        name=f"projects/{pid}/serviceAccounts/{account}").execute()
    assert got["email"] == account

    # Hosting removed: the grant is revoked and the account deleted (both were provision's).
    bare = _bp(tmp_path, pid, hosting=None)
    again = lifecycle.plan(bare, target)
    assert f"- serviceAccount:{account} roles/healthcare.dicomViewer" in again.step("store-iam:primary").changes
    removal = next(s for s in again.steps if s.kind == "viewer-account")
    assert removal.action == "delete" and "store-iam:primary" in removal.deps
    lifecycle.apply(bare, target)
    assert ("roles/healthcare.dicomViewer", f"serviceAccount:{account}") not in _store_policy(target, bp)
    before = mark(rec)
    assert not lifecycle.apply(bare, target).changed
    assert writes(records(rec)[before:]) == []


def test_google_sign_in_is_refused_at_its_blueprint_line(emulator, tmp_path):
    bp = _bp(tmp_path, "ohif-host-gsi", hosting={"region": "us-central1", "access": "google-sign-in"})
    with pytest.raises(PlanRefused) as info:
        lifecycle.plan(bp, Target(emulator=emulator.url))
    assert info.value.exit_code == 2
    text = str(info.value)
    assert "bp.yaml:" in text and "google-sign-in is not deployable yet" in text and "Nothing was changed" in text


def test_viewer_sources_of_other_projects_say_who_must_grant_the_viewer_account(emulator, tmp_path):
    source = "projects/other-team/locations/us-central1/datasets/d/dicomStores/s"
    bp = _bp(tmp_path, "ohif-host-src", viewer_sources=[{"name": "theirs", "store": source}])
    plan = lifecycle.plan(bp, Target(emulator=emulator.url))
    account = ACCOUNT.format(pid="ohif-host-src")
    note = next(n for n in plan.notes if n.startswith("viewer source theirs: the hosted viewer"))
    assert f"--member=serviceAccount:{account}" in note and "--project=other-team" in note
