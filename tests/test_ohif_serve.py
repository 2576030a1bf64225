"""The viewer's static server: config from memory, content types, SPA fallback, 404s, ports."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest
import requests

from provision.errors import ProvisionError
from provision.ohif.fetch import viewer_dir
from provision.ohif.serve import ViewerServer, serve_viewer

CONFIG = "window.config = { routerBasename: '/' };\n"


@pytest.fixture
def dist(tmp_path) -> Path:
    d = tmp_path / "dist"
    (d / "assets").mkdir(parents=True)
    (d / "index.html").write_text("<!doctype html><title>OHIF</title>")
    (d / "app.bundle.123.js").write_text("console.log(1)")
    (d / "app.bundle.css").write_text("body{}")
    (d / "manifest.json").write_text("{}")
    (d / "ohif-logo.svg").write_text("<svg/>")
    (d / "abc.wasm").write_bytes(b"\0asm\1\0\0\0")
    (d / "a34f.woff2").write_bytes(b"wOF2")
    (d / "app-config.js").write_text("window.config = 'shipped default';")
    (d / "assets" / "favicon.ico").write_bytes(b"\0\0\1\0")
    (tmp_path / "secret.txt").write_text("outside the dist")
    return d


@pytest.fixture
def server(dist):
    with ViewerServer(dist, CONFIG, port=0) as srv:
        yield srv


def test_port_zero_and_url(server):
    assert server.host == "127.0.0.1" and server.port > 0
    assert server.url == f"http://127.0.0.1:{server.port}"


def test_config_is_served_from_memory_not_from_dist(server):
    r = requests.get(server.url + "/app-config.js", timeout=5)
    assert r.status_code == 200 and r.text == CONFIG
    assert r.headers["Content-Type"].startswith("text/javascript")
    assert r.headers["Cache-Control"] == "no-store"
    server.set_config("window.config = {};\n")
    assert requests.get(server.url + "/app-config.js", timeout=5).text == "window.config = {};\n"


@pytest.mark.parametrize(
    "path,ctype",
    [
        ("/abc.wasm", "application/wasm"),
        ("/app.bundle.123.js", "text/javascript; charset=utf-8"),
        ("/app.bundle.css", "text/css; charset=utf-8"),
        ("/manifest.json", "application/json"),
        ("/ohif-logo.svg", "image/svg+xml"),
        ("/a34f.woff2", "font/woff2"),
        ("/assets/favicon.ico", "image/x-icon"),
        ("/index.html", "text/html; charset=utf-8"),
    ],
)
def test_content_types(server, dist, path, ctype):
    r = requests.get(server.url + path, timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == ctype
    assert r.content == (dist / path.lstrip("/")).read_bytes()
    assert r.headers["Content-Length"] == str(len(r.content))


@pytest.mark.parametrize("path", ["/", "/viewer", "/viewer?StudyInstanceUIDs=1.2.3&token=x", "/callback", "/notfoundstudy", "/local/deep/route"])
def test_spa_fallback(server, path):
    r = requests.get(server.url + path, timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "<title>OHIF</title>" in r.text


@pytest.mark.parametrize("path", ["/missing.bundle.js", "/nope.wasm", "/assets/none.png", "/../secret.txt", "/%2e%2e/secret.txt"])
def test_missing_files_are_404_not_html(server, path):
    r = requests.get(server.url + path, timeout=5)
    assert r.status_code == 404
    assert "outside the dist" not in r.text


def test_traversal_with_raw_socket(server):
    with socket.create_connection((server.host, server.port), timeout=5) as s:
        s.sendall(b"GET /../secret.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 404") and b"outside the dist" not in data


def test_head(server):
    r = requests.head(server.url + "/abc.wasm", timeout=5)
    assert r.status_code == 200 and r.headers["Content-Length"] == "8" and r.content == b""


def test_concurrent_requests(server):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(lambda i: requests.get(f"{server.url}/abc.wasm?{i}", timeout=5).status_code, range(64)))
    assert codes == [200] * 64


def test_port_in_use_is_a_clear_error(dist, server):
    with pytest.raises(ProvisionError, match=f"port {server.port} .* is in use"):
        ViewerServer(dist, CONFIG, port=server.port)


def test_not_a_viewer_build(tmp_path):
    with pytest.raises(ProvisionError, match="not an OHIF viewer build"):
        ViewerServer(tmp_path, CONFIG)


def test_stop_releases_the_port(dist):
    srv = serve_viewer(CONFIG, 0, dist=dist)
    port = srv.port
    assert requests.get(srv.url + "/", timeout=5).status_code == 200
    srv.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/", timeout=2)
    ViewerServer(dist, CONFIG, port=port).stop()  # the port can be bound again


def test_request_log_callback(dist):
    seen = []
    with serve_viewer(CONFIG, 0, dist=dist, on_request=lambda m, p, s: seen.append((m, p, s))) as srv:
        requests.get(srv.url + "/viewer", timeout=5)
        requests.get(srv.url + "/x.js", timeout=5)
    assert ("GET", "/viewer", 200) in seen and ("GET", "/x.js", 404) in seen


def test_real_viewer_dist_when_cached():
    dist = viewer_dir() / "dist"
    if not (dist / "index.html").is_file():
        pytest.skip(f"LOUD SKIP: the OHIF viewer is not in the cache ({dist}); run `python -m provision.ohif.fetch`")
    with serve_viewer(CONFIG, 0, dist=dist) as srv:
        index = requests.get(srv.url + "/viewer?StudyInstanceUIDs=1", timeout=5)
        assert index.status_code == 200 and 'src="/app-config.js"' in index.text
        bundle = index.text.split('<script defer src="')[1].split('"')[0]
        r = requests.get(srv.url + bundle, timeout=30)
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/javascript")
        wasm = sorted(dist.glob("*.wasm"))[0].name
        r = requests.get(f"{srv.url}/{wasm}", timeout=30)
        assert r.headers["Content-Type"] == "application/wasm" and r.content[:4] == b"\0asm"
        assert requests.get(srv.url + "/app-config.js", timeout=5).text == CONFIG
