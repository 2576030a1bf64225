"""The emulator under abuse: bugs, encoded slashes, oversized bodies, stalled clients, resets
during work, concurrent writes, injected faults, and the IAM gaps of the shared HTTP layer."""
from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
import requests
from werkzeug.wrappers import Request

from provision.emulator import http as emu_http
from provision.emulator import server as emu_server
from provision.emulator.latency import REALISTIC
from provision.emulator.world import Options

from emulator_helpers import CONTROL, create_project


def _counting_request(body: bytes, *, content_type: str = "application/json", chunked: bool = True,
                      length: int | None = None):
    """A werkzeug Request over a stream that counts how many bytes the emulator read from it."""
    stream = io.BytesIO(body)
    read_total = [0]
    real_read = stream.read

    def read(n=-1):
        data = real_read(n)
        read_total[0] += len(data)
        return data

    stream.read = read  # type: ignore[method-assign]
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/v3/projects", "QUERY_STRING": "", "SERVER_NAME": "x",
               "SERVER_PORT": "80", "wsgi.url_scheme": "http", "wsgi.input": stream, "CONTENT_TYPE": content_type}
    if chunked:
        environ["wsgi.input_terminated"] = True
    if length is not None:
        environ["CONTENT_LENGTH"] = str(length)
    return Request(environ), read_total


# ------------------------------------------------------------------------------ 1. bugs are 500s

def test_unhandled_exception_is_a_google_500_with_cors_and_recorded(emulator_factory, tmp_path, capfd):
    record = tmp_path / "rec.jsonl"
    emu = emulator_factory(record=record)

    def boom(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    emu.world.crm.lookup = boom
    emu.world.storage.bucket = boom
    origin = {"Origin": "http://127.0.0.1:3000"}
    r = requests.get(f"{emu.url}/v3/projects/some-project", headers=origin)
    assert r.status_code == 500
    assert r.json() == {"error": {"code": 500, "message": "Internal error encountered.", "status": "INTERNAL"}}
    assert r.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:3000"
    assert "secret internal detail" not in r.text
    r = requests.get(f"{emu.url}/storage/v1/b/some-bucket", headers=origin)
    assert r.status_code == 500 and r.json()["error"]["errors"][0]["reason"] == "backendError"
    lines = [json.loads(x) for x in record.read_text().splitlines()]
    assert [(x["path"], x["status"]) for x in lines] == [("/v3/projects/some-project", 500),
                                                         ("/storage/v1/b/some-bucket", 500)]
    err = capfd.readouterr().err
    assert "RuntimeError: secret internal detail" in err and "Traceback" in err


def test_set_iam_policy_binding_without_role_is_400(emulator):
    create_project(emulator.url, "role-less", billing=False, enable=())
    r = requests.post(f"{emulator.url}/v3/projects/role-less:setIamPolicy",
                      json={"policy": {"bindings": [{"members": ["user:a@example.com"]}]}})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["status"] == "INVALID_ARGUMENT"
    assert err["details"][0]["fieldViolations"][0]["field"] == "policy.bindings[0].role"


# ------------------------------------------------------------------------------ 2. encoded slashes

def test_encoded_slash_is_never_a_separator_in_an_id(emulator):
    create_project(emulator.url, "slashy-project")
    ds = f"{emulator.url}/v1/projects/slashy-project/locations/us-central1/datasets"
    assert requests.post(ds, params={"datasetId": "ds1"}, json={}).status_code == 200
    assert requests.post(f"{ds}/ds1/dicomStores", params={"dicomStoreId": "st1"}, json={}).status_code == 200
    assert requests.get(f"{ds}/ds1/dicomStores/st1").status_code == 200
    r = requests.get(f"{ds}/ds1%2FdicomStores%2Fst1")
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT", r.text
    r = requests.get(f"{emulator.url}/v3/projects/slashy-project%2Fx")
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"
    # Other escapes in an ID are decoded as before.
    assert requests.get(f"{emulator.url}/v3/projects/slashy%2Dproject").json()["projectId"] == "slashy-project"


def test_storage_object_names_keep_encoded_slashes_and_dots(emulator):
    create_project(emulator.url, "objects-project", billing=False, enable=())
    r = requests.post(f"{emulator.url}/storage/v1/b", params={"project": "objects-project"}, json={"name": "slash-b"})
    assert r.status_code == 200, r.text
    up = f"{emulator.url}/upload/storage/v1/b/slash-b/o"
    for name in ("a/b.dcm", "a/../b", "./x", "%2F literally"):
        assert requests.post(up, params={"uploadType": "media", "name": name}, data=name.encode()).status_code == 200
    from urllib.parse import quote

    for name in ("a/b.dcm", "a/../b", "./x", "%2F literally"):
        url = f"{emulator.url}/storage/v1/b/slash-b/o/{quote(name, safe='')}"
        assert requests.get(url, params={"alt": "media"}).content == name.encode(), name
        assert requests.get(url).json()["name"] == name
        assert requests.delete(url).status_code == 204
    assert requests.delete(f"{emulator.url}/storage/v1/b/slash-b").status_code == 204


# ------------------------------------------------------------------------------ 3. bounded bodies

def test_chunked_json_body_is_read_only_up_to_the_limit():
    limit = 1000
    request, read = _counting_request(b"[" + b"1," * 100_000 + b"1]")
    with pytest.raises(emu_http.ApiError) as exc:
        emu_http.parse_json_body(request, limit)
    assert exc.value.http_status == 413
    assert read[0] <= limit + 1
    # a declared length over the limit is refused before reading anything
    request, read = _counting_request(b"{}" * 1000, chunked=False, length=2000)
    with pytest.raises(emu_http.ApiError):
        emu_http.parse_json_body(request, limit)
    assert read[0] == 0


def test_record_never_reads_an_unread_large_or_chunked_body(tmp_path):
    world, app = emu_server.build(Options(record=tmp_path / "rec.jsonl"))
    try:
        big = b'{"a": "' + b"x" * (emu_http.JSON_LIMIT + 10) + b'"}'
        request, read = _counting_request(big, chunked=False, length=len(big))
        assert app._record(request, "storage", None, 403, time.perf_counter())["request"] is None
        assert read[0] == 0
        request, read = _counting_request(b'{"a": 1}')  # chunked, unread by any handler
        assert app._record(request, "storage", None, 403, time.perf_counter())["request"] is None
        assert read[0] == 0
        request, read = _counting_request(b'{"a": 1}', chunked=False, length=8)  # small and declared: recorded
        assert app._record(request, "x", None, 403, time.perf_counter())["request"] == {"a": 1}
    finally:
        world.close()


# ------------------------------------------------------------------------------ 7. 429 details

def test_injected_429_carries_rate_limit_error_info(emulator_factory):
    emu = emulator_factory(faults="429=1")
    r = requests.get(f"{emu.url}/v1/projects/p1/services/healthcare.googleapis.com")
    assert r.status_code == 429 and "Retry-After" not in r.headers
    err = r.json()["error"]
    assert err["status"] == "RESOURCE_EXHAUSTED"
    info = err["details"][0]
    assert info["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    assert info["reason"] == "RATE_LIMIT_EXCEEDED" and info["domain"] == "googleapis.com"
    assert info["metadata"]["service"] == "serviceusage.googleapis.com"
    assert info["metadata"]["consumer"] == "projects/p1"
    assert {"quota_metric", "quota_limit", "quota_limit_value"} <= set(info["metadata"])


# ------------------------------------------------------------------------------ 9. reproducible faults

def _fault_sequence(url: str, n: int = 40) -> list:
    out = []
    for i in range(n):
        try:
            out.append(requests.get(f"{url}/v3/projects/nope-{i}").status_code)
        except requests.ConnectionError:
            out.append("reset")
    return out


def test_faults_replay_after_reset_and_across_runs(emulator_factory):
    a = emulator_factory(faults="transient=0.6", seed=11)
    first = _fault_sequence(a.url)
    assert {429, 500, 503, "reset"} & set(first) and 403 in first
    assert requests.post(f"{a.url}/_emulator/reset", headers=CONTROL).status_code == 200
    assert _fault_sequence(a.url) == first
    b = emulator_factory(faults="transient=0.6", seed=11)
    assert _fault_sequence(b.url) == first


# ------------------------------------------------------------------------------ 10. server assembly

def test_every_api_package_is_served():
    """An API package (state.py + handlers.py) left out of server.APIS would be silently absent:
    its backend not on the World and its routes answering 404."""
    import provision.emulator as pkg

    packages = {p.parent.name for p in Path(pkg.__file__).parent.glob("*/state.py")
                if (p.parent / "handlers.py").exists()}
    served = {state.__name__.split(".")[-2] for state, _ in emu_server.APIS}
    assert packages == served
    world, app = emu_server.build(Options(public_datasets=False))
    try:
        for state, handlers in emu_server.APIS:
            assert isinstance(getattr(world, state.ATTACH_AS), state.Backend)
            assert set(handlers.router.routes) <= set(app.routes)
    finally:
        world.close()


def test_request_handler_has_a_read_timeout():
    assert 0 < emu_server._QuietHandler.timeout <= 120


# ------------------------------------------------------------------------------ 13. shared helpers

def test_shared_helpers_live_in_one_module():
    import inspect

    from provision.emulator import common
    from provision.emulator.billing import handlers as bh
    from provision.emulator.billing import state as bs
    from provision.emulator.resourcemanager import handlers as rh
    from provision.emulator.resourcemanager import state as rs
    from provision.emulator.serviceusage import handlers as sh
    from provision.emulator.serviceusage import state as ss
    from provision.emulator.storage import state as gs

    assert rs.ANONYMOUS_OWNER is common.ANONYMOUS_OWNER and bs.ANONYMOUS_OWNER is common.ANONYMOUS_OWNER
    assert rs.timestamp is common.timestamp and ss.timestamp is common.timestamp
    assert ss.agent_email is common.agent_email
    for mod in (bh, bs, rh, rs, sh, ss, gs):
        src = inspect.getsource(mod)
        for copy in ("urlsafe_b64encode(str(", "def timestamp", "ANONYMOUS_OWNER =", "gcp-sa-([a-z0-9-]+)"):
            assert copy not in src, (mod.__name__, copy)


def test_common_page_and_agent_helpers():
    from provision.emulator import common

    items = list(range(7))
    first, token = common.page({"pageSize": "3"}, items, default_size=5, max_size=4)
    assert first == [0, 1, 2] and token
    second, token = common.page({"pageSize": "9", "pageToken": token}, items, default_size=5, max_size=4)
    assert second == [3, 4, 5, 6] and token == ""  # clamped to max_size
    assert common.page({"pageSize": "-1"}, items, default_size=5, max_size=4)[0] == [0, 1, 2, 3, 4]
    too_large = common.invalid_argument("too large")
    with pytest.raises(emu_http.ApiError) as exc:
        common.page({"pageSize": "5"}, items, default_size=5, max_size=4, too_large=too_large)
    assert exc.value is too_large
    with pytest.raises(emu_http.ApiError):
        common.page({"pageToken": "%%%"}, items, default_size=5, max_size=4)
    email = common.agent_email("123", "healthcare.googleapis.com")
    assert email == "service-123@gcp-sa-healthcare.iam.gserviceaccount.com"
    assert common.parse_agent_email(email) == ("123", "healthcare.googleapis.com")
    assert common.parse_agent_email(f"serviceAccount:{email}") == ("123", "healthcare.googleapis.com")
    assert common.parse_agent_email("ana@example.com") is None
    assert common.timestamp(0) == "1970-01-01T00:00:00.000000Z"


# ------------------------------------------------------------------------------ 4. stalled clients

@pytest.mark.parametrize("framing", [b"Content-Length: 100\r\n\r\n{\"projectId\": ",
                                     b"Transfer-Encoding: chunked\r\n\r\n40\r\n{\"projectId\": "])
def test_stalled_request_body_times_out_cleanly(emulator_factory, monkeypatch, capfd, framing):
    import socket

    monkeypatch.setattr(emu_server._QuietHandler, "timeout", 1)
    emu = emulator_factory()
    sock = socket.create_connection(("127.0.0.1", emu.port))
    sock.settimeout(10)
    sock.sendall(b"POST /v3/projects HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" + framing)
    started = time.monotonic()
    reply = sock.makefile("rb").read()  # the server gives up on the body and answers
    sock.close()
    assert time.monotonic() - started < 5
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith((b"HTTP/1.1 400", b"HTTP/1.1 408")), head  # werkzeug reports a short body as 400
    assert json.loads(body)["error"]["status"] == "INVALID_ARGUMENT"
    assert b"Traceback" not in reply and "Traceback" not in capfd.readouterr().err
    assert requests.get(f"{emu.url}/_emulator/health", headers=CONTROL).status_code == 200


def test_stopping_waits_for_a_request_being_answered_instead_of_closing_its_state_under_it(
        emulator_factory, tmp_path, capfd):
    """A request still being answered when the emulator stops (a test ending, Ctrl-C) finishes before the
    database closes: no 'Cannot operate on a closed database' traceback on stderr, which a later test of
    the same process once read as its own."""
    import threading

    table = tmp_path / "latency.json"
    table.write_text(json.dumps({**{key: 0.0 for key in REALISTIC}, "sync:crm.projects.getIamPolicy": 0.5}))
    emu = emulator_factory(latency=str(table))
    create_project(emu.url, "stop-mid-request")
    answers: list[object] = []

    def read_policy() -> None:
        try:
            answers.append(requests.post(f"{emu.url}/v1/projects/stop-mid-request:getIamPolicy", json={},
                                         timeout=10).status_code)
        except requests.RequestException as exc:   # the socket shut by stop(): a dropped connection is fine
            answers.append(type(exc).__name__)

    reader = threading.Thread(target=read_policy)
    reader.start()
    time.sleep(0.2)   # the request is in its 0.5 s of latency
    emu.stop()
    reader.join(10)
    assert answers, "the request never ended"
    time.sleep(0.5)   # past the request's latency: a thread still answering it has printed by now
    assert "Traceback" not in capfd.readouterr().err
