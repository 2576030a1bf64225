"""Large benchmark data: a store of N small synthetic instances, generated once and cached.

The 64 slices of one CT series come first (the series the metadata row reads), then single-instance
CT studies, one patient each, so a store of N instances holds N - 63 studies; a smaller N is the
first N files of a larger cache. Each instance is a 16x16 int16 slice with the full header of
provision.demo.studies's CT (about 2 KB a file): a store of many instances, not of many bytes.

Files live under ~/.cache/provision/bench-large/data-v<VERSION>/ ($XDG_CACHE_HOME honoured), where
the benchmark also keeps each server's ingested store (bench/emulator.py --large).

    python bench/_large.py [--instances N]      # generate (or top up) the cache
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _data  # noqa: E402  (the same template, smaller pixels)

from provision.demo import studies as demo_studies  # noqa: E402

VERSION = 1
SIZE = 16
SERIES_SLICES = 64
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/provision/bench/large/v1")
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "provision" / "bench-large"
DEFAULT_DIR = CACHE / f"data-v{VERSION}"


def uid(*parts: object) -> str:
    return demo_studies.uid(*parts, namespace=NAMESPACE)


def patient_id(i: int) -> str:
    return f"LARGE-{i + 1:07d}"


SERIES_STUDY = _data._study(uid("series-study"), "LARGE^SERIES", "LARGE-SERIES", "20200615", "ACCLARGE0001",
                            "Large bench CT 64 slices")
SERIES = demo_studies.Series(uid=uid("series-study", "series"), description="Axial 64 x 2.5mm", body_part="HEAD",
                          frame_of_reference=uid("series-study", "frame"))


class _SmallWriter(_data._Writer):
    """_data's writer (one header template re-encoded per file), with 16x16 pixels."""

    def __init__(self) -> None:  # noqa: D107 - the parent's, at SIZE
        import struct

        y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
        hu = np.where(np.hypot(x - SIZE / 2, y - SIZE / 2) < SIZE / 3, 40, -1000).astype(np.float32)
        self.ds = demo_studies.ct_image(SERIES_STUDY, SERIES, sop_uid=uid("series-study", "instance", 0), number=1,
                                     z=0.0, hu=hu, spacing=_data.SPACING, thickness=_data.THICKNESS)
        self.base = np.frombuffer(self.ds.PixelData, "<i2").reshape(SIZE, SIZE)
        del self.ds.PixelData
        self.pixel_header = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, self.base.nbytes)

    def encode(self, study, series, *, sop: str, number: int, z: float, shift: int) -> bytes:
        ds = self.ds
        demo_studies.set_study(ds, study)
        demo_studies.set_series(ds, series)
        ds.SOPInstanceUID = sop
        ds.InstanceNumber = number
        demo_studies.set_plane(ds, z=z, spacing=_data.SPACING, thickness=_data.THICKNESS, size=SIZE)
        pixels = np.roll(self.base, shift, axis=1) if shift else self.base
        return demo_studies.part10_bytes(demo_studies.set_file_meta(ds)) + self.pixel_header + pixels.tobytes()


def study_path(root: Path, i: int) -> Path:
    return root / "studies" / f"{i // 1000:04d}" / f"study-{i:07d}.dcm"


def series_path(root: Path, k: int) -> Path:
    return root / "series" / f"slice-{k:03d}.dcm"


def ensure(n_instances: int, root: Path = DEFAULT_DIR, log=None) -> dict:
    """Make sure the first `n_instances` files exist under `root`; the manifest of that selection
    (the keys of bench/_data.py's, so the same Prober reads it)."""
    if n_instances <= SERIES_SLICES:
        raise ValueError(f"a large store needs more than {SERIES_SLICES} instances")
    root = Path(root)
    n_studies = n_instances - SERIES_SLICES
    manifest_path = root / "manifest.json"
    have = json.loads(manifest_path.read_text()).get("studies", 0) if manifest_path.exists() else 0
    todo = [i for i in range(n_studies) if i >= have or not study_path(root, i).exists()]
    slices = [k for k in range(SERIES_SLICES) if not series_path(root, k).exists()]
    if todo or slices:
        w = _SmallWriter()
        for k in slices:
            _data._write(series_path(root, k), w.encode(SERIES_STUDY, SERIES, sop=uid("series-study", "instance", k),
                                                        number=k + 1, z=-80.0 + _data.THICKNESS * k, shift=k % SIZE))
        for n, i in enumerate(todo):
            series = demo_studies.Series(uid=uid("study", i, "series"), description="Axial 2.5mm", body_part="HEAD",
                                      frame_of_reference=uid("study", i, "frame"))
            study = _data._study(uid("study", i), f"LARGE^PATIENT{i + 1:07d}", patient_id(i), _data.study_date(i),
                                 f"ACL{i + 1:09d}", f"Large bench CT head {i + 1}")
            _data._write(study_path(root, i), w.encode(study, series, sop=uid("study", i, "instance"), number=1,
                                                       z=0.0, shift=i % SIZE))
            if log and n and n % 10000 == 0:
                log(f"generated {n:,} of {len(todo):,} small instances in {root}")
        if log:
            log(f"generated {len(todo):,} studies and {len(slices)} series slices in {root}")
        tmp = manifest_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"version": VERSION, "studies": max(have, n_studies)}))
        os.replace(tmp, manifest_path)
    studies = [str(study_path(root, i)) for i in range(n_studies)]
    series = [str(series_path(root, k)) for k in range(SERIES_SLICES)]
    probe = n_studies // 2
    return {
        "root": str(root),
        "study_files": studies,
        "series_files": series,
        "files": series + studies,
        "bytes": None,
        "probe_patient_id": patient_id(probe),
        "probe_study_uid": uid("study", probe),
        "series_study_uid": SERIES_STUDY.uid,
        "series_uid": SERIES.uid,
        "series_first_sop_uid": uid("series-study", "instance", 0),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--instances", type=int, default=100_000)
    ap.add_argument("--out", type=Path, default=DEFAULT_DIR)
    args = ap.parse_args(argv)
    import time

    t = time.perf_counter()
    m = ensure(args.instances, args.out, log=lambda s: print(s, file=sys.stderr))
    print(f"{len(m['files']):,} files in {args.out} ({time.perf_counter() - t:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
