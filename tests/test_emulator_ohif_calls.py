"""Every request the OHIF viewer (3.13, Google data source) makes, replayed as raw HTTP with
OHIF's exact query strings, Accept headers and an Origin: each must be a 2xx carrying
Access-Control-Allow-Origin, and a token-bearing request's CORS preflight must be allowed.
Source: shared/reference/ohif.md §1a-1d (observed against a stub)."""
from __future__ import annotations

import io
import json

import pytest
import requests
from PIL import Image

import dicom_factory as f
from emulator_helpers import ready_store
from provision.emulator.server import EmulatorServer
from provision.emulator.world import Options

ORIGIN = "http://127.0.0.1:3000"
JSON = {"Accept": "application/dicom+json"}
STUDY_FIELDS = "00081030%2C00080060%2C00080090%2C00100030"
CT = f.ct_series("ohif-ct", slices=5, size=64, patient_name="Smoke^Test", patient_id="SMOKE-1")
PRIOR = f.ct_series("ohif-prior", slices=2, size=32, patient_name="Smoke^Test", patient_id="SMOKE-1",
                    study_date="20100101", accession="ACC-PRIOR")
MR = f.mr_series("ohif-mr", slices=3)


@pytest.fixture(scope="module")
def env():
    emu = EmulatorServer(Options(host="127.0.0.1", port=0)).start()
    try:
        e = ready_store(emu, project="smoke-proj", dataset="smoke-ds", store="smoke-store")
        e.dicomweb.store_instances(CT + PRIOR + MR)
        yield e
    finally:
        emu.stop()


def get(url: str, accept: str | None = None, token: str | None = None) -> requests.Response:
    """A browser-like GET from the viewer's origin (the query string is sent exactly as written)."""
    headers = {"Origin": ORIGIN, "Referer": f"{ORIGIN}/"}
    if accept:
        headers["Accept"] = accept
    if token:
        headers["Authorization"] = f"Bearer {token}"
    r = requests.get(url, headers=headers)
    assert 200 <= r.status_code < 300, f"{url}: {r.status_code} {r.text[:300]}"
    assert r.headers.get("Access-Control-Allow-Origin") in (ORIGIN, "*"), url
    return r


def test_study_list_requests(env):
    root = env.dicomweb_url
    # 1. the study list (both forms seen: OHIF 3.13 and the Google config's fuzzymatching=false)
    r = get(f"{root}/studies?limit=101&offset=0&fuzzymatching=true&includefield={STUDY_FIELDS}", JSON["Accept"])
    rows = r.json()
    assert len(rows) == 3 and r.headers["Content-Type"].startswith("application/dicom+json")
    row = next(x for x in rows if x["0020000D"]["Value"][0] == CT[0].StudyInstanceUID)
    for tag in ("0020000D", "00080020", "00080030", "00080050", "00100020", "00100010", "00100030",
                "00081030", "00080090"):
        assert tag in row, tag
    # as on Google: no ModalitiesInStudy or instance count (not in its default study attributes)
    assert "00080061" not in row and "00201208" not in row
    assert row["00100010"]["Value"][0]["Alphabetic"] == "Smoke^Test"
    assert len(get(f"{root}/studies?limit=101&offset=0&fuzzymatching=false&includefield=00081030,00080060",
                   JSON["Accept"]).json()) == 3
    # the list's filters: name (fuzzy), patient ID by tag, accession, date range
    assert len(get(f"{root}/studies?PatientName=smo&limit=101&offset=0&fuzzymatching=true&includefield={STUDY_FIELDS}",
                   JSON["Accept"]).json()) == 2
    assert len(get(f"{root}/studies?AccessionNumber=ACC-PRIOR&limit=101&offset=0&fuzzymatching=true",
                   JSON["Accept"]).json()) == 1
    assert len(get(f"{root}/studies?StudyDate=20100101-20151231&limit=101&offset=0&fuzzymatching=true",
                   JSON["Accept"]).json()) == 2
    st, se = CT[0].StudyInstanceUID, CT[0].SeriesInstanceUID
    # 2. a row clicked
    series = get(f"{root}/studies/{st}/series?includefield=0008103E%2C00080021", JSON["Accept"]).json()
    assert series[0]["0020000E"]["Value"] == [se] and series[0]["0008103E"]["Value"] == ["Axial 2.5mm"]
    # 3. the series thumbnail (thumbnailRendering 'rendered'): Google renders instances and frames only
    # (conformance statement), so it fails there and here, and the viewer falls back to 4.
    thumb = requests.get(f"{root}/studies/{st}/series/{se}/rendered?viewport=256%2C256",
                         headers={"Origin": ORIGIN, "Accept": "image/jpeg"})
    assert thumb.status_code == 404
    # 4. the fallback: first instance, then its rendering
    inst = get(f"{root}/studies/{st}/series/{se}/instances?limit=1&includefield=00080018", JSON["Accept"]).json()
    sop = inst[0]["00080018"]["Value"][0]
    img = get(f"{root}/studies/{st}/series/{se}/instances/{sop}/rendered?viewport=256%2C256", "image/jpeg")
    assert Image.open(io.BytesIO(img.content)).format == "JPEG"
    # thumbnailRequestStrategy bulkDataRetrieve: ?accept=
    get(f"{root}/studies/{st}/series/{se}/instances/{sop}/rendered?accept=image%2Fjpeg", "*/*")


def test_viewer_requests(env):
    root = env.dicomweb_url
    st, se = CT[0].StudyInstanceUID, CT[0].SeriesInstanceUID
    fields = "00081030%2C00080060%2C00080090%2C00100030"
    # 5. existence check and study browser (sent twice), also several UIDs joined with a backslash
    for _ in range(2):
        found = get(f"{root}/studies?limit=101&offset=0&fuzzymatching=true&includefield={fields}&StudyInstanceUID={st}",
                    JSON["Accept"]).json()
        assert [x["0020000D"]["Value"][0] for x in found] == [st]
    two = get(f"{root}/studies?limit=101&offset=0&fuzzymatching=true&StudyInstanceUID={st}%5C{MR[0].StudyInstanceUID}",
              JSON["Accept"]).json()
    assert len(two) == 2
    # 6. the series of the study
    series = get(f"{root}/studies/{st}/series?includefield=00080021%2C00080031%2C0008103E%2C00200011", JSON["Accept"]).json()
    assert series[0]["00200011"]["Value"] == [1] and series[0]["00080031"]["Value"] == ["101600"]
    # 7. prior studies by the PatientID tag
    priors = get(f"{root}/studies?00100020=SMOKE-1&limit=101&offset=0&fuzzymatching=true&includefield={fields}",
                 JSON["Accept"]).json()
    assert sorted(x["0020000D"]["Value"][0] for x in priors) == sorted([st, PRIOR[0].StudyInstanceUID])
    # 8. series metadata (lazy load), and the whole study when lazy loading is off
    meta = get(f"{root}/studies/{st}/series/{se}/metadata", JSON["Accept"]).json()
    assert len(meta) == 5
    needed = ("00080016", "0020000D", "0020000E", "00080018", "00080060", "00280010", "00280011", "00280100",
              "00280101", "00280102", "00280103", "00280002", "00280004", "00200032", "00200037", "00280030",
              "00281050", "00281051", "00281052", "00281053")
    for tag in needed:
        assert tag in meta[0], tag
    assert meta[0]["7FE00010"]["BulkDataURI"].startswith(root)
    assert len(get(f"{root}/studies/{st}/metadata", JSON["Accept"]).json()) == 5
    # 9. frames, OHIF's unquoted Accept (and the quoted form when omitQuotation is off)
    for m in meta:
        sop = m["00080018"]["Value"][0]
        for accept in ("multipart/related; type=application/octet-stream; transfer-syntax=*",
                       'multipart/related; type="application/octet-stream"; transfer-syntax="*"'):
            r = get(f"{root}/studies/{st}/series/{se}/instances/{sop}/frames/1", accept)
            ctype = r.headers["Content-Type"]
            assert ctype.startswith('multipart/related; type="application/octet-stream"; '
                                    "transfer-syntax=1.2.840.10008.1.2.1; boundary=")
            boundary = ctype.rsplit("boundary=", 1)[1].encode()
            head, _, rest = r.content.partition(b"\r\n\r\n")
            assert head.startswith(b"--" + boundary)
            pixels = rest[:rest.index(b"\r\n--" + boundary + b"--")]
            expected = next(d for d in CT if d.SOPInstanceUID == sop)
            assert pixels == bytes(expected.PixelData)
    # 10. the middle instance's rendering
    middle = meta[len(meta) // 2]["00080018"]["Value"][0]
    get(f"{root}/studies/{st}/series/{se}/instances/{middle}/rendered?viewport=256%2C256", "image/jpeg")


def test_token_requests_and_preflights(env):
    root = env.dicomweb_url
    st = CT[0].StudyInstanceUID
    url = f"{root}/studies?limit=101&offset=0&fuzzymatching=true&includefield={STUDY_FIELDS}"
    pre = requests.options(url, headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET",
                                         "Access-Control-Request-Headers": "authorization"})
    assert 200 <= pre.status_code < 300
    assert pre.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "authorization" in pre.headers["Access-Control-Allow-Headers"].lower()
    assert "GET" in pre.headers["Access-Control-Allow-Methods"] and "POST" in pre.headers["Access-Control-Allow-Methods"]
    # a token from the ?token= parameter or OIDC (not an emulator principal): accepted without --enforce-iam
    assert len(get(url, JSON["Accept"], token="ya29.some-oauth-token").json()) == 3
    frames = f"{root}/studies/{st}/series/{CT[0].SeriesInstanceUID}/instances/{CT[0].SOPInstanceUID}/frames/1"
    quoted = requests.options(frames, headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET",
                                               "Access-Control-Request-Headers": "accept,authorization"})
    assert quoted.status_code == 200 and "accept" in quoted.headers["Access-Control-Allow-Headers"].lower()
    stow = requests.options(f"{root}/studies", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                                                        "Access-Control-Request-Headers": "authorization,content-type"})
    assert stow.status_code == 200


def test_upload_from_the_viewer(env):
    """dicomUploadEnabled: STOW from the browser (multipart, Accept application/dicom+json)."""
    extra = f.mr_series("ohif-upload", slices=1)[0]
    boundary = "ohifboundary"
    body = (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + f.to_bytes(extra)
            + f"\r\n--{boundary}--".encode())
    r = requests.post(f"{env.dicomweb_url}/studies", data=body, headers={
        "Origin": ORIGIN, "Accept": "application/dicom+json",
        "Content-Type": f"multipart/related; type=\"application/dicom\"; boundary={boundary}"})
    assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert r.json()["00081199"]["Value"][0]["00081155"]["Value"] == [extra.SOPInstanceUID]
    env.dicomweb.delete_study(extra.StudyInstanceUID)


def test_configuration_dialog_walk(env):
    """ohif.dataSourceConfigurationAPI.google: projects, locations, datasets, stores (with pageToken paging)."""
    base = env.url
    projects = get(f"{base}/v1/projects", "*/*").json()["projects"]
    assert any(p["projectId"] == "smoke-proj" for p in projects)
    project = get(f"{base}/v1/projects/smoke-proj", "*/*").json()
    assert project["projectId"] == "smoke-proj"
    locations = get(f"{base}/v1/projects/smoke-proj/locations", "*/*").json()["locations"]
    location = next(loc["name"] for loc in locations if loc["name"].endswith("/us-central1"))
    datasets = get(f"{base}/v1/{location}/datasets", "*/*").json()["datasets"]
    assert [d["name"] for d in datasets] == [env.dataset]
    # more stores than one page: OHIF follows nextPageToken with ?pageToken=
    s = requests.Session()
    for i in range(100):
        r = s.post(f"{base}/v1/{env.dataset}/dicomStores?dicomStoreId=extra-{i:03d}", json={})
        assert r.status_code == 200, r.text
    try:
        names, url = [], f"{base}/v1/{env.dataset}/dicomStores"
        page = get(url, "*/*").json()
        names += [x["name"] for x in page["dicomStores"]]
        while page.get("nextPageToken"):
            page = get(f"{url}?pageToken={page['nextPageToken']}", "*/*").json()
            names += [x["name"] for x in page["dicomStores"]]
        assert len(names) == 101 and env.store in names
        store = env.store
        root = f"{base}/v1/{store}/dicomWeb"
        assert len(get(f"{root}/studies?limit=101&offset=0&fuzzymatching=true&includefield={STUDY_FIELDS}",
                       JSON["Accept"]).json()) == 3
    finally:
        for i in range(100):
            s.delete(f"{base}/v1/{env.dataset}/dicomStores/extra-{i:03d}")


def test_errors_reach_the_browser_with_cors(env):
    """The dialog shows `error.message` of a non-2xx answer: it must be readable cross-origin."""
    r = requests.get(f"{env.url}/v1/{env.dataset}/dicomStores/missing/dicomWeb/studies", headers={"Origin": ORIGIN})
    assert r.status_code == 403 and r.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "message" in json.loads(r.content)["error"]
