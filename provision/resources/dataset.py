"""The Healthcare dataset: read, create (a dataset-level long-running operation), delete.

Right after creation Healthcare can answer 404 "dataset not initialized": the retry policy
waits that out. A time zone cannot be changed after creation, so drift is only reported.
"""
from __future__ import annotations

from dataclasses import dataclass

from provision.gcp.context import Ctx
from provision.gcp.errors import is_absent, is_already_exists, is_service_disabled, is_status
from provision.gcp.retry import NotYet


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
