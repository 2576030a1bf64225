"""google-cloud-storage, unmodified, against the emulator the way its documentation says to point
it at an emulator: the `STORAGE_EMULATOR_HOST` environment variable (the client then uses
anonymous credentials), or `client_options={"api_endpoint": ...}`. Covers what the library's
own helpers call beyond plain uploads: `Bucket.copy_blob` (objects.copy), `Blob.rewrite`
(objects.rewrite), `Blob.compose` (objects.compose), and `transfer_manager`.

Not covered: `transfer_manager.upload_chunks_concurrently`, which speaks Cloud Storage's XML API
(multipart uploads under `/{bucket}/{object}?uploads`); the emulator serves the JSON API only.
"""
from __future__ import annotations

import base64
import hashlib
import os

import google_crc32c
import pytest
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.cloud.storage import transfer_manager

from emulator_helpers import create_project
from provision.emulator import discovery

PROJECT = "gcs-clients-1"


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def crc(data: bytes) -> str:
    return b64(google_crc32c.Checksum(data).digest())


@pytest.fixture
def client(emulator, monkeypatch) -> storage.Client:
    create_project(emulator.url, PROJECT, enable=())
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.url)
    made = storage.Client(project=PROJECT)
    assert isinstance(made._credentials, AnonymousCredentials)   # what the emulator variable implies
    return made


@pytest.fixture
def bucket(client) -> storage.Bucket:
    return client.create_bucket("gcs-clients-bucket")


def test_copy_blob_within_and_across_buckets(client, bucket):
    src = bucket.blob("in/scan 1.dcm")
    src.metadata = {"study": "1.2.3"}
    src.upload_from_string(b"DICM" * 64, content_type="application/dicom")
    same = bucket.copy_blob(src, bucket, "copies/scan 1.dcm")
    assert (same.name, same.content_type, same.metadata, same.size) == \
        ("copies/scan 1.dcm", "application/dicom", {"study": "1.2.3"}, 256)
    assert same.md5_hash == src.md5_hash and same.crc32c == src.crc32c and same.generation != src.generation
    other = client.create_bucket("gcs-clients-other")
    there = bucket.copy_blob(src, other, "elsewhere.dcm")
    assert other.blob("elsewhere.dcm").download_as_bytes() == b"DICM" * 64 and there.bucket.name == other.name
    with pytest.raises(gexc.PreconditionFailed):                     # destination must not exist
        bucket.copy_blob(src, bucket, "copies/scan 1.dcm", if_generation_match=0)
    with pytest.raises(gexc.PreconditionFailed):                     # the source is not that generation
        bucket.copy_blob(src, bucket, "x.dcm", if_source_generation_match=src.generation + 1)
    with pytest.raises(gexc.NotFound):
        bucket.copy_blob(bucket.blob("missing"), bucket, "y.dcm")


def test_rewrite_and_compose(client, bucket):
    parts = [os.urandom(3000), b"middle", os.urandom(10)]
    blobs = []
    for i, data in enumerate(parts):
        blob = bucket.blob(f"parts/{i}")
        blob.upload_from_string(data, content_type="application/octet-stream")
        blobs.append(blob)
    target = bucket.blob("rewritten/0")
    token, done_bytes, total = target.rewrite(blobs[0])
    assert token is None and done_bytes == total == 3000
    assert target.download_as_bytes() == parts[0] and target.md5_hash == blobs[0].md5_hash

    whole = bucket.blob("composed.bin")
    whole.content_type = "application/x-test"
    whole.compose(blobs)
    whole.reload()
    joined = b"".join(parts)
    assert whole.download_as_bytes() == joined and whole.size == len(joined)
    # a composite object: a CRC32C of the whole, no MD5, its component count
    assert whole.crc32c == crc(joined) and whole.md5_hash is None and whole.component_count == 3
    assert whole.content_type == "application/x-test"
    again = bucket.blob("composed-twice.bin")
    again.compose([whole, blobs[1]])
    again.reload()
    assert again.component_count == 4 and again.download_as_bytes() == joined + b"middle"
    with pytest.raises(gexc.PreconditionFailed):
        bucket.blob("c3").compose(blobs, if_source_generation_match=[b.generation + 1 for b in blobs])
    with pytest.raises(gexc.BadRequest):
        bucket.blob("c33").compose([blobs[1]] * 33)


def test_wire_shapes_meet_the_discovery_schemas(emulator, bucket):
    import requests

    bucket.blob("a").upload_from_string(b"aaa")
    base = f"{emulator.url}/storage/v1/b/{bucket.name}/o"
    rewrite = requests.post(f"{base}/a/rewriteTo/b/{bucket.name}/o/b%2Fc", json={}).json()
    assert rewrite["done"] is True and rewrite["kind"] == "storage#rewriteResponse"
    assert discovery.problems("storage.v1", "RewriteResponse", rewrite, strict=True) == []
    copy = requests.post(f"{base}/a/copyTo/b/{bucket.name}/o/d", json={"contentType": "text/plain"}).json()
    assert copy["contentType"] == "text/plain" and copy["name"] == "d"
    composed = requests.post(f"{base}/e/compose", json={"sourceObjects": [{"name": "a"}, {"name": "d"}],
                                                        "destination": {"md5Hash": b64(b"0" * 16)}}).json()
    assert "md5Hash" not in composed and composed["componentCount"] == 2 and composed["size"] == "6"
    for obj in (copy, composed, rewrite["resource"]):
        assert discovery.problems("storage.v1", "Object", obj, strict=True) == []
    unknown = requests.post(f"{base}/a/copyTo/b/{bucket.name}/o/z", json={"colour": "red"})
    assert unknown.status_code == 400 and unknown.json()["error"]["errors"][0]["reason"]


def test_transfer_manager_uploads_and_downloads_many(client, bucket, tmp_path):
    files = {f"series/{i}.dcm": os.urandom(2048 + i) for i in range(6)}
    src = tmp_path / "src"
    for name, data in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    results = transfer_manager.upload_many_from_filenames(
        bucket, list(files), source_directory=str(src), worker_type=transfer_manager.THREAD, max_workers=4,
        skip_if_exists=True)
    assert results == [None] * len(files)
    again = transfer_manager.upload_many_from_filenames(     # ifGenerationMatch=0 on each: all refused
        bucket, list(files), source_directory=str(src), worker_type=transfer_manager.THREAD, skip_if_exists=True)
    assert all(isinstance(r, gexc.PreconditionFailed) for r in again)

    dest = tmp_path / "dest"
    got = transfer_manager.download_many_to_path(bucket, list(files), destination_directory=str(dest),
                                                 worker_type=transfer_manager.THREAD, max_workers=4)
    assert got == [None] * len(files)
    assert {n: (dest / n).read_bytes() for n in files} == files

    big = os.urandom(3 * 1024 * 1024 + 5)
    blob = bucket.blob("volume.bin")
    blob.upload_from_string(big)
    out = tmp_path / "volume.bin"
    transfer_manager.download_chunks_concurrently(bucket.blob("volume.bin"), str(out), chunk_size=1024 * 1024,
                                                  worker_type=transfer_manager.THREAD, crc32c_checksum=True)
    assert out.read_bytes() == big and hashlib.md5(big).digest() == base64.b64decode(blob.md5_hash)
