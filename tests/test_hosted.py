"""The hosted viewer (provision/hosted/): the app on a real port, the emulator as its real upstream.

The app is what would run on Cloud Run; here it is started in-process by uvicorn on 127.0.0.1, with
its Healthcare calls going to an in-process emulator and IAP played by tests/hosted_helpers.IapKeys.
"""
from __future__ import annotations

import gzip
import http.client
import io
import json

import httpx
import pytest
import requests

from dicom_factory import ct_series
from emulator_helpers import ready_store
from hosted_helpers import AUD, IapKeys, run_app
from provision.hosted.app import create_app
from provision.hosted.settings import Settings

FRAMES_ACCEPT = "multipart/related; type=application/octet-stream; transfer-syntax=*"


@pytest.fixture(scope="module")
def dist():
    from provision.ohif.fetch import ensure_viewer

    return ensure_viewer()


@pytest.fixture(scope="module")
def world():
    """One emulator with a store holding an 8-slice CT series (module-wide: read-only tests)."""
    from provision.emulator.server import EmulatorServer
    from provision.emulator.world import Options

    emu = EmulatorServer(Options(host="127.0.0.1", port=0)).start()
    try:
        env = ready_store(emu, project="hosted-proj")
        series = ct_series("hosted1", slices=8, size=64)
        env.dicomweb.store_instances(series)
        yield emu, env, series
    finally:
        emu.stop()


def config_for(root: str) -> str:
    return ("window.config = {\n  routerBasename: '/',\n  dataSources: [{ configuration: {\n"
            f"    qidoRoot: '{root}',\n    wadoRoot: '{root}',\n    wadoUriRoot: '{root}',\n  }}],\n}};\n")


def settings(dist, env, **kw) -> Settings:
    base = dict(dist=dist, config_js=config_for(env.dicomweb_url), sources={"store1": env.dicomweb_url},
                access="iap", iap_audience=AUD, upstream_auth="none")
    return Settings(**{**base, **kw})


@pytest.fixture(scope="module")
def hosted(world, dist):
    """The app in iap mode in front of the world's store; yields (url, iap keys, log buffer)."""
    emu, env, series = world
    log = io.StringIO()
    with IapKeys() as iap, run_app(create_app(settings(dist, env, iap_jwks_url=iap.url), log_stream=log)) as url:
        yield url, iap, log


def log_lines(log: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in log.getvalue().splitlines()]


# ------------------------------------------------------------------------------- the viewer itself


def test_serves_the_viewer_with_isolation_headers_and_spa_fallback(hosted, dist):
    url, iap, _ = hosted
    h = iap.header()
    index = httpx.get(url + "/", headers=h)
    assert index.status_code == 200 and "<html" in index.text.lower()
    for name, value in (("cross-origin-opener-policy", "same-origin"), ("cross-origin-embedder-policy", "require-corp"),
                        ("cross-origin-resource-policy", "same-origin")):
        assert index.headers[name] == value
    assert "no-cache" in index.headers["cache-control"]
    deep = httpx.get(url + "/viewer?StudyInstanceUIDs=1.2.3", headers=h)   # a reload of a deep link
    assert deep.status_code == 200 and deep.content == index.content
    assert httpx.get(url + "/no-such-bundle.js", headers=h).status_code == 404
    hashed = next(p.name for p in dist.glob("app.bundle.*.js"))
    asset = httpx.get(f"{url}/{hashed}", headers={**h, "accept-encoding": "br"})
    assert asset.status_code == 200 and asset.headers["content-encoding"] == "br"
    assert "immutable" in asset.headers["cache-control"] and "max-age=31536000" in asset.headers["cache-control"]
    assert asset.headers["content-type"].startswith("text/javascript")
    assert asset.content == (dist / hashed).read_bytes()  # httpx decoded the brotli body
    assert asset.headers["cross-origin-embedder-policy"] == "require-corp"
    gz = requests.get(f"{url}/{hashed}", headers={**h, "accept-encoding": "gzip"}, stream=True)
    assert gz.headers["content-encoding"] == "gzip"
    assert gzip.decompress(gz.raw.read()) == (dist / hashed).read_bytes()
    wasm = next(dist.glob("*.wasm")).name
    assert httpx.get(f"{url}/{wasm}", headers=h).headers["content-type"] == "application/wasm"


def test_config_is_same_origin_and_not_cached(hosted, world):
    url, iap, _ = hosted
    _, env, _ = world
    cfg = httpx.get(url + "/app-config.js", headers=iap.header())
    assert cfg.status_code == 200 and cfg.headers["cache-control"].endswith("no-cache")
    assert f"'{url}/dicomweb/store1'" in cfg.text
    assert env.url not in cfg.text  # the browser is never sent to the upstream
    # Behind Cloud Run's front end the browser called https://HOST: the roots say so.
    behind = httpx.get(url + "/app-config.js", headers={**iap.header(), "x-forwarded-proto": "https",
                                                        "host": "ohif-viewer-123.us-central1.run.app"})
    assert "'https://ohif-viewer-123.us-central1.run.app/dicomweb/store1'" in behind.text


def test_health_needs_no_assertion(hosted):
    url, _, _ = hosted
    resp = httpx.get(url + "/_hosted/health")
    assert resp.status_code == 200 and resp.json()["status"] == "ok"


# ------------------------------------------------------------------------------------- the proxy


def test_qido_and_metadata_through_the_proxy_stay_same_origin(hosted, world):
    url, iap, _ = hosted
    emu, env, series = world
    st, se = series[0].StudyInstanceUID, series[0].SeriesInstanceUID
    direct = httpx.get(f"{env.dicomweb_url}/studies", headers={"accept": "application/dicom+json"}).json()
    proxied = httpx.get(f"{url}/dicomweb/store1/studies", headers={**iap.header(), "accept": "application/dicom+json"})
    assert proxied.status_code == 200
    assert json.loads(proxied.text.replace(f"{url}/dicomweb/store1", env.dicomweb_url)) == direct
    for enc in ("identity", "gzip"):
        meta = httpx.get(f"{url}/dicomweb/store1/studies/{st}/series/{se}/metadata",
                         headers={**iap.header(), "accept": "application/dicom+json", "accept-encoding": enc})
        assert meta.status_code == 200 and meta.headers.get("content-encoding", "identity") == enc
        assert emu.url not in meta.text
        uris = [v["BulkDataURI"] for inst in meta.json() for v in inst.values() if "BulkDataURI" in v]
        assert len(uris) >= len(series) and all(u.startswith(f"{url}/dicomweb/store1/studies/{st}/") for u in uris)
        assert meta.headers["cache-control"] == "no-store"
    # A bulk data URI from the answer works through the proxy.
    bulk = httpx.get(uris[0], headers={**iap.header(), "accept": "multipart/related; type=application/octet-stream"})
    assert bulk.status_code == 200 and len(bulk.content) > 64 * 64 * 2


def test_frames_stream_through_unchanged(hosted, world):
    url, iap, _ = hosted
    _, env, series = world
    ds = series[3]
    path = f"studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}/frames/1"
    direct = httpx.get(f"{env.dicomweb_url}/{path}", headers={"accept": FRAMES_ACCEPT})
    proxied = httpx.get(f"{url}/dicomweb/store1/{path}", headers={**iap.header(), "accept": FRAMES_ACCEPT})
    assert proxied.status_code == 200 == direct.status_code
    def boundary(resp):
        return resp.headers["content-type"].rsplit("boundary=", 1)[1].encode()

    # The same answer (the emulator draws a fresh multipart boundary each time).
    assert proxied.headers["content-type"].replace(boundary(proxied).decode(), "B") == \
        direct.headers["content-type"].replace(boundary(direct).decode(), "B")
    assert proxied.content.replace(boundary(proxied), b"B") == direct.content.replace(boundary(direct), b"B")
    assert bytes(ds.PixelData) in proxied.content


def test_read_only_refuses_writes_without_calling_upstream(hosted, world):
    url, iap, log = hosted
    emu, env, series = world
    for method in ("POST", "DELETE", "PUT"):
        resp = httpx.request(method, f"{url}/dicomweb/store1/studies/{series[0].StudyInstanceUID}",
                             headers=iap.header(), content=b"x")
        assert resp.status_code == 405, method
        assert "read-only" in resp.json()["error"]["message"] and "POST" not in resp.headers["allow"]
    assert httpx.get(f"{env.dicomweb_url}/studies").status_code == 200  # the study is still there
    opts = httpx.options(f"{url}/dicomweb/store1/studies", headers=iap.header())
    assert opts.status_code == 204 and opts.headers["allow"] == "GET, HEAD, OPTIONS"


def test_paths_cannot_leave_the_store(hosted):
    url, iap, _ = hosted
    for bad in ("/dicomweb/store1/studies/../../../dicomStores/other/dicomWeb/studies",
                "/dicomweb/store1/studies/%2e%2e/%2e%2e/x", "/dicomweb/store1/studies%2F..%2Fx"):
        # http.client sends the path as written (httpx and browsers would remove the dot segments).
        conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=10)
        conn.request("GET", bad, headers=iap.header())
        resp = conn.getresponse()
        assert resp.status == 400, bad
        assert "without . or .. segments" in json.loads(resp.read())["error"]["message"]
        conn.close()
    assert httpx.get(f"{url}/dicomweb/nope/studies", headers=iap.header()).status_code == 404


# ------------------------------------------------------------------------------------------- IAP


def test_iap_assertion_is_required_and_verified(hosted):
    url, iap, log = hosted
    target = f"{url}/dicomweb/store1/studies"
    assert httpx.get(target, headers=iap.header()).status_code == 200
    now_public = httpx.get(url + "/", headers={"x-goog-authenticated-user-email": "accounts.google.com:a@b.c"})
    assert now_public.status_code == 401  # the unsigned convenience header is never trusted
    bad = {
        "missing": {},
        "expired": iap.header(exp_in=-600),
        "wrong audience": iap.header(aud="/projects/1/locations/us-central1/services/another"),
        "wrong issuer": iap.header(iss="https://accounts.google.com"),
        "wrong key": iap.header(key=iap.other),
        "garbage": {"x-goog-iap-jwt-assertion": "not.a.jwt"},
    }
    import jwt as pyjwt

    claims = pyjwt.decode(iap.assertion(), options={"verify_signature": False})
    public_pem = iap.key.public_key().public_bytes(
        __import__("cryptography.hazmat.primitives.serialization", fromlist=["x"]).Encoding.PEM,
        __import__("cryptography.hazmat.primitives.serialization", fromlist=["x"]).PublicFormat.SubjectPublicKeyInfo)
    # alg none, and HS256 keyed with the public key (the classic confusion attack), both unsigned by IAP.
    header_b64 = lambda alg: pyjwt.utils.base64url_encode(json.dumps({"alg": alg, "kid": iap.kid}).encode())  # noqa: E731
    body_b64 = pyjwt.utils.base64url_encode(json.dumps(claims).encode())
    bad["alg none"] = {"x-goog-iap-jwt-assertion": (header_b64("none") + b"." + body_b64 + b".").decode()}
    import hmac, hashlib  # noqa: E401

    signing = header_b64("HS256") + b"." + body_b64
    mac = pyjwt.utils.base64url_encode(hmac.new(public_pem, signing, hashlib.sha256).digest())
    bad["HS256 with the public key"] = {"x-goog-iap-jwt-assertion": (signing + b"." + mac).decode()}
    for why, headers in bad.items():
        for path in (target, url + "/", url + "/app-config.js"):
            resp = httpx.get(path, headers=headers)
            assert resp.status_code == 401, (why, path)
            assert "IAP" in resp.json()["error"]["message"]
    denied = [e for e in log_lines(log) if e["status"] == 401]
    assert denied and all(e["user"] is None and e["denied"] for e in denied)


# ------------------------------------------------------------------------------------ access log


def test_access_log_names_the_user_and_the_study(hosted, world):
    url, iap, log = hosted
    _, _, series = world
    ds = series[1]
    path = f"studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}/frames/1"
    before = len(log_lines(log))
    resp = httpx.get(f"{url}/dicomweb/store1/{path}", headers={**iap.header(email="rad@example.com"),
                                                               "accept": FRAMES_ACCEPT})
    assert resp.status_code == 200
    qido = httpx.get(f"{url}/dicomweb/store1/studies?StudyInstanceUID={ds.StudyInstanceUID}",
                     headers=iap.header(email="rad@example.com"))
    assert qido.status_code == 200
    frame, listing = log_lines(log)[before:]
    assert frame["user"] == "rad@example.com" and frame["method"] == "GET" and frame["store"] == "store1"
    assert (frame["study"], frame["series"], frame["instance"]) == (ds.StudyInstanceUID, ds.SeriesInstanceUID,
                                                                   ds.SOPInstanceUID)
    assert frame["status"] == 200 and frame["bytes"] == len(resp.content) and frame["latency_ms"] > 0
    assert frame["httpRequest"]["status"] == 200 and frame["severity"] == "INFO"
    assert listing["study"] == ds.StudyInstanceUID and "series" not in listing
    assert "?" not in listing["path"]  # queries (patient names) stay out of the log
    assert world[1].url not in log.getvalue()   # nor the upstream's address


def test_provisions_own_config_is_made_same_origin(world, dist):
    """The config `provision config` writes (its emulator form) served by the app: every root same-origin.
    Its Google form keeps OHIF's Google configuration API, which calls Google's hosts: refused in iap mode."""
    from types import SimpleNamespace

    from provision.hosted.settings import SettingsError
    from provision.ohif.config import render_config

    _, env, _ = world
    bp = SimpleNamespace(project=SimpleNamespace(id=env.project),
                         dataset=SimpleNamespace(id=env.dataset_id, location=env.location),
                         dicom_stores=[SimpleNamespace(id=env.store_id)],
                         viewer=SimpleNamespace(origin="http://127.0.0.1:3000", oauth_client_id=None))
    js = render_config(bp, emulator_url=env.url)
    assert js.count(env.dicomweb_url) == 3
    with IapKeys() as iap, run_app(create_app(settings(dist, env, config_js=js, iap_jwks_url=iap.url),
                                              log_stream=io.StringIO())) as url:
        served = httpx.get(url + "/app-config.js", headers=iap.header()).text
    assert env.url not in served and served.count(f"'{url}/dicomweb/store1'") == 3
    google = render_config(bp, oidc=False)
    root = "https://healthcare.googleapis.com/v1/projects/hosted-proj/locations/us-central1/datasets/ds1/dicomStores/store1/dicomWeb"
    with pytest.raises(SettingsError, match="configurationAPI"):
        create_app(settings(dist, env, config_js=google, sources={"store1": root}))


def test_a_forged_host_is_never_written_into_an_answer(hosted):
    url, iap, _ = hosted
    for headers in ({"host": "evil.example'};alert(1);//"}, {"x-forwarded-proto": "javascript"}):
        for path in ("/app-config.js", "/dicomweb/store1/studies"):
            resp = httpx.get(url + path, headers={**iap.header(), **headers})
            assert resp.status_code == 400 and "alert" not in resp.text and "javascript:" not in resp.text
    head = httpx.head(url + "/app-config.js", headers={**iap.header(), "accept-encoding": "br"})
    assert head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) > 0
