"""Reliability against the emulator: injected faults, realistic latency and propagation, IAM races
and conditional bindings, a failing import, and SIGKILL at several points followed by a re-apply."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from provision.running import flow
from provision.running import lifecycle
from provision.gcp.context import Ctx, Reporter
from provision.gcp.target import Target
from provision.running.lifecycle import ApplyFailed
from provision.resources import dicom_import, dicom_store, iam, project_iam, store_calls
from test_apply_support import Events, blueprint_dict, load, records, write_dicom

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("dicom")
    write_dicom(d, studies=2)
    return d


def test_apply_succeeds_under_injected_faults_and_reports_why_it_retried(emulator_factory, tmp_path, data_dir):
    for seed in (1, 4):
        emu = emulator_factory(faults="transient=0.2,operation=0.1", seed=seed)
        target = Target(emulator=emu.url)
        bp = load(tmp_path, blueprint_dict(f"ohif-faults-{seed}", data_dir))
        events = Events()
        result = lifecycle.apply(bp, target, events)
        assert result.ok and all(s.status == "done" for s in result.steps)
        retries = events.kinds("retry")
        assert retries, "a 20% fault rate must cause retries"
        assert all(e.message for e in retries)
        assert all(e.text().startswith(f"retrying {e.step}: ") and "(attempt" in e.text() for e in retries)
        reasons = " | ".join(e.message for e in retries)
        assert any(code in reasons for code in ("429", "500", "503", "network")), reasons
        ctx = Ctx(target)
        assert store_calls.count_studies(ctx, result.outputs["dicom_stores"]["primary"]["name"]) == 2
        # Once the faults have been ridden out, the state is stable.
        again = lifecycle.apply(bp, target)
        assert not again.changed


def test_realistic_latency_and_propagation_are_absorbed_without_fixed_sleeps(emulator_factory, tmp_path, data_dir):
    emu = emulator_factory(latency="realistic", time_scale=0.02)
    target = Target(emulator=emu.url)
    bp = load(tmp_path, blueprint_dict("ohif-latency", data_dir))
    events = Events()
    t0 = time.monotonic()
    result = lifecycle.apply(bp, target, events)
    elapsed = time.monotonic() - t0
    assert result.ok
    # The realistic table at 0.02 adds ~0.24 s project creation, 0.4 s enable (+0.6 s propagation),
    # 0.5 s import: the whole apply stays within a few times that, because waits grow from 50 ms.
    assert elapsed < 8, elapsed
    reasons = " | ".join(e.message for e in events.kinds("retry"))
    assert "SERVICE_DISABLED" in reasons or "not initialized" in reasons or "not visible" in reasons, reasons
    assert not lifecycle.apply(bp, target).changed


# ---------------------------------------------------------------------------- IAM safety
def _racing(io: iam.PolicyIO, foreign) -> iam.PolicyIO:
    """Our read, then (once) a second client's whole read-modify-write before we write."""
    raced = {"done": False}

    def read():
        policy = io.read()
        if not raced["done"]:
            raced["done"] = True
            foreign()
        return policy

    return iam.PolicyIO(io.resource, read, io.write)


@pytest.fixture
def built(emulator_factory, tmp_path, data_dir):
    emu = emulator_factory()
    target = Target(emulator=emu.url)
    bp = load(tmp_path, blueprint_dict("ohif-iam-race", data_dir))
    result = lifecycle.apply(bp, target)
    return emu, target, bp, result


@pytest.mark.parametrize("kind", ["project", "bucket", "store"])
def test_a_foreign_binding_written_between_our_read_and_write_survives(built, kind):
    emu, target, bp, result = built
    other = Target(emulator=emu.url)     # a second client: its own connections and clients
    ours = ("roles/healthcare.dicomEditor", "user:ours@example.com")
    theirs = ("roles/healthcare.dicomEditor", "user:theirs@example.com")
    if kind == "project":
        make = lambda c: iam.project_io(c, bp.project.id)  # noqa: E731
    elif kind == "bucket":
        ours, theirs = ("roles/storage.objectViewer", "user:ours@example.com"), ("roles/storage.objectViewer", "user:theirs@example.com")
        make = lambda c: iam.bucket_io(c, bp.bucket.name)  # noqa: E731
    else:
        make = lambda c: iam.dicom_store_io(c, result.outputs["dicom_stores"]["primary"]["name"])  # noqa: E731
    reasons: list[str] = []
    ctx = Ctx(target, "iam", reporter=Reporter(on_retry=lambda n, d, r: reasons.append(r)))
    octx = Ctx(other, "foreign")
    added = iam.add(ctx, _racing(make(ctx), lambda: iam.add(octx, make(octx), [theirs])), [ours])
    assert added == [ours]
    assert reasons and "concurrent IAM policy change" in reasons[0]
    final = make(Ctx(other)).read()
    assert not iam.missing(final, [ours, theirs])


def test_conditional_bindings_survive_apply_and_destroy(built):
    emu, target, bp, result = built
    store = result.outputs["dicom_stores"]["primary"]["name"]
    cond = {"title": "business-hours", "expression": "request.time.getHours('UTC') < 18"}
    octx = Ctx(Target(emulator=emu.url))
    for io in (iam.project_io(octx, bp.project.id), iam.dicom_store_io(octx, store)):
        policy = io.read()
        policy["bindings"] = policy.get("bindings", []) + [
            {"role": "roles/healthcare.dicomViewer", "members": ["user:night@example.com"], "condition": cond}]
        policy["version"] = 3
        io.write(policy)
    # A new unconditional grant of the same role goes next to the conditional binding, not into it.
    data = blueprint_dict("ohif-iam-race", bp.bucket.upload.from_)
    data["iam"].append({"member": "user:day@example.com", "roles": ["roles/healthcare.dicomViewer"]})
    bp2 = load(bp.source.parent, data, "cond.yaml")
    lifecycle.apply(bp2, target)
    for io in (iam.project_io(octx, bp.project.id), iam.dicom_store_io(octx, store)):
        conditional = [b for b in io.read().get("bindings", []) if b.get("condition")]
        assert conditional == [{"role": "roles/healthcare.dicomViewer", "members": ["user:night@example.com"],
                                "condition": cond}], conditional
    lifecycle.destroy(bp2, target)
    for io in (iam.project_io(octx, bp.project.id), iam.dicom_store_io(octx, store)):
        policy = io.read()
        assert [b for b in policy.get("bindings", []) if b.get("condition")][0]["members"] == ["user:night@example.com"]
        assert iam.missing(policy, [("roles/healthcare.dicomViewer", "user:day@example.com")])


# ---------------------------------------------------------------------------- import failure
def test_import_from_a_foreign_bucket_without_the_grant_fails_at_the_import_step(emulator_factory, tmp_path, data_dir):
    emu = emulator_factory()
    target = Target(emulator=emu.url)
    # Someone else's project and bucket, holding DICOM files; they never grant our agent.
    owner_bp = load(tmp_path, blueprint_dict("ohif-foreign-owner", data_dir, dicom_stores=[{"id": "own"}]), "owner.yaml")
    lifecycle.apply(owner_bp, target)
    foreign = owner_bp.bucket.name
    mine = blueprint_dict("ohif-foreign-user", None, bucket=None,
                          dicom_stores=[{"id": "primary", "import": {"uri": f"gs://{foreign}/dicom/**.dcm"}}])
    bp = load(tmp_path, mine, "mine.yaml")
    plan = lifecycle.plan(bp, target)
    assert not any(s.id.startswith("bucket") for s in plan.steps)   # grants nothing on a foreign bucket
    events = Events()
    with pytest.raises(ApplyFailed) as err:
        lifecycle.apply(bp, target, events)
    assert err.value.exit_code == 1
    text = str(err.value)
    assert "step 'import:primary'" in text
    assert "Healthcare API doesn't have required Cloud Storage permission" in text   # Google's message
    assert "0 imported, 0 failed" in text and "logs:" in text                            # the counts and the logs link
    agent = err.value.result.outputs["service_agent"]
    assert f"gcloud storage buckets add-iam-policy-binding gs://{foreign} --member=serviceAccount:{agent} " \
           f"--role=roles/storage.objectViewer" in text
    assert err.value.result.steps[-1].status == "failed"
    assert {s.id: s.status for s in err.value.result.steps}["store:primary"] == "done"
    # The owner grants the agent; the next apply resumes with the import only.
    from provision.resources import bucket_iam, iam

    owner = Ctx(target)
    iam.add(owner, iam.bucket_io(owner, foreign), [(bucket_iam.VIEWER, f"serviceAccount:{agent}")])
    again = lifecycle.apply(bp, target)
    assert [s.id for s in again.steps if s.message != "no changes"] == ["import:primary"]


# ---------------------------------------------------------------------------- crash safety
APPLY_SNIPPET = (
    "import sys\n"
    "from provision.blueprint.load import load_blueprint\n"
    "from provision.running import lifecycle\n"
    "from provision.gcp.target import Target\n"
    "lifecycle.apply(load_blueprint(sys.argv[1]), Target(emulator=sys.argv[2]))\n"
)


def _kill_when(proc: subprocess.Popen, rec: Path, seen: int, predicate, timeout: float = 30.0, url: str = "") -> dict:
    """SIGKILL the subprocess as soon as a new record matches `predicate`; returns that record."""
    deadline = time.monotonic() + timeout
    pause = 0.005
    while time.monotonic() < deadline:
        for r in records(rec)[seen:]:
            r["_url"] = url
            if predicate(r):
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
                return r
        if proc.poll() is not None:
            pytest.fail(f"apply finished before the kill point (exit {proc.returncode}): {proc.stderr.read()[-2000:]}")
        time.sleep(pause)
        pause = min(0.05, pause * 1.5)
    proc.kill()
    pytest.fail("the kill point never came")


KILL_POINTS = {
    "after-project": lambda r: r["method"] == "POST" and r["path"] == "/v3/projects" and r["status"] == 200,
    "after-enable": lambda r: r["method"] == "POST" and r["path"].endswith(("services:batchEnable", ":enable")) and r["status"] == 200,
    "during-import": lambda r: r["method"] == "POST" and r["path"].endswith(":import") and r["status"] == 200,
    # the record names the dataset, which is not made yet
    "after-record": lambda r: r["method"] == "POST" and "-provision-state/o" in r["path"]
    and r["status"] == 200 and b"/datasets/" in _record_body(r),
}


def _record_body(r: dict) -> bytes:
    """The record object as the emulator holds it now (the request body of a media upload is not recorded)."""
    import requests

    bucket = r["path"].split("/b/")[1].split("/")[0]
    got = requests.get(f"{r['_url']}/storage/v1/b/{bucket}/o/record.json", params={"alt": "media"}, timeout=5)
    return got.content if got.ok else b""


def _ownership(target: Target, pid: str) -> tuple:
    """What the record names, with the project number masked (comparable across projects)."""
    from provision.resources.record import RecordStore

    ctx = Ctx(target)
    number = ctx.target.projects().get_project(name=f"projects/{pid}", retry=None).name.split("/")[-1]
    rec = RecordStore(pid).read(ctx, number)
    mask = lambda text: text.replace(pid, "P").replace(number, "N")  # noqa: E731
    return (sorted((k, mask(n)) for k, n in rec.resources), sorted(tuple(mask(x) for x in g) for g in rec.grants))


@pytest.mark.slow
def test_sigkill_at_any_point_then_reapply_converges_to_the_same_end_state(emulator_factory, tmp_path, data_dir):
    rec = tmp_path / "rec.jsonl"
    emu = emulator_factory(record=rec, latency="realistic", time_scale=0.02)
    target = Target(emulator=emu.url)
    end_states = []
    for point, predicate in KILL_POINTS.items():
        pid = f"ohif-kill-{point}"[:30].rstrip("-")
        bp_path = tmp_path / f"{point}.yaml"
        load(tmp_path, blueprint_dict(pid, data_dir), bp_path.name)
        seen = len(records(rec))
        proc = subprocess.Popen([sys.executable, "-c", APPLY_SNIPPET, str(bp_path), emu.url], cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _kill_when(proc, rec, seen, predicate, url=emu.url)
        assert proc.returncode == -signal.SIGKILL
        bp = load(tmp_path, blueprint_dict(pid, data_dir), bp_path.name)
        result = lifecycle.apply(bp, target)          # resumes: adopts what exists, finishes the rest
        assert result.ok
        redone = {s.id for s in result.steps if s.message != "no changes"}
        assert "project" not in redone                   # the project was there: adopted, not created again
        assert "import:primary" in redone                # the import had not been marked done
        if point == "during-import":
            assert not redone & {"apis", "bucket", "upload", "dataset", "store:primary"}
        assert lifecycle.status(bp, target).in_sync
        assert not lifecycle.apply(bp, target).changed
        ctx = Ctx(target)
        store = result.outputs["dicom_stores"]["primary"]["name"]
        policy = project_iam.read(ctx, pid)
        end_states.append({
            "studies": store_calls.count_studies(ctx, store),
            "objects": sorted(b.name for b in ctx.target.storage().list_blobs(bp.bucket.name, retry=None)),
            "label": bool(dicom_store.read(ctx, store).labels.get(dicom_import.LABEL)),
            "record": _ownership(target, pid),
            "project_bindings": sorted((b["role"], tuple(m.replace(result.outputs["project_number"], "N") for m in b["members"]))
                                       for b in policy.get("bindings", [])),
        })
        # Nothing was duplicated: one create of the project in total.
        creates = [r for r in records(rec)[seen:] if r["method"] == "POST" and r["path"] == "/v3/projects"
                   and (r["request"] or {}).get("projectId") == pid]
        assert len([c for c in creates if c["status"] == 200]) == 1
    assert end_states[0]["studies"] == 2
    for s in end_states:
        assert {k: v for k, v in s.items() if k != "objects"} == {k: v for k, v in end_states[0].items() if k != "objects"}
    assert all(s == end_states[0] for s in end_states), end_states


def test_two_concurrent_applies_of_one_blueprint_both_succeed_by_adopting(emulator_factory, tmp_path, data_dir):
    """Both runs plan "create" for everything; the project's lock (taken once its record bucket exists)
    makes the second wait (--wait-lock) for the first, and it then adopts what the first made."""
    emu = emulator_factory(latency="realistic", time_scale=0.01)
    target = Target(emulator=emu.url)
    bp = load(tmp_path, blueprint_dict("ohif-twice", data_dir))
    events = Events()
    first, second = flow.apply_many([bp, bp], target, events, parallel=2, run_smoke=False,
                                    opts=lifecycle.Options(wait_lock_s=120))
    assert first.ok and second.ok, (first.error, second.error)
    first = first.apply
    notes = " | ".join(e.message for e in events.kinds("note"))
    assert "adopted" in notes, notes
    ctx = Ctx(target)
    assert store_calls.count_studies(ctx, first.outputs["dicom_stores"]["primary"]["name"]) == 2
    assert len(list(ctx.target.storage().list_blobs(bp.bucket.name, retry=None))) == 5
    assert not lifecycle.apply(bp, target).changed
    # both runs wrote the record, compare-and-swap: it names everything once, and nothing else
    resources, grants = _ownership(target, "ohif-twice")
    assert [k for k, _ in resources] == ["audit-log"] * 6 + ["bucket", "dataset", "dicom-store", "project"]
    assert len(grants) == 3, grants
    from provision.resources import iam

    configs = iam.project_io(ctx, "ohif-twice").read()["auditConfigs"]   # each log type once, not twice
    assert sorted(len(c["auditLogConfigs"]) for c in configs) == [3, 3]
