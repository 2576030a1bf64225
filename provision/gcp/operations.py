"""Waiting for long-running operations of each style Google uses.

- Resource Manager v3 (`operations/cp.*`): the api_core Operation that `create_project` /
  `update_project` / `delete_project` return; refreshed through its own `GET v3/operations/…`.
- Service Usage (`operations/acf.*`): `GET v1/operations/…`; an operation that comes back done
  (`operations/noop.DONE_OPERATION` for an already-enabled service) is never polled.
- Service Usage v1beta1 `generateServiceIdentity`: same operations endpoint, v1beta1.
- Healthcare: dataset-level operations `projects/P/locations/L/datasets/D/operations/ID`.

Polls come on the schedule of provision/gcp/polls.py: the first when an operation of its kind
is usually done on Google (scaled with the target's timing profile), then at growing intervals,
never faster than the poll's quota admits once a 429 has named it (each poll is then a call of that
quota family, in its line), until a deadline. A finished operation with `error` raises
`OperationFailed` carrying Google's message and the operation's metadata (import counters, logs
link). A 404 on the operation itself counts as "not visible yet", as Terraform treats it, but only
for a window (`gone_s`, from the target's timing profile): each 404 in a row is reported as a
retry, and past the window the operation is taken as gone (`OperationGone`: an emulator restarted
without --data-dir forgets its operations) instead of being polled until the deadline. Transient
errors while polling are retried by the same policy as everything else; a RetryInfo in one (a
quota's 429) delays the next poll by at least its `retryDelay`.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

from provision.errors import ProvisionError
from provision.gcp.errors import OperationFailed, OperationTimeout, is_not_found, parse
from provision.gcp.polls import Poller, Schedule
from provision.gcp.quota import retry_jitter
from provision.gcp.retry import Cancelled, OnRetry, RetryPolicy, retry_info_delay

OnPoll = Callable[[dict[str, Any]], None]


class OperationGone(ProvisionError):
    """The service answers 404 for an operation it started, for longer than the window."""

    def __init__(self, name: str, seconds: float, emulator: bool):
        self.name = name
        self.seconds = seconds
        why = ("was the emulator restarted without --data-dir?" if emulator
               else "the service no longer knows it; run `provision apply` again to resume")
        super().__init__(f"operation {name} disappeared (404 for {seconds:.0f} s): {why}")


def gone_window(target: Any) -> dict[str, Any]:
    """The `wait` keywords for a target's 404 window (its timing profile); `emulator` only words the message."""
    return {"gone_after": target.timing.gone_s, "emulator": bool(getattr(target, "emulator", None))}


# Long on purpose (issue 20): one polling loop whose state (pause, 404 window, retries) each poll reads and updates.
def wait(fetch: Callable[[], dict[str, Any]], first: dict[str, Any] | None, *, name: str, deadline: float, interval: float = 1.0,
         max_interval: float = 15.0, schedule: Schedule | None = None, policy: RetryPolicy | None = None,
         on_poll: OnPoll | None = None, on_retry: OnRetry | None = None, cancel: threading.Event | None = None,
         gone_after: float | None = None, emulator: bool = False, poller: Poller | None = None) -> dict[str, Any]:
    """Poll `fetch()` until the operation is done; return it (raise OperationFailed on `error`).

    `schedule` says when to poll (default: the eager one, from `interval` and `max_interval`);
    `poller` makes each poll a call of its quota family (provision/gcp/polls.py). 404s in a row
    are reported through `on_retry`; after `gone_after` seconds of them (None: until the
    deadline) the operation is taken as gone (OperationGone)."""
    schedule = schedule or Schedule(0.0, interval, max_interval)
    op, retries, missing_since = first, 0, None
    started = time.monotonic()
    pause = schedule.next(0.0, poller.spacing() if poller else None)
    asked = 0.0      # a RetryInfo's delay for the next poll (a quota's answer), else 0
    try:
        while True:
            if op is not None:
                if on_poll:
                    on_poll(op)
                if op.get("done"):
                    if op.get("error"):
                        raise OperationFailed(op.get("name", name), op["error"], op.get("metadata"))
                    return op
            now = time.monotonic()
            if now >= deadline:
                raise OperationTimeout(name, now - started)
            pause = min(max(pause, asked), max(0.0, deadline - now))
            asked = 0.0
            if cancel is not None:
                if cancel.wait(pause):
                    raise Cancelled()
            else:
                time.sleep(pause)
            try:
                op = poller.fetch(fetch, deadline=deadline, cancel=cancel) if poller else fetch()
                missing_since = None
            except Exception as exc:  # noqa: BLE001
                op = None
                if is_not_found(exc):
                    # Not visible yet (eventual consistency), or gone: keep polling for a window.
                    now = time.monotonic()
                    missing_since = now if missing_since is None else missing_since
                    if gone_after is not None and now - missing_since >= gone_after:
                        raise OperationGone(name, now - missing_since, emulator) from None
                    retries += 1
                    reason: str | None = f"operation {name} not found yet (404)"
                else:
                    reason = policy.classify(exc) if policy else None
                    if reason is None or time.monotonic() >= deadline:
                        raise
                    retries += 1
                    hint = retry_info_delay(parse(exc))
                    if hint is not None and policy is not None:
                        asked = retry_jitter(policy.rng, hint)   # honoured, as in RetryPolicy.run
                    reason = f"polling {name}: {reason}"
            pause = schedule.next(time.monotonic() - started, poller.spacing() if poller else None)
            if op is None and on_retry:
                on_retry(retries, max(pause, asked), reason or "")
    finally:
        if poller is not None:
            poller.close()


def serviceusage(target: Any, op: dict[str, Any], *, version: str = "v1", kind: str | None = None, **kw: Any) -> dict[str, Any]:
    """Wait for a Service Usage operation (`operations/acf.*`) of `kind` (a polls.TYPICAL key); a
    done one is returned as is."""
    if op.get("done"):  # e.g. operations/noop.DONE_OPERATION: never polled
        if op.get("error"):
            raise OperationFailed(op.get("name", "?"), op["error"], op.get("metadata"))
        return op
    name = op["name"]
    return wait(lambda: target.serviceusage(version).operations().get(name=name).execute(num_retries=0), op,
                name=name, schedule=Schedule.of(kind, target), **gone_window(target), **kw)


def healthcare(target: Any, op: dict[str, Any], *, kind: str | None = None, **kw: Any) -> dict[str, Any]:
    """Wait for a Healthcare dataset-level operation of `kind` (a polls.TYPICAL key, or None)."""
    name = op["name"]
    fetch = lambda: target.healthcare().projects().locations().datasets().operations().get(  # noqa: E731
        name=name).execute(num_retries=0)
    return wait(fetch, op, name=name, schedule=Schedule.of(kind, target), **gone_window(target), **kw)


def crm(target: Any, operation: Any, *, kind: str | None = None, **kw: Any) -> Any:
    """Wait for a Resource Manager v3 api_core Operation of `kind`; returns its result message."""
    pb = operation.operation

    def as_dict() -> dict[str, Any]:
        p = operation.operation
        out: dict[str, Any] = {"name": p.name, "done": p.done}
        if p.HasField("error"):
            out["error"] = {"code": p.error.code, "message": p.error.message}
        return out

    def fetch() -> dict[str, Any]:
        operation.done(retry=None)
        return as_dict()

    wait(fetch, as_dict(), name=pb.name or "operation", schedule=Schedule.of(kind, target), **gone_window(target),
         **kw)
    return operation.result(timeout=0, retry=None)
