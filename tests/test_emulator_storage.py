"""Cloud Storage in the emulator, driven over real HTTP by the real, unchanged
`google.cloud.storage.Client` (and, for wire details the client hides, plain `requests`)."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import time
from pathlib import Path
from urllib.parse import quote

import google_crc32c
import pytest
import requests
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import resourcemanager_v3, storage
from google.oauth2.credentials import Credentials

from emulator_helpers import CONTROL, wait_for
from provision.emulator import discovery

PROJECT = "storage-demo-1"


# ------------------------------------------------------------------------------------ helpers

def creds(member: str | None):
    return Credentials(token=f"emulator:{member}") if member else AnonymousCredentials()


def make_project(emu, project_id: str, member: str | None = None) -> str:
    """Create a project through the real Resource Manager v3 REST client; its number."""
    client = resourcemanager_v3.ProjectsClient(credentials=creds(member), transport="rest",
                                               client_options=ClientOptions(api_endpoint=emu.url))
    client.create_project(project=resourcemanager_v3.Project(project_id=project_id, display_name="Storage test"))
    # gettable from the start; no need to poll the operation
    return client.get_project(name=f"projects/{project_id}").name.split("/")[1]


def gcs(emu, project: str = PROJECT, member: str | None = None) -> storage.Client:
    return storage.Client(project=project, credentials=creds(member), client_options={"api_endpoint": emu.url})


def no_problems(schema: str, body: dict) -> None:
    assert discovery.problems("storage.v1", schema, body) == [], body


def raw_bucket(emu, name: str) -> dict:
    return requests.get(f"{emu.url}/storage/v1/b/{name}").json()


@pytest.fixture
def client(emulator) -> storage.Client:
    make_project(emulator, PROJECT)
    return gcs(emulator)


@pytest.fixture
def bucket(client) -> storage.Bucket:
    return client.create_bucket("demo-bucket-1")


# ------------------------------------------------------------------------------------ buckets

def test_bucket_create_get_list_delete(emulator, client):
    created = client.create_bucket("scans-eu", location="europe-west4")
    assert created.location == "EUROPE-WEST4" and created.location_type == "region"
    assert created.storage_class == "STANDARD" and created.metageneration == 1
    assert str(created.project_number) == emulator.world.storage.project(PROJECT)["projectNumber"]

    body = raw_bucket(emulator, "scans-eu")
    no_problems("Bucket", body)
    assert body["kind"] == "storage#bucket" and body["id"] == "scans-eu" and body["name"] == "scans-eu"
    assert body["iamConfiguration"]["uniformBucketLevelAccess"] == {"enabled": False}
    assert base64.b64decode(body["etag"])  # canonical base64

    multi = client.create_bucket("scans-us")
    assert multi.location == "US" and multi.location_type == "multi-region"
    ubla = client.bucket("scans-ubla")
    ubla.iam_configuration.uniform_bucket_level_access_enabled = True
    client.create_bucket(ubla)
    assert client.get_bucket("scans-ubla").iam_configuration.uniform_bucket_level_access_enabled
    full = requests.get(f"{emulator.url}/storage/v1/b/scans-eu?projection=full").json()
    no_problems("Bucket", full)
    assert {a["entity"].split("-")[1] for a in full["acl"]} == {"owners", "editors", "viewers"}

    with pytest.raises(gexc.Conflict, match="you already own it"):
        client.create_bucket("scans-eu")
    make_project(emulator, "someone-else-1")
    with pytest.raises(gexc.Conflict, match="The requested bucket name is not available"):
        gcs(emulator, "someone-else-1").create_bucket("scans-eu")
    for bad in ("UPPER", "ab", "goog-x", "a..b", "-dash", "192.168.1.1", "x" * 64):
        r = requests.post(f"{emulator.url}/storage/v1/b", params={"project": PROJECT}, json={"name": bad})
        assert r.status_code == 400 and r.json()["error"]["message"] == f"Invalid bucket name: '{bad}'"
    with pytest.raises(gexc.BadRequest, match="location constraint"):
        client.create_bucket("nowhere-bucket", location="moon")

    pages = list(client.list_buckets(page_size=2).pages)
    assert [[b.name for b in p] for p in pages] == [["scans-eu", "scans-ubla"], ["scans-us"]]
    listing = requests.get(f"{emulator.url}/storage/v1/b", params={"project": PROJECT}).json()
    no_problems("Buckets", listing)
    assert [b["name"] for b in gcs(emulator, "someone-else-1").list_buckets()] == []

    with pytest.raises(gexc.NotFound, match="The specified bucket does not exist."):
        client.get_bucket("never-made")
    client.bucket("scans-eu").blob("x").upload_from_string(b"x")
    with pytest.raises(gexc.Conflict, match="The bucket you tried to delete is not empty."):
        client.bucket("scans-eu").delete()
    client.bucket("scans-eu").blob("x").delete()
    r = requests.delete(f"{emulator.url}/storage/v1/b/scans-eu")
    assert r.status_code == 204 and r.content == b""
    with pytest.raises(gexc.NotFound):
        client.get_bucket("scans-eu")


def test_bucket_errors_use_the_storage_envelope(emulator, client):
    r = requests.get(f"{emulator.url}/storage/v1/b/missing-bucket")
    assert r.status_code == 404
    assert r.json() == {"error": {"code": 404, "message": "The specified bucket does not exist.", "errors": [
        {"message": "The specified bucket does not exist.", "domain": "global", "reason": "notFound"}]}}
    r = requests.post(f"{emulator.url}/storage/v1/b", json={"name": "no-project-given"})
    assert r.status_code == 400 and r.json()["error"]["errors"][0]["reason"] == "required"
    r = requests.post(f"{emulator.url}/storage/v1/b?project={PROJECT}", json={"name": "x-bucket", "bogus": 1})
    assert r.status_code == 400 and "bogus" in r.json()["error"]["message"]
    if hasattr(emulator.world, "crm"):
        r = requests.post(f"{emulator.url}/storage/v1/b?project=no-such-project", json={"name": "x-bucket"})
        assert r.status_code == 400 and "Unknown project id" in r.json()["error"]["message"]


def test_bucket_patch_labels(emulator, bucket):
    bucket.labels = {"env": "test", "team": "imaging"}
    bucket.patch()
    assert bucket.labels == {"env": "test", "team": "imaging"} and bucket.metageneration == 2
    bucket.labels = {"env": "prod"}  # the client sends team: null
    bucket.patch()
    assert bucket.labels == {"env": "prod"}
    no_problems("Bucket", raw_bucket(emulator, bucket.name))


# ------------------------------------------------------------------------------------ bucket IAM

def test_bucket_iam_read_modify_write(emulator, client, bucket):
    policy = bucket.get_iam_policy(requested_policy_version=3)
    assert {b["role"]: b["members"] for b in policy.bindings} == {
        "roles/storage.legacyBucketOwner": {f"projectOwner:{PROJECT}", f"projectEditor:{PROJECT}"},
        "roles/storage.legacyBucketReader": {f"projectViewer:{PROJECT}"}}
    stale = bucket.get_iam_policy(requested_policy_version=3)
    policy.bindings.append({"role": "roles/storage.objectViewer", "members": {"user:ana@example.com"}})
    updated = bucket.set_iam_policy(policy)
    assert updated.etag != policy.etag
    assert {"user:ana@example.com"} in [b["members"] for b in updated.bindings]

    stale.bindings.append({"role": "roles/storage.objectAdmin", "members": {"user:eve@example.com"}})
    with pytest.raises(gexc.PreconditionFailed) as info:
        bucket.set_iam_policy(stale)
    assert info.value.code == 412
    assert info.value.response.json()["error"]["errors"][0]["reason"] == "conditionNotMet"

    raw = requests.get(f"{emulator.url}/storage/v1/b/{bucket.name}/iam?optionsRequestedPolicyVersion=3").json()
    no_problems("Policy", raw)
    assert raw["kind"] == "storage#policy" and raw["resourceId"] == f"projects/_/buckets/{bucket.name}"
    assert raw["etag"] == updated.etag

    with pytest.raises(gexc.BadRequest, match="roles/viewer is not supported"):
        again = bucket.get_iam_policy()
        again.bindings.append({"role": "roles/viewer", "members": {"user:x@example.com"}})
        bucket.set_iam_policy(again)
    held = bucket.test_iam_permissions(["storage.objects.get", "storage.buckets.delete"])
    assert sorted(held) == ["storage.buckets.delete", "storage.objects.get"]


def test_granting_a_service_agent_that_does_not_exist_yet(emulator, client, bucket):
    number = str(bucket.project_number)
    agent = f"serviceAccount:service-{number}@gcp-sa-healthcare.iam.gserviceaccount.com"
    policy = bucket.get_iam_policy()
    policy.bindings.append({"role": "roles/storage.objectViewer", "members": {agent}})
    with pytest.raises(gexc.BadRequest) as info:
        bucket.set_iam_policy(policy)
    assert info.value.response.json()["error"]["message"] == (
        f"Service account service-{number}@gcp-sa-healthcare.iam.gserviceaccount.com does not exist.")

    emulator.world.serviceusage.ensure_agent(number, "healthcare.googleapis.com")
    st = emulator.world.storage
    assert not st.can_read(agent, bucket.name)
    bucket.set_iam_policy(policy)
    assert st.can_read(agent, bucket.name)
    chain = st.policy_chain(bucket.name)
    assert any(agent in b["members"] for b in chain[0]["bindings"])


def test_can_read_needs_get_and_list(emulator, client, bucket):
    st = emulator.world.storage
    assert not st.can_read("user:carol@example.com", bucket.name)
    policy = bucket.get_iam_policy()
    policy.bindings.append({"role": "roles/storage.legacyBucketReader", "members": {"user:carol@example.com"}})
    bucket.set_iam_policy(policy)
    assert not st.can_read("user:carol@example.com", bucket.name)  # list, but no get
    policy = bucket.get_iam_policy()
    policy.bindings.append({"role": "roles/storage.objectViewer", "members": {"user:carol@example.com"}})
    bucket.set_iam_policy(policy)
    assert st.can_read("user:carol@example.com", bucket.name)
    assert not st.can_read("user:carol@example.com", "no-such-bucket")
    if hasattr(emulator.world, "crm"):
        # projectOwner:P in the bucket policy stands for the project's owners, and only them
        owner = emulator.world.crm.policy(PROJECT)["bindings"][0]["members"][0]
        assert st.holds(owner, "storage.buckets.setIamPolicy", bucket.name)
        assert not st.holds("user:carol@example.com", "storage.buckets.setIamPolicy", bucket.name)


# ------------------------------------------------------------------------------------ uploads

def test_multipart_upload_and_download(emulator, bucket):
    blob = bucket.blob("studies/1/ct 001.dcm")
    blob.upload_from_string(b"DICM" * 1000, content_type="application/dicom")
    assert blob.size == 4000 and blob.content_type == "application/dicom" and blob.generation > 0
    assert blob.crc32c == base64.b64encode(google_crc32c.Checksum(b"DICM" * 1000).digest()).decode()
    assert blob.md5_hash == base64.b64encode(hashlib.md5(b"DICM" * 1000).digest()).decode()
    fresh = bucket.get_blob("studies/1/ct 001.dcm")
    assert fresh.download_as_bytes() == b"DICM" * 1000
    assert fresh.download_as_bytes(start=4, end=11) == b"DICMDICM"

    raw = requests.get(f"{emulator.url}/storage/v1/b/{bucket.name}/o/studies%2F1%2Fct%20001.dcm").json()
    no_problems("Object", raw)
    assert raw["kind"] == "storage#object" and raw["size"] == "4000" and raw["bucket"] == bucket.name
    media = requests.get(f"{emulator.url}/storage/v1/b/{bucket.name}/o/studies%2F1%2Fct%20001.dcm?alt=media")
    assert media.content == b"DICM" * 1000 and media.headers["Content-Type"] == "application/dicom"
    assert f"crc32c={raw['crc32c']}" in media.headers["X-Goog-Hash"]
    assert requests.get(raw["mediaLink"]).content == b"DICM" * 1000
    tail = requests.get(raw["mediaLink"], headers={"Range": "bytes=-4"})
    assert tail.status_code == 206 and tail.content == b"DICM" and tail.headers["Content-Range"] == "bytes 3996-3999/4000"
    assert requests.get(raw["mediaLink"], headers={"Range": "bytes=5000-"}).status_code == 416

    blob.upload_from_string(b"second")  # a new generation
    assert blob.generation > fresh.generation
    assert bucket.blob("studies/1/ct 001.dcm").download_as_bytes() == b"second"
    with pytest.raises(gexc.PreconditionFailed):
        bucket.blob("studies/1/ct 001.dcm").upload_from_string(b"third", if_generation_match=0)
    bucket.blob("new-one").upload_from_string(b"first", if_generation_match=0)

    empty = bucket.blob("empty")
    empty.upload_from_string(b"")
    assert empty.size == 0 and bucket.blob("empty").download_as_bytes() == b""


def test_media_upload_and_checksum_mismatch(emulator, bucket):
    base = f"{emulator.url}/upload/storage/v1/b/{bucket.name}/o"
    r = requests.post(base, params={"uploadType": "media", "name": "raw/a.txt"}, data=b"abc",
                      headers={"Content-Type": "text/plain"})
    assert r.status_code == 200, r.text
    no_problems("Object", r.json())
    assert r.json()["contentType"] == "text/plain" and r.json()["size"] == "3"
    assert bucket.blob("raw/a.txt").download_as_bytes() == b"abc"

    boundary = "b0undary"
    meta = {"name": "raw/bad.txt", "crc32c": base64.b64encode(b"\0\0\0\0").decode()}
    body = (f"--{boundary}\r\ncontent-type: application/json; charset=UTF-8\r\n\r\n{json.dumps(meta)}\r\n"
            f"--{boundary}\r\ncontent-type: text/plain\r\n\r\nhello\r\n--{boundary}--").encode()
    r = requests.post(base, params={"uploadType": "multipart"}, data=body,
                      headers={"Content-Type": f'multipart/related; boundary="{boundary}"'})
    assert r.status_code == 400 and "CRC32C" in r.json()["error"]["message"]
    assert bucket.get_blob("raw/bad.txt") is None
    r = requests.post(base, params={"uploadType": "media", "name": "raw/m.txt"}, data=b"abc",
                      headers={"X-Goog-Hash": "md5=" + base64.b64encode(hashlib.md5(b"abd").digest()).decode()})
    assert r.status_code == 400 and "MD5" in r.json()["error"]["message"]


def test_multipart_upload_framing(emulator, bucket):
    """Cloud Storage takes bare-LF multipart bodies (gcsfs sends them) as well as CRLF ones, and
    refuses a body cut before its closing boundary or holding a third part (nothing is stored)."""
    base = f"{emulator.url}/upload/storage/v1/b/{bucket.name}/o"

    def post(body: bytes):
        return requests.post(base, params={"uploadType": "multipart"}, data=body,
                             headers={"Content-Type": 'multipart/related; boundary="==0=="'})

    media = b"line one\r\n--==0= not a boundary\n" + os.urandom(3 << 20)
    lf = b'--==0==\nContent-Type: application/json\n\n{"name": "lf.bin"}\n--==0==\nContent-Type: x/y\n\n'
    r = post(lf + media + b"\n--==0==--")
    assert r.status_code == 200, r.text
    assert r.json()["contentType"] == "x/y" and bucket.blob("lf.bin").download_as_bytes() == media
    crlf = b'--==0==\r\nContent-Type: application/json\r\n\r\n{"name": "cut.bin"}\r\n--==0==\r\n'
    cut = post(crlf + b"Content-Type: x/y\r\n\r\n" + media)
    assert cut.status_code == 400 and "closing boundary" in cut.json()["error"]["message"]
    third = post(crlf + b"Content-Type: x/y\r\n\r\nabc\r\n--==0==\r\nContent-Type: text/plain\r\n\r\nmore"
                 b"\r\n--==0==--\r\n")
    assert third.status_code == 400 and "Malformed multipart" in third.json()["error"]["message"]
    # A media part with no headers (no Content-Type): refused, not read with its first lines as headers.
    bare = post(crlf + b"\r\nfirst line\r\n\r\nrest\r\n--==0==--\r\n")
    assert bare.status_code == 400 and "Malformed multipart" in bare.json()["error"]["message"]
    assert bucket.get_blob("cut.bin") is None


def test_resumable_upload_of_9_mib(emulator_factory, tmp_path):
    record = tmp_path / "record.jsonl"
    emu = emulator_factory(record=record)
    make_project(emu, PROJECT)
    bucket = gcs(emu).create_bucket("big-bucket")
    data = os.urandom(9 * 1024 * 1024 + 17)
    blob = bucket.blob("big/volume.bin")
    blob.chunk_size = 4 * 1024 * 1024
    blob.upload_from_string(data)  # > 8 MiB: resumable, 3 chunks
    assert blob.size == len(data)
    assert bucket.blob("big/volume.bin").download_as_bytes() == data
    lines = [json.loads(x) for x in record.read_text().splitlines()]
    uploads = [x for x in lines if x["path"].startswith("/upload/")]
    assert uploads[0]["query"]["uploadType"] == ["resumable"] and uploads[0]["method"] == "POST"
    assert [x["status"] for x in uploads[1:]] == [308, 308, 200]

    whole = os.urandom(9 * 1024 * 1024)  # default chunking: one PUT
    bucket.blob("big/one-shot.bin").upload_from_string(whole)
    assert bucket.blob("big/one-shot.bin").download_as_bytes() == whole


def test_resumable_wire_details(emulator, bucket):
    base = f"{emulator.url}/upload/storage/v1/b/{bucket.name}/o"
    r = requests.post(base, params={"uploadType": "resumable"}, json={"name": "r/part.bin"},
                      headers={"X-Upload-Content-Type": "application/dicom"})
    assert r.status_code == 200 and r.content == b""
    session = r.headers["Location"]
    assert session.startswith(f"{emulator.url}/upload/storage/v1/b/{bucket.name}/o?uploadType=resumable")
    r = requests.put(session, headers={"Content-Range": "bytes */*"})
    assert r.status_code == 308 and "Range" not in r.headers
    r = requests.put(session, data=b"a" * 10, headers={"Content-Range": "bytes 0-9/*"})
    assert r.status_code == 308 and r.headers["Range"] == "bytes=0-9"
    r = requests.put(session, data=b"b" * 5, headers={"Content-Range": "bytes 20-24/*"})
    assert r.status_code == 400  # a gap
    r = requests.put(session, data=b"a" * 5 + b"c" * 5, headers={"Content-Range": "bytes 5-14/15"})  # overlaps
    assert r.status_code == 200
    obj = r.json()
    no_problems("Object", obj)
    assert obj["size"] == "15" and obj["contentType"] == "application/dicom"
    assert bucket.blob("r/part.bin").download_as_bytes() == b"a" * 10 + b"c" * 5
    r = requests.put(session, headers={"Content-Range": "bytes */*"})  # finished sessions keep answering
    assert r.status_code == 200 and r.json()["generation"] == obj["generation"]

    r = requests.post(base, params={"uploadType": "resumable", "ifGenerationMatch": "0"}, json={"name": "r/part.bin"})
    assert r.status_code == 412
    r = requests.post(base, params={"uploadType": "resumable"}, json={"name": "r/cancel.bin"})
    assert requests.delete(r.headers["Location"]).status_code == 499
    assert requests.put(r.headers["Location"], headers={"Content-Range": "bytes */*"}).status_code == 404


def test_object_names_and_path_tricks(emulator_factory, tmp_path):
    data_dir = tmp_path / "data"
    emulator = emulator_factory(data_dir=data_dir)
    make_project(emulator, PROJECT)
    bucket = gcs(emulator).create_bucket("names-bucket")
    base = f"{emulator.url}/upload/storage/v1/b/{bucket.name}/o"
    for bad in ("", ".", "..", "a\nb", "a\rb", "x" * 1025, "é" * 513):
        r = requests.post(base, params={"uploadType": "media", "name": bad}, data=b"x")
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["error"]["errors"][0]["reason"] in ("invalid", "required")
    bucket.blob("é" * 512).upload_from_string(b"1024 bytes of name is fine")

    blobs_root = Path(emulator.world.blobs.root)
    before = set(tmp_path.rglob("*"))
    trick = "../../../../evil"
    bucket.blob(trick).upload_from_string(b"not a file")
    bucket.blob("../state.sqlite").upload_from_string(b"not the database either")
    assert [b.name for b in bucket.list_blobs(prefix="../")] == ["../../../../evil", "../state.sqlite"]
    new_files = set(tmp_path.rglob("*")) - before
    assert new_files and all(blobs_root in p.parents for p in new_files), new_files
    assert not (tmp_path / "evil").exists() and not (data_dir.parent.parent / "evil").exists()
    assert emulator.world.storage.get_object(bucket.name, trick)["size"] == len(b"not a file")
    # Read back by an encoded URL, the name is one path segment: '..' inside it is just bytes of the name.
    r = requests.get(f"{emulator.url}/storage/v1/b/{bucket.name}/o/..%2F..%2F..%2F..%2Fevil?alt=media")
    assert r.status_code == 200 and r.content == b"not a file"
    # A raw '..' segment is still refused by the shared front end, before any routing.
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", emulator.port)
    conn.request("GET", f"/storage/v1/b/{bucket.name}/o/../../evil?alt=media")
    resp = conn.getresponse()
    assert resp.status == 400 and json.loads(resp.read())["error"]["errors"][0]["reason"] == "invalid"
    conn.close()
    # Every such object can be deleted by its encoded URL, so the bucket can be deleted too.
    requests.post(base, params={"uploadType": "media", "name": "a/../b"}, data=b"ab")
    assert requests.get(f"{emulator.url}/storage/v1/b/{bucket.name}/o/a%2F..%2Fb?alt=media").content == b"ab"
    for name in ("a/../b", trick, "../state.sqlite", "é" * 512):
        r = requests.delete(f"{emulator.url}/storage/v1/b/{bucket.name}/o/{quote(name, safe='')}")
        assert r.status_code == 204, (name, r.text)
    assert requests.delete(f"{emulator.url}/storage/v1/b/{bucket.name}").status_code == 204


def test_delete_object(emulator, bucket):
    bucket.blob("gone").upload_from_string(b"x")
    r = requests.delete(f"{emulator.url}/storage/v1/b/{bucket.name}/o/gone")
    assert r.status_code == 204
    with pytest.raises(gexc.NotFound):
        bucket.blob("gone").download_as_bytes()
    with pytest.raises(gexc.NotFound):
        bucket.blob("gone").delete()
    r = requests.get(f"{emulator.url}/storage/v1/b/{bucket.name}/o/gone")
    assert r.json()["error"]["message"] == f"No such object: {bucket.name}/gone"


# ------------------------------------------------------------------------------------ listing

def test_list_prefix_delimiter_glob_and_paging(emulator, client, bucket):
    st = emulator.world.storage
    for i in range(1200):
        st.put_object(bucket.name, f"series/{i // 100:02d}/img{i:04d}.dcm", b"x")
    for name in ("readme.txt", "series/index.json", "other/a.dcm", "other/deep/b.dcm", "z.dcm"):
        st.put_object(bucket.name, name, b"y")

    it = client.list_blobs(bucket.name, prefix="series/", page_size=500)
    pages = [[b.name for b in page] for page in it.pages]
    assert [len(p) for p in pages] == [500, 500, 201]
    flat = [n for p in pages for n in p]
    assert flat == sorted(flat) and len(set(flat)) == 1201

    assert len(list(client.list_blobs(bucket.name, max_results=500))) == 500
    top = client.list_blobs(bucket.name, delimiter="/")
    assert [b.name for b in top] == ["readme.txt", "z.dcm"] and top.prefixes == {"other/", "series/"}
    sub = client.list_blobs(bucket.name, prefix="series/", delimiter="/")
    assert [b.name for b in sub] == ["series/index.json"] and len(sub.prefixes) == 12

    pages = list(client.list_blobs(bucket.name, delimiter="/", prefix="series/", page_size=5).pages)
    assert sum(len(list(p)) + len(p.prefixes) for p in pages) == 13

    def glob(pattern):
        return [b.name for b in client.list_blobs(bucket.name, match_glob=pattern)]

    assert glob("*.dcm") == ["z.dcm"]
    assert glob("other/**.dcm") == ["other/a.dcm", "other/deep/b.dcm"]
    assert glob("**/b.dcm") == ["other/deep/b.dcm"]
    assert glob("series/0[01]/img000?.dcm") == [f"series/00/img000{i}.dcm" for i in range(10)]
    assert glob("{readme.txt,z.dcm}") == ["readme.txt", "z.dcm"]
    assert glob("series/1[!01]/img1299.dcm") == []
    assert glob("series/*/img119[!0-8].dcm") == ["series/11/img1199.dcm"]

    raw = requests.get(f"{emulator.url}/storage/v1/b/{bucket.name}/o",
                       params={"startOffset": "series/11/img1198", "endOffset": "series/11/img1199.dcm~"}).json()
    no_problems("Objects", raw)
    assert [o["name"] for o in raw["items"]] == ["series/11/img1198.dcm", "series/11/img1199.dcm"]
    empty = requests.get(f"{emulator.url}/storage/v1/b/{bucket.name}/o", params={"prefix": "nothing/"}).json()
    assert empty == {"kind": "storage#objects"}


def test_iter_objects_import_glob_semantics(emulator, client, bucket):
    st = emulator.world.storage
    names = ["dicom/a.dcm", "dicom/b.dcm", "dicom/x/c.dcm", "dicom/x/y/d.dcm", "dicom/notes.txt",
             "dicom2/e.dcm", "other/f.dcm", "dicom/[1].dcm", "dicom/{a,b}.dcm"]
    for n in names:
        st.put_object(bucket.name, n, n.encode())

    def it(glob=None, prefix=""):
        return [name for name, _, _ in st.iter_objects(bucket.name, glob, prefix)]

    assert it() == sorted(names)
    assert it("dicom/*") == ["dicom/[1].dcm", "dicom/a.dcm", "dicom/b.dcm", "dicom/notes.txt", "dicom/{a,b}.dcm"]
    assert it("dicom/**") == sorted(n for n in names if n.startswith("dicom/"))
    assert it("dicom/**.dcm") == ["dicom/[1].dcm", "dicom/a.dcm", "dicom/b.dcm", "dicom/x/c.dcm",
                                  "dicom/x/y/d.dcm", "dicom/{a,b}.dcm"]
    assert it("dicom/*.dcm") == ["dicom/[1].dcm", "dicom/a.dcm", "dicom/b.dcm", "dicom/{a,b}.dcm"]
    assert it("dicom/?.dcm") == ["dicom/a.dcm", "dicom/b.dcm"]
    assert it("dicom/[1].dcm") == ["dicom/[1].dcm"]       # brackets are literal in import URIs
    assert it("dicom/{a,b}.dcm") == ["dicom/{a,b}.dcm"]   # braces too
    assert it("dicom?/*.dcm") == ["dicom2/e.dcm"]
    assert it("**.dcm", prefix="other/") == ["other/f.dcm"]
    assert it("dicom/**", prefix="other/") == []
    assert it(None, prefix="dicom/x/") == ["dicom/x/c.dcm", "dicom/x/y/d.dcm"]
    name, key, size = next(st.iter_objects(bucket.name, "dicom/a.dcm"))
    assert size == len(b"dicom/a.dcm") and emulator.world.blobs.get(key) == b"dicom/a.dcm"


# ------------------------------------------------------------------------------------ --enforce-iam

def test_enforce_iam_denies_and_allows(emulator_factory):
    emu = emulator_factory(enforce_iam=True)
    ana, bob, eve = "user:ana@example.com", "user:bob@example.com", "user:eve@example.com"
    make_project(emu, PROJECT, ana)  # ana creates it and owns it
    as_ana, as_bob, as_eve = gcs(emu, member=ana), gcs(emu, member=bob), gcs(emu, member=eve)

    with pytest.raises(gexc.Forbidden) as info:
        as_bob.create_bucket("bob-bucket")
    assert "bob@example.com does not have storage.buckets.create access" in info.value.message
    bucket = as_ana.create_bucket("ana-bucket")
    bucket.blob("a.txt").upload_from_string(b"ana's")

    with pytest.raises(gexc.Forbidden, match="storage.buckets.get"):
        as_bob.get_bucket("ana-bucket")
    with pytest.raises(gexc.Forbidden, match="storage.objects.list"):
        list(as_bob.list_blobs("ana-bucket"))
    with pytest.raises(gexc.Forbidden, match="storage.objects.get"):
        as_bob.bucket("ana-bucket").blob("a.txt").download_as_bytes()
    with pytest.raises(gexc.Forbidden, match="storage.objects.create"):
        as_bob.bucket("ana-bucket").blob("b.txt").upload_from_string(b"bob's")
    assert requests.get(f"{emu.url}/storage/v1/b/ana-bucket").status_code == 401

    policy = bucket.get_iam_policy()
    policy.bindings.append({"role": "roles/storage.objectViewer", "members": {bob}})
    bucket.set_iam_policy(policy)
    assert as_bob.bucket("ana-bucket").blob("a.txt").download_as_bytes() == b"ana's"
    assert [b.name for b in as_bob.list_blobs("ana-bucket")] == ["a.txt"]
    with pytest.raises(gexc.Forbidden, match="storage.objects.delete"):
        as_bob.bucket("ana-bucket").blob("a.txt").delete()
    with pytest.raises(gexc.Forbidden, match="storage.buckets.getIamPolicy"):
        as_bob.bucket("ana-bucket").get_iam_policy()
    assert as_bob.bucket("ana-bucket").test_iam_permissions(
        ["storage.objects.get", "storage.objects.delete"]) == ["storage.objects.get"]

    # Project viewers reach the bucket through projectViewer:P (legacyBucketReader) and the default object ACL.
    crm = resourcemanager_v3.ProjectsClient(credentials=creds(ana), transport="rest",
                                            client_options=ClientOptions(api_endpoint=emu.url))
    project_policy = crm.get_iam_policy(resource=f"projects/{PROJECT}")
    project_policy.bindings.add(role="roles/viewer", members=[eve])
    crm.set_iam_policy(request={"resource": f"projects/{PROJECT}", "policy": project_policy})
    assert [b.name for b in as_eve.list_blobs("ana-bucket")] == ["a.txt"]
    assert as_eve.bucket("ana-bucket").blob("a.txt").download_as_bytes() == b"ana's"
    with pytest.raises(gexc.Forbidden):
        as_eve.bucket("ana-bucket").blob("e.txt").upload_from_string(b"eve's")


# ------------------------------------------------------------------------------------ persistence

def test_data_dir_survives_restart(emulator_factory, tmp_path):
    data_dir = tmp_path / "state"
    emu = emulator_factory(data_dir=data_dir)
    make_project(emu, PROJECT)
    bucket = gcs(emu).create_bucket("kept-bucket")
    small, big = b"small object", os.urandom(9 * 1024 * 1024)
    bucket.blob("s.txt").upload_from_string(small)
    bucket.blob("b.bin").upload_from_string(big)
    policy = bucket.get_iam_policy()
    policy.bindings.append({"role": "roles/storage.objectViewer", "members": {"user:ana@example.com"}})
    etag = bucket.set_iam_policy(policy).etag
    r = requests.post(f"{emu.url}/upload/storage/v1/b/kept-bucket/o", params={"uploadType": "resumable"},
                      json={"name": "half.bin"})
    session_path = r.headers["Location"].split("/", 3)[3]
    assert requests.put(r.headers["Location"], data=b"h" * 100,
                        headers={"Content-Range": "bytes 0-99/*"}).status_code == 308
    emu.stop()

    again = emulator_factory(data_dir=data_dir)
    client = gcs(again)
    bucket = client.get_bucket("kept-bucket")
    assert bucket.blob("s.txt").download_as_bytes() == small
    assert bucket.blob("b.bin").download_as_bytes() == big
    assert sorted(b.name for b in client.list_blobs("kept-bucket")) == ["b.bin", "s.txt"]
    assert bucket.get_iam_policy().etag == etag
    session = f"{again.url}/{session_path}"
    r = requests.put(session, headers={"Content-Range": "bytes */*"})
    assert r.status_code == 308 and r.headers["Range"] == "bytes=0-99"
    r = requests.put(session, data=b"h" * 50, headers={"Content-Range": "bytes 100-149/150"})
    assert r.status_code == 200 and bucket.blob("half.bin").download_as_bytes() == b"h" * 150


def test_state_dump_and_reset(emulator, bucket):
    bucket.blob("one").upload_from_string(b"12345")
    dump = requests.get(f"{emulator.url}/_emulator/state", headers=CONTROL).json()["storage"]
    assert dump["buckets"][bucket.name]["objects"] == 1 and dump["buckets"][bucket.name]["bytes"] == 5
    requests.post(f"{emulator.url}/_emulator/reset", headers=CONTROL)
    assert emulator.world.storage.bucket(bucket.name) is None
    assert emulator.world.storage.get_object(bucket.name, "one") is None


# ------------------------------------------------------------------------------------ robustness

def _session(emu, bucket: str, name: str, member: str | None = None) -> str:
    headers = {"Authorization": f"Bearer emulator:{member}"} if member else {}
    r = requests.post(f"{emu.url}/upload/storage/v1/b/{bucket}/o", params={"uploadType": "resumable", "name": name},
                      json={}, headers=headers)
    assert r.status_code == 200, r.text
    return r.headers["Location"]


def _partial_put(emu, location: str, declared: int, sent: bytes) -> socket.socket:
    """A PUT of a resumable session that declares `declared` bytes and sends only `sent`; the open socket."""
    target = location[len(emu.url):]
    sock = socket.create_connection(("127.0.0.1", emu.port))
    head = (f"PUT {target} HTTP/1.1\r\nHost: 127.0.0.1:{emu.port}\r\nContent-Length: {declared}\r\n"
            f"Content-Range: bytes 0-{declared - 1}/{declared}\r\nConnection: close\r\n\r\n")
    sock.sendall(head.encode() + sent)
    return sock


def test_interrupted_resumable_chunk_can_be_resent(emulator, bucket):
    location = _session(emulator, bucket.name, "interrupted.bin")
    data = os.urandom(100)
    sock = _partial_put(emulator, location, 100, data[:10])
    sock.shutdown(socket.SHUT_WR)   # the body ends 90 bytes short: the server answers once it has seen that
    with sock, sock.makefile("rb") as answer:
        assert answer.readline().startswith(b"HTTP/1.1 400"), "the cut-short chunk is refused"
    r = requests.put(location, headers={"Content-Range": "bytes */100"})
    assert r.status_code == 308 and "Range" not in r.headers
    r = requests.put(location, data=data, headers={"Content-Range": "bytes 0-99/100"})
    assert r.status_code == 200, r.text
    assert bucket.blob("interrupted.bin").download_as_bytes() == data


def test_stalled_chunk_does_not_block_its_session(emulator, bucket):
    location = _session(emulator, bucket.name, "stalled.bin")
    stalled = _partial_put(emulator, location, 100, b"x" * 10)
    try:
        started = time.monotonic()
        r = requests.put(location, headers={"Content-Range": "bytes */100"}, timeout=10)
        assert r.status_code == 308 and time.monotonic() - started < 2
        r = requests.put(location, data=b"y" * 100, headers={"Content-Range": "bytes 0-99/100"}, timeout=10)
        assert r.status_code == 200
    finally:
        stalled.close()
    assert bucket.blob("stalled.bin").download_as_bytes() == b"y" * 100


def test_reset_during_an_upload_is_a_clean_404(emulator, bucket):
    size = 40 << 20
    location = _session(emulator, bucket.name, "big.bin")
    sock = _partial_put(emulator, location, size, b"z" * (1 << 20))
    assert requests.post(f"{emulator.url}/_emulator/reset", headers=CONTROL).status_code == 200
    sock.sendall(b"z" * (size - (1 << 20)))
    reply = sock.makefile("rb").read()
    sock.close()
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404"), head
    assert json.loads(body)["error"]["errors"][0]["reason"] == "notFound"
    assert emulator.world.storage.dump()["storage"] == {"buckets": {}, "uploadsInProgress": 0}


def test_a_chunk_for_a_session_a_reset_ended_gets_its_404_not_a_broken_pipe(emulator, bucket):
    """The server answers 404 before reading the 40 MB chunk; the client still sending it must read
    that answer, not meet a reset connection (the emulator lingers, reading and dropping the rest)."""
    size = 40 << 20
    location = _session(emulator, bucket.name, "late.bin")
    assert requests.post(f"{emulator.url}/_emulator/reset", headers=CONTROL).status_code == 200
    sock = _partial_put(emulator, location, size, b"")
    sock.sendall(b"z" * size)
    reply = sock.makefile("rb").read()
    sock.close()
    assert reply.startswith(b"HTTP/1.1 404"), reply[:200]


def test_reset_during_a_media_upload_is_a_clean_404(emulator, bucket):
    size = 20 << 20
    uploads = Path(emulator.world.storage.upload_dir)
    before = set(uploads.glob("up-*"))
    sock = socket.create_connection(("127.0.0.1", emulator.port))
    sock.sendall((f"POST /upload/storage/v1/b/{bucket.name}/o?uploadType=media&name=m.bin HTTP/1.1\r\n"
                  f"Host: 127.0.0.1:{emulator.port}\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n").encode()
                 + b"m" * (10 << 20))   # it reads the answer to the end of the connection: ask for that end
    # The reset must come while the body is arriving, after it spilled to a temp file (past 8 MiB).
    wait_for("the upload spilled to a temp file", lambda: set(uploads.glob("up-*")) - before)
    assert requests.post(f"{emulator.url}/_emulator/reset", headers=CONTROL).status_code == 200
    sock.sendall(b"m" * (size - (10 << 20)))
    reply = sock.makefile("rb").read()
    sock.close()
    assert reply.startswith(b"HTTP/1.1 404"), reply[:200]


def test_session_uri_is_the_credential(emulator_factory):
    emu = emulator_factory(enforce_iam=True)
    ana = "user:ana@example.com"
    make_project(emu, PROJECT, ana)
    gcs(emu, member=ana).create_bucket("session-bucket")
    location = _session(emu, "session-bucket", "anon.bin", member=ana)
    r = requests.put(location, data=b"abc", headers={"Content-Range": "bytes 0-2/3"})  # no Authorization
    assert r.status_code == 200, r.text
    r = requests.post(f"{emu.url}/upload/storage/v1/b/session-bucket/o", params={"uploadType": "media", "name": "x"},
                      data=b"x")
    assert r.status_code == 401  # starting an upload still needs a caller


def test_storage_never_invents_a_project():
    from provision.emulator.storage.state import Backend
    from provision.emulator.world import Options, World

    world = World(Options())
    try:
        st = Backend(world)
        with pytest.raises(AttributeError):  # no Resource Manager: no projects at all, none made up
            st.project("well-formed-project")
    finally:
        world.close()
