"""Names of the blueprint's Cloud Healthcare resources, shared by the kinds that create them, grant
on them, import into them and record them: resource names of the dataset and its DICOM stores,
their step IDs in a plan, the kind IDs the ownership record files them under, and the Cloud
Healthcare Service Agent that reads import buckets.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # for annotations only: no import at run time
    from provision.blueprint.models import Blueprint

DATASET = "dataset"           # kind IDs, as plans and the ownership record name them
DICOM_STORE = "dicom-store"


def dataset_name(project_id: str, location: str, dataset_id: str) -> str:
    return f"projects/{project_id}/locations/{location}/datasets/{dataset_id}"


def desired_dataset(bp: Blueprint) -> str:
    """The resource name of the blueprint's dataset."""
    return dataset_name(bp.project.id, bp.dataset.location, bp.dataset.id)


def store_name(dataset: str, store_id: str) -> str:
    return f"{dataset}/dicomStores/{store_id}"


def desired_stores(bp: Blueprint) -> list[str]:
    """The resource names of the blueprint's DICOM stores, in blueprint order."""
    return [store_name(desired_dataset(bp), s.id) for s in bp.dicom_stores]


def store_step_id(bp: Blueprint, name: str, prefix: str = "store") -> str:
    """`store:<id>` in the blueprint's dataset, `store:<location>/<dataset>/<id>` elsewhere."""
    parent, _, sid = name.rpartition("/dicomStores/")
    if parent == desired_dataset(bp):
        return f"{prefix}:{sid}"
    parts = parent.split("/")
    return f"{prefix}:{parts[3]}/{parts[5]}/{sid}"


def agent_email(project_number: str) -> str:
    """The Cloud Healthcare Service Agent of a project."""
    return f"service-{project_number}@gcp-sa-healthcare.iam.gserviceaccount.com"


def agent_member(project_number: str) -> str:
    return f"serviceAccount:{agent_email(project_number)}"
