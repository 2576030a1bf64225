"""How long `provision demo` spends writing its synthetic studies (88 Part-10 files), against
writing the same bytes with no DICOM work at all, in one run:

    .venv/bin/python bench/demo_data.py            # 5 runs each, medians
    .venv/bin/python bench/demo_data.py --runs 9

Target (was a timed test, which a loaded machine made flaky): the studies in under 2 s on the
reference machine, i.e. the DICOM encoding costs no more than about 20x plain file writing.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from provision.demo.studies import write_demo_studies  # noqa: E402

TARGET_RATIO = 20.0


def _timed(fn) -> float:  # noqa: ANN001
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    demo, plain = [], []
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for i in range(args.runs):   # interleaved, so load changes hit both sides alike
            out = Path(tmp) / f"demo-{i}"
            demo.append(_timed(lambda out=out: write_demo_studies(out)))
            if not files:
                files = {p.relative_to(out): p.read_bytes() for p in out.rglob("*.dcm")}
            copy = Path(tmp) / f"plain-{i}"

            def write_plain(copy: Path = copy, files: dict = files) -> None:
                for rel, data in files.items():
                    (copy / rel).parent.mkdir(parents=True, exist_ok=True)
                    (copy / rel).write_bytes(data)
            plain.append(_timed(write_plain))
    d, p = statistics.median(demo), statistics.median(plain)
    ratio = d / p
    print(f"demo studies: {len(files)} files, {sum(map(len, files.values())) / 1e6:.1f} MB")
    print(f"  write_demo_studies  {d:7.3f} s (median of {args.runs})")
    print(f"  the same bytes      {p:7.3f} s")
    print(f"  ratio               {ratio:7.1f}x  target <= {TARGET_RATIO:.0f}x  {'ok' if ratio <= TARGET_RATIO else 'MISS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
