"""The commands a user runs, end to end through the CLI against the emulator."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from provision.cli import app
from provision.demo import DEMO_BLUEPRINT

WRITES = ("POST", "PUT", "PATCH", "DELETE")
READ_ONLY_POSTS = (":getIamPolicy", ":testIamPermissions")


def run(*args: str, **env: str):
    return CliRunner().invoke(app, list(args), env=env or None)


def writes(record_path) -> list[dict]:
    entries = [json.loads(line) for line in record_path.read_text().splitlines()]
    return [e for e in entries if e["method"] in WRITES and not e["path"].endswith(READ_ONLY_POSTS)]


def test_demo_on_the_embedded_emulator():
    result = run("demo")
    assert result.exit_code == 0, result.output
    assert "DICOMweb smoke passed" in result.output
    assert "Phantom, CT" in result.output and "Phantom, MR" in result.output


def test_demo_on_a_running_emulator_then_apply_reports_no_changes(emulator_factory, tmp_path):
    record = tmp_path / "audit.jsonl"
    emu = emulator_factory(record=record)
    first = run("demo", "--emulator", emu.url)
    assert first.exit_code == 0, first.output
    record.write_text("")  # only the second apply's requests from here on
    second = run("apply", str(DEMO_BLUEPRINT), "--emulator", emu.url, "--yes", "--json", "--no-smoke")
    assert second.exit_code == 0, second.output
    doc = json.loads(second.stdout)
    assert doc["apply"]["changed"] is False and doc["apply"]["summary"] == "no changes"
    assert writes(record) == [], "a no-op apply must make reads only"
    # The viewer's data is there: the smoke check on the same blueprint passes.
    smoke = run("smoke", str(DEMO_BLUEPRINT), "--emulator", emu.url, "--json")
    assert smoke.exit_code == 0, smoke.output
    assert json.loads(smoke.stdout)["ok"] is True


def test_plan_changes_nothing_and_apply_without_yes_refuses_without_a_terminal(emulator_factory, tmp_path):
    record = tmp_path / "audit.jsonl"
    emu = emulator_factory(record=record)
    from provision.demo import demo_data_dir
    from provision.demo_data import write_demo_studies

    write_demo_studies(demo_data_dir())
    plan = run("plan", str(DEMO_BLUEPRINT), "--emulator", emu.url, "--json")
    assert plan.exit_code == 0, plan.output
    doc = json.loads(plan.stdout)
    assert {s["id"] for s in doc["steps"]} >= {"project", "billing", "apis", "dataset", "store:primary", "import:primary"}
    assert all(s["action"] == "create" for s in doc["steps"] if s["id"] in ("project", "dataset"))
    refused = run("apply", str(DEMO_BLUEPRINT), "--emulator", emu.url)
    assert refused.exit_code == 2 and "--yes" in refused.output
    assert writes(record) == [], "plan and a refused apply change nothing"


def test_status_and_destroy_keep_data_unless_asked(emulator_factory):
    emu = emulator_factory()
    assert run("demo", "--emulator", emu.url).exit_code == 0
    status = run("status", str(DEMO_BLUEPRINT), "--emulator", emu.url, "--json")
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["in_sync"] is True
    kept = run("destroy", str(DEMO_BLUEPRINT), "--emulator", emu.url, "--yes")
    assert kept.exit_code == 0, kept.output
    assert "keep:" in kept.output and "primary" in kept.output
    # The store still serves the studies.
    assert run("smoke", str(DEMO_BLUEPRINT), "--emulator", emu.url).exit_code == 0


def test_smoke_fails_with_exit_1_when_the_store_is_missing(emulator):
    result = run("smoke", str(DEMO_BLUEPRINT), "--emulator", emulator.url)
    assert result.exit_code == 1
    assert "studies" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("args", [["apply"], ["plan"], ["apply", "missing.yaml", "--yes"]])
def test_usage_errors_exit_2(args):
    result = run(*args)
    assert result.exit_code == 2
    assert "Traceback" not in result.output


@pytest.mark.browser
def test_demo_with_browser_draws_the_image(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # screenshots land in ./out/smoke
    result = run("demo", "--browser")
    assert result.exit_code == 0, result.output
    assert "browser smoke passed" in result.output
    assert (tmp_path / "out" / "smoke" / "viewport.png").stat().st_size > 1000


def test_apply_several_blueprints_at_once_one_summary_each(emulator, tmp_path):
    paths = []
    for team in ("a", "b", "c"):
        path = tmp_path / f"team-{team}.yaml"
        path.write_text(f"""\
version: 1
project: {{id: ohif-team-{team}, parent: organizations/123456789012, billing_account: 012345-6789AB-CDEF01}}
dataset: {{id: imaging, location: us-central1}}
dicom_stores: [{{id: primary}}]
smoke: {{min_studies: 0}}
""")
        paths.append(str(path))
    result = run("apply", *paths, "--emulator", emulator.url, "--yes", "--parallel", "3", "--no-smoke", "--json")
    assert result.exit_code == 0, result.output
    docs = json.loads(result.stdout)["results"]
    assert [d["apply"]["project"] for d in docs] == ["ohif-team-a", "ohif-team-b", "ohif-team-c"]
    assert all(d["apply"]["ok"] and d["apply"]["changed"] for d in docs)
    again = run("apply", *paths, "--emulator", emulator.url, "--yes", "--no-smoke")
    assert again.exit_code == 0 and again.stdout.count(": no changes") == 3, again.output
