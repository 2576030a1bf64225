"""The Healthcare dataset: read, create (a dataset-level long-running operation), delete.

Right after creation Healthcare can answer 404 "dataset not initialized": the retry policy
waits that out. A time zone cannot be changed after creation, so drift is only reported.

Kind `dataset`: create (recorded first); a recorded dataset the blueprint no longer names is
deleted once its stores are (kept while a store holds data, unless delete_data, and when it holds
stores provision did not make); a location change of a recorded dataset is `-/+ replace`.
Reads `dataset`, `old_dataset:<name>` (its stores, None when gone) and `healthcare_locations`
(the locations the target offers the project, from projects.locations.list; None when the
Healthcare API is not enabled yet). The blueprint only checks a location's form: a location the
target does not offer is refused before any write by provision/checks/locations.py.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from provision.gcp.context import Ctx
from provision.gcp.errors import StepError, is_absent, is_already_exists, is_service_disabled, is_status
from provision.gcp.retry import NotYet
from provision.resources.base import Draft, Key, Live, Reads
from provision.resources.healthcare_names import DATASET, DICOM_STORE, desired_dataset, desired_stores, store_step_id
from provision.resources.healthcare_removals import data_in, fate, replaced_dataset
from provision.resources.states import DatasetState
from provision.resources.steps import CREATE, DELETE, KEEP, NOOP, REPLACE, Options, Step, field_change
from provision.resources.store_calls import count_studies
from provision.resources.store_calls import read as read_store
from provision.words import plural

if TYPE_CHECKING:  # for annotations only: no import at run time
    from provision.blueprint.models import Blueprint


def _datasets(ctx: Ctx) -> Any:
    return ctx.target.healthcare().projects().locations().datasets()


def read(ctx: Ctx, name: str, *, disabled_is_absent: bool = True) -> DatasetState | None:
    """The dataset, or None when absent (also when the Healthcare API is not enabled yet)."""

    def get() -> DatasetState | None:
        try:
            d = _datasets(ctx).get(name=name).execute(num_retries=0)
        except Exception as exc:  # noqa: BLE001
            if is_absent(exc):
                return None
            if disabled_is_absent and is_status(exc, 403) and is_service_disabled(exc):
                return None
            raise
        return _state(d, name)

    return ctx.call(get)


def _state(d: dict[str, Any], name: str = "") -> DatasetState:
    return DatasetState(d.get("name", name), d.get("timeZone", ""), (d.get("encryptionSpec") or {}).get("kmsKeyName", ""))


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


def create(ctx: Ctx, name: str, time_zone: str, kms_key: str | None = None) -> DatasetState:
    """Create the dataset (with `kms_key` as its CMEK key, set at creation only) and wait for it."""
    parent, _, dataset_id = name.rpartition("/datasets/")
    body: dict[str, Any] = {"timeZone": time_zone}
    if kms_key:
        body["encryptionSpec"] = {"kmsKeyName": kms_key}

    def attempt() -> dict[str, Any] | None:
        try:
            op = _datasets(ctx).create(parent=parent, datasetId=dataset_id, body=body).execute(num_retries=0)
        except Exception as exc:  # noqa: BLE001
            if is_already_exists(exc):
                return None
            raise
        ctx.progress("waiting for dataset creation")
        return ctx.wait_healthcare(op, kind="healthcare.datasets.create")

    op = ctx.call(attempt)
    if op is None:
        ctx.note(f"dataset {dataset_id} already exists: adopted")
        return verify(ctx, name)
    # The finished operation's response is the dataset as created: no read-back needed (a store
    # created next may still meet 404 "dataset not initialized", which the retry policy waits out).
    made = op.get("response") or {}
    if made.get("name") == name:
        return _state(made)
    return verify(ctx, name)


def verify(ctx: Ctx, name: str) -> DatasetState:
    def check() -> DatasetState:
        d = read(ctx, name, disabled_is_absent=False)
        if d is None:
            raise NotYet(f"dataset {name} not visible yet")
        return d

    return ctx.call(check)


def delete(ctx: Ctx, name: str) -> None:
    def attempt() -> Any:
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
KIND = DATASET


def step_id(bp: Blueprint, name: str) -> str:
    """`dataset` for the blueprint's; `dataset:<location>/<id>` for another one the record names."""
    if name == desired_dataset(bp):
        return KIND
    parts = name.split("/")
    return f"{KIND}:{parts[3]}/{parts[5]}"


def _old(bp: Blueprint, live: Live, opts: Options) -> list[str]:
    """Recorded datasets to remove: those the blueprint no longer names (all of them when destroying)."""
    return [n for n in live.record.names(KIND) if opts.destroy or n != desired_dataset(bp)]


def reads(bp: Blueprint, live: Live, phase: int) -> Reads:
    if live.project is None:
        return {}
    if phase == 2:
        return {Key.DATASET: lambda ctx: read(ctx, desired_dataset(bp))}
    if phase == 3:
        out: Reads = {Key.old_dataset(n): (lambda ctx, n=n: list_stores(ctx, n) if read(ctx, n) else None)  # type: ignore[misc]  # a lambda with a bound default (mypy cannot infer it)
                      for n in _old(bp, live, live.opts)}
        if not live.opts.destroy and live.dataset is None:   # an existing dataset's location is valid
            out["healthcare_locations"] = lambda ctx: read_locations(ctx, bp.project.id)
        out.update(_rekey_reads(bp, live))
        return out
    return {}


def _rekey_reads(bp: Blueprint, live: Live) -> Reads:
    """Before a CMEK key change re-creates the dataset: the studies in each of its stores (`rekey_studies:<store>`),
    to say what is lost and to keep what no import brings back."""
    state = live.dataset
    if live.opts.destroy or state is None or (state.kms_key or "") == (bp.dataset.kms_key or "") \
            or not live.record.owns(KIND, desired_dataset(bp)):
        return {}
    return {f"rekey_studies:{n}": (lambda ctx, n=n: count_studies(ctx, n) if read_store(ctx, n) else 0)  # type: ignore[misc]  # a lambda with a bound default (mypy cannot infer it)
            for n in desired_stores(bp)}


def diff(bp: Blueprint, live: Live, opts: Options, draft: Draft) -> None:
    name, ds, state = desired_dataset(bp), bp.dataset, live.dataset
    old_for_new = None if opts.destroy else replaced_dataset(bp, live)
    if opts.destroy:
        if state is not None and not live.record.owns(KIND, name):
            draft.keep(KIND, KIND, name, "not created by provision: not deleted")
    elif state is None:
        changes = [f"create dataset {ds.id} in {ds.location} (time zone {ds.time_zone})"]
        action = CREATE
        if old_for_new:
            action = REPLACE
            was = old_for_new.split("/")[3]
            held = data_in(live, old_for_new)
            why = _kept_because(bp, live, opts, old_for_new, replacing=True)
            then = (f"then the old dataset in {was} is deleted with its stores"
                    + (f" ({held})" if held else " (they hold no studies)")) if why is None else \
                (f"then the old dataset in {was} is kept ({held}): {why}; the stores the blueprint names "
                 "are deleted there once imported again")
            changes = [f"location {was} -> {ds.location}: a dataset's location cannot change",
                       f"a new dataset {ds.id} is created in {ds.location}, its stores are created and imported again",
                       then]
        fields = [field_change("location", old_for_new.split("/")[3], ds.location)] if old_for_new else []
        if ds.kms_key:
            changes[0 if action == CREATE else 1] += f", encrypted with {ds.kms_key}"
        draft.add(Step(KIND, KIND, name, action, changes, ["apis", "kms-key-iam"],
                       lambda ctx: _create(ctx, name, ds.time_zone, ds.kms_key),
                       claims=[("resource", KIND, name)], fields=fields))
    else:
        if ds.time_zone and state.time_zone and state.time_zone != ds.time_zone:
            draft.note(f"dataset {ds.id} has time zone {state.time_zone}, the blueprint says {ds.time_zone}; "
                       "a dataset's time zone cannot be changed")
        _existing(bp, live, opts, draft, name, state)
    for old in _old(bp, live, opts):
        _remove(bp, live, opts, draft, old, replacing=old == old_for_new)


def _create(ctx: Ctx, name: str, time_zone: str, kms_key: str | None = None) -> str:
    ctx.facts.record.add_resource(ctx, KIND, name)
    create(ctx, name, time_zone, kms_key)
    return name


def _existing(bp: Blueprint, live: Live, opts: Options, draft: Draft, name: str, state: DatasetState) -> None:
    """The blueprint's dataset exists: unchanged, or `-/+ replace` when its CMEK key changed (a key is set at
    creation only). Only a dataset provision made is replaced; another one's key is reported as drift; one
    whose stores hold studies no import brings back is kept unless --delete-data."""
    want, have = bp.dataset.kms_key or "", state.kms_key or ""
    if want == have:
        draft.add(Step(KIND, KIND, name, NOOP, [], ["apis"]))
        return
    words = {"": "Google-managed encryption"}
    if not live.record.owns(KIND, name):
        draft.add(Step(KIND, KIND, name, NOOP, [], ["apis"], drift=[
            f"encryption {words.get(have, have)}, the blueprint says {words.get(want, want)}: the dataset was not "
            "created by provision, so it is not replaced (a dataset's key is set at creation only)"]))
        return
    held, lost = _data_of(bp, live)
    if lost and not opts.delete_data:
        draft.keep(KIND, KIND, name, f"kept with {words.get(have, have)}: changing its CMEK key re-creates it, and its "
                   f"stores hold studies no import brings back ({lost}); apply --replace --delete-data re-creates "
                   "it without them", ["apis"])
        return
    changes = [f"encryption {words.get(have, have)} -> {words.get(want, want)}: a dataset's CMEK key is set at "
               "creation only",
               f"the dataset {bp.dataset.id} is deleted with its stores" + (f" ({held})" if held else
                                                                             " (they hold no studies)"),
               "then created again" + (f" with {want}" if want else "") + "; its stores are created and imported again"
               + (f"; not imported again, so lost: {lost}" if lost else "")]
    for store_name in desired_stores(bp):   # the stores go with the dataset: plan them anew
        live.read[Key.store(store_name)] = None
        live.read.pop(Key.store_policy(store_name), None)
    draft.add(Step(KIND, KIND, name, REPLACE, changes, ["apis", "kms-key-iam"],
                   lambda ctx: _recreate(ctx, name, bp.dataset.time_zone, want or None),
                   fields=[field_change("kms_key", have or None, want or None)]))


def _data_of(bp: Blueprint, live: Live) -> tuple[str, str]:
    """("primary: 2 studies, ...", the part of it no import brings back) for the blueprint's stores."""
    held, lost = [], []
    for s, store_name in zip(bp.dicom_stores, desired_stores(bp), strict=True):
        n = live.get(f"rekey_studies:{store_name}", live.get(f"studies:{store_name}", 0))
        if n:
            held.append(f"{s.id}: {plural(n, 'study')}")
            if not s.import_:
                lost.append(held[-1])
    return ", ".join(held), ", ".join(lost)


def _recreate(ctx: Ctx, name: str, time_zone: str, kms_key: str | None) -> str:
    """Delete the dataset with its stores, then create it again with the new key."""
    others = list_stores(ctx, name)
    ctx.progress(f"deleting dataset {name.rsplit('/', 1)[-1]} and its {len(others)} store(s)")
    delete(ctx, name)
    create(ctx, name, time_zone, kms_key)
    return f"{name.rsplit('/', 1)[-1]} created again" + (f" with {kms_key}" if kms_key else "")


def _remove(bp: Blueprint, live: Live, opts: Options, draft: Draft, name: str, *, replacing: bool) -> None:
    sid = step_id(bp, name)
    stores = live.old_dataset(name)
    if stores is None:
        draft.add(Step(sid, KIND, name, DELETE, ["already gone: forget it in the record"], [],
                       lambda ctx: (ctx.facts.record.drop_resource(ctx, KIND, name), "forgotten")[1], forgets=1))
        return
    why = _kept_because(bp, live, opts, name, replacing=replacing)
    if why is not None:
        draft.keep(sid, KIND, name, f"kept: {why}")
        return
    deps = [store_step_id(bp, s) for s in stores]
    if replacing:   # the old data goes only once the new stores hold theirs
        deps += [f"import:{s.id}" for s in bp.dicom_stores] + [f"store:{s.id}" for s in bp.dicom_stores]
    draft.add(Step(sid, KIND, name, DELETE, [f"delete dataset {name.rsplit('/', 1)[-1]} in {name.split('/')[3]}"],
                   deps, lambda ctx: _delete_recorded(ctx, name)))


def _kept_because(bp: Blueprint, live: Live, opts: Options, name: str, *, replacing: bool) -> str | None:
    """Why a recorded dataset to remove must stay, or None. Replacing deletes only the stores the
    blueprint names again (they are created and imported anew in the new dataset): a store it no
    longer names keeps its studies, and so its dataset, unless delete_data (issue 18)."""
    stores = live.old_dataset(name) or []
    ours = set(live.record.names(DICOM_STORE))
    foreign = [s.rsplit("/", 1)[-1] for s in stores if s not in ours]
    if foreign:
        return f"holds store(s) provision did not make ({', '.join(sorted(foreign))})"
    again = {s.id for s in bp.dicom_stores} if replacing else set()
    kept = [s.rsplit("/", 1)[-1] for s in stores
            if fate(live, s, opts, s.rsplit("/", 1)[-1] in again) == KEEP]
    if kept:
        why = "are kept with their studies" if opts.destroy else "hold data the blueprint no longer names"
        return f"its store(s) {', '.join(kept)} {why} (--delete-data deletes them)"
    return None


def _delete_recorded(ctx: Ctx, name: str) -> str:
    others = list_stores(ctx, name)
    if others:
        raise StepError(ctx.step, name, f"the dataset holds store(s) again since the plan "
                        f"({', '.join(o.rsplit('/', 1)[-1] for o in others)}): not deleted",
                        fix="plan again", action="delete")
    delete(ctx, name)
    ctx.facts.record.drop_resource(ctx, KIND, name)
    return "deleted"
