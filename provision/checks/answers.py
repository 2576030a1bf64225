"""What an answer means, whoever asked: the DICOMweb smoke (provision.checks.dicomweb) and the browser
smoke (provision.checks.browser, which sees the viewer's own requests) judge the same answers with the
same words."""
from __future__ import annotations

import json
import re
from typing import Any

import requests
from werkzeug.datastructures import Headers
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, State


def ohif_patient_name(pn: str) -> str:
    """A DICOM PN as OHIF's study list shows it: first '^' -> ', ', other '^' -> ' ', trimmed."""
    return pn.replace("^", ", ", 1).replace("^", " ").strip()


class _Failed(Exception):
    def __init__(self, detail: str, status: int | None = None):
        super().__init__(detail)
        self.detail = detail
        self.status = status


def _google_message(resp: requests.Response) -> tuple[str, str]:
    """(message, reason) from a google.rpc.Status body, or a short text excerpt."""
    try:
        body = resp.json()
    except ValueError:
        text = (resp.text or "").strip().replace("\n", " ")
        return text[:300], ""
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return json.dumps(body)[:300], ""
    reason = ""
    for d in err.get("details") or []:
        if isinstance(d, dict) and d.get("reason"):
            reason = str(d["reason"])
            break
    return str(err.get("message", ""))[:500], reason


def _likely_cause(status: int, reason: str, message: str) -> str:
    if reason == "SERVICE_DISABLED" or "has not been used" in message or "is disabled" in message:
        return "the Cloud Healthcare API is not enabled on the project (apply enables it)"
    if status == 401:
        return "the credentials were refused: the access token is missing or expired (gcloud auth application-default login)"
    if status == 403:
        return (
            "the caller lacks roles/healthcare.dicomViewer on the store (or its dataset/project), or the store path "
            "is wrong: Google answers 403, not 404, for a store that does not exist"
        )
    if status == 404:
        return "wrong store path: check the project, location, dataset and store IDs"
    if status == 400:
        return "the server refused the request as the viewer sends it"
    if status == 406:
        return "the server cannot answer in the media type the viewer asks for"
    if status == 429:
        return "quota exceeded or rate limited: retry later"
    if status >= 500:
        return "the service failed or is unavailable: retry, and check the service status"
    return "unexpected answer"


def _http_failure(method: str, url: str, resp: requests.Response, what: str) -> _Failed:
    message, reason = _google_message(resp)
    cause = _likely_cause(resp.status_code, reason, message)
    said = f": {message}" if message else ""
    return _Failed(f"{what}: {method} {url} answered {resp.status_code}{said}. Likely cause: {cause}.", resp.status_code)


class _RelatedDecoder(MultipartDecoder):
    """werkzeug's decoder, written for multipart/form-data, refuses a part without the
    Content-Disposition form-data requires (RFC 7578 §4.2); a DICOMweb multipart/related part
    needs none (RFC 2387): such a part gets RFC 2183's default, `inline`. A part with no headers
    at all (DICOMweb requires its Content-Type) is refused, not read with body lines as headers."""

    def _parse_headers(self, data: bytes | bytearray) -> Headers:
        if data[:1] in (b"\r", b"\n"):
            raise ValueError("a multipart part without headers")
        headers = super()._parse_headers(data)
        headers.setdefault("Content-Disposition", "inline")
        return headers


def _multipart_parts(content_type: str, body: bytes) -> list[tuple[dict[str, str], bytes]]:
    """The parts of a multipart body (headers lower-cased), by werkzeug's multipart decoder."""
    boundary = parse_options_header(content_type)[1].get("boundary")
    if not boundary:
        raise ValueError("no boundary in Content-Type")
    decoder = _RelatedDecoder(boundary.encode("latin-1"))
    decoder.receive_data(body)
    decoder.receive_data(None)
    parts: list[tuple[dict[str, str], list[bytes]]] = []
    try:
        while not isinstance(event := decoder.next_event(), Epilogue):
            if isinstance(event, (Field, File)):
                parts.append(({k.lower(): v for k, v in event.headers.items()}, []))
            elif isinstance(event, Data) and parts:
                parts[-1][1].append(event.data)
    except (ValueError, UnicodeDecodeError):
        raise ValueError({State.PREAMBLE: "the body does not contain the boundary",
                          State.PART: "a part's headers are malformed"}.get(
                              decoder.state, "the body ends before its closing boundary")) from None
    return [(headers, b"".join(data)) for headers, data in parts]


def http_problem(method: str, url: str, status: int, body: bytes | str, what: str) -> str:
    """`what: METHOD URL answered STATUS: Google's message. Likely cause: ...`"""
    fake = requests.Response()
    fake.status_code = status
    fake._content = body.encode() if isinstance(body, str) else (body or b"")
    return _http_failure(method, url, fake, what).detail


NATIVE_SYNTAXES = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2")


def frame_problem(url: str, content_type: str, body: bytes, expect_bytes: int = 0,
                  image: dict[str, Any] | None = None) -> tuple[str | None, str]:
    """(problem or None, detail) for a frames/1 answer: multipart/related with a non-empty part, and as many
    uncompressed bytes as Rows x Columns x BitsAllocated/8 x SamplesPerPixel when `expect_bytes` is known.
    With `image` (the instance's DICOM JSON) a compressed frame must also decode to Rows x Columns."""
    if not content_type.lower().startswith("multipart/related"):
        return (f"frame retrieval: GET {url} answered Content-Type {content_type!r}, not multipart/related. "
                "Likely cause: the server ignores the viewer's multipart Accept.", "")
    try:
        parts = _multipart_parts(content_type, body)
    except ValueError as exc:
        return f"frame retrieval: GET {url}: the multipart body cannot be parsed ({exc}).", ""
    if not parts or not parts[0][1]:
        return f"frame retrieval: GET {url} returned {len(parts)} parts and no pixel bytes.", ""
    size = len(parts[0][1])
    ts = re.search(r"transfer-syntax=([0-9.]+)", content_type + ";" + parts[0][0].get("content-type", ""))
    if ts and ts.group(1) in NATIVE_SYNTAXES[:2] and expect_bytes and size < expect_bytes:
        return f"frame retrieval: GET {url} returned {size} bytes of uncompressed pixels, expected {expect_bytes}.", ""
    if ts and image and ts.group(1) not in NATIVE_SYNTAXES:
        why = undecodable(parts[0][1], ts.group(1), image)
        if why:
            return (f"frame retrieval: GET {url} returned a {size}-byte frame in transfer syntax {ts.group(1)} that "
                    f"does not decode: {why}. Likely cause: the stored instance or the server's transcoding is "
                    "corrupt; the viewer would draw nothing.", "")
    syntax = f", transfer syntax {ts.group(1)}" if ts else ""
    decoded = ", decoded" if ts and image and ts.group(1) not in NATIVE_SYNTAXES else ""
    return None, f"{len(parts)} part(s), {size} bytes{syntax}{decoded}"


def _int(image: dict[str, Any], tag: str, default: int) -> int:
    value = (image.get(tag) or {}).get("Value") or [default]
    return int(value[0]) if value[0] is not None else default


def undecodable(frame: bytes, syntax: str, image: dict[str, Any]) -> str | None:
    """Why one compressed frame does not decode to the instance's Rows x Columns (None: it does, or
    no decoder here knows the syntax, which then only the length checks judge)."""
    # pydicom's decoders (and numpy) load on first use: `provision --help` and plans never need them.
    from pydicom.encaps import encapsulate
    from pydicom.pixels import get_decoder

    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        return None
    if not decoder.is_available:
        return None
    rows, cols = _int(image, "00280010", 0), _int(image, "00280011", 0)
    bits = _int(image, "00280100", 8)
    opts = {"rows": rows, "columns": cols, "samples_per_pixel": _int(image, "00280002", 1),
            "bits_allocated": bits, "bits_stored": _int(image, "00280101", bits),
            "pixel_representation": _int(image, "00280103", 0), "number_of_frames": 1,
            "photometric_interpretation": ((image.get("00280004") or {}).get("Value") or ["MONOCHROME2"])[0]}
    try:
        arr, _ = decoder.as_array(encapsulate([frame]), **opts)
    except Exception as exc:  # noqa: BLE001 - whatever the codec raises, the frame does not decode
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    if tuple(arr.shape[:2]) != (rows, cols):
        return f"it decodes to {arr.shape[1]} x {arr.shape[0]} pixels, the instance says {cols} x {rows}"
    return None
