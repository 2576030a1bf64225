"""Blobs nothing refers to any more are garbage-collected: the disk use of `--data-dir` comes back
after objects and DICOM instances are deleted, overwritten, or the world is reset; bytes an object
and an instance share stay until both are gone; a blob being written is never swept."""
from __future__ import annotations

import os
import time
from pathlib import Path

import requests

from dicom_factory import ct_series, to_bytes
from emulator_helpers import CONTROL, ready_store


def disk_use(data_dir: Path) -> int:
    """Bytes of blob files under a --data-dir, walked on disk (not asked of the emulator)."""
    total = 0
    for root, _dirs, files in os.walk(data_dir / "blobs"):
        if Path(root).name == "_uploads":
            continue
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def settles_to(data_dir: Path, want: int, timeout: float = 20.0) -> int:
    """Wait (bounded) for the background sweeper to bring the disk use to `want`; returns the last
    figure. No timing is asserted: only that it gets there."""
    deadline = time.monotonic() + timeout
    while True:
        now = disk_use(data_dir)
        if now == want or time.monotonic() > deadline:
            return now
        time.sleep(0.05)


def test_deleted_objects_give_their_disk_back(emulator_factory, tmp_path):
    data_dir = tmp_path / "state"
    emu = emulator_factory(data_dir=data_dir)
    env = ready_store(emu, project="gc-objects")
    bucket = env.bucket("gc-objects-bucket", grant_agent=False)
    base = disk_use(data_dir)
    payloads = {f"o{i}.bin": os.urandom(300_000) for i in range(5)}
    env.upload(bucket, payloads)
    assert disk_use(data_dir) >= base + 5 * 300_000
    # An overwrite orphans the old bytes; a copy shares them (nothing new on disk).
    bucket.blob("o0.bin").upload_from_string(os.urandom(300_000))
    bucket.copy_blob(bucket.blob("o1.bin"), bucket, "o1-copy.bin")
    assert settles_to(data_dir, base + 5 * 300_000) == base + 5 * 300_000
    for name in payloads:
        bucket.blob(name).delete()
    assert settles_to(data_dir, base + 300_000) == base + 300_000      # the copy still holds o1's bytes
    bucket.blob("o1-copy.bin").delete()
    assert settles_to(data_dir, base) == base
    usage = requests.get(f"{emu.url}/_emulator/blobs", headers=CONTROL, timeout=10).json()
    assert usage["bytes"] == base and usage["gcRuns"] >= 1


def test_instances_keep_shared_bytes_until_they_are_deleted_too(emulator_factory, tmp_path):
    data_dir = tmp_path / "state"
    emu = emulator_factory(data_dir=data_dir)
    env = ready_store(emu, project="gc-dicom")
    bucket = env.bucket("gc-dicom-bucket")
    base = disk_use(data_dir)
    series = ct_series("gc1", slices=4, size=128, patient_id="GC-1")
    env.upload(bucket, {f"dicom/{i}.dcm": to_bytes(ds) for i, ds in enumerate(series)})
    assert env.import_("gs://gc-dicom-bucket/dicom/**.dcm")["metadata"]["counter"]["success"] == "4"
    used = disk_use(data_dir)
    assert used > base
    for i in range(4):                    # the import shares the objects' bytes: they stay
        bucket.blob(f"dicom/{i}.dcm").delete()
    requests.post(f"{emu.url}/_emulator/gc", headers=CONTROL, timeout=30).raise_for_status()
    assert disk_use(data_dir) == used
    study = series[0].StudyInstanceUID
    assert requests.delete(f"{env.dicomweb_url}/studies/{study}", timeout=30).status_code == 200
    # A study delete is an operation; once it is done the bytes have no owner left.
    assert settles_to(data_dir, base) == base
    # STOW-RS too: a stored instance, deleted, gives its bytes back.
    r = requests.post(f"{env.dicomweb_url}/studies", data=to_bytes(series[0]), timeout=30,
                      headers={"Content-Type": "application/dicom"})
    assert r.status_code == 200 and disk_use(data_dir) > base
    requests.delete(f"{env.dicomweb_url}/studies/{study}/series/{series[0].SeriesInstanceUID}/instances/"
                    f"{series[0].SOPInstanceUID}", timeout=30).raise_for_status()
    assert settles_to(data_dir, base) == base


def test_reset_empties_the_blob_store(emulator_factory, tmp_path):
    data_dir = tmp_path / "state"
    emu = emulator_factory(data_dir=data_dir, public_datasets=False)   # the stand-ins come back after a reset
    env = ready_store(emu, project="gc-reset")
    env.upload(env.bucket("gc-reset-bucket", grant_agent=False), {"a.bin": os.urandom(100_000)})
    assert disk_use(data_dir) >= 100_000
    requests.post(f"{emu.url}/_emulator/reset", headers=CONTROL, timeout=10).raise_for_status()
    assert settles_to(data_dir, 0) == 0


def test_a_pinned_blob_is_never_swept(tmp_path):
    from provision.emulator.store import BlobStore

    blobs = BlobStore(tmp_path / "blobs")
    key = blobs.put(b"being written, not committed yet")
    nothing = lambda keys: set()  # noqa: E731 - no row refers to anything
    assert blobs.sweep(nothing, _NoLock()) == {"files": 0, "bytes": 0}
    assert blobs.path(key).exists()
    assert blobs.release_pins() == 1
    assert blobs.sweep(nothing, _NoLock())["files"] == 1 and not blobs.path(key).exists()
    # Referenced bytes stay, pinned or not; files that are not blobs (spools) are never touched.
    kept = blobs.put(b"referenced")
    blobs.release_pins()
    (blobs.root / "_uploads").mkdir()
    (blobs.root / "_uploads" / "spool").write_bytes(b"x")
    (blobs.root / "tmpspool").write_bytes(b"y")
    assert blobs.sweep(lambda keys: {kept}, _NoLock())["files"] == 0
    assert blobs.path(kept).exists() and (blobs.root / "_uploads" / "spool").exists()


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
