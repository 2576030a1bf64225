"""Cloud Storage JSON API v1 routes, as google-cloud-storage (and the OHIF viewer) call them.

Buckets: insert, list, get, patch, delete. Bucket IAM: getIamPolicy, setIamPolicy (a flat
Policy body), testIamPermissions. Objects: media, multipart and resumable uploads (chunks by
PUT or POST), get, download (alt=media, /download/..., Range), list (prefix, delimiter,
matchGlob, offsets, paging), patch, delete, copy, rewrite, compose, move. Errors use Storage's own envelope (`errors[].reason`).
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Iterator
from urllib.parse import quote

from werkzeug.http import http_date
from werkzeug.wrappers import Response

from provision.emulator import multipart
from provision.emulator.common import ANONYMOUS_OWNER
from provision.emulator.errors import unauthenticated
from provision.emulator.http import Ctx, Router, parse_json_body
from provision.emulator.storage.common import (PAGE_MAX, bucket_not_found, decode_token, encode_token, gcs_error,
                                               object_not_found, proto_etag)
from provision.emulator.storage import lockdown
from provision.emulator.storage.buckets import iam_configuration
from provision.emulator.storage.names import object_name_problem
from provision.emulator.storage.objects import validate_object_metadata
from provision.emulator.storage.state import Backend
from provision.emulator.storage.uploads import Sink, verify_hashes

router = Router()
API = "storage"
UPLOAD_LIMIT = 5 << 40           # 5 TiB, Cloud Storage's object size ceiling
HEAD_LIMIT = 2 << 20             # multipart: the JSON part and headers must arrive within this
CONDITIONS = ("ifGenerationMatch", "ifGenerationNotMatch", "ifMetagenerationMatch", "ifMetagenerationNotMatch")


def _doc(method: str) -> tuple[str, str]:
    return ("storage.v1", f"storage.{method}")


def _st(ctx: Ctx) -> Backend:
    return ctx.world.storage


def _base(ctx: Ctx) -> str:
    """Where this emulator is, as the client reached it (selfLink, mediaLink, session URIs)."""
    return ctx.request.host_url


def _int(ctx: Ctx, key: str, default: int | None = None) -> int | None:
    raw = ctx.query.get(key)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise gcs_error(400, f"Invalid argument: {key}={raw!r} is not an integer.", "invalid") from None


def _conditions(ctx: Ctx) -> dict[str, int]:
    return {k: _int(ctx, k) for k in CONDITIONS if ctx.query.get(k) not in (None, "")}


def _full(ctx: Ctx) -> bool:
    return ctx.query.get("projection") == "full"


def _require(ctx: Ctx, permission: str, *, bucket: str | None = None, project: dict | None = None) -> None:
    """Under --enforce-iam, a 403 in Storage's words unless the caller holds `permission`."""
    if not ctx.world.options.enforce_iam:
        return
    principal = ctx.principal or ""
    st = _st(ctx)
    if project is not None:
        ok, what = st.holds_on_project(principal, permission, project), "Google Cloud project"
    else:
        ok = st.holds(principal, permission, bucket)
        what = "Google Cloud Storage object" if permission.startswith("storage.objects.") and \
            permission != "storage.objects.list" else "Google Cloud Storage bucket"
    if not ok:
        who = principal.partition(":")[2] or principal or "Anonymous caller"
        raise gcs_error(403, f"{who} does not have {permission} access to the {what}. Permission '{permission}' "
                             "denied on resource (or it may not exist).", "forbidden")


def _bucket(ctx: Ctx, name: str) -> dict:
    rec = _st(ctx).bucket(name)
    if rec is None:
        raise bucket_not_found()
    _billing_project(ctx, rec)
    return rec


# Requester Pays (cloud.google.com/storage/docs/requester-pays): once a bucket's billing.requesterPays
# is set, a request must name a billing project (`userProject`) in good standing on which the caller
# holds serviceusage.services.use, unless the caller may bill the bucket's own project
# (resourcemanager.projects.createBillingAssignment there, as its owners may; the audit log in
# theiagen/public_health_bioinformatics#449 shows that permission checked on such a request).
# Without one, Cloud Storage answers 400 `required` "Bucket is a requester pays bucket but no user
# project provided." (googleapis/google-cloud-python#4674, forseti-security#1300,
# renchap/shrine-google_cloud_storage#56); a billing project the caller may not use is a 403
# "... does not have serviceusage.services.use access to the Google Cloud project." (hail-is/hail#9096).
# A userProject naming no project: 400 "User project specified in the request is invalid." (the
# wording is from memory of Cloud Storage's answers, not from a capture).
# Requester Pays is billing, not IAM: it holds without --enforce-iam too, where the anonymous caller
# stands for the owner of the projects it creates (ANONYMOUS_OWNER), not of everyone's.
REQUESTER_PAYS_MISSING = "Bucket is a requester pays bucket but no user project provided."


def _billing_project(ctx: Ctx, rec: dict) -> None:
    st = _st(ctx)
    user_project = ctx.query.get("userProject")
    if user_project:
        project = st.project(user_project)
        if project is None:
            raise gcs_error(400, "User project specified in the request is invalid.", "invalid")
        if ctx.world.options.enforce_iam and not st.holds_on_project(ctx.principal or "", "serviceusage.services.use",
                                                                     project):
            who = (ctx.principal or "").partition(":")[2] or "Anonymous caller"
            raise gcs_error(403, f"{who} does not have serviceusage.services.use access to the Google Cloud project. "
                                 "Permission 'serviceusage.services.use' denied on resource (or it may not exist).",
                            "forbidden")
        return
    if not (rec.get("billing") or {}).get("requesterPays"):
        return
    payer = ctx.principal or ("" if ctx.world.options.enforce_iam else ANONYMOUS_OWNER)
    owner = {"projectId": rec["projectId"], "projectNumber": rec["projectNumber"]}
    if payer and st.holds_on_project(payer, "resourcemanager.projects.createBillingAssignment", owner):
        return
    raise gcs_error(400, REQUESTER_PAYS_MISSING, "required")


def _project(ctx: Ctx) -> dict:
    key = ctx.query.get("project")
    if not key:
        raise gcs_error(400, "Required parameter: project", "required")
    project = _st(ctx).project(key)
    if project is None:
        raise gcs_error(400, f"Unknown project id: {key}", "invalid")
    return project


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


# ------------------------------------------------------------------------------------ objects

@router.route("GET", "/storage/v1/b/<id:bucket>/o", api=API)
def objects_list(ctx: Ctx, bucket: str):
    _bucket(ctx, bucket)
    _require(ctx, "storage.objects.list", bucket=bucket)
    max_results = _int(ctx, "maxResults", PAGE_MAX)
    if max_results < 0:
        raise gcs_error(400, "Invalid argument: maxResults must not be negative.", "invalid")
    max_results = min(max_results or PAGE_MAX, PAGE_MAX)
    cursor = decode_token(ctx.query["pageToken"]) if ctx.query.get("pageToken") else ""
    st = _st(ctx)
    items, prefixes, nxt = st.list_objects(
        bucket, prefix=ctx.query.get("prefix", ""), delimiter=ctx.query.get("delimiter", ""),
        match_glob=ctx.query.get("matchGlob") or None, start_offset=ctx.query.get("startOffset", ""),
        end_offset=ctx.query.get("endOffset") or None, cursor=cursor, max_results=max_results,
        include_trailing_delimiter=ctx.query.get("includeTrailingDelimiter", "").lower() == "true")
    out: dict[str, Any] = {"kind": "storage#objects"}
    if nxt is not None:
        out["nextPageToken"] = encode_token(nxt)
    if prefixes:
        out["prefixes"] = prefixes
    if items:
        base = _base(ctx)
        out["items"] = [st.object_resource(o, base) for o in items]
    return out


def _object(ctx: Ctx, bucket: str, name: str) -> dict:
    obj = _st(ctx).get_object(bucket, name)
    generation = _int(ctx, "generation")
    if obj is None or (generation is not None and generation != obj["generation"]):
        raise object_not_found(bucket, name)
    return obj


def _get_object(ctx: Ctx, bucket: str, name: str, default_alt: str) -> Any:
    """objects.get: the object's resource, or its bytes with alt=media (the default on the download path)."""
    _bucket(ctx, bucket)
    _require(ctx, "storage.objects.get", bucket=bucket)
    obj = _object(ctx, bucket, name)
    Backend.check_conditions(obj, _conditions(ctx))
    if ctx.query.get("alt", default_alt) == "media":
        return _media(ctx, obj)
    return _st(ctx).object_resource(obj, _base(ctx))


@router.route("GET", "/storage/v1/b/<id:bucket>/o/<path:object>", api=API)
def objects_get(ctx: Ctx, bucket: str, object: str):
    return _get_object(ctx, bucket, object, default_alt="json")


@router.route("GET", "/download/storage/v1/b/<id:bucket>/o/<path:object>", api=API)
def objects_download(ctx: Ctx, bucket: str, object: str):
    return _get_object(ctx, bucket, object, default_alt="media")


@router.route("PATCH", "/storage/v1/b/<id:bucket>/o/<path:object>", api=API, discovery=_doc("objects.patch"))
def objects_patch(ctx: Ctx, bucket: str, object: str):
    rec = _bucket(ctx, bucket)
    _require(ctx, "storage.objects.update", bucket=bucket)
    body = ctx.json()
    lockdown.refuse_object_acls(rec, body, ctx.query)
    obj = _st(ctx).patch_object(bucket, object, body, _conditions(ctx))
    _st(ctx).buckets.acl_from(bucket, f"object:{object}", body.get("acl"))
    return _st(ctx).object_resource(obj, _base(ctx))


@router.route("DELETE", "/storage/v1/b/<id:bucket>/o/<path:object>", api=API)
def objects_delete(ctx: Ctx, bucket: str, object: str):
    _bucket(ctx, bucket)
    _require(ctx, "storage.objects.delete", bucket=bucket)
    _st(ctx).delete_object(bucket, object, _conditions(ctx), _int(ctx, "generation"))
    return 204, None


# ------------------------------------------------------------------------ copy, rewrite, compose, move

def _source_conditions(ctx: Ctx) -> dict[str, int]:
    """ifSourceGenerationMatch and friends, under the plain names `check_conditions` takes."""
    return {k: _int(ctx, "ifSource" + k[2:]) for k in CONDITIONS if ctx.query.get("ifSource" + k[2:]) not in (None, "")}


def _copy_request(ctx: Ctx, bucket: str, object: str, dbucket: str, dobject: str) -> dict:
    """What copy and rewrite share: permissions, the source, the destination's metadata; the new object."""
    _bucket(ctx, bucket)
    _bucket(ctx, dbucket)
    _require(ctx, "storage.objects.get", bucket=bucket)
    _require_write(ctx, dbucket, dobject)
    body = ctx.json()
    if body and not isinstance(body, dict):
        raise gcs_error(400, "Invalid JSON payload received: the body must be an object.", "invalid")
    st = _st(ctx)
    src = st.source_object(bucket, object, _int(ctx, "sourceGeneration"), _source_conditions(ctx))
    body = {k: v for k, v in (body or {}).items() if k not in ("name", "bucket", "kind")}
    return st.copy_object(src, dbucket, dobject, body, _conditions(ctx), _source_conditions(ctx))


@router.route("POST", "/storage/v1/b/<id:bucket>/o/<path:object>/copyTo/b/<id:dbucket>/o/<path:dobject>",
              api=API, discovery=_doc("objects.copy"))
def objects_copy(ctx: Ctx, bucket: str, object: str, dbucket: str, dobject: str):
    obj = _copy_request(ctx, bucket, object, dbucket, dobject)
    return _st(ctx).object_resource(obj, _base(ctx))


@router.route("POST", "/storage/v1/b/<id:bucket>/o/<path:object>/rewriteTo/b/<id:dbucket>/o/<path:dobject>",
              api=API, discovery=_doc("objects.rewrite"))
def objects_rewrite(ctx: Ctx, bucket: str, object: str, dbucket: str, dobject: str):
    """objects.rewrite. Google may need several calls for a large object or one that changes
    location or storage class (`rewriteToken`); bytes are shared here, so every rewrite is done
    in one call, which clients handle as Google's own single-call rewrites."""
    if ctx.query.get("rewriteToken"):
        raise gcs_error(400, "Invalid rewrite token.", "invalid")   # we never hand one out
    obj = _copy_request(ctx, bucket, object, dbucket, dobject)
    size = str(obj["size"])
    return {"kind": "storage#rewriteResponse", "totalBytesRewritten": size, "objectSize": size, "done": True,
            "resource": _st(ctx).object_resource(obj, _base(ctx))}


@router.route("POST", "/storage/v1/b/<id:bucket>/o/<path:object>/compose", api=API, discovery=_doc("objects.compose"))
def objects_compose(ctx: Ctx, bucket: str, object: str):
    _bucket(ctx, bucket)
    _require(ctx, "storage.objects.get", bucket=bucket)
    _require_write(ctx, bucket, object)
    body = ctx.json()
    if body.get("deleteSourceObjects"):
        _require(ctx, "storage.objects.delete", bucket=bucket)
    st = _st(ctx)
    obj = st.compose_objects(bucket, object, body, _conditions(ctx))
    if body.get("deleteSourceObjects"):
        for item in body.get("sourceObjects") or []:
            if item.get("name") != object and st.get_object(bucket, item["name"]) is not None:
                st.delete_object(bucket, item["name"], {})
    return st.object_resource(obj, _base(ctx))


@router.route("POST", "/storage/v1/b/<id:bucket>/o/<path:object>/moveTo/o/<path:dobject>", api=API,
              discovery=_doc("objects.move"))
def objects_move(ctx: Ctx, bucket: str, object: str, dobject: str):
    _bucket(ctx, bucket)
    _require(ctx, "storage.objects.get", bucket=bucket)
    _require(ctx, "storage.objects.delete", bucket=bucket)
    _require_write(ctx, bucket, dobject)
    ctx.json()
    if object == dobject:
        raise gcs_error(400, "Source and destination object names must be different.", "invalid")
    obj = _st(ctx).move_object(bucket, object, dobject, _conditions(ctx), _source_conditions(ctx))
    return _st(ctx).object_resource(obj, _base(ctx))


def _media(ctx: Ctx, obj: dict) -> Response:
    """The object's bytes, streamed from the blob store; a single `Range` answers 206."""
    size = obj["size"]
    headers = {
        "X-Goog-Hash": f"crc32c={obj['crc32c']}" + (f",md5={obj['md5Hash']}" if obj["md5Hash"] else ""),
        "X-Goog-Generation": str(obj["generation"]), "X-Goog-Metageneration": str(obj["metageneration"]),
        "X-Goog-Stored-Content-Length": str(size),
        "X-Goog-Stored-Content-Encoding": obj["extra"].get("contentEncoding", "identity"),
        "X-Goog-Storage-Class": obj["storageClass"], "Accept-Ranges": "bytes",
        "ETag": f'"{obj["md5Hash"] or proto_etag(obj["generation"], obj["metageneration"])}"',
        "Last-Modified": http_date(_epoch(obj["updated"])),
        "Cache-Control": obj["extra"].get("cacheControl", "private, max-age=0"),
    }
    for key, header in (("contentDisposition", "Content-Disposition"), ("contentLanguage", "Content-Language"),
                        ("contentEncoding", "Content-Encoding")):
        if obj["extra"].get(key):
            headers[header] = obj["extra"][key]
    start, end, status = 0, size - 1, 200
    wanted = _parse_range(ctx.request.headers.get("Range"), size)
    if wanted == "unsatisfiable":
        err = gcs_error(416, "The requested range cannot be satisfied.", "requestedRangeNotSatisfiable")
        resp = Response(json.dumps(err.body("gcs")), status=416, content_type="application/json; charset=UTF-8")
        resp.headers["Content-Range"] = f"bytes */{size}"
        return resp
    if wanted is not None:
        start, end = wanted
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    length = max(0, end - start + 1)
    headers["Content-Length"] = str(length)
    path = _st(ctx).blobs.path(obj["blob"])

    def stream():
        with open(path, "rb") as fh:
            fh.seek(start)
            left = length
            while left > 0:
                chunk = fh.read(min(left, 1 << 20))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk

    return Response(stream(), status=status, headers=headers, content_type=obj["contentType"],
                    direct_passthrough=True)


def _parse_range(header: str | None, size: int):
    """(first, last) for one `bytes=` range, "unsatisfiable", or None (whole object)."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    spec = header[len("bytes="):].strip()
    first_s, sep, last_s = spec.partition("-")
    if not sep:
        return None
    try:
        if first_s == "":
            n = int(last_s)
            if n <= 0 or size == 0:
                return "unsatisfiable"
            return max(0, size - n), size - 1
        first = int(first_s)
        last = int(last_s) if last_s else size - 1
    except ValueError:
        return None
    if first >= size or last < first:
        return "unsatisfiable"
    return first, min(last, size - 1)


def _epoch(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


# ------------------------------------------------------------------------------------ uploads

def _declared_hashes(header: str | None) -> dict[str, str]:
    """`X-Goog-Hash: crc32c=...,md5=...` as {crc32c, md5Hash}."""
    out: dict[str, str] = {}
    for part in (header or "").split(","):
        kind, sep, value = part.strip().partition("=")
        if sep and kind in ("crc32c", "md5"):
            out["crc32c" if kind == "crc32c" else "md5Hash"] = value
    return out


def _require_write(ctx: Ctx, bucket: str, name: str) -> None:
    """objects.create, and objects.delete too when it replaces an existing object (as on Google)."""
    _require(ctx, "storage.objects.create", bucket=bucket)
    if ctx.world.options.enforce_iam and _st(ctx).get_object(bucket, name) is not None:
        _require(ctx, "storage.objects.delete", bucket=bucket)


def _pump(ctx: Ctx, sink: Sink, first: bytes = b"") -> None:
    sink.write(first)
    read = ctx.request.stream.read
    while True:
        chunk = read(1 << 20)
        if not chunk:
            return
        sink.write(chunk)


# The session URI is the credential of a resumable upload, so this route lets anonymous requests
# through (url_credential) and asks for a principal itself unless the request sends a chunk.
@router.route("POST", "/upload/storage/v1/b/<id:bucket>/o", api=API, discovery=_doc("objects.insert"),
              body_limit=UPLOAD_LIMIT, url_credential=True)
def objects_upload(ctx: Ctx, bucket: str):
    if ctx.query.get("upload_id"):
        # A chunk of a resumable session sent with POST to the session URI: Cloud Storage takes it
        # as it takes a PUT (gcsfs sends its chunks so).
        return objects_upload_chunk(ctx, bucket)
    if ctx.world.options.enforce_iam and ctx.principal is None:
        raise unauthenticated()
    rec = _bucket(ctx, bucket)
    lockdown.refuse_object_acls(rec, {}, ctx.query)
    kind = ctx.query.get("uploadType")
    if kind == "resumable":
        return _resumable_start(ctx, bucket)
    if kind not in ("media", "multipart"):
        raise gcs_error(400, "Upload requests must include an uploadType URL parameter and a URL path beginning "
                             "with /upload/", "invalid")
    st = _st(ctx)
    conditions = _conditions(ctx)
    epoch = ctx.world.epoch
    sink = st.new_sink()
    try:
        if kind == "media":
            name = ctx.query.get("name")
            err = object_name_problem(name)
            if err:
                raise err
            _require_write(ctx, bucket, name)
            meta: dict[str, Any] = {"contentType": ctx.request.headers.get("Content-Type") or None}
            _pump(ctx, sink)
        else:
            meta, media_type, media = _multipart_head(ctx)
            lockdown.refuse_object_acls(rec, meta, ctx.query)
            name = ctx.query.get("name") or meta.get("name")
            err = object_name_problem(name)
            if err:
                raise err
            _require_write(ctx, bucket, name)
            meta.setdefault("contentType", media_type)
            _multipart_body(sink, media)
        verify_hashes({**{k: meta[k] for k in ("crc32c", "md5Hash") if meta.get(k)},
                       **_declared_hashes(ctx.request.headers.get("X-Goog-Hash"))}, sink.md5_b64, sink.crc32c_b64)
        try:
            blob = sink.store(st.blobs)
        except FileNotFoundError:  # the world was reset while the bytes arrived: its temp file went with it
            raise bucket_not_found() from None
        obj = st.commit_object(bucket, name, blob=blob, size=sink.size, md5=sink.md5_b64,
                               crc32c=sink.crc32c_b64, meta=meta, conditions=conditions, epoch=epoch)
    finally:
        sink.discard()
    return st.object_resource(obj, _base(ctx))


# A multipart upload as Cloud Storage takes it: the JSON metadata part, then the media part, whose
# bytes are streamed into the sink as they arrive (multipart.parts; lines may end with CRLF or a
# bare LF). Choice (no recorded answer): a third part is refused as a malformed body.
def _multipart_head(ctx: Ctx) -> tuple[dict, str | None, Iterator[dict[str, str] | bytes]]:
    """Read a multipart/related upload up to the start of its media part: (JSON metadata, the
    media part's content type, the rest of the body's pieces, to stream with `_multipart_body`)."""
    if ctx.request.mimetype != "multipart/related":
        raise gcs_error(400, "Multipart uploads must be sent as multipart/related.", "invalid")
    boundary = ctx.request.mimetype_params.get("boundary")
    if not boundary:
        raise gcs_error(400, "Multipart upload is missing its boundary.", "invalid")
    pieces = multipart.parts(ctx.request.stream.read, boundary)
    try:
        first = next(pieces, None)
        if not isinstance(first, dict):
            raise gcs_error(400, "Malformed multipart upload body.", "invalid")
        raw = bytearray()
        for piece in pieces:
            if isinstance(piece, dict):
                break
            raw += piece
            if len(raw) > HEAD_LIMIT:
                raise gcs_error(400, "Multipart upload metadata part is too large or malformed.", "invalid")
        else:
            raise gcs_error(400, "Malformed multipart upload body.", "invalid")
    except multipart.MultipartError:
        raise gcs_error(400, "Malformed multipart upload body.", "invalid") from None
    try:
        meta = json.loads(bytes(raw) or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise gcs_error(400, "Invalid JSON payload received in the metadata part.", "parseError") from None
    validate_object_metadata(meta)
    return meta, piece.get("content-type"), pieces


def _multipart_body(sink: Sink, pieces: Iterator[dict[str, str] | bytes]) -> None:
    """Stream the media part into `sink`, up to the closing boundary."""
    try:
        for piece in pieces:
            if isinstance(piece, dict):
                raise gcs_error(400, "Malformed multipart upload body: more than a metadata and a media part.",
                                "invalid")
            sink.write(piece)
    except multipart.MultipartError:
        raise gcs_error(400, "Malformed multipart upload body: missing the closing boundary.", "invalid") from None


def _resumable_start(ctx: Ctx, bucket: str) -> Response:
    meta = validate_object_metadata(parse_json_body(ctx.request))  # the JSON limit, not the upload route's
    name = ctx.query.get("name") or meta.get("name")
    err = object_name_problem(name)
    if err:
        raise err
    _require_write(ctx, bucket, name)
    if not meta.get("contentType") and ctx.request.headers.get("X-Upload-Content-Type"):
        meta["contentType"] = ctx.request.headers["X-Upload-Content-Type"]
    total = ctx.request.headers.get("X-Upload-Content-Length")
    upload_id = _st(ctx).start_upload(bucket, name, meta, _conditions(ctx),
                                      int(total) if total and total.isdigit() else None)
    location = (f"{_base(ctx)}upload/storage/v1/b/{bucket}/o?uploadType=resumable&name={quote(name, safe='')}"
                f"&upload_id={upload_id}")
    return Response(b"", status=200, headers={"Location": location, "X-GUploader-UploadID": upload_id})


def _content_range(header: str | None, length: int) -> tuple[int | None, int | None]:
    """(first byte, total) from `Content-Range: bytes a-b/total|*` or `bytes */total|*`."""
    if header is None:
        return 0, length  # the whole object in one PUT
    spec = header.strip()
    if not spec.startswith("bytes "):
        raise gcs_error(400, f"Invalid Content-Range header: {header!r}", "invalid")
    span, _, total_s = spec[len("bytes "):].partition("/")
    try:
        total = None if total_s.strip() == "*" else int(total_s)
        if span.strip() == "*":
            return None, total
        a, _, b = span.partition("-")
        first, last = int(a), int(b)
    except ValueError:
        raise gcs_error(400, f"Invalid Content-Range header: {header!r}", "invalid") from None
    if last - first + 1 != length:
        raise gcs_error(400, f"The Content-Range header {header!r} does not match the {length} byte(s) sent.",
                        "invalid")
    return first, total


# The session URI is the credential (as on Google): chunks and cancels need no Authorization.
@router.route("PUT", "/upload/storage/v1/b/<id:bucket>/o", api=API, body_limit=UPLOAD_LIMIT, url_credential=True)
def objects_upload_chunk(ctx: Ctx, bucket: str):
    upload_id = ctx.query.get("upload_id")
    if not upload_id:
        raise gcs_error(400, "Required parameter: upload_id", "required")
    length = ctx.request.content_length or 0
    first, total = _content_range(ctx.request.headers.get("Content-Range"), length)
    outcome, value = _st(ctx).upload_chunk(
        upload_id, bucket, first=first, total=total, read=ctx.request.stream.read, length=length,
        declared=_declared_hashes(ctx.request.headers.get("X-Goog-Hash")))
    if outcome == "done":
        return _st(ctx).object_resource(value, _base(ctx))
    headers = {"X-GUploader-UploadID": upload_id}
    if value:
        headers["Range"] = f"bytes=0-{value - 1}"
    return Response(b"", status=308, headers=headers)


@router.route("DELETE", "/upload/storage/v1/b/<id:bucket>/o", api=API, url_credential=True)
def objects_upload_cancel(ctx: Ctx, bucket: str):
    upload_id = ctx.query.get("upload_id")
    if not upload_id:
        raise gcs_error(400, "Required parameter: upload_id", "required")
    _st(ctx).cancel_upload(upload_id, bucket)
    return Response(b"", status=499)

