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
    assert len(re.findall(r"applied: \d+ to create", result.output)) == 1, result.output
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


# ---------------------------------------------------------------------------- small ones (issue 19)
def test_an_empty_shard_says_so(tmp_path):
    from provision.running import fleet as fleet_mod

    teams = tmp_path / "teams"
    teams.mkdir()
    for team in ("a", "b", "c"):
        load(teams, blueprint_dict(f"ohif-shard-{team}", None, bucket=None, dicom_stores=[{"id": "s"}]), f"{team}.yaml")
    paths = fleet_mod.expand([teams])
    empty = next(i for i in range(1, 50) if not fleet_mod.shard(paths, f"{i}/49"))
    result = CliRunner().invoke(app, ["plan", str(teams), "--shard", f"{empty}/49", "--emulator", "http://127.0.0.1:1"])
    assert result.exit_code == 0, result.output
    assert f"shard {empty}/49: 0 of 3 blueprints (nothing to do)" in result.stderr, result.output


def test_a_plan_error_names_the_blueprint_once(emulator, tmp_path, data_dir):
    d = blueprint_dict("ohif-out-loc", data_dir)
    path = load(tmp_path, d).source
    assert run("apply", str(path), "--emulator", emulator.url, "--yes", "--no-smoke").exit_code == 0
    d["dataset"]["location"] = "us-centrall1"
    load(tmp_path, d)
    result = run("plan", str(path), "--emulator", emulator.url)
    assert result.exit_code == 2 and "did you mean us-central1" in result.stderr, result.output   # refused before any write
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line.count(path.name) == 1, line


def test_an_unreachable_emulator_hint_names_the_port_flag(tmp_path, quick_unreachable):
    path = load(tmp_path, blueprint_dict("ohif-out-dead", None, bucket=None, dicom_stores=[{"id": "s"}])).source
    result = run("plan", str(path), "--emulator", "http://127.0.0.1:9")
    assert "`provision emulator --port 9`" in result.output and ":9)" in result.output, result.output


def test_a_busy_port_for_the_emulator_names_it_and_the_flag(emulator):
    result = run("emulator", "--port", str(emulator.port))
    assert result.exit_code == 1, result.output
    assert f"port {emulator.port} on 127.0.0.1 is in use" in result.output and "--port" in result.output
    assert "Traceback" not in result.output and "Either identify and stop" not in result.output


def test_viewer_says_it_downloads_ohif_before_it_does(tmp_path):
    bp = load(tmp_path, blueprint_dict("ohif-out-view", None, bucket=None, dicom_stores=[{"id": "s"}])).source
    result = CliRunner().invoke(app, ["viewer", str(bp), "--emulator", "http://127.0.0.1:1"],
                                env={"PROVISION_CACHE": str(tmp_path / "cache"), "PATH": str(tmp_path)})   # no npm
    assert result.exit_code == 1, result.output
    said = result.stderr
    assert said.index("downloading the OHIF viewer (@ohif/app@3.13.2, about 50 MB") < said.index("npm is not installed")


def test_the_browser_hint_never_names_the_unrelated_package(monkeypatch, tmp_path):
    import builtins

    from provision.errors import ProvisionError
    from provision.checks import browser

    real = builtins.__import__

    def no_playwright(name, *args, **kwargs):
        if name.startswith("playwright"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_playwright)
    with pytest.raises(ProvisionError) as err:
        browser.run_browser_smoke("window.config = {}", expected_studies=[{"patient_name": "Phantom, CT"}],
                                  chromium="/bin/sh")
    assert "provision[browser]" not in str(err.value) and "make test" in str(err.value), str(err.value)


def test_one_study_is_one_study(emulator, tmp_path):
    one = tmp_path / "one"
    write_dicom(one, studies=1)
    path = load(tmp_path, blueprint_dict("ohif-out-one-st", one, smoke={"min_studies": 1})).source
    assert run("apply", str(path), "--emulator", emulator.url, "--yes", "--no-smoke").exit_code == 0
    result = run("smoke", str(path), "--emulator", emulator.url)
    assert result.exit_code == 0 and "1 study (at least 1 required)" in result.output, result.output
    assert "1 studies" not in result.output


def test_readme_says_which_command_exits_3_for_what():
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert "`plan` exits 3 when it has changes to make, `status` when it finds\ndrift" in readme
