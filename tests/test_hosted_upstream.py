"""The hosted viewer's side toward Google: its own identity, the header allow-list, retries, writes;
plus its other access mode and its settings. The emulator is the real upstream throughout."""
from __future__ import annotations

import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import requests

from dicom_factory import ct_series
from emulator_helpers import CONTROL, ready_store
from hosted_helpers import AUD, IapKeys, config_for, run_app
from provision.hosted.app import create_app
from provision.hosted.rewrite import Rewriter
from provision.hosted.settings import Settings, SettingsError, from_env

SA = "serviceAccount:ohif-viewer@hosted-iam.iam.gserviceaccount.com"


@pytest.fixture(scope="module")
def dist():
    from provision.ohif.fetch import ensure_viewer

    return ensure_viewer()


def make(dist, env, iap, **kw) -> Settings:
    base = dict(dist=dist, config_js=config_for(env.dicomweb_url), sources={"store1": env.dicomweb_url},
                access="iap", iap_audience=AUD, iap_jwks_url=iap.url, upstream_auth="none")
    return Settings(**{**base, **kw})


def records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_upstream_sees_the_service_identity_never_the_browsers(emulator_factory, dist, tmp_path):
    """With --enforce-iam the emulator names each caller: every proxied call is the service account's,
    even when the browser sends an owner's token; without the service account's grant the store says 403."""
    emu = emulator_factory(enforce_iam=True, record=tmp_path / "record.jsonl")
    owner = "user:ana@example.com"
    for resource, role in (("organizations/1", "roles/resourcemanager.projectCreator"),
                           ("billingAccounts/012345-6789AB-CDEF01", "roles/billing.user")):
        requests.put(f"{emu.url}/_emulator/policies/{resource}", json={"bindings": [
            {"role": role, "members": [owner]}]}, timeout=10, headers=CONTROL).raise_for_status()
    env = ready_store(emu, project="hosted-iam", member=owner, parent="organizations/1")
    env.dicomweb.store_instances(ct_series("iam1", slices=2, size=16))
    with IapKeys() as iap, run_app(create_app(make(dist, env, iap, upstream_auth=f"token:emulator:{SA}"),
                                              log_stream=io.StringIO())) as url:
        browser = {**iap.header(), "authorization": f"Bearer emulator:{owner}", "cookie": "SID=secret"}
        assert httpx.get(f"{url}/dicomweb/store1/studies", headers=browser).status_code == 403
        env.stores.setIamPolicy(resource=env.store, body={"policy": {"bindings": [
            {"role": "roles/healthcare.dicomViewer", "members": [SA]}]}}).execute()
        assert httpx.get(f"{url}/dicomweb/store1/studies", headers=browser).status_code == 200
    dicomweb = [r for r in records(tmp_path / "record.jsonl") if "/dicomWeb/" in r["path"] and r["method"] == "GET"]
    assert len(dicomweb) == 2 and {r["principal"] for r in dicomweb} == {SA}


class _Capture(BaseHTTPRequestHandler):
    seen: list[dict] = []

    def do_GET(self) -> None:  # noqa: N802
        _Capture.seen.append({k.lower(): v for k, v in self.headers.items()})
        body = b"[]"
        self.send_response(200)
        for k, v in (("Content-Type", "application/dicom+json"), ("Content-Length", str(len(body))),
                     ("Set-Cookie", "upstream=1"), ("X-Upstream-Secret", "1"), ("ETag", '"e1"')):
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_only_allow_listed_headers_go_upstream(dist):
    """What reaches the upstream: DICOMweb's negotiation and conditional headers and the service's own
    token; never cookies, the browser's Authorization, IAP's assertion or Cloud Run's own header."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    root = f"http://127.0.0.1:{server.server_port}/v1/projects/p/locations/l/datasets/d/dicomStores/s/dicomWeb"
    try:
        with IapKeys() as iap:
            cfg = Settings(dist=dist, config_js=config_for(root), sources={"s": root}, iap_audience=AUD,
                           iap_jwks_url=iap.url, upstream_auth="token:service-token")
            with run_app(create_app(cfg, log_stream=io.StringIO())) as url:
                sent = {**iap.header(), "authorization": "Bearer user-token", "cookie": "GCP_IAP_UID=1",
                        "x-serverless-authorization": "Bearer iap-sa", "x-goog-authenticated-user-email": "a@b.c",
                        "x-goog-iap-jwt-assertion-extra": "1", "x-forwarded-for": "10.0.0.1", "origin": url,
                        "accept": "application/dicom+json", "if-none-match": '"e0"', "range": "bytes=0-10"}
                resp = httpx.get(f"{url}/dicomweb/s/studies", headers=sent)
    finally:
        server.shutdown()
        server.server_close()
    assert resp.status_code == 200 and resp.headers["etag"] == '"e1"'
    assert "set-cookie" not in resp.headers and "x-upstream-secret" not in resp.headers
    (got,) = _Capture.seen
    assert got["authorization"] == "Bearer service-token"
    assert got["accept"] == "application/dicom+json" and got["if-none-match"] == '"e0"' and got["range"] == "bytes=0-10"
    leaked = {k for k in got if k.startswith(("x-goog", "x-serverless", "cookie", "x-forwarded", "origin"))}
    assert not leaked, leaked


def test_transient_429_and_503_are_retried_for_reads(emulator_factory, dist, tmp_path):
    """An upstream that answers 429/503 a third of the time: every read through the proxy succeeds."""
    setup = emulator_factory(data_dir=tmp_path / "state")   # the store is made without faults...
    env = ready_store(setup, project="hosted-faults")
    env.dicomweb.store_instances(ct_series("faults1", slices=1, size=16))
    setup.stop()
    emu = emulator_factory(data_dir=tmp_path / "state", faults="429=0.15,503=0.15", seed=7,
                           record=tmp_path / "record.jsonl")   # ...then served with them
    env.url = emu.url
    with IapKeys() as iap, run_app(create_app(make(dist, env, iap), log_stream=(log := io.StringIO()))) as url:
        statuses = [httpx.get(f"{url}/dicomweb/store1/studies", headers=iap.header()).status_code for _ in range(30)]
    assert statuses == [200] * 30
    upstream = [r["status"] for r in records(tmp_path / "record.jsonl") if r["path"].endswith("/dicomWeb/studies")]
    assert upstream.count(200) == 30 and {429, 503} & set(upstream)  # the faults did happen, and were absorbed
    retried = [json.loads(line).get("retries", 0) for line in log.getvalue().splitlines()]
    assert sum(retried) == len(upstream) - 30


def test_read_write_forwards_stow_and_delete(emulator, dist):
    import pydicom
    from pydicom.filebase import DicomBytesIO

    env = ready_store(emulator, project="hosted-rw")
    (ds,) = ct_series("rw1", slices=1, size=16)
    buf = DicomBytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    boundary = "hostedboundary"
    body = (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + buf.getvalue()
            + f"\r\n--{boundary}--\r\n".encode())
    ctype = f'multipart/related; type="application/dicom"; boundary={boundary}'
    with IapKeys() as iap, run_app(create_app(make(dist, env, iap, read_write=True), log_stream=io.StringIO())) as url:
        stow = httpx.post(f"{url}/dicomweb/store1/studies", content=iter([body[:100], body[100:]]),
                          headers={**iap.header(), "content-type": ctype, "accept": "application/dicom+json"})
        assert stow.status_code == 200, stow.text
        assert env.url not in stow.text and f"{url}/dicomweb/store1/studies/{ds.StudyInstanceUID}" in stow.text
        assert httpx.get(f"{env.dicomweb_url}/studies/{ds.StudyInstanceUID}/series").status_code == 200
        gone = httpx.delete(f"{url}/dicomweb/store1/studies/{ds.StudyInstanceUID}", headers=iap.header())
        assert gone.status_code == 200
        assert httpx.options(f"{url}/dicomweb/store1/studies", headers=iap.header()).headers["allow"] == \
            "GET, HEAD, OPTIONS, POST, PUT, DELETE"
    assert httpx.get(f"{env.dicomweb_url}/studies/{ds.StudyInstanceUID}/series").status_code in (204, 404)


def test_google_sign_in_mode_serves_the_static_viewer_with_googles_roots(dist):
    root = "https://healthcare.googleapis.com/v1/projects/p/locations/us/datasets/d/dicomStores/s/dicomWeb"
    cfg = Settings(dist=dist, config_js=config_for(root), access="google-sign-in")
    with run_app(create_app(cfg, log_stream=io.StringIO())) as url:
        page = httpx.get(url + "/callback#access_token=x")   # OHIF's sign-in return: the SPA, no assertion
        assert page.status_code == 200 and page.headers["cross-origin-opener-policy"] == "same-origin"
        assert f"'{root}'" in httpx.get(url + "/app-config.js").text
        assert "public" in httpx.get(url + "/").headers["cache-control"]
        assert httpx.get(url + "/dicomweb/s/studies").headers["content-type"].startswith("text/html")  # no proxy


def test_settings_errors_name_the_variable(dist, tmp_path):
    env = {"HOSTED_DIST": str(dist), "HOSTED_APP_CONFIG": "window.config = {};", "HOSTED_IAP_AUDIENCE": AUD}
    assert from_env(env).access == "iap" and not from_env(env).read_write
    cases = {
        "HOSTED_ACCESS": ({"HOSTED_ACCESS": "public"}, "iap, google-sign-in"),
        "HOSTED_IAP_AUDIENCE": ({"HOSTED_IAP_AUDIENCE": ""}, "/projects/PROJECT_NUMBER"),
        "HOSTED_WRITE": ({"HOSTED_WRITE": "yes"}, "read-only, read-write"),
        "HOSTED_SOURCES": ({"HOSTED_SOURCES": "[1"}, "not JSON"),
        "HOSTED_DIST": ({"HOSTED_DIST": str(tmp_path)}, "no index.html"),
        "HOSTED_UPSTREAM_AUTH": ({"HOSTED_UPSTREAM_AUTH": "adc"}, "google, none or token:VALUE"),
    }
    for var, (change, hint) in cases.items():
        with pytest.raises(SettingsError, match=var) as err:
            from_env({**env, **change})
        assert hint in str(err.value)
    with pytest.raises(SettingsError, match="trailing slash"):
        from_env({**env, "HOSTED_SOURCES": json.dumps({"s": "https://x/dicomWeb/"})})
    # An iap config that would still send the browser to Google is refused at start.
    google = "https://healthcare.googleapis.com/v1/projects/p/locations/l/datasets/d/dicomStores/other/dicomWeb"
    with pytest.raises(SettingsError, match="googleapis.com"):
        create_app(Settings(dist=dist, config_js=config_for(google), sources={}, iap_audience=AUD))
    # Roots made same-origin, but OHIF's Google configuration API would still call Google's hosts.
    browse = config_for(google).replace("wadoRoot", "configurationAPI: 'ohif.dataSourceConfigurationAPI.google', "
                                                    "wadoRoot")
    with pytest.raises(SettingsError, match="configurationAPI"):
        create_app(Settings(dist=dist, config_js=browse, sources={"s": google}, iap_audience=AUD))
    assert create_app(Settings(dist=dist, config_js=config_for(google), sources={"s": google}, iap_audience=AUD))


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 4096])
def test_rewrite_finds_urls_cut_by_chunk_boundaries(size):
    old, new = b"http://up:1/v1/s/dicomWeb", b"https://viewer.example/dicomweb/s"
    doc = json.dumps([{"7FE00010": {"vr": "OW", "BulkDataURI": f"{old.decode()}/studies/1/bulk/{i}"}}
                      for i in range(50)]).encode()
    rw = Rewriter({old: new})
    out = b"".join(rw.feed(doc[i:i + size]) for i in range(0, len(doc), size)) + rw.flush()
    assert out == doc.replace(old, new) and old not in out


@pytest.mark.parametrize("size", [1, 5, 31, 4096])
def test_rewrite_of_several_roots_whatever_the_chunks(size):
    """Two stores' roots of different lengths (the C fast path), and roots that nest (one pass, the
    longest root first): every chunking gives the document rewritten as a whole."""
    a, b = b"http://up:1/v1/a/dicomWeb", b"http://up:1/v1/store-bb/dicomWeb"
    table = {a: b"https://v.example/dicomweb/a", b: b"https://v.example/dicomweb/bb"}
    doc = b"".join(b'{"RetrieveURL": "%s/studies/%d"},' % ((a, b)[i % 3 == 0], i) for i in range(40)) + a
    nested = {a: b"https://v.example/dicomweb/a", a + b"/studies/7": b"https://v.example/dicomweb/seven"}
    for tab, want in ((table, doc.replace(b, table[b]).replace(a, table[a])),
                      (nested, doc.replace(a + b"/studies/7", b"S7").replace(a, nested[a]).replace(b"S7", nested[
                          a + b"/studies/7"]))):
        rw = Rewriter(tab)
        out = b"".join(rw.feed(doc[i:i + size]) for i in range(0, len(doc), size)) + rw.flush()
        assert out == want


def test_a_remembered_assertion_is_forgotten_at_its_expiry():
    import time

    from provision.hosted.iap import Identity, KeySet

    keys = KeySet("http://127.0.0.1:9/unused")
    ana = Identity("ana@example.com", "1")
    keys.verified.put("a", AUD, ana, time.time() + 60)
    keys.verified.put("b", AUD, ana, time.time() - 1)
    assert keys.verified.get("a", AUD) == ana and keys.verified.get("a", "/other/audience") is None
    assert keys.verified.get("b", AUD) is None


class _Metadata(BaseHTTPRequestHandler):
    """Cloud Run's metadata server as google-auth reads it: the ping, the project, the account, its token."""

    token = ""
    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        _Metadata.seen.append(self.path)
        path = self.path.split("?")[0]
        answers = {
            "/": "",
            "/computeMetadata/v1/project/project-id": "hosted-iam",
            "/computeMetadata/v1/universe/universe-domain": "googleapis.com",
            "/computeMetadata/v1/instance/service-accounts/default/": json.dumps(
                {"email": SA.split(":", 1)[1], "aliases": ["default"],
                 "scopes": ["https://www.googleapis.com/auth/cloud-platform"]}),
            "/computeMetadata/v1/instance/service-accounts/default/token": json.dumps(
                {"access_token": _Metadata.token, "expires_in": 3599, "token_type": "Bearer"}),
        }
        if self.headers.get("Metadata-Flavor") != "Google" or path not in answers:
            self.send_response(404)
            self.end_headers()
            return
        body = answers[path].encode()
        self.send_response(200)
        self.send_header("Metadata-Flavor", "Google")
        self.send_header("Content-Type", "application/json" if body.startswith(b"{") else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_on_cloud_run_the_token_comes_from_the_metadata_server(emulator_factory, dist, tmp_path):
    """The default upstream auth (google.auth.default()) as on Cloud Run: google-auth finds the metadata
    server (GCE_METADATA_HOST), the service account's token reaches the store, and IAM sees that account."""
    import subprocess
    import sys

    emu = emulator_factory(enforce_iam=True, record=tmp_path / "record.jsonl")
    owner = "user:ana@example.com"
    for resource, role in (("organizations/1", "roles/resourcemanager.projectCreator"),
                           ("billingAccounts/012345-6789AB-CDEF01", "roles/billing.user")):
        requests.put(f"{emu.url}/_emulator/policies/{resource}", json={"bindings": [
            {"role": role, "members": [owner]}]}, timeout=10, headers=CONTROL).raise_for_status()
    env = ready_store(emu, project="hosted-iam", member=owner, parent="organizations/1")
    env.stores.setIamPolicy(resource=env.store, body={"policy": {"bindings": [
        {"role": "roles/healthcare.dicomViewer", "members": [SA]}]}}).execute()
    _Metadata.token, _Metadata.seen = f"emulator:{SA}", []
    metadata = ThreadingHTTPServer(("127.0.0.1", 0), _Metadata)
    threading.Thread(target=metadata.serve_forever, args=(0.05,), daemon=True).start()
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    md = f"127.0.0.1:{metadata.server_port}"
    home = tmp_path / "home"
    home.mkdir()
    with IapKeys() as iap:
        app_env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "CLOUDSDK_CONFIG": str(home), "PORT": str(port),
                   "PYTHONPATH": str(__import__("pathlib").Path(__file__).resolve().parent.parent),
                   "GCE_METADATA_HOST": md, "GCE_METADATA_IP": md, "HOSTED_LOG_LEVEL": "info",
                   "HOSTED_DIST": str(dist), "HOSTED_APP_CONFIG": config_for(env.dicomweb_url),
                   "HOSTED_SOURCES": json.dumps({"store1": env.dicomweb_url}), "HOSTED_IAP_AUDIENCE": AUD,
                   "HOSTED_IAP_JWKS_URL": iap.url}
        proc = subprocess.Popen([sys.executable, "-m", "provision.hosted"], env=app_env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            lines = []
            for line in proc.stderr:
                lines.append(line.decode())
                if b"Uvicorn running on" in line:
                    break
            assert proc.poll() is None, "".join(lines)
            resp = httpx.get(f"http://127.0.0.1:{port}/dicomweb/store1/studies", headers=iap.header(), timeout=30)
        finally:
            proc.terminate()
            proc.communicate(timeout=15)
            metadata.shutdown()
            metadata.server_close()
    assert resp.status_code in (200, 204), resp.text
    assert any("/service-accounts/default/token" in p for p in _Metadata.seen)
    calls = [r for r in records(tmp_path / "record.jsonl") if "/dicomWeb/" in r["path"]]
    assert calls and {r["principal"] for r in calls} == {SA}


def test_the_emulators_iap_keys_and_assertions_are_trusted(emulator, dist):
    """The app pointed at the emulator's IAP keys (Google's path) accepts an assertion the emulator's
    IAP signed for this service, and refuses one it signed for another service."""
    env = ready_store(emulator, project="hosted-iapkeys")
    keys = httpx.get(f"{emulator.url}/iap/verify/public_key-jwk").json()["keys"]
    assert keys and all(k["alg"] == "ES256" and k["kty"] == "EC" and k["crv"] == "P-256" for k in keys)

    def assertion(audience: str) -> dict:
        got = requests.post(f"{emulator.url}/_emulator/iap/assertion", headers=CONTROL, timeout=10,
                            json={"email": "ana@example.com", "audience": audience})
        got.raise_for_status()
        return {"x-goog-iap-jwt-assertion": got.json()["assertion"]}

    cfg = Settings(dist=dist, config_js=config_for(env.dicomweb_url), sources={"store1": env.dicomweb_url},
                   iap_audience=AUD, iap_jwks_url=f"{emulator.url}/iap/verify/public_key-jwk", upstream_auth="none")
    log = io.StringIO()
    with run_app(create_app(cfg, log_stream=log)) as url:
        assert httpx.get(f"{url}/dicomweb/store1/studies", headers=assertion(AUD)).status_code in (200, 204)
        other = AUD.replace("ohif-viewer", "another")
        assert httpx.get(f"{url}/dicomweb/store1/studies", headers=assertion(other)).status_code == 401
    assert '"user":"ana@example.com"' in log.getvalue()
