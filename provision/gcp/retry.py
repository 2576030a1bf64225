"""The one retry policy: predicates that say whether an error is worth retrying, and why.

A predicate is `(exc) -> (retry, reason) | None`: None means "not mine, ask the next one";
`(False, reason)` stops the search (the error is final); `(True, reason)` retries. `run`
calls a function under a deadline, backing off exponentially with equal jitter (a delay drawn
uniformly between half the ceiling and the ceiling), and reports
every retry (attempt, delay, reason) through a callback, so a user sees why a step waits.

The predicates follow what Terraform's google provider retries (its google/transport/
error_retry_predicates.go, https://github.com/hashicorp/terraform-provider-google):
429 and 5xx, network resets and timeouts, SERVICE_DISABLED right after an enable (eventual
consistency), 404 "dataset not initialized", 400 "Service account ... does not exist" (a new
service agent not yet propagated), 400 "Another activation or deactivation is in progress",
IAM conflicts (409 ABORTED, Storage's 412) and operations that failed with INTERNAL or
UNAVAILABLE. 400 "Precondition check failed" is retried only around the services enable call
(`ENABLE_PREDICATES`), as Terraform does. A connection refused or a failed name lookup is
retried only for a short window (`unreachable_s`): nobody answers there, and waiting the whole
deadline would only hide it.

A 429 that names its quota (ErrorInfo `quota_metric`) is not retried blindly: with a `governor`
(provision.gcp.quota; the Ctx gives every policy its target's), the call joins the quota family's
line (AIMD on how many calls may probe it at once), and its retry reason says which quota limits
it: "limited by Service Usage write quota (2 at a time): 429 RESOURCE_EXHAUSTED: ...". A
`google.rpc.RetryInfo` in any error is honoured: the next try comes no sooner than its
`retryDelay` (and at most a tenth later), whatever the backoff would have said.
"""
from __future__ import annotations

import random
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, TypeVar

from provision.gcp import quota as quota_mod
from provision.gcp.errors import GoogleError, OperationFailed, is_service_disabled, parse
from provision.redact import redact

Verdict = "tuple[bool, str] | None"
Predicate = Callable[[BaseException], "tuple[bool, str] | None"]
OnRetry = Callable[[int, float, str], None]
T = TypeVar("T")


class Cancelled(Exception):
    """The run was interrupted while a step waited."""


def _short(text: str, n: int = 160) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"


_DURATION = re.compile(r"^\s*(-?[0-9]+(?:\.[0-9]*)?)s\s*$")


def retry_info_delay(ge: GoogleError | None) -> float | None:
    """The seconds a `google.rpc.RetryInfo` detail asks the caller to wait (None: no RetryInfo).
    `retryDelay` is a protobuf Duration in JSON (`"38s"`, `"2.463586755s"`), or an object with
    `seconds`/`nanos`."""
    for d in (ge.details if ge is not None else None) or []:
        if not str(d.get("@type", "")).endswith("google.rpc.RetryInfo"):
            continue
        value = d.get("retryDelay")
        if isinstance(value, str):
            m = _DURATION.match(value)
            if m:
                return max(0.0, float(m.group(1)))
        elif isinstance(value, dict):
            try:
                return max(0.0, float(value.get("seconds") or 0) + float(value.get("nanos") or 0) / 1e9)
            except (TypeError, ValueError):
                return None
    return None


# ---------------------------------------------------------------------------- predicates
def quota_exhausted(exc: BaseException) -> tuple[bool, str] | None:
    """429 RESOURCE_EXHAUSTED naming its quota: retried (the reason names the quota)."""
    ge = parse(exc)
    found = quota_mod.quota_of(ge)
    if found is not None and ge is not None:
        return True, f"limited by {quota_mod.family_label(found[0], found[1])}: {ge.code_text}: {_short(ge.message)}"
    return None


def transient_http(exc: BaseException) -> tuple[bool, str] | None:
    """429 and 500/502/503/504: the service asks us to come back."""
    ge = parse(exc)
    if ge and not ge.network and ge.http_status in (429, 500, 502, 503, 504):
        return True, f"{ge.code_text}: {_short(ge.message)}"
    return None


def network(exc: BaseException) -> tuple[bool, str] | None:
    """Connection reset, refused for a moment, timed out."""
    ge = parse(exc)
    if ge and ge.network:
        return True, f"network: {_short(ge.message)}"
    return None


def dataset_not_initialized(exc: BaseException) -> tuple[bool, str] | None:
    """Healthcare answers 404 'dataset not initialized' for a moment after a dataset is created."""
    ge = parse(exc)
    if ge and ge.http_status == 404 and "not initialized" in ge.message.lower():
        return True, "dataset not initialized yet (just created)"
    return None


def service_account_missing(exc: BaseException) -> tuple[bool, str] | None:
    """A just-created service agent is not known to IAM yet: 400 'Service account service-N@gcp-sa-… does not exist'.

    Only Google-managed service agents (`@gcp-sa-`) are waited for: a service account named in the
    blueprint that does not exist is the user's mistake, and waiting would not fix it."""
    ge = parse(exc)
    text = ge.message.lower() if ge else ""
    if ge and ge.http_status == 400 and "service account" in text and "does not exist" in text and "gcp-sa-" in text:
        return True, "service agent not propagated yet (" + _short(ge.message, 100) + ")"
    return None


class NotYet(Exception):
    """A read-back that does not show our change yet (eventual consistency); retried with backoff."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


def not_yet(exc: BaseException) -> tuple[bool, str] | None:
    if isinstance(exc, NotYet):
        return True, exc.reason
    return None


def activation_in_progress(exc: BaseException) -> tuple[bool, str] | None:
    """Service Usage refuses overlapping enables of the same service."""
    ge = parse(exc)
    if ge and ge.http_status in (400, 409) and "activation or deactivation is in progress" in ge.message.lower():
        return True, "another activation of the service is in progress"
    return None


def enable_precondition(exc: BaseException) -> tuple[bool, str] | None:
    """Service Usage's transient 400/412 "Precondition check failed" on enable (only there)."""
    ge = parse(exc)
    if ge and ge.http_status in (400, 412) and "precondition check failed" in ge.message.lower():
        return True, "Service Usage precondition check failed (transient)"
    return None


ENABLE_PREDICATES: tuple[Any, ...] = (enable_precondition,)


def iam_conflict(exc: BaseException) -> tuple[bool, str] | None:
    """A concurrent policy change: 409 ABORTED (Resource Manager, Healthcare) or 412 (Storage)."""
    ge = parse(exc)
    if ge and ge.http_status == 409 and (ge.status == "ABORTED" or "concurrent" in ge.message.lower()):
        return True, "concurrent IAM policy change (409 ABORTED): re-reading the policy"
    if ge and ge.http_status == 412 and not refused_for_good(ge.message):
        return True, "concurrent IAM policy change (412 Precondition Failed): re-reading the policy"
    return None


# Storage's 412s that no retry changes: public access prevention ("The member bindings allUsers and
# allAuthenticatedUsers are not allowed since public access prevention is enforced.") and an
# organization policy ("Request violates constraint 'constraints/storage.uniformBucketLevelAccess'").
FOR_GOOD_412 = ("public access prevention", "violates constraint")


def refused_for_good(message: str) -> bool:
    """A 412 that is a rule, not a concurrent change."""
    return any(s in message.lower() for s in FOR_GOOD_412)


def operation_internal(exc: BaseException) -> tuple[bool, str] | None:
    """A long-running operation that failed with INTERNAL (13) or UNAVAILABLE (14) is run again."""
    if isinstance(exc, OperationFailed) and exc.code in (13, 14):
        counter = (exc.metadata or {}).get("counter") or {}
        if int(counter.get("failure") or 0) > 0:
            return False, "the operation reports failed items"  # data problems: running it again changes nothing
        return True, f"operation failed with code {exc.code} ({_short(str(exc), 100)}): starting it again"
    return None


def service_disabled_after_enable(services: Iterable[str]) -> Predicate:
    """403 SERVICE_DISABLED for a service this run enables: propagation, so wait.

    A service the blueprint does not enable is not waited for (that is a real error)."""
    wanted = set(services)

    def predicate(exc: BaseException) -> tuple[bool, str] | None:
        ge = parse(exc)
        if ge is None or ge.http_status != 403:
            return None
        if is_service_disabled(ge):
            svc = ge.metadata.get("service") or next((s for s in wanted if s in ge.message), None)
            if svc in wanted:
                return True, f"{svc} not yet active after enabling (SERVICE_DISABLED, propagating)"
            return False, "service disabled"
        return None

    predicate.__name__ = "service_disabled_after_enable"
    return predicate


DEFAULT_PREDICATES: tuple[Predicate, ...] = (
    not_yet, network, quota_exhausted, transient_http, dataset_not_initialized, service_account_missing, activation_in_progress,
    iam_conflict, operation_internal,
)


# ---------------------------------------------------------------------------- policy
@dataclass
class RetryPolicy:
    """Predicates + backoff. `first`/`cap` scale with the target (ms on the emulator, s on Google).
    `governor` (optional) shares quota families between every policy of one target."""

    predicates: tuple[Predicate, ...] = DEFAULT_PREDICATES
    first: float = 1.0
    cap: float = 30.0
    rng: random.Random = field(default_factory=random.Random)
    unreachable_s: float = 30.0   # how long "connection refused" / "no such host" is retried
    governor: "quota_mod.Governor | None" = None
    # When retrying `exc` can first succeed (time.monotonic()), if known: a propagating enable's
    # SERVICE_DISABLED is not retried before the enable's typical propagation is over (None: no such time).
    not_before: Callable[[BaseException], float | None] | None = None

    def with_predicates(self, *extra: Predicate) -> "RetryPolicy":
        return RetryPolicy(tuple(extra) + self.predicates, self.first, self.cap, self.rng, self.unreachable_s,
                           self.governor, self.not_before)

    def classify(self, exc: BaseException) -> str | None:
        """The reason to retry `exc`, or None when it is final. The reason is shown to the user and
        may quote the server or the exception, so it is redacted here, where every reason passes."""
        for predicate in self.predicates:
            verdict = predicate(exc)
            if verdict is not None:
                retry, reason = verdict
                return redact(reason) if retry else None
        return None

    def delay(self, attempt: int, elapsed: float = 0.0) -> float:
        """Exponential backoff with jitter, never more than a tenth of the time already spent
        retrying: a condition that clears (a propagating enable) is noticed soon after it does,
        while a storm of 429s still spreads clients out. "Equal jitter": uniform(c/2, c)."""
        ceiling = min(self.cap, self.first * (2 ** min(attempt, 30)), max(self.first, 0.1 * elapsed))
        return max(0.001, self.rng.uniform(ceiling / 2, ceiling))

    def delay_for(self, exc: BaseException, attempt: int, elapsed: float = 0.0,
                  limiter: "quota_mod.AIMDLimiter | None" = None, strikes: int = 1) -> float:
        """The wait before trying `exc`'s call again (`_delay_for`), never before `not_before(exc)`."""
        wait = self._delay_for(exc, attempt, elapsed, limiter, strikes)
        ready = self.not_before(exc) if self.not_before is not None else None
        return wait if ready is None else max(wait, ready - time.monotonic())

    def _delay_for(self, exc: BaseException, attempt: int, elapsed: float = 0.0,
                   limiter: "quota_mod.AIMDLimiter | None" = None, strikes: int = 1) -> float:
        """The wait before trying `exc`'s call again: the server's RetryInfo when it sends one
        (never less, at most a tenth more, not capped: the server knows); else, at a quota whose
        pace is known, that pace, doubled for each time in a row this call met the quota (a call
        dearer than the average one, a batchEnable among cheaper writes, needs longer to find
        its cost refilled), jittered, at most `cap`; else `delay`."""
        hint = retry_info_delay(parse(exc))
        if hint is not None:
            return max(0.001, quota_mod.retry_jitter(self.rng, hint))
        pace = limiter.pace() if limiter is not None else None
        if pace is not None:
            pace *= 2.0 ** (min(max(strikes, 1), 8) - 1)
            return max(0.001, min(self.cap, pace * self.rng.uniform(0.8, 1.2)))
        return self.delay(attempt, elapsed)

    # Long on purpose (issue 20): one retry loop; each attempt reads and updates its state (slot, strikes, streak).
    def run(self, fn: Callable[[], T], *, deadline: float, on_retry: OnRetry | None = None,
            cancel: threading.Event | None = None, on_wait: Callable[[str], None] | None = None,
            project: str | None = None, number: str | None = None, site: object = None,
            quota: str | None = None, priority: float = 0.0) -> T:
        """Call `fn` until it succeeds, a final error, or `deadline` (time.monotonic()) would pass.

        An unreachable endpoint (connection refused, name not resolved) is given up on after
        `unreachable_s` seconds of such failures in a row, whatever the deadline. With a governor,
        a call of a quota family waits for one of its slots first (`on_wait` hears why, once);
        `project`/`number` name the blueprint's project, for quotas charged per project; `site`
        names the call for the governor (default: `fn`'s code, the same line in every blueprint);
        `quota`: the quota metric the call is known to charge (Governor.bound); `priority`: its
        place in the quota's line (quota.CHAIN_HEAD goes before 0)."""
        attempt = 0
        started = time.monotonic()
        unreachable_since: float | None = None
        gov = self.governor
        if gov is not None and site is None:
            site = getattr(fn, "__code__", None)
        family = gov.bound(site, project, quota) if gov is not None else None
        entry: list[Any] | None = None
        last_exc: BaseException | None = None
        strikes = 0      # quota refusals in a row for this call
        try:
            while True:
                if family is not None and entry is None and not quota_mod.holding(family[1]):
                    key, limiter = family

                    def told(ahead: int, label: str = key.label) -> None:
                        if on_wait is not None:
                            on_wait(f"waiting for the {label} ({ahead} ahead)")

                    try:
                        granted = limiter.acquire(deadline=deadline, cancel=cancel, on_wait=told, priority=priority)
                    except quota_mod.QuotaWaitTimeout:
                        if last_exc is not None:
                            raise last_exc from None
                        raise
                    if granted < 0:
                        raise Cancelled()
                    entry = quota_mod.hold(limiter)
                # Counted for what the line decided (Governor.snapshot): sent in line, or not.
                in_line = family[0] if family is not None and (entry is not None or quota_mod.holding(family[1])) else None
                if in_line is not None and family is not None:
                    family[1].note_sent(True)
                elif strikes and gov is not None:
                    gov.note_blind_retry()
                sent_at = time.monotonic()
                try:
                    result = fn()
                except Exception as exc:  # noqa: BLE001 - classified below
                    last_exc = exc
                    reason = self.classify(exc)
                    if reason is None:
                        raise
                    attempt += 1
                    now = time.monotonic()
                    ge = parse(exc)
                    learned = gov.learn(site, ge, project, number) if gov is not None else None
                    throttled: quota_mod.AIMDLimiter | None = None   # the quota's limiter, when the failure was at one
                    if learned is not None:
                        if family is None or learned[0] != family[0]:
                            if entry is not None:            # a slot of another family: not this quota's
                                quota_mod.give_back(entry)
                                entry = None
                            family = learned
                        throttled = family[1]
                        if in_line != family[0]:
                            throttled.note_sent(False)
                        strikes += 1
                        wait = self.delay_for(exc, attempt - 1, now - started, throttled, strikes)
                        throttled.on_throttle(sent_at, hot_for=max(10 * wait, self.cap))
                        reason = reason.replace(f"limited by {family[0].label}",
                                                f"limited by {family[0].label} ({int(throttled.limit)} at a time)", 1)
                    else:
                        strikes = 0
                        if entry is not None:   # answered, not at the quota: the slot goes back
                            quota_mod.give_back(entry)
                            entry = None
                        wait = self.delay_for(exc, attempt - 1, now - started)
                    if ge is not None and ge.unreachable:
                        unreachable_since = unreachable_since if unreachable_since is not None else now
                        give_up = now + wait > unreachable_since + self.unreachable_s
                    else:
                        unreachable_since = None
                        give_up = False
                    if give_up or now + wait > deadline:
                        exc.provision_attempts = attempt  # type: ignore[attr-defined]  # counts the report reads, on a library exception
                        exc.provision_waited = now - started  # type: ignore[attr-defined]  # (see above)
                        raise
                    if on_retry:
                        on_retry(attempt, wait, reason)
                    probing = throttled if entry is not None else None
                    if probing is not None:
                        probing.probe_started()
                    try:
                        if cancel is not None:
                            if cancel.wait(wait):
                                raise Cancelled() from exc
                        else:
                            time.sleep(wait)
                    finally:
                        if probing is not None:
                            probing.probe_ended()
                else:
                    if entry is not None:
                        quota_mod.give_back(entry, success=True)
                        entry = None
                    return result
        finally:
            if entry is not None:
                quota_mod.give_back(entry)
