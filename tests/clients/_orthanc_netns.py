"""The network side of tests/clients/test_orthanc.py, run inside a private network namespace
(`unshare -n`, or `unshare -rn` without root) whose only interface is loopback.

Debian's Orthanc 1.10 cannot be told which address to bind (HttpBindAddresses came in 2025) and
listens on every interface; in this namespace every interface is 127.0.0.1, so nothing outside
the machine - or outside this namespace - can reach it. The emulator runs here too (bound to
127.0.0.1), so Orthanc's DICOMweb client reaches it over real loopback HTTP.

Protocol, one JSON object per line: on start this prints {"emulator": url, "dicomweb": url,
"orthanc": url}; then each line read from stdin is either an HTTP request to perform here
({"method", "url", "headers", "body": base64}) answered with {"status", "headers", "body": base64},
or {"stop": true}. EOF (the test process went away) stops everything too. Orthanc and the
emulator are stopped whatever happens.
"""
from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))      # tests/: emulator_helpers

ORTHANC = "/usr/sbin/Orthanc"
PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
SERVER = "emulator"          # the name Orthanc knows the emulator's DICOMweb service by


def only_loopback() -> bool:
    lines = Path("/proc/self/net/dev").read_text().splitlines()[2:]
    return [line.split(":")[0].strip() for line in lines] == ["lo"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Orthanc exited with status {proc.returncode}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.05)
    raise RuntimeError(f"Orthanc did not answer at {url} within {timeout} s")


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def serve_requests() -> None:
    import requests

    session = requests.Session()
    for line in sys.stdin:
        msg = json.loads(line)
        if msg.get("stop"):
            return
        # A fresh connection per request: Orthanc 1.10's HTTP server (CivetWeb) drops a kept-alive
        # connection after about a second idle (the KeepAliveTimeout option came in 1.11.3, default 1 s),
        # and a request sent as it does so fails with "Remote end closed connection without response"
        # (seen once under load, make test, 2026-12-08).
        try:
            r = session.request(msg["method"], msg["url"], headers={**(msg.get("headers") or {}), "Connection": "close"},
                                data=base64.b64decode(msg.get("body") or ""), timeout=msg.get("timeout") or 60,
                                allow_redirects=False)
            emit({"status": r.status_code, "headers": dict(r.headers), "body": base64.b64encode(r.content).decode()})
        except requests.RequestException as exc:
            emit({"error": f"{type(exc).__name__}: {exc}"})


def main() -> int:
    if not only_loopback():
        print("refusing to start Orthanc: this is not a loopback-only network namespace", file=sys.stderr)
        return 2
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    from emulator_helpers import ready_store
    from provision.emulator.server import EmulatorServer
    from provision.emulator.world import Options

    work = Path(tempfile.mkdtemp(prefix="orthanc-test-"))
    emu = EmulatorServer(Options(host="127.0.0.1", port=0)).start()
    proc = None
    try:
        env = ready_store(emu, project="orthanc-peer")
        port = free_port()
        (work / "db").mkdir()
        config = {
            "Name": "provision-test", "HttpPort": port, "DicomServerEnabled": False,
            "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "HttpCompressionEnabled": False,
            "StorageDirectory": str(work / "db"), "IndexDirectory": str(work / "db"), "Plugins": [PLUGIN],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False,
                         "Servers": {SERVER: {"Url": env.dicomweb_url + "/", "HasDelete": True}}},
        }
        (work / "orthanc.json").write_text(json.dumps(config))
        with open(work / "orthanc.log", "wb") as log:
            proc = subprocess.Popen([ORTHANC, str(work / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT, cwd=work)
            orthanc = f"http://127.0.0.1:{port}"
            wait_http(f"{orthanc}/system", proc)
            emit({"emulator": emu.url, "dicomweb": env.dicomweb_url, "orthanc": orthanc, "server": SERVER})
            serve_requests()
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        emu.stop()
        log_tail = (work / "orthanc.log").read_bytes()[-3000:] if (work / "orthanc.log").exists() else b""
        shutil.rmtree(work, ignore_errors=True)
        if proc is not None and proc.returncode not in (0, -15):
            sys.stderr.write(log_tail.decode("utf-8", "replace"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
