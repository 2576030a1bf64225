"""A fleet at Google's quotas: 1, 10 and 100 team blueprints applied by one `provision apply DIR/`.

For each size, in one run against an emulator with `--latency realistic` and its quotas on:
  - wall time of `provision apply DIR --yes --no-smoke` (parallelism left to provision),
  - the lower bound: the larger of one blueprint's critical path (from the emulator's latency
    table) and the quota-bound schedule (for each quota family, the cost the fleet was charged,
    read from the emulator's record, beyond the bucket's burst, at the family's refill rate,
    both from the emulator's quota table), and their ratio (target <= 1.15 at 100),
  - provision's peak RSS and CPU seconds per blueprint (target: RSS growing less than linearly).

Blueprints are generated teams (project, billing, APIs, a grant, dataset, store with a grant),
without data: imports are measured by bench/apply.py and bench/emulator.py.

Run: .venv/bin/python bench/fleet.py [--sizes 1,10,100] [--time-scale 0.02]
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from provision.emulator.latency import REALISTIC as LATENCY  # noqa: E402
from provision.emulator.quotas import REALISTIC as QUOTAS, classify  # noqa: E402

TEAM = """\
version: 1
project: {{id: {pid}, parent: organizations/123456789012, billing_account: 012345-6789AB-CDEF01,
          labels: {{team: t{i}}}}}
iam:
  - member: group:team-{i}@example.com
    roles: [roles/serviceusage.serviceUsageConsumer]
dataset: {{id: imaging, location: us-central1}}
dicom_stores:
  - id: primary
    iam:
      - member: group:team-{i}@example.com
        roles: [roles/healthcare.dicomViewer]
smoke: {{min_studies: 0}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def critical_path(scale: float) -> float:
    """One team's longest chain: project -> billing -> apis (+ propagation) -> dataset -> store -> store IAM."""
    t = {k: v * scale for k, v in LATENCY.items()}
    return (t["op:crm.projects.create"] + t["sync:billing.updateBillingInfo"] + t["op:serviceusage.enable"]
            + t["propagation:serviceusage.enable"] + t["op:healthcare.datasets.create"]
            + t["sync:healthcare.dicomStores.create"] + t["sync:healthcare.setIamPolicy"])


def quota_bound(record: Path, scale: float) -> tuple[float, str]:
    """The quota-bound schedule: for each family (one consumer: this run's caller), the time its
    token bucket needs to admit what the fleet was charged."""
    charged: dict[str, float] = defaultdict(float)
    for line in record.read_text().splitlines():
        r = json.loads(line)
        if r["status"] == 429:
            continue   # a refused request costs nothing
        c = classify(r["api"], r["method"], r["path"])
        if c:
            charged[c[0]] += c[1]
    best, why = 0.0, "none"
    for name, cost in charged.items():
        q = QUOTAS[name]
        rate = q.limit / (q.window_s * scale)
        need = max(0.0, (cost - (q.burst or q.limit)) / rate)
        if need > best:
            best, why = need, f"{name}: {cost:.0f} charged at {q.limit:g} per {q.window_s * scale:g} s"
    return best, why


def run_size(n: int, scale: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        fleet = Path(tmp) / "teams"
        fleet.mkdir()
        for i in range(n):
            (fleet / f"team-{i:03d}.yaml").write_text(TEAM.format(pid=f"ohif-fleet-{i:03d}", i=i))
        record = Path(tmp) / "record.jsonl"
        port = free_port()
        exe = Path(sys.executable).parent / "provision"
        emu = subprocess.Popen([str(exe), "emulator", "--port", str(port), "--latency", "realistic",
                                "--time-scale", str(scale), "--record", str(record)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.05)
            t0 = time.perf_counter()
            log = Path(tmp) / "apply.log"   # a file, not a pipe: a fleet's progress would fill a pipe and block
            with open(log, "w") as fh:
                proc = subprocess.Popen([str(exe), "apply", str(fleet), "--yes", "--no-smoke", "--emulator", url],
                                        stdout=subprocess.DEVNULL, stderr=fh)
                _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t0
            err = log.read_text()
            if os.waitstatus_to_exitcode(status) != 0:
                raise SystemExit(f"apply of {n} blueprints failed:\n{err[-3000:]}")
            quota_s, why = quota_bound(record, scale)
        finally:
            emu.terminate()
            emu.wait(timeout=10)
    path_s = critical_path(scale)
    bound = max(path_s, quota_s)
    return {"n": n, "wall": wall, "path": path_s, "quota": quota_s, "why": why, "bound": bound,
            "ratio": wall / bound, "rss_mib": usage.ru_maxrss / 1024, "cpu_per": (usage.ru_utime + usage.ru_stime) / n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1,10,100")
    ap.add_argument("--time-scale", type=float, default=0.02)
    args = ap.parse_args()
    rows = [run_size(int(n), args.time_scale) for n in args.sizes.split(",")]
    print(f"bench/fleet.py  (2 cores, load {os.getloadavg()[0]:.2f}; realistic latency and quotas x{args.time_scale})")
    print(f"  {'blueprints':>10} {'wall s':>8} {'bound s':>8} {'ratio':>6} {'RSS MiB':>8} {'CPU s/bp':>9}  bound from")
    for r in rows:
        src = r["why"] if r["quota"] >= r["path"] else "one blueprint's critical path"
        print(f"  {r['n']:>10} {r['wall']:>8.2f} {r['bound']:>8.2f} {r['ratio']:>6.2f} {r['rss_mib']:>8.0f} "
              f"{r['cpu_per']:>9.3f}  {src}")
    last = rows[-1]
    print(f"  ratio at {last['n']}: {last['ratio']:.2f} (target <= 1.15: {'met' if last['ratio'] <= 1.15 else 'MISSED'})")
    if len(rows) > 1 and rows[0]["n"] < last["n"]:
        growth = last["rss_mib"] / rows[0]["rss_mib"]
        print(f"  RSS x{growth:.1f} for x{last['n'] // rows[0]['n']} blueprints "
              f"({'less than linear: met' if growth < last['n'] / rows[0]['n'] else 'MISSED'})")


if __name__ == "__main__":
    main()
