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
from typing import TYPE_CHECKING, Any, Iterator

from provision.planning import plan as plan_mod
from provision.checks import before_write, preflight
from provision.running.engine import Engine, Event, Listener, RunResult, StepResult, emit
from provision.errors import ProvisionError
from provision.gcp.context import Ctx, Facts
from provision.gcp.door import local_url
from provision.gcp.errors import to_provision_error
from provision.gcp.retry import Cancelled
from provision.gcp.target import Target
from provision.planning.plan import CREATE, DELETE, KEEP, NOOP, REPLACE, UPDATE, Plan, Step
from provision.resources import apis
from provision.resources import lock as lock_mod
from provision.resources import record as record_mod
from provision.resources.lock import LockHeld, ProjectLock
from provision.resources.steps import Options
from provision.words import plural

if TYPE_CHECKING:  # for annotations only: no import at run time
    from provision.blueprint.models import Blueprint

__all__ = ["plan", "apply", "status", "destroy", "ApplyResult", "StatusReport", "DestroyResult",
           "ApplyFailed", "NeedsFlag", "LockHeld", "Target", "Options", "unlock"]


def _ctx(bp: Blueprint, target: Target, cancel: threading.Event | None = None) -> Ctx:
    ctx = Ctx(target, "read", services=tuple(apis.wanted(bp)), cancel=cancel)
    ctx.facts.project_id = bp.project.id
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
        raise to_provision_error(exc, step, resource, project=project, target=target, attempts=True) from None


# ---------------------------------------------------------------------------- plan
def plan(bp: Blueprint, target: Target, *, listener: Listener | None = None, ctx: Ctx | None = None,
         check_permissions: bool = True, opts: Options | None = None) -> Plan:
    """Read live state and the ownership record, and diff them against the blueprint. Changes nothing.

    Raises PreflightError when the caller lacks permissions the plan needs, PlanRefused when Google would
    refuse the blueprint halfway (checks/before_write.py)."""
    with _as_provision_error("plan", f"projects/{bp.project.id}", target, bp.project.id):
        return _plan(bp, target, listener=listener, ctx=ctx, check_permissions=check_permissions,
                     opts=opts or Options())


def _plan(bp: Blueprint, target: Target, *, listener: Listener | None, ctx: Ctx | None, check_permissions: bool,
          opts: Options, live: plan_mod.Live | None = None) -> Plan:
    ctx = ctx or _ctx(bp, target)
    if listener is not None and ctx.reporter.on_retry is None:
        ctx.reporter.on_retry = lambda n, d, r: emit(listener, Event("retry", "plan", r, attempt=n, delay=d,
                                                                      project=bp.project.id))
    emit(listener, Event("reading", "plan", f"reading live state of {bp.project.id} on {target.label}",
                          project=bp.project.id))
    live = live or plan_mod.observe(ctx, bp, opts, phases=(1,))   # status has read phase 1 already
    plan_mod.refuse_inactive(live.project)  # before preflight: its message says how to restore the project
    notes: list[str] = []
    if check_permissions and not opts.destroy:
        missing, notes = preflight.check(ctx, bp, live.project is not None, live.billing)
        if missing:
            raise preflight.PreflightError(missing, bp.project.id)
    live = plan_mod.observe(ctx, bp, opts, phases=(2, 3), live=live)
    built = _build(bp, live, target.label, opts)
    if not opts.destroy:   # what Google would refuse halfway: refused here, before any write
        writes = not isinstance(built, Plan) or built.has_changes   # a no-op plan reads no organization policy
        notes += before_write.refuse(ctx, bp, live, read_policies=check_permissions, writes=writes)
    if not isinstance(built, Plan):
        raise built
    result = built
    result.notes = notes + result.notes
    ctx.facts.update(result.facts)
    return result


def _build(bp: Blueprint, live: plan_mod.Live, label: str, opts: Options) -> Plan | ProvisionError:
    """The plan, or the error that refused building it, held back so that what Google would refuse
    (before_write) is said first, as when it was checked before building."""
    try:
        return plan_mod.build(bp, live, label, opts)
    except ProvisionError as exc:
        return exc


# ---------------------------------------------------------------------------- apply
@dataclass
class ApplyResult:
    project: str
    target: str
    changed: bool
    plan: Plan
    steps: list[StepResult] = field(default_factory=list)
    elapsed: float = 0.0
    outputs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    interrupted: bool = False   # Ctrl-C stopped the run: `stopped()` says where

    @property
    def ok(self) -> bool:
        return self.error is None

    def stopped(self) -> dict[str, Any]:
        """Where an interrupted run stopped: steps that finished (with a change), were in flight
        (stopped at their next wait; Google may still finish them), and never started."""
        return {"finished": [s.id for s in self.steps if s.status == "done" and s.message != "no changes"],
                "in_flight": [s.id for s in self.steps if s.status in ("running", "failed") and s.message == "interrupted"],
                "skipped": [s.id for s in self.steps if s.status == "skipped"]}

    @property
    def retries(self) -> int:
        return sum(s.retries for s in self.steps)

    @property
    def summary(self) -> str:
        if self.error:
            return "failed"
        return f"applied: {self.plan.summary()}" if self.changed else "no changes"

    def to_json(self) -> dict[str, Any]:
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
            **({"interrupted": self.stopped()} if self.interrupted else {}),
        }

    def render(self) -> str:
        """One summary line; below it only the steps that did not finish (progress showed the others); then
        the hosted viewer's URL when there is one."""
        viewer = viewer_lines(self.outputs, " (sign in with your Google account)")
        if not self.changed:
            return "\n".join([f"{self.project}: no changes ({self.elapsed:.1f}s)", *viewer])
        retries = f", {plural(self.retries, 'retry')}" if self.retries else ""
        lines = [f"{self.project}: {self.summary} in {self.elapsed:.1f}s{retries}"]
        unfinished = [s for s in self.steps if s.status != "done"]
        w = max((len(s.id) for s in unfinished), default=0)
        lines += [f"  {s.status:<8} {s.id:<{w}}  {s.elapsed:6.1f}s  {s.message}" for s in unfinished]
        return "\n".join(lines + viewer)


class NeedsFlag(ProvisionError):
    """Apply or destroy refuses without a confirmation: `needs` names the option (`delete_data`,
    `replace`) that would allow it, so a CLI can name its own flag. Nothing was changed."""

    def __init__(self, message: str, needs: str):
        self.needs = needs
        super().__init__(message)


class ApplyFailed(ProvisionError):
    """A step failed: the message is the step's; `result` holds every step's outcome."""

    def __init__(self, message: str, result: ApplyResult):
        self.result = result
        super().__init__(message)


def _outputs(bp: Blueprint, target: Target, facts: Facts) -> dict[str, Any]:
    root = target.root("healthcare")
    stores = {s.id: {"name": plan_mod.store_name(bp, s.id),
                     "dicomweb": f"{root}/v1/{plan_mod.store_name(bp, s.id)}/dicomWeb"} for s in bp.dicom_stores}
    out = {"project_id": bp.project.id, "dataset": plan_mod.dataset_name(bp), "dicom_stores": stores}
    if facts.project_number:
        out["project_number"] = facts.project_number
    if facts.agent:
        out["service_agent"] = facts.agent.split(":", 1)[-1]
    if facts.viewer_url:
        out["viewer_url"] = facts.viewer_url   # the hosted viewer (viewer.hosting), read back from Cloud Run
        out.update(_local(facts.viewer_url, target))
    return out


def _local(viewer_url: str, target: Target) -> dict[str, str]:
    """`viewer_local_url`: where a person's browser opens the hosted viewer on a local emulator."""
    local = local_url(viewer_url, target.emulator)
    return {"viewer_local_url": local} if local else {}


def viewer_lines(outputs: dict[str, Any], note: str = "") -> list[str]:
    """The hosted viewer's URL and, on a local emulator, the address to open it at in a browser."""
    if not outputs.get("viewer_url"):
        return []
    lines = [f"viewer: {outputs['viewer_url']}{note}"]
    if outputs.get("viewer_local_url"):
        lines.append(f"  on this emulator, open {outputs['viewer_local_url']} in your browser (Chrome, Firefox) "
                     "and sign in on the emulated Google page as a member (no password)")
    return lines


def apply(bp: Blueprint, target: Target, listener: Listener | None = None, *, plan_: Plan | None = None,
          cancel: threading.Event | None = None, opts: Options | None = None) -> ApplyResult:
    """Make live state match the blueprint. With nothing to do, only reads are made ("no changes").

    Changes run under the project's lock (provision/resources/lock.py): another run holding it
    stops this one (LockHeld, naming the holder) or, with `opts.wait_lock_s`, is waited for and
    the plan made again. Raises ApplyFailed (a ProvisionError, exit 1) naming the failed step;
    PreflightError when permissions are missing, NeedsFlag when the plan replaces something and
    `opts.replace` is not set (nothing changed in these cases)."""
    started = time.monotonic()
    opts = opts or Options()
    ctx = _ctx(bp, target, cancel)
    the_plan = plan_ or plan(bp, target, listener=listener, ctx=ctx, opts=opts)
    refuse_replacements(the_plan, opts)
    if not the_plan.has_changes:
        return _unchanged(bp, target, ctx, the_plan, started, listener)
    lock = ProjectLock(bp.project.id, "apply", unlock_hint=_unlock_hint(bp))
    ctx.facts.lock = lock   # the record store takes a pending lock when it makes the bucket
    with lock_mod.holding(lock, ctx):
        if _take_lock(lock, ctx, bp, opts, the_plan, listener):
            the_plan = _plan_again(bp, target, ctx, opts, the_plan, confirmed=plan_ is not None, listener=listener)
            if not the_plan.has_changes:
                return _unchanged(bp, target, ctx, the_plan, started, listener)
        return _run_plan(bp, target, ctx, the_plan, started, listener)


def _unlock_hint(bp: Blueprint) -> str:
    """`provision unlock team.yaml`: the blueprint as the user would type it (relative when it can be)."""
    import os

    if bp.source is None:
        return f"provision unlock BLUEPRINT (the blueprint of {bp.project.id})"
    rel = os.path.relpath(bp.source)
    return f"provision unlock {rel if not rel.startswith('..') else bp.source}"


def _unchanged(bp: Blueprint, target: Target, ctx: Ctx, the_plan: Plan, started: float,
               listener: Listener | None) -> ApplyResult:
    ctx.facts.update(the_plan.facts)
    result = ApplyResult(bp.project.id, target.label, False, the_plan,
                         [StepResult(s.id, s.action, "done", 0.0, "no changes") for s in the_plan.steps],
                         time.monotonic() - started, _outputs(bp, target, ctx.facts))
    emit(listener, Event("finished", "apply", "no changes", result.elapsed, project=bp.project.id))
    return result


def _take_lock(lock: ProjectLock, ctx: Ctx, bp: Blueprint, opts: Options, the_plan: Plan,
               listener: Listener | None) -> bool:
    """Take the project's lock; whether this run waited for another's (so the plan may be stale)."""
    def waiting(holder: dict[str, Any]) -> None:
        emit(listener, Event("waiting", "lock", f"waiting for the lock of {bp.project.id}: held by "
                             f"{lock_mod.describe(holder)}", project=bp.project.id))

    # A project that does not exist yet has no record bucket of its own: the lock waits for it.
    ours = the_plan.live is None or the_plan.live.project is not None
    def note(message: str) -> None:
        emit(listener, Event("note", "lock", message, project=bp.project.id))

    with _as_provision_error("lock", lock.where, ctx.target, bp.project.id):
        return lock.acquire(ctx, wait_s=opts.wait_lock_s, bucket_ours=ours, on_wait=waiting, on_note=note)


def _plan_again(bp: Blueprint, target: Target, ctx: Ctx, opts: Options, old: Plan, *, confirmed: bool,
                listener: Listener | None) -> Plan:
    """After waiting for another run: plan again. A plan the user confirmed runs only unchanged."""
    fresh = plan(bp, target, listener=listener, ctx=ctx, opts=opts)
    refuse_replacements(fresh, opts)

    def shape(p: Plan) -> list[tuple[str, str, list[str]]]:
        return [(s.id, s.action, list(s.changes)) for s in p.changes]

    if confirmed and shape(fresh) != shape(old):
        raise ProvisionError(f"another run changed {bp.project.id} while this one waited for its lock, and the plan "
                             "you confirmed no longer holds; nothing was changed. Plan again")
    return fresh


def _run_plan(bp: Blueprint, target: Target, ctx: Ctx, the_plan: Plan, started: float,
              listener: Listener | None) -> ApplyResult:
    ctx.facts.update(the_plan.facts)
    ctx.facts.claims = [c for s in the_plan.changes for c in s.claims]
    run: RunResult = Engine(ctx, listener, project=bp.project.id).run(the_plan.steps)
    result = ApplyResult(bp.project.id, target.label, True, the_plan, run.results, time.monotonic() - started,
                         _outputs(bp, target, ctx.facts), interrupted=bool(ctx.cancel and ctx.cancel.is_set()))
    err = run.first_error()
    if result.interrupted:
        where = result.stopped()
        result.error = (f"interrupted (Ctrl-C): {len(where['finished'])} step(s) finished, "
                        f"{len(where['in_flight'])} in flight, {len(where['skipped'])} not started; apply again to finish")
    if err is not None or not run.ok:
        result.error = result.error or (str(err) if err else "some steps did not finish")
        emit(listener, Event("finished", "apply", "failed", result.elapsed, project=bp.project.id))
        raise ApplyFailed(result.error, result)
    emit(listener, Event("finished", "apply", result.summary, result.elapsed, project=bp.project.id))
    return result


def refuse_replacements(the_plan: Plan, opts: Options) -> None:
    """A `-/+ replace` runs only when asked for: it deletes and re-creates, data included."""
    if the_plan.replacements and not opts.replace:
        what = "; ".join(f"{s.id} ({s.changes[0]})" for s in the_plan.replacements)
        raise NeedsFlag(f"the plan replaces {what}; nothing was changed. Read the plan (what happens to the data), "
                        "then allow it with the `replace` option (apply --replace), or restore the old value in "
                        "the blueprint", needs="replace")


# ---------------------------------------------------------------------------- status
STATE_OF = {CREATE: "missing", UPDATE: "drift", REPLACE: "drift", NOOP: "ok", KEEP: "kept", DELETE: "extra"}


@dataclass
class StatusReport:
    project: str
    target: str
    resources: list[dict[str, Any]]
    notes: list[str]
    outputs: dict[str, Any] = field(default_factory=dict)   # viewer_url when the hosted viewer runs

    @property
    def in_sync(self) -> bool:
        return all(r["state"] == "ok" for r in self.resources)

    def to_json(self) -> dict[str, Any]:
        return {"project": self.project, "target": self.target, "in_sync": self.in_sync,
                "resources": self.resources, "notes": self.notes, "outputs": dict(self.outputs)}

    def headline(self) -> str:
        n = sum(r["state"] != "ok" for r in self.resources)
        return "in sync" if self.in_sync else f"{n} resource{'' if n == 1 else 's'} differ{'s' if n == 1 else ''}"

    def render(self) -> str:
        head = self.headline()
        lines = [f"status of {self.project} on {self.target}: {head}"]
        w = max((len(r["id"]) for r in self.resources), default=0)
        for r in self.resources:
            lines.append(f"  {r['state']:<8} {r['id']:<{w}}  {r['resource']}")
            for d in r["details"]:
                lines.append(f"      {d}")
        for n in self.notes:
            lines.append(f"  note: {n}")
        lines += viewer_lines(self.outputs)
        return "\n".join(lines)


def status(bp: Blueprint, target: Target) -> StatusReport:
    """Live state versus the blueprint (drift), from reads only. A project that is not ACTIVE
    (pending deletion) is reported with its state, not as an error."""
    with _as_provision_error("status", f"projects/{bp.project.id}", target, bp.project.id):
        ctx = _ctx(bp, target)
        live = plan_mod.observe(ctx, bp, Options(), phases=(1,))
        if live.project is not None and live.project.state != "ACTIVE":
            st = live.project.state
            return StatusReport(bp.project.id, target.label, [
                {"id": "project", "kind": "project", "resource": f"projects/{bp.project.id}", "state": "pending_deletion",
                 "details": [f"the project is {st} (deleted, pending purge); restore it with "
                             f"`gcloud projects undelete {bp.project.id}`"]}], [])
        p = _plan(bp, target, listener=None, ctx=ctx, check_permissions=False, opts=Options(), live=live)
    resources = [{"id": s.id, "kind": s.kind, "resource": s.resource,
                  "state": "drift" if s.action == NOOP and s.drift else STATE_OF.get(s.action, s.action),
                  "details": list(s.changes) + list(s.drift)} for s in p.steps]
    outputs = {"viewer_url": p.facts.viewer_url, **_local(p.facts.viewer_url, target)} if p.facts.viewer_url else {}
    return StatusReport(bp.project.id, target.label, resources, list(p.notes), outputs)


# ---------------------------------------------------------------------------- destroy
@dataclass
class DestroyResult:
    project: str
    target: str
    steps: list[Step]
    results: list[StepResult]
    kept: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"project": self.project, "target": self.target,
                "deleted": [dict(s.to_json(), status=r.status, message=r.message) for s, r in zip(self.steps, self.results, strict=True)],
                "kept": self.kept}

    def render(self) -> str:
        if not self.steps:
            return f"destroy {self.project} on {self.target}: nothing to destroy"
        lines = [f"destroy {self.project} on {self.target}:"]
        w = max(len(s.id) for s in self.steps)
        for s, r in zip(self.steps, self.results, strict=True):
            lines.append(f"  {s.action:<7} {s.id:<{w}}  {r.status:<8} {r.message or ', '.join(s.changes)}")
        return "\n".join(lines)


@dataclass
class DestroyPlan:
    """What destroy will do (`steps`, only changes) and keep (`kept`, with the reason), and the
    facts its steps need (the ownership record). Unpacks as (steps, kept)."""

    steps: list[Step]
    kept: list[str]
    facts: Facts = field(default_factory=Facts, repr=False)

    def __iter__(self) -> Iterator[list[Step] | list[str]]:
        return iter((self.steps, self.kept))

    @property
    def deletes_data(self) -> bool:
        """Some step deletes studies or objects (what a typed confirmation guards)."""
        return any(" and its " in c for s in self.steps for c in s.changes)


def render_destroy_plan(project: str, the_plan: DestroyPlan) -> str:
    """What destroy will delete (with the studies and objects lost) and keep, and why."""
    if not the_plan.steps:
        return "\n".join([f"{project}: nothing to destroy"] + [f"  keep   {k}" for k in the_plan.kept
                                                                 if not k.startswith("nothing to destroy")])
    lines = [f"{project}: destroy deletes {len(the_plan.steps)} and keeps {len(the_plan.kept)}"]
    w = max(len(s.id) for s in the_plan.steps)
    lines += [f"  delete {s.id:<{w}}  {'; '.join(s.changes)}" for s in the_plan.steps]
    lines += [f"  keep   {k}" for k in the_plan.kept]
    return "\n".join(lines)


def destroy_plan(bp: Blueprint, target: Target, *, delete_data: bool = False, delete_project: bool = False,
                 ctx: Ctx | None = None) -> DestroyPlan:
    """What destroy would do: remove what the record says provision made (data and project kept
    unless asked). Steps are only what would change; what is kept, and why, is said in `kept`."""
    with _as_provision_error("destroy", f"projects/{bp.project.id}", target, bp.project.id):
        ctx = ctx or _ctx(bp, target)
        opts = Options(destroy=True, delete_data=delete_data, delete_project=delete_project)
        live = plan_mod.observe(ctx, bp, opts, phases=(1,))
        project = live.project
        if project is None or project.state != "ACTIVE":
            why = "does not exist (or is not visible to you)" if project is None else f"is {project.state} (pending deletion)"
            return DestroyPlan([], [f"nothing to destroy: project {bp.project.id} {why}"])
        p = plan_mod.build(bp, plan_mod.observe(ctx, bp, opts, phases=(2, 3), live=live), target.label, opts)
    kept = [f"{s.id} {s.resource}: {'; '.join(s.changes)}" for s in p.kept] + list(p.notes)
    with_data = [s.id for s in p.kept if "--delete-data" in " ".join(s.changes)]
    if delete_project and with_data:
        raise NeedsFlag(f"deleting the project would delete the data that {', '.join(with_data)} hold(s); "
                        "confirm with delete_data as well", needs="delete_data")
    steps = p.changes
    assert p.live is not None   # plan_mod.build keeps what it read
    if not delete_project and _leaves_record_empty(p, p.live.record) and p.live.record.generation:
        steps.append(Step("record", "record", p.facts.record.where, DELETE,
                          ["delete the ownership record and its bucket (it names nothing any more)"],
                          [s.id for s in steps], lambda c: (c.facts.record.delete(c), "deleted")[1]))
    return DestroyPlan(steps, kept, p.facts)


def _leaves_record_empty(p: Plan, rec: record_mod.Record) -> bool:
    """Every resource and grant the record `rec` names is deleted by this destroy (none is kept)."""
    if rec.owns("project", p.project):
        return False   # the project stays, and the record says provision made it
    named = {n for _, n in rec.resources} | rec.granted_resources()
    return not any(s.resource in named or s.resource.removeprefix("gs://") in named for s in p.kept)


def destroy(bp: Blueprint, target: Target, delete_data: bool = False, delete_project: bool = False,
            listener: Listener | None = None, *, plan_: DestroyPlan | None = None,
            wait_lock_s: float = 0.0) -> DestroyResult:
    """Delete what provision made for this blueprint (its record says what). Stores holding data,
    non-empty buckets and the project are kept unless asked; only the grants provision added are revoked. `plan_` is a
    `destroy_plan` result already shown to (and confirmed by) the user: exactly that runs."""
    ctx = _ctx(bp, target)
    the_plan = plan_ or destroy_plan(bp, target, delete_data=delete_data, delete_project=delete_project, ctx=ctx)
    steps, kept = the_plan.steps, the_plan.kept
    ctx.facts.update(the_plan.facts)
    if not steps:
        return DestroyResult(bp.project.id, target.label, [], [], kept)
    lock = ProjectLock(bp.project.id, "destroy", unlock_hint=_unlock_hint(bp))
    with lock_mod.holding(lock, ctx):   # quiet when destroy deleted the record's bucket, lock and all
        with _as_provision_error("lock", lock.where, target, bp.project.id):
            lock.acquire(ctx, wait_s=wait_lock_s)   # the record (and so its bucket) exists: destroy has steps
        run = Engine(ctx, listener, project=bp.project.id).run(steps)
    err = run.first_error()
    if err is not None:
        raise err
    return DestroyResult(bp.project.id, target.label, steps, run.results, kept)


# ---------------------------------------------------------------------------- unlock
def unlock(bp: Blueprint, target: Target) -> dict[str, Any] | None:
    """Break the project's lock (a run that died left it): what it said about its holder, or None."""
    with _as_provision_error("unlock", f"gs://{record_mod.bucket_for(bp.project.id)}/{lock_mod.OBJECT}", target,
                             bp.project.id):
        return lock_mod.break_lock(_ctx(bp, target), bp.project.id)
