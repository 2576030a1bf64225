"""DICOMweb under `/v1/{store}/dicomWeb/`, as Google's conformance statement describes it:
QIDO-RS search, WADO-RS retrieve (instances, metadata, frames, bulk data, rendered), STOW-RS
and delete.

Where the evidence (../shared/reference/google-evidence.md) decides:
- a search with no match is 204 No Content with an empty body (§2.3: a Google engineer's
  statement, IDC's guide, every Google-written client special-cases it);
- a study, series, instance, frame source or bulk-data attribute that does not exist is 403
  PERMISSION_DENIED, like a missing store: Google's conformance statement lists 403 "no access
  *or the resource doesn't exist*" for every retrieve and delete transaction and lists no 404
  (§1.2, §1.5). No recording of the live answer exists (§7); the only 404s are in Google's EZ-WSI
  mock, which ranks below the statement (GOOGLE-CODE < SPEC);
- `rendered` answers for instances and frames only, as Google's (CONF §1.1): a series-level
  `rendered` (which OHIF asks for when thumbnailRendering is 'rendered', then falls back) is not
  routed;
- STOW-RS answers 409 with a FailedSOPSequence whenever an instance is not stored, an invalid
  DICOM file included (CONF §1.3 "e.g. invalid DICOM file"; healthcare-api-dicom-fuse #20, a
  Google engineer: "You'll also get a 409 conflict error if you try and upload an invalid DICOM
  file"); 400 is for the request itself (media type);
- a STOW part without the PS3.10 128-byte preamble and "DICM" prefix (what pydicom 3 writes for a
  data set built in memory unless told `enforce_file_format=True`) is such an invalid file: PS3.18
  requires application/dicom parts in the PS3.10 file format, and Google's own EZ-WSI store mock
  parses them with a strict `pydicom.dcmread` that refuses them too. No live answer is recorded.

Choices where Google's behaviour is not documented:
- series and instance QIDO results carry the parent UIDs;
- an identical duplicate in STOW is a success (listed in ReferencedSOPSequence), like import: Google's
  DICOM adapter counts on it ("if the md5 of the instances match, we will get a HTTP 200", §1.3).
"""
# Long module (issue 20): the DICOMweb route table (QIDO, WADO, STOW, delete); each handler is short.
from __future__ import annotations

import json
from typing import Iterable

from werkzeug.wrappers import Response

from provision.emulator.errors import ApiError, invalid_argument
from provision.emulator.healthcare import pixels, transcode, wire
from provision.emulator.healthcare.dicomfile import BULK_MARK, EXPLICIT_LE, bulk_ranges
from provision.emulator.healthcare.index import Query, parse_query
from provision.emulator.healthcare.resolve import resolve
from provision.emulator.healthcare.common import denied
from provision.emulator.http import Ctx, Router

router = Router()
API = "healthcare"
BASE = ("/v1/projects/<id:project>/locations/<id:location>/datasets/<id:dataset>/dicomStores/<id:store>/dicomWeb")
STUDY = BASE + "/studies/<id:study>"
SERIES = STUDY + "/series/<id:series>"
INSTANCE = SERIES + "/instances/<id:sop>"
DICOM_JSON = "application/dicom+json"
READ, WRITE, DELETE = ("healthcare.dicomStores.dicomWebRead", "healthcare.dicomStores.dicomWebWrite",
                       "healthcare.dicomStores.dicomWebDelete")
MAX_VIEWPORT = 16384
# Compressed transfer syntaxes by the image media type that carries them.
MEDIA_SYNTAXES = {
    "image/jpeg": ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"),
    "image/jls": ("1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"),
    "image/jp2": ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"),
    "image/jphc": ("1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"),
    "image/dicom-rle": ("1.2.840.10008.1.2.5",),
}


class Store:
    """The store a DICOMweb request addresses, checked for existence and permission."""

    def __init__(self, ctx: Ctx, permission: str, project: str, location: str, dataset: str, store: str):
        t = resolve(ctx, permission, project, location, dataset, store, initialized=False)
        self.ctx = ctx
        self.permission = permission
        self.target = t
        self.name = t.store_name
        self.backend = ctx.world.healthcare
        self.sid = self.backend.sid(self.name)
        # Absolute URLs (BulkDataURI, RetrieveURL) use the host the client called.
        self.base_url = f"{origin(ctx)}/v1/{t.store}/dicomWeb"

    def instance_url(self, study: str, series: str, sop: str) -> str:
        return f"{self.base_url}/studies/{study}/series/{series}/instances/{sop}"

    def rows(self, study: str, series: str | None = None, sop: str | None = None, columns: str | None = None) -> list[tuple]:
        kwargs = {"columns": columns} if columns else {}
        rows = self.backend.index.instances(self.sid, study, series, sop, **kwargs)
        if not rows:
            raise self.missing(study, series, sop)
        return rows

    def missing(self, study: str, series: str | None = None, sop: str | None = None, extra: str = "") -> ApiError:
        """403, as Google's conformance statement answers a resource that does not exist (see above)."""
        path = f"{self.name}/dicomWeb/studies/{study}" + (f"/series/{series}" if series else "") + \
            (f"/instances/{sop}" if sop else "") + extra
        return denied(self.permission, path)

    def path(self, blob: str):
        return self.ctx.world.blobs.path(blob)


def origin(ctx: Ctx) -> str:
    """scheme://host[:port] the client called. dicomweb-client sends `Host` without the port, so a
    Host with no port gets the port the request actually arrived on (when not the scheme's default)."""
    req = ctx.request
    host = req.host
    if ":" not in host.rsplit("]", 1)[-1]:
        port = str(req.environ.get("SERVER_PORT") or "")
        if port and port != {"http": "80", "https": "443"}.get(req.scheme):
            host = f"{host}:{port}"
    return f"{req.scheme}://{host}"


def dicom_json_response(body: str, status: int = 200) -> Response:
    return Response(body, status=status, content_type=DICOM_JSON)


# ---- QIDO-RS -------------------------------------------------------------------------------------
def _search(ctx: Ctx, level: str, project, location, dataset, store, study=None, series=None) -> Response:
    s = Store(ctx, READ, project, location, dataset, store)
    q: Query = parse_query(ctx.query, level)
    results = s.backend.index.search(s.sid, q, study=study, series=series)
    if not results:
        return no_content()
    return dicom_json_response(json.dumps(results, separators=(",", ":")))


def no_content() -> Response:
    """Google's answer to a search with no match: 204 and no body (google-evidence.md §2.3)."""
    resp = Response(b"", status=204)
    del resp.headers["Content-Type"]
    return resp


@router.route("GET", BASE + "/studies", api=API)
def search_studies(ctx: Ctx, **kw):
    return _search(ctx, "study", **kw)


@router.route("GET", BASE + "/series", api=API)
def search_all_series(ctx: Ctx, **kw):
    return _search(ctx, "series", **kw)


@router.route("GET", BASE + "/instances", api=API)
def search_all_instances(ctx: Ctx, **kw):
    return _search(ctx, "instance", **kw)


@router.route("GET", STUDY + "/series", api=API)
def search_series(ctx: Ctx, study: str, **kw):
    return _search(ctx, "series", study=study, **kw)


@router.route("GET", STUDY + "/instances", api=API)
def search_study_instances(ctx: Ctx, study: str, **kw):
    return _search(ctx, "instance", study=study, **kw)


@router.route("GET", SERIES + "/instances", api=API)
def search_series_instances(ctx: Ctx, study: str, series: str, **kw):
    return _search(ctx, "instance", study=study, series=series, **kw)


# ---- WADO-RS metadata ----------------------------------------------------------------------------
def _metadata(ctx: Ctx, project, location, dataset, store, study, series=None, sop=None) -> Response:
    s = Store(ctx, READ, project, location, dataset, store)
    accept = wire.parse_accept(ctx.request.headers.get("Accept"))
    if accept and not any(r.type in (DICOM_JSON, "application/json", "*/*", "application/*") for r in accept):
        raise wire.not_acceptable("Only application/dicom+json metadata is available from this emulator.")
    rows = s.rows(study, series, sop, columns="study, series, sop, meta")
    parts = [meta.replace(BULK_MARK, s.instance_url(st, se, i)) for st, se, i, meta in rows]
    return dicom_json_response("[" + ",".join(parts) + "]")


@router.route("GET", STUDY + "/metadata", api=API)
def study_metadata(ctx: Ctx, **kw):
    return _metadata(ctx, **kw)


@router.route("GET", SERIES + "/metadata", api=API)
def series_metadata(ctx: Ctx, **kw):
    return _metadata(ctx, **kw)


@router.route("GET", INSTANCE + "/metadata", api=API)
def instance_metadata(ctx: Ctx, **kw):
    return _metadata(ctx, **kw)


# ---- WADO-RS instances ---------------------------------------------------------------------------
def _negotiate_dicom(header: str | None, *, single_ok: bool) -> tuple[bool, str]:
    """(multipart?, transfer syntax or '*') for retrieving whole instances (whether each instance
    can be given in that syntax is for transcode.instance_as to say: 406 when not)."""
    ranges = wire.parse_accept(header)
    if not ranges:
        return True, EXPLICIT_LE
    for r in ranges:
        if r.q <= 0:
            continue
        found = None
        if r.type == "multipart/related" and r.inner in (None, "application/dicom", "*/*", "application/*"):
            found = True, r.transfer_syntax or EXPLICIT_LE
        elif r.type == "application/dicom" and single_ok:
            found = False, r.transfer_syntax or EXPLICIT_LE
        elif r.type in ("*/*", "multipart/*"):
            found = True, EXPLICIT_LE
        if found:
            return found
    raise wire.not_acceptable(f"None of the requested media types ({header}) is supported for this resource; use "
                              'multipart/related; type="application/dicom"' + (" or application/dicom." if single_ok else "."))


def _instance_payload(s: Store, blob: str, stored_ts: str, want: str) -> tuple[str, Iterable[bytes] | bytes]:
    """(transfer syntax, bytes or chunks) of an instance in the requested syntax."""
    if want == "*" or want == stored_ts:
        return stored_ts, s.ctx.world.blobs.iter_chunks(blob)
    return want, transcode.instance_as(s.path(blob), stored_ts, want)


def _retrieve(ctx: Ctx, project, location, dataset, store, study, series=None, sop=None) -> Response:
    s = Store(ctx, READ, project, location, dataset, store)
    multipart, want = _negotiate_dicom(ctx.request.headers.get("Accept"), single_ok=sop is not None)
    rows = s.rows(study, series, sop, columns="study, series, sop, blob, ts")
    # Transcode up front: a failure must be a 406, not a broken stream.
    payloads = [_instance_payload(s, blob, ts, want) for _, _, _, blob, ts in rows]
    if not multipart:
        ts, data = payloads[0]
        body = data if isinstance(data, bytes) else b"".join(data)
        return Response(body, content_type=f"application/dicom; transfer-syntax={ts}")
    boundary = wire.new_boundary()
    parts = []
    for ts, data in payloads:
        headers = {"Content-Type": f"application/dicom; transfer-syntax={ts}"}
        parts.append((headers, [data] if isinstance(data, bytes) else data))
    ctype = f'multipart/related; type="application/dicom"; transfer-syntax={want}; boundary={boundary}'
    return Response(wire.multipart_body(parts, boundary), content_type=ctype, direct_passthrough=True)


@router.route("GET", STUDY, api=API)
def retrieve_study(ctx: Ctx, **kw):
    return _retrieve(ctx, **kw)


@router.route("GET", SERIES, api=API)
def retrieve_series(ctx: Ctx, **kw):
    return _retrieve(ctx, **kw)


@router.route("GET", INSTANCE, api=API)
def retrieve_instance(ctx: Ctx, **kw):
    return _retrieve(ctx, **kw)


# ---- frames --------------------------------------------------------------------------------------
def _frame_numbers(raw: str) -> list[int]:
    try:
        numbers = [int(x) for x in raw.split(",") if x.strip()]
    except ValueError:
        raise invalid_argument(f"Invalid frame list {raw!r}: use comma-separated frame numbers, e.g. 1,2.") from None
    if not numbers:
        raise invalid_argument("The frame list is empty.")
    return numbers


# Frames transcoded into an image media type: media -> the transfer syntaxes it can then carry, its
# default first (PS3.18 Table 8.7.4-2); None: PNG, which has none.
ENCODED_FRAMES = {"image/jpeg": (transcode.JPEG_BASELINE, transcode.JPEG_EXTENDED, transcode.JPEG_LOSSLESS,
                                  transcode.JPEG_LOSSLESS_SV1), "image/dicom-rle": (transcode.RLE,),
                  "image/jls": (transcode.JLS_LOSSLESS, transcode.JLS_NEAR),
                  "image/jp2": (transcode.J2K_LOSSLESS, transcode.J2K), "image/png": (None,)}


def _negotiate_frames(header: str | None, stored_ts: str) -> tuple[bool, str, str | None, str]:
    """(multipart?, media type, transfer syntax, how) for a frames response; `how` is `le`
    (uncompressed little endian), `stored` (the stored bytes) or `encode` (transcode.frames_as)."""
    ranges = wire.parse_accept(header)
    if not ranges:
        return True, "application/octet-stream", EXPLICIT_LE, "le"
    for r in ranges:
        if r.q <= 0:
            continue
        inner, ts = (r.inner, r.transfer_syntax) if r.type == "multipart/related" else (r.type, r.transfer_syntax)
        multipart = r.type == "multipart/related"
        if r.type in ("*/*", "multipart/*"):
            return True, "application/octet-stream", EXPLICIT_LE, "le"
        if inner in (None, "application/octet-stream", "*/*", "application/*"):
            if not multipart and inner is None:
                continue
            if ts in (None, EXPLICIT_LE):
                return multipart, "application/octet-stream", EXPLICIT_LE, "le"
            if ts == "*" or ts == stored_ts:
                return multipart, "application/octet-stream", ts, "stored"
            continue
        inner = inner or ""
        syntaxes = MEDIA_SYNTAXES.get(inner)
        if syntaxes and stored_ts in syntaxes and ts in (None, "*", stored_ts):
            return multipart, inner, stored_ts, "stored"
        if inner in ENCODED_FRAMES and (ts is None or ts in ENCODED_FRAMES[inner]):
            return multipart, inner, ts or ENCODED_FRAMES[inner][0], "encode"
    raise wire.not_acceptable(f"None of the requested media types ({header}) can be served for this frame (stored as "
                              f"{stored_ts}); use multipart/related; type=\"application/octet-stream\"; "
                              "transfer-syntax=* or 1.2.840.10008.1.2.1, or image/jpeg, image/png, image/jls, image/jp2, image/dicom-rle.")


@router.route("GET", INSTANCE + "/frames/<id:frames>", api=API)
def retrieve_frames(ctx: Ctx, project, location, dataset, store, study, series, sop, frames):
    s = Store(ctx, READ, project, location, dataset, store)
    numbers = _frame_numbers(frames)
    (_, _, _, blob, ts, pixel_json, meta) = s.rows(study, series, sop, columns="study, series, sop, blob, ts, pixel, meta")[0]
    pixel = json.loads(pixel_json) if pixel_json else {}
    if not pixel:
        raise ApiError("INVALID_ARGUMENT", f"Instance {sop} has no pixel data, so it has no frames.")
    multipart, media, want, how = _negotiate_frames(ctx.request.headers.get("Accept"), ts)
    meta_d = json.loads(meta)
    path = s.path(blob)
    if how == "le":
        data = pixels.frames_le(path, pixel, meta_d, ts, numbers)
        out_ts: str | None = EXPLICIT_LE
    elif how == "stored":
        data = pixels.frames_as_stored(path, pixel, meta_d, ts, numbers)
        out_ts = ts if pixel.get("length") is None else EXPLICIT_LE   # native frames are little-endian bytes
    else:
        g = pixels.geometry(meta_d)
        pixels.check_frames(numbers, g)
        data = transcode.frames_as(path, ts, g, numbers, media, want)
        out_ts = want
    part_type = f"{media}; transfer-syntax={out_ts}" if out_ts else media
    if not multipart:
        if len(data) != 1:
            raise wire.not_acceptable("A single-part response holds one frame; ask for multipart/related.")
        return Response(data[0], content_type=part_type)
    boundary = wire.new_boundary()
    url = s.instance_url(study, series, sop)
    parts = [({"Content-Type": part_type, "Content-Location": f"{url}/frames/{n}"}, [d])
             for n, d in zip(numbers, data, strict=True)]
    ctype = f'multipart/related; type="{media}"' + (f"; transfer-syntax={out_ts}" if out_ts else "") + \
        f"; boundary={boundary}"
    return Response(b"".join(wire.multipart_body(parts, boundary)), content_type=ctype)


# ---- bulk data -----------------------------------------------------------------------------------
@router.route("GET", INSTANCE + "/bulkdata/<path:attribute>", api=API)
def retrieve_bulkdata(ctx: Ctx, project, location, dataset, store, study, series, sop, attribute):
    s = Store(ctx, READ, project, location, dataset, store)
    (_, _, _, blob, ts) = s.rows(study, series, sop, columns="study, series, sop, blob, ts")[0]
    key = "/".join(p.upper() if len(p) == 8 else p for p in attribute.strip("/").split("/"))
    ranges = bulk_ranges(s.path(blob))
    if key not in ranges:
        raise s.missing(study, series, sop, f"/bulkdata/{attribute}")
    offset, length = ranges[key]
    with open(s.path(blob), "rb") as fh:
        fh.seek(offset)
        data = fh.read(length) if length is not None else fh.read()
    accept = wire.parse_accept(ctx.request.headers.get("Accept"))
    single = any(r.type == "application/octet-stream" for r in accept) and not any(r.type == "multipart/related" for r in accept)
    if single:
        return Response(data, content_type="application/octet-stream")
    boundary = wire.new_boundary()
    part_ts = ts if length is None else EXPLICIT_LE
    body = b"".join(wire.multipart_body([({"Content-Type": f"application/octet-stream; transfer-syntax={part_ts}"},
                                           [data])], boundary))
    return Response(body, content_type=f'multipart/related; type="application/octet-stream"; boundary={boundary}')


# ---- rendered ------------------------------------------------------------------------------------
def _render_format(ctx: Ctx) -> str:
    forced = ctx.query.get("accept")
    ranges = wire.parse_accept(forced or ctx.request.headers.get("Accept"))
    if not ranges:
        return "jpeg"
    for r in ranges:
        if r.q <= 0:
            continue
        if r.type in ("image/jpeg", "image/*", "*/*", "image/jpg"):
            return "jpeg"
        if r.type == "image/png":
            return "png"
    raise wire.not_acceptable("Rendered images are available as image/jpeg (the default) or image/png.")


def _viewport(ctx: Ctx) -> tuple[int, int] | None:
    raw = ctx.query.get("viewport")
    if not raw:
        return None
    try:
        parts = [int(float(x)) for x in raw.split(",")]
    except (ValueError, OverflowError):
        raise invalid_argument(f"Invalid viewport {raw!r}: use viewport=WIDTH,HEIGHT.") from None
    if len(parts) not in (2, 6) or not all(0 < p <= MAX_VIEWPORT for p in parts[:2]):
        raise invalid_argument(f"Invalid viewport {raw!r}: use viewport=WIDTH,HEIGHT with sizes from 1 to "
                               f"{MAX_VIEWPORT} (the image is never rendered larger than it is).")
    return parts[0], parts[1]


def _rendered(s: Store, row: tuple, frame: int, ctx: Ctx) -> Response:
    blob, ts, pixel_json, meta = row
    if not pixel_json:
        raise ApiError("INVALID_ARGUMENT", "The instance has no pixel data to render.")
    fmt = _render_format(ctx)
    data = pixels.render(s.path(blob), json.loads(pixel_json), json.loads(meta), ts, frame, _viewport(ctx), fmt)
    return Response(data, content_type=f"image/{fmt}")


@router.route("GET", INSTANCE + "/rendered", api=API)
def rendered_instance(ctx: Ctx, project, location, dataset, store, study, series, sop):
    s = Store(ctx, READ, project, location, dataset, store)
    row = s.rows(study, series, sop, columns="blob, ts, pixel, meta")[0]
    return _rendered(s, row, 1, ctx)


@router.route("GET", INSTANCE + "/frames/<id:frames>/rendered", api=API)
def rendered_frame(ctx: Ctx, project, location, dataset, store, study, series, sop, frames):
    s = Store(ctx, READ, project, location, dataset, store)
    numbers = _frame_numbers(frames)
    if len(numbers) != 1:
        raise invalid_argument("Rendered frames are served one at a time.")
    row = s.rows(study, series, sop, columns="blob, ts, pixel, meta")[0]
    return _rendered(s, row, numbers[0], ctx)


# ---- STOW-RS -------------------------------------------------------------------------------------
def _stow(ctx: Ctx, project, location, dataset, store, study=None) -> Response:
    """Parse the HTTP request (the body is spooled to files part by part, never held in memory)
    and hand the parts to the state layer, which keeps only what it can store."""
    s = Store(ctx, WRITE, project, location, dataset, store)
    ctype, params = ctx.request.mimetype, ctx.request.mimetype_params
    if (ctx.request.content_length or 0) > wire.STOW_LIMIT:
        raise wire.too_large(wire.STOW_LIMIT)
    spool = s.backend.spool_dir()
    if ctype == "multipart/related":
        inner = (params.get("type") or "application/dicom").lower()
        if inner != "application/dicom":
            raise ApiError("INVALID_ARGUMENT", f"STOW-RS with type={inner} is not supported by the emulator; send "
                           "Part-10 instances as multipart/related; type=\"application/dicom\".", http_status=415)
        if not params.get("boundary"):
            raise invalid_argument("multipart/related Content-Type has no boundary.")

        def is_dicom(headers: dict) -> bool:
            return (headers.get("content-type") or "application/dicom").split(";")[0].strip().lower() == "application/dicom"

        files = [path for _, path in wire.spool_multipart(ctx.request.stream, params["boundary"], spool, is_dicom)]
    elif ctype == "application/dicom":
        files = [wire.spool_body(ctx.request.stream, spool)]
    else:
        raise ApiError("INVALID_ARGUMENT", f"Unsupported Content-Type {ctype or '(none)'} for STOW-RS: use "
                       "multipart/related; type=\"application/dicom\" or application/dicom.", http_status=415)
    if not files:
        raise invalid_argument("The request holds no application/dicom part.")
    results, failed = s.backend.store_instances(s.name, files, study)
    outcome = wire.StowOutcome(f"{s.base_url}/studies/{study}" if study else None)
    outcome.failed.extend(failed)
    for res in results:
        if res.outcome == "conflict":
            outcome.failed.append({"sop_class": res.sop_class, "sop": res.sop, "reason": wire.FAILURE_PROCESSING,
                                   "code": 409, "detail": res.detail})
        else:
            outcome.stored.append({"sop_class": res.sop_class, "sop": res.sop,
                                   "url": s.instance_url(res.study, res.series, res.sop)})
    # The study's RetrieveURL when the request's instances all belong to one study, stored or not: the
    # real 409s quoted in healthcare-api-dicomweb-cli #46 and dcmjs #249 carry it.
    studies = {res.study for res in results}
    if outcome.retrieve_url is None and len(studies) == 1:
        outcome.retrieve_url = f"{s.base_url}/studies/{studies.pop()}"
    # Any instance not stored (a conflict or an invalid file) is 409 with its FailedSOPSequence item.
    status = 409 if outcome.failed else 200
    accept = wire.parse_accept(ctx.request.headers.get("Accept"))
    as_json = bool(accept) and accept[0].type in (DICOM_JSON, "application/json")
    if as_json:
        return Response(json.dumps(wire.stow_json(outcome)), status=status, content_type=DICOM_JSON)
    return Response(wire.stow_xml(outcome), status=status, content_type="application/dicom+xml")


@router.route("POST", BASE + "/studies", api=API)
def store_instances(ctx: Ctx, **kw):
    return _stow(ctx, **kw)


@router.route("POST", STUDY, api=API)
def store_study_instances(ctx: Ctx, **kw):
    return _stow(ctx, **kw)


# ---- DELETE --------------------------------------------------------------------------------------
def _operation_started(op: dict) -> dict:
    """DeleteStudy/DeleteSeries answer only the operation's name; the client polls it (HOWTO's
    example response, google-evidence.md §1.5; Google's CLI takes `name` and polls, §3.3)."""
    return {"name": op["name"]}


@router.route("DELETE", STUDY, api=API)
def delete_study(ctx: Ctx, project, location, dataset, store, study):
    s = Store(ctx, DELETE, project, location, dataset, store)
    s.rows(study, columns="sop")
    return _operation_started(s.backend.delete_dicom(s.name, s.target.project, study, None))


@router.route("DELETE", SERIES, api=API)
def delete_series(ctx: Ctx, project, location, dataset, store, study, series):
    s = Store(ctx, DELETE, project, location, dataset, store)
    s.rows(study, series, columns="sop")
    return _operation_started(s.backend.delete_dicom(s.name, s.target.project, study, series))


@router.route("DELETE", INSTANCE, api=API)
def delete_instance(ctx: Ctx, project, location, dataset, store, study, series, sop):
    s = Store(ctx, DELETE, project, location, dataset, store)
    s.rows(study, series, sop, columns="sop")
    s.backend.delete_instance(s.name, study, series, sop)
    return {}
