"""How close apply comes to the fastest it could be, and how little a no-op re-apply does.

Prints, in one run:
  - apply wall time on the emulator with `--latency realistic --time-scale S` (default 0.02),
  - the critical-path lower bound computed from the same latency table and dependency graph,
    and their ratio (target <= 1.10),
  - a no-op re-apply's request count (target: zero writes and at most one read per resource
    of the plan, plus the one permission check, testIamPermissions, that belongs to none;
    the ownership record is one resource and costs two reads: its bucket, whose project
    number must be ours before the record is trusted, then the object)
    and its wall time,
  - `provision --help` median wall time (target < 0.3 s).

Run: .venv/bin/python bench/apply.py [--time-scale 0.02] [--help-runs 15]
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from provision.emulator.http import CONTROL_HEADER  # noqa: E402  (what /_emulator/* requires)
from provision.emulator.latency import REALISTIC  # noqa: E402  (the table the emulator plays)

WRITES = ("POST", "PUT", "PATCH", "DELETE")
READ_ONLY_POSTS = (":getIamPolicy", ":testIamPermissions")


def step_costs(instances: int, scale: float) -> dict[str, float]:
    """What each step of apply's graph costs at least, in seconds: the latency table's entries for
    the calls the step waits on (0: none of its calls has an entry). Keyed by step id, then kind."""
    t = {k: v * scale for k, v in REALISTIC.items()}
    rmw = t["sync:crm.projects.getIamPolicy"] + t["sync:crm.projects.setIamPolicy"]
    return {
        "project": t["op:crm.projects.create"],
        "record": t["sync:storage.buckets.insert"],          # the record's bucket, then its object
        "billing": t["sync:billing.updateBillingInfo"],
        "apis": t["op:serviceusage.enable"] + t["propagation:serviceusage.enable"],   # dependants wait it out
        "project-iam": rmw,
        "audit-logs": rmw,
        "service-agent": t["op:serviceusage.generateServiceIdentity"] + rmw,
        "viewer-account": 0.0,
        "bucket": t["sync:storage.buckets.insert"],
        "upload": 0.0,
        "bucket-iam": t["sync:storage.buckets.setIamPolicy"],
        "dataset": t["op:healthcare.datasets.create"] + t["propagation:healthcare.datasets.create"],
        "dicom-store": t["sync:healthcare.dicomStores.create"],
        "dicom-store-iam": t["sync:healthcare.setIamPolicy"],
        "dicom-import": t["op:healthcare.import"] + t["op:healthcare.import.per_instance"] * instances,
        "artifact-repo": t["op:artifactregistry.repositories.create"],
        "viewer-archive": 0.0,                                # an upload into the record's bucket
        "viewer-build": t["op:cloudbuild.build"],
        "viewer-service": t["op:run.services.deploy"],
        "viewer-invoker": t["op:serviceusage.generateServiceIdentity"],   # IAP's service agent, then a grant
        "viewer-access": 0.0,
    }


def critical_path(steps, instances: int, scale: float) -> tuple[float, list[str], dict[str, float]]:
    """Longest path through the plan's own dependency graph (`steps`: the changing steps and their
    deps), each step costing what the latency table says. A step this bench has no cost for stops
    it: a bound that silently leaves a step out is how it went stale once (the hosted viewer)."""
    costs = step_costs(instances, scale)
    graph = {}
    for s in steps:
        cost = costs.get(s.id, costs.get(s.kind))
        if cost is None and s.changing:
            raise SystemExit(f"bench/apply.py: no cost for step {s.id} (kind {s.kind}); add it to step_costs()")
        graph[s.id] = (cost if s.changing else 0.0, list(s.deps))
    finish: dict[str, tuple[float, list[str]]] = {}

    def end(name: str) -> tuple[float, list[str]]:
        if name not in finish:
            cost, deps = graph[name]
            start, path = max((end(d) for d in deps), default=(0.0, []))
            finish[name] = (start + cost, path + [name])
        return finish[name]

    bound, path = max(end(s) for s in graph)
    return bound, path, {sid: cost for sid, (cost, _) in graph.items()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_emulator(scale: float, record: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "provision"), "emulator", "--port", str(port), "--latency", "realistic",
                             "--time-scale", str(scale), "--record", str(record)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    import requests

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/_emulator/health", timeout=1, headers={CONTROL_HEADER: "1"}).ok:
                return proc, url
        except requests.RequestException:   # not listening yet, or too busy to answer within 1 s (a loaded machine)
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the emulator did not start within 20 s")


def warm_up(target, project: str) -> None:
    """Import the client libraries and build the target's clients (parsing the discovery
    documents) before timing: the ratio measures how well apply waits, not start-up (the --help
    row covers that). The no-op re-apply below uses a fresh target, so its time includes them."""
    target.projects(), target.folders(), target.organizations(), target.billing()
    target.serviceusage(), target.serviceusage("v1beta1"), target.healthcare(), target.storage(project)


def requests_in(record: Path) -> list[dict]:
    return [json.loads(line) for line in record.read_text().splitlines() if line.strip()]


def help_median(runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([str(Path(sys.executable).parent / "provision"), "--help"], stdout=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-scale", type=float, default=0.02)
    parser.add_argument("--help-runs", type=int, default=15)
    args = parser.parse_args()

    from provision.running import lifecycle
    from provision.blueprint.load import load_blueprint
    from provision.demo.run import demo_data_dir, write_demo_blueprint
    from provision.demo.studies import write_demo_studies
    from provision.gcp.target import Target

    blueprint = write_demo_blueprint(REPO / "out")  # what `make demo` writes too
    studies = write_demo_studies(demo_data_dir(blueprint))
    instances = sum(s.n_instances for s in studies)
    bp = load_blueprint(blueprint)

    with tempfile.TemporaryDirectory() as tmp:
        record = Path(tmp) / "record.jsonl"
        proc, url = start_emulator(args.time_scale, record)
        try:
            target = Target(emulator=url)
            warm_up(target, bp.project.id)
            marks: dict[str, float] = {}
            t0 = time.perf_counter()
            done = lifecycle.apply(bp, target, listener=lambda e: marks.setdefault(e.kind, time.perf_counter() - t0))
            fresh = time.perf_counter() - t0
            record.write_text("")
            t0 = time.perf_counter()
            again = lifecycle.apply(bp, Target(emulator=url))
            noop = time.perf_counter() - t0
            reqs = requests_in(record)
        finally:
            proc.terminate()
            proc.wait(timeout=10)

    bound, path, costs = critical_path(done.plan.steps, instances, args.time_scale)
    took = {r.id: r.elapsed for r in done.steps}
    planned = marks.get("start", fresh)   # the first step starts when the plan (reads, the viewer's archive) is made
    writes = [r for r in reqs if r["method"] in WRITES and not r["path"].endswith(READ_ONLY_POSTS)]
    resources = len(again.plan.steps)
    allowed = resources + 2   # + the permission check, + the record's second read (its bucket's owner)
    help_s = help_median(args.help_runs)

    rows = [
        ("fresh apply, realistic latency x%g" % args.time_scale, f"{fresh:.2f} s", ""),
        ("critical-path lower bound", f"{bound:.2f} s", " -> ".join(path)),
        ("ratio apply / lower bound", f"{fresh / bound:.2f}", "target <= 1.10: " + ("met" if fresh / bound <= 1.10 else "MISSED")),
        ("  of which: plan", f"{planned:.2f} s", "reads, the hosted viewer's archive; no step's cost in the bound"),
        *((f"  {sid}", f"{took.get(sid, 0.0):.2f} s", f"bound {costs.get(sid, 0.0):.2f} s") for sid in path),
        ("no-op re-apply requests", f"{len(reqs)} ({len(writes)} writes)",
         f"{resources} resources; target <= {allowed} reads, 0 writes: "
         + ("met" if len(reqs) <= allowed and not writes else "MISSED")),
        ("no-op re-apply wall time", f"{noop:.2f} s", "changed=" + str(again.changed)),
        ("provision --help median", f"{help_s:.3f} s", f"{args.help_runs} runs; target < 0.3 s: " + ("met" if help_s < 0.3 else "MISSED")),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"bench/apply.py  ({os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; demo blueprint, {instances} instances)")
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>18}  {note}")
    if len(reqs) > allowed or writes:   # what to cut: the no-op re-apply's requests, by API
        by_api = Counter(r["api"] for r in reqs)
        print("  no-op re-apply requests by API: " + ", ".join(f"{a} {n}" for a, n in by_api.most_common()))
        for line in sorted(f"    {r['api']:<22} {r['method']:<5} {r['path']}" for r in reqs):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
