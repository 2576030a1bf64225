"""Cloud Storage JSON API v1 routes, as google-cloud-storage (and the OHIF viewer) call them: this
module has the bucket routes; objects and uploads are in `object_routes` and `upload_routes`,
legacy ACLs in `acl` (each with its own `router`, registered in provision/emulator/server.py),
and the request helpers they share in `requests`.

Buckets: insert, list, get, patch, delete. Bucket IAM: getIamPolicy, setIamPolicy (a flat
Policy body), testIamPermissions. Errors use Storage's own envelope (`errors[].reason`).
"""
from __future__ import annotations

from typing import Any


from provision.emulator.http import Ctx, Router
from provision.emulator.storage.common import (PAGE_MAX, decode_token, encode_token, gcs_error)
from provision.emulator.storage import lockdown
from provision.emulator.storage.buckets import iam_configuration
from provision.emulator.storage.state import Backend
from provision.emulator.storage.requests import (
    API,
    _base,
    _bucket,
    _conditions,
    _doc,
    _full,
    _int,
    _project,
    _require,
    _st,
)

router = Router()


# ------------------------------------------------------------------------------------ buckets

@router.route("POST", "/storage/v1/b", api=API, discovery=_doc("buckets.insert"))
def buckets_insert(ctx: Ctx):
    body = ctx.json()
    project = _project(ctx)
    _require(ctx, "storage.buckets.create", project=project)
    lockdown.refuse_bucket_acls({"iamConfiguration": iam_configuration(body.get("iamConfiguration") or {}, 0)},
                               body, ctx.query)
    ctx.world.latency.sleep("sync:storage.buckets.insert")
    rec = _st(ctx).create_bucket(project, body)
    return _st(ctx).bucket_resource(rec, _base(ctx), full=_full(ctx))


@router.route("GET", "/storage/v1/b", api=API)
def buckets_list(ctx: Ctx):
    project = _project(ctx)
    _require(ctx, "storage.buckets.list", project=project)
    max_results = max(1, min(_int(ctx, "maxResults", PAGE_MAX), PAGE_MAX))
    cursor = decode_token(ctx.query["pageToken"]) if ctx.query.get("pageToken") else ""
    page, nxt = _st(ctx).list_buckets(project["projectNumber"], prefix=ctx.query.get("prefix", ""),
                                      cursor=cursor, max_results=max_results)
    out: dict[str, Any] = {"kind": "storage#buckets"}
    if page:
        out["items"] = [_st(ctx).bucket_resource(rec, _base(ctx), full=_full(ctx)) for rec in page]
    if nxt is not None:
        out["nextPageToken"] = encode_token(nxt)
    return out


@router.route("GET", "/storage/v1/b/<id:bucket>", api=API)
def buckets_get(ctx: Ctx, bucket: str):
    rec = _bucket(ctx, bucket)
    _require(ctx, "storage.buckets.get", bucket=bucket)
    Backend.check_metageneration(rec["metageneration"], _conditions(ctx))
    return _st(ctx).bucket_resource(rec, _base(ctx), full=_full(ctx))


@router.route("PATCH", "/storage/v1/b/<id:bucket>", api=API, discovery=_doc("buckets.patch"))
def buckets_patch(ctx: Ctx, bucket: str):
    current = _bucket(ctx, bucket)
    _require(ctx, "storage.buckets.update", bucket=bucket)
    body = ctx.json()
    lockdown.refuse_bucket_acls(current, body, ctx.query)
    rec = _st(ctx).patch_bucket(bucket, body, _conditions(ctx))
    return _st(ctx).bucket_resource(rec, _base(ctx), full=_full(ctx))


@router.route("DELETE", "/storage/v1/b/<id:bucket>", api=API)
def buckets_delete(ctx: Ctx, bucket: str):
    _bucket(ctx, bucket)
    _require(ctx, "storage.buckets.delete", bucket=bucket)
    _st(ctx).delete_bucket(bucket, _conditions(ctx))
    return 204, None


# ------------------------------------------------------------------------------------ bucket IAM

@router.route("GET", "/storage/v1/b/<id:bucket>/iam", api=API)
def buckets_get_iam(ctx: Ctx, bucket: str):
    _bucket(ctx, bucket)
    _require(ctx, "storage.buckets.getIamPolicy", bucket=bucket)
    return _st(ctx).policy_resource(bucket, _int(ctx, "optionsRequestedPolicyVersion"))


@router.route("PUT", "/storage/v1/b/<id:bucket>/iam", api=API, discovery=_doc("buckets.setIamPolicy"))
def buckets_set_iam(ctx: Ctx, bucket: str):
    rec = _bucket(ctx, bucket)
    _require(ctx, "storage.buckets.setIamPolicy", bucket=bucket)
    body = ctx.json()
    lockdown.refuse_public_members(rec, [m for b in body.get("bindings") or [] if isinstance(b, dict)
                                         for m in b.get("members") or []])
    ctx.world.latency.sleep("sync:storage.buckets.setIamPolicy")
    _st(ctx).set_policy(bucket, body)
    return _st(ctx).policy_resource(bucket, 3)


@router.route("GET", "/storage/v1/b/<id:bucket>/iam/testPermissions", api=API)
def buckets_test_iam(ctx: Ctx, bucket: str):
    _bucket(ctx, bucket)
    asked = ctx.query.getlist("permissions")
    if not asked:
        raise gcs_error(400, "Required parameter: permissions", "required")
    if ctx.world.options.enforce_iam:
        held = [p for p in asked if _st(ctx).holds(ctx.principal or "", p, bucket)]
    else:
        held = [p for p in asked if p.startswith("storage.")]  # everyone acts as the project owner
    out: dict[str, Any] = {"kind": "storage#testIamPermissionsResponse"}
    if held:
        out["permissions"] = held
    return out

