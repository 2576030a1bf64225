"""Desired resources (the blueprint) + observed state + the ownership record -> an ordered plan.

plan.py knows no resource kind: it asks each kind in `KINDS` what to read (three phases, each in
parallel; see resources/base.py), then asks each to diff, in registry order, and ties the steps
together (dependencies on steps that are absent are dropped). A new kind is one module in
provision/resources/ and one line in `KINDS`.

A step's `run` does the change at apply time, reading again what it must (a resource the plan
would create that exists by then is adopted). A `noop` step has no `run`: applying a plan with
no changes makes no call at all.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from provision.errors import ProvisionError
from provision.gcp.context import Ctx, Facts
from provision.resources import apis, audit_logs, billing, bucket, bucket_iam, dataset, dicom_import, dicom_store, dicom_store_iam, kms_key_iam
from provision.resources import healthcare_names, ownership, project, project_iam, service_agent, upload, viewer_account
from provision.resources import artifact_repo, viewer_access, viewer_service, viewer_source
from provision.resources.base import PHASES, Draft, Key, Live
from provision.words import plural
from provision.resources.steps import CREATE, DELETE, KEEP, NOOP, REPLACE, SIGN, UPDATE, Options, Step

if TYPE_CHECKING:  # for annotations only: no import at run time
    from provision.blueprint.models import Blueprint

__all__ = ["Plan", "Step", "Live", "Options", "KINDS", "observe", "build", "CREATE", "UPDATE", "NOOP", "DELETE",
           "KEEP", "REPLACE"]

# Dependency order, which is also the order a plan lists its steps in.
KINDS = [ownership, project, billing, apis, project_iam, audit_logs, service_agent, viewer_account, bucket, upload,
         bucket_iam, kms_key_iam, dataset, dicom_store, dicom_store_iam, dicom_import, viewer_source, artifact_repo,
         viewer_service, viewer_access]


@dataclass
class Plan:
    project: str
    target: str
    steps: list[Step]
    notes: list[str] = field(default_factory=list)
    live: Live | None = field(default=None, repr=False)
    facts: Facts = field(default_factory=Facts, repr=False)

    @property
    def changes(self) -> list[Step]:
        return [s for s in self.steps if s.changing]

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    @property
    def replacements(self) -> list[Step]:
        return [s for s in self.steps if s.action == REPLACE]

    @property
    def kept(self) -> list[Step]:
        return [s for s in self.steps if s.action == KEEP]

    def step(self, step_id: str) -> Step:
        return next(s for s in self.steps if s.id == step_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "target": self.target,
            "changes": len(self.changes),
            "summary": self.summary(),
            "steps": [s.to_json() for s in self.steps],
            "notes": list(self.notes),
        }

    def summary(self) -> str:
        """`1 to create, 2 to update`: what changes live. The ownership record's own writes are how
        changes are made, not changes: they are not counted (entries forgotten for what is already
        gone are named only when nothing else changes)."""
        if not self.has_changes:
            return "no changes"
        counts: dict[str, int] = {}
        for s in self.changes:
            if not s.bookkeeping:
                counts[s.action] = counts.get(s.action, 0) + 1
        if not counts:
            forget = sum(s.forgets for s in self.changes)
            return f"no changes ({plural(forget, 'record entry')} to forget)" if forget else \
                "no changes (the ownership record is brought up to date)"
        return ", ".join(f"{n} to {a}" for a, n in sorted(counts.items()))

    def render(self) -> str:
        """The human rendering: one line per step, its changes and drift indented below."""
        lines = [f"plan for project {self.project} on {self.target}: {self.summary()}"]
        w = max((len(s.id) for s in self.steps), default=0)
        for s in self.steps:
            lines.append(f"  {SIGN.get(s.action, '?'):>3} {s.id:<{w}}  {s.action:<7} {s.resource}")
            lines += [f"      {c}" for c in s.changes]
            lines += [f"      drift: {d}" for d in s.drift]
        for n in self.notes:
            lines.append(f"  note: {n}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------- names
def dataset_name(bp: Blueprint) -> str:
    return healthcare_names.desired_dataset(bp)


def store_name(bp: Blueprint, store_id: str) -> str:
    return healthcare_names.store_name(dataset_name(bp), store_id)


# ---------------------------------------------------------------------------- observe
def observe(ctx: Ctx, bp: Blueprint, opts: Options, *, phases: tuple[int, ...] = PHASES, live: Live | None = None) -> Live:
    """Read live state, phase by phase (each phase's reads in parallel). `live` continues an earlier call."""
    live = live or Live(opts=opts)
    for phase in phases:
        jobs: dict[str, Any] = {}
        for kind in KINDS:
            jobs.update(kind.reads(bp, live, phase))
        keys = list(jobs)
        live.read.update(zip(keys, ctx.parallel([(lambda f=jobs[k]: f(ctx)) for k in keys]), strict=True))  # type: ignore[misc]  # a lambda with a bound default (mypy cannot infer it)
        if Key.RECORD in jobs:
            live.record = copy.deepcopy(live.read[Key.RECORD].current)   # kinds may add to the plan's view
    return live


def refuse_inactive(project_state: Any) -> None:
    """A project pending deletion cannot be built on: say how to restore it."""
    if project_state is not None and project_state.state != "ACTIVE":
        pid = project_state.project_id
        raise ProvisionError(f"project {pid} is {project_state.state} (deleted, pending purge): restore it "
                             f"with `gcloud projects undelete {pid}`, or choose another project.id")


# ---------------------------------------------------------------------------- build
def build(bp: Blueprint, live: Live, target_label: str = "", opts: Options | None = None) -> Plan:
    """Every kind's steps, in registry order, with dependencies on absent steps dropped."""
    opts = opts or live.opts
    draft = Draft()
    for kind in KINDS:
        kind.diff(bp, live, opts, draft)
    for kind in KINDS:   # optional: a kind that ties together what the others planned
        if hasattr(kind, "finish"):
            kind.finish(bp, live, opts, draft)
    ids = draft.ids()
    for s in draft.steps:
        if s.deps == ["*"]:   # after every other change (deleting the project)
            s.deps = [o.id for o in draft.steps if o is not s and o.changing]
        s.deps = [d for d in dict.fromkeys(s.deps) if d in ids and d != s.id]
    return Plan(bp.project.id, target_label, draft.steps, draft.notes, live, draft.facts)
