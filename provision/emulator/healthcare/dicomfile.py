"""Reading a stored DICOM Part-10 file into what the store keeps: the DICOM JSON of every
attribute before the pixel data (with Google's bulk-data rules), where the pixel data sits in
the file, and the few values the index searches on.

A direct parser handles the common encodings (Explicit and Implicit VR Little Endian, and the
compressed syntaxes, whose data set is Explicit VR LE) at a fraction of pydicom's cost, reading
the file through mmap so pixel data is never copied. Big Endian, Deflate and ISO 2022 character
sets go through pydicom.
"""
# Long module (issue 20): one Part-10 reader, its byte-level _Reader and the pydicom fallback together.
from __future__ import annotations

import base64
import functools
import mmap
import struct
from dataclasses import dataclass, field
from typing import Any

# pydicom (a third of a second to import) is imported inside the functions that need it:
# most emulator sessions never reach those (see lazy.py).

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
NATIVE_SYNTAXES = (IMPLICIT_LE, EXPLICIT_LE, EXPLICIT_BE, DEFLATED_LE)

# The marker BulkDataURIs start with in stored metadata; replaced by the instance's URL when served.
BULK_MARK = "@@I@@"

LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"})
SPLIT_TEXT = frozenset({"AE", "AS", "CS", "DA", "DT", "LO", "SH", "TM", "UI", "UC"})
SINGLE_TEXT = frozenset({"LT", "ST", "UT", "UR"})
NUMERIC = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d", "SV": "q", "UV": "Q"}
NUMERIC_SIZE = {"US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "FD": 8, "SV": 8, "UV": 8, "AT": 4}
ALWAYS_BULK = frozenset({"OB", "OW", "UN"})
BULK_IF_LARGE = frozenset({"OD", "OF", "OL", "OV"})   # over 2 KiB
INLINE_LIMIT = 2048
VM_BULK_LIMIT = 512                                    # AT/FD/FL/UL/US/SV/UV with VM over this
# "US or SS" attributes whose VR follows PixelRepresentation (Implicit VR files).
SIGNED_WITH_PIXELS = frozenset({0x00280104, 0x00280105, 0x00280106, 0x00280107, 0x00280108, 0x00280109,
                                0x00280110, 0x00280111, 0x00280120, 0x00281101, 0x00281102, 0x00281103, 0x00283002})
PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
ITEM, ITEM_END, SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
CHARSETS = {"": "latin-1", "ISO_IR 6": "latin-1", "ISO_IR 100": "latin-1", "ISO_IR 192": "utf-8",
            "ISO_IR 101": "iso8859_2", "ISO_IR 109": "iso8859_3", "ISO_IR 110": "iso8859_4",
            "ISO_IR 144": "iso8859_5", "ISO_IR 127": "iso8859_6", "ISO_IR 126": "iso8859_7",
            "ISO_IR 138": "iso8859_8", "ISO_IR 148": "iso8859_9", "ISO_IR 203": "iso8859_15",
            "ISO_IR 166": "cp874", "GB18030": "gb18030", "GBK": "gbk"}
TEXT_VRS_WITH_CHARSET = frozenset({"LO", "LT", "PN", "SH", "ST", "UC", "UT"})
MAX_SQ_DEPTH = 32      # nested sequences deeper than this are refused (real objects stay far below)
# What a malformed data set can make the readers raise: all of it means "not a storable DICOM file".
PARSE_ERRORS = (struct.error, IndexError, KeyError, TypeError, ValueError, UnicodeDecodeError, OverflowError,
                RecursionError)


class NotDicom(ValueError):
    """The bytes are not a DICOM Part-10 file we can store."""


@dataclass
class Parsed:
    """One stored instance, as the index keeps it."""

    meta: dict[str, Any]            # DICOM JSON of the data set (pixel data as a BulkDataURI)
    transfer_syntax: str
    sop_class: str
    study: str
    series: str
    sop: str
    pixel: dict[str, Any] = field(default_factory=dict)   # offset/length/vr of PixelData in the file


class _Fallback(Exception):
    """This file needs pydicom (encoding or character set the direct parser leaves alone)."""


@functools.lru_cache(maxsize=4096)
def _dictionary_vr(tag: int) -> str:
    from pydicom.datadict import dictionary_VR

    if (tag >> 16) & 1 and 0x0010 <= (tag & 0xFFFF) <= 0x00FF:
        return "LO"   # a Private Creator (PS3.5 7.8.1), whatever the group
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return "UN"
    if " or " in vr:
        vr = {"OB or OW": "OW", "US or SS": "US", "US or SS or OW": "US", "US or OW": "US"}.get(vr, vr.split(" or ")[0])
    return "UN" if vr == "NONE" else vr


def parse_file(path) -> Parsed:
    """Parse a stored Part-10 file. Raises NotDicom when it is not one."""
    with open(path, "rb") as fh:
        try:
            mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # empty file
            raise NotDicom("empty file") from None
    try:
        return parse_buffer(mm, path)
    finally:
        mm.close()


def parse_buffer(buf, path=None) -> Parsed:
    try:
        return _parse_buffer(buf, path)
    except NotDicom:
        raise
    except PARSE_ERRORS as exc:
        raise NotDicom(f"malformed DICOM data: {type(exc).__name__}: {exc}") from None


NO_PREAMBLE = ("not a DICOM Part-10 file (no DICM prefix): it is a data set without the PS3.10 128-byte preamble "
               "and \"DICM\" prefix (pydicom 3 writes a data set built in memory that way unless told "
               "dcmwrite(..., enforce_file_format=True))")


def _bare_data_set(buf) -> bool:
    """Does `buf` start like a DICOM data set (a group 0002 or 0008 element, explicit or implicit VR)?"""
    if len(buf) < 8:
        return False
    group, = struct.unpack_from("<H", buf, 0)
    return group in (0x0002, 0x0008) and (bytes(buf[4:6]).isalpha() or buf[6:8] == b"\0\0")


def _parse_buffer(buf, path=None) -> Parsed:
    if len(buf) < 132 or buf[128:132] != b"DICM":
        raise NotDicom(NO_PREAMBLE if _bare_data_set(buf) else "not a DICOM Part-10 file (no DICM prefix)")
    try:
        pos, file_meta = _read_file_meta(buf)
    except PARSE_ERRORS as exc:
        raise NotDicom(f"malformed file meta information: {exc}") from None
    ts = file_meta.get(0x00020010, "")
    if not ts:
        raise NotDicom("file meta has no TransferSyntaxUID")
    try:
        if ts in (EXPLICIT_BE, DEFLATED_LE):
            raise _Fallback(ts)
        reader = _Reader(buf, implicit=False)
        file_meta_json = reader.read_file_meta(132, pos)
        reader.implicit = ts == IMPLICIT_LE
        meta, pixel = reader.read_top(pos)
        meta = {**file_meta_json, **meta}
    except NotDicom:
        raise
    except (_Fallback, struct.error, IndexError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        # Unusual encodings and data sets with encoding errors pydicom may still read.
        if path is None:
            raise NotDicom(f"cannot read the data set: {exc}") from None
        try:
            meta, pixel = _pydicom_fallback(path, ts)
        except Exception as exc2:  # noqa: BLE001 - whatever pydicom raises, the file is not storable
            raise NotDicom(f"malformed DICOM data set: {exc2}") from None
    study, series, sop = (_uid(meta, "0020000D"), _uid(meta, "0020000E"), _uid(meta, "00080018"))
    sop_class = _uid(meta, "00080016") or file_meta.get(0x00020002, "")
    if not (study and series and sop):
        raise NotDicom("missing Study, Series or SOP Instance UID")
    check_pixel_length(meta, pixel, ts)
    return Parsed(meta, ts, sop_class, study, series, sop, pixel)


def _int_attr(meta: dict, tag: str, default: int) -> int:
    v = first(meta, tag, default)
    try:
        return int(v) if v is not None else default
    except (TypeError, ValueError):
        raise NotDicom(f"attribute {tag} has a non-numeric value {v!r}") from None


def check_pixel_length(meta: dict, pixel: dict, ts: str) -> None:
    """Native (uncompressed) Pixel Data must hold Rows x Columns x SamplesPerPixel x
    BitsAllocated/8 x NumberOfFrames bytes (plus one byte of padding to an even length)."""
    if not pixel or pixel.get("tag") != "7FE00010" or pixel.get("length") is None or ts not in NATIVE_SYNTAXES:
        return
    rows, cols = _int_attr(meta, "00280010", 0), _int_attr(meta, "00280011", 0)
    spp, bits = _int_attr(meta, "00280002", 1), _int_attr(meta, "00280100", 0)
    frames = max(_int_attr(meta, "00280008", 1), 1)
    if rows <= 0 or cols <= 0 or spp <= 0 or bits <= 0:
        raise NotDicom(f"Pixel Data without valid Rows ({rows}), Columns ({cols}), SamplesPerPixel ({spp}) and "
                       f"BitsAllocated ({bits})")
    # YBR_FULL_422 native pixel data carries two samples per pixel, not three (PS3.3 C.7.6.3.1.2).
    samples = 2 if spp == 3 and first(meta, "00280004", "") == "YBR_FULL_422" else spp
    expected = (rows * cols * samples * frames * bits + 7) // 8
    length = pixel["length"]
    if length != expected and length != expected + (expected % 2):
        raise NotDicom(f"Pixel Data length {length} does not match Rows x Columns x SamplesPerPixel x "
                       f"BitsAllocated/8 x NumberOfFrames = {rows} x {cols} x {spp} x {bits}/8 x {frames} = {expected} bytes")


def _uid(meta: dict, tag: str) -> str:
    v = meta.get(tag, {}).get("Value")
    return str(v[0]) if v and v[0] is not None else ""


def _read_file_meta(buf) -> tuple[int, dict[int, str]]:
    pos = 132
    out: dict[int, str] = {}
    end = len(buf)
    while pos + 8 <= end:
        group, elem = struct.unpack_from("<HH", buf, pos)
        if group != 0x0002:
            break
        vr = bytes(buf[pos + 4:pos + 6]).decode("ascii", "replace")
        if vr in LONG_VRS:
            length = struct.unpack_from("<I", buf, pos + 8)[0]
            vstart = pos + 12
        else:
            length = struct.unpack_from("<H", buf, pos + 6)[0]
            vstart = pos + 8
        if vr == "UI":
            out[(group << 16) | elem] = bytes(buf[vstart:vstart + length]).rstrip(b"\0 ").decode("ascii", "replace")
        pos = vstart + length
    return pos, out


class _Reader:
    def __init__(self, buf, *, implicit: bool):
        self.buf = buf
        self.implicit = implicit
        self.encoding = "latin-1"
        self.end = len(buf)
        self.depth = 0        # sequence nesting
        self.signed = False   # PixelRepresentation 1: "US or SS" attributes are SS
        self.ranges: dict[str, tuple[int, int | None]] = {}   # bulk-data path -> (offset, length or None)

    # -- elements ---------------------------------------------------------------------------
    def header(self, pos: int) -> tuple[int, str, int, int]:
        """(tag, vr, length, value start) of the element at pos; length 0xFFFFFFFF is undefined."""
        group, elem, = struct.unpack_from("<HH", self.buf, pos)
        tag = (group << 16) | elem
        if group == 0xFFFE:  # item / delimiters carry no VR
            return tag, "", struct.unpack_from("<I", self.buf, pos + 4)[0], pos + 8
        if self.implicit:
            length = struct.unpack_from("<I", self.buf, pos + 4)[0]
            vr = _dictionary_vr(tag) if elem != 0 else "UL"
            if vr == "US" and self.signed and tag in SIGNED_WITH_PIXELS:
                vr = "SS"
            if length == 0xFFFFFFFF and vr not in ("SQ", "OB", "OW"):
                vr = "SQ"
            return tag, vr, length, pos + 8
        vr = bytes(self.buf[pos + 4:pos + 6]).decode("ascii", "replace")
        if vr in LONG_VRS:
            length = struct.unpack_from("<I", self.buf, pos + 8)[0]
            if vr == "UN" and length != 0xFFFFFFFF and not (group & 1):
                # A standard attribute written as UN (by a node that did not know it) holds its value
                # in Implicit VR LE, which for a non-sequence value is the same bytes: read it by the
                # dictionary's VR, as pydicom (replace_un_with_known_vr), dcmtk and GDCM do. Whether
                # Google does is not documented; a store that kept such UIDs as UN would refuse the
                # instance for missing UIDs, which no recording or report shows.
                known = _dictionary_vr(tag)
                vr = known if known not in ("UN", "SQ") else vr
            return tag, vr, length, pos + 12
        if not vr.isalpha() or not vr.isupper():
            raise ValueError(f"invalid VR at offset {pos}")
        return tag, vr, struct.unpack_from("<H", self.buf, pos + 6)[0], pos + 8

    def read_file_meta(self, pos: int, end: int) -> dict:
        """DICOM JSON of the File Meta Information (group 0002, always Explicit VR Little Endian)
        between `pos` and `end`. Google's metadata carries it (TransferSyntaxUID and the rest;
        EZ-WSI asks for 00020010 by includefield and its store mock returns file_meta too)."""
        out: dict[str, Any] = {}
        while pos + 8 <= end:
            tag, vr, length, vstart = self.header(pos)
            pos = self._element(out, tag, vr, length, vstart, "")
        return out

    def read_top(self, pos: int) -> tuple[dict, dict]:
        out: dict[str, Any] = {}
        pixel: dict[str, Any] = {}
        end = self.end
        while pos + 8 <= end:
            tag, vr, length, vstart = self.header(pos)
            if tag in PIXEL_TAGS:
                key = f"{tag:08X}"
                pixel = {"tag": key, "vr": vr or "OW", "offset": vstart,
                         "length": None if length == 0xFFFFFFFF else length}
                if self.implicit and tag == 0x7FE00010:
                    bits = (out.get("00280100", {}).get("Value") or [16])[0]
                    pixel["vr"] = "OB" if bits and bits <= 8 else "OW"
                out[key] = {"vr": pixel["vr"], "BulkDataURI": f"{BULK_MARK}/bulkdata/{key}"}
                break
            if tag == 0x00080005 and length != 0xFFFFFFFF:
                self._charset(bytes(self.buf[vstart:vstart + length]))
            pos = self._element(out, tag, vr, length, vstart, "")
            if tag == 0x00280103:
                self.signed = (out[f"{tag:08X}"].get("Value") or [0])[0] == 1
            if pos > end:
                raise ValueError("element runs past the end of the file")
        return out, pixel

    def _element(self, out: dict, tag: int, vr: str, length: int, vstart: int, path: str) -> int:
        """Convert one element into out[tag]; returns the position after it."""
        key = f"{tag:08X}"
        if vr == "UN" and not self.implicit and _dictionary_vr(tag) == "SQ":
            # A sequence written as UN: its items are Implicit VR Little Endian (PS3.5 6.2.2), whatever
            # the file's transfer syntax; read as the sequence it is (as pydicom, dcmtk and GDCM do).
            self.implicit = True
            try:
                items, nxt = self._sequence(vstart, length, f"{path}{key}/")
            finally:
                self.implicit = False
            out[key] = {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
            return nxt
        if vr == "SQ":
            items, nxt = self._sequence(vstart, length, f"{path}{key}/")
            if (tag & 0xFFFF) != 0:
                out[key] = {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
            return nxt
        if length == 0xFFFFFFFF:  # encapsulated data inside the data set (e.g. an icon image)
            nxt = self._skip_fragments(vstart)
            out[key] = {"vr": vr, "BulkDataURI": f"{BULK_MARK}/bulkdata/{path}{key}"}
            self.ranges[path + key] = (vstart, None)
            return nxt
        nxt = vstart + length
        if (tag & 0xFFFF) == 0 or tag in PIXEL_TAGS:   # group lengths are not part of the JSON model
            if tag in PIXEL_TAGS:
                out[key] = {"vr": vr, "BulkDataURI": f"{BULK_MARK}/bulkdata/{path}{key}"}
                self.ranges[path + key] = (vstart, length)
            return nxt
        if length == 0:
            out[key] = {"vr": vr}
            return nxt
        raw = self.buf[vstart:nxt]
        out[key] = value = self._value(vr, raw, length, f"{path}{key}")
        if "BulkDataURI" in value:
            self.ranges[path + key] = (vstart, length)
        return nxt

    def _value(self, vr: str, raw, length: int, bulk_path: str) -> dict:
        if vr in SPLIT_TEXT or vr in ("IS", "DS"):
            enc = self.encoding if vr in TEXT_VRS_WITH_CHARSET else "latin-1"
            text = bytes(raw).decode(enc)
            parts = text.split("\\")
            if vr == "UI":
                vals = [p.strip("\0 ") or None for p in parts]
            elif vr == "IS":
                vals = [_int_or_none(p) for p in parts]
            elif vr == "DS":
                vals = [_num_or_none(p) for p in parts]
            else:
                vals = [p.strip(" \0") or None for p in parts]
            if all(v is None for v in vals):
                return {"vr": vr}
            return {"vr": vr, "Value": vals}
        if vr in SINGLE_TEXT:
            text = bytes(raw).decode(self.encoding if vr != "UR" else "latin-1").rstrip(" \0")
            return {"vr": vr, "Value": [text]} if text else {"vr": vr}
        if vr == "PN":
            text = bytes(raw).decode(self.encoding).rstrip(" \0")
            names: list[dict[str, str] | None] = []
            for comp in text.split("\\"):
                groups = comp.split("=")
                pn: dict[str, str] = {}
                for name, g in zip(("Alphabetic", "Ideographic", "Phonetic"), groups, strict=False):
                    if g.strip():
                        pn[name] = g.strip()
                names.append(pn or None)
            if all(v is None for v in names):
                return {"vr": vr}
            return {"vr": vr, "Value": names}
        if vr in NUMERIC or vr == "AT":
            size = NUMERIC_SIZE[vr]
            count = length // size
            if count > VM_BULK_LIMIT:
                return {"vr": vr, "BulkDataURI": f"{BULK_MARK}/bulkdata/{bulk_path}"}
            if vr == "AT":
                words = struct.unpack_from(f"<{count * 2}H", raw)
                return {"vr": vr, "Value": [f"{words[i]:04X}{words[i + 1]:04X}" for i in range(0, len(words), 2)]}
            vals = list(struct.unpack_from(f"<{count}{NUMERIC[vr]}", raw))
            if vr in ("FL", "FD"):
                vals = [v if v == v and v not in (float("inf"), float("-inf")) else str(v) for v in vals]
            return {"vr": vr, "Value": vals}
        if vr in ALWAYS_BULK or (vr in BULK_IF_LARGE and length > INLINE_LIMIT):
            return {"vr": vr, "BulkDataURI": f"{BULK_MARK}/bulkdata/{bulk_path}"}
        if vr in BULK_IF_LARGE:
            return {"vr": vr, "InlineBinary": base64.b64encode(bytes(raw)).decode("ascii")}
        # An unknown two-letter VR: keep the bytes.
        return {"vr": "UN", "BulkDataURI": f"{BULK_MARK}/bulkdata/{bulk_path}"}

    def _sequence(self, pos: int, length: int, path: str) -> tuple[list, int]:
        self.depth += 1
        try:
            if self.depth > MAX_SQ_DEPTH:
                raise NotDicom(f"sequences nested deeper than {MAX_SQ_DEPTH} levels")
            return self._sequence_items(pos, length, path)
        finally:
            self.depth -= 1

    def _sequence_items(self, pos: int, length: int, path: str) -> tuple[list, int]:
        items: list[dict] = []
        end = self.end if length == 0xFFFFFFFF else pos + length
        while pos + 8 <= end:
            tag, _, ilen, istart = self.header(pos)
            if tag == SEQ_END:
                return items, istart
            if tag != ITEM:
                raise ValueError(f"expected an item at offset {pos}")
            item: dict[str, Any] = {}
            ipath = f"{path}{len(items)}/"
            iend = self.end if ilen == 0xFFFFFFFF else istart + ilen
            p = istart
            while p + 8 <= iend:
                t, vr, ln, vs = self.header(p)
                if t == ITEM_END:
                    p = vs
                    break
                if t == 0x00080005 and ln != 0xFFFFFFFF:
                    self._charset(bytes(self.buf[vs:vs + ln]))
                p = self._element(item, t, vr, ln, vs, ipath)
            if ilen != 0xFFFFFFFF:
                p = iend
            items.append(item)
            pos = p
        return items, (end if length != 0xFFFFFFFF else pos)

    def _skip_fragments(self, pos: int) -> int:
        while pos + 8 <= self.end:
            tag, ln = struct.unpack_from("<I", self.buf, pos)[0], struct.unpack_from("<I", self.buf, pos + 4)[0]
            tag = ((tag & 0xFFFF) << 16) | (tag >> 16)
            if tag == SEQ_END:
                return pos + 8
            pos += 8 + ln
        raise ValueError("unterminated encapsulated value")

    def _charset(self, raw: bytes) -> None:
        terms = [t.strip(" \0") for t in raw.decode("ascii", "replace").split("\\")]
        if len(terms) > 1 or (terms and terms[0].startswith("ISO 2022")):
            raise _Fallback("ISO 2022 character set")
        term = terms[0] if terms else ""
        if term not in CHARSETS:
            raise _Fallback(f"character set {term}")
        self.encoding = CHARSETS[term]


def _int_or_none(s: str):
    s = s.strip(" \0")
    if not s:
        return None
    try:
        return int(s)
    except ValueError:
        try:
            return int(float(s))
        except ValueError:
            return s


def _num_or_none(s: str):
    s = s.strip(" \0")
    if not s:
        return None
    try:
        if "." not in s and "e" not in s and "E" not in s:
            return int(s)
        f = float(s)
        return f if f == f and f not in (float("inf"), float("-inf")) else s
    except ValueError:
        return s


def _pydicom_fallback(path, ts: str) -> tuple[dict, dict]:
    """Big Endian, Deflate, ISO 2022 character sets: let pydicom read it."""
    import pydicom

    with open(path, "rb") as fp:
        ds = pydicom.dcmread(fp, stop_before_pixels=True)
        offset = fp.tell()
        full = None
        pixel: dict[str, Any] = {}
        if ts != DEFLATED_LE:
            fp.seek(offset)
            head = fp.read(12)
            if len(head) >= 8:
                group, elem = struct.unpack(">HH" if ts == EXPLICIT_BE else "<HH", head[:4])
                tag = (group << 16) | elem
                if tag in PIXEL_TAGS:
                    vr = head[4:6].decode("ascii", "replace")
                    fmt = ">I" if ts == EXPLICIT_BE else "<I"
                    length = struct.unpack(fmt, head[8:12])[0] if vr in LONG_VRS else struct.unpack(fmt[0] + "H", head[6:8])[0]
                    pixel = {"tag": f"{tag:08X}", "vr": vr, "offset": offset + (12 if vr in LONG_VRS else 8),
                             "length": None if length == 0xFFFFFFFF else length}
        else:
            full = pydicom.dcmread(path)
            if "PixelData" in full:
                pixel = {"tag": "7FE00010", "vr": full["PixelData"].VR, "offset": None, "length": len(full.PixelData)}

    def bulk(elem) -> str:
        return f"{BULK_MARK}/bulkdata/{elem.tag:08X}"

    meta = ds.file_meta.to_json_dict(bulk_data_threshold=INLINE_LIMIT, bulk_data_element_handler=bulk) \
        if getattr(ds, "file_meta", None) is not None else {}
    meta.update(ds.to_json_dict(bulk_data_threshold=INLINE_LIMIT, bulk_data_element_handler=bulk))
    for key in list(meta):
        if key.endswith("0000"):
            del meta[key]
        elif meta[key].get("vr") in ALWAYS_BULK and "InlineBinary" in meta[key]:
            meta[key] = {"vr": meta[key]["vr"], "BulkDataURI": f"{BULK_MARK}/bulkdata/{key}"}
    if pixel:
        meta[pixel["tag"]] = {"vr": pixel["vr"], "BulkDataURI": f"{BULK_MARK}/bulkdata/{pixel['tag']}"}
    meta = dict(sorted(meta.items()))
    return meta, pixel


def bulk_ranges(path) -> dict[str, tuple[int, int | None]]:
    """Where each bulk-data value of a stored file sits: path ('7FE00010', '00540016/0/00181072')
    -> (offset, length; None when encapsulated). Empty for encodings the direct parser leaves alone."""
    with open(path, "rb") as fh:
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        try:
            pos, file_meta = _read_file_meta(mm)
        except PARSE_ERRORS:
            return {}
        ts = file_meta.get(0x00020010, "")
        if ts in (EXPLICIT_BE, DEFLATED_LE):
            return {}
        reader = _Reader(mm, implicit=False)
        try:
            reader.read_file_meta(132, pos)
            reader.implicit = ts == IMPLICIT_LE
            _, pixel = reader.read_top(pos)
        except (_Fallback,) + PARSE_ERRORS:
            return {}
        if pixel:
            reader.ranges[pixel["tag"]] = (pixel["offset"], pixel["length"])
        return reader.ranges
    finally:
        mm.close()


def first(meta: dict, tag: str, default=None):
    """The first value of an attribute in DICOM JSON (PN as its Alphabetic string)."""
    v = meta.get(tag, {}).get("Value")
    if not v or v[0] is None:
        return default
    x = v[0]
    if isinstance(x, dict):
        return x.get("Alphabetic", default)
    return x


def values(meta: dict, tag: str) -> list:
    return [x for x in (meta.get(tag, {}).get("Value") or []) if x is not None]
