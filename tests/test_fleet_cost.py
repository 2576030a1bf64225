"""What a blueprint of a fleet costs in requests (issue 19, "a fleet at Google's quotas costs what it
must"): counted in the emulator's --record, by the quota each request charges, for a small fleet.

The counts are deterministic, not timings: the emulator plays Google's latencies 4 times faster
(x0.005) than the client's timing profile expects them (x0.02, its default against an emulator),
and without propagation windows, so every operation is done when its first poll comes and nothing
is refused or retried for want of time. A fleet that polls eagerly again, verifies an enable by
listing, or reads its organization once per blueprint fails here.
"""
from __future__ import annotations

import json
from collections import Counter

from provision.emulator.quotas import classify
from provision.gcp.target import Target
from provision.running import flow
from test_apply_support import blueprint_dict, load, records

FLEET = 5
SU_READS_MAX, ALL_MAX = 4, 40


def team(tmp_path, i: int):
    return load(tmp_path, blueprint_dict(
        f"ohif-cost-{i}", None, bucket=None,
        iam=[{"member": f"group:team-{i}@example.com", "roles": ["roles/serviceusage.serviceUsageConsumer"]}],
        dicom_stores=[{"id": "primary", "iam": [{"member": f"group:team-{i}@example.com",
                                                 "roles": ["roles/healthcare.dicomViewer"]}]}],
        smoke={"min_studies": 0}), f"team-{i}.yaml")


def test_a_blueprint_of_a_fleet_costs_few_service_usage_reads_and_few_requests(emulator_factory, tmp_path):
    latency = tmp_path / "latency.json"
    latency.write_text(json.dumps({"propagation:serviceusage.enable": 0}))
    rec = tmp_path / "rec.jsonl"
    emu = emulator_factory(latency=str(latency), time_scale=0.005, record=rec)
    target = Target(emulator=emu.url)
    assert target.timing.scale == 0.02            # the client expects Google's latencies x0.02
    outcomes = flow.apply_many([team(tmp_path, i) for i in range(FLEET)], target, parallel=FLEET, run_smoke=False)
    assert [o.error for o in outcomes] == [None] * FLEET
    got = records(rec)
    family = Counter((classify(r["api"], r["method"], r["path"]) or (r["api"],))[0] for r in got)
    per = {k: v / FLEET for k, v in family.items()}
    assert per["serviceusage.read"] <= SU_READS_MAX, per
    assert len(got) / FLEET <= ALL_MAX, (len(got) / FLEET, per)
    # Why: each operation is polled once, when its kind is usually done ...
    polls = Counter(r["path"] for r in got if "/operations/" in r["path"] and r["method"] == "GET")
    assert polls and set(polls.values()) == {1}, polls
    assert sum(1 for p in polls if "/v1/operations/" in p) == FLEET            # one enable each
    assert sum(1 for p in polls if "/v1beta1/operations/" in p) == FLEET       # one service agent each
    # ... the enable's response is its verification (no listing, no batchGet after it) ...
    assert not [r for r in got if r["api"] == "serviceusage" and r["path"].endswith(("/services", ":batchGet"))]
    # ... the organization's policies and the create permission are asked once for the fleet.
    org_reads = Counter(r["path"] for r in got if r["path"].startswith("/v2/organizations/"))
    assert org_reads and set(org_reads.values()) == {1}, org_reads
    assert sum(1 for r in got if r["path"].endswith("organizations/123456789012:testIamPermissions")) == 1


def test_a_question_every_blueprint_asks_alike_is_asked_once():
    import threading

    from provision.gcp.shared import SharedReads

    clock = [0.0]
    shared = SharedReads(ttl=300.0, clock=lambda: clock[0])
    asked = threading.Event()
    release = threading.Event()
    sent: list[str] = []

    def fetch():
        sent.append("getEffectivePolicy")
        asked.set()
        release.wait(10)
        return {"allowAll": True}

    answers: list = []
    first = threading.Thread(target=lambda: answers.append(shared.get("org/policy", fetch)))
    first.start()
    assert asked.wait(10)                                   # one request in flight...
    others = [threading.Thread(target=lambda: answers.append(shared.get("org/policy", fetch))) for _ in range(4)]
    for t in others:
        t.start()
    release.set()
    for t in [first, *others]:
        t.join(10)
    assert answers == [{"allowAll": True}] * 5 and sent == ["getEffectivePolicy"]   # ...answers all five
    clock[0] += 301                                         # older than five minutes: asked again
    assert shared.get("org/policy", lambda: {"allowAll": False}) == {"allowAll": False}

    def refused():
        raise RuntimeError("403")

    try:
        shared.get("billing", refused)
    except RuntimeError:
        pass
    assert shared.get("billing", lambda: ["billing.resourceAssociations.create"]) == \
        ["billing.resourceAssociations.create"]             # an error is never kept


def test_a_propagating_enable_is_waited_out_not_asked_about_every_few_milliseconds(emulator_factory, tmp_path):
    """After its enable, a blueprint's Healthcare calls meet SERVICE_DISABLED until the enable has
    propagated (30 s on Google, here x0.02): they try again when an enable has typically propagated
    (gcp/polls.py), not at the retry floor (that was 15-20 refused calls a blueprint)."""
    rec = tmp_path / "rec.jsonl"
    emu = emulator_factory(latency="realistic", time_scale=0.02, record=rec)
    outcomes = flow.apply_many([team(tmp_path, i) for i in range(2)], Target(emulator=emu.url), parallel=2,
                               run_smoke=False)
    assert [o.error for o in outcomes] == [None, None]
    refused = Counter(r["path"] for r in records(rec) if r["status"] == 403 and r["method"] == "POST")
    assert refused and max(refused.values()) <= 2, refused
