"""DICOM stores (synchronous create) and their IAM (additive, version 3)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from provision.gcp.context import Ctx
from provision.gcp.errors import is_absent, is_already_exists, is_service_disabled, is_status
from provision.gcp.retry import NotYet
from provision.resources import iam


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


def read_iam(ctx: Ctx, name: str) -> dict:
    return iam.read(ctx, iam.dicom_store_io(ctx, name))


def grant(ctx: Ctx, name: str, pairs: Iterable[iam.Pair]) -> list[iam.Pair]:
    """Add the missing pairs, marking them as added by provision (a store label)."""
    return iam.add_marked(ctx, iam.dicom_store_io(ctx, name), iam.dicom_store_labels(ctx, name), pairs)


def revoke(ctx: Ctx, name: str, pairs: Iterable[iam.Pair]) -> list[iam.Pair]:
    """Remove those of the pairs provision added; the others stay."""
    return iam.remove_marked(ctx, iam.dicom_store_io(ctx, name), iam.dicom_store_labels(ctx, name), pairs)
