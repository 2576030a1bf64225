"""What the emulator's server adds to uvicorn and a2wsgi (server.py runs them).

- `Connections`: uvicorn's HTTP protocol, told about each connection it accepts, so the server can
  count them (tests and bench/keepalive.py see keep-alive at work) and reset one: the `reset`
  fault drops the TCP connection with an RST, as a flaky network does (App._dispatch).
- `asgi_app`: the WSGI App behind a2wsgi's WSGIMiddleware, with
  - the request's raw path as `RAW_URI` (the App routes on it: an encoded slash `%2F` in a
    resource ID is never a separator) and a terminated input for a chunked body (werkzeug reads
    a body with no Content-Length only then; ASGI frames every body);
  - a request body that stalls for READ_TIMEOUT_S seconds, or a client that goes away in the
    middle of one, as an error the App answers (408) on a connection closed after the answer;
  - a request whose unread rest is over DRAIN_LIMIT (a refused upload) answered with
    `Connection: close` instead of reading that rest to keep the connection.
"""
from __future__ import annotations

import asyncio
import socket
import struct
import threading
from typing import Any, Callable

from a2wsgi import WSGIMiddleware
from uvicorn.protocols.http.h11_impl import H11Protocol

from provision.emulator.http import RESET_CONNECTION

# A request body that sends nothing for this many seconds is given up on (408, connection closed).
READ_TIMEOUT_S = 60.0
# More than this many unread bytes of a request body (by its Content-Length) close the connection
# after the answer; less is read and dropped by uvicorn so that the connection carries the next request.
DRAIN_LIMIT = 4 << 20
# WSGI requests served at once (a2wsgi's thread pool). Generous: a request may wait out a realistic
# latency (`--latency realistic`) and `apply --parallel` sends dozens at a time.
WORKERS = 128


class Connections:
    """The connections uvicorn accepted: counted, and reachable by their client address."""

    def __init__(self) -> None:
        self.accepted = 0
        self._open: dict[Any, Any] = {}      # client (host, port) -> asyncio transport
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        registry = self

        class Protocol(H11Protocol):
            """uvicorn's h11 protocol, registering each connection with `registry`."""

            def connection_made(self, transport) -> None:  # type: ignore[override]
                super().connection_made(transport)
                registry._opened(self.client, transport)

            def connection_lost(self, exc: Exception | None) -> None:
                registry._closed(self.client)
                super().connection_lost(exc)

        self.protocol = Protocol

    def _opened(self, client, transport) -> None:
        with self._lock:
            self.accepted += 1
            self._open[client] = transport
            self._loop = asyncio.get_running_loop()

    def _closed(self, client) -> None:
        with self._lock:
            self._open.pop(client, None)

    def reset(self, client) -> None:
        """Drop the connection of `client` with an RST (from any thread)."""
        with self._lock:
            transport, loop = self._open.get(client), self._loop
        if transport is not None and loop is not None:
            loop.call_soon_threadsafe(_abort, transport)


def _abort(transport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:   # linger 0: close() sends an RST instead of a FIN
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    transport.abort()


class _Served:
    """The ASGI application uvicorn runs: the guard below around a2wsgi around the WSGI App."""

    def __init__(self, app: Callable, connections: Connections):
        def wsgi(environ: dict, start_response: Callable):
            scope = environ["asgi.scope"]
            query = scope.get("query_string") or b""
            environ["RAW_URI"] = (scope["raw_path"] + (b"?" + query if query else b"")).decode("latin-1")
            if "CONTENT_LENGTH" not in environ:
                environ["wsgi.input_terminated"] = True
            environ[RESET_CONNECTION] = lambda: connections.reset(scope["client"])
            return app(environ, start_response)

        self._wsgi = WSGIMiddleware(wsgi, workers=WORKERS)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self._wsgi(scope, receive, send)
        body = _Body(scope)
        await self._wsgi(scope, body.receiver(receive), body.sender(send))

    def close(self) -> None:
        """Let the worker threads go (each server has its own pool)."""
        self._wsgi.executor.shutdown(wait=False)


def asgi_app(app: Callable, connections: Connections) -> _Served:
    """The ASGI application that serves the WSGI `app` (see the module docstring)."""
    return _Served(app, connections)


class _Body:
    """One request's body as the application reads it: timed out when it stalls, an error when the
    client goes away, and whether its unread rest is too much to drain."""

    def __init__(self, scope) -> None:
        length = dict(scope["headers"]).get(b"content-length")
        self.length = int(length) if length and length.isdigit() else None
        self.received = 0
        self.complete = False
        self.broken = False

    def receiver(self, receive):
        async def guarded():
            try:
                message = await asyncio.wait_for(receive(), READ_TIMEOUT_S)
            except asyncio.TimeoutError:
                self.broken = True
                raise TimeoutError("the client stopped sending the request body") from None
            if message["type"] == "http.disconnect":
                self.broken = True
                raise ConnectionResetError("the client went away before the end of the request body")
            self.received += len(message.get("body", b""))
            self.complete = not message.get("more_body", False)
            return message
        return guarded

    def sender(self, send):
        async def guarded(message):
            if message["type"] == "http.response.start" and self._close_after():
                message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)
        return guarded

    def _close_after(self) -> bool:
        if self.broken:
            return True
        return not self.complete and self.length is not None and self.length - self.received > DRAIN_LIMIT
