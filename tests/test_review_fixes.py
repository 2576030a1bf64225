"""Regression tests for the review findings (each fails without its fix), through the real
clients against the emulator."""
from __future__ import annotations

import pytest

from provision import provisioner
from provision.errors import ProvisionError
from provision.gcp.context import Ctx
from provision.gcp.target import Target
from provision.resources import bucket as bucket_mod
from provision.resources import iam
from test_apply_support import blueprint_dict, load, write_dicom


def _foreign_bucket_setup(emulator, tmp_path):
    """Project ohif-rv-c owns gs://ohif-rv-c-dicom (with objects); project ohif-rv-j exists without a bucket."""
    data = tmp_path / "data"
    write_dicom(data, studies=1)
    target = Target(emulator=emulator.url)
    c = load(tmp_path, blueprint_dict("ohif-rv-c", data, smoke={"min_studies": 1}), "c.yaml")
    provisioner.apply(c, target)
    j0 = load(tmp_path, blueprint_dict("ohif-rv-j", None, bucket=None,
                                       dicom_stores=[{"id": "primary"}], smoke={"min_studies": 0}), "j0.yaml")
    provisioner.apply(j0, target)
    j = load(tmp_path, blueprint_dict("ohif-rv-j", None, bucket={"name": "ohif-rv-c-dicom", "location": "US", "create": True},
                                      dicom_stores=[{"id": "primary",
                                                     "import": {"uri": "gs://ohif-rv-c-dicom/dicom/**.dcm"}}]), "j.yaml")
    return target, c, j


def test_create_true_on_another_projects_bucket_is_a_plan_error(emulator, tmp_path):
    target, c, j = _foreign_bucket_setup(emulator, tmp_path)
    before = iam.bucket_io(Ctx(target), c.bucket.name).read()["bindings"]
    with pytest.raises(ProvisionError, match=r"bucket name taken by project ohif-rv-c .*ohif-rv-j.*create: false"):
        provisioner.plan(j, target)
    with pytest.raises(ProvisionError, match="taken by project ohif-rv-c"):
        provisioner.apply(j, target)
    assert iam.bucket_io(Ctx(target), c.bucket.name).read()["bindings"] == before


def test_destroy_never_deletes_another_projects_bucket(emulator, tmp_path):
    target, c, j = _foreign_bucket_setup(emulator, tmp_path)
    ctx = Ctx(target)
    before = iam.bucket_io(ctx, c.bucket.name).read()["bindings"]
    n_objects = len(bucket_mod.list_objects(ctx, c.bucket.name))
    out = provisioner.destroy(j, target, delete_data=True)
    assert not any(s.id.startswith("bucket") for s in out.steps)
    assert any("another project" in k for k in out.kept)
    assert bucket_mod.read(ctx, c.bucket.name).exists
    assert len(bucket_mod.list_objects(ctx, c.bucket.name)) == n_objects > 0
    assert iam.bucket_io(ctx, c.bucket.name).read()["bindings"] == before


# ---------------------------------------------------------------------------- 2, 3: clear errors outside the engine
import time  # noqa: E402

from provision.errors import UsageError  # noqa: E402
from provision.resources import project as project_mod  # noqa: E402


def test_unreachable_emulator_fails_fast_with_a_clear_message(tmp_path):
    bp = load(tmp_path, blueprint_dict("ohif-rv-a", None))
    t0 = time.monotonic()
    with pytest.raises(ProvisionError, match=r"cannot reach http://127.0.0.1:1: connection refused — is the emulator running"):
        provisioner.plan(bp, Target(emulator="http://127.0.0.1:1"))
    assert time.monotonic() - t0 < 20


@pytest.mark.parametrize("url", ["ftp://x", "http://[::1", "http://127.0.0.1:99999", "http://:80", "127.0.0.1:8765"])
def test_bad_emulator_url_is_a_usage_error(url):
    with pytest.raises(UsageError) as info:
        Target(emulator=url)
    assert "http://ftp://" not in str(info.value)


def test_billing_account_not_ours_is_a_clear_plan_error(emulator, tmp_path):
    bp = load(tmp_path, blueprint_dict("ohif-rv-b", None, project={
        "id": "ohif-rv-b", "parent": "organizations/123456789012", "billing_account": "ABCDEF-ABCDEF-ABCDEF"}))
    with pytest.raises(ProvisionError, match=r"billing account ABCDEF-ABCDEF-ABCDEF not found or not yours; "
                                             r"you need Billing Account User \(roles/billing.user\)"):
        provisioner.plan(bp, Target(emulator=emulator.url))


def test_no_token_against_an_emulator_enforcing_iam(emulator_factory, tmp_path):
    emu = emulator_factory(enforce_iam=True)
    bp = load(tmp_path, blueprint_dict("ohif-rv-c", None))
    with pytest.raises(ProvisionError, match="set PROVISION_EMULATOR_TOKEN=emulator:user:NAME@DOMAIN"):
        provisioner.plan(bp, Target(emulator=emu.url))
    with pytest.raises(ProvisionError, match="PROVISION_EMULATOR_TOKEN"):
        provisioner.status(bp, Target(emulator=emu.url))
    with pytest.raises(ProvisionError, match="PROVISION_EMULATOR_TOKEN"):
        provisioner.destroy_plan(bp, Target(emulator=emu.url))


# ---------------------------------------------------------------------------- 18: status of a project pending deletion
def test_status_reports_a_project_pending_deletion(emulator, tmp_path):
    target = Target(emulator=emulator.url)
    bp = load(tmp_path, blueprint_dict("ohif-rv-d", None, bucket=None, dicom_stores=[{"id": "primary"}],
                                       smoke={"min_studies": 0}))
    provisioner.apply(bp, target)
    project_mod.delete(Ctx(target), bp.project.id)
    report = provisioner.status(bp, target)
    assert not report.in_sync
    assert report.resources[0]["state"] == "DELETE_REQUESTED"
    assert "DELETE_REQUESTED" in report.render()
    steps, kept = provisioner.destroy_plan(bp, target)
    assert steps == [] and kept[0].startswith("nothing to destroy: project ohif-rv-d is DELETE_REQUESTED")


# ---------------------------------------------------------------------------- 11: precondition only around enable
def _http_error(status: int, message: str):
    import json

    import httplib2
    from googleapiclient.errors import HttpError

    body = json.dumps({"error": {"code": status, "message": message, "status": "FAILED_PRECONDITION"}}).encode()
    return HttpError(httplib2.Response({"status": status}), body)


def test_precondition_failed_is_retried_only_for_the_enable_call():
    from provision.gcp.retry import ENABLE_PREDICATES, RetryPolicy

    exc = _http_error(400, "Precondition check failed.")
    assert RetryPolicy().classify(exc) is None
    assert RetryPolicy().with_predicates(*ENABLE_PREDICATES).classify(exc)


# ---------------------------------------------------------------------------- 4: destroy revokes only what provision added
def test_destroy_leaves_pre_existing_grants_the_blueprint_names(emulator, tmp_path):
    data = tmp_path / "data"
    write_dicom(data, studies=1)
    target = Target(emulator=emulator.url)
    d = blueprint_dict("ohif-rv-e", data, smoke={"min_studies": 1})
    d["iam"] = [{"member": "group:radiology@example.com", "roles": ["roles/serviceusage.serviceUsageConsumer"]},
                {"member": "user:old@example.com", "roles": ["roles/serviceusage.serviceUsageConsumer"]}]
    d["dicom_stores"][0]["iam"].append({"member": "user:old@example.com", "roles": ["roles/healthcare.dicomViewer"]})
    bp = load(tmp_path, d)
    # first, a project with a store, and grants made outside provision on both
    pre = load(tmp_path, blueprint_dict("ohif-rv-e", None, bucket=None, iam=None,
                                        dicom_stores=[{"id": "primary"}], smoke={"min_studies": 0}), "pre.yaml")
    provisioner.apply(pre, target)
    ctx = Ctx(target)
    store = provisioner.plan_mod.store_name(bp, "primary")
    iam.add(ctx, iam.project_io(ctx, bp.project.id), [("roles/serviceusage.serviceUsageConsumer", "user:old@example.com")])
    iam.add(ctx, iam.dicom_store_io(ctx, store), [("roles/healthcare.dicomViewer", "user:old@example.com")])
    provisioner.apply(bp, target)
    out = provisioner.destroy(bp, target, delete_data=False)
    ppol = iam.project_io(ctx, bp.project.id).read()
    spol = iam.dicom_store_io(ctx, store).read()
    # the pre-existing pairs remain; the pairs provision added are gone
    assert not iam.missing(ppol, [("roles/serviceusage.serviceUsageConsumer", "user:old@example.com")])
    assert not iam.missing(spol, [("roles/healthcare.dicomViewer", "user:old@example.com")])
    assert iam.missing(ppol, [("roles/serviceusage.serviceUsageConsumer", "group:radiology@example.com")])
    assert iam.missing(spol, [("roles/healthcare.dicomViewer", "group:radiology@example.com")])
    assert any("user:old@example.com" in k and "left alone" in k for k in out.kept)
    # and the marks are gone with the grants they recorded
    assert not any(k.startswith(iam.MARK_PREFIX) for k in project_mod.read(ctx, bp.project.id).labels)
    assert not any(k.startswith(iam.MARK_PREFIX) for k in provisioner.dicom_store.read(ctx, store).labels)
    assert not any(k.startswith(iam.MARK_PREFIX) for k in bucket_mod.read(ctx, bp.bucket.name).labels)


# ---------------------------------------------------------------------------- 7: no display_name never renames
def test_absent_display_name_never_renames_an_adopted_project(emulator, tmp_path):
    target = Target(emulator=emulator.url)
    named = blueprint_dict("ohif-rv-f", None, bucket=None, dicom_stores=[{"id": "primary"}], smoke={"min_studies": 0})
    provisioner.apply(load(tmp_path, named, "named.yaml"), target)
    anon = dict(named, project={k: v for k, v in named["project"].items() if k != "display_name"})
    bp = load(tmp_path, anon, "anon.yaml")
    assert bp.project.display_name is None
    assert not provisioner.plan(bp, target).has_changes
    provisioner.apply(bp, target)
    assert project_mod.read(Ctx(target), "ohif-rv-f").display_name == "Provision Test"


# ---------------------------------------------------------------------------- 16: uploads stop on Ctrl-C
def test_upload_starts_no_file_once_cancelled(emulator, tmp_path):
    import threading

    from provision.gcp.retry import Cancelled

    data = tmp_path / "data"
    write_dicom(data, studies=2)
    target = Target(emulator=emulator.url)
    bp = load(tmp_path, blueprint_dict("ohif-rv-g", data))
    ctx = Ctx(target)
    project_mod.create(ctx, bp.project)
    bucket_mod.create(ctx, bp.project.id, bp.bucket)
    ctx.cancel = threading.Event()
    ctx.cancel.set()
    with pytest.raises(Cancelled):
        bucket_mod.upload(ctx, bp.bucket.name, bucket_mod.local_files(bp.bucket.upload))
    assert bucket_mod.list_objects(ctx, bp.bucket.name) == {}
