"""google-evidence.md §6 ("most useful checks for an emulator"), point by point, for DICOMweb,
plus the retrieve/transcoding table of §1.2 and the status codes of §1.2/§1.5. Each test names
the point and the evidence it replays; everything goes over real HTTP to a real emulator.

The evidence file is ../shared/reference/google-evidence.md (REAL > SPEC > GOOGLE-CODE)."""
from __future__ import annotations

import io
import json
import time
import xml.etree.ElementTree as ET

import numpy as np
import pydicom
import pytest
import requests
from PIL import Image

import dicom_factory as f
import dicomweb_samples as smp
from emulator_helpers import ready_store, wait_operation
from provision.emulator.server import EmulatorServer
from provision.emulator.world import Options

CT = f.ct_series("conf-ct", slices=3, size=32)                   # int16 signed, 16 bits stored
MR = f.mr_series("conf-mr", slices=2, size=32)                   # uint16, 12 bits stored
MONO = smp.mono8("conf-mono", size=32, frames=2)
RGB = smp.rgb8("conf-rgb", size=32)
JPEG = smp.jpeg_baseline_stored("conf-jpeg")
RLE_STORED = smp.rle_stored("conf-rle")
BULK = smp.bulk_rich("conf-bulk")
FUZZY = [smp.mono8(k, size=4) for k in ("conf-john", "conf-sally")]
FUZZY[0].PatientName, FUZZY[1].PatientName = "John^Doe", "Sally^Zhang"
SEEDED = CT + MR + [MONO, RGB, JPEG, RLE_STORED, BULK] + FUZZY
N_TINY_STUDIES, TINY_PER_STUDY = 101, 10     # 101 studies > the default 100; 1010 instances > 1000

EXPLICIT_LE = "1.2.840.10008.1.2.1"
JSON = {"Accept": "application/dicom+json"}


@pytest.fixture(scope="module")
def env():
    """One emulator, one store seeded with SEEDED and 1,010 pixel-less instances in 101 studies."""
    emu = EmulatorServer(Options(host="127.0.0.1", port=0)).start()
    try:
        e = ready_store(emu, project="conf-dw")
        e.dicomweb.store_instances(SEEDED)
        tiny = [smp.to_bytes(smp.tiny(s, n)) for s in range(N_TINY_STUDIES) for n in range(TINY_PER_STUDY)]
        body, ctype = multipart(tiny)
        r = requests.post(f"{e.dicomweb_url}/studies", data=body, headers={"Content-Type": ctype})
        assert r.status_code == 200, r.text[:500]
        yield e
    finally:
        emu.stop()


@pytest.fixture
def fresh(emulator):
    return ready_store(emulator, project="conf-dw-w")


def multipart(parts: list[bytes], boundary: str = "conf-b0undary") -> tuple[bytes, str]:
    body = b"".join(b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + p + b"\r\n"
                    for p in parts) + b"--" + boundary.encode() + b"--\r\n"
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


def get(env, path: str, accept: str | None = "application/dicom+json", **params) -> requests.Response:
    return requests.get(f"{env.dicomweb_url}/{path}", params=params, headers={"Accept": accept} if accept else {})


def ipath(ds) -> str:
    return f"studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"


def as_sent(ds) -> bytes:
    """The bytes dicomweb-client's store_instances sends for `ds` (pydicom.dcmwrite's defaults)."""
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds)
    return buf.getvalue()


def parts_of(resp: requests.Response) -> list[tuple[dict, bytes]]:
    from requests_toolbelt.multipart import decoder

    return [({k.decode().lower(): v.decode() for k, v in p.headers.items()}, p.content)
            for p in decoder.MultipartDecoder.from_response(resp).parts]


# ==== §6.1 QIDO: 204, default attributes as stored, limits ==========================================
@pytest.mark.parametrize("path,params", [
    ("studies", {"PatientID": "nobody"}),
    ("series", {"Modality": "XX"}),
    ("instances", {"SOPInstanceUID": "1.2.3"}),
    ("studies/1.2.3.4/series", {}),
    ("studies/1.2.3.4/series/5.6/instances", {}),
])
def test_6_1_no_match_is_204_with_an_empty_body(env, path, params):
    """§2.3 [REAL]: "Search requests now return 204 for no matching results" (Google engineer, CLI #44)."""
    r = get(env, path, **params)
    assert r.status_code == 204 and r.content == b""


def test_6_1_golden_flow_of_googles_cli_integration_test(fresh):
    """§2.1 [REAL]: store 1.dcm, search, retrieve byte-identical, delete instance, search, store again,
    delete study (LRO polled), search - the golden file, replayed exactly."""
    url = fresh.dicomweb_url
    data = smp.to_bytes(smp.golden_1dcm())
    # `dcmweb store`: Content-Type application/dicom, no Accept, requires 200 and reads the XML
    stored = requests.post(f"{url}/studies", data=data, headers={"Content-Type": "application/dicom"})
    assert stored.status_code == 200 and stored.headers["Content-Type"].startswith("application/dicom+xml")
    found = ET.fromstring(stored.content).find("*[@keyword='ReferencedSOPSequence']//*[@keyword='RetrieveURL']*")
    assert found.text == f"{url}/studies/111/series/111/instances/111"
    # `dcmweb search studies` -> GET studies?limit=5000
    search = requests.get(f"{url}/studies?limit=5000")
    assert search.status_code == 200
    assert search.json() == smp.GOLDEN_STUDY_SEARCH
    # retrieve with the CLI's default Accept: the uploaded Part-10 file, byte for byte, single part
    back = requests.get(f"{url}/studies/111/series/111/instances/111",
                        headers={"Accept": "application/dicom; transfer-syntax=*"})
    assert back.status_code == 200 and back.content == data
    assert back.headers["Content-Type"].startswith("application/dicom")
    # delete the instance: {} and the study is gone from search (204, printed as [] by the CLI)
    gone = requests.delete(f"{url}/studies/111/series/111/instances/111")
    assert gone.status_code == 200 and gone.json() == {}
    assert requests.get(f"{url}/studies?limit=5000").status_code == 204
    # store again, delete the study: an operation, polled until done, then search is empty again
    assert requests.post(f"{url}/studies", data=data, headers={"Content-Type": "application/dicom"}).status_code == 200
    op = requests.delete(f"{url}/studies/111").json()
    assert set(op) == {"name"} and op["name"].startswith(f"{fresh.dataset}/operations/")
    assert wait_operation(fresh.hc, op["name"])["response"] == {"@type": "type.googleapis.com/google.protobuf.Empty"}
    assert requests.get(f"{url}/studies?limit=5000").status_code == 204


STUDY_DEFAULTS = {"00080005", "00080020", "00080030", "00080050", "00080056", "00080090", "00080201", "00100010",
                  "00100020", "00100030", "00100040", "0020000D", "00200010"}
SERIES_DEFAULTS = {"00080005", "00080060", "00080201", "0008103E", "0020000E", "00400244", "00400245", "00400275"}
INSTANCE_DEFAULTS = {"00080005", "00080016", "00080018", "00080056", "00080201", "00200013", "00280010", "00280011",
                     "00280100", "00280008"}
PARENTS = {"0020000D", "0020000E"}   # our choice: series/instance results name their parents


def test_6_1_default_attributes_per_level_only_as_stored(env):
    """CONF §1.4 default lists; §2.1: omitted when absent, never synthesised (no InstanceAvailability,
    ModalitiesInStudy, NumberOf*Related*)."""
    study = get(env, "studies", PatientID="PID-CT1").json()[0]
    assert set(study) <= STUDY_DEFAULTS and "00080056" not in study and "00080201" not in study
    for tag in ("00080061", "00201206", "00201208"):
        assert tag not in study
    assert study["00080005"] == {"vr": "CS", "Value": ["ISO_IR 100"]}        # present in the file: returned
    series = get(env, f"studies/{CT[0].StudyInstanceUID}/series").json()[0]
    assert set(series) <= SERIES_DEFAULTS | PARENTS and "00201209" not in series
    assert series["00080060"]["Value"] == ["CT"]
    inst = get(env, f"studies/{CT[0].StudyInstanceUID}/instances").json()[0]
    assert set(inst) <= INSTANCE_DEFAULTS | PARENTS and "00080056" not in inst
    assert inst["00280010"]["Value"] == [32]
    # a present-but-empty attribute is {"vr": ...} with no Value
    mono = get(env, "studies", PatientID="PID-conf-mono").json()[0]
    assert mono["00080090"] == {"vr": "PN"}


def test_6_1_default_and_maximum_limits_offset_cap_no_warning(env):
    """CONF §1.4: limit default 100 (studies, series) / 1,000 (instances); offset max 1,000,000;
    no Warning header when more results exist."""
    total_studies = N_TINY_STUDIES + len({d.StudyInstanceUID for d in SEEDED})
    studies = get(env, "studies")
    assert len(studies.json()) == 100 and "Warning" not in studies.headers
    assert len(get(env, "series").json()) == 100
    assert len(get(env, "instances").json()) == 1000
    assert len(get(env, "studies", limit="5000").json()) == total_studies
    assert len(get(env, "studies", limit="5001").json()) == total_studies     # above the maximum: capped, not refused
    assert len(get(env, "instances", limit="50000").json()) == N_TINY_STUDIES * TINY_PER_STUDY + len(SEEDED)
    assert "Warning" not in get(env, "studies", limit="1").headers
    assert get(env, "studies", offset="1000000").status_code == 204
    big = get(env, "studies", offset="1000001")
    assert big.status_code == 400 and "offset" in big.text


# ==== §6.2 QIDO: 400 for unsupported keys and fields; includefield forms; fuzzy; dates =============
@pytest.mark.parametrize("path,params,text", [
    ("instances", {"SOPClassUID": f.CT_IMAGE}, "SOPClassUID is not a supported instance"),
    ("studies", {"StudyDescription": "x"}, "StudyDescription is not a supported study"),
    ("studies", {"Modality": "CT"}, "Modality is not a supported study"),
    ("instances", {"includefield": "AvailableTransferSyntaxUID"}, "unknown/unsupported QIDO attribute: AvailableTransferSyntaxUID"),
    ("studies", {"includefield": "00081030,AvailableTransferSyntaxUID"}, "unknown/unsupported QIDO attribute: AvailableTransferSyntaxUID"),
    ("studies", {"includefield": "NoSuchAttribute"}, "unknown/unsupported QIDO attribute: NoSuchAttribute"),
])
def test_6_2_unsupported_keys_and_fields_are_400_with_googles_plain_message(env, path, params, text):
    """§2.2 [REAL]: wsidicom matches these strings in `response.text` of Google's 400s (PR #149)."""
    r = get(env, path, **params)
    assert r.status_code == 400 and text in r.text


def test_6_2_includefield_comma_separated_repeated_and_all(env):
    """CONF §1.4: comma-separated list or `all`; EZ-WSI sends one includefield per attribute."""
    one = get(env, "studies", PatientID="PID-CT1", includefield="00081030,00080060").json()[0]
    assert one["00081030"]["Value"] == ["CT chest phantom"]
    inst = requests.get(f"{env.dicomweb_url}/studies/{CT[0].StudyInstanceUID}/instances"
                        "?includefield=00020010&includefield=00280030&limit=1", headers=JSON).json()[0]
    assert inst["00020010"] == {"vr": "UI", "Value": [EXPLICIT_LE]} and "00280030" in inst
    every = get(env, f"studies/{CT[0].StudyInstanceUID}/instances", includefield="all", limit="1").json()[0]
    assert every["00080080"]["Value"] == [f.INSTITUTION] and "7FE00010" not in every


@pytest.mark.parametrize("query,match", [
    ("jo", True), ("Do", True), ("John Doe", True), ("ohn", False),
    ("sa", True), ("Zh", True), ("Sally^Zhang", True), ("ally", False)])
def test_6_2_fuzzy_matching_is_prefix_of_a_token(env, query, match):
    """CONF/HOWTO §1.4: a query token must be a prefix of a stored token (John^Doe, Sally^Zhang)."""
    r = get(env, "studies", PatientName=query, fuzzymatching="true")
    names = [s["00100010"]["Value"][0]["Alphabetic"] for s in (r.json() if r.status_code == 200 else [])]
    assert (("John^Doe" in names) or ("Sally^Zhang" in names)) == match, names


def test_6_2_fuzzy_applies_to_patient_name_only_and_date_ranges(env):
    assert get(env, "studies", PatientID="PID-conf", fuzzymatching="true").status_code == 204
    assert get(env, "studies", PatientName="John", fuzzymatching="false").status_code == 204
    in_2022 = get(env, "studies", StudyDate="20220101-20221231").json()
    assert {s["0020000D"]["Value"][0] for s in in_2022} >= {MONO.StudyInstanceUID, RGB.StudyInstanceUID}
    assert all("20220101" <= s["00080020"]["Value"][0] <= "20221231" for s in in_2022)
    assert get(env, "studies", StudyDate="2022").status_code == 400


# ==== §6.3 STOW: XML by default with keywords, 200, 409 "already exists", invalid files ============
def test_6_3_stow_answers_xml_with_keywords_by_default(fresh):
    """§1.3: XML is the default; the CLI reads ReferencedSOPSequence//RetrieveURL by keyword [REAL by use]."""
    body, ctype = multipart([smp.to_bytes(MONO)])
    r = requests.post(f"{fresh.dicomweb_url}/studies", data=body, headers={"Content-Type": ctype})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/dicom+xml")
    root = ET.fromstring(r.content)
    url = root.find("*[@keyword='ReferencedSOPSequence']//*[@keyword='RetrieveURL']*").text
    assert url == f"{fresh.dicomweb_url}/{ipath(MONO)}"
    assert root.find("*[@keyword='RetrieveURL']/Value").text == f"{fresh.dicomweb_url}/studies/{MONO.StudyInstanceUID}"


def test_6_3_duplicates_identical_200_different_409_already_exists(fresh):
    """§1.3: same bytes -> 200 (adapter: "if the md5 ... match, we will get a HTTP 200"); same UIDs,
    other content -> 409, FailureReason 272, private FailureDetail "already exists", in the order of
    the real responses quoted in healthcare-api-dicomweb-cli #46 and dcmjs #249."""
    url = f"{fresh.dicomweb_url}/studies"
    body, ctype = multipart([smp.to_bytes(MONO)])
    assert requests.post(url, data=body, headers={"Content-Type": ctype}).status_code == 200
    assert requests.post(url, data=body, headers={"Content-Type": ctype}).status_code == 200
    other = smp.mono8("conf-mono", size=32, frames=2)
    other.PatientName = "Someone^Else"
    r = requests.post(url, data=multipart([smp.to_bytes(other)])[0], headers={"Content-Type": ctype})
    assert r.status_code == 409
    root = ET.fromstring(r.content)
    assert root.find("*[@keyword='RetrieveURL']/Value").text == f"{fresh.dicomweb_url}/studies/{MONO.StudyInstanceUID}"
    item = root.find("*[@keyword='FailedSOPSequence']/Item")
    assert [a.get("keyword") for a in item] == ["FailureReason", "FailureDetail", "ReferencedSOPClassUID",
                                                 "ReferencedSOPInstanceUID"]
    detail = item.find("*[@tag='00090097']")
    assert detail.get("privateCreator") == "GOOGLE" and "already exists" in detail.find("Value").text
    assert item.find("*[@keyword='FailureReason']/Value").text == "272"


def test_6_3_invalid_dicom_and_a_file_without_preamble_are_409(fresh):
    """CONF §1.3: 409 "at least one resource wasn't successfully stored (e.g. invalid DICOM file)";
    dicom-fuse #20 [REAL]: "You'll also get a 409 conflict error if you try and upload an invalid
    DICOM file". A data set without the PS3.10 preamble is not a PS3.10 file (the emulator's choice,
    documented in dicomweb.py)."""
    url = f"{fresh.dicomweb_url}/studies"
    junk = requests.post(url, data=b"not dicom at all", headers={"Content-Type": "application/dicom"})
    assert junk.status_code == 409 and b"FailedSOPSequence" in junk.content
    in_memory = smp.mono8("conf-nopre", size=4)
    in_memory.preamble = None                                   # a data set built in memory has none
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, in_memory)                            # pydicom 3's default: no preamble, no DICM
    assert buf.getvalue()[128:132] != b"DICM"
    r = requests.post(url, data=buf.getvalue(), headers={"Content-Type": "application/dicom",
                                                         "Accept": "application/dicom+json"})
    assert r.status_code == 409
    detail = json.loads(r.json()["00081198"]["Value"][0]["00091097"]["Value"][0])["message"]
    assert "preamble" in detail and "DICM" in detail
    assert requests.get(f"{fresh.dicomweb_url}/studies").status_code == 204
    bad_type = requests.post(url, data=b"x", headers={"Content-Type": "text/plain"})
    assert bad_type.status_code in (400, 415)


# ==== §6.4 WADO: default Explicit VR LE, `*` unchanged, rendered jpeg/png, bulk-data URIs ==========
def test_6_4_default_retrieve_transcodes_to_explicit_vr_little_endian(env):
    """CONF §1.2: the default is Explicit VR LE, so compressed uploads come back decompressed."""
    for ds in (JPEG, RLE_STORED):
        r = get(env, ipath(ds), accept=None)
        (headers, body), = parts_of(r)
        assert f"transfer-syntax={EXPLICIT_LE}" in headers["content-type"]
        back = pydicom.dcmread(io.BytesIO(body))
        assert back.file_meta.TransferSyntaxUID == EXPLICIT_LE and not back["PixelData"].is_undefined_length
        assert back.pixel_array.shape == ds.pixel_array.shape
    rle_back = pydicom.dcmread(io.BytesIO(parts_of(get(env, ipath(RLE_STORED), accept=None))[0][1]))
    assert np.array_equal(rle_back.pixel_array, RLE_STORED.pixel_array)          # lossless stays exact
    star = get(env, ipath(RLE_STORED), accept="application/dicom; transfer-syntax=*")
    assert star.content == as_sent(RLE_STORED)                                   # stored bytes unchanged


def test_6_4_rendered_is_jpeg_or_png_for_instances_and_frames_only(env):
    """CONF §1.1/§1.2: rendered for Instance and Frames, image/jpeg (default) or image/png, no thumbnails."""
    base = ipath(CT[1])
    assert get(env, f"{base}/rendered", accept=None).headers["Content-Type"] == "image/jpeg"
    png = get(env, f"{base}/rendered", accept="image/png", viewport="16,16")
    assert Image.open(io.BytesIO(png.content)).format == "PNG" and Image.open(io.BytesIO(png.content)).size == (16, 16)
    assert get(env, f"{ipath(MONO)}/frames/2/rendered", accept="image/jpeg").status_code == 200
    assert get(env, f"{base}/rendered", accept="image/gif").status_code == 406
    series = f"studies/{CT[1].StudyInstanceUID}/series/{CT[1].SeriesInstanceUID}"
    for path in (f"{series}/rendered", f"{base}/thumbnail", f"{series}/thumbnail", f"studies/{CT[1].StudyInstanceUID}/thumbnail"):
        assert get(env, path, accept="image/jpeg").status_code == 404, path


def test_6_4_bulk_data_uris_follow_googles_definition_and_resolve(env):
    """CONF §1.2: PixelData, OB/OW/UN, OD/OF/OL/OV over 2 KiB, AT/FD/FL/UL/US/SV/UV with VM over 512."""
    meta = get(env, f"{ipath(BULK)}/metadata").json()[0]
    bulk = {t: meta[t] for t in ("7FE00010", "00091011", "00660017")}
    inline = {t: meta[t] for t in ("00181310", "00660016")}
    assert all("BulkDataURI" in v for v in bulk.values()) and all("BulkDataURI" not in v for v in inline.values())
    lut = meta["00283010"]["Value"][0]["00283006"]
    assert "BulkDataURI" in lut and meta["00189219"].get("BulkDataURI")
    got = requests.get(bulk["00091011"]["BulkDataURI"], headers={"Accept": "application/octet-stream; transfer-syntax=*"})
    assert got.status_code == 200 and got.content == b"\x01\x02\x03\x04"
    lut_bytes = requests.get(lut["BulkDataURI"], headers={"Accept": "application/octet-stream"}).content
    assert np.array_equal(np.frombuffer(lut_bytes, "<u2"), np.arange(600))
    px = parts_of(requests.get(bulk["7FE00010"]["BulkDataURI"]))
    assert px[0][1] == BULK.PixelData


def test_6_4_metadata_carries_file_meta_like_google(env):
    """EZ-WSI [GOOGLE-CODE] reads TransferSyntaxUID (0002,0010) from Google's metadata and QIDO."""
    meta = get(env, f"{ipath(JPEG)}/metadata").json()[0]
    assert meta["00020010"] == {"vr": "UI", "Value": [smp.JPEG_BASELINE]}
    assert meta["00020002"]["Value"] == [JPEG.SOPClassUID] and meta["00020003"]["Value"] == [JPEG.SOPInstanceUID]
    assert "00020000" not in meta                            # group lengths are not part of the JSON model
    inst = get(env, f"studies/{JPEG.StudyInstanceUID}/instances", includefield="00020010").json()[0]
    assert inst["00020010"]["Value"] == [smp.JPEG_BASELINE]


# ---- §1.2 the retrieve table: transcoding ---------------------------------------------------------
@pytest.mark.parametrize("ts", [EXPLICIT_LE, "1.2.840.10008.1.2", "1.2.840.10008.1.2.1.99", smp.RLE,
                                "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90"])
def test_1_2_instances_transcode_losslessly(env, ts):
    for ds in (CT[0], MR[0], MONO, RGB, JPEG):
        r = get(env, ipath(ds), accept=f'multipart/related; type="application/dicom"; transfer-syntax={ts}')
        assert r.status_code == 200, (ts, r.text[:300])
        (headers, body), = parts_of(r)
        assert f"transfer-syntax={ts}" in headers["content-type"]
        back = pydicom.dcmread(io.BytesIO(body))
        assert back.file_meta.TransferSyntaxUID == ts and back.SOPInstanceUID == ds.SOPInstanceUID
        assert np.array_equal(back.pixel_array, ds.pixel_array), (ts, ds.SOPInstanceUID)


def test_1_2_instances_transcode_to_jpeg_baseline_8_bit(env):
    for ds, photometric in ((MONO, "MONOCHROME2"), (RGB, "YBR_FULL_422"), (JPEG, "MONOCHROME2")):
        r = get(env, ipath(ds), accept=f"application/dicom; transfer-syntax={smp.JPEG_BASELINE}")
        assert r.status_code == 200 and r.headers["Content-Type"] == f"application/dicom; transfer-syntax={smp.JPEG_BASELINE}"
        back = pydicom.dcmread(io.BytesIO(r.content))
        assert back.file_meta.TransferSyntaxUID == smp.JPEG_BASELINE and back.PhotometricInterpretation == photometric
        assert back.LossyImageCompression == "01" and back.SOPInstanceUID == ds.SOPInstanceUID
        diff = np.abs(back.pixel_array.astype(int) - ds.pixel_array.astype(int))
        assert diff.mean() < 12, diff.mean()                  # lossy, but the same picture
    # more than 8 bits: not JPEG Baseline (Google: no JPEG for colour deeper than 8 bits; here none at all)
    r = get(env, ipath(CT[0]), accept=f"application/dicom; transfer-syntax={smp.JPEG_BASELINE}")
    assert r.status_code == 406 and "8-bit" in r.text


def test_1_2_frames_as_jpeg_png_and_rle(env):
    frames = f"{ipath(MONO)}/frames/1,2"
    jpeg = get(env, frames, accept='multipart/related; type="image/jpeg"')
    parts = parts_of(jpeg)
    assert jpeg.status_code == 200 and len(parts) == 2
    assert parts[0][0]["content-type"] == f"image/jpeg; transfer-syntax={smp.JPEG_BASELINE}"
    for k, (_, body) in enumerate(parts):
        img = np.asarray(Image.open(io.BytesIO(body)))
        assert np.abs(img.astype(int) - MONO.pixel_array[k].astype(int)).mean() < 6
    png = get(env, f"{ipath(MR[0])}/frames/1", accept="multipart/related; type=image/png")
    (headers, body), = parts_of(png)
    assert headers["content-type"] == "image/png"
    img = Image.open(io.BytesIO(body))
    assert img.format == "PNG" and np.array_equal(np.asarray(img), MR[0].pixel_array)     # 16-bit, lossless
    rgb_png = np.asarray(Image.open(io.BytesIO(parts_of(get(env, f"{ipath(RGB)}/frames/1",
                                                            accept='multipart/related; type="image/png"'))[0][1])))
    assert np.array_equal(rgb_png, RGB.pixel_array)
    rle = get(env, f"{ipath(CT[0])}/frames/1", accept='multipart/related; type="image/dicom-rle"')
    (headers, body), = parts_of(rle)
    assert headers["content-type"] == f"image/dicom-rle; transfer-syntax={smp.RLE}"
    from pydicom.pixels.decoders import RLELosslessDecoder
    decoded = RLELosslessDecoder.as_array(pydicom.encaps.encapsulate([body]), rows=32, columns=32, samples_per_pixel=1, bits_allocated=16,
                                          bits_stored=16, pixel_representation=1, number_of_frames=1,
                                          photometric_interpretation="MONOCHROME2")[0]
    assert np.array_equal(decoded, CT[0].pixel_array)
    for media, ts in (("image/jls", "1.2.840.10008.1.2.4.80"), ("image/jp2", "1.2.840.10008.1.2.4.90")):
        (headers, body), = parts_of(get(env, f"{ipath(MR[0])}/frames/1", accept=f'multipart/related; type="{media}"'))
        assert headers["content-type"] == f"{media}; transfer-syntax={ts}"
        from pydicom.pixels import get_decoder
        back = get_decoder(ts).as_array(pydicom.encaps.encapsulate([body]), rows=32, columns=32, samples_per_pixel=1,
                                        bits_allocated=16, bits_stored=12, pixel_representation=0, number_of_frames=1,
                                        photometric_interpretation="MONOCHROME2")[0]
        assert np.array_equal(back, MR[0].pixel_array), media
    # the stored JPEG frame is served as it is stored when image/jpeg is asked for
    stored = parts_of(get(env, f"{ipath(JPEG)}/frames/1", accept='multipart/related; type="image/jpeg"'))
    assert stored[0][1] == next(pydicom.encaps.generate_frames(JPEG.PixelData, number_of_frames=1))
    # PNG has no signed samples; JPEG Baseline no 16 bits
    assert get(env, f"{ipath(CT[0])}/frames/1", accept='multipart/related; type="image/png"').status_code == 406
    assert get(env, f"{ipath(CT[0])}/frames/1", accept='multipart/related; type="image/jpeg"').status_code == 406


@pytest.mark.parametrize("ts,method", [("1.2.840.10008.1.2.4.81", "ISO_14495_1"), ("1.2.840.10008.1.2.4.91", "ISO_15444_1")])
def test_1_2_instances_transcode_to_jpeg_ls_near_lossless_and_jpeg_2000(env, ts, method):
    for ds in (CT[0], MR[0], MONO, RGB):
        r = get(env, ipath(ds), accept=f"application/dicom; transfer-syntax={ts}")
        assert r.status_code == 200, r.text[:300]
        back = pydicom.dcmread(io.BytesIO(r.content))
        assert back.file_meta.TransferSyntaxUID == ts and back.LossyImageCompressionMethod == method
        bits = ds.BitsStored
        diff = np.abs(back.pixel_array.astype(int) - ds.pixel_array.astype(int))
        assert diff.mean() < 2 ** bits / 64, (ts, ds.SOPInstanceUID, diff.mean())
    rgb = pydicom.dcmread(io.BytesIO(get(env, ipath(RGB), accept="application/dicom; transfer-syntax=1.2.840.10008.1.2.4.90").content))
    assert rgb.PhotometricInterpretation == "YBR_RCT" and np.array_equal(rgb.pixel_array, RGB.pixel_array)


def jpeg_header(stream: bytes) -> dict:
    """The frame header (SOFn, precision P, components and their sampling) and the first scan's
    predictor (Ss) of a JPEG stream."""
    i, out = 2, {}
    while i + 4 <= len(stream):
        marker, length = stream[i + 1], int.from_bytes(stream[i + 2:i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            n = stream[i + 9]
            out.update(sof=marker - 0xC0, precision=stream[i + 4],
                       sampling=[(stream[i + 11 + 3 * k] >> 4, stream[i + 11 + 3 * k] & 15) for k in range(n)])
        if marker == 0xDA:
            out["predictor"] = stream[i + 5 + 2 * stream[i + 4]]
            return out
        i += 2 + length
    return out


@pytest.mark.parametrize("ts", ["1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"])
def test_1_2_instances_and_frames_transcode_to_jpeg_lossless(env, ts):
    """JPEG Lossless (Process 14, first-order predictor): every sample back exactly, 8-bit grey and
    colour, 12-bit and signed 16-bit grey; decoded by pydicom's decoder (pylibjpeg-libjpeg)."""
    smp.need_jpeg_decoder()
    for ds in (CT[0], MR[0], MONO, RGB, JPEG):
        r = get(env, ipath(ds), accept=f'multipart/related; type="application/dicom"; transfer-syntax={ts}')
        assert r.status_code == 200, (ts, r.text[:300])
        (headers, body), = parts_of(r)
        assert f"transfer-syntax={ts}" in headers["content-type"]
        back = pydicom.dcmread(io.BytesIO(body))
        assert back.file_meta.TransferSyntaxUID == ts and back.SOPInstanceUID == ds.SOPInstanceUID
        assert back["PixelData"].is_undefined_length                  # encapsulated, one fragment a frame
        count = int(back.get("NumberOfFrames", 1))
        frames = list(pydicom.encaps.generate_frames(back.PixelData, number_of_frames=count))
        assert len(frames) == count
        head = jpeg_header(frames[0])
        assert (head["sof"], head["predictor"], head["precision"]) == (3, 1, ds.BitsStored), head
        assert back.PhotometricInterpretation == ds.PhotometricInterpretation and back.BitsStored == ds.BitsStored
        assert back.get("LossyImageCompression") == ds.get("LossyImageCompression")   # only the stored JPEG was lossy
        assert np.array_equal(back.pixel_array, ds.pixel_array), (ts, ds.SOPInstanceUID)
    from pydicom.pixels import get_decoder
    accept = f'multipart/related; type="image/jpeg"; transfer-syntax={ts}'
    (headers, body), = parts_of(get(env, f"{ipath(CT[1])}/frames/1", accept=accept))
    assert headers["content-type"] == f"image/jpeg; transfer-syntax={ts}"
    back = get_decoder(ts).as_array(pydicom.encaps.encapsulate([body]), rows=32, columns=32, samples_per_pixel=1,
                                    bits_allocated=16, bits_stored=16, pixel_representation=1, number_of_frames=1,
                                    photometric_interpretation="MONOCHROME2")[0]
    assert np.array_equal(back, CT[1].pixel_array)


def test_1_2_instances_and_frames_transcode_to_jpeg_extended_8_and_12_bit(env):
    smp.need_jpeg_decoder()                                   # 12-bit JPEG: Pillow reads only 8
    ts = "1.2.840.10008.1.2.4.51"
    for ds, photometric, sof, precision in ((MONO, "MONOCHROME2", 0, 8), (RGB, "YBR_FULL_422", 0, 8),
                                            (JPEG, "MONOCHROME2", 0, 8), (MR[0], "MONOCHROME2", 1, 12)):
        r = get(env, ipath(ds), accept=f"application/dicom; transfer-syntax={ts}")
        assert r.status_code == 200 and r.headers["Content-Type"] == f"application/dicom; transfer-syntax={ts}"
        back = pydicom.dcmread(io.BytesIO(r.content))
        assert back.file_meta.TransferSyntaxUID == ts and back.PhotometricInterpretation == photometric
        assert (back.LossyImageCompression, back.LossyImageCompressionMethod) == ("01", "ISO_10918_1")
        assert float(back.LossyImageCompressionRatio) > 1 and back.SOPInstanceUID == ds.SOPInstanceUID
        assert (back.BitsStored, back.HighBit) == (precision, precision - 1)
        head = jpeg_header(next(pydicom.encaps.generate_frames(back.PixelData, number_of_frames=1)))
        # SOF0 is the 8-bit sequential Huffman process, a subset of Process 2 & 4; 12-bit is SOF1
        assert (head["sof"], head["precision"]) == (sof, precision), head
        if ds is RGB:
            assert head["sampling"] == [(2, 1), (1, 1), (1, 1)]                  # 4:2:2
        diff = np.abs(back.pixel_array.astype(int) - ds.pixel_array.astype(int))
        assert diff.mean() < (12 if precision == 8 else 64), (ds.SOPInstanceUID, diff.mean())   # as Baseline's
    # 16 bits stored is more than lossy JPEG holds
    r = get(env, ipath(CT[0]), accept=f"application/dicom; transfer-syntax={ts}")
    assert r.status_code == 406 and "12-bit" in r.text
    accept = f'multipart/related; type="image/jpeg"; transfer-syntax={ts}'
    assert get(env, f"{ipath(CT[0])}/frames/1", accept=accept).status_code == 406
    (headers, body), = parts_of(get(env, f"{ipath(MR[1])}/frames/1", accept=accept))
    assert headers["content-type"] == f"image/jpeg; transfer-syntax={ts}"
    assert jpeg_header(body)["precision"] == 12


@pytest.mark.parametrize("ts,geometry,why", [
    ("1.2.840.10008.1.2.4.51", {"spp": 1, "bits": 16, "stored": 12, "signed": True}, "unsigned samples"),
    ("1.2.840.10008.1.2.4.51", {"spp": 3, "bits": 16, "stored": 12, "signed": False}, "colour of 8 bits"),
    ("1.2.840.10008.1.2.4.70", {"spp": 3, "bits": 16, "stored": 16, "signed": False}, "colour of 8 bits"),
    ("1.2.840.10008.1.2.4.57", {"spp": 1, "bits": 8, "stored": 1, "signed": False}, "2- to 16-bit"),
    ("1.2.840.10008.1.2.4.70", {"spp": 4, "bits": 8, "stored": 8, "signed": False}, "1 or 3 samples"),
    ("1.2.840.10008.1.2.4.70", {"spp": 1, "bits": 32, "stored": 32, "signed": False}, "8- or 16-bit"),
])
def test_1_2_jpeg_refuses_pixels_it_cannot_hold(ts, geometry, why):
    """Google "cannot transcode non-monochrome images with bit depth > 8 to JPEG" (CONF §1.2); DCT
    JPEG has no sign, lossless JPEG 2 to 16 bits: 406 with the reason, before any pixel is read."""
    from provision.emulator.errors import ApiError
    from provision.emulator.healthcare import transcode

    g = {"rows": 4, "cols": 4, "photometric": "MONOCHROME2", **geometry}
    with pytest.raises(ApiError) as refused:
        transcode.frames_as("/nonexistent", EXPLICIT_LE, g, [1], "image/jpeg", ts)
    assert refused.value.http_status == 406 and why in str(refused.value), str(refused.value)


@pytest.mark.parametrize("ts", ["1.2.840.10008.1.2.4.110", "1.2.840.10008.1.2.4.201"])
def test_1_2_google_syntaxes_without_an_encoder_here_say_so(env, ts):
    """Google serves these (CONF §1.2); the emulator has no encoder: an honest 406, never a wrong body."""
    r = get(env, ipath(MONO), accept=f"application/dicom; transfer-syntax={ts}")
    assert r.status_code == 406 and "no encoder" in r.text


@pytest.mark.parametrize("ts", ["1.2.840.10008.1.2.4.92", "1.2.840.10008.1.2.4.100", "1.2.3.4"])
def test_1_2_syntaxes_outside_googles_table_are_406(env, ts):
    r = get(env, ipath(MONO), accept=f"application/dicom; transfer-syntax={ts}")
    assert r.status_code == 406 and "not one Google" in r.text


# ==== §6.5 (DICOMweb part) and the status tables of §1.2/§1.5 ======================================
def test_6_5_study_and_series_delete_are_operations_instance_delete_is_empty(fresh):
    dw = fresh.dicomweb
    dw.store_instances(CT + MR)
    url = fresh.dicomweb_url
    d = CT[0]
    assert requests.delete(f"{url}/{ipath(d)}").json() == {}
    op = requests.delete(f"{url}/studies/{d.StudyInstanceUID}/series/{d.SeriesInstanceUID}").json()
    assert set(op) == {"name"} and op["name"].startswith(f"{fresh.dataset}/operations/")
    done = wait_operation(fresh.hc, op["name"])
    assert done["metadata"]["@type"] == "type.googleapis.com/google.cloud.healthcare.v1.OperationMetadata"
    op = requests.delete(f"{url}/studies/{MR[0].StudyInstanceUID}").json()
    assert wait_operation(fresh.hc, op["name"])["done"] is True
    deadline = time.time() + 10
    while requests.get(f"{url}/studies").status_code != 204 and time.time() < deadline:
        time.sleep(0.05)
    assert requests.get(f"{url}/studies").status_code == 204


@pytest.mark.parametrize("method,path", [
    ("GET", "studies/1.2.3"), ("GET", "studies/1.2.3/metadata"), ("GET", "studies/1.2.3/series/4.5"),
    ("GET", "studies/1.2.3/series/4.5/instances/6.7/frames/1"), ("GET", "studies/1.2.3/series/4.5/instances/6.7/rendered"),
    ("DELETE", "studies/1.2.3"), ("DELETE", "studies/1.2.3/series/4.5/instances/6.7")])
def test_missing_resources_are_403_as_the_conformance_statement_lists(env, method, path):
    """CONF §1.2/§1.5: 403 "no access or the resource doesn't exist"; no 404 in Google's tables."""
    r = requests.request(method, f"{env.dicomweb_url}/{path}")
    assert r.status_code == 403 and r.json()["error"]["status"] == "PERMISSION_DENIED"


def test_1_2_asking_for_the_stored_syntax_is_never_a_transcode(fresh):
    """An instance stored in a syntax the emulator cannot encode is still served as stored when that
    very syntax (or `*`) is asked for."""
    ds = smp.mono8("conf-j2k", size=4)
    ds.PixelData = pydicom.encaps.encapsulate([b"\xff\x4f\xff\x51opaque-j2k-codestream"])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.90"
    fresh.dicomweb.store_instances([ds])
    for accept in ("application/dicom; transfer-syntax=1.2.840.10008.1.2.4.90", "application/dicom; transfer-syntax=*"):
        r = requests.get(f"{fresh.dicomweb_url}/{ipath(ds)}", headers={"Accept": accept})
        assert r.status_code == 200 and r.content == as_sent(ds), accept
    frame = requests.get(f"{fresh.dicomweb_url}/{ipath(ds)}/frames/1", headers={"Accept": 'multipart/related; type="image/jp2"'})
    assert frame.status_code == 200 and b"opaque-j2k-codestream" in frame.content
    # decoding it is another matter: no decoder here for this fake stream -> 406, not a broken body
    assert requests.get(f"{fresh.dicomweb_url}/{ipath(ds)}", headers={"Accept": "application/dicom"}).status_code == 406


def test_1_2_stored_jpeg_ls_and_jpeg_2000_are_transcoded_from(fresh):
    """CONF §1.2 lists JPEG-LS and JPEG 2000 among the syntaxes Google transcodes *from*."""
    sources = []
    for key, ts in (("conf-src-jls", "1.2.840.10008.1.2.4.80"), ("conf-src-j2k", "1.2.840.10008.1.2.4.90")):
        ds = f.mr_series(key, slices=1, size=32, patient_id=f"PID-{key}")[0]
        ds.compress(ts)
        sources.append(ds)
    fresh.dicomweb.store_instances(sources)
    for ds in sources:
        (headers, body), = parts_of(requests.get(f"{fresh.dicomweb_url}/{ipath(ds)}"))     # default: Explicit VR LE
        back = pydicom.dcmread(io.BytesIO(body))
        assert back.file_meta.TransferSyntaxUID == EXPLICIT_LE and np.array_equal(back.pixel_array, ds.pixel_array)
        frame = requests.get(f"{fresh.dicomweb_url}/{ipath(ds)}/frames/1", headers={"Accept": "multipart/related; type=image/png"})
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(parts_of(frame)[0][1]))), ds.pixel_array)
