"""Benchmark: the hosted viewer's DICOMweb path (provision/hosted/, behind a verified IAP assertion)
against the direct one, on the same emulator and the same data, with the ratios and the targets.

    python bench/hosted.py                       # 200 studies + a 64-slice series, 50 runs, 64 concurrent
    python bench/hosted.py --studies 50 --runs 20 --frames 640 --big-mb 20 --json out/bench-hosted.json

Processes: the emulator (`provision emulator --port P`) and the hosted app (`python -m provision.hosted`,
uvicorn, one worker, iap mode, its service token `none`: the emulator's anonymous owner) each run as
their own child, so the app's resident memory is its own; the client (this process) signs one IAP
assertion (ES256) and serves its JWK set, so the app verifies a real assertion on every request.
Data: bench/_data.py's studies and 64-slice series (STOW-RS), plus one multi-frame instance of
--big-mb MB for the memory row.

Rows, each direct then hosted, in alternating blocks (ABBA) so load changes on a shared machine hit
both columns alike: OHIF's study-list QIDO p50; series metadata (64 instances, BulkDataURIs rewritten
by the proxy) p50; frames/1 of the 64 slices at --concurrency concurrent requests (throughput and
p99); then the app's peak resident memory while one client streams the big instance through it.
Targets: the proxy costs <= 10 % at p50, keeps >= 90 % of direct frame throughput, and its memory
stays flat (grows by far less than the instance) while streaming. With --repeat N the whole
measurement runs N times on the same emulator and app, each table printed, then one of the
medians (memory: the largest growth). HOSTED_PROFILE=FILE runs the app under cProfile
(bench/_profile_hosted.py; HOSTED_PROFILE_CPU=1 for CPU time instead of wall time).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import _data  # noqa: E402
import emulator as emu_bench  # noqa: E402  (its helpers: setup, STOW-RS, Prober, process handling)
from emulator import log, percentile, proc_status  # noqa: E402

AUD = "/projects/123456789012/locations/us-central1/services/ohif-viewer"
FRAMES_ACCEPT = emu_bench.FRAMES_ACCEPT_OURS
BIG_ACCEPT = "application/dicom; transfer-syntax=*"


class Iap:
    """An ES256 key, its JWK set on loopback, and one assertion for this run."""

    def __init__(self) -> None:
        import jwt
        from cryptography.hazmat.primitives.asymmetric import ec

        key = ec.generate_private_key(ec.SECP256R1())
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
        body = json.dumps({"keys": [{**jwk, "kid": "bench", "alg": "ES256"}]}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/iap/verify/public_key-jwk"
        now = int(time.time())
        self.assertion = jwt.encode({"iss": "https://cloud.google.com/iap", "aud": AUD, "sub": "accounts.google.com:1",
                                     "email": "bench@example.com", "iat": now, "exp": now + 3 * 3600},
                                    key, algorithm="ES256", headers={"kid": "bench"})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def big_instance(path: Path, megabytes: int) -> dict[str, str]:
    """A multi-frame grayscale word secondary capture of about `megabytes` MB (512x512 frames)."""
    import numpy as np
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    frames = max(1, megabytes * 1_000_000 // (512 * 512 * 2))
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7.3"
    meta.MediaStorageSOPInstanceUID = _data.uid("big", "instance", megabytes)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = _data.uid("big", "study"), _data.uid("big", "series", megabytes)
    ds.PatientName, ds.PatientID, ds.Modality, ds.StudyDate = "BENCH^BIG", "BENCH-BIG", "OT", "20200101"
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    ds.Rows = ds.Columns = 512
    ds.NumberOfFrames = frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = (np.arange(frames * 512 * 512, dtype=np.uint32) % 4096).astype("<u2").tobytes()
    if not path.exists():
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return {"study": ds.StudyInstanceUID, "series": ds.SeriesInstanceUID, "sop": ds.SOPInstanceUID,
            "bytes": str(path.stat().st_size)}


def start_app(url_upstream: str, root: str, iap: Iap, workdir: Path) -> tuple[subprocess.Popen, str]:
    from provision.ohif.fetch import ensure_viewer

    port = emu_bench.free_port()
    env = {**os.environ, "PORT": str(port), "HOSTED_DIST": str(ensure_viewer()), "HOSTED_IAP_AUDIENCE": AUD,
           "HOSTED_APP_CONFIG": f"window.config = {{ dataSources: [{{ configuration: {{ qidoRoot: '{root}' }} }}] }};",
           "HOSTED_SOURCES": json.dumps({"bench": root}), "HOSTED_IAP_JWKS_URL": iap.url,
           "HOSTED_UPSTREAM_AUTH": "none", "PYTHONPATH": str(REPO)}
    out = open(workdir / "hosted-access.log", "wb")  # noqa: SIM115 - closed with the process
    profile = os.environ.get("HOSTED_PROFILE")   # a file for the app's cProfile stats
    run = [str(HERE / "_profile_hosted.py"), profile] if profile else ["-m", "provision.hosted"]
    proc = subprocess.Popen([sys.executable, *run], cwd=REPO, env=env, stdout=out,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    emu_bench.wait_http(f"{url}/_hosted/health", 60, proc)
    return proc, f"{url}/dicomweb/bench"


async def _frames(base: str, sops: list[str], st: str, se: str, n: int, conc: int, headers: dict) -> dict[str, float]:
    import httpx

    times: list[float] = []
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    async with httpx.AsyncClient(limits=limits, timeout=60, headers={**headers, "accept": FRAMES_ACCEPT,
                                                                     "accept-encoding": "identity"}) as client:
        # Warm-up: every connection opened and kept alive before the clock starts (a server's accept
        # backlog under a burst of 64 new connections is not what this row measures).
        warm = [client.get(f"{base}/studies/{st}/series/{se}/instances/{sops[i % len(sops)]}/frames/1")
                for i in range(conc)]
        await asyncio.gather(*warm)
        queue = list(range(n))

        async def worker() -> None:
            while queue:
                i = queue.pop()
                t = time.perf_counter()
                r = await client.get(f"{base}/studies/{st}/series/{se}/instances/{sops[i % len(sops)]}/frames/1")
                if r.status_code != 200 or len(r.content) < _data.ROWS * _data.COLS * 2:
                    raise RuntimeError(f"frames -> {r.status_code}, {len(r.content)} bytes")
                times.append((time.perf_counter() - t) * 1000.0)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conc)))
        wall = time.perf_counter() - t0
    return {"frames_per_s": n / wall, "frames_p50_ms": percentile(times, 50), "frames_p99_ms": percentile(times, 99)}


def stream_big(url: str, headers: dict, pid: int | None) -> dict[str, float]:
    """GET the big instance, reading and dropping the body; the peak VmRSS of `pid` meanwhile."""
    import httpx

    base_rss = proc_status(pid)["VmRSS"] if pid else 0.0
    peak = [base_rss]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], proc_status(pid)["VmRSS"])

    sampler = threading.Thread(target=sample, daemon=True) if pid else None
    if sampler:
        sampler.start()
    t = time.perf_counter()
    got = 0
    with httpx.stream("GET", url, headers={**headers, "accept": BIG_ACCEPT, "accept-encoding": "identity"},
                      timeout=300) as r:
        if r.status_code != 200:
            raise RuntimeError(f"big instance -> {r.status_code}: {r.read()[:300]!r}")
        for chunk in r.iter_raw(1 << 16):
            got += len(chunk)
    wall = time.perf_counter() - t
    done.set()
    if sampler:
        sampler.join()
    return {"big_bytes": got, "big_s": wall, "big_mb_per_s": got / wall / 1e6,
            "rss_before_mib": base_rss, "rss_peak_mib": peak[0], "rss_growth_mib": peak[0] - base_rss}


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(sides: dict[str, str], headers: dict[str, dict], manifest: dict, args, app_pid: int,
            emu_pid: int) -> dict:
    probers = {name: emu_bench.Prober(base, manifest, FRAMES_ACCEPT, ("study_list", "metadata"))
               for name, base in sides.items()}
    for name, p in probers.items():
        p.session.headers.update(headers[name])
        p.warmup(3)
    order = ["direct", "hosted"]
    done = 0
    app_cpu = emu_cpu = 0.0
    while done < args.runs:   # ABBA blocks
        block = min(args.block, args.runs - done)
        for name in order:
            before, emu_before = cpu_s(app_pid), cpu_s(emu_pid)
            probers[name].run(block)
            if name == "hosted":
                app_cpu += cpu_s(app_pid) - before
            else:
                emu_cpu += cpu_s(emu_pid) - emu_before
        order.reverse()
        done += block
    out: dict[str, dict] = {name: p.summary() for name, p in probers.items()}
    out["hosted"]["app_cpu_ms_per_json_request"] = app_cpu * 1000.0 / (2 * args.runs)
    out["direct"]["emulator_cpu_ms_per_json_request"] = emu_cpu * 1000.0 / (2 * args.runs)
    for p in probers.values():
        p.close()
    st, se = manifest["series_study_uid"], manifest["series_uid"]
    sops = [_data.uid("series-study", "instance", k) for k in range(_data.SERIES_SLICES)]
    frames_cpu = 0.0
    for name in ["direct", "hosted", "hosted", "direct"]:   # ABBA again; the two runs of a side are pooled
        before = cpu_s(app_pid)
        r = asyncio.run(_frames(sides[name], sops, st, se, args.frames // 2, args.concurrency, headers[name]))
        if name == "hosted":
            frames_cpu += cpu_s(app_pid) - before
        for key, value in r.items():
            out[name].setdefault(key + "_runs", []).append(value)
    for name in sides:
        for key in ("frames_per_s", "frames_p50_ms", "frames_p99_ms"):
            runs = out[name].pop(key + "_runs")
            out[name][key] = sum(runs) / len(runs)
    # Per frame, warm-up included (64 more requests a run).
    out["hosted"]["app_cpu_ms_per_frame"] = frames_cpu * 1000.0 / (args.frames + 2 * args.concurrency)
    big = manifest["big"]
    path = f"studies/{big['study']}/series/{big['series']}/instances/{big['sop']}"
    for name in sides:
        out[name].update(stream_big(f"{sides[name]}/{path}", headers[name], app_pid if name == "hosted" else None))
    return out


ROWS = [("study_list_p50_ms", "OHIF study list QIDO, p50", "ms", "cost", 1.10),
        ("metadata_p50_ms", "series metadata (64 instances), p50", "ms", "cost", 1.10),
        ("frames_per_s", "frames/1 at N concurrent, throughput", "/s", "keep", 0.90),
        ("frames_p99_ms", "frames/1 at N concurrent, p99", "ms", "cost", None),
        ("frames_p50_ms", "frames/1 at N concurrent, p50", "ms", "cost", None),
        ("big_mb_per_s", "big instance streamed, MB/s", "MB/s", "keep", None)]


def medians(runs: list[dict]) -> dict:
    """Each figure's median over several measurements (side by side: direct and hosted)."""
    import statistics

    worst = ("rss_growth_mib", "rss_peak_mib")   # memory: the largest of the runs, not the median
    return {side: {key: (max if key in worst else statistics.median)(r[side][key] for r in runs)
                   for key, value in runs[0][side].items() if isinstance(value, (int, float))}
            for side in runs[0]}


def report(res: dict, args, big_mb: float) -> tuple[str, dict]:
    d, h = res["direct"], res["hosted"]
    lines = [f"{'':44} {'direct':>10} {'hosted':>10} {'ratio':>7}  target", "-" * 86]
    ratios: dict[str, Any] = {}
    for key, label, unit, kind, target in ROWS:
        ratio = h[key] / d[key] if d[key] else float("nan")
        ratios[key] = ratio
        verdict = ""
        if target is not None:
            ok = ratio <= target if kind == "cost" else ratio >= target
            verdict = f"{'<=' if kind == 'cost' else '>='} {target:.2f} {'ok' if ok else 'MISS'}"
        label = label.replace("N concurrent", f"{args.concurrency} concurrent")
        lines.append(f"{label + ' (' + unit + ')':44} {d[key]:>10.2f} {h[key]:>10.2f} {ratio:>6.2f}x  {verdict}")
    growth = h["rss_growth_mib"]
    flat = growth < max(16.0, big_mb * 0.1)
    lines.append(f"hosted app VmRSS while streaming {h['big_bytes'] / 1e6:.0f} MB: {h['rss_before_mib']:.0f} -> "
                 f"{h['rss_peak_mib']:.0f} MiB (+{growth:.1f} MiB)  {'flat ok' if flat else 'MISS (not flat)'}")
    lines.append(f"hosted app CPU: {h['app_cpu_ms_per_json_request']:.2f} ms per QIDO/metadata request (the "
                 f"emulator's own: {d['emulator_cpu_ms_per_json_request']:.2f} ms), {h['app_cpu_ms_per_frame']:.2f} ms "
                 "per frame (the app shares this machine's cores with the emulator and the client)")
    lines.append(f"added latency at p50: study list {h['study_list_p50_ms'] - d['study_list_p50_ms']:+.2f} ms, "
                 f"metadata {h['metadata_p50_ms'] - d['metadata_p50_ms']:+.2f} ms")
    return "\n".join(lines), {"ratios": ratios, "rss_growth_mib": growth, "rss_flat": flat}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", type=int, default=200)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--block", type=int, default=5)
    ap.add_argument("--frames", type=int, default=1280, help="frames/1 requests per side")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--big-mb", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=1,
                    help="measure this many times on the same emulator and app; the last table is their medians")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--workdir", type=Path, default=REPO / "out" / "bench-work")
    args = ap.parse_args(argv)
    emu_bench.raise_on_sigterm()
    args.workdir.mkdir(parents=True, exist_ok=True)
    manifest = _data.ensure(args.studies, log=log)
    emu_proc = app_proc = None
    iap = Iap()
    tmp = tempfile.TemporaryDirectory(prefix="bench-hosted-", dir=args.workdir)
    try:
        port = emu_bench.free_port()
        url = f"http://127.0.0.1:{port}"
        with open(args.workdir / "hosted-emulator.log", "wb") as fh:
            emu_proc = subprocess.Popen([sys.executable, "-m", "provision.cli", "emulator", "--port", str(port)],
                                        cwd=REPO, stdout=fh, stderr=subprocess.STDOUT,
                                        env={**os.environ, "TMPDIR": tmp.name, "PYTHONPATH": str(REPO)})
        emu_bench.wait_http(f"{url}/_emulator/health", 60, emu_proc, headers={"X-Emulator-Control": "1"})
        setup = emu_bench.setup_store(url)
        root = emu_bench.dicomweb_root(url, setup["store"])
        log(f"STOW-RS {len(manifest['files'])} files + one {args.big_mb} MB instance")
        emu_bench.stow_ingest(root, manifest["files"])
        big_path = args.workdir / f"big-{args.big_mb}mb.dcm"
        manifest["big"] = big_instance(big_path, args.big_mb)
        emu_bench.stow_ingest(root, [str(big_path)])
        manifest["study_files"] = manifest["study_files"] + [str(big_path)]   # its own study: one more listed
        app_proc, hosted = start_app(url, root, iap, args.workdir)
        log(f"direct {root}\nhosted {hosted}")
        sides = {"direct": root, "hosted": hosted}
        headers = {"direct": {}, "hosted": {"x-goog-iap-jwt-assertion": iap.assertion}}
        title = (f"hosted viewer vs direct, emulator upstream, {args.studies} studies, {args.runs} runs, "
                 f"{args.frames} frames/side at {args.concurrency} concurrent")
        runs = []
        for n in range(args.repeat):
            runs.append(measure(sides, headers, manifest, args, app_proc.pid, emu_proc.pid))
            if args.repeat > 1:
                print(f"{title}: measurement {n + 1} of {args.repeat}\n{report(runs[-1], args, args.big_mb)[0]}\n",
                      flush=True)
        res = runs[0] if len(runs) == 1 else medians(runs)
        text, summary = report(res, args, args.big_mb)
        print(title + (f": medians of {len(runs)} measurements" if len(runs) > 1 else ""))
        print(text)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": res,
                                             "measurements": runs, **summary}, indent=2))
    finally:
        emu_bench.stop_process(app_proc, "hosted app")
        emu_bench.stop_process(emu_proc, "emulator", sig=2)
        iap.close()
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
