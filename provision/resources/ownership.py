"""Kind `record`: the ownership record itself (provision/resources/record.py).

Reads it once per plan (phase 2, when the project exists). A project carrying the label
provision sets when it creates one, but not named by the record (a kill came between the two),
is recorded. Grants marked by the labels of
earlier versions (`provision-iam-<hash>` on the project, the bucket, the stores) are adopted:
the plan counts them as recorded, and a `record` step writes them into the record and then
removes the labels. Every step that changes grants runs after it.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from provision.gcp.context import Ctx
from provision.resources import iam
from provision.resources.base import Draft, Key, Live, Reads
from provision.resources.healthcare_names import desired_stores
from provision.resources.project_reads import CREATED_LABEL
from provision.resources.record import Record, RecordStore, location_for
from provision.resources.steps import CREATE, NOOP, UPDATE, Options, Step
from provision.words import plural

if TYPE_CHECKING:  # for annotations only: no import at run time
    from provision.blueprint.models import Blueprint

KIND = "record"


def reads(bp: Blueprint, live: Live, phase: int) -> Reads:
    if phase != 2:
        return {}
    store = RecordStore(bp.project.id, location_for(bp.dataset.location))
    if live.project is None:
        store.current = Record(bp.project.id)
        return {Key.RECORD: lambda ctx: store}
    return {Key.RECORD: lambda ctx: (store.read(ctx, live.project_number), store)[1]}


def _legacy(bp: Blueprint, live: Live) -> list[tuple[str, Any, list[str], list[iam.Pair]]]:
    """(resource, labels adapter maker, mark keys, marked pairs) for each resource carrying old marks."""
    out = []
    project, bucket = live.project, live.bucket
    if project is not None and iam.marks(project.labels):
        out.append((f"projects/{bp.project.id}", lambda ctx: iam.project_labels(ctx, bp.project.id),
                    iam.marks(project.labels), iam.marked(project.labels, live.project_policy)))
    if bucket is not None and bucket.exists and live.has(Key.BUCKET_POLICY) and iam.marks(bucket.labels):
        out.append((f"gs://{bucket.name}", lambda ctx: iam.bucket_labels(ctx, bucket.name),
                    iam.marks(bucket.labels), iam.marked(bucket.labels, live.bucket_policy)))
    for name in desired_stores(bp):
        st = live.store(name)
        if st is not None and iam.marks(st.labels):
            out.append((name, lambda ctx, n=name: iam.dicom_store_labels(ctx, n), iam.marks(st.labels),  # type: ignore[misc]  # a lambda with a bound default (mypy cannot infer it)
                        iam.marked(st.labels, live.store_policy(name))))
    return out


def diff(bp: Blueprint, live: Live, opts: Options, draft: Draft) -> None:
    draft.facts.record = live.read[Key.RECORD]
    if opts.destroy:
        return   # destroy only drops entries, step by step
    legacy = _legacy(bp, live)
    pid, project = bp.project.id, live.project
    made = project is not None and project.labels.get(CREATED_LABEL) == "true" and not live.record.owns("project", pid)
    changes = []
    if made:   # created by a run killed before it could record it
        live.record.add_resource("project", pid)
        changes.append(f"record project {pid} (created by provision: label {CREATED_LABEL})")
    for resource, _, keys, pairs in legacy:
        live.record.add_grants(resource, pairs)   # the other kinds plan with them as provision's
        changes += [f"adopt {m} {r} on {resource} (marked by an earlier provision)" for r, m in pairs]
        changes.append(f"remove {len(keys)} provision-iam-* label(s) from {resource}")

    store = draft.facts.record
    lock = store.found_locked is False
    if lock:   # made by a provision from before the defaults: provision's own bucket, so it is changed
        changes.append(f"lock down gs://{store.bucket}: uniform bucket-level access, public access prevention "
                       "enforced (it names members)")
    if store.found_location and store.found_location.upper() != store.location.upper():
        # a note, not drift: a bucket cannot move, and a record made before this default is no fault
        draft.note(f"the ownership record gs://{store.bucket} is in {store.found_location}, not in the dataset's "
                   f"location {store.location} (where provision now creates it); a bucket cannot move")
    draft.add(Step(KIND, KIND, store.where, UPDATE if changes else NOOP, changes, ["project"],
                   _run(pid, made, legacy, lock) if changes else None))


def finish(bp: Blueprint, live: Live, opts: Options, draft: Draft) -> None:
    """Once every kind has spoken: the record step claims, in one write, all that the plan will
    create or grant, and every claiming step waits for it. It depends on the project only, so the
    write runs beside the billing link and the API enables, off the critical path."""
    step = next((s for s in draft.steps if s.id == KIND), None)
    if step is None:
        return
    draft.steps.remove(step)   # listed after the project it lives in
    at = next((i + 1 for i, s in enumerate(draft.steps) if s.id == "project"), 0)
    draft.steps.insert(at, step)
    claims = [c for s in draft.steps if s.changing for c in s.claims]
    if not claims:
        return
    n_res = sum(c[0] == "resource" for c in claims)
    n_grants = len(claims) - n_res
    step.changes.append(f"record {n_res} resource(s) and {n_grants} grant(s) before making them")
    if step.action == NOOP:
        step.action = CREATE if not live.record.generation and not live.record.resources else UPDATE
        step.run = _run(bp.project.id, False, [])
    for s in draft.steps:
        if s.claims and s.changing and s.id not in step.deps:   # the project comes first: the record lives in it
            s.deps.append(KIND)


def _run(pid: str, made: bool, legacy: list[Any], lock: bool = False) -> Callable[[Ctx], Any]:
    """The record step: one write with every claim of the plan (ctx.facts.claims), a project
    made by an interrupted run, and the grants of legacy marks; then the marks are removed."""
    def run(ctx: Ctx) -> str:
        claims = list(ctx.facts.claims or [])
        if made:
            claims.append(("resource", "project", pid))
        claims += [("grant", resource, r, m) for resource, _, _, pairs in legacy for r, m in pairs]
        ctx.facts.record.claim(ctx, claims)
        if lock:
            ctx.facts.record.lock(ctx)
        for _, labels_io, keys, _ in legacy:
            io = labels_io(ctx)
            ctx.call(lambda io=io, keys=keys: io.patch({k: None for k in keys}))  # type: ignore[misc]  # a lambda with a bound default (mypy cannot infer it)
        return f"{plural(len(claims), 'entry')} recorded"
    return run
