"""Calls on a DICOM store that more than one kind makes: read it (its labels), patch one label,
read its IAM policy, and count its studies with QIDO-RS, as OHIF asks.
"""
from __future__ import annotations

from typing import Any

from provision.gcp.context import Ctx
from provision.gcp.errors import is_absent, is_service_disabled, is_status, raise_for_status
from provision.resources import iam
from provision.resources.states import StoreState

QIDO_PAGE = 1000
QIDO_PAGES = 1000


def stores(ctx: Ctx) -> Any:
    """The discovery client's `projects.locations.datasets.dicomStores` resource."""
    return ctx.target.healthcare().projects().locations().datasets().dicomStores()


def read(ctx: Ctx, name: str) -> StoreState | None:
    """The store, or None when absent (also when the Healthcare API is not enabled yet)."""
    def get() -> StoreState | None:
        try:
            s = stores(ctx).get(name=name).execute(num_retries=0)
        except Exception as exc:  # noqa: BLE001
            if is_absent(exc) or (is_status(exc, 403) and is_service_disabled(exc)):
                return None
            raise
        return StoreState(s.get("name", name), dict(s.get("labels") or {}))

    return ctx.call(get)


def set_label(ctx: Ctx, name: str, key: str, value: str) -> None:
    """Patch one label, keeping the others (read, then patch with updateMask=labels)."""
    def attempt() -> Any:
        with ctx.resource_lock(name):
            s = stores(ctx).get(name=name).execute(num_retries=0)
            labels = dict(s.get("labels") or {})
            labels[key] = value
            stores(ctx).patch(name=name, updateMask="labels", body={"labels": labels}).execute(num_retries=0)

    ctx.call(attempt)


def read_iam(ctx: Ctx, name: str) -> dict[str, Any] | None:
    """The store's policy; None when the store does not exist (or Healthcare is not enabled yet)."""
    def get() -> dict[str, Any] | None:
        try:
            return iam.dicom_store_io(ctx, name).read()
        except Exception as exc:  # noqa: BLE001
            if is_absent(exc) or (is_status(exc, 403) and is_service_disabled(exc)):
                return None
            raise
    return ctx.call(get)


def count_studies(ctx: Ctx, store_name: str, stop_at: int | None = None) -> int:
    """QIDO /studies, paged, as OHIF asks it (application/dicom+json)."""
    session = ctx.target.session()
    url = f"{ctx.target.root('healthcare')}/v1/{store_name}/dicomWeb/studies"

    def page(offset: int) -> int:
        r = session.get(url, params={"limit": QIDO_PAGE, "offset": offset, "includefield": "0020000D"},
                        headers={"Accept": "application/dicom+json"}, timeout=60)
        if r.status_code == 204:
            return 0
        raise_for_status(r)
        body = r.json() if r.content.strip() else []
        return len(body) if isinstance(body, list) else 0

    total = 0
    for i in range(QIDO_PAGES):
        n = ctx.call(lambda: page(i * QIDO_PAGE))  # noqa: B023 -- ctx.call runs it before the loop moves on
        total += n
        if n < QIDO_PAGE or (stop_at is not None and total >= stop_at):
            break
    return total
