"""What a resource function gets: the target, the retry policy, a deadline, and a way to report.

Resource modules never sleep or loop themselves: `ctx.call(fn)` retries under the step's
deadline and reports each retry with its reason; `ctx.wait_*` waits for an operation on the
quota-sparing schedule of provision/gcp/polls.py; `ctx.progress` and `ctx.note` feed the
engine's events. Every policy of one target shares its
quota governor (provision.gcp.quota), so blueprints applied side by side queue together at a
Google quota; a call waiting in that line reports it as progress.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Iterable, TypeVar

from provision.gcp import operations, polls, quota
from provision.gcp.errors import is_service_disabled
from provision.gcp.retry import Predicate, RetryPolicy, service_disabled_after_enable
from provision.gcp.target import Target

T = TypeVar("T")

# Step deadlines (seconds), per kind of work: generous on Google (Terraform uses 20 min for
# enables and project creation), the same figures on the emulator since it never needs them.
DEADLINES = {
    "default": 600.0,
    "project": 1200.0,
    "apis": 1200.0,
    "import": 3600.0,
    "read": 120.0,
}


@dataclass
class Reporter:
    """Callbacks the engine plugs in; all optional."""

    on_retry: Callable[[int, float, str], None] | None = None
    on_progress: Callable[[str, int | None, int | None], None] | None = None
    on_note: Callable[[str], None] | None = None


@dataclass
class Facts:
    """What a plan learns and apply's steps share, by name (a misspelt name fails at type-check
    time, not as a silent miss). None: not known (yet)."""

    project_id: str | None = None        # the blueprint's project: quota lines and messages name it
    project_number: str | None = None    # once the project exists (planned, or created by its step)
    agent: str | None = None             # the Healthcare service agent, as an IAM member
    agent_exists: bool | None = None     # plan: the project policy grants the agent its role
    # The ownership record (a provision.resources.record.RecordStore: typed Any because the record
    # is built on this module, which therefore cannot import it).
    record: Any = None
    claims: list[tuple[Any, ...]] | None = None    # apply: what the plan's changing steps create or grant
    enabled_at: float | None = None      # apply: when (time.monotonic()) this run's enable finished
    viewer_archive_generation: int | None = None   # the hosted viewer's uploaded source archive
    viewer_image: str | None = None      # the hosted viewer's image by digest, once built
    viewer_url: str | None = None        # the hosted viewer's URL (read back from Cloud Run)
    # apply: the project's lock (a provision.resources.lock.ProjectLock, typed Any for the same
    # reason as the record); the record store takes it when it makes the record's bucket.
    lock: Any = None

    def known_project_number(self) -> str:
        """The project's number, for apply's steps that run after the project exists (planned, or
        learnt by its step): an error, rather than a name made with "None", when it is not known."""
        if self.project_number is None:
            raise RuntimeError("the project's number is not known yet (the project step has not run)")
        return self.project_number

    def known_agent(self) -> str:
        """The Healthcare service agent's member, for apply's steps that run after the service-agent
        step has learnt it: an error, rather than a grant to no one, when it is not known."""
        if self.agent is None:
            raise RuntimeError("the Healthcare service agent is not known yet (the service-agent step has not run)")
        return self.agent

    def update(self, other: "Facts") -> None:
        """Take every fact `other` knows (a plan's, for the apply that runs it)."""
        for f in fields(self):
            value = getattr(other, f.name)
            if value is not None:
                setattr(self, f.name, value)


@dataclass
class Ctx:
    target: Target
    step: str = "read"
    policy: RetryPolicy | None = None
    reporter: Reporter = field(default_factory=Reporter)
    deadline_s: float | None = None
    cancel: threading.Event | None = None
    services: tuple[str, ...] = ()      # services this run enables (SERVICE_DISABLED for them is retried)
    facts: Facts = field(default_factory=Facts)  # shared between steps (project number, agent, record)
    started: float = field(default_factory=time.monotonic)
    locks: dict[str, threading.Lock] = field(default_factory=dict)  # per-resource locks shared by every step of one run

    def __post_init__(self) -> None:
        if self.policy is None:
            base = RetryPolicy(first=self.target.first_backoff, cap=self.target.max_backoff,
                               unreachable_s=self.target.unreachable_s, governor=quota.governor_for(self.target))
            if self.services:
                base.not_before = self._propagated
                base = base.with_predicates(service_disabled_after_enable(self.services))
            self.policy = base
        if self.deadline_s is None:
            self.deadline_s = DEADLINES.get(self.step.split(":")[0], DEADLINES["default"])

    def _propagated(self, exc: BaseException) -> float | None:
        """When this run's enable has typically propagated (for a SERVICE_DISABLED `exc`), else None."""
        enabled = self.facts.enabled_at
        if enabled is None or not is_service_disabled(exc):
            return None
        return enabled + polls.TYPICAL["serviceusage.propagation"] * self.target.timing.scale

    @property
    def deadline(self) -> float:
        return self.started + float(self.deadline_s or 600.0)

    def for_step(self, step: str, reporter: Reporter | None = None, deadline_s: float | None = None) -> "Ctx":
        """A context for one step, sharing facts, policy and cancellation."""
        return Ctx(self.target, step, self.policy, reporter or Reporter(), deadline_s, self.cancel,
                   self.services, self.facts, locks=self.locks)

    def resource_lock(self, name: str) -> threading.Lock:
        """One lock per resource for read-modify-writes that have no etag (a store's labels), so
        steps running side by side in this run never overwrite each other's change."""
        return self.locks.setdefault(name, threading.Lock())  # dict.setdefault is atomic

    # -------------------------------------------------------------- calling
    def call(self, fn: Callable[[], T], *, within: float | None = None, also: tuple[Predicate, ...] = (),
             site: object = None, quota: str | None = None, priority: float = 0.0) -> T:
        """Run `fn`, retrying what the policy says is retryable (plus the `also` predicates, for
        this call only), until the step's deadline (or `within` seconds from now, if sooner).
        `quota`: the quota metric `fn` charges, when known (e.g. quota.CRM_WRITES); `priority`: its
        place in that quota's line (quota.CHAIN_HEAD: before the others)."""
        deadline = self.deadline if within is None else min(self.deadline, time.monotonic() + within)
        assert self.policy is not None   # set by __post_init__
        policy = self.policy.with_predicates(*also) if also else self.policy
        return policy.run(fn, deadline=deadline, on_retry=self.reporter.on_retry, cancel=self.cancel,
                          on_wait=self.progress if self.reporter.on_progress else None,
                          project=self.facts.project_id, number=self.facts.project_number, site=site,
                          quota=quota, priority=priority)

    def execute(self, request: Any, **kw: Any) -> Any:
        """`ctx.call(request.execute)` for a googleapiclient request (num_retries=0: we retry)."""
        # The API method names the call for the quota governor (every execute shares this lambda).
        kw.setdefault("site", getattr(request, "methodId", None) or (getattr(request, "method", ""),
                                                                      str(getattr(request, "uri", "")).split("?")[0]))
        return self.call(lambda: request.execute(num_retries=0), **kw)

    # -------------------------------------------------------------- waiting
    def _wait_kw(self, api: str, on_poll: Callable[..., Any] | None = None) -> dict[str, Any]:
        # The call that started the operation was answered: its quota slot goes back before the
        # (long) wait, so the next caller in line need not wait for this operation too.
        quota.release_held()
        # Polls of one API share a call site for the governor: a 429 on any operation's poll
        # puts the polls of every blueprint in that quota's line.
        assert self.policy is not None   # set in __post_init__
        poller = polls.Poller(self.policy.governor, f"poll:{api}", self.facts.project_id, self.facts.project_number,
                              hot_for=self.target.max_backoff)
        return dict(deadline=self.deadline, policy=self.policy, on_poll=on_poll,
                    on_retry=self.reporter.on_retry, cancel=self.cancel, poller=poller)

    def wait_serviceusage(self, op: dict[str, Any], version: str = "v1", kind: str | None = None) -> dict[str, Any]:
        """Wait for a Service Usage operation of `kind` (a polls.TYPICAL key, e.g. serviceusage.enable)."""
        done = operations.serviceusage(self.target, op, version=version, kind=kind, **self._wait_kw("serviceusage"))
        if kind == "serviceusage.enable":
            self.facts.enabled_at = time.monotonic()   # its APIs propagate from now on
        return done

    def wait_healthcare(self, op: dict[str, Any], on_poll: Callable[[dict[str, Any]], None] | None = None, kind: str | None = None) -> dict[str, Any]:
        """Wait for a Healthcare dataset-level operation of `kind` (None: the eager schedule)."""
        return operations.healthcare(self.target, op, kind=kind, **self._wait_kw("healthcare", on_poll))

    def wait_operation(self, op: dict[str, Any], fetch: Callable[[str], dict[str, Any]],
                       on_poll: Callable[[dict[str, Any]], None] | None = None, api: str = "run",
                       kind: str | None = None) -> dict[str, Any]:
        """Wait for a google.longrunning.Operation (Cloud Run, Cloud Build, Artifact Registry) of
        `kind` (a polls.TYPICAL key; None: the eager schedule), read again by name through
        `fetch(name)`; `api` names the quota family its polls share."""
        name = op["name"]
        return operations.wait(lambda: fetch(name), op, name=name, schedule=polls.Schedule.of(kind, self.target),
                               **operations.gone_window(self.target), **self._wait_kw(api, on_poll))

    def wait_crm(self, operation: Any, kind: str | None = None) -> Any:
        """Wait for a Resource Manager operation of `kind` (e.g. crm.projects.create)."""
        return operations.crm(self.target, operation, kind=kind, **self._wait_kw("crm"))

    # -------------------------------------------------------------- reporting
    def progress(self, message: str, done: int | None = None, total: int | None = None) -> None:
        if self.reporter.on_progress:
            self.reporter.on_progress(message, done, total)

    def note(self, message: str) -> None:
        if self.reporter.on_note:
            self.reporter.on_note(message)

    def parallel(self, fns: Iterable[Callable[[], T]], workers: int = 8) -> list[T]:
        """Run independent calls in parallel (reads); the first error is raised after all finish."""
        fns = list(fns)
        if len(fns) <= 1:
            return [fn() for fn in fns]
        with ThreadPoolExecutor(max_workers=min(workers, len(fns)), thread_name_prefix="read") as pool:
            futures = [pool.submit(fn) for fn in fns]
            return [f.result() for f in futures]
