"""The command line CI depends on (issue 9): one JSON document per run whatever happens, checked
against the published schema; exit codes; saved plans; fleets and shards; help people can read."""
from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from provision.running import output
from provision.cli import app
from test_apply_support import blueprint_dict, load, write_dicom

SCHEMA_CHECK = jsonschema.Draft202012Validator(output.schema())


def run(*args: str, **env: str):
    return CliRunner().invoke(app, list(args), env=env or None)


def one_document(result) -> dict:
    """stdout holds exactly one JSON document, and it meets `provision schema --output`."""
    doc = json.loads(result.stdout)   # raises on anything else (two documents, text around it)
    errors = sorted(SCHEMA_CHECK.iter_errors(doc), key=str)
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]
    assert doc["exit_code"] == result.exit_code
    return doc


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("dicom")
    write_dicom(d, studies=1)
    return d


def blueprint(tmp_path: Path, pid: str, data_dir: Path | None = None, name: str | None = None, **over) -> str:
    load(tmp_path, blueprint_dict(pid, data_dir, smoke={"min_studies": 1}, **over), name or f"{pid}.yaml")
    return str(tmp_path / (name or f"{pid}.yaml"))


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------------------- one document, always
def test_every_command_prints_one_schema_valid_document_through_its_failure_modes(emulator, tmp_path, data_dir,
                                                                                  quick_unreachable):
    url = emulator.url
    good = blueprint(tmp_path, "ohif-json-good", data_dir)
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nproject: {id: Bad_Id}\n")
    nobill = tmp_path / "nobill.yaml"
    d = blueprint_dict("ohif-json-nobill", None, bucket=None, dicom_stores=[{"id": "s"}])
    d["project"].pop("billing_account")
    load(tmp_path, d, nobill.name)
    dead = f"http://127.0.0.1:{closed_port()}"
    cases = {
        # command: [(args, expected exit code, expected error kind or None)]
        "validate": [([good], 0, None), ([str(bad)], 2, "invalid_blueprint"), ([good, str(bad)], 2, "invalid_blueprint")],
        "plan": [([good, "--emulator", url], 0, None), ([str(nobill), "--emulator", url], 2, None),
                 ([good, "--emulator", dead], 1, None), ([good, "--emulator", "localhost:1"], 2, "usage"),
                 ([str(bad), "--emulator", url], 2, "invalid_blueprint"), (["--emulator", url], 2, "usage")],
        "apply": [([good, "--emulator", url, "--yes", "--no-smoke"], 0, None),
                  ([str(nobill), "--emulator", url, "--yes"], 2, None),
                  ([good, str(nobill), "--emulator", url, "--yes", "--no-smoke"], 2, None),
                  ([good, "--emulator", url, "--yes", "--reimport", "nope"], 2, "usage")],
        "status": [([good, "--emulator", url], 0, None), ([good, "--emulator", dead], 1, None)],
        "smoke": [([good, "--emulator", url], 0, None), ([str(nobill), "--emulator", url], 1, None)],
        "destroy": [([good, "--emulator", url, "--yes"], 0, None), ([good, "--emulator", dead, "--yes"], 1, None)],
    }
    for command, runs in cases.items():
        for args, code, kind in runs:
            result = run(command, *args, "--json")
            assert result.exit_code == code, (command, args, result.output)
            doc = one_document(result)
            assert doc["command"] == command
            assert (doc["error"] or {}).get("kind") == kind, (command, args, doc["error"])
            assert "Traceback" not in result.output
    # one shape for one blueprint or many
    two = one_document(run("plan", good, str(nobill), "--emulator", url, "--json"))
    assert [r["ok"] for r in two["results"]] == [True, False]
    assert "can only be enabled on a project with billing" in two["results"][1]["error"]
    # the unreachable target is said once, as one clear message
    dead_plan = run("plan", good, "--emulator", dead, "--json")
    err = json.loads(dead_plan.stdout)["results"][0]["error"]
    assert err.count("is the emulator running") <= 1 and dead in err, err


def test_an_interrupted_apply_still_prints_one_document_and_says_what_to_do(emulator_factory, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    emu = emulator_factory(latency="realistic", time_scale=0.1)
    path = blueprint(tmp_path, "ohif-json-int", None, bucket=None, dicom_stores=[{"id": "s"}])
    proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "provision"), "apply", path, "--emulator",
                             emu.url, "--yes", "--no-smoke", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    # The moment it means: the first step has finished (its line on stderr) and others are under way.
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "✓ project" in line:
            break
    else:
        raise AssertionError("apply ended before its project step finished:\n" + "".join(seen))
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    doc = json.loads(out)
    assert not list(SCHEMA_CHECK.iter_errors(doc)) and doc["error"]["kind"] == "interrupted"
    assert "run the same command again" in err and "Traceback" not in err
    # what finished is not lost (issue 19): the blueprint's result says where it stopped
    [result] = doc["results"]
    assert "interrupted" in result["apply"], (json.dumps(result, indent=1)[:3000], err)
    stopped = result["apply"]["interrupted"]
    assert "project" in stopped["finished"], stopped
    assert stopped["in_flight"] or stopped["skipped"], stopped
    status = {s["id"]: s["status"] for s in result["apply"]["steps"]}
    assert status["project"] == "done" and all(status[i] == "skipped" for i in stopped["skipped"])
    assert result["ok"] is False and "interrupted" in result["error"]


# ---------------------------------------------------------------------------- exit codes
def test_detailed_exitcode_says_changes_and_drift(emulator, tmp_path, data_dir):
    url = emulator.url
    path = blueprint(tmp_path, "ohif-json-exit", data_dir)
    assert run("plan", path, "--emulator", url).exit_code == 0                          # without the flag
    assert run("plan", path, "--emulator", url, "--detailed-exitcode").exit_code == 3     # changes
    assert run("status", path, "--emulator", url, "--detailed-exitcode").exit_code == 3   # missing
    assert run("apply", path, "--emulator", url, "--yes").exit_code == 0
    assert run("plan", path, "--emulator", url, "--detailed-exitcode").exit_code == 0
    assert run("status", path, "--emulator", url, "--detailed-exitcode").exit_code == 0
    from provision.gcp.context import Ctx
    from provision.gcp.target import Target
    from provision.resources import iam

    ctx = Ctx(Target(emulator=url))
    store = "projects/ohif-json-exit/locations/us-central1/datasets/imaging/dicomStores/primary"
    iam.add(ctx, iam.dicom_store_io(ctx, store), [("roles/healthcare.dicomEditor", "user:x@example.com")])
    drift = run("status", path, "--emulator", url, "--detailed-exitcode", "--json")
    assert drift.exit_code == 3 and one_document(drift)["results"][0]["status"]["in_sync"] is False


# ---------------------------------------------------------------------------- saved plans
def test_a_saved_plan_applies_exactly_or_refuses_when_the_state_moved(emulator, tmp_path, data_dir):
    url = emulator.url
    path = blueprint(tmp_path, "ohif-json-saved", data_dir)
    saved = tmp_path / "plan.json"
    assert run("plan", path, "--emulator", url, "--out", str(saved)).exit_code == 0
    assert json.loads(saved.read_text())["format"] == "provision-plan/1"
    applied = run("apply", str(saved), "--emulator", url, "--json", "--no-smoke")
    assert applied.exit_code == 0, applied.output
    assert one_document(applied)["results"][0]["apply"]["changed"] is True
    # the same saved plan again: the live state moved (everything exists now), so it is refused
    moved = run("apply", str(saved), "--emulator", url)
    assert moved.exit_code == 1 and "the live state moved since the plan was saved" in moved.output
    assert "project: saved create" in moved.output and "now no-op" in moved.output
    # a saved plan whose blueprint was edited since is refused too
    assert run("plan", path, "--emulator", url, "--out", str(saved)).exit_code == 0
    Path(path).write_text(Path(path).read_text().replace("team: a", "team: b"))
    edited = run("apply", str(saved), "--emulator", url)
    assert edited.exit_code == 1 and "changed since the plan was saved" in edited.output


# ---------------------------------------------------------------------------- fleets
def test_directories_and_shards_cover_a_fleet_exactly_once(emulator, tmp_path):
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    for i in range(7):
        blueprint(fleet, f"ohif-fleet-{i}", None, bucket=None, dicom_stores=[{"id": "s"}])
    every = one_document(run("validate", str(fleet), "--json"))
    assert len(every["results"]) == 7
    seen: list[str] = []
    for i in (1, 2, 3):
        doc = one_document(run("plan", str(fleet), "--shard", f"{i}/3", "--emulator", emulator.url, "--json"))
        seen += [r["project"] for r in doc["results"]]
    assert sorted(seen) == sorted(r["project"] for r in every["results"])   # disjoint and complete
    assert run("plan", str(fleet), "--shard", "4/3").exit_code == 2


def test_two_blueprints_naming_one_project_are_refused(tmp_path):
    a = blueprint(tmp_path, "ohif-same", None, name="a.yaml", bucket=None, dicom_stores=[{"id": "s"}])
    b = blueprint(tmp_path, "ohif-same", None, name="b.yaml", bucket=None, dicom_stores=[{"id": "t"}])
    result = run("validate", a, b)
    assert result.exit_code == 2 and "both name project ohif-same" in result.output



def test_two_blueprints_writing_one_config_are_refused_and_inits_do_not_collide(tmp_path, monkeypatch):
    """Issue 19: a fleet whose blueprints share `viewer.config_out` would overwrite one config with another."""
    shared = {"origin": "http://127.0.0.1:3000", "config_out": "out/google.js"}
    blueprint(tmp_path, "ohif-cfg-a", None, bucket=None, dicom_stores=[{"id": "s"}], viewer=shared)
    b = blueprint(tmp_path, "ohif-cfg-b", None, bucket=None, dicom_stores=[{"id": "s"}], viewer=shared)
    result = run("validate", str(tmp_path))
    assert result.exit_code == 2, result.output
    assert f"{b}:" in result.output and "viewer.config_out" in result.output, result.output
    assert "ohif-cfg-a.yaml writes its OHIF config there too" in result.output, result.output
    # init's default is the project's own file: three teams made by init never collide
    monkeypatch.chdir(tmp_path)
    teams = tmp_path / "teams"
    teams.mkdir()
    for team in ("radiology", "neuro", "cardio"):
        assert run("init", str(teams / f"{team}.yaml")).exit_code == 0
        text = (teams / f"{team}.yaml").read_text().replace("my-ohif-project", f"ohif-{team}")
        (teams / f"{team}.yaml").write_text(text)
    assert run("validate", str(teams)).exit_code == 0
    from provision.blueprint.load import load_blueprint
    assert load_blueprint(teams / "neuro.yaml").viewer.config_out == teams / "out" / "ohif-neuro.js"

# ---------------------------------------------------------------------------- config, smoke --as, destroy
def test_config_json_never_lands_on_the_js_path_and_dash_is_stdout(tmp_path):
    path = blueprint(tmp_path, "ohif-json-cfg", None, bucket=None, dicom_stores=[{"id": "s"}])
    js = tmp_path / "out" / "ohif-json-cfg.js"   # viewer.config_out, relative to the blueprint
    result = run("config", path, "--format", "json", "--emulator", "http://127.0.0.1:1")
    assert result.exit_code == 0, result.output
    assert not js.exists() and json.loads(js.with_suffix(".json").read_text())
    assert f"wrote {js.with_suffix('.json')}" in result.output
    dash = run("config", path, "--out", "-", "--emulator", "http://127.0.0.1:1")
    assert dash.exit_code == 0 and "window.config = {" in dash.stdout and not js.exists()
    assert not Path("-").exists() and not (tmp_path / "-").exists()


def test_smoke_as_the_viewers_users(emulator_factory, tmp_path, data_dir):
    import requests

    from emulator_helpers import CONTROL

    emu = emulator_factory(enforce_iam=True)
    owner = "user:owner@example.com"
    for resource, role in (("organizations/123456789012", "roles/resourcemanager.projectCreator"),
                           ("billingAccounts/012345-6789AB-CDEF01", "roles/billing.user")):
        requests.put(f"{emu.url}/_emulator/policies/{resource}", json={"bindings": [{"role": role, "members": [owner]}]},
                     headers=CONTROL, timeout=10).raise_for_status()
    path = blueprint(tmp_path, "ohif-json-as", data_dir)   # grants group:radiology@example.com dicomViewer
    env = {"PROVISION_EMULATOR_TOKEN": f"emulator:{owner}"}
    assert run("apply", path, "--emulator", emu.url, "--yes", "--no-smoke", **env).exit_code == 0
    viewer = run("smoke", path, "--emulator", emu.url, "--as", "group:radiology@example.com", "--json", **env)
    assert viewer.exit_code == 0, viewer.output
    assert one_document(viewer)["results"][0]["smoke"]["as"] == "group:radiology@example.com"
    text = run("smoke", path, "--emulator", emu.url, "--as", "group:radiology@example.com", **env)
    assert "passed" in text.output and "as group:radiology@example.com" in text.output, text.output
    stranger = run("smoke", path, "--emulator", emu.url, "--as", "user:stranger@example.com", "--json", **env)
    assert stranger.exit_code == 1
    assert one_document(stranger)["results"][0]["smoke"]["ok"] is False


def test_smoke_as_a_member_is_refused_where_nobody_is_checked(emulator, tmp_path, data_dir):
    """Issue 19: on an emulator without --enforce-iam every caller is the owner, so `--as` would prove nothing."""
    path = blueprint(tmp_path, "ohif-json-asno", data_dir)
    assert run("apply", path, "--emulator", emulator.url, "--yes", "--no-smoke").exit_code == 0
    carol = run("smoke", path, "--emulator", emulator.url, "--as", "user:carol@example.com")
    assert carol.exit_code == 2, carol.output
    assert "user:carol@example.com" in carol.output and "--enforce-iam" in carol.output, carol.output
    assert "passed" not in carol.output
    doc = one_document(run("smoke", path, "--emulator", emulator.url, "--as", "user:carol@example.com", "--json"))
    assert doc["error"]["kind"] == "usage" and "proves nothing" in doc["error"]["message"]
    assert run("smoke", path, "--emulator", emulator.url).exit_code == 0    # without --as: the owner's smoke


def test_destroy_without_a_terminal_or_yes_changes_nothing(emulator, tmp_path, data_dir):
    path = blueprint(tmp_path, "ohif-json-dest", data_dir)
    assert run("apply", path, "--emulator", emulator.url, "--yes", "--no-smoke").exit_code == 0
    refused = run("destroy", path, "--emulator", emulator.url, "--delete-data")
    assert refused.exit_code == 2 and "run again with --yes" in refused.output
    # it says how much would be lost before asking
    assert "delete DICOM store primary and its 1 study" in refused.output, refused.output
    assert re.search(r"delete gs://ohif-json-dest-dicom and its \d+ object\(s\)", refused.output), refused.output
    status = json.loads(run("status", path, "--emulator", emulator.url, "--json").stdout)
    assert status["results"][0]["status"]["in_sync"] is True   # nothing was deleted


# ---------------------------------------------------------------------------- help
@pytest.mark.parametrize("command", ["", "validate", "plan", "apply", "status", "destroy", "config", "smoke",
                                     "viewer", "emulator", "demo", "init", "schema"])
def test_help_fits_80_columns_with_real_metavars(command):
    result = CliRunner().invoke(app, [*filter(None, [command]), "--help"], env={"COLUMNS": "80"},
                                terminal_width=80)
    assert result.exit_code == 0
    text = result.output
    assert all(len(line) <= 80 for line in text.splitlines()), [line for line in text.splitlines() if len(line) > 80]
    assert not re.search(r"<(bool|int|text|path|list|float)[^>]*>", text, re.I), text
    assert "…" not in text
    if not command:
        for words in ("Exit codes:", "130", "PROVISION_EMULATOR_HOST", "PROVISION_EMULATOR_TOKEN", "PROVISION_CACHE"):
            assert words in text


def test_output_schema_is_published():
    result = run("schema", "--output")
    assert result.exit_code == 0 and json.loads(result.stdout)["title"] == "provision --json output"


def test_destroy_asks_to_type_the_project_id_before_deleting_data(emulator, tmp_path, data_dir):
    """On a terminal (a pseudo-terminal here), a wrong answer changes nothing; the project ID deletes."""
    import os
    import pty
    import subprocess
    import sys
    import time

    path = blueprint(tmp_path, "ohif-json-typed", data_dir)
    assert run("apply", path, "--emulator", emulator.url, "--yes", "--no-smoke").exit_code == 0
    exe = os.path.join(os.path.dirname(sys.executable), "provision")

    def destroy_answering(answer: str) -> tuple[int, str]:
        leader, follower = pty.openpty()
        proc = subprocess.Popen([exe, "destroy", path, "--emulator", emulator.url, "--delete-data"],
                                stdin=follower, stdout=follower, stderr=follower, close_fds=True)
        os.close(follower)
        seen, deadline, sent = b"", time.monotonic() + 60, False
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            seen += chunk
            if not sent and b"to confirm" in seen:
                os.write(leader, answer.encode() + b"\n")
                sent = True
        proc.wait(timeout=30)
        os.close(leader)
        return proc.returncode, seen.decode(errors="replace")

    code, text = destroy_answering("ohif-json-typo")
    assert code == 1 and "Type ohif-json-typed to confirm" in text and "nothing was changed" in text, text
    assert "delete DICOM store primary and its 1 study" in text
    assert json.loads(run("status", path, "--emulator", emulator.url, "--json").stdout)["results"][0]["status"]["in_sync"]
    code, text = destroy_answering("ohif-json-typed")
    assert code == 0, text
    gone = json.loads(run("status", path, "--emulator", emulator.url, "--json").stdout)["results"][0]["status"]
    assert {r["id"]: r["state"] for r in gone["resources"]}["store:primary"] == "missing"


def test_a_fleet_apply_ends_with_one_summary_table(emulator, tmp_path):
    fleet = tmp_path / "teams"
    fleet.mkdir()
    for team in ("a", "b"):
        blueprint(fleet, f"ohif-table-{team}", None, bucket=None, dicom_stores=[{"id": "s"}])
    d = blueprint_dict("ohif-table-c", None, bucket=None, dicom_stores=[{"id": "s"}])
    d["project"].pop("billing_account")
    load(fleet, d, "c.yaml")
    result = run("apply", str(fleet), "--emulator", emulator.url, "--yes", "--no-smoke")
    assert result.exit_code == 2   # c is refused at plan: a blueprint mistake
    table = result.stdout[result.stdout.index("3 blueprints: 2 ok, 1 failed"):]
    assert re.search(r"ohif-table-a\s+ok\s+applied: \d+ to create in \d+\.\d+s", table), table
    assert re.search(r"ohif-table-c\s+FAILED\s+c.yaml:\d+:\d+: healthcare.googleapis.com can only be enabled", table), table
