"""The commands a user runs, end to end through the CLI against the emulator."""
from __future__ import annotations

import json
import re
from collections import Counter

import pytest
from typer.testing import CliRunner

from provision.cli import app
from provision.demo.run import demo_data_dir, write_demo_blueprint

WRITES = ("POST", "PUT", "PATCH", "DELETE")
READ_ONLY_POSTS = (":getIamPolicy", ":testIamPermissions")


def run(*args: str, **env: str):
    return CliRunner().invoke(app, list(args), env=env or None)


def demo(tmp_path, *args: str):
    """`provision demo --out TMP/out ARGS`: (the result, the blueprint the demo wrote there)."""
    out = tmp_path / "out"
    return run("demo", "--out", str(out), *args), out / "demo.yaml"


def entries(record_path) -> list[dict]:
    return [json.loads(line) for line in record_path.read_text().splitlines()]


def writes(record_path) -> list[dict]:
    return [e for e in entries(record_path) if e["method"] in WRITES and not e["path"].endswith(READ_ONLY_POSTS)]


def breakdown(requests: list[dict]) -> str:
    """The requests by API, then each one (method and path), for a failure message."""
    by_api = Counter(e["api"] for e in requests)
    lines = [", ".join(f"{api} {n}" for api, n in by_api.most_common())]
    lines += sorted(f"  {e['api']:<22} {e['method']:<5} {e['path']}" for e in requests)
    return "\n".join(lines)


def test_demo_on_the_embedded_emulator(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the demo writes into ./out of wherever it runs
    result = run("demo")
    assert result.exit_code == 0, result.output
    assert "DICOMweb smoke passed" in result.output
    assert "Phantom, CT" in result.output and "Phantom, MR" in result.output
    out = tmp_path / "out"
    assert f"wrote {out}:" in result.output and "provision viewer out/demo.yaml" in result.output
    assert {p.name for p in out.iterdir()} == {"demo.yaml", "demo-data", "google.js"}


def test_demo_out_names_its_folder_and_refuses_one_it_cannot_write(tmp_path):
    result, blueprint = demo(tmp_path)
    assert result.exit_code == 0, result.output
    assert f"wrote {tmp_path / 'out'}:" in result.output and blueprint.is_file()
    assert run("validate", str(blueprint)).exit_code == 0
    (tmp_path / "file").write_text("")
    refused = run("demo", "--out", str(tmp_path / "file" / "sub"))
    assert refused.exit_code == 1 and "cannot write into" in refused.output and "--out" in refused.output
    assert "Traceback" not in refused.output


def test_demo_on_a_running_emulator_then_apply_reports_no_changes(emulator_factory, tmp_path):
    record = tmp_path / "audit.jsonl"
    emu = emulator_factory(record=record)
    first, blueprint = demo(tmp_path, "--emulator", emu.url)
    assert first.exit_code == 0, first.output
    record.write_text("")  # only the second apply's requests from here on
    second = run("apply", str(blueprint), "--emulator", emu.url, "--yes", "--json", "--no-smoke")
    assert second.exit_code == 0, second.output
    doc = json.loads(second.stdout)["results"][0]
    changed = [(s["id"], s["action"], s["message"]) for s in doc["apply"]["steps"] if s["action"] != "no-op"]
    assert doc["apply"]["changed"] is False and doc["apply"]["summary"] == "no changes", changed
    assert writes(record) == [], "a no-op apply must make reads only"
    # Reads cost quota: at most one per resource of the plan, plus the one permission check
    # (testIamPermissions) and the record's second read (its bucket, whose owner is checked, then the object).
    # Nothing is written, so no organization policy could refuse anything: none is read.
    made, allowed = entries(record), len(doc["apply"]["steps"]) + 2
    assert len(made) <= allowed, f"{len(made)} requests for {len(doc['apply']['steps'])} resources (target " \
        f"<= {allowed}):\n{breakdown(made)}"
    # The viewer's data is there: the smoke check on the same blueprint passes.
    smoke = run("smoke", str(blueprint), "--emulator", emu.url, "--json")
    assert smoke.exit_code == 0, smoke.output
    assert json.loads(smoke.stdout)["ok"] is True and json.loads(smoke.stdout)["results"][0]["smoke"]["ok"] is True


def test_plan_changes_nothing_and_apply_without_yes_refuses_without_a_terminal(emulator_factory, tmp_path):
    record = tmp_path / "audit.jsonl"
    emu = emulator_factory(record=record)
    from provision.demo.studies import write_demo_studies

    blueprint = write_demo_blueprint(tmp_path)
    write_demo_studies(demo_data_dir(blueprint))
    plan = run("plan", str(blueprint), "--emulator", emu.url, "--json")
    assert plan.exit_code == 0, plan.output
    doc = json.loads(plan.stdout)["results"][0]["plan"]
    assert {s["id"] for s in doc["steps"]} >= {"project", "billing", "apis", "dataset", "store:primary", "import:primary"}
    assert all(s["action"] == "create" for s in doc["steps"] if s["id"] in ("project", "dataset"))
    refused = run("apply", str(blueprint), "--emulator", emu.url)
    assert refused.exit_code == 2 and "--yes" in refused.output
    assert writes(record) == [], "plan and a refused apply change nothing"


def test_status_and_destroy_keep_data_unless_asked(emulator_factory, tmp_path):
    emu = emulator_factory()
    result, blueprint = demo(tmp_path, "--emulator", emu.url)
    assert result.exit_code == 0, result.output
    status = run("status", str(blueprint), "--emulator", emu.url, "--json")
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["results"][0]["status"]["in_sync"] is True
    kept = run("destroy", str(blueprint), "--emulator", emu.url, "--yes")
    assert kept.exit_code == 0, kept.output
    assert "  keep   store:primary" in kept.output and "kept: holds 2 studies" in kept.output, kept.output
    # The store still serves the studies.
    assert run("smoke", str(blueprint), "--emulator", emu.url).exit_code == 0


def test_smoke_fails_with_exit_1_when_the_store_is_missing(emulator, tmp_path):
    blueprint = write_demo_blueprint(tmp_path)
    demo_data_dir(blueprint).mkdir()
    result = run("smoke", str(blueprint), "--emulator", emulator.url)
    assert result.exit_code == 1
    assert "studies" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("args", [["apply"], ["plan"], ["apply", "missing.yaml", "--yes"]])
def test_usage_errors_exit_2(args):
    result = run(*args)
    assert result.exit_code == 2
    assert "Traceback" not in result.output


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


def _team_blueprint(tmp_path, team: str, store: str = "{id: primary}") -> str:
    path = tmp_path / f"team-{team}.yaml"
    path.write_text(f"""\
version: 1
project: {{id: ohif-team-{team}, parent: organizations/123456789012, billing_account: 012345-6789AB-CDEF01}}
dataset: {{id: imaging, location: us-central1}}
dicom_stores: [{store}]
""")
    return str(path)


def test_a_failed_apply_still_prints_one_json_document(emulator, tmp_path):
    from provision.running import lifecycle
    from provision.gcp.target import Target
    from test_apply_support import blueprint_dict, load, write_dicom

    # another team's bucket, with DICOM files its project's agent may read, and ours may not
    write_dicom(tmp_path / "data", studies=1)
    lifecycle.apply(load(tmp_path, blueprint_dict("ohif-team-owner", tmp_path / "data", smoke={"min_studies": 1})),
                      Target(emulator=emulator.url))
    path = _team_blueprint(tmp_path, "bad", '{id: primary, import: {uri: "gs://ohif-team-owner-dicom/dicom/**.dcm"}}')
    result = run("apply", path, "--emulator", emulator.url, "--yes", "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    one = doc["results"][0]
    assert doc["ok"] is False and one["ok"] is False and "ohif-team-owner-dicom" in one["error"]
    assert one["apply"]["steps"], "what was built before the failure is reported"
    assert "Traceback" not in result.output


def test_config_refuses_a_bad_emulator_url(tmp_path):
    result = run("config", _team_blueprint(tmp_path, "cfg"), "--emulator", "localhost:1", "--out", str(tmp_path / "c.js"))
    assert result.exit_code == 2 and not (tmp_path / "c.js").exists()


def test_ctrl_c_stops_a_multi_blueprint_apply_promptly(emulator_factory, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    record = tmp_path / "record.jsonl"
    emu = emulator_factory(latency="realistic", time_scale=0.1, record=record)  # a full apply would take ~10 s
    paths = [_team_blueprint(tmp_path, t) for t in ("x", "y")]
    proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "provision"), "apply", *paths,
                             "--emulator", emu.url, "--yes", "--no-smoke"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Interrupted once the apply is under way (its first write reached the emulator), not after a
        # fixed sleep that a loaded machine may not even have started the process in.
        deadline = time.monotonic() + 60
        while not (record.exists() and any(f'"method":"{m}"' in record.read_text() for m in WRITES)):
            assert time.monotonic() < deadline and proc.poll() is None, "the apply never wrote"
            time.sleep(0.05)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        stopped_after = time.monotonic() - sent
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert stopped_after < 4.0, f"took {stopped_after:.1f}s to stop"


def test_destroy_names_its_flags_and_a_second_destroy_has_nothing_to_do(emulator, tmp_path):
    result, blueprint = demo(tmp_path, "--emulator", emulator.url)
    assert result.exit_code == 0, result.output
    refused = run("destroy", str(blueprint), "--emulator", emulator.url, "--yes", "--delete-project")
    assert refused.exit_code == 1 and "--delete-data" in refused.output, refused.output
    kept = run("destroy", str(blueprint), "--emulator", emulator.url, "--yes")
    assert "kept: holds 2 studies (--delete-data deletes it)" in kept.output, kept.output
    # the dataset stays for its stores, which the blueprint still names: no "no longer names" on destroy
    assert re.search(r"keep +dataset .*kept: its store\(s\) \S+ are kept with their studies", kept.output), kept.output
    gone = run("destroy", str(blueprint), "--emulator", emulator.url, "--yes", "--delete-data", "--delete-project")
    assert gone.exit_code == 0, gone.output
    again = run("destroy", str(blueprint), "--emulator", emulator.url, "--yes")
    assert again.exit_code == 0 and "nothing to destroy" in again.output
