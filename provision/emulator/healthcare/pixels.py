"""Pixel data out of stored files: frames as raw little-endian bytes (sliced straight from the
file for native encodings), the stored fragments of compressed frames, decoding through pydicom
when a compressed frame must be served uncompressed, transcoding whole instances to Explicit VR
Little Endian, and rendered JPEG/PNG images with rescale and window applied.
"""
from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from provision.emulator.lazy import LazyModule
from provision.emulator.errors import ApiError
from provision.emulator.healthcare.dicomfile import EXPLICIT_LE, IMPLICIT_LE, first, values

if TYPE_CHECKING:
    import numpy as np
else:
    np = LazyModule("numpy")   # imported on first use: a server that never decodes pixels never loads it

# pydicom (a third of a second to import) and PIL are imported inside the functions that need them:
# most emulator sessions never reach those (see lazy.py).

UNCOMPRESSED_LE = (EXPLICIT_LE, IMPLICIT_LE)
RENDER_MAX = 1024     # rendered images are not enlarged past this many pixels a side


class CannotTranscode(Exception):
    """The stored encoding cannot be turned into the one asked for."""


def transcode_error(src: str, dst: str) -> ApiError:
    return ApiError("FAILED_PRECONDITION", f"Transcoding from transfer syntax {src} to {dst} is not supported for "
                    "this instance; request transfer-syntax=* to receive the stored encoding.", http_status=406)


def geometry(meta: dict) -> dict[str, Any]:
    rows, cols = int(first(meta, "00280010", 0) or 0), int(first(meta, "00280011", 0) or 0)
    spp = int(first(meta, "00280002", 1) or 1)
    bits = int(first(meta, "00280100", 16) or 16)
    frames = int(first(meta, "00280008", 1) or 1)
    return {"rows": rows, "cols": cols, "spp": spp, "bits": bits, "frames": max(frames, 1),
            "stored": int(first(meta, "00280101", bits) or bits), "signed": int(first(meta, "00280103", 0) or 0) == 1,
            "planar": int(first(meta, "00280006", 0) or 0), "photometric": first(meta, "00280004", "MONOCHROME2")}


def frame_size(g: dict) -> int:
    return g["rows"] * g["cols"] * g["spp"] * g["bits"] // 8


def check_frames(numbers: list[int], g: dict) -> None:
    for n in numbers:
        if n < 1 or n > g["frames"]:
            raise ApiError("INVALID_ARGUMENT", f"frame number {n} is out of range: the instance has {g['frames']} frame(s)")


def native_frames(path, pixel: dict, g: dict, numbers: list[int]) -> list[bytes]:
    """Frames of an uncompressed little-endian instance, read straight from the file."""
    size = frame_size(g)
    out = []
    with open(path, "rb") as fh:
        for n in numbers:
            fh.seek(pixel["offset"] + (n - 1) * size)
            data = fh.read(size)
            if size <= 0 or len(data) != size or (pixel.get("length") is not None and n * size > pixel["length"]):
                raise pixel_mismatch(g, pixel)
            out.append(data)
    return out


def pixel_mismatch(g: dict, pixel: dict) -> ApiError:
    """An instance (stored before ingest checked it) whose Pixel Data disagrees with its geometry."""
    return ApiError("FAILED_PRECONDITION", f"The instance's Pixel Data ({pixel.get('length')} bytes) does not match its "
                    f"Rows ({g['rows']}), Columns ({g['cols']}), SamplesPerPixel ({g['spp']}), BitsAllocated "
                    f"({g['bits']}) and NumberOfFrames ({g['frames']}); its frames cannot be served.")


def encapsulated_frames(path, pixel: dict, g: dict, numbers: list[int]) -> list[bytes]:
    """The stored (compressed) bytes of each frame."""
    from pydicom.encaps import generate_frames

    with open(path, "rb") as fh:
        fh.seek(pixel["offset"])
        frames = generate_frames(fh, number_of_frames=g["frames"])
        wanted = set(numbers)
        found: dict[int, bytes] = {}
        for i, data in enumerate(frames, 1):
            if i in wanted:
                found[i] = data
            if len(found) == len(wanted):
                break
    return [found[n] for n in numbers]


def decoded_frames(path, numbers: list[int]) -> list[np.ndarray]:
    """Frames decoded by pydicom (compressed or big-endian data)."""
    import pydicom

    try:
        ds = pydicom.dcmread(path)
        arr = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - any decoder failure means we cannot serve it uncompressed
        raise CannotTranscode(str(exc)) from None
    if int(getattr(ds, "NumberOfFrames", 1) or 1) == 1:
        arr = arr[np.newaxis, ...]
    return [arr[n - 1] for n in numbers]


def frames_le(path, pixel: dict, meta: dict, ts: str, numbers: list[int]) -> list[bytes]:
    """Frames as uncompressed little-endian bytes (Explicit VR Little Endian pixel encoding)."""
    g = geometry(meta)
    check_frames(numbers, g)
    if ts in UNCOMPRESSED_LE and pixel.get("offset") is not None and pixel.get("length") is not None and g["bits"] % 8 == 0:
        return native_frames(path, pixel, g, numbers)
    try:
        arrays = decoded_frames(path, numbers)
    except CannotTranscode:
        raise transcode_error(ts, EXPLICIT_LE) from None
    out = []
    for a in arrays:
        a = np.ascontiguousarray(a)
        if a.dtype.byteorder == ">" or (a.dtype.byteorder == "=" and np.little_endian is False):
            a = a.astype(a.dtype.newbyteorder("<"))
        if g["spp"] > 1 and g["planar"] == 1 and a.ndim == 3:
            a = np.moveaxis(a, -1, 0)
        out.append(a.tobytes())
    return out


def frames_as_stored(path, pixel: dict, meta: dict, ts: str, numbers: list[int]) -> list[bytes]:
    g = geometry(meta)
    check_frames(numbers, g)
    if pixel.get("length") is None and pixel.get("offset") is not None:
        return encapsulated_frames(path, pixel, g, numbers)
    return frames_le(path, pixel, meta, ts, numbers)


def to_explicit_le(path, ts: str) -> bytes:
    """The whole instance re-encoded as Explicit VR Little Endian (decompressing if needed)."""
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian

    try:
        ds = pydicom.dcmread(path)
        if ds.file_meta.TransferSyntaxUID.is_compressed:
            ds.decompress()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True, implicit_vr=False, little_endian=True)
        return buf.getvalue()
    except Exception as exc:  # noqa: BLE001
        raise transcode_error(ts, EXPLICIT_LE) from exc


# ---- rendered -----------------------------------------------------------------------------------
def frame_array(path, pixel: dict, meta: dict, ts: str, number: int) -> np.ndarray:
    g = geometry(meta)
    check_frames([number], g)
    if ts in UNCOMPRESSED_LE and pixel.get("length") is not None and g["bits"] in (8, 16, 32):
        raw = native_frames(path, pixel, g, [number])[0]
        dtype = {8: "u1", 16: "u2", 32: "u4"}[g["bits"]]
        dtype = ("<i" if g["signed"] else "<u") + dtype[1:]
        arr = np.frombuffer(raw, dtype=dtype)
        if arr.size != g["rows"] * g["cols"] * g["spp"]:
            raise pixel_mismatch(g, pixel)
        if g["stored"] < g["bits"]:
            shift = g["bits"] - g["stored"]
            arr = (arr << shift) >> shift if g["signed"] else arr & ((1 << g["stored"]) - 1)
        if g["spp"] > 1:
            arr = arr.reshape((g["spp"], g["rows"], g["cols"])).transpose(1, 2, 0) if g["planar"] == 1 \
                else arr.reshape((g["rows"], g["cols"], g["spp"]))
        else:
            arr = arr.reshape((g["rows"], g["cols"]))
        return arr
    try:
        return decoded_frames(path, [number])[0]
    except CannotTranscode:
        raise ApiError("FAILED_PRECONDITION", f"Rendering is not supported for transfer syntax {ts}.", http_status=406) from None


def _window(meta: dict, data: np.ndarray) -> np.ndarray:
    slope = float(first(meta, "00281053", 1) or 1)
    intercept = float(first(meta, "00281052", 0) or 0)
    x = data.astype(np.float64) * slope + intercept
    centers, widths = values(meta, "00281050"), values(meta, "00281051")
    if centers and widths and float(widths[0]) > 1:
        c, w = float(centers[0]), float(widths[0])
        lo, hi = c - 0.5 - (w - 1) / 2, c - 0.5 + (w - 1) / 2
        y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255.0
        y = np.where(x <= lo, 0.0, np.where(x > hi, 255.0, y))
    else:
        lo, hi = float(x.min()), float(x.max())
        y = (x - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(x)
    return np.clip(y, 0, 255).astype(np.uint8)


def render(path, pixel: dict, meta: dict, ts: str, number: int, viewport: tuple[int, int] | None, fmt: str) -> bytes:
    """A frame as an 8-bit JPEG or PNG, windowed, fitted into the viewport (aspect kept)."""
    from PIL import Image

    arr = frame_array(path, pixel, meta, ts, number)
    photometric = str(first(meta, "00280004", "MONOCHROME2"))
    if arr.ndim == 2:
        img8 = _window(meta, arr)
        if photometric == "MONOCHROME1":
            img8 = 255 - img8
        img = Image.fromarray(img8, "L")
    else:
        if arr.dtype != np.uint8:
            a = arr.astype(np.float64)
            a = (a - a.min()) / max(float(a.max() - a.min()), 1.0) * 255.0
            arr = a.astype(np.uint8)
        img = Image.fromarray(np.ascontiguousarray(arr[..., :3]), "RGB")
        if photometric.startswith("YBR") and ts in UNCOMPRESSED_LE:
            img = Image.fromarray(np.ascontiguousarray(arr[..., :3]), "YCbCr").convert("RGB")
    if viewport:
        vw, vh = viewport
        # Fitted inside the viewport; enlarged at most to RENDER_MAX pixels a side (a small image in
        # a large viewport), never beyond that: a huge viewport costs nothing.
        longest = max(img.width, img.height)
        scale = min(vw / img.width, vh / img.height, max(longest, RENDER_MAX) / longest)
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        if size != img.size:
            img = img.resize(size, Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    if fmt == "png":
        img.save(buf, "PNG")
    else:
        img.save(buf, "JPEG", quality=90)
    return buf.getvalue()
