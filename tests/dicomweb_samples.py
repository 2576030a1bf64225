"""DICOM instances the DICOMweb conformance and client tests share, beyond tests/dicom_factory.py:
the instance of Google's own CLI integration test (google-evidence.md §2.1), 8-bit grey and RGB
images (what JPEG Baseline can hold), a stored JPEG Baseline and RLE instance, pixel-less
instances for paging, and an instance exercising Google's bulk-data definition.

Everything is deterministic (UIDs from dicom_factory.uid) and built with pydicom, Pillow, numpy.
"""
from __future__ import annotations

import io

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit, RLELossless

import dicom_factory as f
from provision.demo.studies import set_file_meta

SC_IMAGE = "1.2.840.10008.5.1.4.1.1.7"              # Secondary Capture Image Storage
VL_PHOTOGRAPHIC = "1.2.840.10008.5.1.4.1.1.77.1.4"   # modality XC
JPEG_BASELINE = str(JPEGBaseline8Bit)
RLE = str(RLELossless)


def _base(key: str, *, patient_id: str, modality: str = "OT", sop_class: str = SC_IMAGE, number: int = 1) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = f.uid("instance", key, number)
    ds.StudyInstanceUID = f.uid("study", key)
    ds.SeriesInstanceUID = f.uid("series", key)
    ds.PatientName = f"Sample^{key}"
    ds.PatientID = patient_id
    ds.StudyDate = "20220202"
    ds.StudyTime = "101010"
    ds.AccessionNumber = f"ACC-{key}"[:16]
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.Modality = modality
    ds.SeriesNumber = 1
    ds.InstanceNumber = number
    ds.ConversionType = "WSD"
    return ds


def _gradient(rows: int, cols: int) -> np.ndarray:
    y, x = np.mgrid[0:rows, 0:cols]
    return ((x * 255) // max(cols - 1, 1) ^ (y * 3)).astype(np.uint8)


def mono8(key: str = "mono8", *, size: int = 32, frames: int = 1) -> Dataset:
    """8-bit unsigned greyscale, `frames` frames (frame k is the gradient plus k)."""
    ds = _base(key, patient_id=f"PID-{key}")
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = size
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    data = np.stack([_gradient(size, size) + k for k in range(frames)]).astype(np.uint8)
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = data.tobytes()
    ds["PixelData"].VR = "OB"
    return set_file_meta(ds)


def rgb8(key: str = "rgb8", *, size: int = 32) -> Dataset:
    """8-bit RGB, interleaved."""
    ds = _base(key, patient_id=f"PID-{key}")
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.Rows = ds.Columns = size
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    g = _gradient(size, size)
    ds.PixelData = np.stack([g, 255 - g, np.full_like(g, 128)], axis=-1).tobytes()
    ds["PixelData"].VR = "OB"
    return set_file_meta(ds)


def as_pixels(ds: Dataset) -> np.ndarray:
    return ds.pixel_array


def jpeg_baseline_stored(key: str = "jpegstored", *, size: int = 32) -> Dataset:
    """An 8-bit greyscale instance stored as JPEG Baseline (compressed here with Pillow)."""
    from PIL import Image

    ds = mono8(key, size=size)
    buf = io.BytesIO()
    Image.fromarray(_gradient(size, size)).save(buf, "JPEG", quality=95)
    ds.PixelData = encapsulate([buf.getvalue()])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.LossyImageCompression = "01"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    return ds


def rle_stored(key: str = "rlestored") -> Dataset:
    ds = f.mr_series(key, slices=1, patient_id=f"PID-{key}")[0]
    ds.compress(RLELossless, encoding_plugin="pydicom")
    return ds


def golden_1dcm() -> Dataset:
    """The instance of Google's DICOMweb CLI integration test (`cloudBuild/dcms/1.dcm`, described in
    google-evidence.md §2.1): JPEG Baseline, all UIDs "111", empty StudyDate, StudyTime,
    AccessionNumber, ReferringPhysicianName, PatientName, PatientID, PatientBirthDate, PatientSex and
    StudyID, Modality XC, and no SpecificCharacterSet, InstanceAvailability or TimezoneOffsetFromUTC."""
    from PIL import Image

    ds = Dataset()
    ds.SOPClassUID = VL_PHOTOGRAPHIC
    ds.SOPInstanceUID = "111"
    ds.StudyDate = ""
    ds.StudyTime = ""
    ds.AccessionNumber = ""
    ds.Modality = "XC"
    ds.ReferringPhysicianName = ""
    ds.PatientName = ""
    ds.PatientID = ""
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyInstanceUID = "111"
    ds.SeriesInstanceUID = "111"
    ds.StudyID = ""
    ds.SeriesNumber = None
    ds.InstanceNumber = None
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.PlanarConfiguration = 0
    ds.Rows = ds.Columns = 16
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    g = _gradient(16, 16)
    buf = io.BytesIO()
    Image.fromarray(np.stack([g, 255 - g, g // 2], axis=-1)).save(buf, "JPEG", quality=90, subsampling="4:2:2")
    ds.PixelData = encapsulate([buf.getvalue()])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    set_file_meta(ds)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    return ds


# The golden QIDO answer of that test, verbatim (keys re-sorted by the CLI; google-evidence.md §2.1).
GOLDEN_STUDY_SEARCH = [{
    "00080020": {"vr": "DA"}, "00080030": {"vr": "TM"}, "00080050": {"vr": "SH"}, "00080090": {"vr": "PN"},
    "00100010": {"vr": "PN"}, "00100020": {"vr": "LO"}, "00100030": {"vr": "DA"}, "00100040": {"vr": "CS"},
    "0020000D": {"Value": ["111"], "vr": "UI"}, "00200010": {"vr": "SH"}}]


def tiny(study: int, number: int) -> Dataset:
    """A pixel-less instance (for paging): study `study`, one series, instance `number`."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"   # Basic Text SR
    ds.SOPInstanceUID = f.uid("tiny-instance", study, number)
    ds.StudyInstanceUID = f.uid("tiny-study", study)
    ds.SeriesInstanceUID = f.uid("tiny-series", study)
    ds.PatientID = f"TINY-{study:04d}"
    ds.PatientName = f"Tiny^{study:04d}"
    ds.StudyDate = "20240101"
    ds.Modality = "SR"
    ds.InstanceNumber = number
    return set_file_meta(ds)


def bulk_rich(key: str = "bulkrich") -> Dataset:
    """Attributes on both sides of each line of Google's bulk-data definition (CONF §1.2)."""
    ds = mono8(key, size=8)
    ds.add_new(0x00091010, "LO", "PRIVATE-CREATOR")
    ds.add_new(0x00091011, "OB", b"\x01\x02\x03\x04")                                   # OB: always bulk
    ds.add_new(0x00181310, "US", [1, 2, 3, 4])                                          # US, VM 4: inline
    ds.add_new(0x00287FE0, "UR", "http://example.org/x")                                # text: inline
    ds.add_new(0x00660016, "OF", np.arange(8, dtype="<f4").tobytes())                  # OF, 32 B: inline
    ds.add_new(0x00660017, "OF", np.arange(600, dtype="<f4").tobytes())                # OF, 2400 B (> 2 KiB): bulk
    lut = Dataset()
    lut.LUTDescriptor = [600, 0, 16]
    lut.LUTData = list(range(600))                                                       # US, VM 600 (> 512): bulk
    lut["LUTData"].VR = "US"
    ds.VOILUTSequence = [lut]
    ds.add_new(0x00189219, "FD", [0.5] * 513)                                           # FD, VM 513: bulk
    return ds


def to_bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def need_jpeg_decoder() -> None:
    """The tests read the emulator's JPEG Lossless and 12-bit JPEG with pydicom, whose plugin for
    them is pylibjpeg-libjpeg (a test dependency): say so plainly when it is missing."""
    from pydicom.pixels import get_decoder

    assert "pylibjpeg" in get_decoder("1.2.840.10008.1.2.4.70").available_plugins, \
        "pydicom cannot decode JPEG Lossless here: install the test dependencies (pip install -e '.[test]', " \
        "which brings pylibjpeg-libjpeg)"
