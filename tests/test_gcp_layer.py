"""The gcp layer against the emulator: targets, the one retry policy, operations, errors.
Every error here is a real one, raised by the real client libraries from a real HTTP answer."""
from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from provision.errors import UsageError
from provision.gcp import errors, operations
from provision.gcp.context import Ctx, Reporter
from provision.gcp.retry import RetryPolicy, service_disabled_after_enable
from provision.gcp.target import Target
from provision.resources import apis, billing, dataset, project
from test_apply_support import BILLING, ORG, records


class Spec:
    def __init__(self, pid: str):
        self.id, self.display_name, self.parent, self.labels, self.billing_account = pid, "Layer Test", ORG, {"t": "x"}, BILLING


def fresh_project(target: Target, pid: str) -> Ctx:
    ctx = Ctx(target, "project")
    project.create(ctx, Spec(pid))
    return ctx


# ---------------------------------------------------------------------------- target
def test_target_from_env_and_token_never_shown():
    t = Target.from_env(env={"PROVISION_EMULATOR_HOST": "http://127.0.0.1:9/", "PROVISION_EMULATOR_TOKEN": "emulator:user:a@b.c"})
    assert t.is_emulator and t.emulator == "http://127.0.0.1:9" and t.token == "emulator:user:a@b.c"
    assert "a@b.c" not in repr(t) and "token" not in repr(t)
    assert Target.from_env(env={}).is_emulator is False
    assert Target.from_env(emulator="http://x:1", env={"PROVISION_EMULATOR_HOST": "http://y:2"}).emulator == "http://x:1"
    with pytest.raises(UsageError):
        Target(emulator="127.0.0.1:8765")
    with pytest.raises(UsageError, match="needs credentials to impersonate it with"):
        Target(emulator="http://x:1", impersonate="sa@p.iam.gserviceaccount.com").credentials()


def test_importing_the_library_does_not_import_google_clients():
    code = ("import sys, provision.running.lifecycle, provision.planning.plan, provision.running.engine, provision.running.progress; "
            "print([m for m in ('googleapiclient', 'google.cloud.storage', 'google.cloud.resourcemanager_v3') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


# ---------------------------------------------------------------------------- errors
def test_real_errors_are_read_alike_and_explained(emulator):
    target = Target(emulator=emulator.url)
    fresh_project(target, "layer-errors")
    svc = target.healthcare()
    # 403 SERVICE_DISABLED, before healthcare is enabled
    with pytest.raises(Exception) as exc:
        svc.projects().locations().datasets().get(name="projects/layer-errors/locations/us-central1/datasets/d").execute()
    ge = errors.parse(exc.value)
    assert ge.http_status == 403 and ge.reason == "SERVICE_DISABLED" and ge.metadata.get("service") == "healthcare.googleapis.com"
    err = errors.to_provision_error(exc.value, "dataset", "projects/layer-errors/locations/us-central1/datasets/d")
    assert "step 'dataset'" in str(err) and "SERVICE_DISABLED" in str(err) and "enable healthcare.googleapis.com" in str(err)
    # 409 ALREADY_EXISTS from the gapic client (Conflict) is told apart from ABORTED
    from google.cloud import resourcemanager_v3

    with pytest.raises(Exception) as exc:
        target.projects().create_project(project=resourcemanager_v3.Project(project_id="layer-errors"), retry=None)
    assert errors.is_already_exists(exc.value)
    assert RetryPolicy().classify(exc.value) is None
    # Storage: a 404 with the JSON API's own envelope
    with pytest.raises(Exception) as exc:
        target.storage().get_bucket("no-such-bucket-here", retry=None)
    assert errors.is_not_found(exc.value)
    # network: nothing listens there
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(Exception) as exc:
        Target(emulator=f"http://127.0.0.1:{port}").storage().get_bucket("b", retry=None)
    assert errors.parse(exc.value).network
    assert RetryPolicy().classify(exc.value).startswith("network")


def test_missing_billing_on_enable_says_to_link_billing(emulator):
    target = Target(emulator=emulator.url)
    ctx = fresh_project(target, "layer-nobill")
    with pytest.raises(Exception) as exc:
        apis.enable(ctx, "layer-nobill", ["healthcare.googleapis.com"])
    err = errors.to_provision_error(exc.value, "apis", "projects/layer-nobill/services")
    assert "billing" in str(err).lower() and "project.billing_account" in str(err)


# ---------------------------------------------------------------------------- retry
def test_service_disabled_is_retried_only_for_services_this_run_enables(emulator):
    target = Target(emulator=emulator.url)
    fresh_project(target, "layer-disabled")
    with pytest.raises(Exception) as exc:
        target.healthcare().projects().locations().datasets().list(parent="projects/layer-disabled/locations/us-central1").execute()
    assert RetryPolicy().classify(exc.value) is None
    mine = RetryPolicy().with_predicates(service_disabled_after_enable(["healthcare.googleapis.com"]))
    assert "SERVICE_DISABLED" in mine.classify(exc.value)
    other = RetryPolicy().with_predicates(service_disabled_after_enable(["storage.googleapis.com"]))
    assert other.classify(exc.value) is None


def test_transient_faults_are_retried_with_reasons_until_the_deadline(emulator_factory):
    emu = emulator_factory(faults="503=1.0")
    reasons = []
    ctx = Ctx(Target(emulator=emu.url), "read", reporter=Reporter(on_retry=lambda n, d, r: reasons.append((n, d, r))),
              deadline_s=0.6)
    t0 = time.monotonic()
    with pytest.raises(Exception) as exc:
        project.read(ctx, "whatever-project")
    assert time.monotonic() - t0 < 2.0
    assert errors.parse(exc.value).http_status == 503
    assert len(reasons) >= 3 and all("503 UNAVAILABLE" in r for _, _, r in reasons)
    assert [n for n, _, _ in reasons] == list(range(1, len(reasons) + 1))
    assert getattr(exc.value, "provision_attempts", 0) == len(reasons) + 1


def test_backoff_grows_with_jitter_is_capped_and_bounded_by_time_spent():
    import random

    p = RetryPolicy(first=0.1, cap=1.0, rng=random.Random(7))
    long_ago = 100.0  # retrying for a long time: only the exponential ceiling and the cap bind
    samples = [[p.delay(a, long_ago) for _ in range(200)] for a in range(6)]
    assert all(0 < d <= min(1.0, 0.1 * 2 ** a) for a, ds in enumerate(samples) for d in ds)
    assert max(samples[0]) <= 0.1 < max(samples[3])         # the ceiling grows
    assert max(samples[5]) <= 1.0                           # and is capped
    assert min(samples[3]) < max(samples[3])                # jittered
    # Early on, a wait is at most a tenth of the time already spent (but never below `first`).
    assert all(p.delay(6, elapsed=2.0) <= 0.2 for _ in range(100))
    assert all(p.delay(6, elapsed=0.0) <= 0.1 for _ in range(100))


# ---------------------------------------------------------------------------- operations
def test_operations_each_style_and_noop_enable_is_not_polled(emulator_factory, tmp_path):
    rec = tmp_path / "rec.jsonl"
    emu = emulator_factory(record=rec, latency="realistic", time_scale=0.005)
    target = Target(emulator=emu.url)
    ctx = fresh_project(target, "layer-ops")   # CRM operations/cp.* (waited through the gapic Operation)
    billing.link(ctx, "layer-ops", BILLING)
    apis.enable(ctx, "layer-ops", ["healthcare.googleapis.com"])   # operations/acf.*
    polled = [r["path"] for r in records(rec) if r["path"].startswith(("/v3/operations/", "/v1/operations/"))]
    assert any(p.startswith("/v3/operations/cp.") for p in polled) and any("/v1/operations/acf." in p for p in polled)
    # already enabled: answered done (noop.DONE_OPERATION); never polled
    op = target.serviceusage().services().enable(name="projects/layer-ops/services/healthcare.googleapis.com", body={}).execute()
    assert op.get("done") is True
    before = len(records(rec))
    assert operations.serviceusage(target, op, deadline=time.monotonic() + 5)["done"]
    assert len(records(rec)) == before
    # Healthcare dataset-level operation, with growing intervals
    name = "projects/layer-ops/locations/us-central1/datasets/opsd"
    dctx = Ctx(target, "dataset", services=("healthcare.googleapis.com",))
    dataset.create(dctx, name, "UTC")
    gets = [r for r in records(rec) if "/datasets/opsd/operations/" in r["path"]]
    assert gets, "the dataset operation was polled"
    assert dataset.read(dctx, name).name == name


def test_an_operation_that_finishes_with_error_raises_googles_message(emulator_factory):
    emu = emulator_factory(faults="operation=1.0")
    target = Target(emulator=emu.url)
    from google.cloud import resourcemanager_v3

    op = target.projects().create_project(project=resourcemanager_v3.Project(project_id="layer-opfail", parent=ORG), retry=None)
    with pytest.raises(errors.OperationFailed) as exc:
        operations.crm(target, op, deadline=time.monotonic() + 10)
    assert exc.value.code == 13 and "Internal error" in str(exc.value)
    assert "code 13" in RetryPolicy().classify(exc.value)
    err = errors.to_provision_error(exc.value, "project", "projects/layer-opfail")
    assert "failed with INTERNAL (code 13)" in str(err)


def test_an_operation_wait_has_a_deadline(emulator_factory):
    emu = emulator_factory(latency="realistic", time_scale=1.0)
    target = Target(emulator=emu.url)
    from google.cloud import resourcemanager_v3

    op = target.projects().create_project(project=resourcemanager_v3.Project(project_id="layer-slow", parent=ORG), retry=None)
    t0 = time.monotonic()
    with pytest.raises(errors.OperationTimeout):
        operations.crm(target, op, deadline=time.monotonic() + 0.5)
    assert time.monotonic() - t0 < 1.5
