"""Benchmark: our emulator's Cloud Healthcare DICOMweb beside Orthanc (+ DICOMweb plugin), in one run,
on the same files, with the ratios and the targets.

    .venv/bin/python bench/emulator.py                 # 2,000 studies + a 64-slice series, 50 runs; then
                                                       # the 2,000- and 100,000-instance stores
    .venv/bin/python bench/emulator.py --studies 200 --runs 20 --large 0 --json out/bench.json

Orthanc binds every interface, so it runs only inside a private network namespace (`unshare -n`,
loopback only) together with its client (`bench/_orthanc_side.py`, which prints JSON). Our
emulator runs as its own process (`provision emulator --port P` on 127.0.0.1) so its resident
memory is its own; it is set up through the real Google client libraries. Both ingest the same
files by STOW-RS with the same client (dicomweb-client, 50 instances a request, one request at a
time); ours then also imports them from a bucket (extra rows). The ingests run one after the
other (Orthanc first); then both servers are up and idle, and the reads are timed by the same
code (`Prober` below) in alternating blocks, one side at a time, so that load changes on the
shared machine hit both columns alike.

Then (`--large N`, default 100,000; 0 skips it) the same reads at two store sizes, 2,000 and N
small instances (bench/_large.py), on stores each server ingested once and keeps under
~/.cache/provision/bench-large/ (ours with --data-dir, Orthanc its own database), restarted fresh
for the measure: the study list and metadata p50, resident memory, and how each grows.
See bench/README.md for what each row means.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import _data  # noqa: E402  (bench/ is not a package)
import _large  # noqa: E402

PROJECT = "provision-bench"
PARENT = "organizations/123456789012"
BILLING = "billingAccounts/012345-6789AB-CDEF01"
LOCATION = "us-central1"
DATASET = "bench"
STORE = "bench"
BUCKET = "provision-bench-dicom"

# What OHIF's study list sends (shared/reference/ohif.md §1a), byte for byte.
STUDY_LIST_QUERY = "studies?limit=101&offset=0&fuzzymatching=true&includefield=00081030%2C00080060%2C00080090%2C00100030"
BATCH = 50       # STOW-RS instances per request
FRAMES_ACCEPT_OURS = "multipart/related; type=application/octet-stream; transfer-syntax=*"
FRAMES_ACCEPT_ORTHANC = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
FRAME_BYTES = _data.ROWS * _data.COLS * 2

# (key, label, unit, which direction is better, target for the ratio ours/Orthanc)
ROWS: list[tuple[str, str, str, str, float | None]] = [
    ("ingest_per_s", "STOW-RS ingest (dicomweb-client, 50/request, sequential)", "inst/s", "higher", 1.0),
    ("study_list_p50_ms", "OHIF study list QIDO (fuzzymatching, 4 includefields), p50", "ms", "lower", 0.5),
    ("study_list_p95_ms", "OHIF study list QIDO, p95", "ms", "lower", None),
    ("one_study_p50_ms", "QIDO studies?PatientID=X (1 result), p50", "ms", "lower", None),
    ("metadata_p50_ms", "series metadata, 64 instances, p50", "ms", "lower", 1.0),
    ("frames_p50_ms", "frames/1 octet-stream (128 KiB), p50", "ms", "lower", 1.5),
    ("rss_after_ingest_mib", "resident memory after ingest (VmRSS)", "MiB", "lower", 1.0),
]
INFO_ROWS = [
    ("ingest_s", "  STOW-RS ingest wall time", "s"),
    ("import_per_s", "  ours only: bucket import of the same files (dicomStores.import)", "inst/s"),
    ("upload_s", "  ours only: bucket upload before import (storage client), untimed in import", "s"),
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


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None, headers: dict | None = None) -> float:
    """Poll `url` (with `headers`) until it answers 200 (bounded); returns the seconds it took."""
    import requests

    t0 = time.perf_counter()
    deadline = t0 + timeout
    while time.perf_counter() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode} before answering")
        try:
            if requests.get(url, timeout=2, headers=headers).status_code == 200:
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


def stow_ingest(base: str, files: list[str], *, preparse: bool = True, log_every: int = 0) -> float:
    """STOW-RS every file with dicomweb-client, BATCH instances a request, one request at a time;
    returns the wall time. The same client for both servers. With `preparse` the files are read
    by pydicom before the clock starts (dicomweb-client takes datasets) and the clock covers
    dicomweb-client encoding each request, the HTTP exchange and the server storing; without it
    (a large store's build), reading is inside the clock, a batch at a time."""
    import pydicom
    from dicomweb_client.api import DICOMwebClient

    client = DICOMwebClient(url=base, headers={"Accept-Encoding": "identity"}, timeout=300)
    datasets = [pydicom.dcmread(f) for f in files] if preparse else None
    t = time.perf_counter()
    for i in range(0, len(files), BATCH):
        batch = datasets[i:i + BATCH] if datasets is not None else [pydicom.dcmread(f) for f in files[i:i + BATCH]]
        resp = client.store_instances(batch)
        failed = resp.get("00081198") if resp is not None else None
        if failed:
            raise RuntimeError(f"STOW-RS batch {i // BATCH} had failures: {failed}")
        if log_every and (i // BATCH) % log_every == 0 and i:
            log(f"  STOW-RS {i:,} of {len(files):,} ({i / (time.perf_counter() - t):.0f} inst/s)")
    return time.perf_counter() - t


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


class Prober:
    """The OHIF-style DICOMweb reads against one server, timed.

    `base` is a DICOMweb root without a trailing slash. One keep-alive session, `Accept-Encoding:
    identity`. A round does every request once; `run(n)` times n rounds, `warmup(n)` does n
    untimed. The first answer of each kind in warm-up and in timed rounds is checked (status,
    number of results, frame bytes), so both servers provably do the same work.
    """

    KEYS = ("study_list", "one_study", "metadata", "frames")

    def __init__(self, base: str, manifest: dict, frames_accept: str, keys: tuple[str, ...] = KEYS):
        import requests

        self.KEYS = tuple(keys)
        self.session = requests.Session()
        self.session.headers.update({"Accept-Encoding": "identity"})
        st, se, sop = manifest["series_study_uid"], manifest["series_uid"], manifest["series_first_sop_uid"]
        want_list = min(101, len(manifest["study_files"]) + 1)
        json_accept = {"Accept": "application/dicom+json"}
        self.requests = {
            "study_list": (f"{base}/{STUDY_LIST_QUERY}", json_accept, self._count(want_list)),
            "one_study": (f"{base}/studies?PatientID={manifest['probe_patient_id']}", json_accept, self._count(1)),
            "metadata": (f"{base}/studies/{st}/series/{se}/metadata", json_accept,
                         self._count(len(manifest["series_files"]))),
            "frames": (f"{base}/studies/{st}/series/{se}/instances/{sop}/frames/1", {"Accept": frames_accept},
                       self._frame),
        }
        self.times: dict[str, list[float]] = {k: [] for k in self.KEYS}
        self.sizes: dict[str, int] = {}
        self._checked_warm = self._checked_timed = False

    @staticmethod
    def _count(n: int) -> Callable:
        def check(r) -> None:
            got = r.json() if r.content else []
            if len(got) != n:
                raise RuntimeError(f"{r.url}: expected {n} results, got {len(got)}")
        return check

    @staticmethod
    def _frame(r) -> None:
        payload = _multipart_payload(r.content, r.headers.get("Content-Type", ""))
        if len(payload) != FRAME_BYTES:
            raise RuntimeError(f"{r.url}: frame payload is {len(payload)} bytes, expected {FRAME_BYTES}")

    def _round(self, timed: bool, check: bool) -> None:
        for key in self.KEYS:
            url, headers, checker = self.requests[key]
            t = time.perf_counter()
            r = self.session.get(url, headers=headers, timeout=60)
            body = r.content
            dt = time.perf_counter() - t
            if r.status_code != 200:
                raise RuntimeError(f"GET {url} -> {r.status_code}: {body[:300]!r}")
            if check:
                checker(r)
                self.sizes[key] = len(body)
            if timed:
                self.times[key].append(dt * 1000.0)

    def warmup(self, n: int) -> None:
        for _ in range(n):
            self._round(False, not self._checked_warm)
            self._checked_warm = True

    def run(self, n: int) -> None:
        for _ in range(n):
            self._round(True, not self._checked_timed)
            self._checked_timed = True

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"response_bytes": self.sizes, "runs": len(self.times["study_list"])}
        for key, values in self.times.items():
            if values:
                out[f"{key}_p50_ms"] = percentile(values, 50)
                out[f"{key}_p95_ms"] = percentile(values, 95)
        return out

    def close(self) -> None:
        self.session.close()


class _Lines:
    """Lines of a child's stdout, read with a timeout (a reader thread feeds a queue)."""

    def __init__(self, stream):
        import queue
        import threading

        self.q: "queue.Queue[str | None]" = queue.Queue()

        def pump() -> None:
            for line in stream:
                self.q.put(line)
            self.q.put(None)

        threading.Thread(target=pump, daemon=True, name="child-stdout").start()

    def get(self, timeout: float) -> str | None:
        import queue

        try:
            return self.q.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"no answer within {timeout:.0f} s") from None


# --------------------------------------------------------------------------------------------
# Orthanc: a child process in its own network namespace, driven by JSON lines
# --------------------------------------------------------------------------------------------

class OrthancSide:
    """`unshare -n python bench/_orthanc_side.py --inside`: it starts Orthanc, ingests and prints a
    JSON line; then each command line we send (`{"cmd": "warmup"|"run", "n": N}`, `{"cmd": "stop"}`)
    gets one JSON line back. Orthanc and its client never leave the private namespace.
    `large=N`: the cached store of N small instances (built once, then reused; see _orthanc_side)."""

    name = "orthanc"

    def __init__(self, args: argparse.Namespace, manifest: dict, large: int = 0):
        self.args = args
        self.large = large
        self.proc: subprocess.Popen | None = None
        self.lines: _Lines | None = None
        self.result: dict[str, Any] = {}

    def _read(self, timeout: float) -> dict:
        assert self.lines is not None
        line = self.lines.get(timeout)
        if line is None:
            self.proc.wait(timeout=30)
            raise RuntimeError(f"Orthanc side exited with status {self.proc.returncode}")
        msg = json.loads(line)
        if "error" in msg:
            raise RuntimeError(f"Orthanc side: {msg['error']}")
        return msg

    def _ask(self, cmd: dict, timeout: float) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._read(timeout)

    def start_and_ingest(self) -> None:
        cmd = ["unshare", "-n", sys.executable, str(HERE / "_orthanc_side.py"), "--inside"]
        if self.large:
            cmd += ["--large", str(self.large), "--data-dir", str(self.args.large_dir),
                    "--workdir", str(self.args.cache_dir / f"orthanc-{self.large}")]
        else:
            cmd += ["--studies", str(self.args.studies), "--data-dir", str(self.args.data_dir),
                    "--workdir", str(self.args.workdir / "orthanc")]
        log("Orthanc side: " + " ".join(cmd[:4]) + " ...")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, text=True,
                                     bufsize=1)
        self.lines = _Lines(self.proc.stdout)
        self.result.update(self._read(self.args.timeout))

    def warmup(self, n: int) -> None:
        self._ask({"cmd": "warmup", "n": n}, self.args.timeout)

    def run(self, n: int) -> None:
        self._ask({"cmd": "run", "n": n}, self.args.timeout)

    def finish(self) -> None:
        self.result.update(self._ask({"cmd": "stop"}, 120))

    def stop(self) -> None:
        if self.proc is not None:
            try:
                if self.proc.poll() is None:
                    self.proc.stdin.close()       # EOF: the helper stops Orthanc and exits
                    self.proc.wait(timeout=20)
            except (OSError, subprocess.TimeoutExpired):
                pass
            stop_process(self.proc, "Orthanc side")


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


def setup_store(url: str) -> dict[str, Any]:
    """Project, billing, API, dataset and DICOM store, through the client libraries, the way a user
    would; returns the project number and the store's name."""
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import resourcemanager_v3

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
    return {"number": number, "dataset": ds_name, "store": f"{ds_name}/dicomStores/{STORE}"}


def dicomweb_root(url: str, store: str) -> str:
    return f"{url}/v1/{store}/dicomWeb"


def import_from_bucket(url: str, manifest: dict, setup: dict, args: argparse.Namespace) -> dict[str, Any]:
    """The other way in (extra rows): a bucket, the upload of every file with google.cloud.storage (4
    threads), the Healthcare agent's grant on the bucket, then the timed import into a second store.
    The emulator's blobs are content-addressed, so the import shares the bytes STOW-RS stored."""
    from concurrent.futures import ThreadPoolExecutor

    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    res: dict[str, Any] = {}
    hc = _discovery("healthcare", "v1", url)
    datasets = hc.projects().locations().datasets()
    datasets.dicomStores().create(parent=setup["dataset"], dicomStoreId=STORE + "-import", body={}).execute()
    store_name = f"{setup['dataset']}/dicomStores/{STORE}-import"
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

    member = f"serviceAccount:service-{setup['number']}@gcp-sa-healthcare.iam.gserviceaccount.com"

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

    log(f"ours: import gs://{BUCKET}/**.dcm into {STORE}-import (timed)")
    stores = datasets.dicomStores()
    t = time.perf_counter()
    op = stores.import_(name=store_name, body={"gcsSource": {"uri": f"gs://{BUCKET}/**.dcm"}}).execute()
    op = _poll(lambda: datasets.operations().get(name=op["name"]).execute(), "import", args.timeout, 0.05)
    import_s = time.perf_counter() - t
    n = len(manifest["files"])
    res["import_per_s"] = n / import_s
    res["ingest_with_upload_per_s"] = n / (import_s + res["upload_s"])
    meta = op.get("metadata", {})
    if meta.get("createTime") and meta.get("endTime"):
        res["import_op_s"] = _rfc3339(meta["endTime"]) - _rfc3339(meta["createTime"])
    counter = meta.get("counter", {})
    res["import_counter"] = counter
    if counter.get("failure") not in (None, "0", 0):
        raise RuntimeError(f"import reported failures: {counter}")
    return res


def _state_key() -> str:
    """What our cached large stores depend on: the emulator's persisted format (its sources)."""
    import hashlib

    h = hashlib.sha256()
    for rel in ("store.py", "healthcare/index.py", "healthcare/dicomfile.py", "storage/objects.py"):
        h.update((REPO / "provision" / "emulator" / rel).read_bytes())
    return h.hexdigest()[:12]


class OursSide:
    """`provision emulator --port P` as our own child process, set up through the client libraries.

    Default: in-memory state (blobs in a temporary directory), STOW-RS of the run's files, then
    (unless --no-import) the bucket import of the same files into a second store. `large=N`: the
    cached store of N small instances under --cache-dir (`--data-dir`), built once by STOW-RS in a
    run of its own, then served by a fresh emulator."""

    name = "ours"

    def __init__(self, args: argparse.Namespace, manifest: dict, large: int = 0):
        self.args, self.manifest, self.large = args, manifest, large
        self.proc: subprocess.Popen | None = None
        self.prober: Prober | None = None
        self.result: dict[str, Any] = {}
        self.log_path = args.workdir / (f"emulator-large-{large}.log" if large else "emulator.log")
        # In-memory state; its blobs go to a temporary directory: keep that where we can remove it
        # even if the emulator dies without cleaning up.
        self.tmp = args.workdir / "emulator-tmp"
        self.data_dir = args.cache_dir / f"ours-{large}-{_state_key()}" if large else None
        self.url = ""

    def _start(self) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        exe = REPO / ".venv" / "bin" / "provision"
        cmd = [str(exe), "emulator", "--port", str(port)] if exe.exists() else \
            [sys.executable, "-m", "provision.cli", "emulator", "--port", str(port)]
        if self.data_dir is not None:
            cmd += ["--data-dir", str(self.data_dir)]
        self.args.workdir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir()
        env = {**os.environ, "TMPDIR": str(self.tmp)}
        log(f"ours: {' '.join(cmd)} (log {self.log_path})")
        with open(self.log_path, "ab") as log_fh:
            # Default SIGINT in the child even if ours is ignored (e.g. started with `&`), so that
            # SIGINT makes the emulator close cleanly.
            self.proc = subprocess.Popen(cmd, stdout=log_fh, stderr=subprocess.STDOUT, cwd=REPO, env=env,
                                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.result.update({"pid": self.proc.pid, "files": len(self.manifest["files"])})
        self.result["start_s"] = wait_http(f"{self.url}/_emulator/health", 60, self.proc,
                                           headers={"X-Emulator-Control": "1"})

    def start_and_ingest(self) -> None:
        try:
            if self.large:
                self._large_store()
            else:
                self._start()
                setup = setup_store(self.url)
                files = self.manifest["files"]
                log(f"ours: STOW-RS {len(files)} files (timed)")
                self.result["ingest_s"] = stow_ingest(dicomweb_root(self.url, setup["store"]), files)
                self.result["rss_after_ingest_mib"] = proc_status(self.proc.pid)["VmRSS"]
                self.result["ingest_per_s"] = len(files) / self.result["ingest_s"]
                log(f"ours: ingest {self.result['ingest_per_s']:.0f} inst/s")
                if self.args.with_import:
                    self.result.update(import_from_bucket(self.url, self.manifest, setup, self.args))
        except BaseException:
            self._explain()
            raise
        store = f"projects/{PROJECT}/locations/{LOCATION}/datasets/{DATASET}/dicomStores/{STORE}"
        keys = ("study_list", "metadata") if self.large else Prober.KEYS
        self.prober = Prober(dicomweb_root(self.url, store), self.manifest, FRAMES_ACCEPT_OURS, keys)

    def _large_store(self) -> None:
        """Serve the cached store of `large` instances; build it first when it is missing."""
        marker = self.data_dir / "bench-complete.json"
        n = len(self.manifest["files"])
        built = json.loads(marker.read_text()) if marker.exists() else None
        if not built or built.get("instances") != n:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self._start()
            setup = setup_store(self.url)
            log(f"ours: building the cached store of {n:,} instances in {self.data_dir} (STOW-RS, once)")
            took = stow_ingest(dicomweb_root(self.url, setup["store"]), self.manifest["files"], preparse=False,
                               log_every=200)
            built = {"instances": n, "ingest_s": took}
            self._stop_server()
            marker.write_text(json.dumps(built))
            self.result["built_now"] = True
        self.result["build_ingest_per_s"] = built["instances"] / built["ingest_s"]
        self._start()

    def _explain(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace").splitlines()[-5:]
            log(f"emulator exited with status {self.proc.returncode}; last lines of {self.log_path}:\n  "
                + "\n  ".join(tail))

    def warmup(self, n: int) -> None:
        self.prober.warmup(n)

    def run(self, n: int) -> None:
        self.prober.run(n)

    def finish(self) -> None:
        st = proc_status(self.proc.pid)
        self.result["rss_end_mib"], self.result["hwm_end_mib"] = st["VmRSS"], st["VmHWM"]
        self.result.update(self.prober.summary())
        self.prober.close()

    def _stop_server(self) -> None:
        stop_process(self.proc, "emulator", sig=signal.SIGINT)   # SIGINT: it closes and cleans up
        shutil.rmtree(self.tmp, ignore_errors=True)

    def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None and not self.tmp.exists():
            return   # not started, or already stopped
        self._explain()
        self._stop_server()


def run_sides(args: argparse.Namespace, manifest: dict, errors: list[str], *, large: int = 0,
              runs: int | None = None, warmup: int | None = None) -> dict[str, dict | None]:
    """Ingest on each side in turn (never both at once), then time the reads in alternating blocks
    of `--block` rounds (ABBA order), so that load changes on the machine hit both sides alike.
    `large=N`: the cached N-instance stores instead (built first when missing)."""
    import traceback

    runs = args.runs if runs is None else runs
    warmup = args.warmup if warmup is None else warmup
    sides = [cls(args, manifest, large=large) for cls in (OrthancSide, OursSide) if args.only in (None, cls.name)]
    live: list = []

    def attempt(side, what: str, fn: Callable[[], None]) -> bool:
        try:
            fn()
            return True
        except Exception as exc:  # report the other side anyway
            traceback.print_exc()
            errors.append(f"{side.name} ({what}): {type(exc).__name__}: {exc}")
            if side in live:
                live.remove(side)
            side.stop()
            return False

    try:
        for side in sides:
            if attempt(side, "start and ingest", side.start_and_ingest):
                live.append(side)
        for side in list(live):
            attempt(side, "warm-up", lambda side=side: side.warmup(warmup))
        what = f"the {large:,}-instance stores" if large else "DICOMweb reads"
        log(f"measuring {what}: {runs} rounds per side in blocks of {args.block}")
        done, flip = 0, False
        while done < runs and live:
            n = min(args.block, runs - done)
            for side in (list(reversed(live)) if flip else list(live)):
                attempt(side, "reads", lambda side=side, n=n: side.run(n))
            done, flip = done + n, not flip
        for side in list(live):
            attempt(side, "finish", side.finish)
    finally:
        for side in sides:
            side.stop()
    return {side.name: (side.result or None) for side in sides}   # a failed side keeps what it measured


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
                 f"({manifest['bytes'] / 1e6:.0f} MB)")
    load = getattr(args, "load", None)
    lines.append(f"reads: {args.runs} timed rounds per side after {args.warmup} warm-up, sides alternating every "
                 f"{args.block} rounds; {os.cpu_count()} cores shared by clients and servers"
                 + (f"; load average {load[0][0]:.1f} at start, {load[1][0]:.1f} at end" if load else ""))
    sep = "  "
    for i, r in enumerate(table):
        lines.append(sep.join(c.ljust(widths[j]) if j == 0 else c.rjust(widths[j]) for j, c in enumerate(r)).rstrip())
        if i == 0:
            lines.append(sep.join("-" * w for w in widths))
    lines.append("ratio = ours / Orthanc; ↑ higher is better (ingest), ↓ lower is better (latency, memory). "
                 "Targets are ratios; MISS marks are informative (exit status 0 unless something broke).")
    return "\n".join(lines), rows


LARGE_BASE = 2000      # the smaller of the two large-store sizes ("how each grows from 2,000 to N")
LARGE_ROWS: list[tuple[str, str, str, float | None]] = [
    ("study_list_p50_ms", "OHIF study list QIDO p50", "ms", 0.5),
    ("metadata_p50_ms", "series metadata (64 instances) p50", "ms", None),
    ("rss_end_mib", "resident memory after the reads (VmRSS)", "MiB", 1.0),
]


def report_large(by_size: dict[int, dict[str, dict | None]], args: argparse.Namespace) -> tuple[str, list[dict]]:
    """The large-store table: each measure at each size, its ratio, and each side's growth."""
    sizes = sorted(by_size)
    top = sizes[-1]
    rows: list[dict] = []
    head = ("measure", "ours", "Orthanc", "ours/Orthanc", "target", "")
    table: list[tuple[str, ...]] = [head]
    for key, label, unit, target in LARGE_ROWS:
        for size in sizes:
            ours, orth = by_size[size].get("ours") or {}, by_size[size].get("orthanc") or {}
            a, b = ours.get(key), orth.get(key)
            ratio = a / b if a is not None and b else None
            tgt = target if size == top else None
            ok = None if ratio is None or tgt is None else ratio <= tgt
            rows.append({"key": key, "size": size, "label": label, "unit": unit, "ours": a, "orthanc": b,
                         "ratio": ratio, "target": tgt, "pass": ok})
            table.append((f"{label}, {size:,} instances", _fmt(a, unit), _fmt(b, unit),
                          "-" if ratio is None else f"{ratio:.2f}× ↓", "-" if tgt is None else f"≤ {tgt:.1f}×",
                          "" if ok is None else ("PASS" if ok else "MISS")))
    if len(sizes) > 1:
        table.append(("", "", "", "", "", ""))
        low = sizes[0]
        for key, label, _unit, _target in LARGE_ROWS:
            growth = {}
            for side in ("ours", "orthanc"):
                a = (by_size[top].get(side) or {}).get(key)
                b = (by_size[low].get(side) or {}).get(key)
                growth[side] = a / b if a is not None and b else None
            rows.append({"key": f"{key}_growth", "label": f"{label} growth", "from": low, "to": top, **growth})
            table.append((f"growth {low:,} → {top:,}: {label}",
                          *("-" if growth[k] is None else f"{growth[k]:.2f}×" for k in ("ours", "orthanc")),
                          "", "", ""))
    for size in sizes:
        ours, orth = by_size[size].get("ours") or {}, by_size[size].get("orthanc") or {}
        a, b = ours.get("build_ingest_per_s"), orth.get("build_ingest_per_s")
        if a is not None or b is not None:
            table.append((f"  store of {size:,} built once by STOW-RS (reading files included)", _fmt(a, "inst/s"),
                          _fmt(b, "inst/s"), "-" if not (a and b) else f"{a / b:.2f}×", "", ""))
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    lines = [f"large stores: {', '.join(f'{n:,}' for n in sizes)} small instances (16x16 CT, bench/_large.py), "
             f"cached in {args.cache_dir}; each server restarted on its cached store, then {args.large_runs} timed "
             f"rounds per side after {args.warmup} warm-up"]
    for i, r in enumerate(table):
        lines.append("  ".join(c.ljust(widths[j]) if j == 0 else c.rjust(widths[j]) for j, c in enumerate(r)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines), rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", type=int, default=2000, help="single-instance studies (default 2000)")
    ap.add_argument("--runs", type=int, default=50, help="timed requests per query (default 50)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed rounds first (default 5)")
    ap.add_argument("--block", type=int, default=5, help="rounds per side before switching to the other (default 5)")
    ap.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    ap.add_argument("--data-dir", type=Path, default=_data.DEFAULT_DIR, help="generated DICOM cache")
    ap.add_argument("--workdir", type=Path, default=REPO / "out" / "bench-work", help="server databases and logs")
    ap.add_argument("--only", choices=["ours", "orthanc"], help="run one side only (no ratios)")
    ap.add_argument("--timeout", type=float, default=1800, help="bound on each step of a side (ingest, a block), seconds")
    ap.add_argument("--no-import", dest="with_import", action="store_false",
                    help="skip ours' extra bucket-import rows")
    ap.add_argument("--large", type=int, default=100_000, metavar="N",
                    help=f"also measure the cached stores of {LARGE_BASE:,} and N small instances (default 100000; "
                         "0 skips)")
    ap.add_argument("--large-runs", type=int, default=20, help="timed rounds per side on each large store (default 20)")
    ap.add_argument("--cache-dir", type=Path, default=_large.CACHE,
                    help="where the large stores' files and each server's ingested store are kept")
    args = ap.parse_args(argv)
    if args.studies < 1 or args.runs < 1 or args.block < 1 or args.warmup < 0:
        ap.error("--studies, --runs and --block must be >= 1, --warmup >= 0")
    if args.large and args.large <= _large.SERIES_SLICES:
        ap.error(f"--large must be 0 or more than {_large.SERIES_SLICES}")
    args.data_dir, args.workdir, args.cache_dir = args.data_dir.resolve(), args.workdir.resolve(), args.cache_dir.resolve()
    args.large_dir = args.cache_dir / f"data-v{_large.VERSION}"
    raise_on_sigterm()

    t = time.perf_counter()
    manifest = _data.ensure(args.studies, args.data_dir, log=log)
    log(f"data: {len(manifest['files'])} files in {args.data_dir} ({time.perf_counter() - t:.1f} s)")
    errors: list[str] = []
    results = {"ours": None, "orthanc": None}
    load_start = os.getloadavg()
    results.update(run_sides(args, manifest, errors))
    args.load = (load_start, os.getloadavg())
    text, rows = report(results["ours"], results["orthanc"], args, manifest)
    print(text)
    large: dict[int, dict] = {}
    large_rows: list[dict] = []
    if args.large:
        for size in sorted({min(LARGE_BASE, args.large), args.large}):
            t = time.perf_counter()
            big = _large.ensure(size, args.large_dir, log=log)
            log(f"large data: {size:,} files in {args.large_dir} ({time.perf_counter() - t:.1f} s)")
            large[size] = run_sides(args, big, errors, large=size, runs=args.large_runs)
        load_large = os.getloadavg()
        text, large_rows = report_large(large, args)
        print()
        print(text)
        print(f"load average {load_large[0]:.1f} at the end")
    for e in errors:
        print(f"FAILED {e}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "studies": args.studies, "instances": len(manifest["files"]), "bytes": manifest["bytes"],
            "runs": args.runs, "warmup": args.warmup, "block": args.block, "cores": os.cpu_count(),
            "loadavg_start": args.load[0], "loadavg_end": args.load[1], "rows": rows,
            "ours": results["ours"], "orthanc": results["orthanc"], "large_rows": large_rows,
            "large": {str(k): v for k, v in large.items()}, "errors": errors}, indent=2))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
