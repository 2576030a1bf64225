"""Cloud Storage JSON API v1 upload routes: media, multipart and resumable uploads (chunks by PUT
or POST to the session URI), and cancelling a resumable session."""
from __future__ import annotations

import json
from typing import Any, Iterator
from urllib.parse import quote

from werkzeug.wrappers import Response

from provision.emulator import multipart
from provision.emulator.errors import unauthenticated
from provision.emulator.http import Ctx, Router, parse_json_body
from provision.emulator.storage.common import (bucket_not_found, gcs_error)
from provision.emulator.storage import lockdown
from provision.emulator.storage.names import checked_object_name
from provision.emulator.storage.objects import validate_object_metadata
from provision.emulator.storage.uploads import Sink, verify_hashes
from provision.emulator.storage.requests import (
    API,
    _base,
    _bucket,
    _conditions,
    _doc,
    _require_write,
    _st,
)

router = Router()
UPLOAD_LIMIT = 5 << 40           # 5 TiB, Cloud Storage's object size ceiling
HEAD_LIMIT = 2 << 20             # multipart: the JSON part and headers must arrive within this


# ------------------------------------------------------------------------------------ uploads

def _declared_hashes(header: str | None) -> dict[str, str]:
    """`X-Goog-Hash: crc32c=...,md5=...` as {crc32c, md5Hash}."""
    out: dict[str, str] = {}
    for part in (header or "").split(","):
        kind, sep, value = part.strip().partition("=")
        if sep and kind in ("crc32c", "md5"):
            out["crc32c" if kind == "crc32c" else "md5Hash"] = value
    return out


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
            name = checked_object_name(ctx.query.get("name"))
            _require_write(ctx, bucket, name)
            meta: dict[str, Any] = {"contentType": ctx.request.headers.get("Content-Type") or None}
            _pump(ctx, sink)
        else:
            meta, media_type, media = _multipart_head(ctx)
            lockdown.refuse_object_acls(rec, meta, ctx.query)
            name = checked_object_name(ctx.query.get("name") or meta.get("name"))
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
    name = checked_object_name(ctx.query.get("name") or meta.get("name"))
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

