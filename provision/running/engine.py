"""Runs a plan: a dependency graph of steps on a thread pool, with events for a listener.

Each step starts when all its dependencies are done; independent steps run at the same time.
Events: `plan` (the steps, once), `start`, `progress`, `retry`, `note`, `done`, `failed`,
`skipped`, each with the step's elapsed time. A failed step skips its dependants (transitively);
independent steps still finish, then the run reports the first failure. `noop` steps finish at
once without any call.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from provision.errors import ProvisionError
from provision.gcp import quota
from provision.gcp.context import Ctx, Reporter
from provision.gcp.errors import to_provision_error
from provision.gcp.retry import Cancelled
from provision.redact import redact
from provision.resources.steps import Step

WORKERS = 8


@dataclass
class Event:
    kind: str                   # plan | start | progress | retry | note | done | failed | skipped
    step: str = ""
    message: str = ""
    elapsed: float = 0.0
    action: str = ""
    done: int | None = None
    total: int | None = None
    attempt: int | None = None
    delay: float | None = None
    steps: list[Step] | None = None
    project: str = ""

    def text(self) -> str:
        """One log line for this event."""
        if self.kind == "retry":
            delay = self.delay or 0.0
            nxt = f"{delay * 1000:.0f} ms" if delay < 1 else f"{delay:.1f} s"
            return f"retrying {self.step}: {self.message} (attempt {self.attempt}, next in {nxt})"
        if self.kind == "progress" and self.total:
            return f"{self.step}: {self.message} [{self.done}/{self.total}]"
        if self.kind in ("done", "failed"):
            return f"{self.step} {self.kind} in {self.elapsed:.1f}s" + (f": {self.message}" if self.message else "")
        return f"{self.step} {self.kind}" + (f": {self.message}" if self.message else "")


Listener = Callable[[Event], None]


def emit(listener: Listener | None, event: Event) -> None:
    """Hand `event` to `listener`, if any; a broken renderer must not break the run. Every event
    passes here, so its free text (which may quote a server) is redacted here."""
    if listener is None:
        return
    event.message = redact(event.message)
    try:
        listener(event)
    except Exception:  # noqa: BLE001
        pass


@dataclass
class StepResult:
    id: str
    action: str
    status: str = "pending"     # pending | running | done | failed | skipped
    elapsed: float = 0.0
    message: str = ""
    retries: int = 0
    error: ProvisionError | None = field(default=None, repr=False)
    limited_by: set[str] = field(default_factory=set)   # quotas that made the step wait ("Service Usage write quota")

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "action": self.action, "status": self.status, "elapsed_s": round(self.elapsed, 3),
                "message": self.message, "retries": self.retries, "limited_by": sorted(self.limited_by)}


@dataclass
class RunResult:
    results: list[StepResult]
    elapsed: float

    @property
    def failed(self) -> list[StepResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed and all(r.status == "done" for r in self.results)

    @property
    def retries(self) -> int:
        return sum(r.retries for r in self.results)

    def first_error(self) -> ProvisionError | None:
        for r in self.results:
            if r.error is not None:
                return r.error
        return None


class Engine:
    def __init__(self, ctx: Ctx, listener: Listener | None = None, workers: int = WORKERS, project: str = ""):
        self.ctx = ctx
        self.listener = listener
        self.workers = workers
        self.project = project
        self._lock = threading.Lock()

    def emit(self, event: Event) -> None:
        event.project = event.project or self.project
        with self._lock:
            emit(self.listener, event)

    # Long on purpose (issue 20): one scheduling loop over shared state (step states, futures, results).
    def run(self, steps: Iterable[Step]) -> RunResult:
        steps = list(steps)
        by_id = {s.id: s for s in steps}
        for s in steps:
            for d in s.deps:
                if d not in by_id:
                    raise ValueError(f"step {s.id} depends on unknown step {d}")
        results = {s.id: StepResult(s.id, s.action) for s in steps}
        self.emit(Event("plan", steps=steps))
        started = time.monotonic()
        state: dict[str, str] = {s.id: "pending" for s in steps}
        running: dict[Future[Any], str] = {}
        cancel = self.ctx.cancel or threading.Event()
        self.ctx.cancel = cancel

        def ready() -> list[Step]:
            return [s for s in steps if state[s.id] == "pending" and all(state[d] == "done" for d in s.deps)]

        def skip_dependants() -> None:
            changed = True
            while changed:
                changed = False
                for s in steps:
                    if state[s.id] == "pending" and any(state[d] in ("failed", "skipped") for d in s.deps):
                        state[s.id] = "skipped"
                        results[s.id].status = "skipped"
                        bad = next(d for d in s.deps if state[d] in ("failed", "skipped"))
                        results[s.id].message = f"skipped: {bad} did not finish"
                        self.emit(Event("skipped", s.id, results[s.id].message, action=s.action))
                        changed = True

        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="step")
        try:
            while True:
                progressed = True
                while progressed and not cancel.is_set():  # no-op steps finish at once and may unlock others
                    progressed = False
                    for s in ready():
                        if not s.changing or s.run is None:
                            state[s.id] = "done"
                            results[s.id].status = "done"
                            results[s.id].message = "no changes"
                            self.emit(Event("done", s.id, "no changes", 0.0, action=s.action))
                            progressed = True
                        else:
                            state[s.id] = "running"
                            results[s.id].status = "running"
                            running[pool.submit(self._run_step, s, results[s.id], cancel)] = s.id
                if not running:
                    break
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for fut in finished:
                    sid = running.pop(fut)
                    state[sid] = "done" if fut.result() else "failed"
                skip_dependants()
            why = "skipped: interrupted before it started" if cancel.is_set() else \
                "skipped: dependencies never finished"   # else a dependency cycle: never silently dropped
            for s in steps:
                if state[s.id] == "pending":
                    state[s.id] = results[s.id].status = "skipped"
                    results[s.id].message = why
                    if cancel.is_set():
                        self.emit(Event("skipped", s.id, why, action=s.action))
        except KeyboardInterrupt:
            cancel.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return RunResult([results[s.id] for s in steps], time.monotonic() - started)

    def _run_step(self, step: Step, result: StepResult, cancel: threading.Event) -> bool:
        t0 = time.monotonic()

        def elapsed() -> float:
            return time.monotonic() - t0

        def on_retry(attempt: int, delay: float, reason: str) -> None:
            result.retries += 1
            family = quota.limited_by(reason)
            if family:
                result.limited_by.add(family)
            self.emit(Event("retry", step.id, reason, elapsed(), step.action, attempt=attempt, delay=delay))

        def on_progress(message: str, done: int | None, total: int | None) -> None:
            self.emit(Event("progress", step.id, message, elapsed(), step.action, done=done, total=total))

        def on_note(message: str) -> None:
            self.emit(Event("note", step.id, message, elapsed(), step.action))

        ctx = self.ctx.for_step(step.id, Reporter(on_retry, on_progress, on_note))
        ctx.cancel = cancel
        self.emit(Event("start", step.id, ", ".join(step.changes[:3]), 0.0, step.action))
        try:
            message = step.run(ctx) if step.run else ""
        except Cancelled:
            result.status, result.elapsed = "failed", elapsed()
            result.error = ProvisionError(f"step {step.id!r} interrupted")
            result.message = "interrupted"
            self.emit(Event("failed", step.id, "interrupted", result.elapsed, step.action))
            return False
        except Exception as exc:  # noqa: BLE001 - every failure becomes one clear message
            err = to_provision_error(exc, step.id, step.resource, action=step.action,
                                     project=ctx.facts.project_id, target=ctx.target, attempts=True)
            result.status, result.elapsed, result.error = "failed", elapsed(), err
            result.message = str(err)
            self.emit(Event("failed", step.id, str(err), result.elapsed, step.action))
            return False
        result.status, result.elapsed = "done", elapsed()
        result.message = message or ""
        self.emit(Event("done", step.id, result.message, result.elapsed, step.action))
        return True
