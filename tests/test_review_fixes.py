"""Regression tests for the review findings (each fails without its fix), through the real
clients against the emulator."""
from __future__ import annotations

import pytest

from provision.running import lifecycle
from provision.errors import ProvisionError
from provision.gcp.context import Ctx
from provision.gcp.target import Target
from provision.resources import bucket as bucket_mod
from provision.resources import dicom_store as dicom_store_mod
from provision.resources import bucket_reads, iam, upload_files
from test_apply_support import blueprint_dict, load, records, write_dicom, writes


def _foreign_bucket_setup(emulator, tmp_path):
    """Project ohif-rv-c owns gs://ohif-rv-c-dicom (with objects); project ohif-rv-j exists without a bucket."""
    data = tmp_path / "data"
    write_dicom(data, studies=1)
    target = Target(emulator=emulator.url)
    c = load(tmp_path, blueprint_dict("ohif-rv-c", data, smoke={"min_studies": 1}), "c.yaml")
    lifecycle.apply(c, target)
    j0 = load(tmp_path, blueprint_dict("ohif-rv-j", None, bucket=None,
                                       dicom_stores=[{"id": "primary"}], smoke={"min_studies": 0}), "j0.yaml")
    lifecycle.apply(j0, target)
    j = load(tmp_path, blueprint_dict("ohif-rv-j", None, bucket={"name": "ohif-rv-c-dicom", "location": "US", "create": True},
                                      dicom_stores=[{"id": "primary",
                                                     "import": {"uri": "gs://ohif-rv-c-dicom/dicom/**.dcm"}}]), "j.yaml")
    return target, c, j


def test_create_true_on_another_projects_bucket_is_a_plan_error(emulator, tmp_path):
    target, c, j = _foreign_bucket_setup(emulator, tmp_path)
    before = iam.bucket_io(Ctx(target), c.bucket.name).read()["bindings"]
    with pytest.raises(ProvisionError, match=r"bucket name taken by project ohif-rv-c .*ohif-rv-j.*create: false"):
        lifecycle.plan(j, target)
    with pytest.raises(ProvisionError, match="taken by project ohif-rv-c"):
        lifecycle.apply(j, target)
    assert iam.bucket_io(Ctx(target), c.bucket.name).read()["bindings"] == before


def test_destroy_never_deletes_another_projects_bucket(emulator, tmp_path):
    target, c, j = _foreign_bucket_setup(emulator, tmp_path)
    ctx = Ctx(target)
    before = iam.bucket_io(ctx, c.bucket.name).read()["bindings"]
    n_objects = len(bucket_reads.list_objects(ctx, c.bucket.name))
    out = lifecycle.destroy(j, target, delete_data=True)
    assert not any(s.id.startswith("bucket") for s in out.steps)
    assert any("another project" in k for k in out.kept)
    assert bucket_mod.read(ctx, c.bucket.name).exists
    assert len(bucket_reads.list_objects(ctx, c.bucket.name)) == n_objects > 0
    assert iam.bucket_io(ctx, c.bucket.name).read()["bindings"] == before


# ---------------------------------------------------------------------------- 2, 3: clear errors outside the engine
import time  # noqa: E402

from provision.errors import UsageError  # noqa: E402
from provision.resources import project as project_mod  # noqa: E402


def test_unreachable_emulator_fails_fast_with_a_clear_message(tmp_path):
    bp = load(tmp_path, blueprint_dict("ohif-rv-a", None))
    t0 = time.monotonic()
    with pytest.raises(ProvisionError, match=r"cannot reach http://127.0.0.1:1: connection refused\n  fix: is the emulator running"):
        lifecycle.plan(bp, Target(emulator="http://127.0.0.1:1"))
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
        lifecycle.plan(bp, Target(emulator=emulator.url))


def test_no_token_against_an_emulator_enforcing_iam(emulator_factory, tmp_path):
    emu = emulator_factory(enforce_iam=True)
    bp = load(tmp_path, blueprint_dict("ohif-rv-c", None))
    with pytest.raises(ProvisionError, match="set PROVISION_EMULATOR_TOKEN=emulator:user:NAME@DOMAIN"):
        lifecycle.plan(bp, Target(emulator=emu.url))
    with pytest.raises(ProvisionError, match="PROVISION_EMULATOR_TOKEN"):
        lifecycle.status(bp, Target(emulator=emu.url))
    with pytest.raises(ProvisionError, match="PROVISION_EMULATOR_TOKEN"):
        lifecycle.destroy_plan(bp, Target(emulator=emu.url))


# ---------------------------------------------------------------------------- 18: status of a project pending deletion
def test_status_reports_a_project_pending_deletion(emulator, tmp_path):
    target = Target(emulator=emulator.url)
    bp = load(tmp_path, blueprint_dict("ohif-rv-d", None, bucket=None, dicom_stores=[{"id": "primary"}],
                                       smoke={"min_studies": 0}))
    lifecycle.apply(bp, target)
    project_mod.delete(Ctx(target), bp.project.id)
    report = lifecycle.status(bp, target)
    assert not report.in_sync
    assert report.resources[0]["state"] == "pending_deletion"
    assert "DELETE_REQUESTED" in report.render()
    steps, kept = lifecycle.destroy_plan(bp, target)
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
    lifecycle.apply(pre, target)
    ctx = Ctx(target)
    store = lifecycle.plan_mod.store_name(bp, "primary")
    iam.add(ctx, iam.project_io(ctx, bp.project.id), [("roles/serviceusage.serviceUsageConsumer", "user:old@example.com")])
    iam.add(ctx, iam.dicom_store_io(ctx, store), [("roles/healthcare.dicomViewer", "user:old@example.com")])
    lifecycle.apply(bp, target)
    out = lifecycle.destroy(bp, target, delete_data=False)
    ppol = iam.project_io(ctx, bp.project.id).read()
    spol = iam.dicom_store_io(ctx, store).read()
    # the pre-existing pairs remain; the pairs provision added are gone
    assert not iam.missing(ppol, [("roles/serviceusage.serviceUsageConsumer", "user:old@example.com")])
    assert not iam.missing(spol, [("roles/healthcare.dicomViewer", "user:old@example.com")])
    assert iam.missing(ppol, [("roles/serviceusage.serviceUsageConsumer", "group:radiology@example.com")])
    assert iam.missing(spol, [("roles/healthcare.dicomViewer", "group:radiology@example.com")])
    assert any("user:old@example.com" in k and "not granted by provision: left alone" in k for k in out.kept), out.kept
    # and the marks are gone with the grants they recorded
    assert not any(k.startswith(iam.MARK_PREFIX) for k in project_mod.read(ctx, bp.project.id).labels)
    assert not any(k.startswith(iam.MARK_PREFIX) for k in dicom_store_mod.read(ctx, store).labels)
    assert not any(k.startswith(iam.MARK_PREFIX) for k in bucket_mod.read(ctx, bp.bucket.name).labels)


# ---------------------------------------------------------------------------- 7: no display_name never renames
def test_absent_display_name_never_renames_an_adopted_project(emulator, tmp_path):
    target = Target(emulator=emulator.url)
    named = blueprint_dict("ohif-rv-f", None, bucket=None, dicom_stores=[{"id": "primary"}], smoke={"min_studies": 0})
    lifecycle.apply(load(tmp_path, named, "named.yaml"), target)
    anon = dict(named, project={k: v for k, v in named["project"].items() if k != "display_name"})
    bp = load(tmp_path, anon, "anon.yaml")
    assert bp.project.display_name is None
    assert not lifecycle.plan(bp, target).has_changes
    lifecycle.apply(bp, target)
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
        upload_files.upload(ctx, bp.bucket.name, upload_files.local_files(bp.bucket.upload))
    assert bucket_reads.list_objects(ctx, bp.bucket.name) == {}


# ---------------------------------------------------------------------------- R1: upload needs create: true
def test_upload_with_create_false_is_refused_at_the_upload_key(tmp_path):
    from provision.blueprint.models import Blueprint
    from provision.errors import BlueprintError

    data = tmp_path / "data"
    data.mkdir()
    d = blueprint_dict("ohif-rv-h", data, bucket={"name": "ohif-rv-h-dicom", "create": False,
                                                  "upload": {"from": str(data), "prefix": "dicom/"}})
    with pytest.raises(BlueprintError) as info:
        load(tmp_path, d)
    text = str(info.value)
    lines = (tmp_path / "bp.yaml").read_text().splitlines()
    row = next(i for i, line in enumerate(lines, 1) if line.strip().startswith("upload:"))
    col = lines[row - 1].index("upload:") + 1
    assert f"bp.yaml:{row}:{col}: bucket.upload: upload needs create: true; with create: false the bucket is only " \
           f"read (upload the files yourself, or set create: true)" in text
    # the same rule guards a blueprint built in Python
    d["bucket"]["upload"]["from"] = str(data)
    with pytest.raises(ValueError, match="upload needs create: true"):
        Blueprint.model_validate(d)
    # create: false alone, and create: true with an upload, stay valid
    load(tmp_path, dict(d, bucket={"name": "ohif-rv-h-dicom", "create": False}), "ro.yaml")
    load(tmp_path, dict(d, bucket={"name": "ohif-rv-h-dicom", "create": True,
                                   "upload": {"from": str(data), "prefix": "dicom/"}}), "rw.yaml")


# ---------------------------------------------------------------------------- R2: new project, foreign import bucket
def test_plan_for_a_new_project_importing_from_a_foreign_bucket_says_what_to_ask_the_owner(emulator, tmp_path):
    data = tmp_path / "data"
    write_dicom(data, studies=1)
    target = Target(emulator=emulator.url)
    owner = load(tmp_path, blueprint_dict("ohif-rv-i", data, dicom_stores=[{"id": "own"}]), "owner.yaml")
    lifecycle.apply(owner, target)
    foreign = owner.bucket.name
    bp = load(tmp_path, blueprint_dict("ohif-rv-k", None, bucket=None,
                                       dicom_stores=[{"id": "primary", "import": {"uri": f"gs://{foreign}/dicom/**.dcm"}}]),
              "new.yaml")
    plan = lifecycle.plan(bp, target)
    assert plan.step("project").action == "create"
    agent = "service-<PROJECT_NUMBER>@gcp-sa-healthcare.iam.gserviceaccount.com"
    note = next(n for n in plan.notes if f"gs://{foreign}" in n)
    assert agent in note and "roles/storage.objectViewer" in note and "known once the project exists" in note
    assert (f"gcloud storage buckets add-iam-policy-binding gs://{foreign} --member=serviceAccount:{agent} "
            f"--role=roles/storage.objectViewer") in note
    assert f"note: gs://{foreign}" in plan.render()
    # a new project whose import reads its own new bucket gets no such note
    own = load(tmp_path, blueprint_dict("ohif-rv-l", data), "own.yaml")
    assert not any("PROJECT_NUMBER" in n for n in lifecycle.plan(own, target).notes)


# ---------------------------------------------------------------------------- R3: an import URI matching nothing
def test_import_matching_no_object_is_a_plan_error_before_any_write(emulator_factory, tmp_path):
    rec = tmp_path / "rec.jsonl"
    emu = emulator_factory(record=rec)
    target = Target(emulator=emu.url)
    data = tmp_path / "data"
    write_dicom(data, studies=1)
    uri = "gs://ohif-rv-m-dicom/elsewhere/**.dcm"
    d = blueprint_dict("ohif-rv-m", data)
    d["dicom_stores"][0]["import"] = {"uri": uri}
    bp = load(tmp_path, d)
    with pytest.raises(ProvisionError) as err:
        lifecycle.apply(bp, target)
    text = str(err.value)
    assert text.startswith(f"import:primary: {uri} matches none of the 3 file(s) the upload puts in the bucket (dicom/")
    assert "fix the pattern" in text
    assert writes(records(rec)) == []   # nothing was made
    # DICOM files without `.dcm` under `**.dcm`: the same refusal, naming what the upload holds
    d["dicom_stores"][0]["import"] = {"uri": "gs://ohif-rv-m-dicom/dicom/**.DCM"}
    with pytest.raises(ProvisionError, match=r"matches none of the 3 file\(s\)"):
        lifecycle.plan(load(tmp_path, d, "upper.yaml"), target)
    # and nothing of the kind when the URI matches
    good = load(tmp_path, blueprint_dict("ohif-rv-m", data, smoke={"min_studies": 1}), "good.yaml")
    lifecycle.apply(good, target)
    assert not lifecycle.plan(good, target).has_changes
    # once the bucket exists, a URI matching nothing in it is refused the same way
    d["dicom_stores"][0]["import"] = {"uri": uri}
    d["bucket"].pop("upload")
    with pytest.raises(ProvisionError, match="matches no object in gs://ohif-rv-m-dicom now"):
        lifecycle.plan(load(tmp_path, d, "bare.yaml"), target)


# ---------------------------------------------------------------------------- R4: an operation that disappears
def test_an_operation_answering_404_is_reported_and_given_up_after_a_window(emulator, monkeypatch, tmp_path):
    import time

    from provision.gcp import operations

    from dataclasses import replace

    target = Target(emulator=emulator.url)
    target.timing = replace(target.timing, gone_s=0.5)  # the target's timing profile says how long 404s may last
    lifecycle.apply(load(tmp_path, blueprint_dict("ohif-rv-n", None, bucket=None, dicom_stores=[{"id": "primary"}],
                                                    smoke={"min_studies": 0})), target)
    name = "projects/ohif-rv-n/locations/us-central1/datasets/imaging/operations/424242"
    reasons: list[str] = []
    t0 = time.monotonic()
    with pytest.raises(ProvisionError) as info:
        operations.healthcare(target, {"name": name, "done": False}, deadline=time.monotonic() + 5,
                              on_retry=lambda n, d, r: reasons.append(r))
    assert time.monotonic() - t0 < 3
    assert isinstance(info.value, operations.OperationGone)
    assert f"operation {name} disappeared (404 for " in str(info.value)
    assert "was the emulator restarted without --data-dir?" in str(info.value)
    assert reasons and all(r.startswith(f"operation {name} not found yet") for r in reasons)
    # on Google: the same window idea, five minutes, worded without the emulator
    assert Target().timing.gone_s == 300.0
    google = str(operations.OperationGone(name, 301, emulator=False))
    assert "disappeared (404 for 301 s)" in google and "the service no longer knows it" in google
    assert "emulator" not in google


# ---------------------------------------------------------------------------- R5: wording
def test_import_progress_and_plan_wording(emulator, tmp_path):
    from test_apply_support import Events

    data = tmp_path / "data"
    write_dicom(data, studies=2)
    target = Target(emulator=emulator.url)
    bp = load(tmp_path, blueprint_dict("ohif-rv-o", data))
    assert "(after the upload)" in " ".join(lifecycle.plan(bp, target).step("import:primary").changes)
    events = Events()
    lifecycle.apply(bp, target, events)
    progress = [e.message for e in events.kinds("progress") if e.step == "import:primary"]
    assert "5 imported, 0 failed; counting studies" in progress, progress
    assert not any("imported 5 imported" in m or m.startswith("imported ") for m in progress)
    # a new bucket without an upload: the import could only fail, so the plan refuses it
    bare = load(tmp_path, blueprint_dict("ohif-rv-p", None), "bare.yaml")
    with pytest.raises(ProvisionError, match="names the new bucket gs://ohif-rv-p-dicom, which nothing uploads into"):
        lifecycle.plan(bare, target)
