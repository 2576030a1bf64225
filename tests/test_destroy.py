"""destroy deletes only what the blueprint describes: data and the project are kept unless asked,
and only the IAM bindings the blueprint names are removed."""
from __future__ import annotations

import pytest

from provision.running import lifecycle
from provision.gcp.context import Ctx
from provision.gcp.target import Target
from provision.resources import bucket as bucket_mod
from provision.resources import dataset, dicom_store, iam, project
from test_apply_support import blueprint_dict, load, write_dicom


@pytest.fixture
def built(emulator, tmp_path):
    data = tmp_path / "data"
    write_dicom(data, studies=1)
    target = Target(emulator=emulator.url)
    bp = load(tmp_path, blueprint_dict("ohif-destroy", data, smoke={"min_studies": 1}))
    result = lifecycle.apply(bp, target)
    # Someone else's grants, next to ours: on the same roles and on others.
    other = Ctx(Target(emulator=emulator.url))
    store = result.outputs["dicom_stores"]["primary"]["name"]
    iam.add(other, iam.project_io(other, bp.project.id), [
        ("roles/serviceusage.serviceUsageConsumer", "user:colleague@example.com"),
        ("roles/healthcare.datasetAdmin", "user:admin@example.com")])
    iam.add(other, iam.dicom_store_io(other, store), [("roles/healthcare.dicomViewer", "user:colleague@example.com")])
    return target, bp, result, store


def test_destroy_keeps_data_and_project_and_removes_only_our_bindings(built):
    target, bp, result, store = built
    out = lifecycle.destroy(bp, target)
    ctx = Ctx(target)
    # kept: the store holds data, so its dataset stays; the bucket holds objects; the project.
    assert dicom_store.read(ctx, store) is not None
    assert dataset.read(ctx, result.outputs["dataset"]) is not None
    assert bucket_mod.read(ctx, bp.bucket.name).exists
    assert project.read(ctx, bp.project.id) is not None
    assert any("holds 1 study" in k for k in out.kept) and any("--delete-project" in k for k in out.kept)
    # our bindings are gone, theirs stay (same role and other roles)
    ppol = iam.project_io(ctx, bp.project.id).read()
    assert iam.missing(ppol, [("roles/serviceusage.serviceUsageConsumer", "group:radiology@example.com")])
    assert not iam.missing(ppol, [("roles/serviceusage.serviceUsageConsumer", "user:colleague@example.com"),
                                  ("roles/healthcare.datasetAdmin", "user:admin@example.com")])
    spol = iam.dicom_store_io(ctx, store).read()
    assert iam.missing(spol, [("roles/healthcare.dicomViewer", "group:radiology@example.com")])
    assert not iam.missing(spol, [("roles/healthcare.dicomViewer", "user:colleague@example.com")])
    # the agent keeps what it needs to exist (its own role); its bucket read grant is ours and goes
    agent = f"serviceAccount:{result.outputs['service_agent']}"
    assert not iam.missing(ppol, [("roles/healthcare.serviceAgent", agent)])
    assert iam.missing(iam.bucket_io(ctx, bp.bucket.name).read(), [("roles/storage.objectViewer", agent)])
    # a second destroy has nothing left to remove: no steps at all (what stays is in `kept`)
    again = lifecycle.destroy(bp, target)
    assert again.steps == [] and any("holds 1 study" in k for k in again.kept)


def test_destroy_with_delete_data_deletes_stores_dataset_and_bucket_but_not_the_project(built):
    target, bp, result, store = built
    with pytest.raises(lifecycle.NeedsFlag, match="delete_data") as info:
        lifecycle.destroy(bp, target, delete_project=True)
    assert info.value.needs == "delete_data"
    lifecycle.destroy(bp, target, delete_data=True)
    ctx = Ctx(target)
    assert dicom_store.read(ctx, store) is None
    assert dataset.read(ctx, result.outputs["dataset"]) is None
    assert not bucket_mod.read(ctx, bp.bucket.name).exists
    assert project.read(ctx, bp.project.id) is not None
    # and apply builds it again
    plan = lifecycle.plan(bp, target)
    assert {s.id for s in plan.changes} >= {"bucket", "upload", "dataset", "store:primary", "import:primary", "project-iam"}
    assert lifecycle.apply(bp, target).ok


def test_destroy_with_delete_project(built):
    target, bp, result, store = built
    lifecycle.destroy(bp, target, delete_data=True, delete_project=True)
    live = project.read(Ctx(target), bp.project.id)
    assert live is None or live.state == "DELETE_REQUESTED"
