"""The Healthcare dataset: read, create (a dataset-level long-running operation), delete.

Right after creation Healthcare can answer 404 "dataset not initialized": the retry policy
waits that out. A time zone cannot be changed after creation, so drift is only reported.

Kind `dataset`: create (recorded first); a recorded dataset the blueprint no longer names is
deleted once its stores are (kept while a store holds data, unless delete_data, and when it holds
stores provision did not make); a location change of a recorded dataset is `-/+ replace`.
Reads `dataset`, `old_dataset:<name>` (its stores, None when gone) and `healthcare_locations`
(the locations the target offers the project, from projects.locations.list; None when the
Healthcare API is not enabled yet). The blueprint only checks a location's form: a location the
target does not offer is a plan error naming the nearest ones.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from provision.errors import ProvisionError
from provision.gcp.context import Ctx
from provision.gcp.errors import StepError, is_absent, is_already_exists, is_service_disabled, is_status
from provision.gcp.retry import NotYet
from provision.resources.base import Draft, Live, Reads
from provision.resources.steps import CREATE, DELETE, KEEP, NOOP, REPLACE, Options, Step, field_change


@dataclass
class DatasetState:
    name: str
    time_zone: str = ""


def name_of(project_id: str, location: str, dataset_id: str) -> str:
    return f"projects/{project_id}/locations/{location}/datasets/{dataset_id}"


def _datasets(ctx: Ctx):
    return ctx.target.healthcare().projects().locations().datasets()


def read(ctx: Ctx, name: str, *, disabled_is_absent: bool = True) -> DatasetState | None:
    """The dataset, or None when absent (also when the Healthcare API is not enabled yet)."""

    def get():
        try:
            d = _datasets(ctx).get(name=name).execute(num_retries=0)
        except Exception as exc:  # noqa: BLE001
            if is_absent(exc):
                return None
            if disabled_is_absent and is_status(exc, 403) and is_service_disabled(exc):
                return None
            raise
        return DatasetState(d.get("name", name), d.get("timeZone", ""))

    return ctx.call(get)


def read_locations(ctx: Ctx, project_id: str, *, page_size: int | None = None) -> list[str] | None:
    """IDs of the Healthcare locations the project can use (projects.locations.list, every page),
    or None while the Healthcare API is not enabled on it (a new project: nothing to check yet)."""
    locations = ctx.target.healthcare().projects().locations()

    def list_all() -> list[str] | None:
        out: list[str] = []
        token = None
        for _ in range(100):   # 100 pages: far more locations than Google has
            try:
                page = locations.list(name=f"projects/{project_id}", pageSize=page_size,
                                      pageToken=token).execute(num_retries=0)
            except Exception as exc:  # noqa: BLE001
                if is_status(exc, 403) and is_service_disabled(exc):
                    return None
                raise
            out += [loc.get("locationId") or loc.get("name", "").rsplit("/", 1)[-1]
                    for loc in page.get("locations") or []]
            token = page.get("nextPageToken")
            if not token:
                break
        return out

    return ctx.call(list_all)


def nearest(location: str, offered: list[str], n: int = 4) -> list[str]:
    """The offered locations closest to `location`: the best match and those about as close (a typo
    names one, europe-west1 names its European neighbours)."""
    scored = sorted((-difflib.SequenceMatcher(None, location, o).ratio(), o) for o in offered)
    best = -scored[0][0] if scored else 0.0
    return [o for r, o in scored[:n] if -r >= 0.6 and -r >= best - 0.05]


def check_location(bp: Any, offered: list[str] | None) -> None:
    """A plan error when the target does not offer the blueprint's dataset location."""
    location = bp.dataset.location
    if not offered or location in offered:
        return
    near = nearest(location, offered)
    where = f"{bp.source}: " if bp.source else ""
    hint = f"; did you mean {' or '.join(near)}? Valid" if near else "; valid"
    raise ProvisionError(f"{where}dataset.location: {location} is not a Cloud Healthcare location of project "
                         f"{bp.project.id} (projects.locations.list lists {len(offered)}){hint} locations: "
                         f"{', '.join(sorted(offered))}. Nothing was changed.")


def create(ctx: Ctx, name: str, time_zone: str) -> DatasetState:
    parent, _, dataset_id = name.rpartition("/datasets/")

    def attempt() -> bool:
        try:
            op = _datasets(ctx).create(parent=parent, datasetId=dataset_id, body={"timeZone": time_zone}).execute(num_retries=0)
        except Exception as exc:  # noqa: BLE001
            if is_already_exists(exc):
                return False
            raise
        ctx.progress("waiting for dataset creation")
        ctx.wait_healthcare(op)
        return True

    if not ctx.call(attempt):
        ctx.note(f"dataset {dataset_id} already exists: adopted")
    return verify(ctx, name)


def verify(ctx: Ctx, name: str) -> DatasetState:
    def check():
        d = read(ctx, name, disabled_is_absent=False)
        if d is None:
            raise NotYet(f"dataset {name} not visible yet")
        return d

    return ctx.call(check)


def delete(ctx: Ctx, name: str) -> None:
    def attempt():
        try:
            _datasets(ctx).delete(name=name).execute(num_retries=0)
        except Exception as exc:  # noqa: BLE001
            if not is_absent(exc):
                raise

    ctx.call(attempt)


def list_stores(ctx: Ctx, name: str) -> list[str]:
    """Names of every store in the dataset (DICOM, FHIR, HL7v2): deleting a dataset deletes them all."""
    ds = _datasets(ctx)
    out = []
    for kind, method in (("dicomStores", ds.dicomStores), ("fhirStores", ds.fhirStores), ("hl7V2Stores", ds.hl7V2Stores)):
        try:
            page = ctx.execute(method().list(parent=name))
        except Exception as exc:  # noqa: BLE001
            if is_status(exc, 404, 501):
                continue
            raise
        out += [x.get("name", "") for x in page.get(kind) or []]
    return out


# ---------------------------------------------------------------------------- kind
KIND = "dataset"


def desired_name(bp: Any) -> str:
    return name_of(bp.project.id, bp.dataset.location, bp.dataset.id)


def step_id(bp: Any, name: str) -> str:
    """`dataset` for the blueprint's; `dataset:<location>/<id>` for another one the record names."""
    if name == desired_name(bp):
        return KIND
    parts = name.split("/")
    return f"{KIND}:{parts[3]}/{parts[5]}"


def _old(bp: Any, live: Live, opts: Options) -> list[str]:
    """Recorded datasets to remove: those the blueprint no longer names (all of them when destroying)."""
    return [n for n in live.record.names(KIND) if opts.destroy or n != desired_name(bp)]


def reads(bp: Any, live: Live, phase: int) -> Reads:
    if live.project is None:
        return {}
    if phase == 2:
        return {"dataset": lambda ctx: read(ctx, desired_name(bp))}
    if phase == 3:
        out: Reads = {f"old_dataset:{n}": (lambda ctx, n=n: list_stores(ctx, n) if read(ctx, n) else None)
                      for n in _old(bp, live, live.opts)}
        if not live.opts.destroy and live.get("dataset") is None:   # an existing dataset's location is valid
            out["healthcare_locations"] = lambda ctx: read_locations(ctx, bp.project.id)
        return out
    return {}


def replaced(bp: Any, live: Live) -> str | None:
    """The recorded dataset the blueprint's replaces: same ID, another location, still there."""
    if live.get("dataset") is not None:
        return None
    return next((n for n in live.record.names(KIND) if n != desired_name(bp) and n.rsplit("/", 1)[-1] == bp.dataset.id
                 and live.get(f"old_dataset:{n}") is not None), None)


def diff(bp: Any, live: Live, opts: Options, draft: Draft) -> None:
    from provision.resources import dicom_store

    if not opts.destroy:
        check_location(bp, live.get("healthcare_locations"))
    name, ds, state = desired_name(bp), bp.dataset, live.get("dataset")
    old_for_new = None if opts.destroy else replaced(bp, live)
    if opts.destroy:
        if state is not None and not live.record.owns(KIND, name):
            draft.keep(KIND, KIND, name, "not created by provision: not deleted")
    elif state is None:
        changes = [f"create dataset {ds.id} in {ds.location} (time zone {ds.time_zone})"]
        action = CREATE
        if old_for_new:
            action = REPLACE
            was = old_for_new.split("/")[3]
            held = dicom_store.data_in(live, old_for_new)
            why = _kept_because(bp, live, opts, old_for_new, replacing=True)
            then = (f"then the old dataset in {was} is deleted with its stores"
                    + (f" ({held})" if held else " (they hold no studies)")) if why is None else \
                (f"then the old dataset in {was} is kept ({held}): {why}; the stores the blueprint names "
                 "are deleted there once imported again")
            changes = [f"location {was} -> {ds.location}: a dataset's location cannot change",
                       f"a new dataset {ds.id} is created in {ds.location}, its stores are created and imported again",
                       then]
        fields = [field_change("location", old_for_new.split("/")[3], ds.location)] if old_for_new else []
        draft.add(Step(KIND, KIND, name, action, changes, ["apis"], lambda ctx: _create(ctx, name, ds.time_zone),
                       claims=[("resource", KIND, name)], fields=fields))
    else:
        if ds.time_zone and state.time_zone and state.time_zone != ds.time_zone:
            draft.note(f"dataset {ds.id} has time zone {state.time_zone}, the blueprint says {ds.time_zone}; "
                       "a dataset's time zone cannot be changed")
        draft.add(Step(KIND, KIND, name, NOOP, [], ["apis"]))
    for old in _old(bp, live, opts):
        _remove(bp, live, opts, draft, old, replacing=old == old_for_new)


def _create(ctx: Ctx, name: str, time_zone: str) -> str:
    ctx.facts["record"].add_resource(ctx, KIND, name)
    create(ctx, name, time_zone)
    return name


def _remove(bp: Any, live: Live, opts: Options, draft: Draft, name: str, *, replacing: bool) -> None:
    from provision.resources import dicom_store

    sid = step_id(bp, name)
    stores = live.get(f"old_dataset:{name}")
    if stores is None:
        draft.add(Step(sid, KIND, name, DELETE, ["already gone: forget it in the record"], [],
                       lambda ctx: (ctx.facts["record"].drop_resource(ctx, KIND, name), "forgotten")[1], forgets=1))
        return
    why = _kept_because(bp, live, opts, name, replacing=replacing)
    if why is not None:
        draft.keep(sid, KIND, name, f"kept: {why}")
        return
    deps = [dicom_store.step_id(bp, s) for s in stores]
    if replacing:   # the old data goes only once the new stores hold theirs
        deps += [f"import:{s.id}" for s in bp.dicom_stores] + [f"store:{s.id}" for s in bp.dicom_stores]
    draft.add(Step(sid, KIND, name, DELETE, [f"delete dataset {name.rsplit('/', 1)[-1]} in {name.split('/')[3]}"],
                   deps, lambda ctx: _delete_recorded(ctx, name)))


def _kept_because(bp: Any, live: Live, opts: Options, name: str, *, replacing: bool) -> str | None:
    """Why a recorded dataset to remove must stay, or None. Replacing deletes only the stores the
    blueprint names again (they are created and imported anew in the new dataset): a store it no
    longer names keeps its studies, and so its dataset, unless delete_data (issue 18)."""
    from provision.resources import dicom_store

    stores = live.get(f"old_dataset:{name}") or []
    ours = set(live.record.names(dicom_store.KIND))
    foreign = [s.rsplit("/", 1)[-1] for s in stores if s not in ours]
    if foreign:
        return f"holds store(s) provision did not make ({', '.join(sorted(foreign))})"
    again = {s.id for s in bp.dicom_stores} if replacing else set()
    kept = [s.rsplit("/", 1)[-1] for s in stores
            if dicom_store.fate(live, s, opts, s.rsplit("/", 1)[-1] in again) == KEEP]
    if kept:
        return f"its store(s) {', '.join(kept)} hold data the blueprint no longer names (--delete-data deletes them)"
    return None


def _delete_recorded(ctx: Ctx, name: str) -> str:
    others = list_stores(ctx, name)
    if others:
        raise StepError(ctx.step, name, f"the dataset holds store(s) again since the plan "
                        f"({', '.join(o.rsplit('/', 1)[-1] for o in others)}): not deleted",
                        fix="plan again", action="delete")
    delete(ctx, name)
    ctx.facts["record"].drop_resource(ctx, KIND, name)
    return "deleted"
