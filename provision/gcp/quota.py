"""Calls at a Google quota: one adaptive limiter per quota family, shared by every blueprint that
uses the same target, instead of every caller retrying on its own.

A 429 RESOURCE_EXHAUSTED names its quota in an ErrorInfo (`service`, `quota_metric`, `consumer`,
`quota_location`); that is the quota family. From then on:

- the call site that met it (the function `ctx.call` runs, by its code: the same line in every
  blueprint) is bound to the family, so the same call in other blueprints queues for the family
  before its first attempt instead of finding the quota empty;
- a call of the family runs only while it holds one of the family's slots, granted first come,
  first served. A call that meets the quota keeps its slot while it waits to try again, so at
  most `limit` calls probe an exhausted quota, and when one gets through its slot passes at once
  to the next caller in line, which takes whatever the quota has refilled meanwhile;
- `limit` follows additive increase / multiplicative decrease (as TCP's congestion window):
  halved when a call meets the quota (once per round: a call sent before the last decrease
  does not decrease it again), +1/limit for each call that gets through, between 1 and `ceiling`;
- the wait before trying again is the server's `RetryInfo.retryDelay` when it sends one
  (honoured: never shorter, up to a tenth longer to spread callers), else the family's observed
  spacing between admitted calls times the number of callers probing, so that together they
  probe about as often as the quota admits, never more than the policy's own ceiling;
- a slot is given back as soon as its call is answered: when the call goes on to wait for a
  long-running operation (`ctx.wait_*` calls `release_held`), or ends.

Which project the family charges is read from the ErrorInfo: when `consumer` is the blueprint's
own project, the quota is per project (Cloud Healthcare, per region too) and every project has
its own family; otherwise (Resource Manager, Service Usage: the caller's quota project) the
whole fleet shares one family.

Polls of long-running operations are calls too (provision/gcp/polls.py): a 429 on a poll binds
the API's poll site to its family, later polls wait in the family's line, and while the family
refuses calls each operation polls no faster than `poll_spacing` (the family's admission pace
times the operations polling it).

`Governor.snapshot()` shows each family (limit, holders, queue, throttles, pollers, and what the
line decided: calls sent in line, 429s met by calls sent out of line, i.e. a call site's first
calls before it learned the quota); `Governor.blind_retries` counts calls sent again outside
the line after meeting a quota (none, by design). The reason of every retry names the family:
"limited by Service Usage write quota".
"""
from __future__ import annotations

import itertools
import random
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from provision.gcp.per_target import per_target

# Names people know the services by, for the retry reasons.
SERVICE_NAMES = {
    "cloudresourcemanager.googleapis.com": "Resource Manager",
    "serviceusage.googleapis.com": "Service Usage",
    "healthcare.googleapis.com": "Cloud Healthcare",
    "storage.googleapis.com": "Cloud Storage",
    "cloudbilling.googleapis.com": "Cloud Billing",
    "iam.googleapis.com": "IAM",
    "logging.googleapis.com": "Cloud Logging",
    "orgpolicy.googleapis.com": "Org Policy",
    "cloudkms.googleapis.com": "Cloud KMS",
}
# Quota metrics the provisioner's own writes are documented to charge (Google's quota pages;
# the 429s name them so): calls say which, so they queue behind a family another call learnt.
CRM_WRITES = "cloudresourcemanager.googleapis.com/write_requests"
SU_WRITES = "serviceusage.googleapis.com/mutate_requests"
# A call most of its blueprint waits for (CreateProject, an enable) goes before the line's other
# calls (a service agent, a grant: short tails), so the fleet's long chains start first.
CHAIN_HEAD = 1.0
QUOTA_REASONS = ("RATE_LIMIT_EXCEEDED", "RESOURCE_EXHAUSTED", "rateLimitExceeded", "userRateLimitExceeded")


_LIMITED_BY = re.compile(r"^(?:polling \S+: )?limited by (.+? quota)\b")


def limited_by(reason: str) -> str | None:
    """The quota a retry reason names ("Service Usage write quota"), or None: for a listener that
    sums up what limited a step (e.g. a StepResult's --json)."""
    m = _LIMITED_BY.match(reason or "")
    return m.group(1) if m else None


class QuotaWaitTimeout(Exception):
    """The deadline passed while a call waited in line for its quota."""


def family_label(service: str, metric: str) -> str:
    """"Service Usage write quota" for serviceusage.googleapis.com/mutate_requests."""
    svc = SERVICE_NAMES.get(service) or service.split(".", 1)[0] or "API"
    name = metric.rsplit("/", 1)[-1].lower()
    kind = ("write" if any(k in name for k in ("mutate", "write", "create", "update", "delete")) else
            "search" if "search" in name else "list" if "list" in name else
            "DICOMweb" if "dicomweb" in name else "read" if "read" in name else
            "request" if name in ("requests", "default_requests") else name.replace("_", " "))
    return f"{svc} {kind} quota"


@dataclass(frozen=True)
class FamilyKey:
    service: str
    metric: str
    consumer: str     # "client" scope: the consumer in the 429; "project" scope: the blueprint's project
    location: str = "global"

    @property
    def label(self) -> str:
        return family_label(self.service, self.metric)


@dataclass(frozen=True)
class Binding:
    """What a call site learned from a 429: which quota it charges, and whose."""

    service: str
    metric: str
    per_project: bool
    consumer: str = ""
    location: str = "global"

    def key(self, project: str | None) -> FamilyKey:
        if self.per_project and project:
            return FamilyKey(self.service, self.metric, f"projects/{project}", self.location)
        return FamilyKey(self.service, self.metric, self.consumer, self.location)


def quota_of(ge: Any) -> tuple[str, str, str, str] | None:
    """(service, quota_metric, consumer, location) of a 429 that names its quota, else None."""
    if ge is None or getattr(ge, "network", False) or ge.http_status != 429:
        return None
    md = ge.metadata or {}
    metric = md.get("quota_metric") or md.get("quotaMetric")
    if not metric:
        return None
    service = md.get("service") or metric.split("/", 1)[0]
    return service, metric, md.get("consumer", ""), md.get("quota_location") or "global"


class AIMDLimiter:
    """Slots for one quota family: FIFO grants, AIMD on their number (module docstring)."""

    def __init__(self, label: str = "quota", *, ceiling: float = 64.0, floor: float = 1.0, decrease: float = 0.5,
                 clock: Callable[[], float] = time.monotonic):
        self.label = label
        self.ceiling = ceiling
        self.floor = floor
        self.decrease_factor = decrease
        self.limit = ceiling
        self.clock = clock
        self.holders = 0
        self.probing = 0            # holders waiting to try again after meeting the quota
        self.pollers = 0            # operations whose polls are calls of this family (polls.Poller)
        # What the line decided, for tests and --json: calls sent holding a slot, and 429s met by
        # calls sent without one (a call site's first call, before any 429 bound it to the family).
        self.sent_in_line = 0
        self.refused_out_of_line = 0
        self.epoch = 0              # bumped by every decrease
        self._last_decrease = float("-inf")   # when (self.clock) the limit last went down
        self.throttles = 0
        self.admitted = 0
        self.interval: float | None = None   # EWMA of the time between admitted calls under throttling
        self._last_admit: float | None = None
        self._hot_until = 0.0       # throttled recently: admissions measure the quota's pace
        self._cond = threading.Condition()
        self._queue: deque[Any] = deque()      # tickets (-priority, arrival): the smallest goes next
        self._tickets = itertools.count()

    # ------------------------------------------------------------------ slots
    def acquire(self, *, deadline: float | None = None, cancel: threading.Event | None = None,
                on_wait: Callable[[int], None] | None = None, priority: float = 0.0) -> int:
        """Wait for a slot (first come, first served among calls of the same `priority`; a higher
        one goes first); returns the epoch it was granted in.
        Raises QuotaWaitTimeout past `deadline` (time.monotonic()); returns -1 when `cancel` is set."""
        ticket = (-priority, next(self._tickets))
        with self._cond:
            self._queue.append(ticket)
            told = False
            try:
                while min(self._queue) != ticket or self.holders >= max(self.floor, int(self.limit)):
                    if cancel is not None and cancel.is_set():
                        return -1
                    now = time.monotonic()
                    if deadline is not None and now >= deadline:
                        raise QuotaWaitTimeout(f"waited in line for the {self.label} until the step's deadline")
                    if on_wait is not None and not told:
                        told = True
                        ahead = sum(1 for t in self._queue if t < ticket) + self.holders
                        self._cond.release()    # never call out while holding the lock
                        try:
                            on_wait(ahead)
                        finally:
                            self._cond.acquire()
                        continue
                    # Releases and grants notify; the timeout only bounds how late a cancel or the
                    # deadline is noticed.
                    slice_ = 0.2 if cancel is not None else 1.0
                    self._cond.wait(slice_ if deadline is None else max(0.0, min(slice_, deadline - now)))
                self.holders += 1
                return self.epoch
            finally:
                self._queue.remove(ticket)
                self._cond.notify_all()

    def release(self) -> None:
        with self._cond:
            self.holders = max(0, self.holders - 1)
            self._cond.notify_all()

    # ------------------------------------------------------------------ signals
    def on_success(self) -> None:
        """A call of the family got through: additive increase, and the pace of admissions."""
        with self._cond:
            self.admitted += 1
            self.limit = min(self.ceiling, self.limit + 1.0 / max(self.limit, 1.0))
            now = self.clock()
            if self._last_admit is not None and now < self._hot_until:
                gap = now - self._last_admit
                self.interval = gap if self.interval is None else 0.75 * self.interval + 0.25 * gap
            self._last_admit = now
            self._cond.notify_all()

    def on_throttle(self, sent_at: float | None = None, hot_for: float = 0.0) -> bool:
        """A call sent at `sent_at` (self.clock; None: now) met the quota: multiplicative decrease,
        once per round: a call sent before the last decrease saw the old limit's traffic and does
        not decrease it again. Returns whether the limit went down."""
        with self._cond:
            self.throttles += 1
            now = self.clock()
            self._hot_until = max(self._hot_until, now + hot_for)
            if (now if sent_at is None else sent_at) < self._last_decrease:
                return False
            self.limit = max(self.floor, self.limit * self.decrease_factor)
            self.epoch += 1
            self._last_decrease = now
            return True

    def probe_started(self) -> None:
        with self._cond:
            self.probing += 1

    def probe_ended(self) -> None:
        with self._cond:
            self.probing = max(0, self.probing - 1)

    def note_sent(self, in_line: bool) -> None:
        """Count a call sent holding a slot (`in_line`), or a 429 met by one sent without."""
        with self._cond:
            if in_line:
                self.sent_in_line += 1
            else:
                self.refused_out_of_line += 1

    def poll_started(self) -> None:
        with self._cond:
            self.pollers += 1

    def poll_ended(self) -> None:
        with self._cond:
            self.pollers = max(0, self.pollers - 1)

    def poll_spacing(self) -> float | None:
        """The least interval between one operation's polls while this quota refuses calls: the pace
        at which it admits them times the operations polling it, so that together they ask no faster
        than it admits (None: not refusing lately, or its pace not known yet)."""
        with self._cond:
            if self.interval is None or self.clock() >= self._hot_until:
                return None
            return self.interval * max(1, self.pollers)

    def pace(self) -> float | None:
        """How long a caller that met the quota should wait, from the observed pace (None: unknown yet)."""
        with self._cond:
            if self.interval is None:
                return None
            return self.interval * max(1, self.probing)

    def snapshot(self) -> dict[str, Any]:
        with self._cond:
            return {"label": self.label, "limit": round(self.limit, 2), "holders": self.holders,
                    "waiting": len(self._queue), "throttles": self.throttles, "admitted": self.admitted,
                    "pollers": self.pollers, "sent_in_line": self.sent_in_line,
                    "refused_out_of_line": self.refused_out_of_line,
                    "interval_s": None if self.interval is None else round(self.interval, 4)}


@dataclass
class Governor:
    """Every quota family met through one target, and what each call site learned."""

    ceiling: float = 64.0
    families: dict[FamilyKey, AIMDLimiter] = field(default_factory=dict)
    bindings: dict[Any, Binding] = field(default_factory=dict)
    by_metric: dict[str, Binding] = field(default_factory=dict)   # the last binding learnt for each metric
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # Calls sent again without a slot after they met a quota: retrying blindly (never, by design).
    blind_retries: int = 0

    def note_blind_retry(self) -> None:
        with self._lock:
            self.blind_retries += 1

    def limiter(self, key: FamilyKey) -> AIMDLimiter:
        with self._lock:
            lim = self.families.get(key)
            if lim is None:
                lim = self.families[key] = AIMDLimiter(key.label, ceiling=self.ceiling)
            return lim

    def learn(self, site: Any, ge: Any, project: str | None, number: str | None) -> tuple[FamilyKey, AIMDLimiter] | None:
        """Bind `site` to the quota a 429 names; the family's key and limiter (None: no quota named)."""
        found = quota_of(ge)
        if found is None:
            return None
        service, metric, consumer, location = found
        own = {f"projects/{p}" for p in (project, number) if p}
        binding = Binding(service, metric, per_project=consumer in own, consumer=consumer, location=location)
        with self._lock:
            if site is not None:
                self.bindings[site] = binding
            self.by_metric[metric] = binding
        key = binding.key(project)
        return key, self.limiter(key)

    def bound(self, site: Any, project: str | None, metric: str | None = None) -> tuple[FamilyKey, AIMDLimiter] | None:
        """The family `site` learnt; else, for a call that says which quota metric it charges (a
        Resource Manager write), the family another call site learnt for that metric: a call that
        never met the quota itself still queues behind the ones that did, instead of taking the
        tokens they wait for (a CreateProject needs the whole bucket; cheap writes sent around the
        line would starve it)."""
        binding = self.bindings.get(site) if site is not None else None
        if binding is None and metric:
            binding = self.by_metric.get(metric)
        if binding is None:
            return None
        key = binding.key(project)
        return key, self.limiter(key)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            items = list(self.families.items())
        return [{"service": k.service, "metric": k.metric, "consumer": k.consumer, "location": k.location,
                 **lim.snapshot()} for k, lim in items]


# The one Governor of a target: every blueprint applied through it shares its quotas.
governor_for = per_target(Governor)


# ---------------------------------------------------------------------------- held slots
_held = threading.local()


def hold(limiter: AIMDLimiter) -> list[Any]:
    """Note that this thread holds a slot of `limiter` (for `release_held`); returns the entry."""
    entry = [limiter, True]
    stack = _held.__dict__.setdefault("stack", [])
    stack.append(entry)
    return entry


def holding(limiter: AIMDLimiter) -> bool:
    """Whether this thread already holds a live slot of `limiter` (a call made from inside another
    call of the same quota: it must not wait for a second slot, which could be its own)."""
    return any(e[0] is limiter and e[1] for e in _held.__dict__.get("stack", []))


def give_back(entry: list[Any], success: bool | None = None) -> None:
    """Release a held slot once (a success also feeds the limiter's pace)."""
    stack = _held.__dict__.setdefault("stack", [])
    if entry in stack:
        stack.remove(entry)
    if entry[1]:
        entry[1] = False
        if success:
            entry[0].on_success()
        entry[0].release()


def release_held() -> None:
    """The calls this thread is making were answered (they now wait for an operation): give their
    slots back, each counted as a success."""
    for entry in list(_held.__dict__.get("stack", [])):
        if entry[1]:
            entry[1] = False
            entry[0].on_success()
            entry[0].release()


def retry_jitter(rng: random.Random, delay: float) -> float:
    """A server's retry delay, honoured: never less, at most a tenth more."""
    return delay * rng.uniform(1.0, 1.1)
