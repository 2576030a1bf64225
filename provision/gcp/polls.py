"""When to look at a long-running operation again: as seldom as a shared quota deserves, as soon
as the operation is likely done.

Every poll is a read charged to a quota that a whole fleet shares (Service Usage reads: 240 a
minute for every blueprint one identity applies), so polling a 20-second enable every second
spends 20 reads where one does. The schedule:

- The first poll comes when an operation of its kind is usually done on Google (`TYPICAL`,
  multiplied by the target's time scale), never sooner than the target's first poll interval.
  The figures are read from the same public material as the emulator's latency table
  (provision/emulator/latency.py; the provisioner never imports the emulator): typical, not
  worst, durations. An operation done sooner is noticed at its kind's typical time: at most that
  late, and only when it beat the median.
- Past that time the operation is late: polls come at a tenth of the time waited so far (a
  finished one is noticed at most about 10 % late), between the first interval and the cap.
- At a quota the governor has seen refuse calls (provision/gcp/quota.py: the poll's family, learnt
  from a 429 on a poll), every interval is at least the family's observed spacing between admitted
  calls times the callers polling it, so that together the pollers ask no faster than the quota
  admits, instead of taking reads that other calls queue for; each poll also waits in the family's
  line like any other call of the family.
- A kind not in the table (an import, whose progress counters a user watches; a label update)
  keeps the eager schedule: first poll after the first interval, then 5 % of the time waited.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from provision.gcp import quota
from provision.gcp.errors import parse
from provision.gcp.retry import Cancelled

T = TypeVar("T")

# Seconds an operation of each kind usually takes on Google (the emulator's latency table plays the
# same figures, from the same sources: gcloud's progress output, Terraform's timeouts, Google's docs).
TYPICAL: dict[str, float] = {
    "crm.projects.create": 12.0,                      # CreateProjectMetadata ready after ~5-20 s
    "crm.projects.delete": 2.0,
    "serviceusage.enable": 20.0,                      # enable / batchEnable: 10-40 s
    # After an enable is done, its APIs still answer SERVICE_DISABLED for a while (the emulator's
    # propagation window): a call that meets that is retried from then on, not every few hundredths.
    "serviceusage.propagation": 30.0,
    "serviceusage.generateServiceIdentity": 2.0,
    "healthcare.datasets.create": 5.0,
    "healthcare.delete": 3.0,
    "artifactregistry.repositories.create": 1.0,
    "cloudbuild.build": 60.0,                         # builds:submit of the hosted viewer (buildpacks): about a minute
    "run.services.deploy": 15.0,                      # a revision deployed and serving
}
EAGER_FRACTION = 0.05   # kinds without a typical duration: polls at 5 % of the time waited
LATE_FRACTION = 0.10    # past the typical duration: polls at 10 % of the time waited


@dataclass(frozen=True)
class Schedule:
    """Poll intervals for one operation: `expected` seconds (0: unknown), `floor` and `cap` from
    the target's timing profile."""

    expected: float
    floor: float
    cap: float

    @classmethod
    def of(cls, kind: str | None, target: object) -> "Schedule":
        """The schedule for an operation `kind` (a TYPICAL key, or None) on `target`."""
        timing = getattr(target, "timing", None)
        scale = getattr(timing, "scale", 1.0) if timing is not None else 1.0
        expected = TYPICAL.get(kind or "", 0.0) * scale
        return cls(expected, getattr(target, "first_poll", 1.0), getattr(target, "max_poll", 15.0))

    def next(self, waited: float, spacing: float | None = None) -> float:
        """Seconds to the next poll after `waited` seconds of waiting; `spacing`: the least interval
        the poll's quota family allows this poller (None: no quota seen)."""
        if waited < self.expected:
            interval = max(self.floor, self.expected - waited)
        else:
            fraction = LATE_FRACTION if self.expected else EAGER_FRACTION
            interval = min(self.cap, max(self.floor, fraction * waited))
        return max(interval, spacing or 0.0)


class Poller:
    """One operation's polls as calls of their quota family: once a 429 on a poll has named the
    family (the governor binds the poll `site` to it, as it binds any call site), each poll waits
    for one of the family's slots, a refusal lowers the family's limit, and while the wait lasts
    this operation counts among the family's pollers (its `spacing` stretches with their number).
    Without a governor, polls are plain calls."""

    def __init__(self, governor: "quota.Governor | None", site: str, project: str | None = None,
                 number: str | None = None, hot_for: float = 30.0):
        self.governor = governor
        self.site = site
        self.project = project
        self.number = number
        self.hot_for = hot_for
        self.limiter: quota.AIMDLimiter | None = None

    def _track(self, limiter: "quota.AIMDLimiter") -> None:
        if limiter is not self.limiter:
            self.close()
            self.limiter = limiter
            limiter.poll_started()

    def fetch(self, fn: Callable[[], T], *, deadline: float | None = None, cancel: Any = None) -> T:
        """One poll, `fn()`, in its family's line when the family is known."""
        gov = self.governor
        family = gov.bound(self.site, self.project) if gov is not None else None
        entry = None
        if family is not None:
            self._track(family[1])
            if not quota.holding(family[1]):
                if family[1].acquire(deadline=deadline, cancel=cancel) < 0:
                    raise Cancelled()
                entry = quota.hold(family[1])
            family[1].note_sent(True)
        sent_at = time.monotonic()
        try:
            out = fn()
        except Exception as exc:
            learned = gov.learn(self.site, parse(exc), self.project, self.number) if gov is not None else None
            if learned is not None:
                if family is None or family[0] != learned[0]:
                    learned[1].note_sent(False)    # refused out of the family's line
                self._track(learned[1])
                learned[1].on_throttle(sent_at, hot_for=self.hot_for)
            if entry is not None:
                quota.give_back(entry)
            raise
        if entry is not None:
            quota.give_back(entry, success=True)
        return out

    def spacing(self) -> float | None:
        """The least interval between this operation's polls that its family allows (None: no quota seen)."""
        return self.limiter.poll_spacing() if self.limiter is not None else None

    def close(self) -> None:
        """The wait is over: no longer one of the family's pollers."""
        if self.limiter is not None:
            self.limiter.poll_ended()
            self.limiter = None
