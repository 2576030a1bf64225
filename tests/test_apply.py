"""apply against the emulator, through the real client libraries: a fresh apply builds everything,
a second apply makes reads only, and a changed blueprint applies exactly its change."""
from __future__ import annotations

import pytest

from provision.running import flow
from provision.running import lifecycle
from provision.gcp.target import Target
from provision.resources import store_calls
from test_apply_support import Events, blueprint_dict, load, mark, records, write_dicom, writes


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data"
    write_dicom(d, studies=2)
    return d


def test_fresh_apply_builds_everything_then_second_apply_makes_reads_only(emulator_factory, tmp_path, data_dir):
    rec = tmp_path / "rec.jsonl"
    emu = emulator_factory(record=rec)
    target = Target(emulator=emu.url)
    bp = load(tmp_path, blueprint_dict("ohif-apply-one", data_dir))
    events = Events()

    result = lifecycle.apply(bp, target, events)

    assert result.ok and result.changed
    assert {s.id for s in result.steps} == {"project", "record", "billing", "apis", "project-iam", "audit-logs",
                                             "service-agent", "bucket",
                                             "upload", "bucket-iam", "dataset", "store:primary", "store-iam:primary",
                                             "import:primary"}
    assert all(s.status == "done" for s in result.steps)
    # Every step reported start and done with an elapsed time; the import reported counters.
    assert set(events.steps("done")) == {s.id for s in result.steps}
    counters = [e for e in events.kinds("progress") if e.step == "import:primary" and e.total]
    assert counters and counters[-1].done == counters[-1].total == 5
    # The end state, read back through the real clients.
    from provision.gcp.context import Ctx

    ctx = Ctx(target)
    store = result.outputs["dicom_stores"]["primary"]["name"]
    assert store_calls.count_studies(ctx, store) == 2
    number = result.outputs["project_number"]
    assert result.outputs["service_agent"] == f"service-{number}@gcp-sa-healthcare.iam.gserviceaccount.com"
    # The first apply wrote: project create, billing, enable, IAM, agent, bucket, 5 uploads, dataset, store, import, label.
    first = records(rec)
    paths = [(r["method"], r["path"]) for r in writes(first)]
    assert ("POST", "/v3/projects") in paths
    assert sum(1 for m, p in paths if p.startswith("/upload/storage/v1/b/ohif-apply-one-dicom/o")) == 5
    assert any(p.endswith("/dicomStores/primary:import") for m, p in paths)
    assert not any(r["status"] >= 500 for r in first)

    # Second apply: "no changes", and only reads on the wire.
    before = mark(rec)
    again = lifecycle.apply(bp, target, events)
    assert not again.changed and again.summary == "no changes"
    # once the project exists, the plan also names the ownership record (read, not changed)
    assert again.plan.step("record").resource == "gs://ohif-apply-one-provision-state/record.json"
    second = records(rec)[before:]
    assert second, "the second apply must still read live state"
    assert writes(second) == [], [(r["method"], r["path"]) for r in writes(second)]


def test_changed_blueprint_plans_and_applies_exactly_the_change(emulator_factory, tmp_path, data_dir):
    rec = tmp_path / "rec.jsonl"
    emu = emulator_factory(record=rec)
    target = Target(emulator=emu.url)
    base = blueprint_dict("ohif-apply-two", data_dir)
    lifecycle.apply(load(tmp_path, base), target)

    # A new store (no import) and a new member on the project.
    changed = blueprint_dict("ohif-apply-two", data_dir)
    changed["dicom_stores"].append({"id": "research", "iam": [{"member": "user:ana@example.com",
                                                                 "roles": ["roles/healthcare.dicomEditor"]}]})
    changed["iam"].append({"member": "user:ana@example.com", "roles": ["roles/serviceusage.serviceUsageConsumer"]})
    bp = load(tmp_path, changed, "changed.yaml")

    plan = lifecycle.plan(bp, target)
    by_id = {s.id: s for s in plan.changes}
    assert set(by_id) == {"record", "project-iam", "store:research", "store-iam:research"}
    assert by_id["record"].changes == ["record 1 resource(s) and 2 grant(s) before making them"]
    assert by_id["project-iam"].changes == ["+ user:ana@example.com roles/serviceusage.serviceUsageConsumer"]
    assert by_id["store-iam:research"].changes == ["+ user:ana@example.com roles/healthcare.dicomEditor"]
    assert by_id["store:research"].action == "create"

    before = mark(rec)
    result = lifecycle.apply(bp, target)
    assert result.changed
    done = {s.id for s in result.steps if s.message != "no changes"}
    assert done == {"record", "project-iam", "store:research", "store-iam:research"}
    def is_lock(r: dict) -> bool:
        # the record exists, so its write names its generation: a create-if-absent there is the lock
        return r["path"].endswith("-provision-state/o/lock.json") or (
            r["path"].endswith("-provision-state/o") and r["query"].get("ifGenerationMatch") == ["0"])

    ours = writes(records(rec)[before:])
    # the run held the project's lock, first and last (provision/resources/lock.py)
    assert is_lock(ours[0]) and ours[0]["method"] == "POST" and is_lock(ours[-1]) and ours[-1]["method"] == "DELETE"
    paths = [(r["method"], r["path"]) for r in ours if not is_lock(r)]
    assert {m for m, _ in paths} == {"POST"}, paths
    # each creation and added grant is first written to the ownership record (what a later
    # apply or destroy may remove), then made; no label is written any more
    record = "/upload/storage/v1/b/ohif-apply-two-provision-state/o"
    assert sorted(p.rsplit("/", 1)[-1] for m, p in paths if p != record) == sorted([
        "ohif-apply-two:setIamPolicy", "dicomStores", "research:setIamPolicy"]), paths
    assert sum(p == record for m, p in paths) == 1, paths   # every claim in one write, before the first change
    # and then it is stable again
    assert not lifecycle.apply(bp, target).changed


def test_plan_json_is_stable_and_plan_makes_no_writes(emulator_factory, tmp_path, data_dir):
    rec = tmp_path / "rec.jsonl"
    emu = emulator_factory(record=rec)
    target = Target(emulator=emu.url)
    bp = load(tmp_path, blueprint_dict("ohif-apply-three", data_dir))
    plan = lifecycle.plan(bp, target)
    doc = plan.to_json()
    assert list(doc) == ["project", "target", "changes", "summary", "steps", "notes"]
    assert [s["id"] for s in doc["steps"]] == ["project", "record", "billing", "apis", "project-iam", "audit-logs",
                                               "service-agent", "bucket",
                                               "upload", "bucket-iam", "dataset", "store:primary", "store-iam:primary",
                                               "import:primary"]
    assert all(list(s) == ["id", "kind", "resource", "action", "changes", "fields", "drift", "depends_on"]
               for s in doc["steps"])
    assert doc["steps"][0]["action"] == "create" and doc["changes"] == 14   # with the record and the audit logs
    assert plan.step("import:primary").deps == ["store:primary", "service-agent", "upload", "bucket-iam"]
    assert "plan for project ohif-apply-three" in plan.render()
    assert writes(records(rec)) == []


def test_apply_many_runs_blueprints_side_by_side_and_reports_each(emulator, tmp_path):
    target = Target(emulator=emulator.url)
    good = [load(tmp_path, blueprint_dict(f"ohif-many-{i}", bucket=None, dicom_stores=[{"id": "s"}]), f"m{i}.yaml")
            for i in range(3)]
    # One of them cannot work: its import names a bucket that does not exist.
    bad = load(tmp_path, blueprint_dict("ohif-many-bad", bucket=None,
                                        dicom_stores=[{"id": "s", "import": {"uri": "gs://no-such-bucket-x/**.dcm"}}]),
               "bad.yaml")
    events = Events()
    results = flow.apply_many([*good, bad], target, events, parallel=4, run_smoke=False)
    assert [r.ok for r in results] == [True, True, True, False]
    assert all(r.apply.ok and r.config.exists() for r in results[:3])
    assert "import:s" in results[3].error and "gs://no-such-bucket-x does not exist" in results[3].error
    # a plan error: refused before anything was made for that blueprint
    assert results[3].apply is None
    from provision.gcp.context import Ctx
    from provision.resources import project as project_mod

    assert project_mod.read(Ctx(target), "ohif-many-bad") is None
    assert {e.project for e in events.kinds("done")} >= {f"ohif-many-{i}" for i in range(3)}


def test_progress_renders_one_line_per_step_with_elapsed_time(emulator, tmp_path):
    from rich.console import Console

    from provision.running.progress import Progress

    console = Console(record=True, width=200, force_terminal=False)
    bp = load(tmp_path, blueprint_dict("ohif-progress", bucket=None, dicom_stores=[{"id": "s"}]))
    with Progress(console=console, live=False) as progress:
        lifecycle.apply(bp, Target(emulator=emulator.url), progress)
    text = console.export_text()
    for step in ("project", "billing", "apis", "project-iam", "service-agent", "dataset", "store:s"):
        assert f"✓ {step} (" in text, text
    assert "s)" in text and "applied:" not in text   # the command prints the run's one summary, not progress
    # Live mode (a terminal): the same run, drawn as a table with spinners, ends with every step done.
    console = Console(record=True, width=200, force_terminal=True)
    bp2 = load(tmp_path, blueprint_dict("ohif-progress-2", bucket=None, dicom_stores=[{"id": "s"}]), "p2.yaml")
    with Progress(console=console, live=True) as progress:
        lifecycle.apply(bp2, Target(emulator=emulator.url), progress)
    assert "store:s" in console.export_text()


def test_live_progress_keeps_each_blueprints_steps_apart():
    from rich.console import Console

    from provision.running.engine import Event
    from provision.planning.plan import Step
    from provision.running.progress import Progress

    console = Console(record=True, width=200, force_terminal=True)
    steps = [Step(id="project", kind="project", resource="p", action="create")]
    with Progress(console=console, live=True) as progress:
        for project, outcome in (("team-a", "done"), ("team-b", "failed")):
            progress(Event("plan", project=project, steps=steps))
            progress(Event("start", step="project", project=project, action="create"))
            progress(Event(outcome, step="project", project=project, message=f"{project} {outcome}"))
    text = console.export_text()
    assert "team-a project" in text and "team-b project" in text
    assert "team-a done" in text and "team-b failed" in text
