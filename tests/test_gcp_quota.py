"""The provisioner at a Google quota: RetryInfo honoured, one AIMD limiter per quota family shared
by every blueprint of a target, retry reasons that name the quota, and a fleet that converges with
the emulator's quotas on. No timing asserts: delays are read from the policy (seeded), waits are
ordered with events."""
from __future__ import annotations

import json
import random
import threading
from collections import Counter

import pytest

from provision.gcp import quota
from provision.gcp.errors import RawHttpError, parse
from provision.gcp.retry import RetryPolicy, retry_info_delay

SU_WRITES = {"service": "serviceusage.googleapis.com", "consumer": "projects/764086051850",
             "quota_metric": "serviceusage.googleapis.com/mutate_requests",
             "quota_limit": "MutateRequestsPerMinutePerProject", "quota_limit_value": "60",
             "quota_location": "global"}


def too_many(metadata: dict | None = SU_WRITES, retry_delay: str | None = None) -> RawHttpError:
    details: list[dict] = []
    if metadata is not None:
        details.append({"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "RATE_LIMIT_EXCEEDED",
                        "domain": "googleapis.com", "metadata": metadata})
    if retry_delay is not None:
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay})
    return RawHttpError(429, json.dumps({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "details": details,
                                                   "message": "Quota exceeded for quota metric 'Mutate requests'"}}))


# ---------------------------------------------------------------------------- RetryInfo
def test_retry_info_durations_parse():
    assert retry_info_delay(parse(too_many(retry_delay="38s"))) == 38.0
    assert retry_info_delay(parse(too_many(retry_delay="2.463586755s"))) == pytest.approx(2.463586755)
    assert retry_info_delay(parse(too_many())) is None
    ge = parse(too_many())
    ge.details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": {"seconds": 1, "nanos": 5e8}})
    assert retry_info_delay(ge) == 1.5


def test_the_policy_waits_what_retry_info_asks_even_past_its_own_cap():
    policy = RetryPolicy(first=0.05, cap=2.0, rng=random.Random(7))
    for attempt in range(6):
        d = policy.delay_for(too_many(retry_delay="5s"), attempt)
        assert 5.0 <= d <= 5.5                         # never sooner, at most a tenth later
    # without RetryInfo: the usual capped backoff
    assert all(policy.delay_for(too_many(), a) <= 2.0 for a in range(10))


def test_run_reports_the_retry_info_delay_and_names_the_quota():
    policy = RetryPolicy(first=0.001, cap=0.002, rng=random.Random(1), governor=quota.Governor())
    seen: list[tuple[int, float, str]] = []
    calls = iter([too_many(retry_delay="0.05s"), None])

    def fn():
        exc = next(calls)
        if exc is not None:
            raise exc
        return "done"

    assert policy.run(fn, deadline=float("inf"), on_retry=lambda *a: seen.append(a)) == "done"
    (attempt, delay, reason), = seen
    assert 0.05 <= delay <= 0.055
    assert reason.startswith("limited by Service Usage write quota (")
    assert "429 RESOURCE_EXHAUSTED" in reason
    assert quota.limited_by(reason) == "Service Usage write quota"
    assert quota.limited_by("polling operations/x: limited by Resource Manager read quota: 429") == \
        "Resource Manager read quota"
    assert quota.limited_by("429 RESOURCE_EXHAUSTED: slow down") is None


def test_operation_polls_honour_retry_info():
    from provision.gcp import operations

    policy = RetryPolicy(first=0.001, cap=0.002, rng=random.Random(3))
    answers = iter([too_many(retry_delay="0.04s"), {"name": "op", "done": True}])
    waits: list[float] = []

    def fetch():
        a = next(answers)
        if isinstance(a, Exception):
            raise a
        return a

    op = operations.wait(fetch, {"name": "op", "done": False}, name="op", deadline=float("inf"), interval=0.001,
                         max_interval=0.001, policy=policy, on_retry=lambda n, d, r: waits.append(d))
    assert op["done"] and len(waits) == 1 and 0.04 <= waits[0] <= 0.044


# ---------------------------------------------------------------------------- AIMD
def test_limiter_backs_off_multiplicatively_once_per_round_and_recovers_additively():
    clock = [100.0]
    lim = quota.AIMDLimiter("Service Usage write quota", ceiling=16, clock=lambda: clock[0])
    sent = clock[0]                                          # a burst of calls sent together...
    clock[0] += 1
    assert lim.on_throttle(sent) and lim.limit == 8
    assert not lim.on_throttle(sent) and lim.limit == 8     # ...is one round: no second decrease
    for _ in range(3):                                       # calls sent after each decrease
        clock[0] += 1
        assert lim.on_throttle(clock[0] - 0.5)
    assert lim.limit == 1                                    # 16 -> 8 -> 4 -> 2 -> 1
    clock[0] += 1
    lim.on_throttle(clock[0] - 0.5)
    assert lim.limit == 1                                    # never below one: calls still go out
    successes = 0
    while lim.limit < 8:
        lim.on_success()
        successes += 1
    # +1/limit per success: about one more per `limit` successes (1+2+...+7 = 28 to get back to 8)
    assert 20 <= successes <= 40
    for _ in range(1000):
        lim.on_success()
    assert lim.limit == 16                                   # up to the ceiling, no further


def test_a_call_inside_a_call_of_the_same_quota_does_not_wait_for_its_own_slot():
    gov = quota.Governor()
    policy = RetryPolicy(first=0.001, cap=0.002, rng=random.Random(5), governor=gov)
    key, limiter = gov.learn("outer", parse(too_many()), None, None)
    gov.learn("inner", parse(too_many()), None, None)
    while limiter.limit > 1:
        limiter.on_throttle()
    inner = lambda: "inner done"  # noqa: E731
    outer = lambda: policy.run(inner, deadline=float("inf"), site="inner")  # noqa: E731
    assert policy.run(outer, deadline=float("inf"), site="outer") == "inner done"
    assert limiter.holders == 0


def test_limiter_grants_slots_first_come_first_served():
    lim = quota.AIMDLimiter("q", ceiling=1)
    lim.acquire()
    order: list[str] = []
    waiting = {name: threading.Event() for name in ("a", "b")}

    def caller(name: str) -> None:
        lim.acquire(on_wait=lambda ahead: waiting[name].set())
        order.append(name)
        lim.release()

    a = threading.Thread(target=caller, args=("a",))
    a.start()
    assert waiting["a"].wait(10)
    b = threading.Thread(target=caller, args=("b",))
    b.start()
    assert waiting["b"].wait(10)
    assert order == []                                       # both wait while the slot is held
    lim.release()
    a.join(10)
    b.join(10)
    assert order == ["a", "b"]


def test_a_call_site_that_met_the_quota_queues_for_it_in_every_blueprint():
    gov = quota.Governor()
    policy = RetryPolicy(first=0.001, cap=0.002, rng=random.Random(2), governor=gov)
    state = {"throttled": False}

    def enable():      # one code object, as the same line of a resource module in every blueprint
        if not state["throttled"]:
            state["throttled"] = True
            raise too_many()
        return "enabled"

    assert policy.run(enable, deadline=float("inf"), project="team-a") == "enabled"
    (key, limiter), = gov.families.items()
    assert key.label == "Service Usage write quota" and key.consumer == "projects/764086051850"
    assert limiter.throttles == 1 and limiter.limit < limiter.ceiling
    # Another blueprint's same call now waits for a slot before its first attempt.
    limiter.acquire()
    while limiter.holders < int(limiter.limit):
        limiter.acquire()
    told: list[str] = []
    queued = threading.Event()

    def on_wait(message: str) -> None:
        told.append(message)
        queued.set()

    worker = threading.Thread(target=lambda: told.append(policy.run(enable, deadline=float("inf"), project="team-b",
                                                                    on_wait=on_wait)))
    worker.start()
    assert queued.wait(10)
    assert worker.is_alive() and told[0].startswith("waiting for the Service Usage write quota (")
    while limiter.holders:
        limiter.release()
    worker.join(10)
    assert told[-1] == "enabled"


def test_a_quota_charged_to_the_blueprints_project_is_one_family_per_project():
    gov = quota.Governor()
    hc = {"service": "healthcare.googleapis.com", "consumer": "projects/111", "quota_location": "us-central1",
          "quota_metric": "healthcare.googleapis.com/requests"}
    key_a, _ = gov.learn("site", parse(too_many(hc)), "team-a", "111")
    key_b, _ = gov.bound("site", "team-b")
    assert key_a != key_b and key_b.consumer == "projects/team-b" and key_b.location == "us-central1"
    su_a, _ = gov.learn("su-site", parse(too_many()), "team-a", "111")
    su_b, _ = gov.bound("su-site", "team-b")
    assert su_a == su_b                                     # the caller's quota project: one for the fleet


def test_a_429_that_names_no_quota_is_a_plain_transient_retry():
    policy = RetryPolicy(first=0.001, cap=0.002, rng=random.Random(4), governor=quota.Governor())
    reasons: list[str] = []
    calls = iter([too_many(metadata=None), None])

    def fn():
        exc = next(calls)
        if exc:
            raise exc

    policy.run(fn, deadline=float("inf"), on_retry=lambda n, d, r: reasons.append(r))
    assert reasons and not reasons[0].startswith("limited by") and not policy.governor.families


# ---------------------------------------------------------------------------- a fleet at the quota
def test_twenty_blueprints_converge_at_the_service_usage_quota(emulator_factory, tmp_path):
    """Twenty blueprints at a Service Usage write quota of 10 (two batchEnables, then one per 30 s x
    the time scale) all converge, queued in the quota's line instead of retrying on their own.

    Asserted on what the governor decided, not on how many 429s a run happened to meet: that count
    depends on how the machine's load spaces the calls (it was loosened once for a loaded machine
    and still failed there, 107 against 100). What the governor decides does not: a call that met
    the quota never tries again outside the line (blind retries: 0, where retrying on one's own
    makes 4 to 7 tries per enable); a call is refused out of line only on its first try, before
    its call site learned the quota (at most one per blueprint and call site: the batchEnable and
    generateServiceIdentity lines); every 429 the record shows is one the governor counted; and
    the calls after the first refusal went through the line (sent in line, waiting reported)."""
    from test_apply_support import blueprint_dict, load, records

    from provision.running import flow
    from provision.gcp.target import Target

    table = tmp_path / "quotas.json"
    table.write_text(json.dumps({"serviceusage.write": {"limit": 10}}))
    rec = tmp_path / "record.jsonl"
    emu = emulator_factory(latency="realistic", time_scale=0.005, quotas=str(table), record=rec)
    target = Target(emulator=emu.url)
    bps = [load(tmp_path, blueprint_dict(f"fleet-q-{i:02d}", bucket={"name": f"fleet-q-{i:02d}-dicom",
                                                                      "location": "US", "create": True},
                                         dicom_stores=[{"id": "s"}]), f"b{i}.yaml") for i in range(20)]
    events: list = []
    lock = threading.Lock()

    def listener(event) -> None:
        with lock:
            events.append(event)

    outcomes = flow.apply_many(bps, target, listener, parallel=20, run_smoke=False)
    assert [o.error for o in outcomes] == [None] * 20
    got = records(rec)
    throttled = Counter(r["api"] for r in got if r["status"] == 429)
    batch_enables = [r for r in got if r["path"].endswith(":batchEnable") and r["status"] == 200]
    assert len(batch_enables) == 20
    assert throttled["serviceusage"] >= 1                   # the fleet did meet the quota...
    retries = [e for e in events if e.kind == "retry"]
    assert any(e.message.startswith("limited by Service Usage write quota") for e in retries)
    if throttled["cloudresourcemanager"]:                 # CreateProject takes the whole 10/s
        assert any(e.message.startswith("limited by Resource Manager write quota") for e in retries)
    # ...and queued for it: what the governor decided.
    gov = quota.governor_for(target)
    assert gov.blind_retries == 0                           # nobody tried again outside the line
    su = {f["label"]: f for f in gov.snapshot()}["Service Usage write quota"]
    assert su["throttles"] == throttled["serviceusage"]     # every 429 went through the governor
    assert su["refused_out_of_line"] <= 2 * len(bps)        # first tries only: one per blueprint and site
    assert su["sent_in_line"] >= 1 and su["holders"] == 0 and su["waiting"] == 0
    queued = [e for e in events if e.kind == "progress" and e.message.startswith("waiting for the Service Usage")]
    assert queued
    # what limited each blueprint's apis step is in its result, as --json shows it
    limited = {o.project: o.apply.to_json()["steps"] for o in outcomes}
    assert any("Service Usage write quota" in s["limited_by"] for steps in limited.values() for s in steps
               if s["id"] == "apis")


# ---------------------------------------------------------------------------- polls at a quota
def test_an_operation_is_first_polled_when_its_kind_is_usually_done_then_seldom():
    from provision.gcp.polls import Schedule
    from provision.gcp.target import Target

    target = Target(emulator="http://127.0.0.1:9")          # x0.02: Google's 20 s enable is 0.4 s
    enable = Schedule.of("serviceusage.enable", target)
    assert enable.next(0.0) == pytest.approx(0.4)           # one poll where the eager schedule made 20
    assert enable.next(0.1) == pytest.approx(0.3)           # still early: wait for the typical time
    assert enable.next(0.4) == pytest.approx(0.04)          # late: a tenth of the time waited
    assert enable.next(100.0) == pytest.approx(target.max_poll)
    eager = Schedule.of(None, target)                       # an import: its progress is watched
    assert eager.next(0.0) == pytest.approx(target.first_poll) and eager.next(1.0) == pytest.approx(0.05)
    assert Schedule.of("crm.projects.create", Target()).next(0.0) == 12.0   # on Google, unscaled
    assert enable.next(0.4, spacing=0.25) == 0.25           # a refusing quota's spacing wins


def test_pollers_of_a_refusing_quota_share_its_pace():
    clock = [0.0]
    lim = quota.AIMDLimiter("Service Usage read quota", clock=lambda: clock[0])
    assert lim.poll_spacing() is None                       # never refused: polls keep their schedule
    lim.on_throttle(hot_for=60.0)
    for _ in range(3):                                      # admitted one every 0.5 s while refusing
        clock[0] += 0.5
        lim.on_success()
    for _ in range(4):
        lim.poll_started()
    assert lim.poll_spacing() == pytest.approx(0.5 * 4)    # four pollers: each once per 2 s
    lim.poll_ended()
    assert lim.poll_spacing() == pytest.approx(0.5 * 3)
    clock[0] += 120.0                                       # no refusal for a while: back to the schedule
    assert lim.poll_spacing() is None


def test_a_poll_that_meets_a_quota_puts_every_poll_of_that_api_in_its_line():
    from provision.gcp.polls import Poller

    gov = quota.Governor()
    reads = {**SU_WRITES, "quota_metric": "serviceusage.googleapis.com/read_requests"}
    first = Poller(gov, "poll:serviceusage", "team-a")
    with pytest.raises(RawHttpError):
        first.fetch(lambda: (_ for _ in ()).throw(too_many(reads)))
    (key, limiter), = gov.families.items()
    assert key.label == "Service Usage read quota" and limiter.throttles == 1 and limiter.pollers == 1
    other = Poller(gov, "poll:serviceusage", "team-b")      # another blueprint's operation, same API
    assert other.fetch(lambda: {"done": True}) == {"done": True}
    assert limiter.pollers == 2 and limiter.refused_out_of_line == 1
    assert limiter.sent_in_line == 1 and limiter.admitted == 1  # the second poll went through the line
    first.close(), other.close()
    assert limiter.pollers == 0 and limiter.holders == 0


def test_a_call_its_blueprint_waits_for_goes_first_in_the_line():
    lim = quota.AIMDLimiter("Service Usage write quota", ceiling=1)
    lim.acquire()
    order: list[str] = []
    waiting = {name: threading.Event() for name in ("agent", "enable")}

    def caller(name: str, priority: float) -> None:
        lim.acquire(on_wait=lambda ahead: waiting[name].set(), priority=priority)
        order.append(name)
        lim.release()

    agent = threading.Thread(target=caller, args=("agent", 0.0))      # first in line...
    agent.start()
    assert waiting["agent"].wait(10)
    enable = threading.Thread(target=caller, args=("enable", quota.CHAIN_HEAD))
    enable.start()
    assert waiting["enable"].wait(10)
    lim.release()
    agent.join(10), enable.join(10)
    assert order == ["enable", "agent"]                      # ...but the enable heads a long chain
