"""Healthcare v1 control plane over HTTP: locations, datasets (create is an LRO), dataset
operations, DICOM stores, IAM on datasets and stores, import and export. DICOMweb routes live in
`dicomweb.py`; this module's `router` combines both.
"""
from __future__ import annotations

from provision.emulator.errors import invalid_argument, not_found
from provision.emulator.healthcare import dicomweb
from provision.emulator.healthcare import common
from provision.emulator.healthcare.resolve import Target, policies_for, resolve
from provision.emulator.healthcare.common import denied, paginate, page_size
from provision.emulator.healthcare.state import Healthcare
from provision.emulator.http import Ctx, Router

control_router = Router()
API = "healthcare"
DOC = "healthcare.v1"
M = "healthcare.projects.locations"
LOC = "/v1/projects/<id:project>/locations/<id:location>"
DS = LOC + "/datasets/<id:dataset>"
STORE = DS + "/dicomStores/<id:store>"


def hc(ctx: Ctx) -> Healthcare:
    return ctx.world.healthcare


# ---- locations -----------------------------------------------------------------------------------
@control_router.route("GET", "/v1/projects/<id:project>/locations", api=API)
def list_locations(ctx: Ctx, project: str):
    t = resolve(ctx, "healthcare.locations.list", project)
    if ctx.query.get("filter"):
        raise invalid_argument(f"Unsupported filter {ctx.query.get('filter')!r}.")
    views = [Healthcare.location_view(t.project_id, loc) for loc in common.LOCATIONS]
    return paginate(views, "locations", page_size(ctx.query.get("pageSize"), 100, 1000), ctx.query.get("pageToken"))


@control_router.route("GET", LOC, api=API)
def get_location(ctx: Ctx, project: str, location: str):
    t = resolve(ctx, "healthcare.locations.get", project, location)
    if location not in common.LOCATIONS:
        raise not_found(f"Location {location} not found for project {t.project_id}.")
    return Healthcare.location_view(t.project_id, location)


# ---- datasets ------------------------------------------------------------------------------------
@control_router.route("POST", LOC + "/datasets", api=API, discovery=(DOC, f"{M}.datasets.create"))
def create_dataset(ctx: Ctx, project: str, location: str):
    t = resolve(ctx, "healthcare.datasets.create", project, location)
    body = ctx.json()
    return hc(ctx).create_dataset(t.project, location, ctx.query.get("datasetId"), body)


@control_router.route("GET", LOC + "/datasets", api=API)
def list_datasets(ctx: Ctx, project: str, location: str):
    t = resolve(ctx, "healthcare.datasets.list", project, location, check_location=True)
    views = hc(ctx).list_datasets(t.project_id, location)
    return paginate(views, "datasets", page_size(ctx.query.get("pageSize")), ctx.query.get("pageToken"))


@control_router.route("GET", DS, api=API)
def get_dataset(ctx: Ctx, project: str, location: str, dataset: str):
    t = resolve(ctx, "healthcare.datasets.get", project, location, dataset)
    record = hc(ctx).dataset_record(t.dataset_name)
    if record is None:   # deleted since resolve() found it: as resolve() answers a missing one
        raise denied("healthcare.datasets.get", t.dataset_name)
    return record["view"]


@control_router.route("PATCH", DS, api=API, discovery=(DOC, f"{M}.datasets.patch"))
def patch_dataset(ctx: Ctx, project: str, location: str, dataset: str):
    t = resolve(ctx, "healthcare.datasets.update", project, location, dataset)
    return hc(ctx).patch_dataset(t.dataset_name, ctx.json(), ctx.query.get("updateMask"))


@control_router.route("DELETE", DS, api=API)
def delete_dataset(ctx: Ctx, project: str, location: str, dataset: str):
    t = resolve(ctx, "healthcare.datasets.delete", project, location, dataset)
    hc(ctx).delete_dataset(t.dataset_name)
    return {}


@control_router.route("GET", DS + ":getIamPolicy", api=API)
def get_dataset_policy(ctx: Ctx, project: str, location: str, dataset: str):
    t = resolve(ctx, "healthcare.datasets.getIamPolicy", project, location, dataset)
    return hc(ctx).get_policy(t.dataset_name, _requested_version(ctx))


@control_router.route("POST", DS + ":setIamPolicy", api=API, discovery=(DOC, f"{M}.datasets.setIamPolicy"))
def set_dataset_policy(ctx: Ctx, project: str, location: str, dataset: str):
    t = resolve(ctx, "healthcare.datasets.setIamPolicy", project, location, dataset)
    return hc(ctx).set_policy(t.dataset_name, ctx.json())


@control_router.route("POST", DS + ":testIamPermissions", api=API, discovery=(DOC, f"{M}.datasets.testIamPermissions"))
def test_dataset_permissions(ctx: Ctx, project: str, location: str, dataset: str):
    t = _resolve_for_test(ctx, project, location, dataset)
    return hc(ctx).test_permissions(ctx.principal, ctx.json().get("permissions") or [], policies_for(ctx, t))


# ---- operations ----------------------------------------------------------------------------------
@control_router.route("GET", DS + "/operations", api=API)
def list_operations(ctx: Ctx, project: str, location: str, dataset: str):
    t = resolve(ctx, "healthcare.operations.list", project, location, dataset, initialized=False)
    ops = hc(ctx).list_operations(t.dataset_name)
    flt = ctx.query.get("filter")
    if flt:
        ops = _filter_operations(ops, flt)
    out = paginate(ops, "operations", page_size(ctx.query.get("pageSize")), ctx.query.get("pageToken"))
    return out


@control_router.route("GET", DS + "/operations/<id:op>", api=API)
def get_operation(ctx: Ctx, project: str, location: str, dataset: str, op: str):
    t = resolve(ctx, "healthcare.operations.get", project, location, dataset, initialized=False)
    view = ctx.world.operations.get(f"{t.dataset}/operations/{op}")
    if view is None:
        raise not_found(f"Operation {t.dataset}/operations/{op} not found.")
    return view


def _filter_operations(ops: list[dict], flt: str) -> list[dict]:
    """`done=true|false` and `metadata.api_method_name="..."`-style filters (AND-joined)."""
    out = ops
    for term in [x.strip() for x in flt.replace(" and ", " AND ").split(" AND ") if x.strip()]:
        key, _, value = term.partition("=")
        key, value = key.strip(), value.strip().strip('"')
        if key == "done":
            out = [o for o in out if bool(o.get("done")) == (value.lower() == "true")]
        elif key in ("metadata.api_method_name", "metadata.apiMethodName"):
            out = [o for o in out if o.get("metadata", {}).get("apiMethodName") == value]
        else:
            raise invalid_argument(f"Unsupported operations filter {flt!r}.")
    return out


# ---- DICOM stores --------------------------------------------------------------------------------
@control_router.route("POST", DS + "/dicomStores", api=API, discovery=(DOC, f"{M}.datasets.dicomStores.create"))
def create_store(ctx: Ctx, project: str, location: str, dataset: str):
    t = resolve(ctx, "healthcare.dicomStores.create", project, location, dataset)
    return hc(ctx).create_store(t.dataset_name, ctx.query.get("dicomStoreId"), ctx.json())


@control_router.route("GET", DS + "/dicomStores", api=API)
def list_stores(ctx: Ctx, project: str, location: str, dataset: str):
    t = resolve(ctx, "healthcare.dicomStores.list", project, location, dataset)
    views = hc(ctx).list_stores(t.dataset_name, ctx.query.get("filter"))
    return paginate(views, "dicomStores", page_size(ctx.query.get("pageSize")), ctx.query.get("pageToken"))


@control_router.route("GET", STORE, api=API)
def get_store(ctx: Ctx, project: str, location: str, dataset: str, store: str):
    t = resolve(ctx, "healthcare.dicomStores.get", project, location, dataset, store)
    record = hc(ctx).store_record(t.store_name)
    if record is None:   # deleted since resolve() found it: as resolve() answers a missing one
        raise denied("healthcare.dicomStores.get", t.store_name)
    return record["view"]


@control_router.route("PATCH", STORE, api=API, discovery=(DOC, f"{M}.datasets.dicomStores.patch"))
def patch_store(ctx: Ctx, project: str, location: str, dataset: str, store: str):
    t = resolve(ctx, "healthcare.dicomStores.update", project, location, dataset, store)
    return hc(ctx).patch_store(t.store_name, ctx.json(), ctx.query.get("updateMask"))


@control_router.route("DELETE", STORE, api=API)
def delete_store(ctx: Ctx, project: str, location: str, dataset: str, store: str):
    t = resolve(ctx, "healthcare.dicomStores.delete", project, location, dataset, store)
    hc(ctx).delete_store(t.store_name)
    return {}


@control_router.route("GET", STORE + ":getIamPolicy", api=API)
def get_store_policy(ctx: Ctx, project: str, location: str, dataset: str, store: str):
    t = resolve(ctx, "healthcare.dicomStores.getIamPolicy", project, location, dataset, store)
    return hc(ctx).get_policy(t.store_name, _requested_version(ctx))


@control_router.route("POST", STORE + ":setIamPolicy", api=API, discovery=(DOC, f"{M}.datasets.dicomStores.setIamPolicy"))
def set_store_policy(ctx: Ctx, project: str, location: str, dataset: str, store: str):
    t = resolve(ctx, "healthcare.dicomStores.setIamPolicy", project, location, dataset, store)
    return hc(ctx).set_policy(t.store_name, ctx.json())


@control_router.route("POST", STORE + ":testIamPermissions", api=API,
              discovery=(DOC, f"{M}.datasets.dicomStores.testIamPermissions"))
def test_store_permissions(ctx: Ctx, project: str, location: str, dataset: str, store: str):
    t = _resolve_for_test(ctx, project, location, dataset, store)
    return hc(ctx).test_permissions(ctx.principal, ctx.json().get("permissions") or [], policies_for(ctx, t))


@control_router.route("POST", STORE + ":import", api=API, discovery=(DOC, f"{M}.datasets.dicomStores.import"))
def import_dicom(ctx: Ctx, project: str, location: str, dataset: str, store: str):
    t = resolve(ctx, "healthcare.dicomStores.import", project, location, dataset, store)
    return hc(ctx).start_import(t.store_name, t.project, ctx.json())


@control_router.route("POST", STORE + ":export", api=API, discovery=(DOC, f"{M}.datasets.dicomStores.export"))
def export_dicom(ctx: Ctx, project: str, location: str, dataset: str, store: str):
    t = resolve(ctx, "healthcare.dicomStores.export", project, location, dataset, store)
    return hc(ctx).start_export(t.store_name, t.project, ctx.json())


def _resolve_for_test(ctx: Ctx, project: str, location: str, dataset: str, store: str | None = None) -> Target:
    """testIamPermissions needs no permission of its own; the resource must still exist."""
    backend = hc(ctx)
    name = f"projects/{project}/locations/{location}/datasets/{dataset}" + (f"/dicomStores/{store}" if store else "")
    record = backend.project(project, "healthcare.datasets.get", name)
    t = Target(record, location)
    t.dataset = f"{t.parent}/datasets/{dataset}"
    t.store = f"{t.dataset}/dicomStores/{store}" if store else None
    if backend.dataset_record(t.dataset) is None or (t.store and backend.store_record(t.store) is None):
        raise common.denied("healthcare.dicomStores.get" if store else "healthcare.datasets.get", t.store or t.dataset)
    return t


def _requested_version(ctx: Ctx) -> int | None:
    raw = ctx.query.get("options.requestedPolicyVersion")
    if raw in (None, ""):
        return None
    try:
        v = int(raw)
    except ValueError:
        raise invalid_argument(f"Invalid value for options.requestedPolicyVersion: {raw!r}") from None
    if v not in (0, 1, 3):
        raise invalid_argument(f"Invalid requested policy version {v}: use 1 or 3.")
    return v


# What the server serves for Healthcare: the control plane above and DICOMweb.
router = Router().include(control_router).include(dicomweb.router)
