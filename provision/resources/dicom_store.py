"""DICOM stores: create (synchronous), delete, and kind `dicom-store` (the calls other kinds also
make on a store are in store_calls.py).

A store provision made (recorded) and the blueprint no longer names (removed, or left behind in
a dataset that moved) is deleted when it holds no study; with studies it is kept and reported,
unless delete_data (or replace, when its dataset is replaced). Reads `store:<name>` and
`old_store:<name>` (state and study count).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from provision.gcp.context import Ctx
from provision.gcp.errors import StepError, is_absent, is_already_exists
from provision.gcp.retry import NotYet
from provision.resources.base import Draft, Key, Live, Reads
from provision.resources.healthcare_names import DICOM_STORE, desired_stores, store_step_id
from provision.resources.healthcare_removals import fate, old_stores, reimported, replaced_dataset
from provision.resources.states import StoreState
from provision.resources.steps import CREATE, DELETE, KEEP, NOOP, Options, Step
from provision.resources.store_calls import count_studies, read, stores
from provision.words import plural

if TYPE_CHECKING:  # for annotations only: no import at run time
    from provision.blueprint.models import Blueprint


def create(ctx: Ctx, name: str, labels: dict[str, str] | None = None) -> StoreState:
    parent, _, store_id = name.rpartition("/dicomStores/")

    def attempt() -> StoreState | None:
        try:
            s = stores(ctx).create(parent=parent, dicomStoreId=store_id, body={"labels": labels or {}}).execute(num_retries=0)
        except Exception as exc:  # noqa: BLE001
            if is_already_exists(exc):
                return None
            raise
        return StoreState(s.get("name", name), dict(s.get("labels") or {}))

    made = ctx.call(attempt)
    if made is None:
        ctx.note(f"DICOM store {store_id} already exists: adopted")
    return verify(ctx, name)


def verify(ctx: Ctx, name: str) -> StoreState:
    def check() -> StoreState:
        s = read(ctx, name)
        if s is None:
            raise NotYet(f"DICOM store {name} not visible yet")
        return s

    return ctx.call(check)


def delete(ctx: Ctx, name: str) -> None:
    def attempt() -> Any:
        try:
            stores(ctx).delete(name=name).execute(num_retries=0)
        except Exception as exc:  # noqa: BLE001
            if not is_absent(exc):
                raise

    ctx.call(attempt)


# ---------------------------------------------------------------------------- kind
KIND = DICOM_STORE


def reads(bp: Blueprint, live: Live, phase: int) -> Reads:
    if live.project is None:
        return {}
    if phase == 2:
        return {Key.store(n): (lambda ctx, n=n: read(ctx, n)) for n in desired_stores(bp)}  # type: ignore[misc]  # a lambda with a bound default (mypy cannot infer it)
    if phase == 3:
        def old(ctx: Ctx, n: str) -> Any:
            state = read(ctx, n)
            return (state, count_studies(ctx, n) if state else 0)
        return {Key.old_store(n): (lambda ctx, n=n: old(ctx, n)) for n in old_stores(bp, live)}  # type: ignore[misc]  # a lambda with a bound default (mypy cannot infer it)
    return {}


def diff(bp: Blueprint, live: Live, opts: Options, draft: Draft) -> None:
    if not opts.destroy:
        for s, name in zip(bp.dicom_stores, desired_stores(bp), strict=True):
            if live.store(name) is None:
                draft.add(Step(f"store:{s.id}", KIND, name, CREATE, [f"create DICOM store {s.id}"], ["dataset"],
                               lambda ctx, n=name: _create(ctx, n), claims=[("resource", KIND, name)]))  # type: ignore[misc]  # a lambda with a bound default (mypy cannot infer it)
            else:
                draft.add(Step(f"store:{s.id}", KIND, name, NOOP, [], ["dataset"]))
    replaced = None if opts.destroy else replaced_dataset(bp, live)
    for name in old_stores(bp, live):
        sid = store_step_id(bp, name)
        if not live.record.owns(KIND, name):
            if opts.destroy and live.old_store(name)[0] is not None:
                draft.keep(sid, KIND, name, "not created by provision: not deleted")
            continue
        replacing = reimported(bp, name, replaced)
        what = fate(live, name, opts, replacing)
        _, studies = live.old_store(name)
        if what == "gone":
            draft.add(Step(sid, KIND, name, DELETE, ["already gone: forget it in the record"], [],
                           lambda ctx, n=name: (ctx.facts.record.drop_resource(ctx, KIND, n), "forgotten")[1], forgets=1))  # type: ignore[misc]  # a lambda with a bound default (mypy cannot infer it)
        elif what == KEEP:
            draft.keep(sid, KIND, name, f"kept: holds {plural(studies, 'study')} "
                                        "(--delete-data deletes it)")
        else:
            deps = [f"import:{s.id}" for s in bp.dicom_stores] if replacing else []
            lost = f" and its {plural(studies, 'study')}" if studies else ""
            draft.add(Step(sid, KIND, name, DELETE, [f"delete DICOM store {name.rsplit('/', 1)[-1]}{lost}"], deps,
                           lambda ctx, n=name, force=bool(studies) or opts.delete_data: _delete_recorded(ctx, n, force)))  # type: ignore[misc]  # a lambda with a bound default (mypy cannot infer it)


def _create(ctx: Ctx, name: str) -> str:
    ctx.facts.record.add_resource(ctx, KIND, name)
    create(ctx, name)
    return name


def _delete_recorded(ctx: Ctx, name: str, force: bool) -> str:
    if not force and count_studies(ctx, name, stop_at=1):
        raise StepError(ctx.step, name, "the store received studies since the plan: not deleted",
                        fix="plan again (--delete-data deletes a store with its studies)", action="delete")
    delete(ctx, name)
    ctx.facts.record.drop_resource(ctx, KIND, name)   # its grants went with it
    return "deleted"
