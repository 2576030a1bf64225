"""Transcoding on retrieval, as Google's conformance statement lists it (google-evidence.md §1.2):
whole instances into another transfer syntax, single frames into image media types.

What this emulator produces, and with which codec (no codec is written here):
- native encodings (Implicit and Explicit VR Little Endian, Deflated Explicit VR Little Endian):
  pydicom (decoding compressed sources with its decoders: RLE natively, JPEG Baseline and 8-bit
  Extended through Pillow, JPEG-LS, JPEG 2000 and HTJ2K through the plugins below; 12-bit JPEG
  Extended, JPEG Lossless and JPEG XL sources have no decoder here and are served only as stored);
- RLE Lossless (1.2.840.10008.1.2.5), instances and `image/dicom-rle` frames: pydicom's own RLE
  encoder;
- JPEG-LS Lossless and Near-Lossless (.4.80, .4.81; `image/jls` frames) and JPEG 2000 Lossless and
  lossy (.4.90, .4.91; `image/jp2` frames): pydicom's encoders with their plugins from the pydicom
  project (pyjpegls over CharLS, pylibjpeg-openjpeg over OpenJPEG); colour JPEG 2000 with its
  multiple-component transform, so YBR_RCT / YBR_ICT (PS3.5 §8.2.4);
- JPEG Baseline 8-bit (1.2.840.10008.1.2.4.50), instances and `image/jpeg` frames: Pillow
  (libjpeg-turbo); colour as YBR_FULL_422 (4:2:2), the photometric interpretation PS3.5 §8.2.1
  prescribes for it;
- JPEG Extended (.4.51, 8- or 12-bit lossy), JPEG Lossless (.4.57) and JPEG Lossless SV1 (.4.70),
  instances and `image/jpeg` frames: imagecodecs' `jpeg8_encode` over libjpeg-turbo 3, whose one
  library writes 8- and 12-bit lossy and 2- to 16-bit lossless JPEG; the JPEG sample precision is
  Bits Stored for lossless (at least 9 when Bits Allocated is 16), 8 or 12 for lossy (by Bits
  Allocated 8 or 16); colour lossless stays RGB (no colour transform, so the samples come back
  exactly), colour lossy is YBR_FULL_422 as for Baseline;
- `image/png` frames: Pillow (8-bit grey, 16-bit grey, 8-bit RGB).

Google also lists HTJ2K and JPEG XL; this emulator has no encoder for them and answers 406 saying
so (`GOOGLE_ONLY`), never a wrong body.

Choices where Google's statement is silent:
- JPEG Baseline is 8-bit by definition: a source with more than 8 bits stored, signed pixels or
  other than 1 or 3 samples is not transcoded to it (406); Google says only that it cannot do it
  for colour images deeper than 8 bits;
- JPEG Extended (lossy) takes unsigned grey up to 12 bits stored and unsigned 8-bit colour (406
  otherwise: DCT JPEG holds 8 or 12 bits and no sign, and Google refuses colour deeper than 8
  bits); JPEG Lossless takes grey of 2 to 16 bits stored, signed too (the two's-complement bit
  patterns are coded, as pydicom's decoders expect), and 8-bit colour;
- JPEG Lossless (.4.57) uses the same first-order predictor (selection value 1) as .4.70: Process 14
  allows any of the seven and 1 is what DCMTK's encoder uses by default;
- a lossy JPEG result has Bits Stored equal to its JPEG precision (8 or 12; High Bit one less): the
  decoded samples may use the whole range of that precision, which a smaller Bits Stored would cut;
- PNG holds unsigned samples: signed pixel data is not transcoded to it (406);
- an instance without pixel data asked for in a compressed syntax is written as that syntax
  (its data set is Explicit VR Little Endian either way, which PS3.5 allows);
- a lossy result carries LossyImageCompression "01", its method and ratio (PS3.3 C.7.6.1.1.5), and
  keeps its SOP Instance UID (it is a view of the stored instance, not a new one);
- lossy settings: JPEG Baseline and Extended quality 90, JPEG-LS NEAR 2, JPEG 2000 compression
  ratio 2;
- JPEG 2000 needs frames of at least 32 x 32 pixels (pylibjpeg-openjpeg always asks OpenJPEG for six
  resolution levels): smaller ones answer 406 with the codec's message.
"""
from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from provision.emulator.lazy import LazyModule
from provision.emulator.errors import ApiError
from provision.emulator.healthcare.dicomfile import DEFLATED_LE, EXPLICIT_BE, EXPLICIT_LE, IMPLICIT_LE

if TYPE_CHECKING:
    import numpy as np
else:
    np = LazyModule("numpy")   # imported on first use: a server that never decodes pixels never loads it

# pydicom (a third of a second to import), PIL and imagecodecs are imported inside the functions
# that need them: most emulator sessions never reach those (see lazy.py).

RLE = "1.2.840.10008.1.2.5"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
JPEG_LOSSLESS, JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"
JLS_LOSSLESS, JLS_NEAR = "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"
J2K_LOSSLESS, J2K = "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"
NATIVE_TARGETS = (EXPLICIT_LE, IMPLICIT_LE, DEFLATED_LE)
# Encoded by pydicom (its encoder options per syntax).
PYDICOM_ENCODED: dict[str, dict[str, Any]] = {RLE: {}, JLS_LOSSLESS: {}, JLS_NEAR: {"jls_error": 2}, J2K_LOSSLESS: {},
                                              J2K: {"j2k_cr": [2]}}
# Encoded by imagecodecs' jpeg8_encode (libjpeg-turbo 3): the predictor of each lossless syntax.
JPEG_TURBO = {JPEG_EXTENDED: None, JPEG_LOSSLESS: 1, JPEG_LOSSLESS_SV1: 1}
JPEG_FAMILY = frozenset({JPEG_BASELINE} | set(JPEG_TURBO))
INSTANCE_TARGETS = frozenset(NATIVE_TARGETS + (JPEG_BASELINE,) + tuple(JPEG_TURBO) + tuple(PYDICOM_ENCODED))
LOSSY_METHOD = {JPEG_BASELINE: "ISO_10918_1", JPEG_EXTENDED: "ISO_10918_1", JLS_NEAR: "ISO_14495_1",
                J2K: "ISO_15444_1"}
JPEG_QUALITY = 90
# In Google's retrieve tables (CONF §1.2) but without an encoder here.
GOOGLE_ONLY = frozenset({
    "1.2.840.10008.1.2.4.110", "1.2.840.10008.1.2.4.111", "1.2.840.10008.1.2.4.112",  # JPEG XL
    "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203",  # HTJ2K
})
# "Transcoding is supported only from" these (CONF §1.2); anything else is an error.
SOURCES = frozenset({IMPLICIT_LE, EXPLICIT_LE, EXPLICIT_BE, DEFLATED_LE, "1.2.840.10008.1.2.8.1"}) | INSTANCE_TARGETS \
    | GOOGLE_ONLY


def not_acceptable(message: str) -> ApiError:
    return ApiError("FAILED_PRECONDITION", message, http_status=406)


def cannot(src: str, dst: str, why: str = "") -> ApiError:
    return not_acceptable(f"Transcoding from transfer syntax {src} to {dst} is not supported for this instance"
                          f"{': ' + why if why else ''}; request transfer-syntax=* to receive the stored encoding.")


def check_target(ts: str) -> None:
    """406 unless `ts` is a transfer syntax this emulator can produce."""
    if ts in INSTANCE_TARGETS:
        return
    if ts in GOOGLE_ONLY:
        raise not_acceptable(f"Transfer syntax {ts} is in Google's retrieve table, but this emulator has no encoder "
                             f"for it; request transfer-syntax=* or one of {', '.join(sorted(INSTANCE_TARGETS))}.")
    raise not_acceptable(f"Transfer syntax {ts} is not one Google's DICOMweb serves (see the retrieve table of its "
                         "DICOM conformance statement).")


# ---- frames: decoding and encoding ---------------------------------------------------------------
def _decoded(path, index: int | None = None) -> np.ndarray:
    """Pixels decoded by pydicom (colour as RGB), all frames or frame `index` (0-based)."""
    from pydicom.pixels import pixel_array

    try:
        return pixel_array(str(path), index=index)
    except Exception as exc:  # noqa: BLE001 - no decoder (or a broken stream): not transcodable
        raise _Undecodable(str(exc)) from None


class _Undecodable(Exception):
    pass


def _geometry_ok_for_jpeg(g: dict, ts: str = JPEG_BASELINE) -> str:
    """Why these pixels cannot be JPEG in transfer syntax `ts`; '' when they can."""
    name = {JPEG_BASELINE: "JPEG Baseline", JPEG_EXTENDED: "JPEG Extended"}.get(ts, "JPEG Lossless")
    if ts == JPEG_BASELINE and (g["stored"] > 8 or g["bits"] != 8):
        return f"JPEG Baseline holds 8-bit samples and the instance has {g['stored']} bits stored"
    if g["spp"] not in (1, 3):
        return f"{name} holds 1 or 3 samples per pixel, not {g['spp']}"
    if g["bits"] not in (8, 16) or not 1 <= g["stored"] <= g["bits"]:
        return f"{name} is served for 8- or 16-bit samples, not {g['bits']} allocated and {g['stored']} stored"
    if g["spp"] == 3 and g["bits"] != 8:
        return f"{name} is served for colour of 8 bits, not {g['bits']}"
    if ts == JPEG_EXTENDED and g["stored"] > 12:
        return f"JPEG Extended holds at most 12-bit samples and the instance has {g['stored']} bits stored"
    if ts in (JPEG_LOSSLESS, JPEG_LOSSLESS_SV1) and g["stored"] < 2:
        return "JPEG Lossless holds 2- to 16-bit samples and the instance has 1 bit stored"
    if ts in (JPEG_BASELINE, JPEG_EXTENDED) and g["signed"]:
        return f"{name} holds unsigned samples and the instance's pixels are signed"
    return ""


def jpeg_bytes(frame: np.ndarray) -> bytes:
    """One 8-bit frame (rows x cols, or rows x cols x 3 RGB) as a baseline JPEG (Pillow)."""
    from PIL import Image

    arr = np.ascontiguousarray(frame.astype(np.uint8, copy=False))
    img = Image.fromarray(arr)          # uint8: "L" (2-D) or "RGB" (rows x cols x 3)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=JPEG_QUALITY, subsampling="4:2:2", optimize=False)
    return buf.getvalue()


def jpeg_precision(ts: str, g: dict) -> int:
    """The JPEG sample precision P of a frame in `ts`: Bits Stored for lossless, 8 or 12 for lossy;
    more than 8 when Bits Allocated is 16, which is how decoders (pylibjpeg) size their output."""
    if ts in (JPEG_LOSSLESS, JPEG_LOSSLESS_SV1):
        return g["stored"] if g["bits"] == 8 else max(g["stored"], 9)
    return 8 if g["bits"] == 8 else 12


def jpeg_turbo_bytes(ts: str, frame: np.ndarray, g: dict) -> bytes:
    """One frame (rows x cols, or rows x cols x 3 RGB) as JPEG Extended or Lossless, encoded by
    imagecodecs over libjpeg-turbo 3. Samples are given as their Bits Stored low bits (signed
    lossless: the two's-complement pattern), which also keeps 12-bit lossy input in the range
    libjpeg-turbo requires."""
    import imagecodecs

    precision = jpeg_precision(ts, g)
    bits = np.ascontiguousarray(frame).astype(np.int64) & ((1 << g["stored"]) - 1)
    samples = np.ascontiguousarray(bits.astype(np.uint8 if precision <= 8 else np.uint16))
    colour = samples.ndim == 3
    options: dict[str, Any]   # jpeg8_encode's keywords
    if ts == JPEG_EXTENDED:
        options = {"level": JPEG_QUALITY, "outcolorspace": "YCbCr", "subsampling": "422"} if colour else \
            {"level": JPEG_QUALITY}
    else:
        options = {"lossless": True, "predictor": JPEG_TURBO[ts], **({"outcolorspace": "RGB"} if colour else {})}
    try:
        return bytes(imagecodecs.jpeg8_encode(samples, bitspersample=precision, **options))
    except Exception as exc:  # noqa: BLE001 - pixels libjpeg-turbo refuses
        raise cannot("the stored encoding", ts, str(exc)) from None


def png_bytes(frame: np.ndarray, g: dict) -> bytes:
    from PIL import Image

    if g["signed"]:
        raise not_acceptable("image/png holds unsigned samples and the instance's pixels are signed; ask for "
                             "application/octet-stream.")
    if frame.ndim == 2 and g["bits"] <= 8:
        img = Image.fromarray(np.ascontiguousarray(frame.astype(np.uint8, copy=False)))      # "L"
    elif frame.ndim == 2 and g["bits"] == 16:
        img = Image.fromarray(np.ascontiguousarray(frame.astype("<u2", copy=False)))         # "I;16"
    elif frame.ndim == 3 and frame.shape[2] == 3 and g["bits"] == 8:
        img = Image.fromarray(np.ascontiguousarray(frame.astype(np.uint8, copy=False)))      # "RGB"
    else:
        raise not_acceptable(f"image/png is served for 8- or 16-bit grey and 8-bit RGB pixels, not {g['spp']} "
                             f"sample(s) of {g['bits']} bits.")
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def pydicom_frame(ts: str, frame: np.ndarray, g: dict) -> bytes:
    """One decoded frame encoded by pydicom's encoder for `ts` (RLE, JPEG-LS, JPEG 2000)."""
    from pydicom.pixels import get_encoder

    try:
        return bytes(get_encoder(ts).encode(
            np.ascontiguousarray(frame), rows=g["rows"], columns=g["cols"], samples_per_pixel=g["spp"],
            bits_allocated=g["bits"], bits_stored=g["stored"], pixel_representation=1 if g["signed"] else 0,
            number_of_frames=1, photometric_interpretation="RGB" if g["spp"] == 3 else g["photometric"],
            planar_configuration=0, **PYDICOM_ENCODED[ts]))
    except Exception as exc:  # noqa: BLE001 - no plugin, or pixels the codec cannot hold
        raise cannot("the stored encoding", ts, str(exc)) from None


def frames_as(path, stored_ts: str, g: dict, numbers: list[int], media: str, ts: str | None) -> list[bytes]:
    """Frames `numbers` (1-based) as `media` in transfer syntax `ts` (None for image/png)."""
    target = ts or media
    if stored_ts not in SOURCES:
        raise cannot(stored_ts, target)
    if ts in JPEG_FAMILY and (why := _geometry_ok_for_jpeg(g, ts)):
        raise cannot(stored_ts, ts, why)
    out = []
    for n in numbers:
        try:
            frame = _decoded(path, n - 1)
        except _Undecodable as exc:
            raise cannot(stored_ts, target, f"its pixel data cannot be decoded ({exc})") from None
        if ts == JPEG_BASELINE:
            out.append(jpeg_bytes(frame))
        elif ts in JPEG_TURBO:
            out.append(jpeg_turbo_bytes(ts, frame, g))
        elif ts is None:
            out.append(png_bytes(frame, g))
        else:
            out.append(pydicom_frame(ts, frame, g))
    return out


# ---- whole instances -----------------------------------------------------------------------------
def instance_as(path, stored_ts: str, want: str) -> bytes:
    """The stored Part-10 file at `path` re-encoded in transfer syntax `want` (a Part-10 file)."""
    import pydicom
    from pydicom.uid import UID

    check_target(want)
    if stored_ts not in SOURCES:
        raise cannot(stored_ts, want)
    try:
        ds = pydicom.dcmread(str(path))
    except Exception as exc:  # noqa: BLE001
        raise cannot(stored_ts, want, f"the stored file cannot be read ({exc})") from None
    has_pixels = "PixelData" in ds
    stored = UID(stored_ts)
    try:
        if has_pixels and (want in PYDICOM_ENCODED or want in JPEG_FAMILY or stored.is_compressed):
            arr = _decoded(path)
            frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
            if frames == 1:
                arr = arr[np.newaxis, ...]
            spp = int(getattr(ds, "SamplesPerPixel", 1) or 1)
            if spp == 3:   # pydicom hands colour back as RGB, interleaved
                ds.PhotometricInterpretation = "RGB"
                ds.PlanarConfiguration = 0
            if want in JPEG_FAMILY:
                _to_jpeg(ds, arr, stored_ts, want)
            elif want in PYDICOM_ENCODED:
                g: dict[str, Any] = {"rows": int(ds.Rows), "cols": int(ds.Columns), "spp": spp,
                                     "bits": int(ds.BitsAllocated),
                                     "stored": int(getattr(ds, "BitsStored", ds.BitsAllocated)),
                                     "signed": int(getattr(ds, "PixelRepresentation", 0)) == 1,
                                     "photometric": str(ds.PhotometricInterpretation)}
                encoded = [pydicom_frame(want, f, g) for f in arr]
                _set_encapsulated(ds, encoded)
                if spp == 3 and want in (J2K_LOSSLESS, J2K):   # OpenJPEG applied its colour transform
                    ds.PhotometricInterpretation = "YBR_RCT" if want == J2K_LOSSLESS else "YBR_ICT"
                if want in LOSSY_METHOD:
                    _mark_lossy(ds, want, arr.size * (g["bits"] // 8), encoded)
            else:
                _set_native(ds, arr)
    except _Undecodable as exc:
        raise cannot(stored_ts, want, f"its pixel data cannot be decoded ({exc})") from None
    ds.file_meta.TransferSyntaxUID = UID(want)
    buf = io.BytesIO()
    try:
        ds.save_as(buf, enforce_file_format=True)
    except Exception as exc:  # noqa: BLE001 - pydicom refused to write what it read
        raise cannot(stored_ts, want, str(exc)) from None
    return buf.getvalue()


def _set_native(ds, arr: np.ndarray) -> None:
    """Uncompressed little-endian pixel data from decoded frames."""
    bits = int(ds.BitsAllocated)
    dtype = {8: "u1", 16: "u2", 32: "u4"}.get(bits)
    if dtype is None:
        raise _Undecodable(f"{bits}-bit samples")
    kind = "<i" if int(getattr(ds, "PixelRepresentation", 0)) == 1 else "<u"
    ds.PixelData = np.ascontiguousarray(arr).astype(kind + dtype[1:], copy=False).tobytes()
    ds["PixelData"].VR = "OB" if bits == 8 else "OW"
    ds["PixelData"].is_undefined_length = False


def _set_encapsulated(ds, frames: list[bytes]) -> None:
    from pydicom.encaps import encapsulate

    ds.PixelData = encapsulate(frames, has_bot=len(frames) > 1)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True


def _to_jpeg(ds, arr: np.ndarray, stored_ts: str, want: str) -> None:
    """Decoded frames re-encoded as JPEG Baseline (Pillow), Extended or Lossless (imagecodecs)."""
    g = {"bits": int(ds.BitsAllocated), "stored": int(getattr(ds, "BitsStored", ds.BitsAllocated)),
         "signed": int(getattr(ds, "PixelRepresentation", 0)) == 1, "spp": int(getattr(ds, "SamplesPerPixel", 1) or 1)}
    if why := _geometry_ok_for_jpeg(g, want):
        raise cannot(stored_ts, want, why)
    encoded = [jpeg_bytes(f) if want == JPEG_BASELINE else jpeg_turbo_bytes(want, f, g) for f in arr]
    _set_encapsulated(ds, encoded)
    if want not in LOSSY_METHOD:
        return                                   # lossless: RGB stays RGB, grey stays as it was
    if g["spp"] == 3:
        ds.PhotometricInterpretation = "YBR_FULL_422"
    precision = jpeg_precision(want, g)
    if g["stored"] != precision:                 # decoded samples may fill the whole JPEG precision
        ds.BitsStored, ds.HighBit = precision, precision - 1
    _mark_lossy(ds, want, arr.size * (g["bits"] // 8), encoded)


def _mark_lossy(ds, ts: str, raw: int, encoded: list[bytes]) -> None:
    """Lossy Image Compression attributes (PS3.3 C.7.6.1.1.5)."""
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionMethod = LOSSY_METHOD[ts]
    ds.LossyImageCompressionRatio = f"{raw / max(1, sum(len(e) for e in encoded)):.2f}"[:16]
