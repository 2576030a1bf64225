"""The library entry points the CLI calls: plan, apply, status, destroy (apply_many lives in pipeline.py).

No command line here: each function takes a loaded `Blueprint` and a `Target` and returns a
result object with `to_json()` (stable keys) and `render()` (for people). Expected failures
raise `ProvisionError` subclasses with one clear message.
"""
from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

from provision import plan as plan_mod
from provision import preflight
from provision.engine import Engine, Event, Listener, RunResult, StepResult, emit
from provision.errors import ProvisionError
from provision.gcp.context import Ctx
from provision.gcp.errors import to_provision_error
from provision.gcp.retry import Cancelled
from provision.gcp.target import Target
from provision.plan import CREATE, DELETE, KEEP, NOOP, UPDATE, Plan, Step
from provision.resources import bucket as bucket_mod
from provision.resources import bucket_iam, dataset as dataset_mod, dicom_import, dicom_store
from provision.resources import iam as iam_mod
from provision.resources import project as project_mod
from provision.resources import project_iam

__all__ = ["plan", "apply", "status", "destroy", "ApplyResult", "StatusReport", "DestroyResult",
           "ApplyFailed", "NeedsFlag", "Target"]


def _ctx(bp: Any, target: Target, cancel: threading.Event | None = None) -> Ctx:
    ctx = Ctx(target, "read", services=tuple(bp.apis), cancel=cancel)
    ctx.facts["project_id"] = bp.project.id
    return ctx


@contextlib.contextmanager
def _as_provision_error(step: str, resource: str, target: Target, project: str) -> Iterator[None]:
    """Outside the engine too, an expected failure (API error, unreachable endpoint, missing
    credentials) ends as one ProvisionError, never a traceback."""
    try:
        yield
    except (ProvisionError, KeyboardInterrupt, Cancelled):
        raise
    except Exception as exc:  # noqa: BLE001
        err = to_provision_error(exc, step, resource, project=project, target=target)
        attempts = getattr(exc, "provision_attempts", None)
        if attempts and "attempt" not in str(err):
            err.args = (f"{err} (gave up after {attempts} attempts)",)
        raise err from None


# ---------------------------------------------------------------------------- plan
def plan(bp: Any, target: Target, *, listener: Listener | None = None, ctx: Ctx | None = None,
         check_permissions: bool = True) -> Plan:
    """Read live state and diff it against the blueprint. Changes nothing (reads only).

    Raises PreflightError when the caller lacks permissions the plan needs."""
    with _as_provision_error("plan", f"projects/{bp.project.id}", target, bp.project.id):
        return _plan(bp, target, listener=listener, ctx=ctx, check_permissions=check_permissions)


def _plan(bp: Any, target: Target, *, listener: Listener | None, ctx: Ctx | None, check_permissions: bool) -> Plan:
    ctx = ctx or _ctx(bp, target)
    if listener is not None and ctx.reporter.on_retry is None:
        ctx.reporter.on_retry = lambda n, d, r: emit(listener, Event("retry", "plan", r, attempt=n, delay=d,
                                                                      project=bp.project.id))
    emit(listener, Event("reading", "plan", f"reading live state of {bp.project.id} on {target.label}",
                          project=bp.project.id))
    live = plan_mod.observe_project(ctx, bp)
    plan_mod.refuse_inactive(live.project)  # before preflight: its message says how to restore the project
    notes: list[str] = []
    if check_permissions:
        missing, notes = preflight.check(ctx, bp, live.project is not None, live.billing)
        if missing:
            raise preflight.PreflightError(missing, bp.project.id)
    live = plan_mod.observe(ctx, bp, live)
    result = plan_mod.build(bp, live, target.label)
    result.notes = notes + result.notes
    ctx.facts.update(result.facts)
    return result


# ---------------------------------------------------------------------------- apply
@dataclass
class ApplyResult:
    project: str
    target: str
    changed: bool
    plan: Plan
    steps: list[StepResult] = field(default_factory=list)
    elapsed: float = 0.0
    outputs: dict = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def retries(self) -> int:
        return sum(s.retries for s in self.steps)

    @property
    def summary(self) -> str:
        if self.error:
            return "failed"
        return f"applied: {self.plan.summary()}" if self.changed else "no changes"

    def to_json(self) -> dict:
        return {
            "project": self.project,
            "target": self.target,
            "ok": self.ok,
            "changed": self.changed,
            "summary": self.summary,
            "elapsed_s": round(self.elapsed, 3),
            "retries": self.retries,
            "steps": [s.to_json() for s in self.steps],
            "outputs": self.outputs,
            "notes": list(self.plan.notes),
            "error": self.error,
        }

    def render(self) -> str:
        if not self.changed:
            return f"{self.project}: no changes ({self.elapsed:.1f}s)"
        lines = [f"{self.project}: {self.summary} in {self.elapsed:.1f}s ({self.retries} retries)"]
        for s in self.steps:
            if s.action not in (NOOP, KEEP) or s.status != "done":
                lines.append(f"  {s.status:<8} {s.id:<24} {s.elapsed:6.1f}s  {s.message}")
        return "\n".join(lines)


class NeedsFlag(ProvisionError):
    """Destroy refuses without a confirmation: `needs` names the option (`delete_data`,
    `delete_project`) that would allow it, so a CLI can name its own flag."""

    def __init__(self, message: str, needs: str):
        self.needs = needs
        super().__init__(message)


class ApplyFailed(ProvisionError):
    """A step failed: the message is the step's; `result` holds every step's outcome."""

    def __init__(self, message: str, result: ApplyResult):
        self.result = result
        super().__init__(message)


def _outputs(bp: Any, target: Target, facts: dict) -> dict:
    root = target.root("healthcare")
    stores = {s.id: {"name": plan_mod.store_name(bp, s.id),
                     "dicomweb": f"{root}/v1/{plan_mod.store_name(bp, s.id)}/dicomWeb"} for s in bp.dicom_stores}
    out = {"project_id": bp.project.id, "dataset": plan_mod.dataset_name(bp), "dicom_stores": stores}
    if facts.get("project_number"):
        out["project_number"] = facts["project_number"]
    if facts.get("agent"):
        out["service_agent"] = facts["agent"].split(":", 1)[-1]
    return out


def apply(bp: Any, target: Target, listener: Listener | None = None, *, plan_: Plan | None = None,
          cancel: threading.Event | None = None) -> ApplyResult:
    """Make live state match the blueprint. With nothing to do, only reads are made ("no changes").

    Raises ApplyFailed (a ProvisionError, exit 1) naming the failed step; PreflightError when
    permissions are missing (nothing changed)."""
    started = time.monotonic()
    ctx = _ctx(bp, target, cancel)
    the_plan = plan_ or plan(bp, target, listener=listener, ctx=ctx)
    ctx.facts.update(the_plan.facts)
    if not the_plan.has_changes:
        result = ApplyResult(bp.project.id, target.label, False, the_plan,
                             [StepResult(s.id, s.action, "done", 0.0, "no changes") for s in the_plan.steps],
                             time.monotonic() - started, _outputs(bp, target, ctx.facts))
        emit(listener, Event("finished", "apply", "no changes", result.elapsed, project=bp.project.id))
        return result
    run: RunResult = Engine(ctx, listener, project=bp.project.id).run(the_plan.steps)
    result = ApplyResult(bp.project.id, target.label, True, the_plan, run.results, time.monotonic() - started,
                         _outputs(bp, target, ctx.facts))
    err = run.first_error()
    if err is not None or not run.ok:
        result.error = str(err) if err else "some steps did not finish"
        emit(listener, Event("finished", "apply", "failed", result.elapsed, project=bp.project.id))
        raise ApplyFailed(result.error, result)
    emit(listener, Event("finished", "apply", result.summary, result.elapsed, project=bp.project.id))
    return result


# ---------------------------------------------------------------------------- status
STATE_OF = {CREATE: "missing", UPDATE: "drift", NOOP: "ok", KEEP: "ok", DELETE: "extra"}


@dataclass
class StatusReport:
    project: str
    target: str
    resources: list[dict]
    notes: list[str]

    @property
    def in_sync(self) -> bool:
        return all(r["state"] == "ok" for r in self.resources)

    def to_json(self) -> dict:
        return {"project": self.project, "target": self.target, "in_sync": self.in_sync,
                "resources": self.resources, "notes": self.notes}

    def render(self) -> str:
        head = "in sync" if self.in_sync else f"{sum(r['state'] != 'ok' for r in self.resources)} resource(s) differ"
        lines = [f"status of {self.project} on {self.target}: {head}"]
        for r in self.resources:
            lines.append(f"  {r['state']:<8} {r['id']:<24} {r['resource']}")
            for d in r["details"]:
                lines.append(f"      {d}")
        for n in self.notes:
            lines.append(f"  note: {n}")
        return "\n".join(lines)


def status(bp: Any, target: Target) -> StatusReport:
    """Live state versus the blueprint (drift), from reads only. A project that is not ACTIVE
    (pending deletion) is reported with its state, not as an error."""
    with _as_provision_error("status", f"projects/{bp.project.id}", target, bp.project.id):
        ctx = _ctx(bp, target)
        live = plan_mod.observe_project(ctx, bp)
        if live.project is not None and live.project.state != "ACTIVE":
            st = live.project.state
            return StatusReport(bp.project.id, target.label, [
                {"id": "project", "kind": "project", "resource": f"projects/{bp.project.id}", "state": st,
                 "details": [f"the project is {st} (deleted, pending purge); restore it with "
                             f"`gcloud projects undelete {bp.project.id}`"]}], [])
        p = plan(bp, target, check_permissions=False, ctx=ctx)
    resources = [{"id": s.id, "kind": s.kind, "resource": s.resource, "state": STATE_OF.get(s.action, s.action),
                  "details": list(s.changes)} for s in p.steps]
    return StatusReport(bp.project.id, target.label, resources, list(p.notes))


# ---------------------------------------------------------------------------- destroy
@dataclass
class DestroyResult:
    project: str
    target: str
    steps: list[Step]
    results: list[StepResult]
    kept: list[str]

    def to_json(self) -> dict:
        return {"project": self.project, "target": self.target,
                "steps": [dict(s.to_json(), status=r.status, message=r.message) for s, r in zip(self.steps, self.results)],
                "kept": self.kept}

    def render(self) -> str:
        if not self.steps:
            return f"destroy {self.project} on {self.target}: nothing to destroy"
        lines = [f"destroy {self.project} on {self.target}:"]
        for s, r in zip(self.steps, self.results):
            lines.append(f"  {s.action:<7} {s.id:<24} {r.status:<8} {r.message or ', '.join(s.changes)}")
        return "\n".join(lines)


def destroy_plan(bp: Any, target: Target, *, delete_data: bool = False, delete_project: bool = False,
                 ctx: Ctx | None = None) -> tuple[list[Step], list[str]]:
    """What destroy would do: only what the blueprint describes, data and project kept unless asked.

    Steps are only what would change; what is kept is said in the second list."""
    with _as_provision_error("destroy", f"projects/{bp.project.id}", target, bp.project.id):
        return _destroy_plan(bp, target, delete_data=delete_data, delete_project=delete_project, ctx=ctx)


def _destroy_plan(bp: Any, target: Target, *, delete_data: bool, delete_project: bool,
                  ctx: Ctx | None) -> tuple[list[Step], list[str]]:
    ctx = ctx or _ctx(bp, target)
    live = plan_mod.observe_project(ctx, bp)
    project = live.project
    if project is None or project.state != "ACTIVE":
        why = "does not exist (or is not visible to you)" if project is None else f"is {project.state} (pending deletion)"
        return [], [f"nothing to destroy: project {bp.project.id} {why}"]
    live = plan_mod.observe(ctx, bp, live)
    pid = bp.project.id
    steps: list[Step] = []
    kept: list[str] = []
    agent = f"serviceAccount:service-{project.number}@gcp-sa-healthcare.iam.gserviceaccount.com"
    store_deletes: list[str] = []
    holds_data: list[str] = []
    for s in bp.dicom_stores:
        sname = plan_mod.store_name(bp, s.id)
        state = live.stores.get(s.id)
        if state is None:
            continue
        pairs = _ours(live.store_policies.get(s.id), state.labels, iam_mod.pairs_of(s.iam), f"DICOM store {s.id}", kept)
        deps = []
        if pairs:
            steps.append(Step(f"store-iam:{s.id}", "dicom-store-iam", sname, DELETE, iam_mod.describe(pairs, "-"), [],
                              lambda c, n=sname, p=pairs: f"removed {len(dicom_store.revoke(c, n, p))} binding(s)"))
            deps = [f"store-iam:{s.id}"]
        studies = dicom_import.count_studies(ctx, sname, stop_at=1)
        if studies and not delete_data:
            holds_data.append(s.id)
            kept.append(f"DICOM store {s.id} holds data: kept (delete_data is needed to delete a store that holds data)")
        else:
            steps.append(Step(f"store:{s.id}", "dicom-store", sname, DELETE, [f"delete DICOM store {s.id}"], deps,
                              lambda c, n=sname: (dicom_store.delete(c, n), "deleted")[1]))
            store_deletes.append(f"store:{s.id}")
    if delete_project and holds_data:
        raise NeedsFlag(f"deleting the project would delete the data in DICOM store(s) {', '.join(holds_data)}; "
                        "confirm with delete_data as well", needs="delete_data")
    if live.dataset is not None:
        dname = plan_mod.dataset_name(bp)
        if holds_data:
            kept.append(f"dataset {bp.dataset.id}: kept (it holds a store with data)")
        else:
            def run_dataset(c: Ctx, n=dname) -> str:
                others = _other_stores(c, n)
                if others:
                    c.note(f"dataset keeps {len(others)} store(s) the blueprint does not describe: not deleted")
                    return f"kept: holds {', '.join(others)}"
                dataset_mod.delete(c, n)
                return "deleted"

            steps.append(Step("dataset", "dataset", dname, DELETE, [f"delete dataset {bp.dataset.id} (if no other stores)"],
                              list(store_deletes), run_dataset))
    if bp.bucket and live.bucket and live.bucket.exists and live.bucket.accessible:
        b = bp.bucket
        deps = []
        if plan_mod.bucket_is_ours(bp, live) and _ours(live.bucket_policy, live.bucket.labels,
                                                         [(bucket_iam.VIEWER, agent)], f"gs://{b.name}", kept):
            steps.append(Step("bucket-iam", "bucket-iam", f"gs://{b.name}", DELETE, [f"- {agent} {bucket_iam.VIEWER}"], [],
                              lambda c: f"removed {len(bucket_iam.revoke(c, b.name, agent))} binding(s)"))
            deps = ["bucket-iam"]
        ours = plan_mod.bucket_is_ours(bp, live)
        if b.create and ours:
            has_objects = bool(ctx.call(lambda: list(ctx.target.storage().list_blobs(b.name, max_results=1, retry=None))))
            if has_objects and not delete_data:
                kept.append(f"bucket gs://{b.name} holds objects: kept (delete_data is needed to delete a bucket "
                            "that holds objects)")
            else:
                steps.append(Step("bucket", "bucket", f"gs://{b.name}", DELETE, [f"delete gs://{b.name}"], deps,
                                  lambda c: (bucket_mod.delete(c, b.name, force=delete_data), "deleted")[1]))
        elif not ours:
            kept.append(f"bucket gs://{b.name}: belongs to another project, not deleted")
        else:
            kept.append(f"bucket gs://{b.name}: not ours to delete (create: false)")
    pairs = _ours(live.project_policy, project.labels, iam_mod.pairs_of(bp.iam), f"project {pid}", kept)
    if pairs:
        steps.append(Step("project-iam", "project-iam", f"projects/{pid}", DELETE, iam_mod.describe(pairs, "-"), [],
                          lambda c: f"removed {len(project_iam.revoke(c, pid, pairs))} binding(s)"))
    if delete_project:
        steps.append(Step("project", "project", f"projects/{pid}", DELETE, [f"delete project {pid}"],
                          [s.id for s in steps], lambda c: (project_mod.delete(c, pid), "deletion requested")[1]))
    else:
        kept.append(f"project {pid}: kept (delete_project is needed to delete it)")
    return steps, kept


def _ours(policy: dict | None, labels: dict | None, pairs: list, where: str, kept: list[str]) -> list:
    """The pairs present that provision added (marked); those it did not add are left alone (said in `kept`)."""
    present = iam_mod.present(policy, pairs)
    ours = iam_mod.marked(labels, present)
    for role, member in present:
        if (role, member) not in ours:
            kept.append(f"{where}: {member} {role} was not added by provision: left alone")
    return ours


def _other_stores(ctx: Ctx, dataset_name: str) -> list[str]:
    ds = ctx.target.healthcare().projects().locations().datasets()
    out = []
    for kind, method in (("dicomStores", ds.dicomStores), ("fhirStores", ds.fhirStores), ("hl7V2Stores", ds.hl7V2Stores)):
        try:
            page = ctx.execute(method().list(parent=dataset_name))
        except Exception as exc:  # noqa: BLE001
            from provision.gcp.errors import is_status

            if is_status(exc, 404, 501):
                continue
            raise
        out += [x.get("name", "").rsplit("/", 1)[-1] for x in page.get(kind) or []]
    return out


def destroy(bp: Any, target: Target, delete_data: bool = False, delete_project: bool = False,
            listener: Listener | None = None, *, plan_: tuple[list[Step], list[str]] | None = None) -> DestroyResult:
    """Delete what the blueprint describes. Stores holding data, non-empty buckets and the project
    are kept unless asked; only the IAM bindings provision added are removed. `plan_` is a
    `destroy_plan` result already shown to (and confirmed by) the user: exactly that runs."""
    ctx = _ctx(bp, target)
    steps, kept = plan_ or destroy_plan(bp, target, delete_data=delete_data, delete_project=delete_project, ctx=ctx)
    if not steps:
        return DestroyResult(bp.project.id, target.label, [], [], kept)
    run = Engine(ctx, listener, project=bp.project.id).run(steps)
    err = run.first_error()
    if err is not None:
        raise err
    return DestroyResult(bp.project.id, target.label, steps, run.results, kept)
