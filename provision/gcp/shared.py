"""Reads that every blueprint of a run would make alike, made once.

A fleet under one organization asks the same questions of it for every blueprint: the effective
organization policies on the parent of each new project, whether the caller may create projects
there, whether it may link the shared billing account. The answers are the same for all of them,
so the first blueprint to ask makes the request and every other one, asking meanwhile or later,
gets that answer (`SharedReads.get`: one request per question, however many ask at once).

An answer is kept `TTL_S` seconds (five minutes, not scaled by the target's time scale: it stands
for a person's edit, not for Google's latency), well inside the time Google itself takes to
enforce a change of either kind (organization policy changes take up to 15 minutes to take
effect, IAM grants and revocations typically 2 and up to 7 minutes), so a kept answer is never
staler than what Google would act on. Every CLI command builds its own target, so a command
never sees another's answers. An error is never kept: each asker meets (and retries) it itself.
Reads of a blueprint's own project are never shared.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Hashable, TypeVar, cast

from provision.gcp.per_target import per_target

T = TypeVar("T")
TTL_S = 300.0


class SharedReads:
    """Answers by question, each kept `ttl` seconds; concurrent askers of one question wait for
    the one request in flight."""

    def __init__(self, ttl: float = TTL_S, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._answers: dict[Hashable, tuple[float, Any]] = {}
        self._asking: dict[Hashable, threading.Event] = {}
        self.requests = 0     # questions actually sent (for tests and benchmarks)
        self.shared = 0       # answers handed out without a request

    def get(self, key: Hashable, fetch: Callable[[], T]) -> T:
        """The answer to `key`: kept, awaited from the request in flight, or fetched now."""
        while True:
            with self._lock:
                kept = self._answers.get(key)
                if kept is not None and self.clock() - kept[0] < self.ttl:
                    self.shared += 1
                    return cast(T, kept[1])
                pending = self._asking.get(key)
                if pending is None:
                    pending = self._asking[key] = threading.Event()
                    break
            pending.wait()   # the asker in flight answers (or fails: then this one asks itself)
        try:
            value = fetch()
            with self._lock:
                self.requests += 1
                self._answers[key] = (self.clock(), value)
            return value
        finally:
            with self._lock:
                self._asking.pop(key, None)
            pending.set()


# The one SharedReads of a target: every blueprint applied through it shares its answers.
shared_reads = per_target(SharedReads)
