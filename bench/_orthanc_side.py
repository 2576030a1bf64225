"""Orthanc side of bench/emulator.py: start Orthanc (+ DICOMweb plugin) on a fresh database, ingest
the benchmark files by STOW-RS (emulator.stow_ingest: dicomweb-client, 50 instances per request,
sequential, the same as our side) and print one JSON line on stdout; then, for each command line
read on stdin, `{"cmd": "warmup"|"run", "n": N}` time N rounds of the same DICOMweb reads as our
side (emulator.Prober) and answer `{"ok": true}`; `{"cmd": "stop"}` (or EOF) answers the timings
and Orthanc's memory, stops Orthanc and exits.

`--large N`: the store of N small instances (bench/_large.py) kept in `--workdir` across runs:
built (STOW-RS) only when it is missing or incomplete, by an Orthanc that is then stopped; the
measure is always taken on a fresh Orthanc started on the cached database, and reads only the
study list and the series metadata.

Orthanc 1.10 has no bind-address option and listens on every interface, so this script must run
inside its own network namespace, which has only a loopback interface:

    unshare -n .venv/bin/python bench/_orthanc_side.py --inside [--studies N]

bench/emulator.py does exactly that. Without `--inside` this script does nothing (so running every
bench/*.py, as `make bench` does, never starts Orthanc in the host's network namespace).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _data  # noqa: E402
import _large  # noqa: E402
from emulator import (FRAMES_ACCEPT_ORTHANC, Prober, log, proc_status, raise_on_sigterm,  # noqa: E402
                      stop_process, stow_ingest, wait_http)

ORTHANC = "/usr/sbin/Orthanc"
PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
PORT = 18042


def _only_loopback() -> bool:
    """True when the only network interface here is `lo` (a private namespace)."""
    lines = Path("/proc/self/net/dev").read_text().splitlines()[2:]   # per network namespace
    return [line.split(":")[0].strip() for line in lines] == ["lo"]


def config(workdir: Path) -> dict:
    """Reference config (shared/reference/dicomweb.md §5): defaults otherwise, gzip left on."""
    return {
        "Name": "bench",
        "HttpPort": PORT,
        "DicomServerEnabled": False,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "StorageCompression": False,
        "StorageDirectory": str(workdir / "db"),
        "IndexDirectory": str(workdir / "db"),
        "Plugins": [PLUGIN],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "WadoRoot": "/wado",
                     "Ssl": False},
    }


def emit(msg: dict) -> None:
    print(json.dumps(msg), flush=True)


def _start(cfg_path: Path, workdir: Path, log_fh) -> tuple[subprocess.Popen, float]:
    proc = subprocess.Popen([ORTHANC, str(cfg_path)], stdout=log_fh, stderr=subprocess.STDOUT, cwd=workdir)
    try:
        return proc, wait_http(f"http://127.0.0.1:{PORT}/system", 60, proc)
    except BaseException:
        stop_process(proc, "Orthanc")
        raise


def _count(url: str) -> int:
    import requests

    return int(requests.get(f"{url}/statistics", timeout=60).json()["CountInstances"])


def serve(args: argparse.Namespace) -> None:
    """Start Orthanc, ingest (or reuse the cached large store), emit the results; then obey command
    lines from stdin until `stop` or EOF. Orthanc is stopped (by PID) whatever happens."""
    import requests

    large = args.large
    manifest = _large.ensure(large, args.data_dir) if large else _data.ensure(args.studies, args.data_dir)
    n = len(manifest["files"])
    workdir = args.workdir
    marker = workdir / "bench-complete.json"
    built = json.loads(marker.read_text()) if large and marker.exists() else None
    if not large or not built or built.get("instances") != n:
        if workdir.exists():
            shutil.rmtree(workdir)
        built = None
    (workdir / "db").mkdir(parents=True, exist_ok=True)
    cfg_path = workdir / "orthanc.json"
    cfg_path.write_text(json.dumps(config(workdir), indent=2))
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    url = f"http://127.0.0.1:{PORT}"
    res: dict = {"files": n}
    proc = None
    with open(workdir / "orthanc.log", "ab") as log_fh:
        try:
            proc, res["start_s"] = _start(cfg_path, workdir, log_fh)
            res["pid"] = proc.pid
            system = requests.get(f"{url}/system", timeout=10).json()
            res["version"] = system.get("Version")
            plugin = requests.get(f"{url}/plugins/dicom-web", timeout=10)
            res["dicomweb_version"] = plugin.json().get("Version") if plugin.ok else None
            if large and built is None:
                log(f"Orthanc: building the cached store of {n:,} instances in {workdir} (STOW-RS, once)")
                took = stow_ingest(f"{url}/dicom-web", manifest["files"], preparse=False, log_every=200)
                if _count(url) != n:
                    raise RuntimeError(f"Orthanc holds {_count(url)} instances, expected {n}")
                built = {"instances": n, "ingest_s": took}
                stop_process(proc, "Orthanc")        # the measure starts from a fresh Orthanc
                marker.write_text(json.dumps(built))
                proc, res["start_s"] = _start(cfg_path, workdir, log_fh)
                res["pid"] = proc.pid
                res["built_now"] = True
            if large:
                res["build_ingest_per_s"] = built["instances"] / built["ingest_s"]
                if _count(url) != n:
                    raise RuntimeError(f"the cached Orthanc store holds {_count(url)} instances, expected {n}")
            else:
                log(f"Orthanc {res['version']} up in {res['start_s']:.2f} s; STOW-RS {n} files")
                res["ingest_s"] = stow_ingest(f"{url}/dicom-web", manifest["files"])
                res["rss_after_ingest_mib"] = proc_status(proc.pid)["VmRSS"]
                res["ingest_per_s"] = n / res["ingest_s"]
                if _count(url) != n:
                    raise RuntimeError(f"Orthanc holds {_count(url)} instances, expected {n}")
                log(f"Orthanc: ingest {res['ingest_per_s']:.0f} inst/s")
            keys = ("study_list", "metadata") if large else Prober.KEYS
            prober = Prober(f"{url}/dicom-web", manifest, FRAMES_ACCEPT_ORTHANC, keys)
            emit(res)
            for line in sys.stdin:           # EOF (the parent went away) ends the loop too
                cmd = json.loads(line)
                if proc.poll() is not None:
                    raise RuntimeError(f"Orthanc exited with status {proc.returncode}")
                if cmd["cmd"] == "warmup":
                    prober.warmup(int(cmd["n"]))
                    emit({"ok": True})
                elif cmd["cmd"] == "run":
                    prober.run(int(cmd["n"]))
                    emit({"ok": True})
                elif cmd["cmd"] == "stop":
                    st = proc_status(proc.pid)
                    out = prober.summary()
                    out["rss_end_mib"], out["hwm_end_mib"] = st["VmRSS"], st["VmHWM"]
                    prober.close()
                    emit(out)
                    break
                else:
                    raise ValueError(f"unknown command {cmd!r}")
        finally:
            stop_process(proc, "Orthanc")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inside", action="store_true", help="we are inside `unshare -n`: really run")
    ap.add_argument("--studies", type=int, default=2000)
    ap.add_argument("--large", type=int, default=0, help="the cached store of this many small instances")
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--workdir", type=Path, default=HERE.parent / "out" / "bench-work" / "orthanc")
    args = ap.parse_args(argv)
    if args.data_dir is None:
        args.data_dir = _large.DEFAULT_DIR if args.large else _data.DEFAULT_DIR
    if not args.inside:
        print("bench/_orthanc_side.py is a helper of bench/emulator.py (run that); nothing to do", file=sys.stderr)
        return 0
    if not _only_loopback():
        print("refusing to start Orthanc: this network namespace has interfaces other than lo "
              "(run under `unshare -n`)", file=sys.stderr)
        return 2
    if not (Path(ORTHANC).exists() and Path(PLUGIN).exists()):
        print("Orthanc is not installed: apt-get install -y orthanc orthanc-dicomweb", file=sys.stderr)
        return 2
    raise_on_sigterm()
    try:
        serve(args)
    except Exception as exc:
        import traceback

        traceback.print_exc()
        emit({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
