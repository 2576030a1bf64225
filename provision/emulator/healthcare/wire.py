"""DICOMweb message plumbing: Accept negotiation (quoted or unquoted `type=`, wildcards,
q-values), multipart/related bodies in both directions, and the STOW-RS response documents.
"""
from __future__ import annotations

import json
import os
import tempfile
import uuid
from dataclasses import dataclass, field
from typing import Iterable, Iterator
from xml.sax.saxutils import escape

from provision.emulator import multipart
from provision.emulator.errors import ApiError


@dataclass
class MediaRange:
    type: str                       # e.g. "multipart/related", "application/dicom", "*/*"
    params: dict[str, str] = field(default_factory=dict)
    q: float = 1.0

    @property
    def inner(self) -> str | None:
        """The `type` parameter of a multipart range (lower case, without quotes)."""
        t = self.params.get("type")
        return t.lower() if t else None

    @property
    def transfer_syntax(self) -> str | None:
        return self.params.get("transfer-syntax")


def _split(text: str, sep: str) -> list[str]:
    """Split on `sep` outside double quotes."""
    out, buf, quoted = [], [], False
    for ch in text:
        if ch == '"':
            quoted = not quoted
            buf.append(ch)
        elif ch == sep and not quoted:
            out.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    out.append("".join(buf))
    return out


def parse_accept(header: str | None) -> list[MediaRange]:
    """Media ranges in preference order. Handles `type=application/octet-stream` unquoted (OHIF),
    quoted, and Orthanc's `type="application/octet-stream; transfer-syntax=X"` form."""
    ranges: list[MediaRange] = []
    for part in _split(header or "", ","):
        pieces = [p.strip() for p in _split(part, ";")]
        if not pieces or not pieces[0]:
            continue
        mr = MediaRange(pieces[0].lower())
        for p in pieces[1:]:
            k, _, v = p.partition("=")
            k, v = k.strip().lower(), v.strip().strip('"').strip()
            if not k:
                continue
            if k == "q":
                try:
                    mr.q = float(v)
                except ValueError:
                    mr.q = 0.0
            elif k == "type" and ";" in v:   # transfer-syntax inside the quoted type
                inner = [x.strip() for x in v.split(";")]
                mr.params["type"] = inner[0]
                for x in inner[1:]:
                    ik, _, iv = x.partition("=")
                    mr.params[ik.strip().lower()] = iv.strip().strip('"')
            else:
                mr.params[k] = v
        ranges.append(mr)
    return sorted(ranges, key=lambda r: -r.q)   # stable: ties keep the client's order


def not_acceptable(message: str) -> ApiError:
    return ApiError("INVALID_ARGUMENT", message, http_status=406)


def new_boundary() -> str:
    return uuid.uuid4().hex


def multipart_body(parts: Iterable[tuple[dict[str, str], Iterable[bytes]]], boundary: str) -> Iterator[bytes]:
    """Stream a multipart/related body: each part is (headers, chunks)."""
    for headers, chunks in parts:
        head = f"--{boundary}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        yield head.encode()
        yield from chunks
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()


STOW_LIMIT = 2 * 1024 ** 3       # request bodies beyond this are refused with 413


def too_large(limit: int) -> ApiError:
    return ApiError("INVALID_ARGUMENT", f"Request payload size exceeds the limit: {limit} bytes.", http_status=413)


class _Limited:
    """Reads a request stream, refusing more than `limit` bytes in all."""

    def __init__(self, stream, limit: int):
        self.stream, self.limit, self.seen = stream, limit, 0

    def read(self, size: int = multipart.READ_SIZE) -> bytes:
        data = self.stream.read(size)
        self.seen += len(data)
        if self.seen > self.limit:
            raise too_large(self.limit)
        return data


def spool_body(stream, directory: str, limit: int | None = None) -> str:
    """Copy a whole request body to a temporary file in `directory`; its path."""
    src = _Limited(stream, STOW_LIMIT if limit is None else limit)
    fd, path = tempfile.mkstemp(dir=directory, prefix=".stow-")
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := src.read():
                out.write(chunk)
    except BaseException:
        os.unlink(path)
        raise
    return path


def spool_multipart(stream, boundary: str, directory: str, want, limit: int | None = None) -> list[tuple[dict, str]]:
    """Split a multipart body while reading it, writing each part for which `want(headers)` is true to
    its own temporary file in `directory` (other parts are skipped); [(lower-cased headers, path)].
    Memory stays at about one read whatever the body's size."""
    src = _Limited(stream, STOW_LIMIT if limit is None else limit)
    spooled: list[tuple[dict, str]] = []
    out = None
    try:
        for piece in multipart.parts(src.read, boundary):
            if isinstance(piece, dict):    # a new part: close the last one's file
                if out:
                    out.close()
                out = None
                if want(piece):
                    fd, path = tempfile.mkstemp(dir=directory, prefix=".stow-")
                    out = os.fdopen(fd, "wb")
                    spooled.append((piece, path))
            elif out:
                out.write(piece)
        return spooled
    except BaseException as exc:
        if out:
            out.close()
            out = None
        for _, path in spooled:
            os.unlink(path)
        if isinstance(exc, multipart.MultipartError):
            raise ApiError("INVALID_ARGUMENT", str(exc)) from None
        raise
    finally:
        if out:
            out.close()


# ---- STOW-RS response ---------------------------------------------------------------------------
FAILURE_PROCESSING = 272        # 0x0110 Processing failure
FAILURE_CANNOT_UNDERSTAND = 49152   # 0xC000


@dataclass
class StowOutcome:
    retrieve_url: str | None
    stored: list[dict] = field(default_factory=list)    # {sop_class, sop, url}
    failed: list[dict] = field(default_factory=list)    # {sop_class, sop, reason, detail}


def stow_json(o: StowOutcome) -> dict:
    out: dict = {}
    if o.retrieve_url:
        out["00081190"] = {"vr": "UR", "Value": [o.retrieve_url]}
    if o.failed:
        out["00081198"] = {"vr": "SQ", "Value": [_failed_item_json(f) for f in o.failed]}
    if o.stored:
        out["00081199"] = {"vr": "SQ", "Value": [{
            "00081150": {"vr": "UI", "Value": [s["sop_class"]]},
            "00081155": {"vr": "UI", "Value": [s["sop"]]},
            "00081190": {"vr": "UR", "Value": [s["url"]]}} for s in o.stored]}
    return out


def _failed_item_json(f: dict) -> dict:
    item = {}
    if f.get("sop_class"):
        item["00081150"] = {"vr": "UI", "Value": [f["sop_class"]]}
    if f.get("sop"):
        item["00081155"] = {"vr": "UI", "Value": [f["sop"]]}
    item["00081197"] = {"vr": "US", "Value": [f["reason"]]}
    item["00091097"] = {"vr": "LT", "Value": [json.dumps({"code": f.get("code", 409), "message": f["detail"]})]}
    return item


def _attr(tag: str, vr: str, keyword: str, value: str | None, indent: str, private_creator: str = "") -> str:
    kw = (f' keyword="{keyword}"' if keyword else "") + (f' privateCreator="{private_creator}"' if private_creator else "")
    if value is None:
        return f'{indent}<DicomAttribute tag="{tag}" vr="{vr}"{kw}/>\n'
    return (f'{indent}<DicomAttribute tag="{tag}" vr="{vr}"{kw}>\n'
            f'{indent}  <Value number="1">{escape(str(value))}</Value>\n{indent}</DicomAttribute>\n')


def stow_xml(o: StowOutcome) -> str:
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n<NativeDicomModel xml:space="preserve">\n']
    if o.retrieve_url:
        out.append(_attr("00081190", "UR", "RetrieveURL", o.retrieve_url, "  "))
    if o.failed:
        out.append('  <DicomAttribute tag="00081198" vr="SQ" keyword="FailedSOPSequence">\n')
        for n, f in enumerate(o.failed, 1):
            # Google's order and its private FailureDetail, as in two real responses quoted verbatim
            # (healthcare-api-dicomweb-cli #46, dcmjs #249): FailureReason, FailureDetail, then the
            # referenced SOP class and instance.
            out.append(f'    <Item number="{n}">\n')
            out.append(_attr("00081197", "US", "FailureReason", str(f["reason"]), "      "))
            out.append(_attr("00090097", "LT", "FailureDetail", f["detail"], "      ", private_creator="GOOGLE"))
            if f.get("sop_class"):
                out.append(_attr("00081150", "UI", "ReferencedSOPClassUID", f["sop_class"], "      "))
            if f.get("sop"):
                out.append(_attr("00081155", "UI", "ReferencedSOPInstanceUID", f["sop"], "      "))
            out.append("    </Item>\n")
        out.append("  </DicomAttribute>\n")
    if o.stored:
        out.append('  <DicomAttribute tag="00081199" vr="SQ" keyword="ReferencedSOPSequence">\n')
        for n, s in enumerate(o.stored, 1):
            out.append(f'    <Item number="{n}">\n')
            out.append(_attr("00081150", "UI", "ReferencedSOPClassUID", s["sop_class"], "      "))
            out.append(_attr("00081155", "UI", "ReferencedSOPInstanceUID", s["sop"], "      "))
            out.append(_attr("00081190", "UR", "RetrieveURL", s["url"], "      "))
            out.append("    </Item>\n")
        out.append("  </DicomAttribute>\n")
    out.append("</NativeDicomModel>\n")
    return "".join(out)
