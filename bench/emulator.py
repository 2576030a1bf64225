"""Benchmark: our emulator's Cloud Healthcare DICOMweb beside Orthanc (+ DICOMweb plugin), in one run,
on the same files, with the ratios and the targets.

    .venv/bin/python bench/emulator.py                 # 2,000 studies + a 64-slice series, 50 runs
    .venv/bin/python bench/emulator.py --studies 200 --runs 20 --json out/bench.json

Orthanc binds every interface, so it runs only inside a private network namespace (`unshare -n`,
loopback only) together with its client (`bench/_orthanc_side.py`, which prints JSON). Our
emulator runs as its own process (`provision emulator --port P` on 127.0.0.1) so its resident
memory is its own; it is set up through the real Google client libraries and ingests by a bucket
import. Both sides are measured by the same code (`measure_dicomweb` below), one after the other
(Orthanc first), never at the same time: the machine's cores are shared by client and server.
See bench/README.md for what each row means.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import _data  # noqa: E402  (bench/ is not a package)

PROJECT = "provision-bench"
PARENT = "organizations/123456789012"
BILLING = "billingAccounts/012345-6789AB-CDEF01"
LOCATION = "us-central1"
DATASET = "bench"
STORE = "bench"
BUCKET = "provision-bench-dicom"

STUDY_LIST_QUERY = "studies?limit=101&offset=0&fuzzymatching=false&includefield=00081030,00080060"
FRAMES_ACCEPT_OURS = "multipart/related; type=application/octet-stream; transfer-syntax=*"
FRAMES_ACCEPT_ORTHANC = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
FRAME_BYTES = _data.ROWS * _data.COLS * 2

# (key, label, unit, which direction is better, target for the ratio ours/Orthanc)
ROWS: list[tuple[str, str, str, str, float | None]] = [
    ("ingest_per_s", "ingest (ours: bucket import; Orthanc: STOW-RS 50/request)", "inst/s", "higher", 1.0),
    ("study_list_p50_ms", "OHIF study list QIDO (limit=101), p50", "ms", "lower", 0.5),
    ("study_list_p95_ms", "OHIF study list QIDO (limit=101), p95", "ms", "lower", None),
    ("one_study_p50_ms", "QIDO studies?PatientID=X (1 result), p50", "ms", "lower", None),
    ("metadata_p50_ms", "series metadata, 64 instances, p50", "ms", "lower", 1.0),
    ("frames_p50_ms", "frames/1 octet-stream (128 KiB), p50", "ms", "lower", 1.5),
    ("rss_after_ingest_mib", "resident memory after ingest (VmRSS)", "MiB", "lower", 1.0),
]
INFO_ROWS = [
    ("ingest_s", "  ingest wall time", "s"),
    ("upload_s", "  ours only: bucket upload before import (storage client), untimed in ingest", "s"),
    ("import_op_s", "  ours only: import operation createTime..endTime", "s"),
    ("ingest_with_upload_per_s", "  ours only: upload + import end to end", "inst/s"),
    ("one_study_p95_ms", "QIDO studies?PatientID=X, p95", "ms"),
    ("metadata_p95_ms", "series metadata, p95", "ms"),
    ("frames_p95_ms", "frames/1, p95", "ms"),
    ("rss_end_mib", "resident memory at the end (VmRSS)", "MiB"),
    ("hwm_end_mib", "peak resident memory (VmHWM)", "MiB"),
    ("start_s", "start to first HTTP answer", "s"),
]


# --------------------------------------------------------------------------------------------
# Shared by both sides (the Orthanc side imports these)
# --------------------------------------------------------------------------------------------

def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of a process, in MiB."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024.0
    return out


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank-with-interpolation percentile (q in 0..100)."""
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    pos = (len(s) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> float:
    """Poll `url` until it answers 200 (bounded); returns the seconds it took."""
    import requests

    t0 = time.perf_counter()
    deadline = t0 + timeout
    while time.perf_counter() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode} before answering")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return time.perf_counter() - t0
        except requests.RequestException:
            pass
        time.sleep(0.01)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def stop_process(proc: subprocess.Popen | None, name: str, timeout: float = 20.0,
                 sig: int = signal.SIGTERM) -> None:
    """Stop one process we started, by its PID: `sig`, then SIGKILL if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(sig)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        log(f"{name} (pid {proc.pid}) still running {timeout:.0f} s after signal {int(sig)}; killing it")
        proc.kill()
        proc.wait(timeout=timeout)


def raise_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so `finally` blocks stop what we started."""
    def handler(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def _multipart_payload(body: bytes, content_type: str) -> bytes:
    """The single part's bytes of a multipart/related answer."""
    boundary = None
    for param in content_type.split(";"):
        k, _, v = param.strip().partition("=")
        if k.lower() == "boundary":
            boundary = v.strip('"')
    if not boundary:
        raise ValueError(f"no boundary in {content_type!r}")
    delim = b"--" + boundary.encode()
    part = body.split(delim)[1]
    _headers, _, payload = part.partition(b"\r\n\r\n")
    return payload[:-2] if payload.endswith(b"\r\n") else payload


def measure_dicomweb(base: str, manifest: dict, *, runs: int, warmup: int, frames_accept: str) -> dict[str, Any]:
    """Time the OHIF-style DICOMweb reads against `base` (a DICOMweb root without trailing slash).

    One keep-alive session, `Accept-Encoding: identity`. Each of the `runs` rounds does every
    request once (round-robin, so noise on the machine spreads evenly); `warmup` rounds first.
    Every answer is checked (status, count, bytes), so both servers do the same work.
    """
    import requests

    s = requests.Session()
    s.headers.update({"Accept-Encoding": "identity"})
    st, se, sop = manifest["series_study_uid"], manifest["series_uid"], manifest["series_first_sop_uid"]
    n_studies = len(manifest["study_files"]) + 1
    want_list = min(101, n_studies)

    def check_json_list(n: int) -> Callable[[requests.Response], None]:
        def check(r: requests.Response) -> None:
            got = r.json() if r.content else []
            if len(got) != n:
                raise RuntimeError(f"expected {n} results, got {len(got)}")
        return check

    def check_frame(r: requests.Response) -> None:
        payload = _multipart_payload(r.content, r.headers.get("Content-Type", ""))
        if len(payload) != FRAME_BYTES:
            raise RuntimeError(f"frame payload is {len(payload)} bytes, expected {FRAME_BYTES}")

    requests_: dict[str, tuple[str, dict, Callable]] = {
        "study_list": (f"{base}/{STUDY_LIST_QUERY}", {"Accept": "application/dicom+json"}, check_json_list(want_list)),
        "one_study": (f"{base}/studies?PatientID={manifest['probe_patient_id']}", {"Accept": "application/dicom+json"},
                      check_json_list(1)),
        "metadata": (f"{base}/studies/{st}/series/{se}/metadata", {"Accept": "application/dicom+json"},
                     check_json_list(len(manifest["series_files"]))),
        "frames": (f"{base}/studies/{st}/series/{se}/instances/{sop}/frames/1", {"Accept": frames_accept}, check_frame),
    }
    times: dict[str, list[float]] = {k: [] for k in requests_}
    sizes: dict[str, int] = {}
    for rnd in range(warmup + runs):
        for key, (url, headers, check) in requests_.items():
            t = time.perf_counter()
            r = s.get(url, headers=headers, timeout=60)
            body = r.content
            dt = time.perf_counter() - t
            if r.status_code != 200:
                raise RuntimeError(f"GET {url} -> {r.status_code}: {body[:300]!r}")
            if rnd == 0 or rnd == warmup:
                check(r)
                sizes[key] = len(body)
            if rnd >= warmup:
                times[key].append(dt * 1000.0)
    s.close()
    out: dict[str, Any] = {"response_bytes": sizes, "runs": runs, "warmup": warmup}
    for key, values in times.items():
        out[f"{key}_p50_ms"] = percentile(values, 50)
        out[f"{key}_p95_ms"] = percentile(values, 95)
    return out


# --------------------------------------------------------------------------------------------
# Orthanc: a child process in its own network namespace
# --------------------------------------------------------------------------------------------

def run_orthanc(args: argparse.Namespace) -> dict[str, Any]:
    cmd = ["unshare", "-n", sys.executable, str(HERE / "_orthanc_side.py"), "--inside",
           "--studies", str(args.studies), "--runs", str(args.runs), "--warmup", str(args.warmup),
           "--data-dir", str(args.data_dir), "--workdir", str(args.workdir / "orthanc")]
    log("Orthanc side: " + " ".join(cmd[:4]) + " ...")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=None, text=True)
    try:
        out, _ = proc.communicate(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"Orthanc side did not finish within {args.timeout} s") from None
    finally:
        stop_process(proc, "Orthanc side")
    if proc.returncode != 0:
        raise RuntimeError(f"Orthanc side exited with status {proc.returncode}")
    return json.loads(out.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------
# Ours: `provision emulator` as a subprocess, driven through the real Google client libraries
# --------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _discovery(name: str, version: str, url: str):
    import httplib2
    from googleapiclient.discovery import build

    # A plain Http: the emulator acts on anonymous calls as the project owner (no --enforce-iam).
    return build(name, version, http=httplib2.Http(timeout=120), static_discovery=True,
                 client_options={"api_endpoint": url}, cache_discovery=False)


def _poll(get: Callable[[], dict], what: str, timeout: float, interval: float = 0.05) -> dict:
    deadline = time.perf_counter() + timeout
    while True:
        op = get()
        if op.get("done"):
            if "error" in op:
                raise RuntimeError(f"{what} failed: {op['error']}")
            return op
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{what} not done after {timeout:.0f} s: {op}")
        time.sleep(interval)


def _rfc3339(ts: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def setup_and_import(url: str, manifest: dict, args: argparse.Namespace, emu_pid: int) -> dict[str, Any]:
    """Project, billing, API, dataset, store, bucket, upload, agent grant, then the timed import."""
    from concurrent.futures import ThreadPoolExecutor

    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import resourcemanager_v3, storage

    res: dict[str, Any] = {}
    projects = resourcemanager_v3.ProjectsClient(credentials=AnonymousCredentials(), transport="rest",
                                                 client_options=ClientOptions(api_endpoint=url))
    project = projects.create_project(project={"project_id": PROJECT, "display_name": "Provision bench",
                                               "parent": PARENT}).result(timeout=120)
    number = project.name.split("/")[1]
    log(f"ours: project {PROJECT} = {project.name}")

    billing = _discovery("cloudbilling", "v1", url)
    billing.projects().updateBillingInfo(name=f"projects/{PROJECT}", body={"billingAccountName": BILLING}).execute()

    su = _discovery("serviceusage", "v1", url)
    op = su.services().batchEnable(parent=f"projects/{PROJECT}",
                                   body={"serviceIds": ["healthcare.googleapis.com"]}).execute()
    if not op.get("done"):
        _poll(lambda: su.operations().get(name=op["name"]).execute(), "enabling healthcare", 120)

    hc = _discovery("healthcare", "v1", url)
    datasets = hc.projects().locations().datasets()
    loc = f"projects/{PROJECT}/locations/{LOCATION}"
    op = datasets.create(parent=loc, datasetId=DATASET, body={"timeZone": "UTC"}).execute()
    if not op.get("done"):
        _poll(lambda: datasets.operations().get(name=op["name"]).execute(), "creating the dataset", 120)
    ds_name = f"{loc}/datasets/{DATASET}"
    datasets.dicomStores().create(parent=ds_name, dicomStoreId=STORE, body={}).execute()
    store_name = f"{ds_name}/dicomStores/{STORE}"

    gcs = storage.Client(project=PROJECT, credentials=AnonymousCredentials(),
                         client_options={"api_endpoint": url})
    bucket = gcs.create_bucket(BUCKET, location="US")
    root = Path(manifest["root"])

    def upload(path: str) -> None:
        blob = bucket.blob("dicom/" + Path(path).relative_to(root).as_posix())
        blob.upload_from_filename(path, content_type="application/dicom")

    log(f"ours: uploading {len(manifest['files'])} files to gs://{BUCKET}/dicom/ (storage client, 4 threads)")
    t = time.perf_counter()
    pool = ThreadPoolExecutor(4)
    try:
        for _ in pool.map(upload, manifest["files"]):
            pass
    finally:  # on failure or SIGTERM, drop the queued uploads instead of finishing them
        pool.shutdown(wait=True, cancel_futures=True)
    res["upload_s"] = time.perf_counter() - t

    member = f"serviceAccount:service-{number}@gcp-sa-healthcare.iam.gserviceaccount.com"

    def grant() -> None:
        policy = bucket.get_iam_policy(requested_policy_version=3)
        policy.bindings.append({"role": "roles/storage.objectViewer", "members": {member}})
        bucket.set_iam_policy(policy)

    try:
        grant()
    except Exception as exc:  # the agent may not exist yet: create it, as the real recipe does
        if "does not exist" not in str(exc):
            raise
        log("ours: service agent missing; services.generateServiceIdentity")
        su1b = _discovery("serviceusage", "v1beta1", url)
        op = su1b.services().generateServiceIdentity(
            parent=f"projects/{PROJECT}/services/healthcare.googleapis.com").execute()
        if not op.get("done"):
            _poll(lambda: su1b.operations().get(name=op["name"]).execute(), "generateServiceIdentity", 120)
        grant()

    log(f"ours: import gs://{BUCKET}/**.dcm into {STORE} (timed)")
    stores = datasets.dicomStores()
    t = time.perf_counter()
    op = stores.import_(name=store_name, body={"gcsSource": {"uri": f"gs://{BUCKET}/**.dcm"}}).execute()
    op = _poll(lambda: datasets.operations().get(name=op["name"]).execute(), "import", args.timeout, 0.05)
    res["ingest_s"] = time.perf_counter() - t
    rss = proc_status(emu_pid)
    res["rss_after_ingest_mib"] = rss["VmRSS"]
    n = len(manifest["files"])
    res["ingest_per_s"] = n / res["ingest_s"]
    res["ingest_with_upload_per_s"] = n / (res["ingest_s"] + res["upload_s"])
    meta = op.get("metadata", {})
    if meta.get("createTime") and meta.get("endTime"):
        res["import_op_s"] = _rfc3339(meta["endTime"]) - _rfc3339(meta["createTime"])
    counter = meta.get("counter", {})
    res["import_counter"] = counter
    if counter.get("failure") not in (None, "0", 0):
        raise RuntimeError(f"import reported failures: {counter}")
    return res


def run_ours(args: argparse.Namespace, manifest: dict) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    exe = REPO / ".venv" / "bin" / "provision"
    cmd = [str(exe), "emulator", "--port", str(port)] if exe.exists() else \
        [sys.executable, "-m", "provision.cli", "emulator", "--port", str(port)]
    args.workdir.mkdir(parents=True, exist_ok=True)
    log_path = args.workdir / "emulator.log"
    # In-memory state; its blob directory is a temporary directory: keep it where we can remove it
    # even if the emulator dies without cleaning up.
    tmp = args.workdir / "emulator-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    log(f"ours: {' '.join(cmd)} (log {log_path})")
    proc = None
    with open(log_path, "wb") as log_fh:
        try:
            # Default SIGINT in the child even if ours is ignored (e.g. started with `&`), so that
            # SIGINT makes the emulator close cleanly.
            proc = subprocess.Popen(cmd, stdout=log_fh, stderr=subprocess.STDOUT, cwd=REPO, env=env,
                                    preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
            res: dict[str, Any] = {"pid": proc.pid, "files": len(manifest["files"])}
            res["start_s"] = wait_http(f"{url}/_emulator/health", 60, proc)
            res.update(setup_and_import(url, manifest, args, proc.pid))
            log(f"ours: ingest {res['ingest_per_s']:.0f} inst/s; measuring DICOMweb ({args.runs} runs)")
            base = (f"{url}/v1/projects/{PROJECT}/locations/{LOCATION}/datasets/{DATASET}"
                    f"/dicomStores/{STORE}/dicomWeb")
            res.update(measure_dicomweb(base, manifest, runs=args.runs, warmup=args.warmup,
                                        frames_accept=FRAMES_ACCEPT_OURS))
            st = proc_status(proc.pid)
            res["rss_end_mib"], res["hwm_end_mib"] = st["VmRSS"], st["VmHWM"]
            return res
        except BaseException:
            if proc is not None and proc.poll() is not None:
                tail = log_path.read_text(errors="replace").splitlines()[-5:]
                log(f"emulator exited with status {proc.returncode}; last lines of {log_path}:\n  "
                    + "\n  ".join(tail))
            raise
        finally:
            stop_process(proc, "emulator", sig=signal.SIGINT)   # SIGINT: it closes and cleans up
            shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

def _fmt(v: Any, unit: str) -> str:
    if v is None:
        return "-"
    if unit == "inst/s":
        return f"{v:,.0f} {unit}"
    if unit == "MiB":
        return f"{v:,.0f} {unit}"
    if unit == "s":
        return f"{v:.2f} s"
    return f"{v:.1f} ms" if v >= 10 else f"{v:.2f} ms"


def report(ours: dict | None, orth: dict | None, args: argparse.Namespace, manifest: dict) -> tuple[str, list[dict]]:
    ours, orth = ours or {}, orth or {}
    rows: list[dict] = []
    lines = []
    head = ("measure", "ours", "Orthanc", "ours/Orthanc", "target", "")
    table: list[tuple[str, ...]] = [head]
    for key, label, unit, better, target in ROWS:
        a, b = ours.get(key), orth.get(key)
        ratio = a / b if a is not None and b else None
        ok = None
        if ratio is not None and target is not None:
            ok = ratio >= target if better == "higher" else ratio <= target
        rows.append({"key": key, "label": label, "unit": unit, "better": better, "ours": a, "orthanc": b,
                     "ratio": ratio, "target": target, "pass": ok})
        arrow = "↑" if better == "higher" else "↓"
        tgt = "-" if target is None else (f"≥ {target:.1f}×" if better == "higher" else f"≤ {target:.1f}×")
        mark = "" if ok is None else ("PASS" if ok else "MISS")
        table.append((f"{label} ({better} is better)", _fmt(a, unit), _fmt(b, unit),
                      "-" if ratio is None else f"{ratio:.2f}× {arrow}", tgt, mark))
    table.append(("", "", "", "", "", ""))
    for key, label, unit in INFO_ROWS:
        a, b = ours.get(key), orth.get(key)
        if a is None and b is None:
            continue
        ratio = a / b if a is not None and b else None
        rows.append({"key": key, "label": label, "unit": unit, "ours": a, "orthanc": b, "ratio": ratio})
        table.append((label, _fmt(a, unit), _fmt(b, unit), "-" if ratio is None else f"{ratio:.2f}×", "", ""))
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    n_files = len(manifest["files"])
    lines.append(f"provision emulator vs Orthanc {orth.get('version', '?')} + DICOMweb plugin "
                 f"{orth.get('dicomweb_version', '?')}: {len(manifest['study_files'])} studies + one "
                 f"{len(manifest['series_files'])}-slice series = {n_files} instances "
                 f"({manifest['bytes'] / 1e6:.0f} MB), {args.runs} runs after {args.warmup} warm-up, "
                 f"{os.cpu_count()} cores shared by client and server")
    sep = "  "
    for i, r in enumerate(table):
        lines.append(sep.join(c.ljust(widths[j]) if j == 0 else c.rjust(widths[j]) for j, c in enumerate(r)).rstrip())
        if i == 0:
            lines.append(sep.join("-" * w for w in widths))
    lines.append("ratio = ours / Orthanc; ↑ higher is better (ingest), ↓ lower is better (latency, memory). "
                 "Targets are ratios; MISS marks are informative (exit status 0 unless something broke).")
    return "\n".join(lines), rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", type=int, default=2000, help="single-instance studies (default 2000)")
    ap.add_argument("--runs", type=int, default=50, help="timed requests per query (default 50)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed rounds first (default 5)")
    ap.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    ap.add_argument("--data-dir", type=Path, default=_data.DEFAULT_DIR, help="generated DICOM cache")
    ap.add_argument("--workdir", type=Path, default=REPO / "out" / "bench-work", help="server databases and logs")
    ap.add_argument("--only", choices=["ours", "orthanc"], help="run one side only (no ratios)")
    ap.add_argument("--timeout", type=float, default=1800, help="bound on each side's run, seconds")
    args = ap.parse_args(argv)
    if args.studies < 1 or args.runs < 1 or args.warmup < 0:
        ap.error("--studies and --runs must be >= 1, --warmup >= 0")
    args.data_dir, args.workdir = args.data_dir.resolve(), args.workdir.resolve()
    raise_on_sigterm()

    t = time.perf_counter()
    manifest = _data.ensure(args.studies, args.data_dir, log=log)
    log(f"data: {len(manifest['files'])} files in {args.data_dir} ({time.perf_counter() - t:.1f} s)")
    results: dict[str, Any] = {"ours": None, "orthanc": None}
    errors: list[str] = []
    for side, fn in (("orthanc", lambda: run_orthanc(args)), ("ours", lambda: run_ours(args, manifest))):
        if args.only and args.only != side:
            continue
        try:
            results[side] = fn()
        except Exception as exc:  # report the other side anyway
            import traceback

            traceback.print_exc()
            errors.append(f"{side}: {type(exc).__name__}: {exc}")
    text, rows = report(results["ours"], results["orthanc"], args, manifest)
    print(text)
    for e in errors:
        print(f"FAILED {e}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "studies": args.studies, "instances": len(manifest["files"]), "bytes": manifest["bytes"],
            "runs": args.runs, "warmup": args.warmup, "cores": os.cpu_count(), "rows": rows,
            "ours": results["ours"], "orthanc": results["orthanc"], "errors": errors}, indent=2))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
