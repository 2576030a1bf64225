"""What a person reads (issue 19): one summary per run, no upload chatter without -v, columns
that stay aligned for long step IDs, and bookkeeping (the ownership record) not counted as a change."""
from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from provision.cli import app
from provision.gcp.context import Ctx
from provision.gcp.target import Target
from provision.resources import dicom_store
from provision.running import lifecycle
from test_apply_support import blueprint_dict, load, write_dicom

VIEWER = "roles/healthcare.dicomViewer"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("dicom")
    write_dicom(d, studies=2)
    return d


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def test_apply_prints_one_summary_and_no_upload_chatter_without_v(emulator, tmp_path, data_dir):
    d = blueprint_dict("ohif-out-one", data_dir)
    path = str(load(tmp_path, d).source)
    result = run("apply", path, "--emulator", emulator.url, "--yes", "--no-smoke")
    assert result.exit_code == 0, result.output
    # the summary once, on stdout; the steps once, as progress on stderr (not again as a table)
    assert re.findall(r"applied: \d+ to create", result.output) == ["applied: 12 to create"], result.output
    assert not re.search(r"^\s+done\s", result.stdout, re.M), result.stdout
    assert "(0 retries)" not in result.output
    assert result.stderr.count("✓ upload") == 1 and "uploaded 9/" not in result.stderr, result.stderr
    d["bucket"]["upload"]["prefix"] = "again/"
    d["dicom_stores"][0]["import"]["uri"] = "gs://ohif-out-one-dicom/again/**.dcm"
    load(tmp_path, d)
    # -v after the command means what it means before it
    verbose = run("apply", path, "--emulator", emulator.url, "--yes", "--no-smoke", "-v")
    assert verbose.exit_code == 0 and "upload: uploaded" in verbose.stderr, verbose.output
    assert run("plan", path, "--emulator", emulator.url, "--verbose").exit_code == 0


def test_bookkeeping_is_not_a_change(emulator, tmp_path, data_dir):
    target = Target(emulator=emulator.url)
    d = blueprint_dict("ohif-out-book", data_dir)
    d["dicom_stores"].append({"id": "scratch", "iam": [{"member": "user:s@example.com", "roles": [VIEWER]}]})
    lifecycle.apply(load(tmp_path, d), target)
    # one member more: one change, not two (the record's write is how it is done, not what changes)
    d["dicom_stores"][0]["iam"].append({"member": "user:ana@example.com", "roles": [VIEWER]})
    plan = lifecycle.plan(load(tmp_path, d), target)
    assert plan.step("record").action == "update" and plan.summary() == "1 to update", plan.render()
    lifecycle.apply(load(tmp_path, d), target)
    # a store the record names is gone behind provision's back: forgetting it changes nothing live
    scratch = lifecycle.plan_mod.store_name(load(tmp_path, d), "scratch")
    dicom_store.delete(Ctx(target), scratch)
    d["dicom_stores"].pop()
    plan = lifecycle.plan(load(tmp_path, d, "fixed.yaml"), target)
    assert {s.id for s in plan.changes} == {"store:scratch", "store-iam:scratch"}, plan.render()
    assert plan.summary() == "no changes (2 record entries to forget)", plan.summary()
    assert "to delete" not in plan.render()


def test_columns_stay_aligned_for_long_step_ids(emulator, tmp_path, data_dir):
    target = Target(emulator=emulator.url)
    d = blueprint_dict("ohif-out-cols", data_dir)
    d["dicom_stores"].append({"id": "neuro-ct-research-archive-2026",
                              "iam": [{"member": "user:a@example.com", "roles": [VIEWER]}]})
    bp = load(tmp_path, d)
    plan = lifecycle.plan(bp, target)
    text = plan.render().splitlines()
    # the resource column starts at one place on every step line, the longest ID included
    columns = {next(line for line in text if f" {s.id} " in line and line.endswith(s.resource)).rindex(s.resource)
               for s in plan.steps}
    assert len(columns) == 1, plan.render()
    lifecycle.apply(bp, target)
    report = lifecycle.status(bp, target)
    text = report.render().splitlines()
    columns = {next(line for line in text if f" {r['id']} " in line).rindex(r["resource"]) for r in report.resources}
    assert len(columns) == 1, report.render()
