"""Injected failures, reproducible with a seed: transient HTTP errors, connection resets, and
long-running operations that finish with an error, as Google's services sometimes do.

Spec: comma-separated `KIND=RATE`, KIND one of 429, 500, 503, reset, operation;
`transient=R` spreads R evenly over 429, 500, 503 and reset. Example: `transient=0.2,operation=0.1`.
"""
from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

KINDS = ("429", "500", "503", "reset", "operation")


@dataclass
class Faults:
    rates: dict[str, float] = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()

    def reseed(self) -> None:
        """Start the sequence of draws over (on /_emulator/reset): the same requests after a reset
        meet the same faults."""
        with self._lock:
            self._rng = random.Random(self.seed)

    @classmethod
    def parse(cls, spec: str | None, seed: int = 0) -> "Faults":
        """Parse a `--faults` spec; raises ValueError with the valid form."""
        rates: dict[str, float] = {}
        for part in filter(None, (spec or "").split(",")):
            kind, sep, value = part.strip().partition("=")
            try:
                rate = float(value)
            except ValueError:
                rate = -1.0
            if not sep or not 0.0 <= rate <= 1.0 or kind not in (*KINDS, "transient"):
                raise ValueError(f"bad --faults entry {part!r}: use KIND=RATE with KIND in "
                                 f"{', '.join((*KINDS, 'transient'))} and RATE between 0 and 1")
            if kind == "transient":
                for k in ("429", "500", "503", "reset"):
                    rates[k] = rates.get(k, 0.0) + rate / 4
            else:
                rates[kind] = rates.get(kind, 0.0) + rate
        return cls(rates, seed)

    def draw_request(self) -> str | None:
        """Which transient failure (if any) this request gets: '429', '500', '503' or 'reset'."""
        if not self.rates:
            return None
        with self._lock:
            roll = self._rng.random()
        edge = 0.0
        for kind in ("429", "500", "503", "reset"):
            edge += self.rates.get(kind, 0.0)
            if roll < edge:
                return kind
        return None

    def draw_operation(self) -> bool:
        """Whether a newly started long-running operation should finish with an error."""
        rate = self.rates.get("operation", 0.0)
        if not rate:
            return False
        with self._lock:
            return self._rng.random() < rate
