"""Deterministic DICOM test data (pydicom + numpy): CT and MR phantom series with real geometry,
windowing and rescale, a multi-frame secondary capture, all Explicit VR Little Endian Part-10.

The instances are built by provision.demo.studies's building blocks; what is the tests' own is the
knobs (study key, sizes, names, dates...), a simple phantom whose regions the rendering tests
rely on, and the institution name the QIDO tests read back.

UIDs are `2.25.<uuid5-int>` of a readable key, so reruns are byte-identical and tests can name
the UIDs they expect: `uid("study", "ct1")`.
"""
from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from provision.demo import studies as demo_studies
from provision.demo.studies import Series, Study, ct_image, mr_image, part10_bytes, set_file_meta, set_study

NAMESPACE = uuid.UUID("6f1f6c55-4b8b-4bd4-9d38-6c0f3a5a9e11")
CT_IMAGE = demo_studies.CT_IMAGE_STORAGE
MR_IMAGE = demo_studies.MR_IMAGE_STORAGE
SC_MULTIFRAME_WORD = "1.2.840.10008.5.1.4.1.1.7.3"
INSTITUTION = "Emulator General"


def uid(*parts: object) -> str:
    """A deterministic UID under the 2.25 root: `uid("series", "ct1", 1)`."""
    return demo_studies.uid(*parts, namespace=NAMESPACE)


def _phantom(size: int, z: float, *, hu: bool) -> np.ndarray:
    """A round body with a brighter disc whose size changes with z (so slices differ)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    c = (size - 1) / 2
    r = np.hypot(x - c, y - c) / (size / 2)
    if hu:
        img = np.full((size, size), -1000.0, np.float32)      # air
        img[r < 0.85] = 40.0                                  # soft tissue
        lesion = np.hypot(x - c * 1.2, y - c * 0.8) / (size / 2)
        img[lesion < 0.15 + 0.1 * np.cos(z / 20.0)] = 700.0    # bone-like
        img += ((x + y) % 7) - 3                               # texture, so compression is not trivial
        return img
    img = np.zeros((size, size), np.float32)
    img[r < 0.8] = 900.0
    img[r < 0.5 + 0.2 * np.sin(z / 10.0)] = 2500.0
    return img + ((x * 3 + y) % 11)


def _study(study_key: str, *, patient_name: str, patient_id: str, study_date: str, accession: str,
           referring: str, study_description: str, birth_date: str, sex: str) -> Study:
    return Study(uid=uid("study", study_key), patient_name=patient_name, patient_id=patient_id, date=study_date,
                 id=study_key[:16], accession=accession, description=study_description, birth_date=birth_date,
                 sex=sex, referring=referring)


def _series(study_key: str, series_number: int, description: str, body_part: str, time: str) -> Series:
    return Series(uid=uid("series", study_key, series_number), number=series_number, description=description,
                  body_part=body_part, frame_of_reference=uid("for", study_key), time=time)


def _finish(ds: Dataset) -> Dataset:
    ds.InstitutionName = INSTITUTION
    return set_file_meta(ds)


def ct_series(study_key: str = "ct1", *, slices: int = 8, size: int = 64, series_number: int = 1,
              patient_name: str = "Phantom^CT", patient_id: str = "PID-CT1", study_date: str = "20150610",
              accession: str = "ACC-CT1", referring: str = "Referrer^Rita", study_description: str = "CT chest phantom",
              series_description: str = "Axial 2.5mm") -> list[Dataset]:
    """An axial CT series: int16 pixels, RescaleIntercept -1024, two windows, real geometry."""
    study = _study(study_key, patient_name=patient_name, patient_id=patient_id, study_date=study_date,
                   accession=accession, referring=referring, study_description=study_description,
                   birth_date="19700101", sex="O")
    series = _series(study_key, series_number, series_description, "CHEST", "101600")
    zs = [-2.5 * (slices - 1) / 2 + 2.5 * i for i in range(slices)]
    return [_finish(ct_image(study, series, sop_uid=uid("instance", study_key, series_number, i + 1), number=i + 1,
                             z=z, hu=_phantom(size, z, hu=True), spacing=1.367, thickness=2.5))
            for i, z in enumerate(zs)]


def mr_series(study_key: str = "mr1", *, slices: int = 4, size: int = 32, series_number: int = 1,
              patient_name: str = "Phantom^MR", patient_id: str = "PID-MR1", study_date: str = "20200102",
              accession: str = "ACC-MR1", referring: str = "Referrer^Max", study_description: str = "MR head phantom",
              series_description: str = "T1 axial") -> list[Dataset]:
    """An MR series: uint16 with 12 bits stored, one window."""
    study = _study(study_key, patient_name=patient_name, patient_id=patient_id, study_date=study_date,
                   accession=accession, referring=referring, study_description=study_description,
                   birth_date="19800202", sex="F")
    series = _series(study_key, series_number, series_description, "HEAD", "090000")
    zs = [5.0 * i for i in range(slices)]
    return [_finish(mr_image(study, series, sop_uid=uid("instance", study_key, series_number, i + 1), number=i + 1,
                             z=z, signal=_phantom(size, z, hu=False), spacing=5.0, thickness=5.0))
            for i, z in enumerate(zs)]


def multiframe(study_key: str = "mf1", *, frames: int = 3, size: int = 16, patient_id: str = "PID-MF1") -> Dataset:
    """A multi-frame grayscale secondary capture: frame k has every pixel equal to 100*k."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    set_study(ds, _study(study_key, patient_name="Multi^Frame", patient_id=patient_id, study_date="20210303",
                         accession="ACC-MF1", referring="", study_description="Multi-frame", birth_date="", sex=""))
    ds.SOPClassUID = SC_MULTIFRAME_WORD
    ds.SOPInstanceUID = uid("instance", study_key, 1, 1)
    ds.Modality = "OT"
    ds.ConversionType = "WSD"
    ds.SeriesInstanceUID = uid("series", study_key, 1)
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.NumberOfFrames = frames
    ds.FrameIncrementPointer = 0x00181063
    ds.FrameTime = "40"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = size
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    data = np.stack([np.full((size, size), 100 * (k + 1), "<u2") for k in range(frames)])
    ds.PixelData = data.tobytes()
    ds["PixelData"].VR = "OW"
    return _finish(ds)


to_bytes = part10_bytes  # the Part-10 file bytes


def pixel_bytes(ds: Dataset) -> bytes:
    return bytes(ds.PixelData)


def write_all(datasets: list[Dataset], directory: Path) -> list[Path]:
    """Write each instance as `<dir>/<SeriesUID>/<SOPUID>.dcm`."""
    paths = []
    for ds in datasets:
        path = Path(directory) / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(to_bytes(ds))
        paths.append(path)
    return paths
