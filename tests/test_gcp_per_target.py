"""One object per target (provision.gcp.per_target): the quota governor and the shared reads of
a fleet's blueprints are one per command's target, never shared between commands."""
from __future__ import annotations

import gc
import threading
import weakref

from provision.gcp import quota, shared
from provision.gcp.per_target import per_target
from provision.gcp.target import Target


class _Key:
    """A target stand-in: hashable by identity, weakly referable."""


def test_one_object_per_target_however_many_ask_at_once():
    made = []
    barrier = threading.Barrier(8)

    def factory():
        made.append(object())
        return made[-1]

    registry = per_target(factory)
    a, b = _Key(), _Key()
    got: list[object] = []

    def ask():
        barrier.wait()
        got.append(registry(a))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1 and all(g is made[0] for g in got)
    assert registry(b) is not made[0] and len(made) == 2


def test_a_finished_targets_object_goes_with_it():
    registry = per_target(lambda: _Key())
    key = _Key()
    gone = threading.Event()

    weakref.finalize(registry(key), gone.set)
    del key
    gc.collect()
    assert gone.is_set()


def test_governor_and_shared_reads_are_per_target():
    # two commands against one emulator: two targets, each with its own
    one, other = Target(emulator="http://127.0.0.1:9"), Target(emulator="http://127.0.0.1:9")
    assert quota.governor_for(one) is quota.governor_for(one)
    assert quota.governor_for(one) is not quota.governor_for(other)
    assert shared.shared_reads(one) is shared.shared_reads(one)
    assert shared.shared_reads(one) is not shared.shared_reads(other)
