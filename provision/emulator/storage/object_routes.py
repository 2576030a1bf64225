"""Cloud Storage JSON API v1 object routes: get, download (alt=media, /download/..., Range), list
(prefix, delimiter, matchGlob, offsets, paging), patch, delete, copy, rewrite, compose, move.
Uploads are in `upload_routes`."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from werkzeug.http import http_date
from werkzeug.wrappers import Response

from provision.emulator.http import Ctx, Router
from provision.emulator.storage.common import (PAGE_MAX, decode_token, encode_token, gcs_error,
                                               proto_etag)
from provision.emulator.storage import lockdown
from provision.emulator.storage.state import Backend
from provision.emulator.storage.requests import (
    API,
    CONDITIONS,
    _base,
    _bucket,
    _conditions,
    _doc,
    _int,
    _object,
    _require,
    _require_write,
    _st,
)

router = Router()


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
    return {k: _int(ctx, "ifSource" + k[2:], 0)   # 0: never used, the parameter is there
            for k in CONDITIONS if ctx.query.get("ifSource" + k[2:]) not in (None, "")}


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
