"""HTTP/1.1 keep-alive on the emulator: N GETs through one `requests.Session`, as the client
libraries and OHIF's browser send them, and how many TCP connections they took.

    .venv/bin/python bench/keepalive.py                # 2,000 GETs of each kind
    .venv/bin/python bench/keepalive.py --requests 500

Starts `provision emulator` on a free port (its own process, in-memory state), creates one project
and one DICOM store with a few instances through the real client libraries, then times, one
after the other, N GETs of: a Resource Manager project (JSON), a QIDO-RS study search, and a
WADO-RS instance (a streamed, chunked answer). Prints requests per second and the connections the
client opened (counted in urllib3): 0 after the first with keep-alive, N without.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


def start(port: int) -> subprocess.Popen:
    exe = REPO / ".venv" / "bin" / "provision"
    cmd = [str(exe), "emulator", "--port", str(port)] if exe.exists() else \
        [sys.executable, "-m", "provision.cli", "emulator", "--port", str(port)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


class ConnectionCounter:
    """Counts TCP connects made by urllib3 (requests): a pooled connection that the server closed
    is reconnected on the same object, so the pool's own count would not show it."""

    def __init__(self) -> None:
        import urllib3.connection

        self.n = 0
        self._cls = urllib3.connection.HTTPConnection
        self._orig = self._cls._new_conn
        counter = self

        def counted(conn):
            counter.n += 1
            return counter._orig(conn)

        self._cls._new_conn = counted

    def close(self) -> None:
        self._cls._new_conn = self._orig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=2000)
    args = ap.parse_args(argv)

    import requests

    from emulator import free_port, stop_process, wait_http   # bench/emulator.py
    from emulator_helpers import CONTROL, LOCATION, create_project, discovery_client
    from dicom_factory import ct_series, to_bytes

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start(port)
    try:
        wait_http(f"{url}/_emulator/health", 60, proc, headers=CONTROL)
        create_project(url, "keepalive-bench")
        hc = discovery_client(url, "healthcare", "v1")
        parent = f"projects/keepalive-bench/locations/{LOCATION}"
        op = hc.projects().locations().datasets().create(parent=parent, datasetId="ds", body={}).execute()
        while not op.get("done"):
            time.sleep(0.02)
            op = hc.projects().locations().datasets().operations().get(name=op["name"]).execute()
        hc.projects().locations().datasets().dicomStores().create(parent=f"{parent}/datasets/ds", dicomStoreId="s",
                                                                  body={}).execute()
        base = f"{url}/v1/{parent}/datasets/ds/dicomStores/s/dicomWeb"
        series = ct_series("ka", slices=3, size=64, patient_id="KA-1")
        for ds in series:
            r = requests.post(f"{base}/studies", data=to_bytes(ds), timeout=30,
                              headers={"Content-Type": "application/dicom"})
            r.raise_for_status()
        first = series[0]
        kinds = {
            "project (JSON)": (f"{url}/v3/projects/keepalive-bench", {}),
            "QIDO-RS studies": (f"{base}/studies?PatientID=KA-1", {"Accept": "application/dicom+json"}),
            "WADO-RS instance (chunked)": (f"{base}/studies/{first.StudyInstanceUID}/series/{first.SeriesInstanceUID}"
                                           f"/instances/{first.SOPInstanceUID}",
                                           {"Accept": 'multipart/related; type="application/dicom"'}),
        }
        print(f"bench/keepalive.py  ({os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; "
              f"{args.requests} GETs of each kind through one requests.Session)")
        counter = ConnectionCounter()
        for name, (u, headers) in kinds.items():
            with requests.Session() as session:
                session.get(u, headers=headers, timeout=30).raise_for_status()   # warm: one connection
                counter.n = 0
                t = time.perf_counter()
                for _ in range(args.requests):
                    r = session.get(u, headers=headers, timeout=30)
                    if r.status_code != 200:
                        raise RuntimeError(f"GET {u} -> {r.status_code}")
                    _ = r.content  # read the body: the timing includes the transfer
                dt = time.perf_counter() - t
                print(f"  {name:<28} {args.requests / dt:8.0f} req/s  {dt * 1000 / args.requests:6.2f} ms/req  "
                      f"{counter.n:5d} new connection(s) for {args.requests} requests")
    finally:
        stop_process(proc, "emulator", sig=signal.SIGINT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
