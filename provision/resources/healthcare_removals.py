"""What removing recorded datasets and DICOM stores means, shared by the dataset, dicom-store and
dicom-store-iam kinds: which stores the record names that the blueprint no longer does, what
removing one does (delete it, keep it because it holds studies, or it is gone already), what a
dataset's stores hold, and which recorded dataset the blueprint's replaces.

Pure functions of what plan read: `dataset`, `old_dataset:<name>` (its stores, None when gone)
and `old_store:<name>` ((state, study count)).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from provision.resources.base import Live
from provision.resources.healthcare_names import DATASET, DICOM_STORE, desired_dataset, desired_stores
from provision.resources.steps import DELETE, KEEP, Options
from provision.words import plural

if TYPE_CHECKING:  # for annotations only: no import at run time
    from provision.blueprint.models import Blueprint


def old_stores(bp: Blueprint, live: Live) -> list[str]:
    """Stores the record names (as made, or as holding grants) that the blueprint does not, or all when destroying."""
    want = set() if live.opts.destroy else set(desired_stores(bp))
    named = set(live.record.names(DICOM_STORE)) | {r for r in live.record.granted_resources() if "/dicomStores/" in r}
    return sorted(named - want)


def fate(live: Live, name: str, opts: Options, reimported: bool) -> str:
    """What removal does to a store no longer named: DELETE, KEEP (holds studies) or "gone".
    `reimported`: its dataset is replaced and the blueprint names the store again, so the new
    dataset gets it with its import; any other store with studies goes only with delete_data."""
    state, studies = live.old_store(name)
    if state is None:
        return "gone"
    return KEEP if studies and not (opts.delete_data or reimported) else DELETE


def reimported(bp: Blueprint, name: str, replaced: str | None) -> bool:
    """The store is in the dataset being replaced (`replaced`) and the blueprint names it again."""
    return replaced is not None and bool(replaced) and name.startswith(replaced + "/dicomStores/") \
        and name.rsplit("/", 1)[-1] in {s.id for s in bp.dicom_stores}


def data_in(live: Live, dataset_name: str) -> str:
    """"primary: 2 studies, ..." for the recorded stores of a dataset that hold studies."""
    out = []
    for n in live.record.names(DICOM_STORE):
        if n.startswith(dataset_name + "/dicomStores/"):
            _, studies = live.old_store(n)
            if studies:
                out.append(f"{n.rsplit('/', 1)[-1]}: {plural(studies, 'study')}")
    return ", ".join(out)


def replaced_dataset(bp: Blueprint, live: Live) -> str | None:
    """The recorded dataset the blueprint's replaces: same ID, another location, still there."""
    if live.dataset is not None:
        return None
    return next((n for n in live.record.names(DATASET) if n != desired_dataset(bp)
                 and n.rsplit("/", 1)[-1] == bp.dataset.id and live.old_dataset(n) is not None), None)
