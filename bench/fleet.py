"""A fleet at Google's quotas: team blueprints applied by one `provision apply DIR/`.

Two parts, each against its own `provision emulator --latency realistic --time-scale S`:

1. What a blueprint costs (`--count N`, default 20; the emulator's quotas off, so no 429 and no
   queueing changes the count): requests per blueprint, by quota family (the emulator's quota table
   says which request each family charges), from the emulator's --record. Targets: Service Usage
   reads <= 4 and all requests <= 40 per blueprint. From those costs, the quota-bound time of 100
   and 1,000 blueprints at Google's own (unscaled) quotas.
2. Wall time (`--sizes`, default 1,10,100; the emulator's quotas on): `provision apply DIR --yes
   --no-smoke` (parallelism left to provision) against the lower bound, and their ratio (target
   <= 1.10 at 100); provision's peak RSS and CPU seconds per blueprint.

The lower bound is the larger of one blueprint's critical path (from the emulator's latency table)
and the quota bound, which accounts for the interplay of quotas and each blueprint's chain: for
each kind of request a quota charges (a CreateProject, a batchEnable, ...), none can be sent
before its `head` (what it needs first: an enable needs a project with billing), the last of the
n the fleet sends cannot be admitted before the family's token bucket has then refilled what they
cost beyond its burst, (n x cost - burst) / rate, and its blueprint still has that request's
`tail` to go (what must follow it: after a CreateProject, the whole chain); and the family's last
request of any kind, likewise, with the shortest head and tail of its kinds. Costs are what the
record shows was charged (a refused request costs nothing).

Blueprints are generated teams (project, billing, APIs, a grant, dataset, store with a grant),
without data: imports are measured by bench/apply.py and bench/emulator.py.

Run: .venv/bin/python bench/fleet.py [--count 20] [--sizes 1,10,100] [--time-scale 0.02]
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
from collections import Counter, defaultdict
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
TARGET_SU_READS, TARGET_ALL = 4.0, 40.0
TARGET_RATIO = 1.10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------- the bound
def _t(key: str) -> float:
    return LATENCY[key]


def critical_path() -> float:
    """One team's longest chain, in Google seconds: project -> billing -> apis (+ propagation) ->
    dataset -> store -> store IAM."""
    return (_t("op:crm.projects.create") + _t("sync:billing.updateBillingInfo") + _t("op:serviceusage.enable")
            + _t("propagation:serviceusage.enable") + _t("op:healthcare.datasets.create")
            + _t("sync:healthcare.dicomStores.create") + _t("sync:healthcare.setIamPolicy"))


def kind_of(r: dict) -> tuple[str, float, float]:
    """A request's kind (for the bound), its head and its tail in Google seconds: the least time
    before any request of the kind can be sent (what it needs first: an enable, a project with
    billing), and the least time its blueprint needs after it is admitted. 0 where nothing is known."""
    path = r["path"].split("?")[0]
    created = _t("op:crm.projects.create")
    billed = created + _t("sync:billing.updateBillingInfo")
    if r["api"] == "cloudresourcemanager" and r["method"] == "POST" and path.rstrip("/") in ("/v1/projects", "/v3/projects"):
        return "CreateProject", 0.0, critical_path()
    if r["api"] == "serviceusage" and path.endswith((":batchEnable", ":enable")):
        return "enable", billed, critical_path() - billed
    if r["api"] == "serviceusage" and path.endswith(":generateServiceIdentity"):
        # after the enable; then the agent's role on the project: a read-modify-write of its policy
        return "generateServiceIdentity", billed + _t("op:serviceusage.enable"), (
            _t("op:serviceusage.generateServiceIdentity") + _t("sync:crm.projects.getIamPolicy")
            + _t("sync:crm.projects.setIamPolicy"))
    if path.endswith(":setIamPolicy") and r["api"] == "cloudresourcemanager":
        return "project setIamPolicy", created, _t("sync:crm.projects.setIamPolicy")
    return f"{r['method']} other", 0.0, 0.0


def charges(records: list[dict]) -> dict[str, dict[str, list[float]]]:
    """family -> kind -> [requests charged, cost each, head, tail]: what the quotas let through."""
    out: dict[str, dict[str, list[float]]] = defaultdict(dict)
    for r in records:
        c = classify(r["api"], r["method"], r["path"])
        if c is None or r["status"] == 429:
            continue   # no quota, or refused (a refused request costs nothing)
        kind, head, tail = kind_of(r)
        row = out[c[0]].setdefault(kind, [0.0, c[1], head, tail])
        row[0] += 1
    return out


def quota_bound(charged: dict[str, dict[str, list[float]]], window_scale: float = 1.0) -> tuple[float, str]:
    """The quota-bound time (seconds, with quota windows multiplied by `window_scale`; tails in
    Google seconds times the same scale), and what sets it (module docstring)."""
    best, why = 0.0, "none"
    for family, kinds in charged.items():
        q = QUOTAS[family]
        rate = q.limit / (q.window_s * window_scale)
        burst = q.capacity
        total = sum(n * cost for n, cost, _, _ in kinds.values())
        candidates = [(min(h for _, _, h, _ in kinds.values()), (total - burst) / rate,
                       min(t for _, _, _, t in kinds.values()), "all its requests")]
        candidates += [(head, (n * cost - burst) / rate, tail, f"{n:.0f} x {kind}")
                       for kind, (n, cost, head, tail) in kinds.items()]
        for head, refill, tail, what in candidates:
            if refill <= 0:
                continue
            need = (head + tail) * window_scale + refill
            if need > best:
                best, why = need, (f"{family}: {what}, {head * window_scale:.2f} s before + ({total:.0f} charged at "
                                   f"{q.limit:g} per {q.window_s * window_scale:g} s) + {tail * window_scale:.2f} s after")
    return best, why


# ---------------------------------------------------------------------------- one run
def records_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def apply_fleet(n: int, scale: float, quotas: str) -> dict:
    """Apply n generated teams against a fresh emulator; wall, rusage and the request record."""
    with tempfile.TemporaryDirectory() as tmp:
        fleet = Path(tmp) / "teams"
        fleet.mkdir()
        for i in range(n):
            (fleet / f"team-{i:03d}.yaml").write_text(TEAM.format(pid=f"ohif-fleet-{i:03d}", i=i))
        record = Path(tmp) / "record.jsonl"
        port = free_port()
        exe = Path(sys.executable).parent / "provision"
        emu = subprocess.Popen([str(exe), "emulator", "--port", str(port), "--latency", "realistic", "--time-scale",
                                str(scale), "--quotas", quotas, "--record", str(record)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
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
                proc = subprocess.Popen([str(exe), "apply", str(fleet), "--yes", "--no-smoke", "--emulator",
                                         f"http://127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=fh)
                _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t0
            if os.waitstatus_to_exitcode(status) != 0:
                raise SystemExit(f"apply of {n} blueprints failed:\n{log.read_text()[-3000:]}")
            recs = records_of(record)
        finally:
            emu.terminate()
            emu.wait(timeout=10)
    return {"n": n, "wall": wall, "records": recs, "rss_mib": usage.ru_maxrss / 1024,
            "cpu_per": (usage.ru_utime + usage.ru_stime) / n}


# ---------------------------------------------------------------------------- reports
def per_family(records: list[dict]) -> Counter:
    """Requests by quota family (APIs no quota covers under their own name), refused ones included."""
    out: Counter = Counter()
    for r in records:
        c = classify(r["api"], r["method"], r["path"])
        out[c[0] if c else f"{r['api']} (no quota)"] += 1
    return out


def count_part(n: int, scale: float) -> dict:
    run = apply_fleet(n, scale, "none")
    fam = per_family(run["records"])
    print(f"requests per blueprint, {n} blueprints, realistic latency x{scale}, quotas off:")
    for name in sorted(fam):
        print(f"  {name:28} {fam[name] / n:6.2f}")
    su, total = fam["serviceusage.read"] / n, len(run["records"]) / n
    print(f"  {'all requests':28} {total:6.2f}")
    print(f"  Service Usage reads {su:.2f} (target <= {TARGET_SU_READS:g}: {'met' if su <= TARGET_SU_READS else 'MISSED'}),"
          f" all requests {total:.2f} (target <= {TARGET_ALL:g}: {'met' if total <= TARGET_ALL else 'MISSED'})")
    charged = charges(run["records"])
    print("quota-bound time at Google's quotas (unscaled), from these costs:")
    for size in (100, 1000):
        scaled = {f: {k: [c[0] * size / n, *c[1:]] for k, c in kinds.items()} for f, kinds in charged.items()}
        bound, why = quota_bound(scaled)
        print(f"  {size:>5} blueprints: {bound:7.0f} s ({bound / 60:.1f} min), critical path {critical_path():.0f} s;"
              f" set by {why}")
    return {"su_reads": su, "total": total}


def timed_part(sizes: list[int], scale: float) -> None:
    rows = []
    for n in sizes:
        run = apply_fleet(n, scale, "realistic")
        quota_s, why = quota_bound(charges(run["records"]), scale)
        path_s = critical_path() * scale
        run.update(path=path_s, quota=quota_s, why=why, bound=max(path_s, quota_s))
        run["ratio"] = run["wall"] / run["bound"]
        rows.append(run)
    print(f"wall time, realistic latency and quotas x{scale} (load {os.getloadavg()[0]:.2f}):")
    print(f"  {'blueprints':>10} {'wall s':>8} {'bound s':>8} {'ratio':>6} {'RSS MiB':>8} {'CPU s/bp':>9}  bound from")
    for r in rows:
        src = r["why"] if r["quota"] >= r["path"] else "one blueprint's critical path"
        print(f"  {r['n']:>10} {r['wall']:>8.2f} {r['bound']:>8.2f} {r['ratio']:>6.2f} {r['rss_mib']:>8.0f} "
              f"{r['cpu_per']:>9.3f}  {src}")
    last = rows[-1]
    print(f"  ratio at {last['n']}: {last['ratio']:.2f} (target <= {TARGET_RATIO}: "
          f"{'met' if last['ratio'] <= TARGET_RATIO else 'MISSED'})")
    if len(rows) > 1 and rows[0]["n"] < last["n"]:
        growth = last["rss_mib"] / rows[0]["rss_mib"]
        print(f"  RSS x{growth:.1f} for x{last['n'] // rows[0]['n']} blueprints "
              f"({'less than linear: met' if growth < last['n'] / rows[0]['n'] else 'MISSED'})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=20, help="blueprints in the counting run (0: skip it)")
    ap.add_argument("--sizes", default="1,10,100", help="fleet sizes timed at the quotas ('': none)")
    ap.add_argument("--time-scale", type=float, default=0.02)
    args = ap.parse_args()
    print(f"bench/fleet.py  (2 cores, load {os.getloadavg()[0]:.2f})")
    if args.count:
        count_part(args.count, args.time_scale)
    if args.sizes:
        timed_part([int(n) for n in args.sizes.split(",")], args.time_scale)


if __name__ == "__main__":
    main()
