"""What every Healthcare request checks first, for the control plane (handlers.py) and DICOMweb
(dicomweb.py) alike: the project (403 when missing, SERVICE_DISABLED when the API is off), the
caller's IAM on the resource and its parents, then the dataset's and store's existence."""
from __future__ import annotations

from dataclasses import dataclass

from provision.emulator.healthcare.common import denied
from provision.emulator.http import Ctx


@dataclass
class Target:
    """The resources a request names, resolved: the project record and full resource names."""

    project: dict
    location: str
    dataset: str | None = None       # full resource names
    store: str | None = None

    @property
    def project_id(self) -> str:
        return self.project["projectId"]

    @property
    def dataset_name(self) -> str:
        """The dataset's full name, for a request that names one (resolve() sets it then)."""
        if self.dataset is None:
            raise AssertionError("the request names no dataset")
        return self.dataset

    @property
    def store_name(self) -> str:
        """The store's full name, for a request that names one (resolve() sets it then)."""
        if self.store is None:
            raise AssertionError("the request names no store")
        return self.store

    @property
    def parent(self) -> str:
        return f"projects/{self.project_id}/locations/{self.location}"


def resolve(ctx: Ctx, permission: str, project: str, location: str | None = None, dataset: str | None = None,
            store: str | None = None, *, check_location: bool = False, initialized: bool = True) -> Target:
    """Project (403 when missing, SERVICE_DISABLED when the API is off), IAM, then existence (403)."""
    backend = ctx.world.healthcare
    asked = f"projects/{project}" + (f"/locations/{location}" if location else "") + \
        (f"/datasets/{dataset}" if dataset else "") + (f"/dicomStores/{store}" if store else "")
    record = backend.project(project, permission, asked)
    t = Target(record, location or "")
    if check_location:
        backend.check_location(t.location)
    if dataset:
        t.dataset = f"{t.parent}/datasets/{dataset}"
    if store:
        t.store = f"{t.dataset}/dicomStores/{store}"
    resource = t.store or t.dataset or (t.parent if location else f"projects/{t.project_id}")
    ctx.require(permission, resource, policies_for(ctx, t))
    if t.dataset:
        ds = backend.dataset_record(t.dataset)
        if ds is None:
            raise denied(permission, resource)
        if initialized:
            backend.require_initialized(ds)
    if t.store and backend.store_record(t.store) is None:
        raise denied(permission, resource)
    return t


def policies_for(ctx: Ctx, t: Target) -> list:
    """The IAM policies that grant access to `t`: its store's, its dataset's, then the project's chain."""
    backend = ctx.world.healthcare
    return [backend.policy(t.store) if t.store else None, backend.policy(t.dataset) if t.dataset else None,
            *backend.project_policies(t.project_id)]
