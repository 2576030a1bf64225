"""What a web page can do to the emulator: nothing but call Google's APIs the way it could call Google.

A DNS-rebinding page (its own name resolving to 127.0.0.1) is refused by the Host check; a
cross-origin page cannot reach the control endpoints (custom header, refused preflight, no CORS
headers), whatever --enforce-iam says; Google's API paths keep Google's CORS. And --record keeps
no credential. All over real HTTP against a real emulator.
"""
from __future__ import annotations

import http.client
import json

import pytest
import requests
from werkzeug.test import Client

from emulator_helpers import CONTROL, create_project, ready_store
from provision.emulator.server import build
from provision.emulator.world import Options

PAGE = "https://evil.example"
OWNER = "user:ana@example.com"


def raw(emu, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, dict, bytes]:
    """One request with exactly these headers (Host included: requests and http.client add their own)."""
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=10)
    conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    for name, value in headers.items():
        conn.putheader(name, value)
    if body:
        conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body or None)
    resp = conn.getresponse()
    out = resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    conn.close()
    return out


def state(emu) -> dict:
    r = requests.get(f"{emu.url}/_emulator/state", headers=CONTROL, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def no_cors(headers: dict) -> bool:
    return not any(k.lower().startswith("access-control-") for k in headers)


# ------------------------------------------------------------------------------ Host (DNS rebinding)

@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1.evil.example:{port}",
                                  "localhost.evil.example", "[::2]:{port}", "10.1.2.3:{port}"])
def test_a_foreign_host_is_misdirected_and_changes_nothing(emulator, host):
    create_project(emulator.url, "kept-1", billing=False, enable=())
    before = state(emulator)
    host = host.format(port=emulator.port)
    body = json.dumps({"projectId": "rebound-1"}).encode()
    status, headers, answer = raw(emulator, "POST", "/v3/projects",
                                  {"Host": host, "Origin": f"http://{host}", "Content-Type": "application/json"}, body)
    assert status == 421
    err = json.loads(answer)["error"]
    assert err["code"] == 421 and "DNS rebinding" in err["message"] and host in err["message"]
    assert err["details"][0]["reason"] == "HOST_NOT_ALLOWED"
    assert no_cors(headers)
    # The control endpoints are behind the same check, header or not.
    status, _, _ = raw(emulator, "POST", "/_emulator/reset", {"Host": host, **CONTROL})
    assert status == 421
    assert state(emulator) == before


def test_no_host_header_is_misdirected(emulator):
    status, _, answer = raw(emulator, "GET", "/v3/projects/kept-1", {})
    assert status == 421 and "without a Host header" in json.loads(answer)["error"]["message"]


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "127.0.0.1", "localhost:{port}", "LocalHost", "[::1]:{port}",
                                  "[::1]", "localhost:1"])
def test_loopback_names_are_served_on_any_port(emulator, host):
    # dicomweb-client sends Host without a port; a forwarded port differs: only the name counts.
    status, _, answer = raw(emulator, "GET", "/v1/projects/nope/locations", {"Host": host.format(port=emulator.port)})
    assert status != 421, answer


def test_allow_host_names_more_hosts(emulator_factory):
    emu = emulator_factory(allow_hosts=("emulator.test", "Viewer.Local:9999"))
    for host in ("emulator.test", f"emulator.test:{emu.port}", "viewer.local:80"):
        assert raw(emu, "GET", "/_emulator/health", {"Host": host, **CONTROL})[0] == 200, host
    assert raw(emu, "GET", "/_emulator/health", {"Host": "other.test", **CONTROL})[0] == 421


def test_wildcard_bind_serves_ip_literals_but_no_other_name():
    # Checked on the WSGI app itself: tests bind 127.0.0.1 only. A rebinding page comes by a DNS
    # name, so on 0.0.0.0 any IP literal (the machine's own addresses) is served.
    world, app = build(Options(host="0.0.0.0", port=8765))
    try:
        client = Client(app)
        for host in ("192.168.1.7:8765", "10.0.0.2", "[fe80::1]:8765", "0.0.0.0:8765", "localhost"):
            assert client.get("/_emulator/health", headers={"Host": host, **CONTROL}).status_code == 200, host
        assert client.get("/_emulator/health", headers={"Host": "evil.example:8765", **CONTROL}).status_code == 421
    finally:
        world.close()


# ------------------------------------------------------------------------------ control endpoints

@pytest.mark.parametrize("method,path,body", [
    ("POST", "/_emulator/reset", None),
    ("GET", "/_emulator/state", None),
    ("GET", "/_emulator/health", None),
    ("PUT", "/_emulator/policies/organizations/1", {"bindings": [{"role": "roles/owner", "members": ["user:mallory@evil.example"]}]}),
    ("PUT", "/_emulator/billing-accounts/ABCDEF-012345-6789AB", {"displayName": "mallory", "open": True}),
])
def test_a_page_cannot_use_the_control_endpoints(emulator_factory, method, path, body):
    emu = emulator_factory(enforce_iam=True)
    requests.put(f"{emu.url}/_emulator/policies/organizations/1", json={"bindings": [
        {"role": "roles/resourcemanager.projectCreator", "members": [OWNER]}]}, headers=CONTROL, timeout=10).raise_for_status()
    create_project(emu.url, "kept-2", billing=False, enable=(), member=OWNER, parent="organizations/1")
    before = state(emu)
    # A simple (CORS-safelisted) request from a page: no custom header, so no preflight was needed.
    page = {"Origin": PAGE, "Content-Type": "text/plain"}
    r = requests.request(method, f"{emu.url}{path}", data=json.dumps(body) if body else None, headers=page, timeout=10)
    assert r.status_code == 403 and r.json()["error"]["status"] == "PERMISSION_DENIED"
    assert "X-Emulator-Control" in r.json()["error"]["message"] or "web pages" in r.json()["error"]["message"]
    assert no_cors(r.headers)
    # Even with the header (an extension, a same-origin page served by the emulator): a page is refused.
    for marks in ({"Origin": PAGE}, {"Origin": emu.url}, {"Sec-Fetch-Site": "same-origin"}):
        r = requests.request(method, f"{emu.url}{path}", json=body, headers={**CONTROL, **marks}, timeout=10)
        assert r.status_code == 403 and "web pages" in r.json()["error"]["message"], marks
        assert no_cors(r.headers)
    # Without the header at all, not even a local tool gets in.
    assert requests.request(method, f"{emu.url}{path}", json=body, timeout=10).status_code == 403
    assert state(emu) == before


@pytest.mark.parametrize("path", ["/_emulator/reset", "/_emulator/state", "/_emulator/health",
                                  "/_emulator/policies/organizations/1", "/_emulator/nothing-here"])
def test_control_preflights_are_refused_without_cors_headers(emulator, path):
    r = requests.options(f"{emulator.url}{path}", headers={
        "Origin": PAGE, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-emulator-control, content-type"}, timeout=10)
    assert r.status_code == 403
    assert no_cors(r.headers), dict(r.headers)
    assert r.json()["error"]["status"] == "PERMISSION_DENIED"


# ------------------------------------------------------------------------------ Google's CORS stays

def test_google_api_paths_keep_googles_cors(emulator):
    env = ready_store(emulator, project="cors-kept")
    studies = f"{env.dicomweb_url}/studies"
    pre = requests.options(studies, headers={"Origin": PAGE, "Access-Control-Request-Method": "GET",
                                             "Access-Control-Request-Headers": "authorization"}, timeout=10)
    assert pre.status_code == 200
    assert pre.headers["Access-Control-Allow-Origin"] == PAGE
    assert "authorization" in pre.headers["Access-Control-Allow-Headers"].lower()
    assert "GET" in pre.headers["Access-Control-Allow-Methods"]
    got = requests.get(studies, headers={"Origin": PAGE}, timeout=10)
    assert got.status_code == 204 and got.headers["Access-Control-Allow-Origin"] == PAGE   # empty store: 204
    v1 = requests.get(f"{emulator.url}/v1/projects/cors-kept", headers={"Origin": "http://127.0.0.1:3000"}, timeout=10)
    assert v1.status_code == 200 and v1.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:3000"


# ------------------------------------------------------------------------------ --record keeps no credential

def test_record_holds_no_authorization_header_and_no_access_token(emulator_factory, tmp_path):
    record = tmp_path / "rec.jsonl"
    emu = emulator_factory(enforce_iam=True, record=record)
    requests.put(f"{emu.url}/_emulator/policies/organizations/1", json={"bindings": [
        {"role": "roles/resourcemanager.projectCreator", "members": [OWNER]}]}, headers=CONTROL, timeout=10).raise_for_status()
    token, query_token = f"emulator:{OWNER}", "ya29.a0QUERYSECRETquerysecret"
    header_token = "ya29.a0HEADERSECRETheadersecret"
    create_project(emu.url, "rec-one", billing=False, enable=(), member=OWNER, parent="organizations/1")
    # A token in the query (as `?access_token=` works on Google) and one in the header.
    requests.get(f"{emu.url}/v3/projects/rec-one", params={"access_token": query_token, "oauth_token": query_token},
                 headers={"Authorization": f"Bearer {header_token}"}, timeout=10)
    requests.get(f"{emu.url}/v1/projects/rec-one?alt=json&access_token={query_token}", timeout=10)
    # A resumable upload: its session URI (upload_id) is that upload's credential.
    from google.cloud import storage
    from google.oauth2.credentials import Credentials

    client = storage.Client(project="rec-one", credentials=Credentials(token=token),
                            client_options={"api_endpoint": emu.url})
    client.create_bucket("rec-one-bucket")
    session = requests.post(f"{emu.url}/upload/storage/v1/b/rec-one-bucket/o?uploadType=resumable&name=s.bin",
                            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                            data="{}", timeout=10)
    assert session.status_code == 200, session.text
    upload_id = session.headers["Location"].split("upload_id=")[1].split("&")[0]
    assert requests.put(session.headers["Location"], data=b"abc", timeout=10).status_code == 200
    text = record.read_text()
    entries = [json.loads(line) for line in text.splitlines()]
    assert any(e["query"].get("access_token") == ["<redacted>"] for e in entries)
    uploads = [e for e in entries if "upload_id" in e["query"]]
    assert uploads and all(e["query"]["upload_id"] == ["<redacted>"] for e in uploads)
    assert any(e["principal"] == OWNER for e in entries)  # the member is recorded, its token is not
    for secret in (token, query_token, header_token, upload_id, "Bearer", "uthorization"):
        assert secret not in text, secret
