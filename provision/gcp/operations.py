"""Waiting for long-running operations of each style Google uses.

- Resource Manager v3 (`operations/cp.*`): the api_core Operation that `create_project` /
  `update_project` / `delete_project` return; refreshed through its own `GET v3/operations/…`.
- Service Usage (`operations/acf.*`): `GET v1/operations/…`; an operation that comes back done
  (`operations/noop.DONE_OPERATION` for an already-enabled service) is never polled.
- Service Usage v1beta1 `generateServiceIdentity`: same operations endpoint, v1beta1.
- Healthcare: dataset-level operations `projects/P/locations/L/datasets/D/operations/ID`.

Polls come at growing intervals (first interval from the target: milliseconds on the emulator,
a second on Google; then a tenth of the time waited so far, up to a cap) until a deadline. A finished operation with `error`
raises `OperationFailed` carrying Google's message and the operation's metadata (import
counters, logs link). A 404 on the operation itself counts as "not visible yet", as Terraform
treats it; transient errors while polling are retried by the same policy as everything else.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

from provision.gcp.errors import OperationFailed, OperationTimeout, is_not_found
from provision.gcp.retry import Cancelled, OnRetry, RetryPolicy

OnPoll = Callable[[dict], None]
POLL_FRACTION = 0.1


def wait(fetch: Callable[[], dict], first: dict | None, *, name: str, deadline: float, interval: float,
         max_interval: float, policy: RetryPolicy | None = None, on_poll: OnPoll | None = None,
         on_retry: OnRetry | None = None, cancel: threading.Event | None = None) -> dict:
    """Poll `fetch()` until the operation is done; return it (raise OperationFailed on `error`)."""
    op = first
    retries = 0
    started = time.monotonic()
    first_interval = interval
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
        pause = min(interval, max(0.0, deadline - now))
        if cancel is not None:
            if cancel.wait(pause):
                raise Cancelled()
        else:
            time.sleep(pause)
        # Intervals grow with the time already waited (a tenth of it), so a finished operation
        # is noticed at most ~10% late, without polling a long one more than needed.
        interval = min(max_interval, max(first_interval, POLL_FRACTION * (time.monotonic() - started)))
        try:
            op = fetch()
        except Exception as exc:  # noqa: BLE001
            if is_not_found(exc):
                op = None  # the operation is not visible yet: keep polling until the deadline
                continue
            reason = policy.classify(exc) if policy else None
            if reason is None or time.monotonic() >= deadline:
                raise
            retries += 1
            if on_retry:
                on_retry(retries, interval, f"polling {name}: {reason}")
            op = None


def serviceusage(target: Any, op: dict, *, version: str = "v1", **kw: Any) -> dict:
    """Wait for a Service Usage operation (`operations/acf.*`); a done one is returned as is."""
    if op.get("done"):  # e.g. operations/noop.DONE_OPERATION: never polled
        if op.get("error"):
            raise OperationFailed(op.get("name", "?"), op["error"], op.get("metadata"))
        return op
    name = op["name"]
    return wait(lambda: target.serviceusage(version).operations().get(name=name).execute(), op,
                name=name, interval=target.first_poll, max_interval=target.max_poll, **kw)


def healthcare(target: Any, op: dict, **kw: Any) -> dict:
    """Wait for a Healthcare dataset-level operation."""
    name = op["name"]
    return wait(lambda: target.healthcare().projects().locations().datasets().operations().get(name=name).execute(),
                op, name=name, interval=target.first_poll, max_interval=target.max_poll, **kw)


def crm(target: Any, operation: Any, **kw: Any) -> Any:
    """Wait for a Resource Manager v3 api_core Operation; returns its result message."""
    pb = operation.operation

    def as_dict() -> dict:
        p = operation.operation
        out: dict = {"name": p.name, "done": p.done}
        if p.HasField("error"):
            out["error"] = {"code": p.error.code, "message": p.error.message}
        return out

    def fetch() -> dict:
        operation.done(retry=None)
        return as_dict()

    wait(fetch, as_dict(), name=pb.name or "operation", interval=target.first_poll,
         max_interval=target.max_poll, **kw)
    return operation.result(timeout=0, retry=None)
