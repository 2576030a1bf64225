"""Deterministic DICOM test data (pydicom + numpy): CT and MR phantom series with real geometry,
windowing and rescale, a multi-frame secondary capture, all Explicit VR Little Endian Part-10.

UIDs are `2.25.<uuid5-int>` of a readable key, so reruns are byte-identical and tests can name
the UIDs they expect: `uid("study", "ct1")`.
"""
from __future__ import annotations

import io
import uuid
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID

NAMESPACE = uuid.UUID("6f1f6c55-4b8b-4bd4-9d38-6c0f3a5a9e11")
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
SC_MULTIFRAME_WORD = "1.2.840.10008.5.1.4.1.1.7.3"


def uid(*parts: object) -> str:
    """A deterministic UID under the 2.25 root: `uid("series", "ct1", 1)`."""
    return "2.25." + str(uuid.uuid5(NAMESPACE, "/".join(str(p) for p in parts)).int)


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


def _base(study_key: str, *, patient_name: str, patient_id: str, study_date: str, accession: str,
          referring: str, study_description: str, birth_date: str, sex: str) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = birth_date
    ds.PatientSex = sex
    ds.StudyInstanceUID = uid("study", study_key)
    ds.StudyDate = study_date
    ds.StudyTime = "101500"
    ds.AccessionNumber = accession
    ds.ReferringPhysicianName = referring
    ds.StudyID = study_key[:16]
    ds.StudyDescription = study_description
    ds.Manufacturer = "provision-tests"
    ds.InstitutionName = "Emulator General"
    return ds


def _finish(ds: Dataset) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    return ds


def ct_series(study_key: str = "ct1", *, slices: int = 8, size: int = 64, series_number: int = 1,
              patient_name: str = "Phantom^CT", patient_id: str = "PID-CT1", study_date: str = "20150610",
              accession: str = "ACC-CT1", referring: str = "Referrer^Rita", study_description: str = "CT chest phantom",
              series_description: str = "Axial 2.5mm") -> list[Dataset]:
    """An axial CT series: int16 pixels, RescaleIntercept -1024, two windows, real geometry."""
    out = []
    series_uid = uid("series", study_key, series_number)
    for i in range(slices):
        z = -2.5 * (slices - 1) / 2 + 2.5 * i
        ds = _base(study_key, patient_name=patient_name, patient_id=patient_id, study_date=study_date,
                   accession=accession, referring=referring, study_description=study_description,
                   birth_date="19700101", sex="O")
        ds.SOPClassUID = CT_IMAGE
        ds.SOPInstanceUID = uid("instance", study_key, series_number, i + 1)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.Modality = "CT"
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = series_number
        ds.SeriesDescription = series_description
        ds.SeriesDate = study_date
        ds.SeriesTime = "101600"
        ds.FrameOfReferenceUID = uid("for", study_key)
        ds.PositionReferenceIndicator = ""
        ds.BodyPartExamined = "CHEST"
        ds.KVP = "120"
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [-size * 0.6835, -size * 0.6835, round(z, 3)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.SliceThickness = "2.5"
        ds.SliceLocation = round(z, 3)
        ds.PixelSpacing = [1.367, 1.367]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = ds.Columns = size
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.WindowCenter = ["40", "-600"]
        ds.WindowWidth = ["400", "1500"]
        ds.RescaleIntercept = "-1024"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        pixels = (_phantom(size, z, hu=True) + 1024).astype("<i2")
        ds.PixelData = pixels.tobytes()
        ds["PixelData"].VR = "OW"
        out.append(_finish(ds))
    return out


def mr_series(study_key: str = "mr1", *, slices: int = 4, size: int = 32, series_number: int = 1,
              patient_name: str = "Phantom^MR", patient_id: str = "PID-MR1", study_date: str = "20200102",
              accession: str = "ACC-MR1", referring: str = "Referrer^Max", study_description: str = "MR head phantom",
              series_description: str = "T1 axial") -> list[Dataset]:
    """An MR series: uint16 with 12 bits stored, one window."""
    out = []
    series_uid = uid("series", study_key, series_number)
    for i in range(slices):
        z = 5.0 * i
        ds = _base(study_key, patient_name=patient_name, patient_id=patient_id, study_date=study_date,
                   accession=accession, referring=referring, study_description=study_description,
                   birth_date="19800202", sex="F")
        ds.SOPClassUID = MR_IMAGE
        ds.SOPInstanceUID = uid("instance", study_key, series_number, i + 1)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
        ds.Modality = "MR"
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = series_number
        ds.SeriesDescription = series_description
        ds.SeriesDate = study_date
        ds.SeriesTime = "090000"
        ds.FrameOfReferenceUID = uid("for", study_key)
        ds.ScanningSequence = "SE"
        ds.SequenceVariant = "NONE"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "2D"
        ds.EchoTime = "12"
        ds.RepetitionTime = "500"
        ds.MagneticFieldStrength = "1.5"
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [-80.0, -80.0, z]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.SliceThickness = "5"
        ds.PixelSpacing = [5.0, 5.0]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = ds.Columns = size
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.WindowCenter = "1500"
        ds.WindowWidth = "3000"
        ds.PixelData = _phantom(size, z, hu=False).astype("<u2").tobytes()
        ds["PixelData"].VR = "OW"
        out.append(_finish(ds))
    return out


def multiframe(study_key: str = "mf1", *, frames: int = 3, size: int = 16, patient_id: str = "PID-MF1") -> Dataset:
    """A multi-frame grayscale secondary capture: frame k has every pixel equal to 100*k."""
    ds = _base(study_key, patient_name="Multi^Frame", patient_id=patient_id, study_date="20210303",
               accession="ACC-MF1", referring="", study_description="Multi-frame", birth_date="", sex="")
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


def to_bytes(ds: Dataset) -> bytes:
    """The Part-10 file bytes."""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


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
