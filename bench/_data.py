"""Deterministic benchmark data: N single-instance CT studies and one 64-slice CT series.

Every file is a Part-10 DICOM file, Explicit VR Little Endian, 256x256 int16 (about 132 KB).
Study i has its own patient (`BENCH-000001`...), a StudyDate spread over 2010-2024 and UIDs
`2.25.<uuid5 int>` derived from its index, so the same index always gives the same bytes and a
smaller `--studies N` reuses the first N files of a larger cache.

The instances are those of provision.demo.studies (`ct_image`: real geometry, windows, rescale);
what is the benchmark's own is speed: pydicom encodes only the small header of each file (the
template dataset is built once and only UIDs, names, dates and numbers change); the pixel data
element is appended as raw bytes cut from one precomputed numpy array. 2,000 studies take a few
seconds.

    python bench/_data.py [--studies N] [--out DIR]     # generate (or top up) the cache
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import struct
import sys
import uuid
from pathlib import Path

import numpy as np

from provision.demo import studies as demo_studies

VERSION = 2                      # bump when the bytes of a file would change
ROWS = COLS = 256
SPACING, THICKNESS = 0.9, 2.5    # mm
SERIES_SLICES = 64
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/provision/bench/v1")
DEFAULT_DIR = Path(__file__).resolve().parent.parent / "out" / "bench-data"
FIRST_DAY = dt.date(2010, 1, 1)
DAYS = (dt.date(2024, 12, 31) - FIRST_DAY).days + 1


def uid(*parts: object) -> str:
    """`2.25.<decimal of a UUIDv5>`: a valid, deterministic DICOM UID (at most 44 characters)."""
    return demo_studies.uid(*parts, namespace=NAMESPACE)


def patient_id(i: int) -> str:
    return f"BENCH-{i + 1:06d}"


def study_uid(i: int) -> str:
    return uid("study", i)


def study_date(i: int) -> str:
    """Spread over 2010-01-01..2024-12-31 (a multiplier coprime with the span scatters them)."""
    return (FIRST_DAY + dt.timedelta(days=(i * 2741) % DAYS)).strftime("%Y%m%d")


SERIES_STUDY_UID = uid("series-study")
SERIES_UID = uid("series-study", "series")
SERIES_PATIENT_ID = "BENCH-SERIES"


def _phantom() -> np.ndarray:
    """A 256x256 head-like phantom in HU (air outside, water disc, a bone ring)."""
    y, x = np.mgrid[0:ROWS, 0:COLS].astype(np.float32)
    r = np.hypot(x - COLS / 2, y - ROWS / 2)
    img = np.full((ROWS, COLS), -1000, np.float32)
    img[r < 110] = 40
    img[(r >= 100) & (r < 110)] = 900
    img += 30 * np.sin(x / 9.0) * np.cos(y / 13.0)
    return img


def _study(uid_: str, patient_name: str, patient_id: str, date: str, accession: str,
           description: str) -> demo_studies.Study:
    return demo_studies.Study(uid=uid_, patient_name=patient_name, patient_id=patient_id, date=date, id=accession[-8:],
                           accession=accession, description=description, referring="REFERRER^BENCH")


SERIES_STUDY = _study(SERIES_STUDY_UID, "BENCH^SERIES", SERIES_PATIENT_ID, "20200615", "ACCSERIES0001",
                      "Bench CT 64 slices")
SERIES = demo_studies.Series(uid=SERIES_UID, description="Axial 64 x 2.5mm", body_part="HEAD",
                          frame_of_reference=uid("series-study", "frame"))


class _Writer:
    """One CT template (demo_studies.ct_image) whose header is re-encoded per file, pixels appended raw."""

    def __init__(self) -> None:
        self.ds = demo_studies.ct_image(SERIES_STUDY, SERIES, sop_uid=uid("series-study", "instance", 0), number=1,
                                     z=0.0, hu=_phantom(), spacing=SPACING, thickness=THICKNESS)
        self.base = np.frombuffer(self.ds.PixelData, "<i2").reshape(ROWS, COLS)
        del self.ds.PixelData
        # (7FE0,0010) OW, explicit VR LE: tag, "OW", 2 reserved bytes, 4-byte length.
        self.pixel_header = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, self.base.nbytes)

    def encode(self, study: demo_studies.Study, series: demo_studies.Series, *, sop: str, number: int, z: float,
               shift: int) -> bytes:
        ds = self.ds
        demo_studies.set_study(ds, study)
        demo_studies.set_series(ds, series)
        ds.SOPInstanceUID = sop
        ds.InstanceNumber = number
        demo_studies.set_plane(ds, z=z, spacing=SPACING, thickness=THICKNESS, size=ROWS)
        pixels = np.roll(self.base, shift, axis=1) if shift else self.base
        return demo_studies.part10_bytes(demo_studies.set_file_meta(ds)) + self.pixel_header + pixels.tobytes()


def study_path(root: Path, i: int) -> Path:
    return root / "studies" / f"{i // 1000:03d}" / f"study-{i:06d}.dcm"


def series_path(root: Path, k: int) -> Path:
    return root / "series" / f"slice-{k:03d}.dcm"


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def ensure(n_studies: int, root: Path = DEFAULT_DIR, log=None) -> dict:
    """Make sure the first `n_studies` studies and the 64-slice series exist under `root`.

    Returns the manifest for this selection: file lists, UIDs and one PatientID to query.
    """
    root = Path(root)
    manifest_path = root / "manifest.json"
    have = 0
    if manifest_path.exists():
        m = json.loads(manifest_path.read_text())
        if m.get("version") == VERSION:
            have = m.get("studies", 0)
    todo = [i for i in range(n_studies) if i >= have or not study_path(root, i).exists()]
    if todo or not all(series_path(root, k).exists() for k in range(SERIES_SLICES)):
        w = _Writer()
        for i in todo:
            series = demo_studies.Series(uid=uid("study", i, "series"), description="Axial 2.5mm", body_part="HEAD",
                                      frame_of_reference=uid("study", i, "frame"))
            study = _study(study_uid(i), f"BENCH^PATIENT{i + 1:06d}", patient_id(i), study_date(i), f"ACC{i + 1:09d}",
                           f"Bench CT head {i + 1}")
            _write(study_path(root, i), w.encode(study, series, sop=uid("study", i, "instance"), number=1, z=0.0,
                                                 shift=i % 97))
        slices = [k for k in range(SERIES_SLICES) if have == 0 or not series_path(root, k).exists()]
        for k in slices:
            _write(series_path(root, k), w.encode(SERIES_STUDY, SERIES, sop=uid("series-study", "instance", k),
                                                  number=k + 1, z=-80.0 + THICKNESS * k, shift=k))
        if log:
            log(f"generated {len(todo)} studies and {len(slices)} series slices in {root}")
        tmp = manifest_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"version": VERSION, "studies": max(have, n_studies)}))
        os.replace(tmp, manifest_path)
    study_files = [study_path(root, i) for i in range(n_studies)]
    series_files = [series_path(root, k) for k in range(SERIES_SLICES)]
    probe = n_studies // 2
    return {
        "root": str(root),
        "study_files": [str(p) for p in study_files],
        "series_files": [str(p) for p in series_files],
        "files": [str(p) for p in study_files + series_files],
        "bytes": sum(p.stat().st_size for p in study_files + series_files),
        "probe_patient_id": patient_id(probe),
        "probe_study_uid": study_uid(probe),
        "series_study_uid": SERIES_STUDY_UID,
        "series_uid": SERIES_UID,
        "series_first_sop_uid": uid("series-study", "instance", 0),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=DEFAULT_DIR)
    args = ap.parse_args(argv)
    import time

    t = time.perf_counter()
    m = ensure(args.studies, args.out, log=lambda s: print(s, file=sys.stderr))
    print(f"{len(m['files'])} files, {m['bytes'] / 1e6:.1f} MB in {args.out} ({time.perf_counter() - t:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
