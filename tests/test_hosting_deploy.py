"""The hosted viewer's resources (viewer.hosting, issue 17) planned and applied against the emulator
through the real clients: the APIs it needs, its service account and that account's read access to
exactly the blueprint's stores (access google-sign-in: tests/test_hosting_sign_in.py)."""
from __future__ import annotations

from datetime import datetime

import pytest
from test_apply_support import blueprint_dict, load, mark, records, writes

from provision.gcp.context import Ctx
from provision.gcp.target import Target
from provision.resources import iam, store_calls
from provision.running import lifecycle

HOSTING = {"region": "us-central1", "members": ["user:ana@example.com"]}
HOSTING_ORDER = ["apis", "viewer-account", "store-iam:primary", "artifact-repo", "viewer-archive", "viewer-build",
                 "viewer-service", "viewer-invoker", "viewer-access"]
ACCOUNT = "ohif-viewer-viewer@{pid}.iam.gserviceaccount.com"


pytestmark = pytest.mark.usefixtures("small_ohif_dist")   # the hosted archive from a one-page viewer


def _apply(bp, target):
    return lifecycle.apply(bp, target)


def _bp(tmp_path, pid: str, hosting: dict | None = HOSTING, **over):
    data = blueprint_dict(pid, **over)
    data["dicom_stores"][0].pop("import")
    data["smoke"] = {"min_studies": 0}
    if hosting is not None:
        data["viewer"]["hosting"] = dict(hosting)
    return load(tmp_path, data)


def _store_policy(target: Target, bp) -> set:
    name = f"projects/{bp.project.id}/locations/us-central1/datasets/imaging/dicomStores/primary"
    return iam.unconditional(store_calls.read_iam(Ctx(target), name) or {})   # None: the store is gone


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

    _apply(bp, target)
    assert ("roles/healthcare.dicomViewer", f"serviceAccount:{account}") in _store_policy(target, bp)
    # The deploy is first polled when a deploy is usually done (15 s on Google, x0.02 here: gcp/polls.py),
    # then at a tenth of the time waited so far, not at the eager floor (it used to be polled every 20 ms).
    got = records(rec)
    when = lambda r: datetime.fromisoformat(r["t"].replace("Z", "+00:00")).timestamp()  # noqa: E731
    deployed = next(when(r) for r in got if r["method"] == "POST" and r["path"].endswith("/services"))
    polls = [when(r) for r in got if r["method"] == "GET" and "/v2/" in r["path"] and "/operations/" in r["path"]]
    assert polls and polls[0] - deployed >= 0.3 * 0.9, (deployed, polls)
    for a, b in zip(polls, polls[1:], strict=False):
        assert b - a >= max(0.02, 0.1 * (a - deployed)) * 0.9, (deployed, polls)
    got = Ctx(target).target.iam_admin().projects().serviceAccounts().get(
        name=f"projects/{pid}/serviceAccounts/{account}").execute()
    assert got["email"] == account

    # Hosting removed: the grant is revoked and the account deleted (both were provision's).
    bare = _bp(tmp_path, pid, hosting=None)
    again = lifecycle.plan(bare, target)
    assert f"- serviceAccount:{account} roles/healthcare.dicomViewer" in again.step("store-iam:primary").changes
    removal = next(s for s in again.steps if s.kind == "viewer-account")
    assert not {"viewer-archive", "viewer-build", "viewer-invoker", "viewer-access"} & {s.id for s in again.steps}
    assert removal.action == "delete" and "store-iam:primary" in removal.deps
    lifecycle.apply(bare, target)
    assert ("roles/healthcare.dicomViewer", f"serviceAccount:{account}") not in _store_policy(target, bp)
    before = mark(rec)
    assert not lifecycle.apply(bare, target).changed
    assert writes(records(rec)[before:]) == []


def test_plan_lists_the_hosting_steps_in_order_and_states_the_launch_stage(emulator, tmp_path, small_ohif_dist):
    bp = _bp(tmp_path, "ohif-host-order")
    plan = lifecycle.plan(bp, Target(emulator=emulator.url))
    ids = [s.id for s in plan.steps]
    assert [i for i in ids if i in HOSTING_ORDER] == HOSTING_ORDER
    service = plan.step("viewer-service")
    assert service.action == "create" and "launch stage BETA" in service.changes[0]
    assert {"viewer-build", "viewer-account"} <= set(service.deps)
    build = plan.step("viewer-build")
    assert build.resource == "us-central1-docker.pkg.dev/ohif-host-order/cloud-run-source-deploy/ohif-viewer"
    assert "source archive sha256 " in build.changes[0] and "?" not in build.changes[0]
    # The upload waits only for the record's bucket, not for the APIs the build needs: it overlaps their enabling.
    assert plan.step("viewer-archive").deps == ["record"] and "viewer-archive" in build.deps
    assert plan.step("viewer-access").changes == ["+ user:ana@example.com roles/iap.httpsResourceAccessor"]
    assert "roles/run.invoker" in plan.step("viewer-invoker").changes[-1]
    assert not any("not deploy" in n for n in plan.notes)


def test_viewer_sources_of_other_projects_say_who_must_grant_the_viewer_account(emulator, tmp_path):
    source = "projects/other-team/locations/us-central1/datasets/d/dicomStores/s"
    bp = _bp(tmp_path, "ohif-host-src", viewer_sources=[{"name": "theirs", "store": source}])
    plan = lifecycle.plan(bp, Target(emulator=emulator.url))
    account = ACCOUNT.format(pid="ohif-host-src")
    note = next(n for n in plan.notes if n.startswith("viewer source theirs: the hosted viewer"))
    assert f"--member=serviceAccount:{account}" in note and "--project=other-team" in note


def test_destroy_removes_the_viewer_account_and_its_grants(emulator, tmp_path):
    target = Target(emulator=emulator.url)
    pid = "ohif-host-destroy"
    bp = _bp(tmp_path, pid)
    _apply(bp, target)
    account = ACCOUNT.format(pid=pid)
    plan = lifecycle.destroy_plan(bp, target)
    kinds = {s.kind for s in plan.steps}
    assert "viewer-account" in kinds
    lifecycle.destroy(bp, target, plan_=plan)
    assert ("roles/healthcare.dicomViewer", f"serviceAccount:{account}") not in _store_policy(target, bp)
    from googleapiclient.errors import HttpError
    with pytest.raises(HttpError) as info:
        Ctx(target).target.iam_admin().projects().serviceAccounts().get(
            name=f"projects/{pid}/serviceAccounts/{account}").execute()
    assert info.value.resp.status == 404
