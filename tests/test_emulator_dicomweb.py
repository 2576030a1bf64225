"""DICOMweb in the emulator, driven over real HTTP by dicomweb-client (and plain `requests` for
wire details the client hides): QIDO search rules, WADO metadata/instances/frames/bulk
data/rendered, STOW-RS responses and conflicts, delete."""
from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET

import numpy as np
import pydicom
import pytest
import requests
from PIL import Image
from requests import HTTPError

import dicom_factory as f
from emulator_helpers import ready_store
from provision.emulator.server import EmulatorServer
from provision.emulator.world import Options

CT = f.ct_series("ct1", slices=6, size=64)
CT2 = f.ct_series("ct2", slices=2, size=32, patient_name="Doe^John", patient_id="PID-CT2", study_date="20171231",
                  accession="ACC-CT2", referring="Doc^Ana", study_description="CT abdomen")
MR = f.mr_series("mr1", slices=3)
MF = f.multiframe("mf1", frames=3)
ALL = CT + CT2 + MR + [MF]


@pytest.fixture(scope="module")
def env():
    """One emulator with four studies, shared by the read-only tests."""
    emu = EmulatorServer(Options(host="127.0.0.1", port=0)).start()
    try:
        e = ready_store(emu, project="dw-read")
        e.dicomweb.store_instances(ALL)
        yield e
    finally:
        emu.stop()


@pytest.fixture
def fresh(emulator):
    return ready_store(emulator, project="dw-write")


def uids(results, tag="0020000D"):
    return [r[tag]["Value"][0] for r in results]


def qido(env, path: str, **params):
    return requests.get(f"{env.dicomweb_url}/{path}", params=params, headers={"Accept": "application/dicom+json"})


# ---- QIDO ----------------------------------------------------------------------------------------
def test_search_studies_with_exact_filters_by_keyword_or_tag(env):
    dw = env.dicomweb
    assert uids(dw.search_for_studies()) == [CT[0].StudyInstanceUID, CT2[0].StudyInstanceUID, MR[0].StudyInstanceUID,
                                             MF.StudyInstanceUID]   # stable ingest order
    assert uids(dw.search_for_studies(search_filters={"PatientID": "PID-CT2"})) == [CT2[0].StudyInstanceUID]
    assert uids(dw.search_for_studies(search_filters={"00100020": "PID-MR1"})) == [MR[0].StudyInstanceUID]
    assert uids(dw.search_for_studies(search_filters={"AccessionNumber": "ACC-CT1"})) == [CT[0].StudyInstanceUID]
    assert uids(dw.search_for_studies(search_filters={"ReferringPhysicianName": "Doc^Ana"})) == [CT2[0].StudyInstanceUID]
    assert uids(dw.search_for_studies(search_filters={"StudyInstanceUID": MR[0].StudyInstanceUID})) == [MR[0].StudyInstanceUID]
    both = f"{CT[0].StudyInstanceUID}\\{MF.StudyInstanceUID}"      # OHIF joins several UIDs with a backslash
    assert uids(dw.search_for_studies(search_filters={"StudyInstanceUID": both})) == [CT[0].StudyInstanceUID, MF.StudyInstanceUID]
    assert dw.search_for_studies(search_filters={"PatientID": "nobody"}) == []
    # exact, case-sensitive, no wildcards (Google's rules)
    assert dw.search_for_studies(search_filters={"PatientID": "pid-ct2"}) == []
    assert dw.search_for_studies(search_filters={"PatientID": "PID*"}) == []


def test_study_results_carry_google_defaults_as_stored(env):
    r = env.dicomweb.search_for_studies(search_filters={"PatientID": "PID-CT1"})[0]
    assert r["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "Phantom^CT"}]}
    assert r["00080020"]["Value"] == ["20150610"]
    # nothing synthesised (google-evidence.md §2.1): no availability, modalities or counts
    for tag in ("00080056", "00080061", "00201206", "00201208"):
        assert tag not in r, tag
    assert "00081030" not in r          # StudyDescription only on request
    for tag in ("00080005", "00080030", "00080050", "00080090", "00100020", "00100030", "00100040", "0020000D", "00200010"):
        assert tag in r, tag
    assert list(r) == sorted(r)


def test_fuzzy_patient_name_is_prefix_tokens(env):
    def fuzzy(name):
        return uids(env.dicomweb.search_for_studies(search_filters={"PatientName": name}, fuzzymatching=True))

    assert fuzzy("phan") == [CT[0].StudyInstanceUID, MR[0].StudyInstanceUID]
    assert fuzzy("jo") == fuzzy("Do") == fuzzy("John Doe") == fuzzy("JOHN") == [CT2[0].StudyInstanceUID]
    assert fuzzy("ohn") == []
    assert fuzzy("mr") == [MR[0].StudyInstanceUID]
    # without fuzzy matching only the exact value matches
    exact = env.dicomweb.search_for_studies(search_filters={"PatientName": "Doe^John"})
    assert uids(exact) == [CT2[0].StudyInstanceUID]
    assert env.dicomweb.search_for_studies(search_filters={"PatientName": "Doe"}) == []
    # ^ arrives percent-encoded; the value is decoded
    assert uids(qido(env, "studies", PatientName="Phantom^MR").json()) == [MR[0].StudyInstanceUID]


def test_study_date_ranges(env):
    def dates(value):
        return uids(env.dicomweb.search_for_studies(search_filters={"StudyDate": value}))

    assert dates("20150610") == [CT[0].StudyInstanceUID]
    assert dates("20150101-20180101") == [CT[0].StudyInstanceUID, CT2[0].StudyInstanceUID]
    assert dates("20200101-") == [MR[0].StudyInstanceUID, MF.StudyInstanceUID]
    assert dates("-20160101") == [CT[0].StudyInstanceUID]
    assert qido(env, "studies", StudyDate="2015").status_code == 400


def test_includefield_by_keyword_tag_and_all(env):
    r = env.dicomweb.search_for_studies(search_filters={"PatientID": "PID-CT1"}, fields=["StudyDescription"])[0]
    assert r["00081030"]["Value"] == ["CT chest phantom"]
    r = qido(env, "studies", PatientID="PID-CT1", includefield="00081030,00080060").json()[0]
    assert r["00081030"]["Value"] == ["CT chest phantom"]
    r = qido(env, "studies", PatientID="PID-CT1", includefield="all").json()[0]
    assert r["00081030"]["Value"] == ["CT chest phantom"] and r["00080080"]["Value"] == ["Emulator General"]
    s = qido(env, f"studies/{CT[0].StudyInstanceUID}/series", includefield="00200011,00080021").json()[0]
    assert s["00200011"]["Value"] == [1] and s["00080021"]["Value"] == ["20150610"]
    i = qido(env, f"studies/{CT[0].StudyInstanceUID}/instances", includefield="all", limit="1").json()[0]
    assert i["00200032"]["Value"] == [pytest.approx(v) for v in CT[0].ImagePositionPatient]
    assert "7FE00010" not in i
    bad = qido(env, "studies", includefield="NoSuchKeyword")
    assert bad.status_code == 400 and "unknown/unsupported QIDO attribute" in bad.json()["error"]["message"]


def test_unknown_search_key_is_400_and_empty_is_204(env):
    r = qido(env, "studies", Modality="CT")     # a series-level key at study level
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert qido(env, "instances", SOPClassUID=f.CT_IMAGE).status_code == 400
    assert qido(env, "studies", StudyDescription="x").status_code == 400
    empty = qido(env, "studies", PatientID="none")
    assert empty.status_code == 204 and empty.content == b""
    assert qido(env, "studies", limit="-1").status_code == 400
    assert qido(env, "studies", offset="1000001").status_code == 400


def test_paging_limit_offset(env):
    dw = env.dicomweb
    every = uids(dw.search_for_studies())
    pages = [uids(dw.search_for_studies(limit=2, offset=o)) for o in (0, 2, 4)]
    assert pages == [every[:2], every[2:4], []]
    assert uids(dw.search_for_studies(limit=1, get_remaining=True)) == every
    inst = dw.search_for_instances(CT[0].StudyInstanceUID, limit=4, get_remaining=True)
    assert sorted(uids(inst, "00080018")) == sorted(d.SOPInstanceUID for d in CT)


def test_series_and_instance_searches(env):
    dw = env.dicomweb
    series = dw.search_for_series(search_filters={"Modality": "MR"})
    assert uids(series, "0020000E") == [MR[0].SeriesInstanceUID]
    assert "00201209" not in series[0] and series[0]["0020000D"]["Value"] == [MR[0].StudyInstanceUID]
    assert uids(dw.search_for_series(search_filters={"PatientID": "PID-CT2"}), "0020000E") == [CT2[0].SeriesInstanceUID]
    assert uids(dw.search_for_series(CT[0].StudyInstanceUID), "0020000E") == [CT[0].SeriesInstanceUID]
    inst = dw.search_for_instances(CT[0].StudyInstanceUID, CT[0].SeriesInstanceUID)
    assert uids(inst, "00080018") == [d.SOPInstanceUID for d in CT]
    first = inst[0]
    assert first["00280010"]["Value"] == [64] and first["00080016"]["Value"] == [f.CT_IMAGE]
    assert first["00200013"]["Value"] == [1] and first["0020000E"]["Value"] == [CT[0].SeriesInstanceUID]
    one = dw.search_for_instances(search_filters={"SOPInstanceUID": MF.SOPInstanceUID})
    assert one[0]["00280008"]["Value"] == [3]
    assert uids(dw.search_for_instances(search_filters={"Modality": "MR", "StudyDate": "20200102"}), "00080018") == \
        [d.SOPInstanceUID for d in MR]


# ---- WADO ----------------------------------------------------------------------------------------
def test_metadata_has_bulkdata_uris_that_resolve(env):
    dw = env.dicomweb
    meta = dw.retrieve_series_metadata(CT[0].StudyInstanceUID, CT[0].SeriesInstanceUID)
    assert [m["00080018"]["Value"][0] for m in meta] == [d.SOPInstanceUID for d in CT]
    pixel = meta[0]["7FE00010"]
    assert pixel["vr"] == "OW" and "Value" not in pixel and "InlineBinary" not in pixel
    uri = pixel["BulkDataURI"]
    assert uri == f"{env.dicomweb_url}/studies/{CT[0].StudyInstanceUID}/series/{CT[0].SeriesInstanceUID}/instances/" \
                  f"{CT[0].SOPInstanceUID}/bulkdata/7FE00010"
    assert dw.retrieve_bulkdata(uri)[0] == bytes(CT[0].PixelData)
    ds = pydicom.Dataset.from_json({k: v for k, v in meta[1].items() if k != "7FE00010"})
    assert ds.WindowCenter == [40, -600] and ds.RescaleIntercept == -1024 and ds.PixelSpacing == [1.367, 1.367]
    assert len(dw.retrieve_study_metadata(CT[0].StudyInstanceUID)) == 6
    inst = dw.retrieve_instance_metadata(MF.StudyInstanceUID, MF.SeriesInstanceUID, MF.SOPInstanceUID)
    assert inst["00280008"]["Value"] == [3]


def test_frames_are_the_stored_pixel_bytes(env):
    dw = env.dicomweb
    d = CT[2]
    assert dw.retrieve_instance_frames(d.StudyInstanceUID, d.SeriesInstanceUID, d.SOPInstanceUID, [1])[0] == bytes(d.PixelData)
    frames = dw.retrieve_instance_frames(MF.StudyInstanceUID, MF.SeriesInstanceUID, MF.SOPInstanceUID, [1, 3],
                                         media_types=(("application/octet-stream", "*"),))
    size = 16 * 16 * 2
    assert frames == [bytes(MF.PixelData)[:size], bytes(MF.PixelData)[2 * size:]]
    url = f"{env.dicomweb_url}/studies/{MF.StudyInstanceUID}/series/{MF.SeriesInstanceUID}/instances/{MF.SOPInstanceUID}/frames/4"
    r = requests.get(url, headers={"Accept": "multipart/related; type=application/octet-stream; transfer-syntax=*"})
    assert r.status_code == 400


def test_frames_accept_variants(env):
    d = MR[1]
    url = f"{env.dicomweb_url}/studies/{d.StudyInstanceUID}/series/{d.SeriesInstanceUID}/instances/{d.SOPInstanceUID}/frames/1"
    for accept in ("multipart/related; type=application/octet-stream; transfer-syntax=*",
                   'multipart/related; type="application/octet-stream"; transfer-syntax="*"',
                   'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.1',
                   'multipart/related; type="*/*"', "*/*", None):
        r = requests.get(url, headers={"Accept": accept} if accept else {})
        assert r.status_code == 200, accept
        ctype = r.headers["Content-Type"]
        assert ctype.startswith('multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.1;')
        boundary = ctype.split("boundary=")[1]
        body = r.content
        start = body.index(b"\r\n\r\n") + 4
        assert body[start:body.index(f"\r\n--{boundary}--".encode())] == bytes(d.PixelData)
    assert requests.get(url, headers={"Accept": "multipart/related; type=image/jpeg"}).status_code == 406


def test_retrieve_instances_multipart_and_single_part(env):
    dw = env.dicomweb
    d = CT2[1]
    got = dw.retrieve_instance(d.StudyInstanceUID, d.SeriesInstanceUID, d.SOPInstanceUID)
    assert got.SOPInstanceUID == d.SOPInstanceUID and got.PixelData == d.PixelData
    assert got.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    series = dw.retrieve_series(d.StudyInstanceUID, d.SeriesInstanceUID)
    assert sorted(x.SOPInstanceUID for x in series) == sorted(x.SOPInstanceUID for x in CT2)
    assert len(dw.retrieve_study(MR[0].StudyInstanceUID)) == 3
    url = f"{env.dicomweb_url}/studies/{d.StudyInstanceUID}/series/{d.SeriesInstanceUID}/instances/{d.SOPInstanceUID}"
    single = requests.get(url, headers={"Accept": "application/dicom; transfer-syntax=*"})
    assert single.status_code == 200 and single.headers["Content-Type"].startswith("application/dicom")
    back = pydicom.dcmread(io.BytesIO(single.content))
    assert back.SOPInstanceUID == d.SOPInstanceUID and back.PixelData == d.PixelData
    assert requests.get(f"{env.dicomweb_url}/studies/{d.StudyInstanceUID}",
                        headers={"Accept": "application/dicom"}).status_code == 406


def test_rendered_jpeg_png_instances_and_frames_only(env):
    d = CT[3]
    base = f"{env.dicomweb_url}/studies/{d.StudyInstanceUID}/series/{d.SeriesInstanceUID}"
    r = requests.get(f"{base}/instances/{d.SOPInstanceUID}/rendered", params={"viewport": "32,32"},
                     headers={"Accept": "image/jpeg"})
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/jpeg"
    img = Image.open(io.BytesIO(r.content))
    assert img.format == "JPEG" and img.size == (32, 32)
    png = requests.get(f"{base}/instances/{d.SOPInstanceUID}/rendered", headers={"Accept": "image/png"})
    img = Image.open(io.BytesIO(png.content))
    assert img.format == "PNG" and img.size == (64, 64)
    # window 40/400 applied: air is black, soft tissue mid-grey
    px = np.asarray(img)
    assert px[0, 0] == 0 and 100 < px[32, 10] < 160
    q = requests.get(f"{base}/instances/{d.SOPInstanceUID}/rendered", params={"accept": "image/png"})
    assert q.headers["Content-Type"] == "image/png"
    # Google renders instances and frames only (CONF §1.1): no series-level rendered resource
    thumb = requests.get(f"{base}/rendered", params={"viewport": "16,16"}, headers={"Accept": "image/jpeg"})
    assert thumb.status_code == 404
    m = MF
    fr = requests.get(f"{env.dicomweb_url}/studies/{m.StudyInstanceUID}/series/{m.SeriesInstanceUID}/instances/"
                      f"{m.SOPInstanceUID}/frames/2/rendered", headers={"Accept": "image/png"})
    assert fr.status_code == 200 and Image.open(io.BytesIO(fr.content)).size == (16, 16)
    assert requests.get(f"{base}/instances/{d.SOPInstanceUID}/rendered", headers={"Accept": "image/gif"}).status_code == 406


def test_missing_resources(env):
    dw = env.dicomweb
    with pytest.raises(HTTPError) as missing:
        dw.retrieve_study_metadata("1.2.3.4")
    assert missing.value.response.status_code == 403      # Google's conformance statement: no 404
    other = requests.get(f"{env.url}/v1/{env.dataset}/dicomStores/nope/dicomWeb/studies")
    assert other.status_code == 403 and other.json()["error"]["status"] == "PERMISSION_DENIED"


# ---- STOW ----------------------------------------------------------------------------------------
def _multipart(instances: list[bytes], boundary: str = "b0undary") -> tuple[bytes, str]:
    body = b"".join(b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + data + b"\r\n"
                    for data in instances) + b"--" + boundary.encode() + b"--\r\n"
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


def test_stow_xml_by_default_json_on_request(fresh):
    body, ctype = _multipart([f.to_bytes(CT[0])])
    r = requests.post(f"{fresh.dicomweb_url}/studies", data=body, headers={"Content-Type": ctype})
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/dicom+xml"
    root = ET.fromstring(r.content)
    assert root.tag == "NativeDicomModel"
    seq = root.find("DicomAttribute[@tag='00081199']")
    assert seq.find("Item/DicomAttribute[@tag='00081155']/Value").text == CT[0].SOPInstanceUID
    body, ctype = _multipart([f.to_bytes(CT[1])])
    r = requests.post(f"{fresh.dicomweb_url}/studies/{CT[1].StudyInstanceUID}", data=body,
                      headers={"Content-Type": ctype, "Accept": "application/dicom+json"})
    j = r.json()
    assert r.status_code == 200 and j["00081199"]["Value"][0]["00081155"]["Value"] == [CT[1].SOPInstanceUID]
    assert j["00081190"]["Value"] == [f"{fresh.dicomweb_url}/studies/{CT[1].StudyInstanceUID}"]
    single = requests.post(f"{fresh.dicomweb_url}/studies", data=f.to_bytes(CT[2]),
                           headers={"Content-Type": "application/dicom", "Accept": "application/dicom+json"})
    assert single.status_code == 200
    assert len(fresh.dicomweb.search_for_instances(CT[0].StudyInstanceUID)) == 3


def test_stow_duplicates_identical_ok_conflicting_409(fresh):
    dw = fresh.dicomweb
    dw.store_instances([CT[0]])
    again = dw.store_instances([CT[0]])             # identical bytes: a no-op success
    assert again.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == CT[0].SOPInstanceUID
    changed = f.ct_series("ct1", slices=6, size=64)[0]
    changed.PatientName = "Someone^Else"
    body, ctype = _multipart([f.to_bytes(changed)])
    r = requests.post(f"{fresh.dicomweb_url}/studies", data=body,
                      headers={"Content-Type": ctype, "Accept": "application/dicom+json"})
    assert r.status_code == 409
    failed = r.json()["00081198"]["Value"][0]
    assert failed["00081197"]["Value"] == [272] and failed["00081155"]["Value"] == [CT[0].SOPInstanceUID]
    assert "already exists" in json.loads(failed["00091097"]["Value"][0])["message"]
    xml = requests.post(f"{fresh.dicomweb_url}/studies", data=body, headers={"Content-Type": ctype})
    assert xml.status_code == 409 and b"FailedSOPSequence" in xml.content
    # the stored instance is unchanged
    assert dw.search_for_studies()[0]["00100010"]["Value"] == [{"Alphabetic": "Phantom^CT"}]
    wrong_study = requests.post(f"{fresh.dicomweb_url}/studies/1.2.3", data=_multipart([f.to_bytes(CT[1])])[0],
                                headers={"Content-Type": ctype, "Accept": "application/dicom+json"})
    assert wrong_study.status_code == 409
    junk = requests.post(f"{fresh.dicomweb_url}/studies", data=_multipart([b"not dicom"])[0], headers={"Content-Type": ctype})
    assert junk.status_code == 409 and b"FailedSOPSequence" in junk.content      # an invalid file is a 409 on Google


def test_stored_encodings_implicit_and_compressed(fresh):
    dw = fresh.dicomweb
    implicit = f.mr_series("mr-implicit", slices=1)[0]
    implicit.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    buf = io.BytesIO()
    implicit.save_as(buf, enforce_file_format=True, implicit_vr=True)
    dw.store_instances([pydicom.dcmread(io.BytesIO(buf.getvalue()))])
    ids = (implicit.StudyInstanceUID, implicit.SeriesInstanceUID, implicit.SOPInstanceUID)
    assert dw.retrieve_instance(*ids).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2"    # '*': as stored
    got = dw.retrieve_instance(*ids, media_types=(("application/dicom", "1.2.840.10008.1.2.1"),))
    assert got.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1" and got.PixelData == implicit.PixelData
    frame = dw.retrieve_instance_frames(implicit.StudyInstanceUID, implicit.SeriesInstanceUID, implicit.SOPInstanceUID, [1])
    assert frame[0] == bytes(implicit.PixelData)
    meta = dw.retrieve_instance_metadata(implicit.StudyInstanceUID, implicit.SeriesInstanceUID, implicit.SOPInstanceUID)
    assert meta["00280103"] == {"vr": "US", "Value": [0]} and meta["00100010"]["Value"] == [{"Alphabetic": "Phantom^MR"}]

    # RLE: stored fragments with transfer-syntax=*, decoded on the default request
    rle = f.mr_series("mr-rle", slices=1)[0]
    rle.compress(pydicom.uid.RLELossless)
    dw.store_instances([rle])
    ids = (rle.StudyInstanceUID, rle.SeriesInstanceUID, rle.SOPInstanceUID)
    url = f"{fresh.dicomweb_url}/studies/{ids[0]}/series/{ids[1]}/instances/{ids[2]}/frames/1"
    raw = requests.get(url, headers={"Accept": "multipart/related; type=application/octet-stream; transfer-syntax=*"})
    assert "transfer-syntax=1.2.840.10008.1.2.5" in raw.headers["Content-Type"]
    assert dw.retrieve_instance_frames(*ids, [1])[0] == f.mr_series("mr-rle", slices=1)[0].PixelData
    # a syntax nothing here decodes: 406 unless the stored bytes are asked for
    odd = f.mr_series("mr-odd", slices=1)[0]
    odd.PixelData = pydicom.encaps.encapsulate([b"\x00\x01opaque-bitstream"])
    odd["PixelData"].VR = "OB"
    odd.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"   # MPEG2
    dw.store_instances([odd])
    url = f"{fresh.dicomweb_url}/studies/{odd.StudyInstanceUID}/series/{odd.SeriesInstanceUID}/instances/{odd.SOPInstanceUID}"
    assert requests.get(f"{url}/frames/1").status_code == 406
    star = requests.get(f"{url}/frames/1", headers={"Accept": "multipart/related; type=application/octet-stream; transfer-syntax=*"})
    assert star.status_code == 200 and b"opaque-bitstream" in star.content


# ---- delete --------------------------------------------------------------------------------------
def test_delete_instance_series_and_study(fresh):
    dw = fresh.dicomweb
    dw.store_instances(CT + MR)
    d = CT[0]
    r = requests.delete(f"{fresh.dicomweb_url}/studies/{d.StudyInstanceUID}/series/{d.SeriesInstanceUID}/instances/{d.SOPInstanceUID}")
    assert r.status_code == 200 and r.json() == {}
    assert len(dw.search_for_instances(d.StudyInstanceUID)) == 5
    op = requests.delete(f"{fresh.dicomweb_url}/studies/{d.StudyInstanceUID}/series/{d.SeriesInstanceUID}").json()
    assert op["name"].startswith(f"{fresh.dataset}/operations/")
    done = fresh.hc.projects().locations().datasets().operations().get(name=op["name"]).execute()
    assert done["done"] is True and done["response"]["@type"] == "type.googleapis.com/google.protobuf.Empty"
    assert dw.search_for_studies(search_filters={"PatientID": "PID-CT1"}) == []
    dw.delete_study(MR[0].StudyInstanceUID)
    assert dw.search_for_studies() == []
    assert requests.delete(f"{fresh.dicomweb_url}/studies/{MR[0].StudyInstanceUID}").status_code == 403


def test_nested_bulk_data_and_large_numeric_values(fresh):
    ds = f.mr_series("mr-bulk", slices=1)[0]
    icon = pydicom.Dataset()
    icon.Rows = icon.Columns = 4
    icon.SamplesPerPixel = 1
    icon.PhotometricInterpretation = "MONOCHROME2"
    icon.BitsAllocated = icon.BitsStored = 8
    icon.HighBit = 7
    icon.PixelRepresentation = 0
    icon.PixelData = bytes(range(16))
    icon["PixelData"].VR = "OB"
    ds.IconImageSequence = [icon]
    ds.add_new(0x00181310, "US", [1, 2, 3, 4])                              # small: inline values
    ds.add_new(0x00431001, "OB", b"\x01\x02")                              # private OB: bulk data
    fresh.dicomweb.store_instances([ds])
    meta = fresh.dicomweb.retrieve_instance_metadata(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    nested = meta["00880200"]["Value"][0]["7FE00010"]
    assert nested["BulkDataURI"].endswith("/bulkdata/00880200/0/7FE00010")
    assert fresh.dicomweb.retrieve_bulkdata(nested["BulkDataURI"])[0] == bytes(range(16))
    assert meta["00181310"] == {"vr": "US", "Value": [1, 2, 3, 4]}
    assert fresh.dicomweb.retrieve_bulkdata(meta["00431001"]["BulkDataURI"])[0] == b"\x01\x02"
    single = requests.get(meta["00431001"]["BulkDataURI"], headers={"Accept": "application/octet-stream"})
    assert single.headers["Content-Type"] == "application/octet-stream" and single.content == b"\x01\x02"
