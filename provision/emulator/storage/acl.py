"""Cloud Storage's legacy ACL routes: bucketAccessControls, defaultObjectAccessControls and
objectAccessControls (list, get, insert, update, patch, delete).

A bucket with uniform bucket-level access refuses every one of them with Google's 400; under
public access prevention an entry for allUsers/allAuthenticatedUsers is Google's 412
(provision/emulator/storage/lockdown.py). Without uniform access, a bucket's (and an object's)
ACL starts as Google's default (the project's owners and editors OWNER, viewers READER) and
takes entries; the emulator lists them but does not evaluate them for access (its access checks
read IAM only: a documented simplification).
"""
from __future__ import annotations

from provision.emulator.http import Ctx, Router
from provision.emulator.storage import lockdown
from provision.emulator.storage.buckets import acl_entry
from provision.emulator.storage.common import gcs_error
from provision.emulator.storage.requests import API, _base, _bucket, _doc, _object, _require

router = Router()
ROLES = {"bucket": ("OWNER", "WRITER", "READER"), "object": ("OWNER", "READER")}


def _entries(ctx: Ctx, rec: dict, scope: str) -> dict[str, str]:
    return ctx.world.storage.buckets.acl(rec, scope)


def _resource(ctx: Ctx, rec: dict, scope: str, entity: str, role: str) -> dict:
    return acl_entry(rec, _base(ctx), scope, entity, role)


def _check(ctx: Ctx, bucket: str, scope: str, *, write: bool) -> dict:
    rec = _bucket(ctx, bucket)
    on_object = scope.startswith("object:")
    what = "objects" if on_object else "buckets"
    _require(ctx, f"storage.{what}.{'setIamPolicy' if write else 'getIamPolicy'}", bucket=bucket)
    if on_object:
        _object(ctx, bucket, scope[len("object:"):])
        lockdown.refuse_object_acl(rec, write=write)
    else:
        lockdown.refuse_bucket_acl(rec, write=write)
    return rec


def _list(ctx: Ctx, bucket: str, scope: str) -> dict:
    rec = _check(ctx, bucket, scope, write=False)
    items = [_resource(ctx, rec, scope, e, r) for e, r in sorted(_entries(ctx, rec, scope).items())]
    kind = "storage#bucketAccessControls" if scope == "bucket" else "storage#objectAccessControls"
    return {"kind": kind, "items": items}


def _get(ctx: Ctx, bucket: str, scope: str, entity: str) -> dict:
    rec = _check(ctx, bucket, scope, write=False)
    role = _entries(ctx, rec, scope).get(entity)
    if role is None:
        raise gcs_error(404, "Not Found", "notFound")
    return _resource(ctx, rec, scope, entity, role)


def _put(ctx: Ctx, bucket: str, scope: str, entity: str | None) -> dict:
    rec = _check(ctx, bucket, scope, write=True)
    body = ctx.json()
    entity = entity or body.get("entity")
    role = body.get("role")
    if not entity or role not in ROLES["bucket" if scope == "bucket" else "object"]:
        raise gcs_error(400, "Invalid argument: an access control needs an entity and a role "
                             f"({', '.join(ROLES['bucket' if scope == 'bucket' else 'object'])}).", "invalid")
    lockdown.refuse_public_members(rec, [entity])
    with ctx.world.db.transaction():
        entries = dict(_entries(ctx, rec, scope), **{entity: role})
        ctx.world.storage.buckets.put_acl(bucket, scope, entries)
    return _resource(ctx, rec, scope, entity, role)


def _delete(ctx: Ctx, bucket: str, scope: str, entity: str):
    rec = _check(ctx, bucket, scope, write=True)
    with ctx.world.db.transaction():
        entries = dict(_entries(ctx, rec, scope))
        if entries.pop(entity, None) is None:
            raise gcs_error(404, "Not Found", "notFound")
        ctx.world.storage.buckets.put_acl(bucket, scope, entries)
    return 204, None


def _routes(prefix: str, scope_of, doc: str) -> None:
    """The six methods of one ACL collection under `prefix` (`scope_of(args)` names its scope)."""
    @router.route("GET", prefix, api=API)
    def list_(ctx: Ctx, bucket: str, **kw):
        return _list(ctx, bucket, scope_of(kw))

    @router.route("POST", prefix, api=API, discovery=_doc(f"{doc}.insert"))
    def insert(ctx: Ctx, bucket: str, **kw):
        return _put(ctx, bucket, scope_of(kw), None)

    @router.route("GET", f"{prefix}/<id:entity>", api=API)
    def get(ctx: Ctx, bucket: str, entity: str, **kw):
        return _get(ctx, bucket, scope_of(kw), entity)

    @router.route(["PUT", "PATCH"], f"{prefix}/<id:entity>", api=API, discovery=_doc(f"{doc}.update"))
    def update(ctx: Ctx, bucket: str, entity: str, **kw):
        return _put(ctx, bucket, scope_of(kw), entity)

    @router.route("DELETE", f"{prefix}/<id:entity>", api=API)
    def delete(ctx: Ctx, bucket: str, entity: str, **kw):
        return _delete(ctx, bucket, scope_of(kw), entity)


_routes("/storage/v1/b/<id:bucket>/acl", lambda kw: "bucket", "bucketAccessControls")
_routes("/storage/v1/b/<id:bucket>/defaultObjectAcl", lambda kw: "default", "defaultObjectAccessControls")
_routes("/storage/v1/b/<id:bucket>/o/<path:object>/acl", lambda kw: f"object:{kw['object']}", "objectAccessControls")
