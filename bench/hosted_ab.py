"""Benchmark: versions of the hosted app against each other and direct, on one emulator, interleaved.

    python bench/hosted_ab.py before=5fcd3f9 after=HEAD            # git refs of this repository
    python bench/hosted_ab.py --rounds 20 --frames 1280 before=5fcd3f9 after=/path/with/a/hosted/package

Each NAME=VERSION is a git ref (its provision/hosted/ is exported) or a directory holding a `hosted`
package; each runs as its own `python -m hosted` (as on Cloud Run) behind the same IAP assertion,
against one emulator with bench/_data.py's studies. The sides take turns in blocks of 5 rounds of
OHIF's study list and series metadata (the order reversed every round), then frames/1 at 64
concurrent in ABC..CBA order. Printed per side: the p50s, each app's CPU per JSON request and per
frame (/proc/PID/stat), frame throughput and p99. On a shared machine the CPU figures are the
steady ones: latency swings with the load, in every column alike.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import _data  # noqa: E402
import emulator as eb  # noqa: E402
import hosted as hb  # noqa: E402
from emulator import log  # noqa: E402


def export(version: str, into: Path) -> Path:
    """A directory holding the `hosted` package of `version` (a directory, or a git ref exported)."""
    if Path(version, "hosted").is_dir():
        return Path(version)
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", version, "provision/hosted"], cwd=REPO, check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    (into / "provision" / "hosted").rename(into / "hosted")
    return into


def start(vdir: Path, root: str, iap: hb.Iap, workdir: Path, name: str) -> tuple[subprocess.Popen, str]:
    from provision.ohif.fetch import ensure_viewer

    port = eb.free_port()
    env = {**os.environ, "PORT": str(port), "HOSTED_DIST": str(ensure_viewer()), "HOSTED_IAP_AUDIENCE": hb.AUD,
           "HOSTED_APP_CONFIG": f"window.config = {{ dataSources: [{{ configuration: {{ qidoRoot: '{root}' }} }}] }};",
           "HOSTED_SOURCES": json.dumps({"bench": root}), "HOSTED_IAP_JWKS_URL": iap.url,
           "HOSTED_UPSTREAM_AUTH": "none", "PYTHONPATH": str(vdir)}
    with open(workdir / f"hosted-ab-{name}.log", "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "hosted"], cwd=vdir, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    eb.wait_http(f"{url}/_hosted/health", 60, proc)
    return proc, f"{url}/dicomweb/bench"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("versions", nargs="+", help="NAME=GITREF or NAME=DIR (a directory holding a hosted package)")
    ap.add_argument("--studies", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=10, help="rounds of 5 study-list + metadata requests per side")
    ap.add_argument("--frames", type=int, default=1280, help="frames/1 requests per side")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--workdir", type=Path, default=REPO / "out" / "bench-work")
    args = ap.parse_args(argv)
    versions = dict(v.split("=", 1) for v in args.versions)
    if "direct" in versions or any(not v for v in versions.values()):
        ap.error("each version is NAME=VERSION, and NAME is not 'direct' (that column is the emulator itself)")
    eb.raise_on_sigterm()
    args.workdir.mkdir(parents=True, exist_ok=True)
    manifest = _data.ensure(args.studies, log=log)
    iap, procs, emu = hb.Iap(), {}, None
    tmp = tempfile.TemporaryDirectory(prefix="bench-hosted-ab-", dir=args.workdir)
    try:
        port = eb.free_port()
        url = f"http://127.0.0.1:{port}"
        with open(args.workdir / "hosted-ab-emulator.log", "wb") as fh:
            emu = subprocess.Popen([sys.executable, "-m", "provision.cli", "emulator", "--port", str(port)], cwd=REPO,
                                   stdout=fh, stderr=subprocess.STDOUT,
                                   env={**os.environ, "TMPDIR": tmp.name, "PYTHONPATH": str(REPO)})
        eb.wait_http(f"{url}/_emulator/health", 60, emu, headers={"X-Emulator-Control": "1"})
        root = eb.dicomweb_root(url, eb.setup_store(url)["store"])
        eb.stow_ingest(root, manifest["files"])
        sides, headers = {"direct": root}, {"direct": {}}
        for name, version in versions.items():
            vdir = export(version, Path(tmp.name) / name)
            procs[name], sides[name] = start(vdir, root, iap, args.workdir, name)
            headers[name] = {"x-goog-iap-jwt-assertion": iap.assertion}
        probers = {n: eb.Prober(b, manifest, hb.FRAMES_ACCEPT, ("study_list", "metadata")) for n, b in sides.items()}
        for n, p in probers.items():
            p.session.headers.update(headers[n])
            p.warmup(3)
        cpu = {n: 0.0 for n in versions}
        order = list(sides)
        for r in range(args.rounds):
            for n in order if r % 2 == 0 else order[::-1]:
                before = hb.cpu_s(procs[n].pid) if n in procs else 0.0
                probers[n].run(5)
                if n in procs:
                    cpu[n] += hb.cpu_s(procs[n].pid) - before
        res = {n: p.summary() for n, p in probers.items()}
        for p in probers.values():
            p.close()
        st, se = manifest["series_study_uid"], manifest["series_uid"]
        sops = [_data.uid("series-study", "instance", k) for k in range(_data.SERIES_SLICES)]
        frames: dict[str, list[dict]] = {n: [] for n in sides}
        fcpu = {n: 0.0 for n in versions}
        for n in order + order[::-1]:
            before = hb.cpu_s(procs[n].pid) if n in procs else 0.0
            frames[n].append(asyncio.run(hb._frames(sides[n], sops, st, se, args.frames // 2, args.concurrency,
                                                    headers[n])))
            if n in procs:
                fcpu[n] += hb.cpu_s(procs[n].pid) - before
        print(f"hosted app versions, emulator upstream, {args.studies} studies, {args.rounds} x 5 rounds, "
              f"{args.frames} frames/side at {args.concurrency} concurrent")
        print(f"{'side':12} {'list p50':>9} {'meta p50':>9} {'CPU/json':>9} {'frames/s':>9} {'fr p99':>8} {'CPU/frame':>9}")
        for n in sides:
            f = {k: statistics.mean(x[k] for x in frames[n]) for k in frames[n][0]}
            json_cpu = f"{cpu[n] * 1000 / (args.rounds * 5 * 2):9.2f}" if n in procs else f"{'':9}"
            frame_cpu = f"{fcpu[n] * 1000 / (args.frames + 2 * args.concurrency):9.2f}" if n in procs else ""
            print(f"{n:12} {res[n]['study_list_p50_ms']:9.2f} {res[n]['metadata_p50_ms']:9.2f} {json_cpu} "
                  f"{f['frames_per_s']:9.1f} {f['frames_p99_ms']:8.0f} {frame_cpu}")
        print("(ms; CPU: the app's own, per request, frame warm-up included)")
    finally:
        for n, p in procs.items():
            eb.stop_process(p, f"hosted app {n}")
        eb.stop_process(emu, "emulator", sig=2)
        iap.close()
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
