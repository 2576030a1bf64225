"""One object per target, shared by every blueprint a command runs through it.

A fleet's blueprints share a target (the CLI builds one per command), and some things must be
one for all of them: the quota governor (provision.gcp.quota), the reads every blueprint would
make alike (provision.gcp.shared). Each is made on first use and kept as long as the target is
(weakly keyed: a finished command's target takes its objects with it, so commands never share).
"""
from __future__ import annotations

import threading
import weakref
from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")


class PerTarget(Generic[T]):
    """`registry(target)`: the one T of `target`, made by `factory()` the first time it is asked
    for (by one thread, however many ask at once)."""

    def __init__(self, factory: Callable[[], T]):
        self._factory = factory
        self._made: weakref.WeakKeyDictionary[Any, T] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def __call__(self, target: Any) -> T:
        with self._lock:
            found = self._made.get(target)
            if found is None:
                found = self._made[target] = self._factory()
            return found


def per_target(factory: Callable[[], T]) -> PerTarget[T]:
    """A registry of one `factory()` per target (see PerTarget)."""
    return PerTarget(factory)
