"""DICOM stores (synchronous create), their IAM policy adapters, and kind `dicom-store`.

A store provision made (recorded) and the blueprint no longer names (removed, or left behind in
a dataset that moved) is deleted when it holds no study; with studies it is kept and reported,
unless delete_data (or replace, when its dataset is replaced). Reads `store:<name>` and
`old_store:<name>` (state and study count).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from provision.gcp.context import Ctx
from provision.gcp.errors import StepError, is_absent, is_already_exists, is_service_disabled, is_status
from provision.gcp.retry import NotYet
from provision.resources import iam
from provision.resources.base import Draft, Live, Reads
from provision.resources.steps import CREATE, DELETE, KEEP, NOOP, Options, Step
from provision.words import plural


@dataclass
class StoreState:
    name: str
    labels: dict[str, str] = field(default_factory=dict)


def name_of(dataset_name: str, store_id: str) -> str:
    return f"{dataset_name}/dicomStores/{store_id}"


def _stores(ctx: Ctx):
    return ctx.target.healthcare().projects().locations().datasets().dicomStores()


def read(ctx: Ctx, name: str) -> StoreState | None:
    def get():
        try:
            s = _stores(ctx).get(name=name).execute(num_retries=0)
        except Exception as exc:  # noqa: BLE001
            if is_absent(exc) or (is_status(exc, 403) and is_service_disabled(exc)):
                return None
            raise
        return StoreState(s.get("name", name), dict(s.get("labels") or {}))

    return ctx.call(get)


def create(ctx: Ctx, name: str, labels: dict[str, str] | None = None) -> StoreState:
    parent, _, store_id = name.rpartition("/dicomStores/")

    def attempt() -> StoreState | None:
        try:
            s = _stores(ctx).create(parent=parent, dicomStoreId=store_id, body={"labels": labels or {}}).execute(num_retries=0)
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
    def check():
        s = read(ctx, name)
        if s is None:
            raise NotYet(f"DICOM store {name} not visible yet")
        return s

    return ctx.call(check)


def set_label(ctx: Ctx, name: str, key: str, value: str) -> None:
    """Patch one label, keeping the others (read, then patch with updateMask=labels)."""
    def attempt():
        with ctx.resource_lock(name):
            s = _stores(ctx).get(name=name).execute(num_retries=0)
            labels = dict(s.get("labels") or {})
            labels[key] = value
            _stores(ctx).patch(name=name, updateMask="labels", body={"labels": labels}).execute(num_retries=0)

    ctx.call(attempt)


def delete(ctx: Ctx, name: str) -> None:
    def attempt():
        try:
            _stores(ctx).delete(name=name).execute(num_retries=0)
        except Exception as exc:  # noqa: BLE001
            if not is_absent(exc):
                raise

    ctx.call(attempt)


def read_iam(ctx: Ctx, name: str) -> dict | None:
    """The store's policy; None when the store does not exist (or Healthcare is not enabled yet)."""
    def get():
        try:
            return iam.dicom_store_io(ctx, name).read()
        except Exception as exc:  # noqa: BLE001
            if is_absent(exc) or (is_status(exc, 403) and is_service_disabled(exc)):
                return None
            raise
    return ctx.call(get)


# ---------------------------------------------------------------------------- kind
KIND = "dicom-store"


def desired_names(bp: Any) -> list[str]:
    from provision.resources import dataset

    return [name_of(dataset.desired_name(bp), s.id) for s in bp.dicom_stores]


def step_id(bp: Any, name: str, prefix: str = "store") -> str:
    """`store:<id>` in the blueprint's dataset, `store:<location>/<dataset>/<id>` elsewhere."""
    from provision.resources import dataset

    parent, _, sid = name.rpartition("/dicomStores/")
    if parent == dataset.desired_name(bp):
        return f"{prefix}:{sid}"
    parts = parent.split("/")
    return f"{prefix}:{parts[3]}/{parts[5]}/{sid}"


def _old(bp: Any, live: Live) -> list[str]:
    """Stores the record names (as made, or as holding grants) that the blueprint does not, or all when destroying."""
    want = set() if live.opts.destroy else set(desired_names(bp))
    named = set(live.record.names(KIND)) | {r for r in live.record.granted_resources() if "/dicomStores/" in r}
    return sorted(named - want)


def reads(bp: Any, live: Live, phase: int) -> Reads:
    from provision.resources import dicom_import

    if live.project is None:
        return {}
    if phase == 2:
        return {f"store:{n}": (lambda ctx, n=n: read(ctx, n)) for n in desired_names(bp)}
    if phase == 3:
        def old(ctx: Ctx, n: str):
            state = read(ctx, n)
            return (state, dicom_import.count_studies(ctx, n) if state else 0)
        return {f"old_store:{n}": (lambda ctx, n=n: old(ctx, n)) for n in _old(bp, live)}
    return {}


def fate(live: Live, name: str, opts: Options, reimported: bool) -> str:
    """What removal does to a store no longer named: DELETE, KEEP (holds studies) or "gone".
    `reimported`: its dataset is replaced and the blueprint names the store again, so the new
    dataset gets it with its import; any other store with studies goes only with delete_data."""
    state, studies = live.get(f"old_store:{name}", (None, 0))
    if state is None:
        return "gone"
    return KEEP if studies and not (opts.delete_data or reimported) else DELETE


def reimported(bp: Any, name: str, replaced: str | None) -> bool:
    """The store is in the dataset being replaced (`replaced`) and the blueprint names it again."""
    return bool(replaced) and name.startswith(replaced + "/dicomStores/") \
        and name.rsplit("/", 1)[-1] in {s.id for s in bp.dicom_stores}


def data_in(live: Live, dataset_name: str) -> str:
    """"primary: 2 studies, ..." for the recorded stores of a dataset that hold studies."""
    out = []
    for n in live.record.names(KIND):
        if n.startswith(dataset_name + "/dicomStores/"):
            _, studies = live.get(f"old_store:{n}", (None, 0))
            if studies:
                out.append(f"{n.rsplit('/', 1)[-1]}: {plural(studies, 'study')}")
    return ", ".join(out)


def diff(bp: Any, live: Live, opts: Options, draft: Draft) -> None:
    from provision.resources import dataset

    if not opts.destroy:
        for s, name in zip(bp.dicom_stores, desired_names(bp)):
            if live.get(f"store:{name}") is None:
                draft.add(Step(f"store:{s.id}", KIND, name, CREATE, [f"create DICOM store {s.id}"], ["dataset"],
                               lambda ctx, n=name: _create(ctx, n), claims=[("resource", KIND, name)]))
            else:
                draft.add(Step(f"store:{s.id}", KIND, name, NOOP, [], ["dataset"]))
    replaced = None if opts.destroy else dataset.replaced(bp, live)
    for name in _old(bp, live):
        sid = step_id(bp, name)
        if not live.record.owns(KIND, name):
            if opts.destroy and live.get(f"old_store:{name}", (None, 0))[0] is not None:
                draft.keep(sid, KIND, name, "not created by provision: not deleted")
            continue
        replacing = reimported(bp, name, replaced)
        what = fate(live, name, opts, replacing)
        _, studies = live.get(f"old_store:{name}", (None, 0))
        if what == "gone":
            draft.add(Step(sid, KIND, name, DELETE, ["already gone: forget it in the record"], [],
                           lambda ctx, n=name: (ctx.facts["record"].drop_resource(ctx, KIND, n), "forgotten")[1], forgets=1))
        elif what == KEEP:
            draft.keep(sid, KIND, name, f"kept: holds {plural(studies, 'study')} "
                                        "(--delete-data deletes it)")
        else:
            deps = [f"import:{s.id}" for s in bp.dicom_stores] if replacing else []
            lost = f" and its {plural(studies, 'study')}" if studies else ""
            draft.add(Step(sid, KIND, name, DELETE, [f"delete DICOM store {name.rsplit('/', 1)[-1]}{lost}"], deps,
                           lambda ctx, n=name, force=bool(studies) or opts.delete_data: _delete_recorded(ctx, n, force)))


def _create(ctx: Ctx, name: str) -> str:
    ctx.facts["record"].add_resource(ctx, KIND, name)
    create(ctx, name)
    return name


def _delete_recorded(ctx: Ctx, name: str, force: bool) -> str:
    from provision.resources import dicom_import

    if not force and dicom_import.count_studies(ctx, name, stop_at=1):
        raise StepError(ctx.step, name, "the store received studies since the plan: not deleted",
                        fix="plan again (--delete-data deletes a store with its studies)", action="delete")
    delete(ctx, name)
    ctx.facts["record"].drop_resource(ctx, KIND, name)   # its grants went with it
    return "deleted"
