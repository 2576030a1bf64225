"""The hosted viewer against upstreams that misbehave on purpose (small local HTTP servers playing the
Healthcare API's edge cases): large answers without a length, compression, busy answers, a browser
that goes away, answers above Cloud Run's unstreamed limit."""
from __future__ import annotations

import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from hosted_helpers import AUD, IapKeys, config_for, run_app
from provision.hosted.app import create_app
from provision.hosted.settings import Settings


@pytest.fixture(scope="module")
def dist():
    from provision.ohif.fetch import ensure_viewer

    return ensure_viewer()

class _BigJson(BaseHTTPRequestHandler):
    """An upstream whose metadata answer is large and has no Content-Length (it streams to the end)."""

    root = ""

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(b"[")
        for i in range(20000):   # about 3 MB, written in small pieces
            item = {"00080018": {"vr": "UI", "Value": [f"1.2.{i}"]},
                    "7FE00010": {"vr": "OW", "BulkDataURI": f"{_BigJson.root}/studies/1/series/2/instances/1.2.{i}"}}
            self.wfile.write((b"," if i else b"") + json.dumps(item).encode())
        self.wfile.write(b"]")

    def do_HEAD(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", "3000000")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_a_large_json_answer_is_rewritten_as_it_streams(dist):
    """Above the buffering limit (or without a length) the answer streams: rewritten on the fly, gzipped on
    the fly when the browser accepts it, and the upstream URL never reaches the browser."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BigJson)
    root = f"http://127.0.0.1:{server.server_port}/v1/projects/p/locations/l/datasets/d/dicomStores/s/dicomWeb"
    _BigJson.root = root
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        with IapKeys() as iap:
            cfg = Settings(dist=dist, config_js=config_for(root), sources={"s": root}, iap_audience=AUD,
                           iap_jwks_url=iap.url, upstream_auth="none")
            with run_app(create_app(cfg, log_stream=io.StringIO())) as url:
                for enc in ("identity", "gzip"):
                    with httpx.stream("GET", f"{url}/dicomweb/s/studies/1/series/2/metadata",
                                      headers={**iap.header(), "accept-encoding": enc}) as resp:
                        assert resp.status_code == 200 and "content-length" not in resp.headers
                        assert resp.headers.get("content-encoding", "identity") == enc
                        body = resp.read()
                    doc = json.loads(body)
                    assert len(doc) == 20000 and root.encode() not in body
                    assert doc[12345]["7FE00010"]["BulkDataURI"] == \
                        f"{url}/dicomweb/s/studies/1/series/2/instances/1.2.12345"
                head = httpx.head(f"{url}/dicomweb/s/studies/1/series/2/metadata", headers=iap.header())
                assert head.status_code == 200 and head.content == b""
                assert head.headers["content-length"] == "3000000"   # the upstream's, passed on
    finally:
        server.shutdown()
        server.server_close()


class _Busy(BaseHTTPRequestHandler):
    """An upstream that is always busy: 503, or 429 with a long Retry-After for paths with 'long'."""

    calls: list[str] = []

    def _answer(self) -> None:
        _Busy.calls.append(f"{self.command} {self.path}")
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        status, extra = (429, [("Retry-After", "60")]) if "long" in self.path else (503, [])
        body = json.dumps({"error": {"code": status, "status": "UNAVAILABLE"}}).encode()
        self.send_response(status)
        for k, v in [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *extra]:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = _answer  # noqa: N815

    def log_message(self, *args) -> None:
        pass


def test_retries_are_for_reads_only_and_bounded(dist):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Busy)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    root = f"http://127.0.0.1:{server.server_port}/v1/projects/p/locations/l/datasets/d/dicomStores/s/dicomWeb"
    _Busy.calls = []
    try:
        with IapKeys() as iap:
            cfg = Settings(dist=dist, config_js=config_for(root), sources={"s": root}, iap_audience=AUD,
                           iap_jwks_url=iap.url, upstream_auth="none", read_write=True)
            with run_app(create_app(cfg, log_stream=io.StringIO())) as url:
                get = httpx.get(f"{url}/dicomweb/s/studies", headers=iap.header())
                reads = len(_Busy.calls)
                post = httpx.post(f"{url}/dicomweb/s/studies", headers=iap.header(), content=b"x" * 10)
                posts = len(_Busy.calls) - reads
                long = httpx.get(f"{url}/dicomweb/s/studies/long", headers=iap.header())
    finally:
        server.shutdown()
        server.server_close()
    assert get.status_code == 503 and reads == 4          # the first try and three retries, then Google's answer
    assert post.status_code == 503 and posts == 1          # a write is never sent twice
    assert long.status_code == 429 and long.headers["retry-after"] == "60"
    assert _Busy.calls[-1].endswith("/long") and sum(c.endswith("/long") for c in _Busy.calls) == 1


class _Endless(BaseHTTPRequestHandler):
    """An upstream that streams frames until its client goes away; counts the answers still streaming."""

    active = 0
    lock = threading.Lock()
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802
        with _Endless.lock:
            _Endless.active += 1
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"\0" * 65536
            while True:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
        except OSError:
            pass   # the proxy closed its side: what this test wants to see
        finally:
            with _Endless.lock:
                _Endless.active -= 1
            self.close_connection = True

    def log_message(self, *args) -> None:
        pass


def test_a_browser_that_goes_away_releases_the_upstream(dist):
    """OHIF cancels requests all the time (scrolling through a series): each cancelled answer must close its
    upstream connection, or the proxy's connection pool runs dry."""
    import time

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Endless)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    root = f"http://127.0.0.1:{server.server_port}/v1/projects/p/locations/l/datasets/d/dicomStores/s/dicomWeb"
    try:
        with IapKeys() as iap:
            cfg = Settings(dist=dist, config_js=config_for(root), sources={"s": root}, iap_audience=AUD,
                           iap_jwks_url=iap.url, upstream_auth="none")
            with run_app(create_app(cfg, log_stream=io.StringIO())) as url:
                for _ in range(5):
                    with httpx.stream("GET", f"{url}/dicomweb/s/studies/1/series/2/instances/3",
                                      headers=iap.header()) as resp:
                        assert resp.status_code == 200
                        next(resp.iter_raw(65536))   # one chunk, then the browser goes away
                deadline = time.monotonic() + 20
                while _Endless.active and time.monotonic() < deadline:
                    time.sleep(0.05)   # polling a condition, bounded: the upstream handlers see the close
                assert _Endless.active == 0
    finally:
        server.shutdown()
        server.server_close()


class _Gzipped(BaseHTTPRequestHandler):
    """An upstream that compresses its answers when asked, as Google's front end does."""

    def do_GET(self) -> None:  # noqa: N802
        import gzip

        body = b"frame-bytes-" * 200
        json_doc = b'[{"x": "' + _Gzipped.root.encode() + b'/studies/1"}]'
        raw = json_doc if self.path.endswith("/json") else body
        zipped = "gzip" in self.headers.get("Accept-Encoding", "")
        data = gzip.compress(raw) if zipped else raw
        self.send_response(200)
        self.send_header("Content-Type", "application/dicom+json" if self.path.endswith("/json")
                         else "application/octet-stream")
        if zipped:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


def test_compressed_upstream_answers_reach_the_browser_intact(dist):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Gzipped)
    root = f"http://127.0.0.1:{server.server_port}/v1/projects/p/locations/l/datasets/d/dicomStores/s/dicomWeb"
    _Gzipped.root = root
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        with IapKeys() as iap:
            cfg = Settings(dist=dist, config_js=config_for(root), sources={"s": root}, iap_audience=AUD,
                           iap_jwks_url=iap.url, upstream_auth="none")
            with run_app(create_app(cfg, log_stream=io.StringIO())) as url:
                for enc in ("gzip", "identity"):
                    h = {**iap.header(), "accept-encoding": enc}
                    raw = httpx.get(f"{url}/dicomweb/s/raw", headers=h)
                    assert raw.status_code == 200 and raw.content == b"frame-bytes-" * 200
                    assert raw.headers.get("content-encoding", "identity") == enc
                    doc = httpx.get(f"{url}/dicomweb/s/json", headers=h)
                    assert doc.json() == [{"x": f"{url}/dicomweb/s/studies/1"}]
    finally:
        server.shutdown()
        server.server_close()


class _Large(BaseHTTPRequestHandler):
    """An upstream with a 20 MiB answer of known length (a big instance)."""

    size = 20 << 20

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", "application/dicom")
        self.send_header("Content-Length", str(_Large.size))
        self.end_headers()
        block = b"\1" * (1 << 20)
        for _ in range(_Large.size >> 20):
            self.wfile.write(block)

    def log_message(self, *args) -> None:
        pass


def test_a_large_answer_is_chunked_for_cloud_run(dist):
    """Above 16 MiB the answer goes out chunked, without its length (Cloud Run's 32 MiB limit on
    answers that are not streamed), and arrives whole."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Large)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    root = f"http://127.0.0.1:{server.server_port}/v1/projects/p/locations/l/datasets/d/dicomStores/s/dicomWeb"
    try:
        with IapKeys() as iap:
            cfg = Settings(dist=dist, config_js=config_for(root), sources={"s": root}, iap_audience=AUD,
                           iap_jwks_url=iap.url, upstream_auth="none")
            with run_app(create_app(cfg, log_stream=io.StringIO())) as url:
                with httpx.stream("GET", f"{url}/dicomweb/s/studies/1/series/2/instances/3",
                                  headers=iap.header()) as resp:
                    assert resp.headers.get("transfer-encoding") == "chunked"
                    assert "content-length" not in resp.headers
                    got = sum(len(c) for c in resp.iter_raw())
    finally:
        server.shutdown()
        server.server_close()
    assert got == _Large.size
