"""Cloud Healthcare in the emulator under abuse: deleted and reset stores never come back with old
instances, read-check-write updates racing deletes, malformed DICOM (truncated meta, deep
sequences, pixel data that disagrees with its geometry), imports with bad objects, unaddressable
IDs, STOW bodies spooled without keeping rejected bytes, restarts mid-import, rendered sizes,
deterministic operation IDs."""
from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import threading
import time

import pytest
import requests
from googleapiclient.errors import HttpError
from PIL import Image

import dicom_factory as f
from emulator_helpers import CONTROL, create_project, healthcare, ready_store, wait_operation
from provision.emulator.errors import ApiError
from provision.emulator.healthcare import common as hc_common, dicomfile, transfers as hc_transfers, wire
from provision.emulator.latency import REALISTIC

SHORT_META = b"\0" * 128 + b"DICM" + b"\x02\x00\x01\x00OB\x00\x00"     # 136 bytes: meta cut mid-element


def _multipart(instances: list[bytes], boundary: str = "b0undary") -> tuple[bytes, str]:
    body = b"".join(b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + data + b"\r\n"
                    for data in instances) + b"--" + boundary.encode() + b"--\r\n"
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


def _stow(env, parts: list[bytes]) -> requests.Response:
    body, ctype = _multipart(parts)
    return requests.post(f"{env.dicomweb_url}/studies", data=body,
                         headers={"Content-Type": ctype, "Accept": "application/dicom+json"})


def _deep_sequences(depth: int) -> bytes:
    """A Part-10 file whose data set is `depth` nested undefined-length sequences."""
    ts = b"1.2.840.10008.1.2.1\0"
    meta = struct.pack("<HH", 2, 0x10) + b"UI" + struct.pack("<H", len(ts)) + ts
    open_ = struct.pack("<HH", 0x0040, 0xA730) + b"SQ\0\0" + struct.pack("<I", 0xFFFFFFFF) \
        + struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    close = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    return b"\0" * 128 + b"DICM" + meta + open_ * depth + close * depth


def _mismatched(key: str):
    """An 8x8 CT image that claims 512x512."""
    ds = f.ct_series(key, slices=1, size=8)[0]
    ds.Rows, ds.Columns = 512, 512
    return ds


def _blob_files(world) -> set[str]:
    return {p.name for p in world.blobs.root.rglob("*") if p.is_file()}


def _items(world, datasets):
    out = []
    for ds in datasets:
        data = f.to_bytes(ds)
        key = world.blobs.put(data)
        out.append((dicomfile.parse_file(world.blobs.path(key)), key, len(data)))
    return out


# ---- 1. deleted / reset stores ---------------------------------------------------------------------
def test_ingest_into_a_deleted_store_is_refused_and_sids_are_never_reused(emulator):
    env = ready_store(emulator, project="rb-sid")
    world, hc = emulator.world, emulator.world.healthcare
    old = hc.sid(env.store)
    env.stores.delete(name=env.store).execute()
    env.hc.projects().locations().datasets().dicomStores().create(parent=env.dataset, dicomStoreId=env.store_id,
                                                                  body={}).execute()
    new = hc.sid(env.store)
    assert new != old
    # a STOW or import that resolved the old store before the delete ingests now: refused, nothing written
    assert hc.index.ingest(old, _items(world, f.ct_series("late", slices=3, size=8))) is None
    assert hc.ingest_blobs(old, [(key, size) for _, key, size in _items(world, f.ct_series("late2", slices=2, size=8))]) is None
    assert env.dicomweb.search_for_instances() == []
    assert hc.index.store_id(env.store) == new and hc.store_sid(env.store) == new
    # reset: the index forgets the store; a store created again gets a fresh sid and is empty
    requests.post(f"{emulator.url}/_emulator/reset", headers=CONTROL)
    assert hc.index.store_id(env.store) is None and hc.index.ingest(new, _items(world, f.ct_series("r", slices=1, size=8))) is None
    env2 = ready_store(emulator, project="rb-sid")
    assert hc.sid(env2.store) not in (old, new) and env2.dicomweb.search_for_instances() == []


def test_stow_racing_a_store_delete_never_fills_the_recreated_store(emulator):
    env = ready_store(emulator, project="rb-race")
    hc = emulator.world.healthcare
    stop = threading.Event()

    def writer(k: int):
        n = 0
        while not stop.is_set():
            _stow(env, [f.to_bytes(f.ct_series(f"race{k}-{n}", slices=1, size=8)[0])])
            n += 1

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    env.stores.delete(name=env.store).execute()
    stop.set()
    for t in threads:
        t.join()
    env.hc.projects().locations().datasets().dicomStores().create(parent=env.dataset, dicomStoreId=env.store_id,
                                                                  body={}).execute()
    assert env.dicomweb.search_for_instances() == []
    assert hc.index.summary()[env.store]["instances"] == 0


def test_import_worker_stops_when_the_store_is_gone_or_the_world_was_reset(emulator):
    env = ready_store(emulator, project="rb-imp")
    bucket = env.bucket("rb-imp-b")
    env.upload(bucket, {f"d/{i}.dcm": f.to_bytes(ds) for i, ds in enumerate(f.ct_series("imp", slices=3, size=8))})
    hc, world = emulator.world.healthcare, emulator.world
    op_name = f"{env.dataset}/operations/1"
    world.operations.start(op_name, {"@type": hc_common.METADATA_TYPE}, busy=True)
    job = hc_transfers._ImportJob(op_name, {"@type": hc_common.METADATA_TYPE}, world.clock(), env.store, hc.sid(env.store),
                              getattr(world, "epoch", 0) - 1, "rb-imp-b", "gs://rb-imp-b/d/**", "d/**", "d/",
                              f"serviceAccount:{env.agent}")
    hc._run_import(job)                       # another epoch: the world was reset since it started
    assert env.dicomweb.search_for_instances() == []
    assert "done" not in world.operations.get(op_name)
    job.epoch = getattr(world, "epoch", 0)
    job.sid = -1                              # a store deleted (and maybe re-created) since
    hc._run_import(job)
    done = world.operations.get(op_name)
    assert done["error"]["code"] == 5 and done["metadata"]["counter"] == {"failure": "3"}
    assert env.dicomweb.search_for_instances() == []


# ---- 2. read-check-write ---------------------------------------------------------------------------
def test_patch_after_delete_is_403_and_never_resurrects(emulator):
    env = ready_store(emulator, project="rb-patch")
    hc = emulator.world.healthcare
    env.stores.delete(name=env.store).execute()
    with pytest.raises(ApiError) as store_gone:
        hc.patch_store(env.store, {"labels": {"a": "b"}}, "labels")
    assert store_gone.value.http_status == 403 and hc.store_record(env.store) is None
    env.hc.projects().locations().datasets().delete(name=env.dataset).execute()
    with pytest.raises(ApiError) as ds_gone:
        hc.patch_dataset(env.dataset, {"timeZone": "UTC"}, "timeZone")
    assert ds_gone.value.http_status == 403 and hc.dataset_record(env.dataset) is None


def test_concurrent_patch_and_delete_never_500_or_resurrect(emulator):
    env = ready_store(emulator, project="rb-patch2")
    stores = env.hc.projects().locations().datasets().dicomStores()
    statuses = []
    for i in range(15):
        sid = f"s{i}"
        stores.create(parent=env.dataset, dicomStoreId=sid, body={}).execute()
        url = f"{env.url}/v1/{env.dataset}/dicomStores/{sid}"
        out = {}
        t1 = threading.Thread(target=lambda out=out, url=url: out.setdefault("p", requests.patch(
            url, params={"updateMask": "labels"}, json={"labels": {"k": "v"}}).status_code))
        t2 = threading.Thread(target=lambda out=out, url=url: out.setdefault("d", requests.delete(url).status_code))
        t1.start(), t2.start(), t1.join(), t2.join()
        statuses.append(out["p"])
        assert requests.get(url).status_code == 403, i
    assert set(statuses) <= {200, 403}


# ---- 3. malformed DICOM ----------------------------------------------------------------------------
def test_malformed_parts_are_stow_failures_not_500(emulator):
    env = ready_store(emulator, project="rb-bad")
    for bad in (SHORT_META, _deep_sequences(5000), f.to_bytes(_mismatched("mm"))):
        r = _stow(env, [bad])
        assert r.status_code == 409, r.text[:300]         # an invalid file is a 409 on Google
        assert r.headers["Content-Type"] == "application/dicom+json"
        assert "00081198" in r.json()
    with pytest.raises(dicomfile.NotDicom, match="Pixel Data length"):
        dicomfile.parse_buffer(f.to_bytes(_mismatched("mm2")))
    with pytest.raises(dicomfile.NotDicom, match="nested"):
        dicomfile.parse_buffer(_deep_sequences(100))
    good = f.ct_series("ok", slices=1, size=8)[0]
    r = _stow(env, [SHORT_META, f.to_bytes(good)])
    assert r.status_code == 409 and r.json()["00081199"] and r.json()["00081198"]   # partly stored, as Google
    assert [x["00080018"]["Value"][0] for x in env.dicomweb.search_for_instances()] == [good.SOPInstanceUID]


def test_frames_and_rendered_of_a_stored_mismatched_instance_are_json_errors(emulator, monkeypatch):
    env = ready_store(emulator, project="rb-mism")
    ds = _mismatched("stored")
    monkeypatch.setattr(dicomfile, "check_pixel_length", lambda *a: None)   # stored before ingest checked
    assert _stow(env, [f.to_bytes(ds)]).status_code == 200
    monkeypatch.undo()
    base = f"{env.dicomweb_url}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    for url, accept in ((f"{base}/rendered", "image/jpeg"), (f"{base}/frames/1/rendered", "image/png"),
                        (f"{base}/frames/1", "multipart/related; type=application/octet-stream; transfer-syntax=*")):
        r = requests.get(url, headers={"Accept": accept})
        assert r.status_code == 400 and r.json()["error"]["status"] == "FAILED_PRECONDITION", (url, r.text[:200])


# ---- 4. import with a bad object -------------------------------------------------------------------
def test_one_bad_object_is_one_import_failure(emulator):
    env = ready_store(emulator, project="rb-imp2")
    bucket = env.bucket("rb-imp2-b")
    objects = {f"in/{i:02}.dcm": f.to_bytes(ds) for i, ds in enumerate(f.ct_series("imp20", slices=20, size=8))}
    objects["in/zz-bad.dcm"] = SHORT_META
    objects["in/zz-deep.dcm"] = _deep_sequences(3000)
    env.upload(bucket, objects)
    done = env.import_("gs://rb-imp2-b/in/**.dcm")
    assert done["error"]["code"] == 13 and "2 of 22 files failed" in done["error"]["message"]
    assert done["metadata"]["counter"] == {"success": "20", "failure": "2"}
    assert len(env.dicomweb.search_for_instances()) == 20


# ---- 5. IDs ------------------------------------------------------------------------------------------
def test_all_period_ids_are_rejected_at_create(emulator):
    env = ready_store(emulator, project="rb-ids")
    datasets = env.hc.projects().locations().datasets()
    for bad in (".", "..", "..."):
        with pytest.raises(HttpError) as ds:
            datasets.create(parent=f"projects/{env.project}/locations/{env.location}", datasetId=bad, body={}).execute()
        with pytest.raises(HttpError) as st:
            datasets.dicomStores().create(parent=env.dataset, dicomStoreId=bad, body={}).execute()
        for exc in (ds.value, st.value):
            err = json.loads(exc.content)["error"]
            assert err["code"] == 400 and err["status"] == "INVALID_ARGUMENT" and "period" in err["message"], bad
    assert hc_common.valid_id("a.b") and hc_common.valid_id(".a") and not hc_common.valid_id("....")


# ---- 6. STOW bodies ----------------------------------------------------------------------------------
def test_rejected_stow_bytes_are_not_kept(emulator):
    env = ready_store(emulator, project="rb-blobs")
    world = emulator.world
    before = _blob_files(world)
    junk = os.urandom(4096)
    good = f.to_bytes(f.ct_series("keep", slices=1, size=8)[0])
    r = _stow(env, [junk, SHORT_META, good])
    assert r.status_code == 409
    added = _blob_files(world) - before
    assert added == {hashlib.sha256(good).hexdigest()}
    single = requests.post(f"{env.dicomweb_url}/studies", data=junk, headers={"Content-Type": "application/dicom"})
    assert single.status_code == 409 and _blob_files(world) - before == added


def test_stow_body_limit_is_413(emulator, monkeypatch):
    env = ready_store(emulator, project="rb-limit")
    monkeypatch.setattr(wire, "STOW_LIMIT", 4096)
    body, ctype = _multipart([os.urandom(10000)])
    assert requests.post(f"{env.dicomweb_url}/studies", data=body, headers={"Content-Type": ctype}).status_code == 413

    def chunks():   # no Content-Length: the limit holds while streaming
        for i in range(0, len(body), 1000):
            yield body[i:i + 1000]

    r = requests.post(f"{env.dicomweb_url}/studies", data=chunks(), headers={"Content-Type": ctype})
    assert r.status_code == 413
    assert not [p for p in emulator.world.blobs.root.iterdir() if p.name.startswith(".stow-")]


def test_multipart_spooling_splits_parts_across_chunks(tmp_path):
    big1, big2 = os.urandom(1_500_000) + b"\r\n--b0und", b"\r\n" * 1000 + os.urandom(2_300_000)
    boundary = "b0undary"
    body = (b"preamble\r\n--b0undary\r\nContent-Type: application/dicom\r\n\r\n" + big1
            + b"\r\n--b0undary\r\nContent-Type: application/json\r\n\r\n{}"
            + b"\r\n--b0undary\r\nContent-Type: application/dicom\r\n\r\n" + big2 + b"\r\n--b0undary--\r\n")
    parts = wire.spool_multipart(io.BytesIO(body), boundary, str(tmp_path),
                                 lambda h: h.get("content-type") == "application/dicom")
    assert [open(p, "rb").read() for _, p in parts] == [big1, big2]
    with pytest.raises(ApiError, match="not terminated"):
        wire.spool_multipart(io.BytesIO(body[:-30]), boundary, str(tmp_path), lambda h: True)
    no_headers = b"--b0undary\r\n\r\nnot\r\nheaders\r\n\r\n" + big1 + b"\r\n--b0undary--\r\n"
    with pytest.raises(ApiError, match="malformed multipart part headers"):
        wire.spool_multipart(io.BytesIO(no_headers), boundary, str(tmp_path), lambda h: True)
    assert len(list(tmp_path.iterdir())) == 2


def test_multipart_parts_stream_as_the_body_arrives():
    """A part's bytes come out while the body is still being read: a 2 GiB STOW-RS is never held whole."""
    from provision.emulator import multipart

    payload = os.urandom(8 * multipart.READ_SIZE)
    body = io.BytesIO(b"--b\r\nContent-Type: application/dicom\r\n\r\n" + payload + b"\r\n--b--\r\n")
    seen = []
    for piece in multipart.parts(body.read, "b"):
        if isinstance(piece, bytes):
            seen.append((len(piece), body.tell()))
    assert sum(n for n, _ in seen) == len(payload)
    assert seen[0][1] <= 2 * multipart.READ_SIZE          # the first bytes left after one or two reads
    assert max(n for n, _ in seen) <= multipart.READ_SIZE + 64


@pytest.mark.parametrize("eol", [b"\r\n", b"\n"])
@pytest.mark.parametrize("last", [b"\r", b"\n", b"\r\n", b"x"])
def test_multipart_keeps_line_break_bytes_at_a_part_end(eol, last):
    """A part that ends in CR or LF keeps it, in CRLF and bare-LF bodies alike, however the body is
    split into reads (one byte at a time, or in two at every point): the delimiter's line break is the
    body's own kind, read once from its first boundary line (gcsfs sends bare-LF bodies)."""
    from provision.emulator import multipart

    media = b"one\r\n--b not a boundary" + eol + b"two" + last
    body = (b"--b" + eol + b"Content-Type: application/json" + eol + eol + b"{}" + eol + b"--b" + eol
            + b"Content-Type: x/y" + eol + eol + media + eol + b"--b--" + eol)

    def reads(*splits):
        chunks = iter([body[a:b] for a, b in zip((0, *splits), (*splits, len(body)), strict=True)] + [b""])
        return lambda n: next(chunks)

    for read in [reads(*range(1, len(body)))] + [reads(i) for i in range(1, len(body))]:
        pieces = list(multipart.parts(read, "b"))
        assert pieces[0] == {"content-type": "application/json", "content-disposition": "inline"}
        media_start = next(i for i, p in enumerate(pieces) if isinstance(p, dict) and p["content-type"] == "x/y")
        assert b"".join(p for p in pieces[1:media_start] if isinstance(p, bytes)) == b"{}"
        assert b"".join(p for p in pieces[media_start + 1:] if isinstance(p, bytes)) == media


# ---- 8. restart mid-import ---------------------------------------------------------------------------
def test_interrupted_import_moves_pending_into_failure(emulator_factory, tmp_path):
    emu = emulator_factory(data_dir=tmp_path / "d")
    name = "projects/p/locations/us/datasets/d/operations/123"
    emu.world.operations.start(name, {"@type": hc_common.METADATA_TYPE, "counter": {"success": "3", "pending": "5"}},
                               busy=True)
    emu.stop()
    again = emulator_factory(data_dir=tmp_path / "d")
    op = again.world.operations.get(name)
    assert op["done"] is True and op["error"]["code"] == 10
    assert op["metadata"]["counter"] == {"success": "3", "failure": "5"}


# ---- 9. dataset create LRO ---------------------------------------------------------------------------
def test_dataset_create_waits_for_its_time_and_names_the_dataset_log(emulator_factory, tmp_path):
    table = {k: 0.0 for k in REALISTIC}
    table["op:healthcare.datasets.create"] = 0.4
    (tmp_path / "lat.json").write_text(json.dumps(table))
    emu = emulator_factory(latency=str(tmp_path / "lat.json"))
    create_project(emu.url, "rb-dslog")
    hc = healthcare(emu.url)
    op = hc.projects().locations().datasets().create(parent="projects/rb-dslog/locations/us", datasetId="d",
                                                     body={}).execute()
    assert "done" not in op and "response" not in op
    assert "import_dicom" not in op["metadata"]["logsUrl"] and "healthcare_dataset" in \
        requests.utils.unquote(op["metadata"]["logsUrl"])
    assert wait_operation(hc, op["name"])["response"]["name"].endswith("/datasets/d")


# ---- 10. rendered viewport ---------------------------------------------------------------------------
def test_rendered_viewport_is_bounded_and_junk_is_400(emulator):
    env = ready_store(emulator, project="rb-vport")
    ds = f.ct_series("vp", slices=1, size=8)[0]
    assert _stow(env, [f.to_bytes(ds)]).status_code == 200
    url = (f"{env.dicomweb_url}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/"
           f"{ds.SOPInstanceUID}/rendered")
    started = time.time()
    r = requests.get(url, params={"viewport": "12000,12000"}, headers={"Accept": "image/png"})
    assert r.status_code == 200 and max(Image.open(io.BytesIO(r.content)).size) <= 1024
    assert time.time() - started < 1.0
    for junk in ("inf,inf", "nan,4", "1,2,3", "0,5", "a,b", "99999999,5"):
        bad = requests.get(url, params={"viewport": junk})
        assert bad.status_code == 400 and bad.json()["error"]["status"] == "INVALID_ARGUMENT", junk


# ---- 11. import listing off the request thread -------------------------------------------------------
def test_import_lists_the_bucket_in_the_worker(emulator, monkeypatch):
    env = ready_store(emulator, project="rb-list")
    bucket = env.bucket("rb-list-b")
    env.upload(bucket, {"x/a.dcm": f.to_bytes(f.ct_series("lst", slices=1, size=8)[0])})
    storage = emulator.world.storage
    seen = []
    real = storage.iter_objects

    def spy(*a, **kw):
        seen.append(threading.current_thread().name)
        return real(*a, **kw)

    monkeypatch.setattr(storage, "iter_objects", spy)
    done = env.import_("gs://rb-list-b/x/**.dcm")
    assert done["metadata"]["counter"] == {"success": "1"} and "response" in done
    assert seen and all(name.startswith("import-") for name in seen)


# ---- 12. layering --------------------------------------------------------------------------------------
def test_handlers_router_is_built_explicitly_from_both_route_sets():
    from provision.emulator.healthcare import dicomweb, handlers

    assert set(handlers.router.routes) == set(handlers.control_router.routes) | set(dicomweb.router.routes)
    assert not set(handlers.control_router.routes) & set(dicomweb.router.routes)
    import inspect

    assert "index." not in inspect.getsource(dicomweb._stow) and "index.delete" not in inspect.getsource(dicomweb.delete_instance)


# ---- 13. operation IDs -----------------------------------------------------------------------------------
def test_operation_ids_follow_the_seed(emulator_factory):
    def first_op(seed: int) -> str:
        emu = emulator_factory(seed=seed)
        create_project(emu.url, "rb-seed")
        op = healthcare(emu.url).projects().locations().datasets().create(
            parent="projects/rb-seed/locations/us", datasetId="d", body={}).execute()
        return op["name"].rsplit("/", 1)[1]

    a, b, c = first_op(7), first_op(7), first_op(8)
    assert a == b != c and len(a) == 19
