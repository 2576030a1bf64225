"""Orthanc's DICOMweb client (Debian `orthanc` + `orthanc-dicomweb`, unmodified) with the emulator
configured as one of its DICOMweb servers (`DicomWeb.Servers`): query the emulator through
Orthanc, retrieve studies from it into Orthanc, and STOW Orthanc's instances back into it.

Orthanc 1.10 listens on every interface, so it runs - with the emulator beside it - in a private
network namespace that has only loopback (tests/clients/_orthanc_netns.py, started with
`unshare`). This test process reaches both through that helper, which performs each HTTP request
inside the namespace (a requests transport adapter): every exchange between Orthanc and the
emulator is real HTTP over 127.0.0.1. `make test` installs Orthanc (`make orthanc`)."""
from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pydicom
import pytest
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers

import dicom_factory as f
import dicomweb_samples as smp

HERE = Path(__file__).resolve().parent
ORTHANC = "/usr/sbin/Orthanc"
PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"

CT = f.ct_series("orth-ct", slices=3, size=32)
MR = f.mr_series("orth-mr", slices=2, size=32)
JPEG = smp.jpeg_baseline_stored("orth-jpeg")


class NamespaceAdapter(BaseAdapter):
    """A requests transport that has the helper inside the namespace perform each request."""

    def __init__(self, proc: subprocess.Popen):
        super().__init__()
        self.proc = proc
        self.lock = threading.Lock()

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        elif not isinstance(body, (bytes, bytearray)):
            body = b"".join(body)
        msg = {"method": request.method, "url": request.url, "headers": dict(request.headers),
               "body": base64.b64encode(bytes(body)).decode(), "timeout": 120}
        with self.lock:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        if not line:
            raise requests.ConnectionError(f"the namespace helper exited (status {self.proc.poll()})", request=request)
        answer = json.loads(line)
        if "error" in answer:
            raise requests.ConnectionError(answer["error"], request=request)
        resp = requests.Response()
        resp.status_code = answer["status"]
        resp.headers = CaseInsensitiveDict(answer["headers"])
        resp._content = base64.b64decode(answer["body"])
        resp._content_consumed = True
        resp.raw = io.BytesIO(resp._content)
        resp.encoding = get_encoding_from_headers(resp.headers)
        resp.url, resp.request, resp.reason = request.url, request, ""
        return resp

    def close(self):
        pass


@pytest.fixture(scope="module")
def peer():
    """Orthanc and the emulator in their namespace; yields (session, urls). Stopped afterwards."""
    missing = [p for p in (ORTHANC, PLUGIN) if not os.path.exists(p)] + \
        [t for t in ("unshare", "ip") if shutil.which(t) is None]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run `make orthanc` (Debian orthanc, orthanc-dicomweb, iproute2)")
    unshare = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-rn"]
    proc = subprocess.Popen([*unshare, sys.executable, str(HERE / "_orthanc_netns.py")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        first = proc.stdout.readline()
        if not first:
            pytest.fail(f"the Orthanc namespace helper did not start (status {proc.wait(timeout=30)})")
        urls = json.loads(first)
        session = requests.Session()
        adapter = NamespaceAdapter(proc)
        session.mount("http://", adapter)
        yield session, urls
    finally:
        if proc.poll() is None:
            try:
                proc.stdin.write(json.dumps({"stop": True}) + "\n")
                proc.stdin.flush()
                proc.wait(timeout=30)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def seeded(peer):
    """The emulator's store holds CT, MR and a JPEG Baseline instance, stored through dicomweb-client."""
    from dicomweb_client import DICOMwebClient

    session, urls = peer
    client = DICOMwebClient(url=urls["dicomweb"], session=session)
    client.store_instances([pydicom.dcmread(io.BytesIO(smp.to_bytes(d))) for d in CT + MR + [JPEG]])
    return session, urls, client


def orthanc(peer_or_seeded, method: str, path: str, body=None, **kw) -> requests.Response:
    session, urls = peer_or_seeded[0], peer_or_seeded[1]
    data = json.dumps(body) if isinstance(body, (dict, list)) else body
    return session.request(method, f"{urls['orthanc']}{path}", data=data, **kw)


def server(seeded) -> str:
    return f"/dicom-web/servers/{seeded[1]['server']}"


def test_orthanc_knows_the_emulator_as_a_dicomweb_server(peer):
    assert orthanc(peer, "GET", "/dicom-web/servers").json() == [peer[1]["server"]]
    system = orthanc(peer, "GET", "/system").json()
    assert system["Version"].startswith("1.")


def test_query_the_emulator_through_orthanc(seeded):
    """QIDO through Orthanc's `/get` (the raw DICOMweb answer) and `/qido` (parsed by the plugin)."""
    got = orthanc(seeded, "POST", f"{server(seeded)}/get",
                  {"Uri": "/studies", "Arguments": {"PatientID": "PID-CT1", "includefield": "StudyDescription"}})
    assert got.status_code == 200, got.text
    studies = got.json()
    assert [s["0020000D"]["Value"][0] for s in studies] == [CT[0].StudyInstanceUID]
    assert studies[0]["00081030"]["Value"] == ["CT chest phantom"]
    series = orthanc(seeded, "POST", f"{server(seeded)}/get", {"Uri": f"/studies/{CT[0].StudyInstanceUID}/series"})
    assert series.json()[0]["0020000E"]["Value"] == [CT[0].SeriesInstanceUID]
    meta = orthanc(seeded, "POST", f"{server(seeded)}/get",
                   {"Uri": f"/studies/{JPEG.StudyInstanceUID}/metadata"}).json()
    assert meta[0]["00020010"]["Value"] == [smp.JPEG_BASELINE]
    qido = orthanc(seeded, "POST", f"{server(seeded)}/qido", {"Uri": "/studies", "Arguments": {"PatientID": "PID-MR1"}})
    assert qido.status_code == 200, qido.text
    assert [s["0020000D"]["Value"] for s in qido.json()] == [MR[0].StudyInstanceUID]   # the plugin's own shape


def test_a_query_with_no_match_is_googles_204_which_orthanc_relays_or_chokes_on(seeded):
    """The emulator answers no match with Google's 204 and an empty body (google-evidence.md §2.3).
    Orthanc's raw `/get` relays it as an empty 200; its `/qido` expects a JSON array and fails with
    "Bad file format" - which it would do against Google too (a client limitation, not the emulator's)."""
    got = orthanc(seeded, "POST", f"{server(seeded)}/get", {"Uri": "/studies", "Arguments": {"PatientID": "nobody"}})
    assert got.status_code == 200 and got.content == b""
    qido = orthanc(seeded, "POST", f"{server(seeded)}/qido", {"Uri": "/studies", "Arguments": {"PatientID": "nobody"}})
    assert qido.status_code == 400 and qido.json()["OrthancError"] == "Bad file format"


def test_a_missing_study_is_googles_403_which_orthanc_reports_as_bad_credentials(seeded):
    missing = orthanc(seeded, "POST", f"{server(seeded)}/get", {"Uri": "/studies/1.2.3.4/metadata"})
    assert missing.status_code == 401 and "credentials" in missing.json()["Message"]


def test_retrieve_studies_into_orthanc(seeded):
    """WADO-RS retrieve: Orthanc asks the emulator for whole studies and stores what it gets."""
    r = orthanc(seeded, "POST", f"{server(seeded)}/retrieve",
                {"Resources": [{"Study": CT[0].StudyInstanceUID}, {"Study": JPEG.StudyInstanceUID}]})
    assert r.status_code == 200, r.text
    found = orthanc(seeded, "POST", "/tools/find", {"Level": "Instance", "Query": {}, "Expand": True}).json()
    by_sop = {i["MainDicomTags"]["SOPInstanceUID"]: i["ID"] for i in found}
    assert {d.SOPInstanceUID for d in CT + [JPEG]} <= set(by_sop)
    for ds in CT:
        back = pydicom.dcmread(io.BytesIO(orthanc(seeded, "GET", f"/instances/{by_sop[ds.SOPInstanceUID]}/file").content))
        assert back.SOPInstanceUID == ds.SOPInstanceUID and np.array_equal(back.pixel_array, ds.pixel_array)
    jpeg = pydicom.dcmread(io.BytesIO(orthanc(seeded, "GET", f"/instances/{by_sop[JPEG.SOPInstanceUID]}/file").content))
    assert jpeg.pixel_array.shape == JPEG.pixel_array.shape


def test_stow_from_orthanc_back_into_the_emulator(seeded):
    """STOW-RS: an instance uploaded into Orthanc is sent to the emulator by Orthanc's DICOMweb client."""
    session, urls, client = seeded
    new = smp.mono8("orth-stow", size=16, frames=2)
    up = orthanc(seeded, "POST", "/instances", smp.to_bytes(new), headers={"Content-Type": "application/dicom"})
    assert up.status_code == 200, up.text
    stow = orthanc(seeded, "POST", f"{server(seeded)}/stow", {"Resources": [up.json()["ID"]]})
    assert stow.status_code == 200, stow.text
    back = client.retrieve_instance(new.StudyInstanceUID, new.SeriesInstanceUID, new.SOPInstanceUID)
    assert np.array_equal(back.pixel_array, new.pixel_array) and back.PatientID == new.PatientID
    # the same instance again is identical: the emulator (like Google) accepts it
    again = orthanc(seeded, "POST", f"{server(seeded)}/stow", {"Resources": [up.json()["ID"]]})
    assert again.status_code == 200, again.text
