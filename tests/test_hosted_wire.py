"""The hosted viewer's upstream connections (aiohttp, as provision/hosted/upstream.py sets it up) against
a raw-socket upstream that plays HTTP/1.1's corner cases: keep-alive reuse, HEAD answers that announce a
length, chunked answers cut at odd places, an upstream that drops idle connections without saying so,
answers without a length."""
from __future__ import annotations

import asyncio
import io
import socket
import threading
import time

import httpx
import pytest

from hosted_helpers import AUD, IapKeys, config_for, run_app
from provision.hosted import upstream
from provision.hosted.app import create_app
from provision.hosted.settings import Settings

ROOT_PATH = "/v1/projects/p/locations/l/datasets/d/dicomStores/s/dicomWeb"


@pytest.fixture(scope="module")
def dist():
    from provision.ohif.fetch import ensure_viewer

    return ensure_viewer()


class RawUpstream:
    """A loopback server; `answer(method, path)` gives the raw bytes to write and whether to close after."""

    def __init__(self, answer) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[str] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.root = f"http://127.0.0.1:{self.sock.getsockname()[1]}{ROOT_PATH}"
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> "RawUpstream":
        self._accept.start()
        return self

    def __exit__(self, *exc) -> None:
        # close() alone does not wake a thread blocked in accept() on Linux (it waited out the join's
        # 5 s in every test); shutdown() does
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self._accept.join(timeout=5)
        for t in self._threads:
            t.join(timeout=5)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            t = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _handle(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            conn.settimeout(10)
            while True:
                while b"\r\n\r\n" not in buf:
                    try:
                        data = conn.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                method, path = head.split(b" ")[:2]
                self.requests.append(f"{method.decode()} {path.decode()}")
                pieces, close = self.answer(method.decode(), path.decode())
                for piece in pieces:
                    if isinstance(piece, float):   # a pause, in seconds
                        time.sleep(piece)
                    else:
                        conn.sendall(piece)
                if close:
                    return


def _settings(dist, root: str, iap: IapKeys) -> Settings:
    return Settings(dist=dist, config_js=config_for(root), sources={"s": root}, iap_audience=AUD,
                    iap_jwks_url=iap.url, upstream_auth="none")


def test_head_answers_end_with_their_head_and_connections_are_reused(dist):
    """A HEAD answer announces a length but carries no body: it must not wait for one, and the
    connection serves the next request (every request here goes over one upstream connection)."""
    body = b'[{"00080018": {"vr": "UI", "Value": ["1.2.3"]}}]'

    def answer(method: str, path: str):
        head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/dicom+json\r\nContent-Length: %d\r\n\r\n"
                % (3000000 if method == "HEAD" else len(body)))
        return [head] if method == "HEAD" else [head, body], False

    with RawUpstream(answer) as up, IapKeys() as iap, \
            run_app(create_app(_settings(dist, up.root, iap), log_stream=io.StringIO())) as url:
        h = {**iap.header(), "accept": "application/dicom+json"}
        head = httpx.head(f"{url}/dicomweb/s/studies", headers=h, timeout=10)
        gets = [httpx.get(f"{url}/dicomweb/s/studies", headers=h, timeout=10) for _ in range(5)]
    assert head.status_code == 200 and head.headers["content-length"] == "3000000"
    assert [g.content for g in gets] == [body] * 5
    assert up.connections == 1 and len(up.requests) == 6


def test_chunked_answers_pass_through_whole_however_they_are_cut(dist):
    """A chunked frame answer written in odd pieces (chunk headers split across writes) reaches the browser
    byte for byte; a chunked JSON answer is rewritten across its chunks."""
    payload = bytes(range(256)) * 600

    def chunked(data: bytes, size: int) -> bytes:
        out = b"".join(b"%x\r\n%s\r\n" % (len(data[i:i + size]), data[i:i + size]) for i in range(0, len(data), size))
        return out + b"0\r\n\r\n"

    def answer(method: str, path: str):
        if path.endswith("/frames/1"):
            wire = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
            wire += chunked(payload, 7777)
        else:
            doc = ('[{"7FE00010": {"vr": "OW", "BulkDataURI": "%s/studies/1/series/2/instances/3"}}]'
                   % up.root).encode()
            wire = b"HTTP/1.1 200 OK\r\nContent-Type: application/dicom+json\r\nTransfer-Encoding: chunked\r\n\r\n"
            wire += chunked(doc, 13)
        return [wire[i:i + 501] for i in range(0, len(wire), 501)], False

    with RawUpstream(answer) as up, IapKeys() as iap, \
            run_app(create_app(_settings(dist, up.root, iap), log_stream=io.StringIO())) as url:
        frame = httpx.get(f"{url}/dicomweb/s/studies/1/series/2/instances/3/frames/1", headers=iap.header(),
                          timeout=10)
        meta = httpx.get(f"{url}/dicomweb/s/studies/1/series/2/metadata", headers=iap.header(), timeout=10)
    assert frame.status_code == 200 and frame.content == payload
    assert meta.json()[0]["7FE00010"]["BulkDataURI"] == f"{url}/dicomweb/s/studies/1/series/2/instances/3"
    assert "127.0.0.1:" + up.root.split(":")[2].split("/")[0] not in meta.text


def test_an_upstream_that_drops_idle_connections_silently_costs_no_failed_read(dist):
    """Every answer claims keep-alive, then the upstream closes the connection: each next read still
    succeeds (a closed connection is not reused, or the read is retried on a new one)."""
    def answer(method: str, path: str):
        return [b"HTTP/1.1 200 OK\r\nContent-Type: application/dicom+json\r\nContent-Length: 2\r\n\r\n[]"], True

    with RawUpstream(answer) as up, IapKeys() as iap, \
            run_app(create_app(_settings(dist, up.root, iap), log_stream=io.StringIO())) as url:
        statuses = [httpx.get(f"{url}/dicomweb/s/studies", headers=iap.header(), timeout=10).status_code
                    for _ in range(20)]
    assert statuses == [200] * 20 and up.connections >= 20


def test_an_answer_without_a_length_ends_with_its_connection(dist):
    """HTTP/1.0-style: no Content-Length, no chunking, the end of the connection ends the answer."""
    payload = b"\x00\x01" * 50000

    def answer(method: str, path: str):
        return [b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                payload[:30000], payload[30000:]], True

    with RawUpstream(answer) as up, IapKeys() as iap, \
            run_app(create_app(_settings(dist, up.root, iap), log_stream=io.StringIO())) as url:
        got = [httpx.get(f"{url}/dicomweb/s/studies/1/series/2/instances/3/frames/1", headers=iap.header(),
                         timeout=10) for _ in range(3)]
    assert [(g.status_code, g.content) for g in got] == [(200, payload)] * 3


def test_an_upstream_that_never_answers_is_a_502_not_a_hang(dist):
    """A connection that closes after the request without a word: 502 after the retries, quickly."""
    with RawUpstream(lambda method, path: ([], True)) as up, IapKeys() as iap, \
            run_app(create_app(_settings(dist, up.root, iap), log_stream=io.StringIO())) as url:
        resp = httpx.get(f"{url}/dicomweb/s/studies", headers=iap.header(), timeout=20)
    assert resp.status_code == 502 and "did not answer" in resp.json()["error"]["message"]
    # The first try and three retries (upstream.py, with backoff); aiohttp itself sends each of these
    # once more at once on a new connection when a GET's connection drops before any answer.
    assert len(up.requests) == 8


def test_an_upstream_that_stalls_mid_answer_is_an_error_not_a_short_answer():
    """An answer without a length that stops coming: the read times out and says so; the bytes that
    came are never passed on as if they were the whole answer."""
    def answer(method: str, path: str):
        return [b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                b"x" * 1000, 3.0], True

    async def read(root: str) -> tuple[int, BaseException | None]:
        async with upstream.session(read_timeout=0.5) as client:
            resp, _ = await upstream.send(client, "GET", f"{root}/studies/1/series/2/instances/3/frames/1", {}, None)
            got, error = 0, None
            try:
                async for chunk in resp.content.iter_any():
                    got += len(chunk)
            except upstream.UpstreamError as exc:
                error = exc
            resp.release()
            return got, error

    with RawUpstream(answer) as up:
        got, error = asyncio.run(read(up.root))
    assert got == 1000 and isinstance(error, asyncio.TimeoutError)


def test_connections_are_bounded_and_waiting_requests_get_the_freed_ones():
    """At most max_connections to the upstream: more concurrent requests wait for one to come back to
    the pool and are then answered on it."""
    def answer(method: str, path: str):
        return [0.2, b"HTTP/1.1 200 OK\r\nContent-Type: application/dicom+json\r\nContent-Length: 2\r\n\r\n[]"], False

    async def burst(root: str) -> list[bytes]:
        async with upstream.session(max_connections=2, pool_timeout=10) as client:
            async def one() -> bytes:
                resp, _ = await upstream.send(client, "GET", f"{root}/studies", {"Accept": "application/dicom+json"},
                                              None)
                try:
                    return await resp.read()
                finally:
                    resp.release()

            return await asyncio.gather(*(one() for _ in range(6)))

    with RawUpstream(answer) as up:
        bodies = asyncio.run(burst(up.root))
    assert bodies == [b"[]"] * 6 and up.connections == 2 and len(up.requests) == 6
