"""One apply at a time: a lock object next to the ownership record.

Where: `gs://<project-id>-provision-state/lock.json`, beside `record.json` (provision/resources/
record.py). Taken by creating the object with `ifGenerationMatch=0` (Cloud Storage creates it
only if there is none: what Terraform's GCS backend does with its `.tflock`), released by
deleting exactly the generation taken (`ifGenerationMatch=G`, so a run never deletes a lock
someone else took after breaking its own). The object names its holder (user, host, pid, the
command) and since when, so the second apply can say who holds it.

A new project has no record bucket yet: the lock is then *pending* and taken by the record
store the moment it makes (or finds) the bucket, before its first write; a concurrent run that
made the bucket first wins, and the other stops there. A lock whose holder died stays until
broken: `provision unlock BLUEPRINT`, or `gcloud storage rm gs://P-provision-state/lock.json`.
"""
from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

from provision.errors import ProvisionError
from provision.gcp.context import Ctx
from provision.gcp.errors import is_status
from provision.gcp.retry import Cancelled
from provision.resources.record import bucket_for

FORMAT = "provision-lock/1"
OBJECT = "lock.json"
POLL_FIRST_S, POLL_MAX_S = 1.0, 15.0   # how often a waiting run looks again (growing, as for operations)


class LockHeld(ProvisionError):
    """Another run holds the project's lock: `holder` is what its lock object says. Nothing was changed."""

    def __init__(self, message: str, holder: dict[str, Any]):
        self.holder = holder
        super().__init__(message)


def holder_here(command: str) -> dict[str, Any]:
    """Who this process is, as the lock object names it."""
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name (a container): the uid says enough
        user = f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"
    since = datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    return {"format": FORMAT, "user": user, "host": socket.gethostname(), "pid": os.getpid(),
            "command": command, "since": since}


def dead_here(holder: dict[str, Any]) -> bool:
    """The holder was a process of this host that no longer runs (killed before it could release).
    Another host's process cannot be seen from here: its lock is broken only by `provision unlock`."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    if holder["pid"] == os.getpid():
        return False
    try:
        os.kill(holder["pid"], 0)   # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except OSError:
        return False   # it exists (another user's): alive
    return False


def describe(holder: dict[str, Any]) -> str:
    """`alice@ci-7 (pid 4242, provision apply) since 2026-12-08T00:20:00Z (3 min ago)`."""
    since = holder.get("since", "?")
    try:
        age = datetime.now(timezone.utc) - datetime.fromisoformat(since.replace("Z", "+00:00"))
        mins = int(age.total_seconds() // 60)
        ago = f" ({mins} min ago)" if mins else " (under a minute ago)"
    except (ValueError, AttributeError):
        ago = ""
    return (f"{holder.get('user', '?')}@{holder.get('host', '?')} (pid {holder.get('pid', '?')}, "
            f"provision {holder.get('command', '?')}) since {since}{ago}")


@dataclass
class Found:
    """The lock object as stored: its holder and generation (None: there is no lock, or no bucket)."""

    holder: dict[str, Any] | None
    generation: int = 0


class ProjectLock:
    """The lock of one project for one run. `acquire` takes it (or marks it pending when the
    record bucket does not exist yet), `take_pending` is called by the record store once the
    bucket exists, `release` gives it back (safe to call whatever happened)."""

    def __init__(self, project_id: str, command: str = "apply", unlock_hint: str = ""):
        self.project_id = project_id
        self.bucket = bucket_for(project_id)
        self.holder = holder_here(command)
        self.unlock_hint = unlock_hint or f"provision unlock BLUEPRINT (the blueprint of {project_id})"
        self.generation = 0          # of the object this run created; 0: not held
        self.pending = False         # no record bucket yet: taken when the record store makes it
        self._wait_s: float = 0.0
        self._on_wait: Callable[[dict[str, Any]], None] | None = None
        self._on_note: Callable[[str], None] | None = None
        self._mutex = threading.Lock()

    @property
    def where(self) -> str:
        return f"gs://{self.bucket}/{OBJECT}"

    @property
    def held(self) -> bool:
        return self.generation > 0

    # ------------------------------------------------------------------ wire
    def _create(self, ctx: Ctx) -> int | None:
        """Create the lock object if there is none: its generation, None if another holds it.
        Raises a 404 error when the bucket does not exist."""
        blob = ctx.target.storage(self.project_id).bucket(self.bucket).blob(OBJECT)

        def put() -> int | None:
            try:
                blob.upload_from_string(json.dumps(self.holder, indent=2) + "\n", content_type="application/json",
                                        if_generation_match=0, retry=None)
            except Exception as exc:  # noqa: BLE001
                if is_status(exc, 412):
                    return None
                raise
            return int(blob.generation or 0)

        return ctx.call(put)

    def read(self, ctx: Ctx) -> Found:
        """The lock object now (its holder and generation), or Found(None) when there is none."""
        bucket = ctx.target.storage(self.project_id).bucket(self.bucket)

        def get() -> Found:
            blob = bucket.blob(OBJECT)
            try:
                data = blob.download_as_bytes(retry=None)
            except Exception as exc:  # noqa: BLE001
                if is_status(exc, 404):
                    return Found(None)
                raise
            try:
                holder = json.loads(data)
            except ValueError:
                holder = {"user": "?", "note": "unreadable lock object"}
            return Found(holder if isinstance(holder, dict) else {}, int(blob.generation or 0))

        return ctx.call(get)

    # ------------------------------------------------------------------ taking and giving back
    def acquire(self, ctx: Ctx, *, wait_s: float = 0.0, bucket_ours: bool = True,
                on_wait: Callable[[dict[str, Any]], None] | None = None,
                on_note: Callable[[str], None] | None = None) -> bool:
        """Take the lock, waiting up to `wait_s` for its holder to release it. Returns whether this
        run had to wait (the live state may have moved meanwhile). `bucket_ours` False: the record
        bucket is absent or not this project's (nothing is written there; the record refuses it).
        A lock whose holder was a process of this host that is gone (killed) is broken, with a note:
        a killed run is resumed by the next, as it always was. Raises LockHeld naming the holder."""
        self._wait_s, self._on_wait, self._on_note = wait_s, on_wait, on_note   # for take_pending
        if not bucket_ours:
            self.pending = True
            return False
        try:
            return self._take(ctx)
        except Exception as exc:  # noqa: BLE001
            if not is_status(exc, 404):
                raise
            self.pending = True   # no bucket yet: a new project
            return False

    def _take(self, ctx: Ctx) -> bool:
        """Create the lock object, waiting for another holder as `acquire` was told; whether it waited."""
        deadline, delay, waited, races = time.monotonic() + self._wait_s, POLL_FIRST_S, False, 0
        while True:
            generation = self._create(ctx)
            if generation is not None:
                self.generation = generation
                return waited
            found = self.read(ctx)
            if found.holder is None and races < 10:
                races += 1
                continue   # released between our create and our read: try again at once
            found.holder = found.holder or {"user": "?", "note": "a lock that comes and goes"}
            if dead_here(found.holder):
                self._break_stale(ctx, found)
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._held(found.holder, self._wait_s)
            waited = True
            if self._on_wait is not None:
                self._on_wait(found.holder)
            # Polling a remote object: nothing local to wait on, but Ctrl-C (ctx.cancel) ends the wait.
            if (ctx.cancel or threading.Event()).wait(min(delay, left)):
                raise Cancelled("interrupted while waiting for the lock")
            delay = min(delay * 2, POLL_MAX_S)

    def _break_stale(self, ctx: Ctx, found: Found) -> None:
        blob = ctx.target.storage(self.project_id).bucket(self.bucket).blob(OBJECT)

        def delete() -> None:
            try:
                blob.delete(if_generation_match=found.generation, retry=None)
            except Exception as exc:  # noqa: BLE001 - someone else broke or replaced it first
                if not is_status(exc, 404, 412):
                    raise

        ctx.call(delete)
        if self._on_note is not None:
            self._on_note(f"broke the lock of a run that is gone: {describe(found.holder or {})}")

    def take_pending(self, ctx: Ctx) -> None:
        """The record bucket exists now (this run made it, or found it): take the pending lock
        before the record's first write, waiting as `acquire` was told. Raises LockHeld when a
        concurrent run holds it (what that run made, this one then adopts, as resumed runs do)."""
        with self._mutex:
            if not self.pending:
                return
            self._take(ctx)
            self.pending = False

    def release(self, ctx: Ctx) -> None:
        """Delete the lock object this run created (that generation only); quiet when it is gone
        (destroy deleted the record bucket with it, or someone broke the lock)."""
        with self._mutex:
            self.pending = False
            if not self.held:
                return
            generation, self.generation = self.generation, 0
        blob = ctx.target.storage(self.project_id).bucket(self.bucket).blob(OBJECT)

        def delete() -> None:
            try:
                blob.delete(if_generation_match=generation, retry=None)
            except Exception as exc:  # noqa: BLE001 - gone (or its project deleted), or re-taken after a break
                if not is_status(exc, 403, 404, 412):
                    raise

        # Retried like any call, but not cancelled: after Ctrl-C (ctx.cancel set) the lock must still go.
        Ctx(ctx.target, "lock", policy=ctx.policy).call(delete)

    def _held(self, holder: dict[str, Any], wait_s: float) -> LockHeld:
        waited = f" (waited {wait_s:g}s)" if wait_s else ""
        return LockHeld(
            f"project {self.project_id} is locked by another run{waited}: {describe(holder)}; nothing was changed. "
            f"Wait for it (apply --wait-lock 10m waits up to 10 minutes), or, if that run is dead, break the lock "
            f"with `{self.unlock_hint}` ({self.where})", holder)


def break_lock(ctx: Ctx, project_id: str) -> dict[str, Any] | None:
    """Delete the project's lock whoever holds it: what it said, or None when there was none."""
    lock = ProjectLock(project_id)
    found = lock.read(ctx)
    if found.holder is None:
        return None
    blob = ctx.target.storage(project_id).bucket(lock.bucket).blob(OBJECT)

    def delete() -> None:
        try:
            blob.delete(if_generation_match=found.generation, retry=None)
        except Exception as exc:  # noqa: BLE001 - released (or re-taken) meanwhile: that one is not stale
            if not is_status(exc, 404, 412):
                raise

    ctx.call(delete)
    return found.holder


@contextlib.contextmanager
def holding(lock: ProjectLock, ctx: Ctx) -> Iterator[None]:
    """Release `lock` when the block ends: on success (a failed release then fails the run), and on
    any error or Ctrl-C (a failed release then never hides what ended the run)."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            lock.release(ctx)
        raise
    lock.release(ctx)
