"""Running a deployed revision on this machine: the source archive unpacked to a private temp
dir (sources.py: parts that earlier deploys unpacked are hard-linked, not inflated again),
`command` + `args` started as a child process, a TCP startup probe on its PORT, and its stdout/stderr lines written to Cloud Logging (`run.googleapis.com/stdout`, `.../stderr`) as
Cloud Run does. No HTTP routing here.

Choices (Cloud Run runs a container on Google's base image; offline there is no container):
- `python`, `python3` or `python3.X` as `command[0]` is this emulator's own interpreter
  (`sys.executable`), and its directory leads PATH, so `/bin/sh -c "python ..."` finds it too.
  Dependencies the archive does not carry come from the emulator's environment.
- any other `command[0]` runs as given; a relative one (`./server`) from the extracted dir.
- PORT is a free port on 127.0.0.1 (never the container port: two services may both ask 8080).
- the probe is TCP (Cloud Run's default startup probe) until STARTUP_TIMEOUT_S; a child that
  exits first fails the deploy.
- every child is its own process group, stopped with SIGTERM then SIGKILL after STOP_GRACE_S;
  on Linux it also dies with the emulator however that ends (PR_SET_PDEATHSIG, below).
- the child's environment is the service's, not the emulator's (no credential of the user's
  shell leaks into it): PATH, HOME (its own dir), LANG, then the service's env.
"""
from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from provision.emulator.cloudrun import sources

STARTUP_TIMEOUT_S = 60.0
STOP_GRACE_S = 5.0
PYTHON_RE = re.compile(r"^python(3(\.\d+)?)?$")


class StartFailed(Exception):
    """The revision did not start: the message says why (Google's wording where it has one)."""


class ImageNotFound(StartFailed):
    """The container's image is not one a build pushed to this emulator's Artifact Registry."""

    def __init__(self, image: str):
        super().__init__(f"Image '{image}' not found.")
        self.image = image


@dataclass
class Instance:
    key: str
    revision: str
    port: int
    proc: subprocess.Popen
    workdir: Path
    stop_hooks: list[Callable[[], None]] = field(default_factory=list)
    readers: list[threading.Thread] = field(default_factory=list)

    def alive(self) -> bool:
        return self.proc.poll() is None


def extract(archive: Path, into: Path) -> None:
    """Unpack a (gzipped) tar into the empty directory `into` safely (sources.py: regular files and
    directories only, no absolute path, no `..`, no link), reusing the parts earlier deploys unpacked."""
    try:
        sources.unpack(archive, into)
    except sources.Unreadable as exc:
        raise StartFailed(str(exc)) from None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def resolve_command(command: list[str], workdir: Path) -> list[str]:
    """`command` as run here (module docstring: the python in it is this interpreter)."""
    if not command:
        raise StartFailed("The emulator runs a source deploy only with `command` set on the container "
                          "(it has no base image entrypoint to fall back on).")
    head = command[0]
    if PYTHON_RE.match(os.path.basename(head)):
        head = sys.executable
    elif not os.path.isabs(head) and os.sep in head:
        head = str((workdir / head).resolve())
    return [head, *command[1:]]


_SHELL_CHARS = set("$;&|<>`'\"(){}*?~\\")


def procfile_command(line: str) -> list[str]:
    """A Procfile process as a buildpack's launcher runs it: through the shell, unless it is a
    plain `python ...` line (then argv, so `resolve_command` swaps in this interpreter)."""
    words = line.split()
    if words and PYTHON_RE.match(words[0]) and not (_SHELL_CHARS & set(line)):
        return words
    return ["/bin/sh", "-c", line]


def start(key: str, revision: str, archive: Path, command: list[str], env: dict[str, str],
          on_line: Callable[[str, str], None] | None = None, *, port: int | None = None,
          cancelled: Callable[[], bool] = lambda: False) -> Instance:
    """Extract, start and probe one instance; raises StartFailed (and leaves nothing behind),
    also when `cancelled()` turns true while it waits for the port."""
    workdir = Path(tempfile.mkdtemp(prefix="emulator-run-"))
    try:
        src = workdir / "workspace"
        src.mkdir()
        extract(archive, src)
        argv = resolve_command(command, src)
        port = port or free_port()
        full_env = {"PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
                    "HOME": str(workdir), "LANG": os.environ.get("LANG", "C.UTF-8"), **env, "PORT": str(port)}
        proc = _spawn(argv, cwd=src, env=full_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE, start_new_session=True)
    except StartFailed:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    except OSError as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        raise StartFailed(f"The container command could not be started: {exc}.") from None
    inst = Instance(key, revision, port, proc, workdir)
    for stream, name in ((proc.stdout, "stdout"), (proc.stderr, "stderr")):
        t = threading.Thread(target=_pump, args=(stream, name, on_line), daemon=True, name=f"run-{name}")
        t.start()
        inst.readers.append(t)
    try:
        _probe(inst, cancelled)
    except StartFailed:
        stop(inst)
        raise
    return inst


# Children die with the emulator, however it ends (a SIGKILL included): on Linux each is started
# with PR_SET_PDEATHSIG. The kernel sends that signal when the *thread* that forked the child
# exits, so every child is forked by one long-lived spawner thread, never by a short deploy thread.
PR_SET_PDEATHSIG = 1
_spawn_jobs: queue.SimpleQueue = queue.SimpleQueue()
_spawner: threading.Thread | None = None
_spawner_lock = threading.Lock()


def _prctl():
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):   # not Linux with glibc: children may outlive a killed emulator
        return None


_PRCTL = _prctl() if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:   # runs in the child between fork and exec
    if _PRCTL is not None:   # always so: _spawn passes this function only then
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL)


def _spawn(argv: list[str], **kwargs) -> subprocess.Popen:
    """subprocess.Popen from the spawner thread (module comment above)."""
    global _spawner
    if _PRCTL is None:
        return subprocess.Popen(argv, **kwargs)
    with _spawner_lock:
        if _spawner is None:
            _spawner = threading.Thread(target=_spawn_loop, name="run-spawner", daemon=True)
            _spawner.start()
    done: queue.SimpleQueue = queue.SimpleQueue()
    _spawn_jobs.put((argv, kwargs, done))
    ok, result = done.get()
    if not ok:
        raise result
    return result


def _spawn_loop() -> None:
    while True:
        argv, kwargs, done = _spawn_jobs.get()
        try:
            done.put((True, subprocess.Popen(argv, preexec_fn=_die_with_parent, **kwargs)))  # noqa: PLW1509
        except Exception as exc:  # noqa: BLE001 - handed back to the caller
            done.put((False, exc))


def _pump(stream, name: str, on_line: Callable[[str, str], None] | None) -> None:
    for raw in iter(stream.readline, b""):
        if on_line is not None:
            try:
                on_line(name, raw.decode("utf-8", "replace").rstrip("\n"))
            except Exception:  # noqa: BLE001 - a log write must never take the reader down
                pass
    stream.close()


def _probe(inst: Instance, cancelled: Callable[[], bool]) -> None:
    """Wait for the port to accept a connection (Cloud Run's default TCP startup probe)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if cancelled():
            raise StartFailed("The deploy was cancelled (emulator reset or shutdown).")
        try:
            with socket.create_connection(("127.0.0.1", inst.port), timeout=0.5):
                return
        except OSError:
            pass
        try:
            code = inst.proc.wait(timeout=0.05)   # the child's exit, or the next probe in 50 ms
        except subprocess.TimeoutExpired:
            continue
        raise StartFailed(f"The container exited with code {code} before it listened on PORT={inst.port}.")
    raise StartFailed(f"The container did not listen on PORT={inst.port} within {STARTUP_TIMEOUT_S:.0f} s.")


def stop(inst: Instance) -> None:
    """Stop the instance's process group and remove its files."""
    for hook in inst.stop_hooks:
        try:
            hook()
        except Exception:  # noqa: BLE001 - stopping goes on
            pass
    if inst.proc.poll() is None:
        _signal(inst.proc, signal.SIGTERM)
        try:
            inst.proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            _signal(inst.proc, signal.SIGKILL)
            inst.proc.wait(timeout=STOP_GRACE_S)
    for t in inst.readers:
        t.join(timeout=2)
    shutil.rmtree(inst.workdir, ignore_errors=True)


def _signal(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def log_entry(stream: str, line: str, labels: dict[str, str]) -> dict:
    """One container output line as Cloud Run's logging agent writes it: a JSON object line becomes
    `jsonPayload` (its `severity` and `message` kept), anything else `textPayload`."""
    entry: dict = {"resource": {"type": "cloud_run_revision", "labels": labels}}
    try:
        payload = json.loads(line) if line.startswith("{") else None
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        if isinstance(payload.get("severity"), str):
            entry["severity"] = payload["severity"].upper()
        entry["jsonPayload"] = payload
    else:
        entry["textPayload"] = line
        if stream == "stderr":
            entry["severity"] = "ERROR"
    return entry
