"""One apply at a time (issue 18, DESIGN §4): the lock object next to the record, through the real
google-cloud-storage client against the emulator. Runs are synchronized on the engine's events."""
from __future__ import annotations

import json
import os
import socket
import threading

import pytest
from typer.testing import CliRunner

from provision.cli import app
from provision.gcp.context import Ctx
from provision.gcp.target import Target
from provision.resources.lock import OBJECT, LockHeld
from provision.resources.record import bucket_for
from provision.running import lifecycle
from provision.running.lifecycle import Options
from test_apply_support import blueprint_dict, load, records, write_dicom

GRANT = {"member": "user:second@example.com", "roles": ["roles/serviceusage.serviceUsageConsumer"]}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("dicom")
    write_dicom(d, studies=2)
    return d


def lock_blob(target: Target, pid: str):
    return Ctx(target).target.storage().bucket(bucket_for(pid)).blob(OBJECT)


class Paused:
    """A listener that holds its run at the first step it starts until `go` is set."""

    def __init__(self) -> None:
        self.running, self.go = threading.Event(), threading.Event()

    def __call__(self, event) -> None:
        if event.kind == "start" and not self.running.is_set():
            self.running.set()
            assert self.go.wait(60), "the test never let the first run go on"


def start(fn) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def run() -> None:
        try:
            out["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def applied_blueprint(tmp_path, data_dir, pid: str):
    """A blueprint applied once, and the same with one more grant (so a second apply has work)."""
    d = blueprint_dict(pid, data_dir)
    return d, load(tmp_path, d)


def test_two_applies_started_together_one_runs_the_other_names_the_holder(emulator, tmp_path, data_dir):
    target = Target(emulator=emulator.url)
    d, bp = applied_blueprint(tmp_path, data_dir, "ohif-lock-two")
    lifecycle.apply(bp, target)
    d["iam"].append(GRANT)
    more = load(tmp_path, d, "more.yaml")
    first = Paused()
    thread, out = start(lambda: lifecycle.apply(more, target, first))
    assert first.running.wait(60)
    held = json.loads(lock_blob(target, "ohif-lock-two").download_as_bytes())
    assert held["pid"] == os.getpid() and held["host"] == socket.gethostname() and held["command"] == "apply"
    with pytest.raises(LockHeld) as err:   # the second: stops at once, naming who holds the lock since when
        lifecycle.apply(more, target)
    message = str(err.value)
    assert f"@{socket.gethostname()} (pid {os.getpid()}, provision apply) since {held['since']}" in message
    assert "nothing was changed" in message and "provision unlock" in message and "--wait-lock" in message
    first.go.set()
    thread.join(60)
    assert "error" not in out and out["result"].changed
    assert not lock_blob(target, "ohif-lock-two").exists()            # released on success
    assert not lifecycle.plan(more, target).has_changes


def test_a_second_apply_can_wait_and_then_plans_again(emulator, tmp_path, data_dir):
    target = Target(emulator=emulator.url)
    d, bp = applied_blueprint(tmp_path, data_dir, "ohif-lock-wait")
    lifecycle.apply(bp, target)
    d["iam"].append(GRANT)
    more = load(tmp_path, d, "more.yaml")
    first = Paused()
    thread, out = start(lambda: lifecycle.apply(more, target, first))
    assert first.running.wait(60)
    waiting = threading.Event()

    def second_listener(event) -> None:
        if event.kind == "waiting" and "held by" in event.message:
            waiting.set()

    second, out2 = start(lambda: lifecycle.apply(more, target, second_listener, opts=Options(wait_lock_s=120)))
    assert waiting.wait(60)
    first.go.set()
    thread.join(60)
    second.join(120)
    assert "error" not in out and "error" not in out2, (out, out2)
    assert out["result"].changed and not out2["result"].changed   # it planned again: the first did the work


def test_the_lock_is_released_when_a_run_is_interrupted(emulator, tmp_path, data_dir):
    target = Target(emulator=emulator.url)
    d, bp = applied_blueprint(tmp_path, data_dir, "ohif-lock-int")
    lifecycle.apply(bp, target)
    d["iam"].append(GRANT)
    more = load(tmp_path, d, "more.yaml")
    seen = threading.Event()

    def ctrl_c_at_first_step(event) -> None:
        if event.kind == "start":
            if lock_blob(target, "ohif-lock-int").exists():
                seen.set()
            raise KeyboardInterrupt   # what Ctrl-C does to a run

    with pytest.raises(KeyboardInterrupt):
        lifecycle.apply(more, target, ctrl_c_at_first_step)
    assert seen.is_set()   # it held the lock while it ran
    assert not lock_blob(target, "ohif-lock-int").exists()
    assert lifecycle.apply(more, target).changed   # and the next run is not locked out


def test_a_new_project_takes_its_lock_when_the_record_bucket_is_made(emulator_factory, tmp_path, data_dir):
    rec = tmp_path / "rec.jsonl"
    emu = emulator_factory(record=rec)
    target = Target(emulator=emu.url)
    bp = load(tmp_path, blueprint_dict("ohif-lock-new", data_dir))
    assert lifecycle.apply(bp, target).changed
    bucket = "ohif-lock-new-provision-state"
    state = [r for r in records(rec) if r["method"] != "GET" and (
        bucket in r["path"] or (r["path"] == "/storage/v1/b" and (r["request"] or {}).get("name") == bucket))]
    made = next(i for i, r in enumerate(state) if r["method"] == "POST" and r["path"] == "/storage/v1/b")
    lock_at = next(i for i, r in enumerate(state) if r["query"].get("ifGenerationMatch") == ["0"])
    record_at = next(i for i, r in enumerate(state) if r["path"].endswith("/o") and i != lock_at)
    assert made < lock_at < record_at, state   # taken once the bucket exists, before the record's first write
    assert state[-1]["method"] == "DELETE" and state[-1]["path"].endswith("/o/lock.json")
    assert not lock_blob(target, "ohif-lock-new").exists()


def test_cli_names_the_holder_and_unlock_breaks_a_stale_lock(emulator, tmp_path, data_dir):
    def run(*args):
        return CliRunner().invoke(app, [*args, "--emulator", emulator.url])

    target = Target(emulator=emulator.url)
    d, bp = applied_blueprint(tmp_path, data_dir, "ohif-lock-cli")
    path = str(bp.source)
    assert run("apply", path, "--yes", "--no-smoke").exit_code == 0
    stale = {"format": "provision-lock/1", "user": "ana", "host": "ci-runner-7", "pid": 4242, "command": "apply",
             "since": "2026-01-01T00:00:00Z"}   # a run killed with -9 left it
    lock_blob(target, "ohif-lock-cli").upload_from_string(json.dumps(stale), if_generation_match=0)
    d["iam"].append(GRANT)
    load(tmp_path, d, bp.source.name)
    refused = run("apply", path, "--yes", "--no-smoke")
    assert refused.exit_code == 1, refused.output
    assert "ana@ci-runner-7 (pid 4242, provision apply) since 2026-01-01T00:00:00Z" in refused.output
    assert "Traceback" not in refused.output
    waited = run("apply", path, "--yes", "--no-smoke", "--wait-lock", "0.5s")
    assert waited.exit_code == 1 and "(waited 0.5s)" in waited.output, waited.output
    assert run("apply", path, "--wait-lock", "soon").exit_code == 2
    broke = run("unlock", path)
    assert broke.exit_code == 0 and "ana@ci-runner-7" in broke.output, broke.output
    assert not lock_blob(target, "ohif-lock-cli").exists()
    assert "no lock" in run("unlock", path).output
    assert run("apply", path, "--yes", "--no-smoke").exit_code == 0


def test_destroy_takes_the_same_lock(emulator, tmp_path, data_dir):
    target = Target(emulator=emulator.url)
    _, bp = applied_blueprint(tmp_path, data_dir, "ohif-lock-dest")
    lifecycle.apply(bp, target)
    other = {"format": "provision-lock/1", "user": "bo", "host": "elsewhere", "pid": 7, "command": "apply",
             "since": "2026-12-01T00:00:00Z"}
    lock_blob(target, "ohif-lock-dest").upload_from_string(json.dumps(other), if_generation_match=0)
    with pytest.raises(LockHeld, match="bo@elsewhere"):
        lifecycle.destroy(bp, target)
    assert lifecycle.status(bp, target).in_sync   # nothing was deleted
    assert lifecycle.unlock(bp, target)["user"] == "bo"
    assert lifecycle.destroy(bp, target).steps
