"""The Cloud Storage bucket: create or adopt, read-only when `create: false` (the upload of a local
tree into it is kind `upload`, with upload_files.py).

Kind `bucket`: create (recorded first), `-/+ replace` when the location of a bucket provision
made differs (a bucket's location cannot change), delete a recorded bucket the blueprint no
longer names (kept while it holds objects, unless delete_data). A bucket provision did not make
is never deleted. Reads `bucket`, `bucket_owner`, `bucket_objects`, `old_bucket:<name>`.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from provision.errors import ProvisionError
from provision.gcp.context import Ctx
from provision.gcp.errors import StepError, is_already_exists, is_status
from provision.resources import lockdown
from provision.resources.base import Draft, Key, Live, Reads
from provision.resources.bucket_reads import is_ours, is_requester_pays
from provision.resources.project_reads import read as read_project
from provision.resources.states import BucketState
from provision.resources.steps import CREATE, DELETE, NOOP, REPLACE, UPDATE, Options, Step, field_change

if TYPE_CHECKING:  # for annotations only: no import at run time
    from provision.blueprint.models import Blueprint

KIND = "bucket"
COUNT_CAP = 1000


def read(ctx: Ctx, name: str) -> BucketState:
    client = ctx.target.storage()

    def get() -> BucketState:
        try:
            b = client.get_bucket(name, retry=None)
        except Exception as exc:  # noqa: BLE001
            if is_status(exc, 404):
                return BucketState(name, exists=False, accessible=True)
            if is_status(exc, 403):
                return BucketState(name, exists=True, accessible=False)
            if is_requester_pays(exc):   # someone's Requester Pays bucket, asked without a billing project
                return BucketState(name, exists=True, accessible=True, requester_pays=True)
            raise
        cfg = b.iam_configuration
        return BucketState(name, exists=True, location=b.location or "", project_number=str(b.project_number or ""),
                           labels=dict(b.labels or {}), uniform=bool(cfg.uniform_bucket_level_access_enabled),
                           prevention=str(cfg.public_access_prevention or ""))

    return ctx.call(get)


def create(ctx: Ctx, project_id: str, spec: Any, project_number: str | None = None) -> BucketState:
    """Create the bucket in the project, locked down unless the blueprint opts out; adopt it if it
    already exists and is ours."""
    client = ctx.target.storage(project_id)
    want = lockdown.wanted(spec)

    def attempt() -> BucketState | None:
        bucket = client.bucket(spec.name)
        lockdown.lock_down(bucket, want.uniform, want.prevention)
        try:
            b = client.create_bucket(bucket, project=project_id, location=spec.location, retry=None)
        except Exception as exc:  # noqa: BLE001
            if is_already_exists(exc):
                return None
            raise
        return BucketState(spec.name, True, True, b.location or "", str(b.project_number or ""))

    made = ctx.call(attempt)
    if made is not None:
        return made
    live = read(ctx, spec.name)
    if live.exists and live.accessible and (not project_number or not live.project_number
                                           or live.project_number == project_number):
        ctx.note(f"bucket gs://{spec.name} already exists: adopted")
        return live
    raise StepError("bucket", f"gs://{spec.name}",
                    "the bucket name is taken by another project (bucket names are global)",
                    fix="choose another bucket.name, or set `create: false` if the bucket is yours to read",
                    action="create")


def delete(ctx: Ctx, name: str, *, force: bool = False) -> bool:
    """Delete the bucket (and, with force, its objects). Returns False when it holds objects and not force."""
    client = ctx.target.storage()
    bucket = client.bucket(name)
    blobs = ctx.call(lambda: list(client.list_blobs(name, max_results=1, retry=None)))
    if blobs and not force:
        return False
    if force:
        for blob in ctx.call(lambda: list(client.list_blobs(name, retry=None))):
            ctx.call(lambda b=blob: _ignore_404(lambda: b.delete(retry=None)))  # type: ignore[misc]  # a lambda with a bound default (mypy cannot infer it)
    ctx.call(lambda: _ignore_404(lambda: bucket.delete(retry=None)))
    return True


def _ignore_404(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001
        if is_status(exc, 404):
            return None
        raise


def count_objects(ctx: Ctx, name: str, cap: int = COUNT_CAP) -> int:
    """How many objects the bucket holds, counting at most `cap` (0 when it is gone)."""
    client = ctx.target.storage()

    def count() -> int:
        try:
            return sum(1 for _ in client.list_blobs(name, max_results=cap, retry=None))
        except Exception as exc:  # noqa: BLE001
            if is_status(exc, 404):
                return 0
            raise

    return ctx.call(count)


def _many(n: int, cap: int = COUNT_CAP) -> str:
    return f"{n}+" if n >= cap else str(n)


# ---------------------------------------------------------------------------- kind
def reads(bp: Blueprint, live: Live, phase: int) -> Reads:
    out: Reads = {}
    name = bp.bucket.name if bp.bucket else None
    if phase == 1 and name:
        out[Key.BUCKET] = lambda ctx: read(ctx, name)
    if phase == 2 and bp.bucket and name:
        b = live.bucket
        assert b is not None   # read in phase 1 whenever the blueprint names a bucket
        if bp.bucket.create and b.exists and b.project_number and b.project_number != live.project_number:
            # to name the owner in the error; None if hidden
            number = b.project_number
            out["bucket_owner"] = lambda ctx: read_project(ctx, number)
    if phase == 3:
        state = live.bucket
        moved = state is not None and state.location and bp.bucket and \
            state.location.upper() != bp.bucket.location.upper()
        for old in live.record.names(KIND):
            if old == name and (live.opts.destroy or moved):   # what destroy or a replace would delete
                out["bucket_objects"] = lambda ctx: count_objects(ctx, name)
            elif old != name:
                out[f"old_bucket:{old}"] = lambda ctx, old=old: (read(ctx, old), count_objects(ctx, old))  # type: ignore[misc]  # a lambda with a bound default (mypy cannot infer it)
    return out


def diff(bp: Blueprint, live: Live, opts: Options, draft: Draft) -> None:
    name = bp.bucket.name if bp.bucket else None
    for old in live.record.names(KIND):
        if old != name:
            state, objects = live.get(f"old_bucket:{old}", (None, 0))
            _remove(draft, old, state, objects, opts, "the blueprint no longer names it")
    if not name or bp.bucket is None:
        return
    b, spec, state = bp.bucket, bp.bucket, live.bucket
    assert state is not None   # read in phase 1 whenever the blueprint names a bucket
    ours = live.record.owns(KIND, name)
    if opts.destroy:
        _destroy(bp, live, opts, draft, name, state, ours)
        return
    pid = bp.project.id
    want = lockdown.wanted(spec)
    if not b.create:
        _read_only(draft, name, state, want)
        return
    for note in lockdown.opt_out_notes(name, want):
        draft.note(note)
    if not state.exists:
        draft.add(Step(KIND, KIND, f"gs://{name}", CREATE, [f"create gs://{name} in {spec.location}",
                                                             _settings(want)], ["project", "billing"],
                       lambda ctx: _create(ctx, pid, spec), claims=[("resource", KIND, name)]))
        return
    if not state.accessible:
        raise ProvisionError(f"bucket gs://{name}: the name is taken (it answers 403: it exists in a project you "
                             "cannot read; bucket names are global); pick another bucket.name, or set "
                             "create: false if it is yours to read and you are granted access")
    if not is_ours(bp, live):
        owner = live.get("bucket_owner")
        who = owner.project_id if owner is not None else f"number {state.project_number}"
        raise ProvisionError(f"bucket gs://{name}: bucket name taken by project {who} (this blueprint's project is "
                             f"{pid}); pick another name or set create: false to only read it")
    if state.location and state.location.upper() != spec.location.upper():
        if ours:
            n = live.get("bucket_objects", 0)
            draft.add(Step(KIND, KIND, f"gs://{name}", REPLACE,
                           [f"location {state.location} -> {spec.location}: a bucket's location cannot change",
                            f"its {_many(n)} object(s) are deleted with it, then the bucket is created again in "
                            f"{spec.location}" + (" and the upload runs again" if spec.upload else
                                                  " (empty: nothing uploads them again)"),
                            "the stores keep the studies already imported"],
                           ["project", "billing"], lambda ctx: _replace(ctx, pid, spec),
                           fields=[field_change("location", state.location, spec.location)]))
            live.bucket_replace = True
            return
        draft.add(Step(KIND, KIND, f"gs://{name}", NOOP, [], ["project", "billing"],
                       drift=[f"location {state.location}, the blueprint says {spec.location}: the bucket was not "
                              "created by provision, so it is not replaced (move its objects yourself, or pick "
                              "another bucket.name)"]))
        return
    _settle(draft, name, state, want, ours)



def _destroy(bp: Blueprint, live: Live, opts: Options, draft: Draft, name: str, state: BucketState, ours: bool) -> None:
    """`destroy`: the bucket is deleted only when provision made it and it is this project's."""
    if not state.exists:
        if ours:
            _remove(draft, name, state, 0, opts, "destroy")
        return
    if not is_ours(bp, live):
        draft.keep(KIND, KIND, f"gs://{name}", "belongs to another project: not deleted")
    elif not ours:
        draft.keep(KIND, KIND, f"gs://{name}", "not created by provision (adopted, or create: false): not deleted")
    else:
        _remove(draft, name, state, live.get("bucket_objects", 0), opts, "destroy")

def _read_only(draft: Draft, name: str, state: BucketState, want: lockdown.Wanted) -> None:
    """A `create: false` bucket: it must exist; what it lacks of the defaults is reported."""
    if not state.exists:
        raise ProvisionError(f"bucket gs://{name} does not exist, and the blueprint says `create: false`; "
                             "create it, or set `bucket.create: true`")
    drift = lockdown.reported(state.uniform, state.prevention, want, ours=False)
    _note_unlocked(draft, name, drift, "create: false: provision only reads it", ASK_OWNER)
    draft.add(Step(KIND, KIND, f"gs://{name}", NOOP, ["exists; read only (create: false)"], ["project", "billing"],
                   drift=drift))


def _settings(want: lockdown.Wanted) -> str:
    return (f"uniform bucket-level access {'on' if want.uniform else 'OFF'}, public access prevention "
            f"{want.prevention}")


ASK = ("set bucket.uniform_access: true and bucket.public_access_prevention: enforced for provision to "
       "change it")
ASK_OWNER = ("ask its owner to turn on uniform bucket-level access and public access prevention "
             "(`gcloud storage buckets update gs://{name} --uniform-bucket-level-access --public-access-prevention`)")


def _note_unlocked(draft: Draft, name: str, drift: list[str], why: str, fix: str = ASK) -> None:
    if drift:
        draft.note(f"gs://{name} ({why}): " + "; ".join(drift) + f". To lock it down, {fix.format(name=name)}")


def _settle(draft: Draft, name: str, state: BucketState, want: lockdown.Wanted, ours: bool) -> None:
    """An existing bucket in place: its settings changed where provision owns them (it made the bucket,
    or the blueprint writes them), reported otherwise."""
    diffs = lockdown.differences(state.uniform, state.prevention, want, all_=ours)
    drift = lockdown.reported(state.uniform, state.prevention, want, ours)
    _note_unlocked(draft, name, drift, "not created by provision: reported, not changed")
    if not diffs:
        draft.add(Step(KIND, KIND, f"gs://{name}", NOOP, [], ["project", "billing"], drift=drift))
        return
    draft.add(Step(KIND, KIND, f"gs://{name}", UPDATE, [f"{f}: {a} -> {b}" for f, a, b in diffs],
                   ["project", "billing"], lambda ctx: _lock(ctx, name, {f: b for f, _, b in diffs}),
                   drift=drift, fields=[field_change(f, a, b) for f, a, b in diffs]))


def _lock(ctx: Ctx, name: str, change: dict[str, Any]) -> str:
    """Patch exactly the settings that differ (an adopted bucket's others stay as they are)."""
    def patch() -> None:
        bucket = ctx.target.storage().get_bucket(name, retry=None)
        if "uniform_access" in change:
            bucket.iam_configuration.uniform_bucket_level_access_enabled = change["uniform_access"]
        if "public_access_prevention" in change:
            bucket.iam_configuration.public_access_prevention = change["public_access_prevention"]
        bucket.patch(retry=None)

    ctx.call(patch)
    return ", ".join(f"{k} {v}" for k, v in change.items())


def _create(ctx: Ctx, project_id: str, spec: Any) -> str:
    ctx.facts.record.add_resource(ctx, KIND, spec.name)
    create(ctx, project_id, spec, ctx.facts.project_number)
    return f"gs://{spec.name}"


def _replace(ctx: Ctx, project_id: str, spec: Any) -> str:
    delete(ctx, spec.name, force=True)
    create(ctx, project_id, spec, ctx.facts.project_number)
    return f"gs://{spec.name} created again in {spec.location}"


def _remove(draft: Draft, name: str, state: BucketState | None, objects: int, opts: Options, why: str) -> None:
    """A recorded bucket to delete: kept while it holds objects, unless delete_data."""
    resource = f"gs://{name}"
    step_id = KIND if why == "destroy" else f"{KIND}:{name}"
    deps = [f"bucket-iam:{name}", "bucket-iam"]
    if state is None or not state.exists:
        draft.add(Step(step_id, KIND, resource, DELETE, ["already gone: forget it in the record"], [],
                       lambda ctx: (ctx.facts.record.drop_resource(ctx, KIND, name), "forgotten")[1], forgets=1))
    elif objects and not opts.delete_data:
        draft.keep(step_id, KIND, resource, f"kept: holds {_many(objects)} object(s) (--delete-data deletes them "
                                            "with the bucket)")
    else:
        what = f"delete gs://{name}" + (f" and its {_many(objects)} object(s)" if objects else "")
        draft.add(Step(step_id, KIND, resource, DELETE, [what], deps,
                       lambda ctx: _delete_recorded(ctx, name, force=opts.delete_data)))


def _delete_recorded(ctx: Ctx, name: str, *, force: bool) -> str:
    if not delete(ctx, name, force=force):
        raise StepError(ctx.step, f"gs://{name}", "the bucket received objects since the plan: not deleted",
                        fix="plan again (--delete-data deletes a bucket with its objects)", action="delete")
    ctx.facts.record.drop_resource(ctx, KIND, name)
    return "deleted"
