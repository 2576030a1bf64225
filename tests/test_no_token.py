"""No token anywhere: not in what provision prints, not in the emulator's --record file, not in the
files a run leaves (the OHIF config, the smoke's screenshots and reports), not in retry reasons or
error messages, even when a server echoes the credentials back.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from emulator_helpers import CONTROL
from provision.demo.run import write_demo_blueprint
from provision.running.engine import Event, emit
from provision.gcp.errors import to_provision_error
from provision.gcp.retry import RetryPolicy
from provision.gcp.target import Target
from provision.checks.browser_chromium import CHROMIUM
from provision.redact import redact

REPO = Path(__file__).resolve().parent.parent
OWNER = "user:owner-7f3c@example.com"
NOBODY = "user:nobody-9b1d@example.com"
ORG = "organizations/123456789012"
BILLING = "012345-6789AB-CDEF01"


def provision(*args: str, cwd: Path, token: str, emulator: str) -> subprocess.CompletedProcess:
    """The installed CLI as a user runs it, in its own process (real stdout and stderr)."""
    env = {**os.environ, "PROVISION_EMULATOR_HOST": emulator, "PROVISION_EMULATOR_TOKEN": token,
           "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "provision.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def every_file(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_a_full_run_under_enforced_iam_leaves_no_token(emulator_factory, tmp_path):
    from provision.demo.studies import write_demo_studies

    record = tmp_path / "record.jsonl"
    emu = emulator_factory(enforce_iam=True, record=record)
    for resource, role in ((ORG, "roles/resourcemanager.projectCreator"), (f"billingAccounts/{BILLING}", "roles/billing.user")):
        requests.put(f"{emu.url}/_emulator/policies/{resource}", json={"bindings": [{"role": role, "members": [OWNER]}]},
                     headers=CONTROL, timeout=10).raise_for_status()
    work = tmp_path / "work"
    blueprint = write_demo_blueprint(work)            # uploads from ./demo-data, config to ./google.js
    write_demo_studies(work / "demo-data")
    token, refused = f"emulator:{OWNER}", f"emulator:{NOBODY}"

    runs = [provision("apply", str(blueprint), "--yes", cwd=work, token=token, emulator=emu.url),
            provision("apply", str(blueprint), "--yes", "--json", cwd=work, token=token, emulator=emu.url),
            provision("status", str(blueprint), "--json", cwd=work, token=token, emulator=emu.url),
            provision("plan", str(blueprint), cwd=work, token=refused, emulator=emu.url)]
    if Path(CHROMIUM).exists():  # the viewer takes the token in its URL (?token=): the riskiest path
        runs.append(provision("smoke", str(blueprint), "--browser", "--json", cwd=work, token=token, emulator=emu.url))
    first, again, status, denied = runs[:4]
    assert first.returncode == 0, first.stderr
    assert json.loads(again.stdout)["results"][0]["apply"]["changed"] is False
    assert status.returncode == 0, status.stderr
    assert denied.returncode == 1 and "you lack" in denied.stderr, denied.stderr  # an error was printed
    if len(runs) > 4:
        assert runs[4].returncode == 0, runs[4].stdout + runs[4].stderr
        assert list((work / "out" / "smoke").rglob("*.png")), "the browser smoke left no screenshot"

    outputs = {f"{i}.{stream}": getattr(run, stream) for i, run in enumerate(runs) for stream in ("stdout", "stderr")}
    files = every_file(work)
    assert "google.js" in files  # the emitted OHIF config
    files["record"] = record.read_bytes()
    assert b'"principal":"' + OWNER.encode() in files["record"]  # the record names the member...
    for secret in (token, refused):                                # ...never its token, in any form
        forms = {secret, secret.replace(":", "%3A").replace("@", "%40"), f"Bearer {secret}"}
        for name, text in outputs.items():
            assert not any(f in text for f in forms), f"{secret} in {name}"
        for name, data in files.items():
            assert not any(f.encode() in data for f in forms), f"{secret} in {name}"
    everything = "".join(outputs.values()) + "".join(d.decode("utf-8", "replace") for d in files.values())
    assert "Bearer" not in everything and "access_token=" not in everything and "uthorization:" not in everything


# ------------------------------------------------------------------------------ a server that echoes credentials

class _Leaky(BaseHTTPRequestHandler):
    """Answers 503 twice, then 400, each error message quoting the request's Authorization header
    and URL, as some proxies and misconfigured servers do."""

    calls = 0

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        type(self).calls += 1
        status, name = (503, "UNAVAILABLE") if type(self).calls <= 2 else (400, "INVALID_ARGUMENT")
        echo = f"rejected {self.command} {self.path} with Authorization: {self.headers.get('Authorization')}"
        body = json.dumps({"error": {"code": status, "message": echo, "status": name}}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def leaky():
    _Leaky.calls = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Leaky)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_retry_reasons_and_errors_redact_what_a_server_echoes(leaky):
    token, in_query = "emulator:user:echo-4a2e@example.com", "ya29.a0EchoedQueryTokenxyz"
    target = Target(emulator=leaky, token=token)
    call = target.healthcare().projects().locations().list(name="projects/p", access_token=in_query)
    reasons: list[str] = []
    with pytest.raises(Exception) as caught:
        RetryPolicy(first=0.001, cap=0.01).run(lambda: call.execute(num_retries=0), deadline=time.monotonic() + 10,
                                               on_retry=lambda n, delay, reason: reasons.append(reason))
    assert _Leaky.calls == 3 and len(reasons) == 2
    error = str(to_provision_error(caught.value, "dataset", "projects/p/locations/us", target=target))
    events: list[Event] = []
    emit(events.append, Event("note", "dataset", f"the server said: {caught.value}"))
    shown = "\n".join(reasons + [error, events[0].text()])
    assert "Authorization: Bearer <redacted>" in shown and "access_token=<redacted>" in shown  # what was there
    assert token not in shown and in_query not in shown, shown


@pytest.mark.parametrize("text,secret", [
    ("Authorization: Bearer ya29.a0AfH6SMBxyz", "ya29.a0AfH6SMBxyz"),
    ("{'authorization': 'Bearer opaque-token-123'}", "opaque-token-123"),
    ("GET https://healthcare.googleapis.com/v1/x?alt=json&access_token=abc.def&fields=a", "abc.def"),
    ("/viewer?StudyInstanceUIDs=1.2.3&token=emulator%3Auser%3Aa%40b.c", "emulator%3Auser%3Aa%40b.c"),
    ('{"access_token": "ya29.c.abc", "expires_in": 3599}', "ya29.c.abc"),
    ("refresh_token=1//0gLongRefreshTokenValue-abc_def", "1//0gLongRefreshTokenValue"),
    ("assertion eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl failed", "eyJzdWIiOiIxMjMifQ"),
    ("PUT /upload/storage/v1/b/b/o?uploadType=resumable&upload_id=AbC123xyz", "AbC123xyz"),
    ("acting as emulator:user:ana@example.com", "emulator:user:ana@example.com"),
])
def test_redact_removes_token_material(text, secret):
    assert secret not in redact(text)
    assert "<redacted>" in redact(text)
    assert redact(redact(text)) == redact(text)


def test_redact_keeps_what_is_not_a_secret():
    for text in ("member user:ana@example.com lacks healthcare.dicomStores.get",
                 "set PROVISION_EMULATOR_TOKEN=emulator:user:NAME@DOMAIN",
                 "emulator: unhandled error in GET /v1/x", "cannot reach http://127.0.0.1:8765: connection refused",
                 "gs://ohif-demo-dicom/dicom/**.dcm", "projects/p/locations/us-central1/datasets/imaging"):
        assert redact(text) == text
