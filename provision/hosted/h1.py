"""A small HTTP/1.1 client for the proxy's upstream: asyncio streams, httptools' parser, a keep-alive pool.

Why not httpx (which the app used before, and still uses to fetch IAP's keys): per forwarded request
it cost about as much CPU as the rest of the app together (URL parsing character by character,
anyio/sniffio layers, and a pool that polls every idle connection's socket on each request and on
each answer's end, which grows with concurrency: 64 concurrent frame requests meant 64 polls per
request). bench/hosted.py measured the difference (bench/README.md). This client does only what the
proxy needs: one request per connection at a time, a LIFO pool of idle keep-alive connections per
origin with a bound on open connections, bodies streamed both ways with backpressure (a slow reader
pauses the socket, so memory per answer stays bounded), and gzip/deflate decoding on demand.

Errors: `ConnectFailed` (nothing was sent), `Disconnected` (the connection ended before a whole
answer head came back), `Timeout`, all `UpstreamError`s. No proxies (HTTPS_PROXY is not read: Cloud
Run has none between a service and Google's APIs), no redirects (the proxy never followed them).
"""
from __future__ import annotations

import asyncio
import ssl
import time
import zlib
from collections import deque
from typing import AsyncIterator, Iterable
from urllib.parse import urlsplit

import httptools

__all__ = ["Client", "ConnectFailed", "Disconnected", "Response", "Timeout", "UpstreamError"]

READ_HIGH = 1 << 20      # bytes of an answer buffered before the socket is paused (the reader is slow)
READ_LOW = 256 << 10     # ... and resumed once the reader has taken it down to this
KEEPALIVE_S = 5.0        # an idle connection older than this is closed, not reused (httpx's default)


class UpstreamError(Exception):
    """No (complete) answer from the upstream."""


class ConnectFailed(UpstreamError):
    """The connection could not be opened: nothing was sent."""


class Disconnected(UpstreamError):
    """The connection closed or failed before the answer's head, or in the middle of its body."""


class Timeout(UpstreamError):
    """Connecting, waiting for a free connection, sending or reading took longer than allowed."""


class Headers(dict[str, str]):
    """An answer's headers, names in lower case; a repeated header's values joined by ", "."""


class _Conn(asyncio.Protocol):
    """One connection; `request()` sends a request on it and returns its Response."""

    def __init__(self, key: tuple[str, str, int]) -> None:
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._exc: BaseException | None = None
        self._resp: Response | None = None
        self._write_ok: asyncio.Event = asyncio.Event()
        self._write_ok.set()

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # asyncio hands the base class; it is a Transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._write_ok.set()
        if self._resp is not None:
            self._resp._lost(exc)

    def pause_writing(self) -> None:
        self._write_ok.clear()

    def resume_writing(self) -> None:
        self._write_ok.set()

    def data_received(self, data: bytes) -> None:
        resp = self._resp
        if resp is None:   # bytes nobody asked for: the connection cannot be trusted any more
            self.close()
            return
        resp._feed(data)

    def eof_received(self) -> bool | None:
        return False   # close the transport; connection_lost reports it

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def drain(self) -> None:
        if not self._write_ok.is_set():
            await self._write_ok.wait()
        if self.closed:
            raise Disconnected("the connection closed while the request was being sent")


class Response:
    """An answer whose body is still on the wire: `aiter_raw()` (as sent, content-encoded) or
    `aiter_bytes()` (decoded), then `aclose()`, which puts the connection back in the pool when the
    whole body was read and closes it otherwise."""

    def __init__(self, conn: _Conn, pool: Client, head_only: bool, read_timeout: float) -> None:
        self._conn, self._pool, self._head_only, self._timeout = conn, pool, head_only, read_timeout
        self.status_code = 0
        self.headers = Headers()
        self._parser = httptools.HttpResponseParser(self)
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._head_done = False
        self._keep_alive = False
        self._done = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._released = False

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:   # called once per header, whole
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text

    def on_headers_complete(self) -> None:
        self.status_code = self._parser.get_status_code()
        if 100 <= self.status_code < 200:   # an interim answer: the real one follows
            self.headers = Headers()
            return
        self._head_done = True
        self._keep_alive = self._parser.should_keep_alive()   # read here: after the body it no longer says
        if self._head_only or self.status_code in (204, 304):
            self._done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > READ_HIGH and not self._paused and self._conn.transport is not None:
            self._paused = True
            self._conn.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if 100 <= self.status_code < 200:   # the parser goes on with the next answer on its own
            return
        self._done = True
        self._wake()

    # from the connection
    def _feed(self, data: bytes) -> None:
        if self._done:   # more than one answer's worth: not reusable
            self._conn.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._error = Disconnected(f"the upstream's answer is not valid HTTP/1.1: {exc}")
            self._conn.close()
            self._wake()

    def _lost(self, exc: BaseException | None) -> None:
        if not self._done and self._error is None:   # (a timeout or a parse error closed it: that stands)
            delimited = "content-length" in self.headers or "chunked" in self.headers.get("transfer-encoding", "")
            if exc is None and self._head_done and not delimited:
                self._done = True   # an answer without a length ends with its connection
            else:
                self._error = Disconnected(f"the upstream closed the connection ({exc or 'end of stream'})")
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        timer = loop.call_later(self._timeout, self._expire)
        try:
            await self._waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _expire(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._error = Timeout(f"no data from the upstream for {self._timeout:.0f} s")
            self._conn.close()
            self._waiter.set_result(None)

    async def _read_head(self) -> None:
        while not self._head_done:
            if self._error is not None:
                raise self._error
            await self._wait()

    # the caller's side
    async def aiter_raw(self) -> AsyncIterator[bytes]:
        """The body as it comes (de-chunked, still content-encoded)."""
        while True:
            while self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                if self._paused and self._buffered <= READ_LOW and self._conn.transport is not None:
                    self._paused = False
                    self._conn.transport.resume_reading()
                yield chunk
            if self._done:
                return
            if self._error is not None:
                raise self._error
            await self._wait()

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body decoded from its Content-Encoding (gzip or deflate; anything else as it came)."""
        encoding = self.headers.get("content-encoding", "identity").strip().lower()
        if encoding in ("gzip", "x-gzip"):
            decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            decoder = zlib.decompressobj()
        else:
            async for chunk in self.aiter_raw():
                yield chunk
            return
        async for chunk in self.aiter_raw():
            out = decoder.decompress(chunk)
            if out:
                yield out
        tail = decoder.flush()
        if tail:
            yield tail

    async def aread(self) -> bytes:
        """The whole body, as it came (content-encoded)."""
        return b"".join([chunk async for chunk in self.aiter_raw()])

    async def aclose(self) -> None:
        """Done with this answer: its connection goes back to the pool if it can be reused."""
        if self._released:
            return
        self._released = True
        conn = self._conn
        conn._resp = None
        if self._paused and conn.transport is not None and not conn.closed:
            conn.transport.resume_reading()
        # Reused only after a whole answer (a HEAD answer ends with its head: the next answer gets a
        # parser of its own), and only if the upstream keeps the connection open.
        reusable = self._done and self._error is None and not conn.closed and self._keep_alive
        self._pool._release(conn, reusable)


class Client:
    """A pool of keep-alive HTTP/1.1 connections, at most `max_connections` open at once."""

    def __init__(self, *, connect_timeout: float = 10.0, read_timeout: float = 120.0,
                 write_timeout: float = 120.0, pool_timeout: float = 30.0, max_connections: int = 256,
                 max_idle: int = 128, user_agent: str = "ohif-hosted-viewer") -> None:
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self.write_timeout, self.pool_timeout = write_timeout, pool_timeout
        self.max_connections, self.max_idle = max_connections, max_idle
        self.user_agent = user_agent
        self._idle: dict[tuple[str, str, int], list[_Conn]] = {}
        self._open = 0
        self._freed = asyncio.Condition()
        self._waiting = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._ssl: ssl.SSLContext | None = None

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            try:
                import certifi   # what httpx trusted: the same roots whatever the base image holds

                self._ssl = ssl.create_default_context(cafile=certifi.where())
            except ImportError:
                self._ssl = ssl.create_default_context()
        return self._ssl

    async def _checkout(self, key: tuple[str, str, int]) -> _Conn:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()   # the most recently used: the likeliest to be still open
            if not conn.closed and now - conn.idle_since < KEEPALIVE_S:
                return conn
            self._drop(conn)
        if self._open >= self.max_connections:
            other = next((conns for conns in self._idle.values() if conns), None)
            if other:   # an idle connection to another host makes room
                self._drop(other.pop(0))
            else:
                await self._wait_for_room(key)
                return await self._checkout(key)
        self._open += 1
        try:
            return await self._connect(key)
        except BaseException:
            self._open -= 1
            raise

    async def _wait_for_room(self, key: tuple[str, str, int]) -> None:
        async def room() -> None:
            async with self._freed:
                await self._freed.wait_for(lambda: self._open < self.max_connections or bool(self._idle.get(key)))
        self._waiting += 1
        try:
            await asyncio.wait_for(room(), self.pool_timeout)
        except asyncio.TimeoutError:
            raise Timeout(f"no free upstream connection within {self.pool_timeout:.0f} s") from None
        finally:
            self._waiting -= 1

    async def _connect(self, key: tuple[str, str, int]) -> _Conn:
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        tls = self._ssl_context() if scheme == "https" else None
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _Conn(key), host, port, ssl=tls,
                                       server_hostname=host if tls else None), self.connect_timeout)
        except asyncio.TimeoutError:
            raise ConnectFailed(f"connecting to {host}:{port} took longer than {self.connect_timeout:.0f} s") from None
        except OSError as exc:
            raise ConnectFailed(f"cannot connect to {host}:{port}: {exc}") from None
        return conn

    def _drop(self, conn: _Conn) -> None:
        conn.close()
        self._open -= 1
        self._notify()

    def _release(self, conn: _Conn, reusable: bool) -> None:
        if not reusable:
            self._drop(conn)
            return
        idle = self._idle.setdefault(conn.key, [])
        if len(idle) >= self.max_idle:
            self._drop(conn)
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)
        self._notify()

    def _notify(self) -> None:
        if not self._waiting:   # almost always: nobody waits for a connection, so no lock and no task
            return
        cond = self._freed

        async def wake() -> None:
            async with cond:
                cond.notify_all()

        task = asyncio.get_running_loop().create_task(wake())
        self._tasks.add(task)   # held until done: the loop keeps only a weak reference
        task.add_done_callback(self._tasks.discard)

    async def send(self, method: str, url: str, headers: Iterable[tuple[str, str]],
                   body: AsyncIterator[bytes] | None = None) -> Response:
        """Send a request; the answer comes back once its head has arrived, its body still to read.

        `body` is sent as it comes: with the Content-Length the caller put in `headers`, chunked otherwise."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        port = parts.port or (443 if scheme == "https" else 80)
        key = (scheme, parts.hostname, port)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        default_port = port == (443 if scheme == "https" else 80)
        host = parts.hostname if default_port else f"{parts.hostname}:{port}"
        if ":" in parts.hostname:
            host = f"[{parts.hostname}]" + ("" if default_port else f":{port}")
        lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", f"User-Agent: {self.user_agent}"]
        has_length = False
        for name, value in headers:
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
                raise ValueError(f"header {name!r} cannot be sent")
            has_length = has_length or name.lower() == "content-length"
            lines.append(f"{name}: {value}")
        chunked = body is not None and not has_length
        if chunked:
            lines.append("Transfer-Encoding: chunked")
        elif body is None and method in ("POST", "PUT", "PATCH"):
            lines.append("Content-Length: 0")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        conn = await self._checkout(key)
        resp = Response(conn, self, method == "HEAD", self.read_timeout)
        conn._resp = resp
        try:
            if conn.closed or conn.transport is None:   # closed before the answer could learn of it
                raise Disconnected("the upstream closed the connection before the request was sent")
            conn.transport.write(head)
            if body is not None:
                await self._send_body(conn, body, chunked)
            await resp._read_head()
        except BaseException:
            await resp.aclose()   # an unfinished exchange: the connection is closed, never reused
            raise
        return resp

    async def _send_body(self, conn: _Conn, body: AsyncIterator[bytes], chunked: bool) -> None:
        assert conn.transport is not None
        async for chunk in body:
            if not chunk:
                continue
            conn.transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            try:
                await asyncio.wait_for(conn.drain(), self.write_timeout)
            except asyncio.TimeoutError:
                raise Timeout(f"sending the request body took longer than {self.write_timeout:.0f} s") from None
        if chunked:
            conn.transport.write(b"0\r\n\r\n")

    async def aclose(self) -> None:
        """Close every idle connection (answers still being read close theirs when done)."""
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
