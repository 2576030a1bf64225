"""Deterministic synthetic demo studies (pydicom + numpy): what `provision demo` imports.

Two patients, two studies, written as Part-10 files, Explicit VR Little Endian:

- "Phantom^CT": a chest CT phantom, one axial series of 64 slices, 256 x 256, int16 with
  RescaleIntercept -1024 (HU), windows 40/400 (soft tissue) and -600/1500 (lung),
  PixelSpacing 1.367 mm, SliceThickness 2.5 mm, z from -78.75 to +78.75 mm;
- "Phantom^MR": a head MR phantom, one axial series of 24 slices, 128 x 128, uint16 with
  12 bits stored.

Every UID is `2.25.<uuid5(NAMESPACE, readable name)>` (pydicom's generate_uid ignores its
entropy sources and returns a random UID), dates and times are fixed, and the
implementation UID is ours (not pydicom's, which changes with its version), so a rerun
writes the same bytes. Files are `<out>/<study UID>/<series UID>/<SOP instance UID>.dcm`;
a file that already holds the same bytes is not rewritten.

The building blocks are public, for the other generators (tests/dicom_factory.py,
bench/_data.py): `uid` (with their own namespace), `Study` / `Series` and `set_study` /
`set_series`, `ct_image` / `mr_image` (one instance with real geometry, windows and rescale
from the caller's pixels), `set_plane`, and `set_file_meta` + `part10_bytes`.
"""
from __future__ import annotations

import io
import os
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from provision.checks.answers import ohif_patient_name
import numpy as np
from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian

__all__ = [
    "Series", "Study", "StudyInfo", "ct_image", "mr_image", "ohif_patient_name", "part10_bytes", "set_file_meta",
    "set_plane", "set_series", "set_study", "uid", "write_demo_studies",
]

NAMESPACE = uuid.UUID("0b7e3f3e-5d1c-5a8e-9c57-6f2d4f0a1c42")
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


def uid(*parts: object, namespace: uuid.UUID = NAMESPACE) -> str:
    """A deterministic UID under the 2.25 root (UUID-derived, ISO/IEC 9834-8), e.g. uid('study', 'ct').

    Another generator passes its own `namespace`, so its UIDs never collide with the demo's."""
    return "2.25." + str(uuid.uuid5(namespace, "/".join(str(p) for p in parts)).int)


IMPLEMENTATION_UID = UID(uid("implementation", "provision-demo-data", 1))


@dataclass(frozen=True)
class StudyInfo:
    study_uid: str
    patient_name: str  # DICOM PN, e.g. "Phantom^CT"
    patient_name_ohif: str  # as OHIF's study list shows it, e.g. "Phantom, CT"
    modality: str
    n_instances: int
    patient_id: str = ""
    description: str = ""
    series_uid: str = ""
    files: tuple[Path, ...] = field(default=(), repr=False, compare=False)


# ------------------------------------------------------------------------- pixels


def _ct_slice(z: float, size: int = 256) -> np.ndarray:
    """Hounsfield units of a chest phantom at table position z (mm): body, lungs, heart, spine, ribs."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    cx, cy = (size - 1) / 2, (size - 1) / 2 + 8
    s = size / 256
    hu = np.full((size, size), -1000.0, np.float32)  # air
    body = ((x - cx) / (118 * s)) ** 2 + ((y - cy) / (88 * s)) ** 2 < 1
    hu[body] = -80.0  # fat
    hu[((x - cx) / (108 * s)) ** 2 + ((y - cy) / (78 * s)) ** 2 < 1] = 40.0  # muscle / soft tissue
    t = z / 78.75  # -1 .. 1 along the chest
    lung_a, lung_b = (40 - 6 * t**2) * s, (58 - 10 * t**2) * s
    for side in (-1, 1):
        lung = ((x - cx - side * 48 * s) / lung_a) ** 2 + ((y - cy + 4 * s) / lung_b) ** 2 < 1
        hu[lung] = -820.0
        vessels = lung & (((x * 7 + y * 3 + int(z)) % 29) == 0)
        hu[vessels] = -100.0  # a few vessels, so the lungs are not flat
    heart_r = max(0.0, 34 * s * (1 - (t - 0.2) ** 2))
    hu[((x - cx + 12 * s) / (heart_r + 1e-6)) ** 2 + ((y - cy + 6 * s) / (heart_r * 0.85 + 1e-6)) ** 2 < 1] = 45.0
    hu[(x - cx) ** 2 + (y - cy - 56 * s) ** 2 < (11 * s) ** 2] = 700.0  # vertebral body
    hu[(x - cx) ** 2 + (y - cy - 56 * s) ** 2 < (5 * s) ** 2] = 30.0  # canal
    ring = ((x - cx) / (112 * s)) ** 2 + ((y - cy) / (82 * s)) ** 2
    rib_angle = np.arctan2(y - cy, x - cx)
    hu[(np.abs(ring - 0.93) < 0.025) & (np.cos(rib_angle * 9 + z / 6) > 0.6)] = 600.0  # ribs
    hu += ((x.astype(np.int32) * 3 + y.astype(np.int32) * 5) % 9 - 4).astype(np.float32)  # fixed texture
    return np.clip(hu, -1024, 3071)


def _mr_slice(z: float, size: int = 128) -> np.ndarray:
    """12-bit signal of a head phantom at z (mm): scalp, skull (dark), brain, ventricles."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    c = (size - 1) / 2
    s = size / 128
    t = z / 34.5  # -1 .. 1 across the head
    scale = np.sqrt(max(0.05, 1 - 0.55 * t**2))
    r = np.hypot((x - c) / (52 * s * scale), (y - c) / (60 * s * scale))
    img = np.zeros((size, size), np.float32)
    img[r < 1.0] = 1800.0  # scalp
    img[r < 0.93] = 150.0  # skull
    img[r < 0.86] = 2600.0  # grey matter
    img[r < 0.70] = 3300.0  # white matter
    vent = (np.abs(x - c) > 3 * s) & (np.hypot((np.abs(x - c) - 9 * s) / (6 * s), (y - c + 4 * s) / (16 * s)) < 1 - abs(t))
    img[vent] = 900.0  # CSF in the ventricles
    img += ((x.astype(np.int32) * 5 + y.astype(np.int32) * 3) % 13).astype(np.float32) * 8
    return np.clip(img, 0, 4095)


# ---------------------------------------------------------------------- datasets


@dataclass(frozen=True)
class Study:
    """What every instance of one study repeats: the Patient and General Study modules."""

    uid: str
    patient_name: str
    patient_id: str
    date: str  # also the series and content date: a synthetic study is acquired in one day
    id: str
    accession: str
    description: str
    birth_date: str = "19700101"
    sex: str = "O"
    referring: str = "Demo^Referrer"


@dataclass(frozen=True)
class Series:
    """What every instance of one series repeats: General Series and Frame of Reference."""

    uid: str
    description: str
    body_part: str
    frame_of_reference: str
    number: int = 1
    time: str = "102000"


def set_study(ds: Dataset, study: Study) -> None:
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = study.birth_date
    ds.PatientSex = study.sex
    ds.StudyInstanceUID = study.uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study.date
    ds.StudyTime = "101500"
    ds.ReferringPhysicianName = study.referring
    ds.StudyID = study.id
    ds.AccessionNumber = study.accession
    ds.StudyDescription = study.description


def set_series(ds: Dataset, series: Series) -> None:
    ds.SeriesInstanceUID = series.uid
    ds.SeriesNumber = series.number
    ds.SeriesDescription = series.description
    ds.SeriesTime = series.time
    ds.BodyPartExamined = series.body_part
    ds.PatientPosition = "HFS"
    ds.FrameOfReferenceUID = series.frame_of_reference
    ds.PositionReferenceIndicator = ""


def set_plane(ds: Dataset, *, z: float, spacing: float, thickness: float, size: int) -> None:
    """An axial square slice of `size` pixels centred on the table axis at height z (mm)."""
    half = (size - 1) * spacing / 2
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [-half, -half, z]
    ds.SliceLocation = z
    ds.PixelSpacing = [spacing, spacing]
    ds.SliceThickness = thickness


def _image(study: Study, series: Series, *, modality: str, sop_class: str, sop_uid: str, number: int,
           image_type: list[str]) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    set_study(ds, study)
    ds.Modality = modality
    set_series(ds, series)
    # General Equipment
    ds.Manufacturer = "provision"
    ds.ManufacturerModelName = "synthetic phantom"
    ds.SoftwareVersions = "1"
    # General Image
    ds.ImageType = image_type
    ds.InstanceNumber = number
    ds.ContentTime = "102000"
    ds.AcquisitionNumber = 1
    ds.ImageComments = "Synthetic phantom for demos; not a patient."
    return ds


def _pixels(ds: Dataset, data: np.ndarray, *, signed: bool, bits_stored: int) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = data.shape
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.PixelData = data.astype("<i2" if signed else "<u2").tobytes()
    ds["PixelData"].VR = "OW"


def ct_image(study: Study, series: Series, *, sop_uid: str, number: int, z: float, hu: np.ndarray, spacing: float,
             thickness: float) -> Dataset:
    """One axial CT slice: `hu` (square, Hounsfield units) stored as int16 with RescaleIntercept -1024,
    soft-tissue (40/400) and lung (-600/1500) windows."""
    ds = _image(study, series, modality="CT", sop_class=CT_IMAGE_STORAGE, sop_uid=sop_uid, number=number,
                image_type=["ORIGINAL", "PRIMARY", "AXIAL"])
    set_plane(ds, z=z, spacing=spacing, thickness=thickness, size=hu.shape[0])
    ds.KVP = 120
    ds.ConvolutionKernel = "STANDARD"
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.WindowCenter = [40, -600]
    ds.WindowWidth = [400, 1500]
    ds.WindowCenterWidthExplanation = ["SOFT TISSUE", "LUNG"]
    _pixels(ds, np.rint(hu + 1024), signed=True, bits_stored=16)
    return ds


def mr_image(study: Study, series: Series, *, sop_uid: str, number: int, z: float, signal: np.ndarray, spacing: float,
             thickness: float) -> Dataset:
    """One axial T1 spin-echo MR slice: `signal` (square, 0..4095) stored as uint16 with 12 bits stored,
    one full-range window."""
    ds = _image(study, series, modality="MR", sop_class=MR_IMAGE_STORAGE, sop_uid=sop_uid, number=number,
                image_type=["ORIGINAL", "PRIMARY", "OTHER"])
    set_plane(ds, z=z, spacing=spacing, thickness=thickness, size=signal.shape[0])
    ds.SpacingBetweenSlices = thickness
    ds.ScanningSequence = "SE"
    ds.SequenceVariant = "NONE"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "2D"
    ds.RepetitionTime = 500
    ds.EchoTime = 15
    ds.EchoTrainLength = 1
    ds.MagneticFieldStrength = 1.5
    ds.ImagedNucleus = "1H"
    ds.WindowCenter = 2048
    ds.WindowWidth = 4096
    _pixels(ds, np.rint(signal), signed=False, bits_stored=12)
    return ds


# ---------------------------------------------------------------------- files


def set_file_meta(ds: Dataset) -> Dataset:
    """Give `ds` its Part-10 preamble and file meta (Explicit VR Little Endian, our implementation UID);
    returns `ds`."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_UID
    meta.ImplementationVersionName = "PROVISION_1"
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    return ds


def part10_bytes(ds: Dataset) -> bytes:
    """The Part-10 file bytes of `ds`, with the file meta it carries (see set_file_meta)."""
    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def _write_if_changed(path: Path, data: bytes) -> None:
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------- studies


# The studies are deterministic: each file's bytes are built once per process (about 10 MB), as a
# test session writes the demo studies dozens of times and building them was most of that cost.
_BUILT: dict[str, bytes] = {}


def _write_study(out_dir: Path, key: str, study: Study, series: Series, *, modality: str, zs: list[float],
                 image: Callable[[str, int, float], Dataset]) -> StudyInfo:
    """One single-series study: `image(sop_uid, number, z)` for each z, written as `<study>/<series>/<sop>.dcm`."""
    files = []
    for i, z in enumerate(zs):
        sop = uid("instance", key, series.number, i + 1)
        path = out_dir / study.uid / series.uid / f"{sop}.dcm"
        data = _BUILT.get(sop)
        if data is None:
            data = _BUILT[sop] = part10_bytes(set_file_meta(image(sop, i + 1, z)))
        _write_if_changed(path, data)
        files.append(path)
    return StudyInfo(
        study_uid=study.uid, patient_name=study.patient_name, patient_name_ohif=ohif_patient_name(study.patient_name),
        modality=modality, n_instances=len(files), patient_id=study.patient_id, description=study.description,
        series_uid=series.uid, files=tuple(files),
    )


def _ct_study(out_dir: Path) -> StudyInfo:
    key = "ct-chest"
    study = Study(uid=uid("study", key), patient_name="Phantom^CT", patient_id="PHANTOM-CT", date="20240115", id="CT1",
                  accession="DEMO-CT-0001", description="CT chest phantom", birth_date="19700101")
    series = Series(uid=uid("series", key, 1), description="Axial 2.5 mm", body_part="CHEST",
                    frame_of_reference=uid("frame-of-reference", key))
    size, spacing, thickness = 256, 1.367, 2.5

    def image(sop: str, number: int, z: float) -> Dataset:
        return ct_image(study, series, sop_uid=sop, number=number, z=z, hu=_ct_slice(z, size), spacing=spacing,
                        thickness=thickness)

    return _write_study(out_dir, key, study, series, modality="CT", zs=[-78.75 + i * thickness for i in range(64)],
                        image=image)


def _mr_study(out_dir: Path) -> StudyInfo:
    key = "mr-head"
    study = Study(uid=uid("study", key), patient_name="Phantom^MR", patient_id="PHANTOM-MR", date="20240116", id="MR1",
                  accession="DEMO-MR-0001", description="MR head phantom", birth_date="19800202")
    series = Series(uid=uid("series", key, 1), description="Axial T1 SE", body_part="HEAD",
                    frame_of_reference=uid("frame-of-reference", key))
    size, spacing, thickness = 128, 1.875, 3.0

    def image(sop: str, number: int, z: float) -> Dataset:
        return mr_image(study, series, sop_uid=sop, number=number, z=z, signal=_mr_slice(z, size), spacing=spacing,
                        thickness=thickness)

    return _write_study(out_dir, key, study, series, modality="MR", zs=[-34.5 + i * thickness for i in range(24)],
                        image=image)


def write_demo_studies(out_dir: Path | str) -> list[StudyInfo]:
    """Write the demo studies under `out_dir` (created if needed; unchanged files untouched); CT first, then MR."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [_ct_study(out), _mr_study(out)]
