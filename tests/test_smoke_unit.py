"""The DICOMweb smoke's logic against a small stand-in server (the emulator is tested in test_smoke.py).

The stand-in answers only what the smoke asks, from the demo studies, with knobs to break
one thing at a time: status codes, CORS, multipart framing, JPEG.
"""
from __future__ import annotations

import io
import json
import re
import threading
from pathlib import Path

import pydicom
import pytest
import requests
from PIL import Image
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from provision.demo.studies import write_demo_studies
from provision.checks.dicomweb import CHECK_NAMES, FRAME_ACCEPT, run_dicomweb_smoke

ORIGIN = "http://127.0.0.1:3000"
PREFIX = "/v1/projects/p/locations/l/datasets/d/dicomStores/s/dicomWeb"


class Stub:
    def __init__(self, files: list[Path]):
        self.instances = [pydicom.dcmread(f) for f in files]
        self.knobs: dict = {}
        self.log: list[tuple[str, str, dict]] = []

    def __call__(self, environ, start_response):
        req = Request(environ)
        raw = environ.get("QUERY_STRING", "")
        self.log.append((req.method, req.path + ("?" + raw if raw else ""), dict(req.headers)))
        return self.answer(req)(environ, start_response)

    def cors(self, resp: Response, req: Request) -> Response:
        if self.knobs.get("cors", True) and req.headers.get("Origin"):
            resp.headers["Access-Control-Allow-Origin"] = req.headers["Origin"]
            resp.headers["Access-Control-Allow-Headers"] = self.knobs.get("allow_headers", "authorization, accept, content-type")
            resp.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        return resp

    def error(self, code: int, status: str, message: str, reason: str = "") -> Response:
        body = {"error": {"code": code, "message": message, "status": status}}
        if reason:
            body["error"]["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason}]
        return Response(json.dumps(body), code, content_type="application/json")

    def answer(self, req: Request) -> Response:
        if req.method == "OPTIONS":
            return self.cors(Response(status=self.knobs.get("preflight_status", 204)), req)
        if not req.path.startswith(PREFIX):
            return self.cors(self.error(403, "PERMISSION_DENIED", "Permission denied on resource (or it may not exist)."), req)
        if "fail" in self.knobs and re.search(self.knobs["fail"][0], req.path):
            code, reason = self.knobs["fail"][1], self.knobs["fail"][2] if len(self.knobs["fail"]) > 2 else ""
            return self.cors(self.error(code, "X", f"stub says {code}", reason), req)
        if self.knobs.get("no_cors_on_get"):
            resp = self.route(req, req.path[len(PREFIX):])
            return resp
        return self.cors(self.route(req, req.path[len(PREFIX):]), req)

    def route(self, req: Request, path: str) -> Response:
        parts = path.strip("/").split("/")
        insts = [] if self.knobs.get("empty") else self.instances
        j = lambda data: Response(json.dumps(data), 200, content_type="application/dicom+json")  # noqa: E731
        if parts == ["studies"]:
            studies = {i.StudyInstanceUID: i for i in insts}
            return j([{"0020000D": {"vr": "UI", "Value": [u]}, "00080020": {"vr": "DA", "Value": [i.StudyDate]},
                       "00100010": {"vr": "PN", "Value": [{"Alphabetic": str(i.PatientName)}]}}
                      for u, i in sorted(studies.items())])
        if len(parts) == 3 and parts[2] == "series":
            series = {i.SeriesInstanceUID: i for i in insts if i.StudyInstanceUID == parts[1]}
            return j([{"0020000E": {"vr": "UI", "Value": [u]}} for u in sorted(series)])
        if len(parts) == 5 and parts[4] == "metadata":
            out = []
            for i in insts:
                if i.SeriesInstanceUID == parts[3]:
                    d = i.to_json_dict(bulk_data_threshold=1024, bulk_data_element_handler=lambda e: "bulk")
                    d.pop("7FE00010", None)
                    out.append(d)
            return j(out)
        inst = next((i for i in insts if len(parts) >= 6 and i.SOPInstanceUID == parts[5]), None)
        if inst is None:
            return self.error(403, "PERMISSION_DENIED", "no such instance")
        if parts[6:] == ["frames", "1"]:
            boundary = "b0undary"
            body = self.knobs.get("frame_body")
            if body is None:
                pixels = b"" if self.knobs.get("empty_part") else inst.PixelData
                body = (f"--{boundary}\r\nContent-Type: application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1\r\n\r\n".encode()
                        + pixels + f"\r\n--{boundary}--\r\n".encode())
            ctype = self.knobs.get("frame_type", f'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.1; boundary={boundary}')
            return Response(body, 200, content_type=ctype)
        if parts[6:] == ["rendered"]:
            if self.knobs.get("bad_jpeg"):
                return Response(b"\xff\xd8 not really", 200, content_type="image/jpeg")
            buf = io.BytesIO()
            Image.new("L", (inst.Columns, inst.Rows), 128).save(buf, "JPEG")
            return Response(buf.getvalue(), 200, content_type="image/jpeg")
        return self.error(400, "INVALID_ARGUMENT", "unsupported")


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    return write_demo_studies(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def stub_server(studies):
    # A few instances of each study are plenty; keep the stand-in small and fast.
    app = Stub(list(studies[0].files[:4]) + list(studies[1].files[:2]))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    app.base = f"http://127.0.0.1:{server.server_port}{PREFIX}"
    yield app
    server.shutdown()
    thread.join()


@pytest.fixture
def stub(stub_server):
    stub_server.knobs, stub_server.log, stub_server.root = {}, [], stub_server.base
    return stub_server


def smoke(stub, **kw):
    return run_dicomweb_smoke(stub.root, session=requests.Session(), origin=ORIGIN, min_studies=kw.pop("min_studies", 2), **kw)


def test_passes_and_sends_what_ohif_sends(stub):
    report = smoke(stub)
    assert report.ok, report.summary()
    assert [c.name for c in report.checks] == list(CHECK_NAMES)
    assert report.studies_found == 2
    assert all(c.ms > 0 for c in report.checks)
    gets = [(p, h) for m, p, h in stub.log if m == "GET"]
    assert gets[0][0] == f"{PREFIX}/studies?limit=101&offset=0&fuzzymatching=true&includefield=00081030%2C00080060%2C00080090%2C00100030"
    assert gets[0][1]["Accept"] == "application/dicom+json" and gets[0][1]["Origin"] == ORIGIN
    assert gets[1][0].endswith("/series?includefield=0008103E%2C00080021")
    assert gets[2][0].endswith("/metadata")
    assert gets[3][0].endswith("/frames/1") and gets[3][1]["Accept"] == FRAME_ACCEPT
    assert gets[4][0].endswith("/rendered") and gets[4][1]["Accept"] == "image/jpeg"
    (pre,) = [(p, h) for m, p, h in stub.log if m == "OPTIONS"]
    assert pre[1]["Access-Control-Request-Headers"] == "authorization" and pre[1]["Origin"] == ORIGIN
    assert "Authorization" not in pre[1]
    doc = json.loads(report.to_json())
    assert doc["ok"] is True and [c["name"] for c in doc["checks"]] == list(CHECK_NAMES)
    assert set(doc["checks"][0]) == {"name", "ok", "ms", "detail", "request", "status", "skipped"}
    assert "passed" in report.summary()


def test_frame_bytes_reported(stub):
    frame = smoke(stub).check("frame")
    # The first study by UID is the MR phantom: 128 x 128 x 2 bytes.
    assert "1 part(s), 32768 bytes" in frame.detail and "1.2.840.10008.1.2.1" in frame.detail


def test_token_never_in_report(stub):
    s = requests.Session()
    s.headers["Authorization"] = "Bearer ya29.SECRET-TOKEN"
    stub.knobs["fail"] = (r"/metadata$", 403)
    report = run_dicomweb_smoke(stub.root, session=s, origin=ORIGIN, min_studies=1)
    assert "SECRET" not in report.to_json() and "SECRET" not in report.summary()
    assert any(h.get("Authorization") == "Bearer ya29.SECRET-TOKEN" for m, _, h in stub.log if m == "GET")


def test_wrong_store_path_403(stub):
    stub.root = stub.root.replace("/dicomStores/s/", "/dicomStores/nope/")
    report = smoke(stub)
    assert not report.ok
    studies = report.check("studies")
    assert studies.status == 403 and "GET http://" in studies.detail and "/dicomStores/nope/dicomWeb/studies?" in studies.detail
    assert "roles/healthcare.dicomViewer" in studies.detail and "store path" in studies.detail
    assert [c.name for c in report.failures] == ["studies"]  # later checks are 'not run', not failures
    assert report.check("frame").skipped and "not run: studies failed" in report.check("frame").detail


def test_404_means_wrong_path(stub):
    stub.knobs["fail"] = (r"/studies$", 404)
    d = smoke(stub).check("studies").detail
    assert "answered 404" in d and "wrong store path" in d


def test_service_disabled(stub):
    stub.knobs["fail"] = (r"/studies$", 403, "SERVICE_DISABLED")
    assert "API is not enabled" in smoke(stub).check("studies").detail


def test_zero_studies(stub):
    stub.knobs["empty"] = True
    report = smoke(stub, min_studies=1)
    assert not report.ok and report.studies_found == 0
    assert "found 0 studies, expected at least 1" in report.check("studies").detail
    assert "nothing has been imported" in report.check("studies").detail


def test_zero_studies_allowed(stub):
    stub.knobs["empty"] = True
    report = smoke(stub, min_studies=0)
    assert report.ok, report.summary()
    assert report.check("frame").skipped and report.check("frame").ok


def test_too_few_studies(stub):
    d = smoke(stub, min_studies=3).check("studies").detail
    assert "found 2 studies, expected at least 3" in d and "fewer studies" in d


@pytest.mark.parametrize(
    "knobs,check,words",
    [
        ({"fail": (r"/series$", 500)}, "series", ["answered 500", "retry"]),
        ({"fail": (r"/metadata$", 401)}, "series_metadata", ["answered 401", "expired"]),
        ({"fail": (r"/frames/1$", 406)}, "frame", ["answered 406", "media type"]),
        ({"frame_type": "application/octet-stream"}, "frame", ["not multipart/related"]),
        ({"empty_part": True}, "frame", ["no pixel bytes"]),
        ({"frame_type": "multipart/related; type=application/octet-stream"}, "frame", ["cannot be parsed", "boundary"]),
        ({"bad_jpeg": True}, "rendered", ["do not decode"]),
        ({"fail": (r"/rendered$", 429)}, "rendered", ["answered 429", "rate limited"]),
        ({"cors": False}, "cors", ["no Access-Control-Allow-Origin", "CORS", ORIGIN]),
        ({"preflight_status": 405}, "cors", ["answered 405", "CORS"]),
        ({"allow_headers": "accept, content-type"}, "cors", ["Authorization"]),
        ({"allow_headers": "*"}, "cors", ["Authorization"]),
        ({"no_cors_on_get": True}, "cors", ["GET", "without Access-Control-Allow-Origin"]),
    ],
)
def test_each_failure_is_named(stub, knobs, check, words):
    stub.knobs.update(knobs)
    report = smoke(stub)
    assert not report.ok
    failed = report.check(check)
    assert not failed.ok and not failed.skipped
    for w in words:
        assert w in failed.detail, failed.detail
    assert "FAILED" in report.summary()


def test_unreachable_server():
    report = run_dicomweb_smoke("http://127.0.0.1:9/v1/x/dicomWeb", origin=ORIGIN, min_studies=1, timeout=5)
    assert not report.ok
    assert "could not connect" in report.check("studies").detail and "not reachable" in report.check("studies").detail
    assert "could not connect" in report.check("cors").detail


def test_studies_for_the_browser_smoke_but_not_in_json(stub, studies):
    report = smoke(stub)
    assert {s["study_uid"] for s in report.studies} == {s.study_uid for s in studies}
    exp = report.browser_expectations(n=1)
    assert exp == [{"study_uid": studies[1].study_uid, "study_date": "20240116", "patient_name": "Phantom^MR",
                    "patient_name_ohif": "Phantom, MR"}]  # the most recent study
    assert "Phantom" not in report.to_json()  # patient names are PHI on a real store


def test_the_checks_are_small_named_functions_the_browser_smoke_shares():
    """run_dicomweb_smoke is a loop over named checks; the browser judges its own answers with the same words."""
    import inspect

    from provision.checks import answers, browser_pages, dicomweb

    assert [name for name, _, _ in dicomweb.CHECKS] == list(CHECK_NAMES)
    for name, check, _needs in dicomweb.CHECKS:
        assert check.__name__ == f"check_{name}" and check.__doc__
        assert len(inspect.getsource(check).splitlines()) <= 45, name
    assert len(inspect.getsource(dicomweb.run_dicomweb_smoke).splitlines()) <= 30
    problem, _ = answers.frame_problem("http://x/frames/1", "application/octet-stream", b"\0" * 8)
    assert "not multipart/related" in problem
    boundary = "b1"
    body = f"--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n".encode() + b"\1" * 8 + f"\r\n--{boundary}--".encode()
    ctype = f"multipart/related; type=application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1; boundary={boundary}"
    assert answers.frame_problem("http://x/frames/1", ctype, body) == (None, "1 part(s), 8 bytes, transfer syntax 1.2.840.10008.1.2.1")
    assert "expected 16" in answers.frame_problem("http://x/frames/1", ctype, body, expect_bytes=16)[0]
    assert "ends before its closing boundary" in answers.frame_problem("http://x/frames/1", ctype, body[:-12])[0]
    text = answers.http_problem("GET", "http://x/studies", 403, b'{"error": {"code": 403, "message": "denied"}}', "study list")
    assert text.startswith("study list: GET http://x/studies answered 403: denied. Likely cause: the caller lacks")
    source = inspect.getsource(browser_pages)   # what the browser smoke's pages must show
    assert "http_problem(" in source and "frame_problem(" in source


def _jpeg_frame(rows: int = 16, cols: int = 24) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    pixels = (np.arange(rows * cols, dtype=np.uint16) % 251).astype(np.uint8).reshape(rows, cols)
    out = io.BytesIO()
    Image.fromarray(pixels, "L").save(out, "JPEG", quality=90)
    return out.getvalue()


def _frame_answer(frame: bytes, syntax: str) -> tuple[str, bytes]:
    ctype = f'multipart/related; type="application/octet-stream"; transfer-syntax={syntax}; boundary=b1'
    body = (b"--b1\r\nContent-Type: application/octet-stream; transfer-syntax=" + syntax.encode() + b"\r\n\r\n"
            + frame + b"\r\n--b1--\r\n")
    return ctype, body


JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
IMAGE = {"00280010": {"vr": "US", "Value": [16]}, "00280011": {"vr": "US", "Value": [24]},
         "00280100": {"vr": "US", "Value": [8]}, "00280101": {"vr": "US", "Value": [8]},
         "00280002": {"vr": "US", "Value": [1]}, "00280004": {"vr": "CS", "Value": ["MONOCHROME2"]}}


def test_a_compressed_frame_is_decoded_and_a_corrupt_one_fails():
    """The smoke decodes what it fetches: a JPEG frame that decodes to Rows x Columns passes, a corrupt
    one (the bytes a broken transcoder or store could send, with the right headers) fails with why."""
    from provision.checks import answers

    frame = _jpeg_frame()
    problem, detail = answers.frame_problem("http://x/frames/1", *_frame_answer(frame, JPEG_BASELINE), image=IMAGE)
    assert problem is None and detail.endswith("decoded"), detail
    corrupt = frame[:40] + bytes(len(frame) - 40)          # header kept, entropy-coded data zeroed out
    for bad in (corrupt, b"\xff\xd8 not a jpeg at all", frame[: len(frame) // 3]):
        problem, _ = answers.frame_problem("http://x/frames/1", *_frame_answer(bad, JPEG_BASELINE), image=IMAGE)
        assert problem and "does not decode" in problem, (bad[:20], problem)
    wrong_size = {**IMAGE, "00280010": {"vr": "US", "Value": [32]}}
    problem, _ = answers.frame_problem("http://x/frames/1", *_frame_answer(frame, JPEG_BASELINE), image=wrong_size)
    assert problem and "does not decode" in problem   # 16 x 24 pixels cannot fill the 32 x 24 the instance says
