"""The synthetic demo studies: deterministic bytes, real geometry and windows, idempotent (their speed:
bench/demo_data.py)."""
from __future__ import annotations

import gc
import hashlib
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian

from provision.demo.studies import StudyInfo, ohif_patient_name, uid, write_demo_studies


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.dcm"))}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, list[StudyInfo]]:
    out = tmp_path_factory.mktemp("demo")
    return out, write_demo_studies(out)


def test_study_info(demo):
    out, (ct, mr) = demo
    assert (ct.patient_name, ct.patient_name_ohif, ct.modality, ct.n_instances) == ("Phantom^CT", "Phantom, CT", "CT", 64)
    assert (mr.patient_name, mr.patient_name_ohif, mr.modality, mr.n_instances) == ("Phantom^MR", "Phantom, MR", "MR", 24)
    for s in (ct, mr):
        assert s.study_uid.startswith("2.25.") and len(s.study_uid) <= 64
        assert len(s.files) == s.n_instances
        assert all(p.parent.parent.name == s.study_uid and p.parent.name == s.series_uid for p in s.files)
    assert len(list(out.rglob("*.dcm"))) == 88
    assert ct.study_uid != mr.study_uid


def test_same_bytes_in_a_fresh_process(demo, tmp_path):
    out, _ = demo
    code = f"from provision.demo.studies import write_demo_studies; write_demo_studies({str(tmp_path)!r})"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert digest(tmp_path) == digest(out)


def test_idempotent_rerun_touches_nothing(demo):
    out, studies = demo
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.dcm")}
    assert write_demo_studies(out) == studies
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.dcm")} == before
    assert not list(out.rglob("*.tmp"))


def test_changed_file_is_repaired(demo):
    out, (ct, _) = demo
    victim = ct.files[3]
    good = victim.read_bytes()
    victim.write_bytes(good[:1000])
    write_demo_studies(out)
    assert victim.read_bytes() == good


def strict_read(path: Path) -> pydicom.Dataset:
    # Warnings are errors for pydicom's reading only: with the collector paused, what earlier tests of the
    # process left to it (an unclosed socket's ResourceWarning) is not collected, and raised, in here.
    gc.disable()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ds = pydicom.dcmread(path)
    finally:
        gc.enable()
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.preamble == b"\0" * 128
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID
    return ds


def test_ct_series(demo):
    _, (ct, _) = demo
    slices = [strict_read(p) for p in ct.files]
    zs = [float(d.ImagePositionPatient[2]) for d in slices]
    assert zs[0] == -78.75 and zs[-1] == 78.75 and np.allclose(np.diff(zs), 2.5)
    first = slices[0]
    assert first.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2" and first.Modality == "CT"
    assert (first.Rows, first.Columns, first.BitsAllocated, first.BitsStored, first.PixelRepresentation) == (256, 256, 16, 16, 1)
    assert first.RescaleIntercept == -1024 and first.RescaleSlope == 1
    assert list(first.WindowCenter) == [40, -600] and list(first.WindowWidth) == [400, 1500]
    assert [float(v) for v in first.PixelSpacing] == [1.367, 1.367] and float(first.SliceThickness) == 2.5
    assert [float(v) for v in first.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert len({d.FrameOfReferenceUID for d in slices}) == 1 and len({d.SOPInstanceUID for d in slices}) == 64
    assert len({d.SeriesInstanceUID for d in slices}) == 1 and {d.StudyInstanceUID for d in slices} == {ct.study_uid}
    assert [d.InstanceNumber for d in slices] == list(range(1, 65))
    assert str(first.PatientName) == "Phantom^CT"
    hu = slices[32].pixel_array.astype(np.int32) - 1024
    assert hu.min() >= -1024 and hu.max() <= 3071
    assert (hu < -900).mean() > 0.1 and (hu > 500).any() and ((hu > -900) & (hu < -500)).mean() > 0.05  # air, bone, lung
    assert not np.array_equal(slices[0].pixel_array, slices[32].pixel_array)


def test_mr_series(demo):
    _, (_, mr) = demo
    slices = [strict_read(p) for p in mr.files]
    first = slices[0]
    assert first.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4" and first.Modality == "MR"
    assert (first.Rows, first.Columns, first.BitsAllocated, first.BitsStored, first.HighBit, first.PixelRepresentation) == (128, 128, 16, 12, 11, 0)
    px = np.stack([d.pixel_array for d in slices])
    assert px.dtype == np.uint16 and px.max() < 4096 and px.max() > 2000
    assert str(first.PatientName) == "Phantom^MR" and first.PatientID != slices[0].StudyInstanceUID


def test_uids():
    assert uid("a", 1) == uid("a", 1) != uid("a", 2)
    assert all(c.isdigit() or c == "." for c in uid("x")) and len(uid("x")) <= 64


@pytest.mark.parametrize("pn,shown", [("Phantom^CT", "Phantom, CT"), ("Doe^John^A^Dr", "Doe, John A Dr"), ("Single", "Single"), ("^Given", ", Given")])
def test_ohif_patient_name(pn, shown):
    assert ohif_patient_name(pn) == shown
