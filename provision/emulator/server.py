"""Assemble the emulator (World + every API's routes) and serve it, embedded or standalone."""
from __future__ import annotations

import functools
import socket
import threading
import time
import traceback
from typing import IO, Callable, cast

from werkzeug.exceptions import InternalServerError
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler
from werkzeug.wsgi import LimitedStream

from provision.emulator import control, publicdata
from provision.emulator.billing import handlers as billing_handlers, state as billing_state
from provision.emulator.builds import handlers as builds_handlers, registry_routes as builds_registry_routes, state as builds_state
from provision.emulator.cloudrun import handlers as cloudrun_handlers, state as cloudrun_state
from provision.emulator.healthcare import handlers as healthcare_handlers, state as healthcare_state
from provision.emulator.http import App, Router
from provision.emulator.iamadmin import handlers as iamadmin_handlers, state as iamadmin_state
from provision.emulator.iap import handlers as iap_handlers, state as iap_state
from provision.emulator.kms import handlers as kms_handlers, state as kms_state
from provision.emulator.logging import handlers as logging_handlers, state as logging_state
from provision.emulator.oauth import handlers as oauth_handlers, state as oauth_state
from provision.emulator.orgpolicy import handlers as orgpolicy_handlers, state as orgpolicy_state
from provision.emulator.resourcemanager import handlers as resourcemanager_handlers, state as resourcemanager_state
from provision.emulator.serviceusage import handlers as serviceusage_handlers, state as serviceusage_state
from provision.emulator.storage import acl as storage_acl, handlers as storage_handlers, state as storage_state
from provision.emulator.storage import object_routes as storage_object_routes, upload_routes as storage_upload_routes
from provision.emulator.world import Options, World

# The APIs, in the order their backends are attached (a backend may read those before it at
# start): each package has `state.py` (the backend, no HTTP: `Backend`, attached as
# `world.<ATTACH_AS>`) and `handlers.py` (a module-level `router`).
APIS = (
    (resourcemanager_state, resourcemanager_handlers),
    (serviceusage_state, serviceusage_handlers),
    (billing_state, billing_handlers),
    (storage_state, storage_handlers),
    (healthcare_state, healthcare_handlers),
    (logging_state, logging_handlers),
    (oauth_state, oauth_handlers),
    (orgpolicy_state, orgpolicy_handlers),
    (kms_state, kms_handlers),
    (iamadmin_state, iamadmin_handlers),
    (iap_state, iap_handlers),
    (builds_state, builds_handlers),
    (cloudrun_state, cloudrun_handlers),
)
# Route modules besides an API's handlers.py, one `router` each (an API too big for one module splits its
# routes by resource; they share helpers, e.g. storage/requests.py, rather than import one another).
EXTRA_ROUTES = (storage_object_routes, storage_upload_routes, storage_acl, builds_registry_routes)


@functools.cache
def _router() -> Router:
    """Every API's routes in one router. The routes are the same for every emulator, so one per
    process: its compiled Map is shared, and an emulator starts in milliseconds, not half a second."""
    router = Router().include(control.router)
    for _, handlers in APIS:
        router.include(handlers.router)
    for module in EXTRA_ROUTES:
        router.include(module.router)
    return router


def build(options: Options) -> tuple[World, App]:
    """A World with every backend attached, and the WSGI app that serves it."""
    world = World(options)
    for state, _ in APIS:
        world.attach(state.ATTACH_AS, state.Backend(world))
    # Last: the public-dataset stand-ins are written into every API's state (and again after a reset).
    world.attach(publicdata.ATTACH_AS, publicdata.Backend(world))
    return world, App(world, _router())


# A request body the application left unread is read and dropped, so the connection can carry the
# next request, up to this many bytes; past that (a refused upload) the connection is closed.
DRAIN_LIMIT = 4 << 20
# How long an answer sent before its request body was read keeps reading (and dropping) that body
# before the connection closes: Apache's lingering close (its 2 s).
LINGER_S = 2.0


class _QuietHandler(WSGIRequestHandler):
    """werkzeug's request handler with HTTP/1.1 keep-alive.

    werkzeug's development server closes every connection (`Connection: close`), because its
    handler cannot tell where a request body the application did not read ends. This one frames
    every body itself (Content-Length through a LimitedStream, chunked through werkzeug's
    DechunkedInput), reads what the application left before answering the next request, and keeps
    the connection open unless the client asked to close it (`Connection: close`, HTTP/1.0 without
    keep-alive), the rest of the body is too large to drop (`DRAIN_LIMIT`), or the answer could
    not be framed (an error half-way through a response). An answer with no Content-Length (a
    streamed DICOMweb answer) is sent chunked to an HTTP/1.1 client; to an HTTP/1.0 client it ends
    with the connection.
    """

    protocol_version = "HTTP/1.1"
    # A stalled client (a request body that stops arriving), or an idle kept-alive connection, is
    # dropped after this many seconds of silence instead of holding its thread forever.
    timeout = 60

    def setup(self) -> None:
        super().setup()
        try:   # small answers go out at once (no Nagle wait for the client's delayed ACK)
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        track = getattr(self.server, "track_connection", None)
        if track is not None:
            track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            track = getattr(self.server, "track_connection", None)
            if track is not None:
                track(self.connection, False)

    def log_request(self, *args, **kwargs) -> None:  # the --record file is the request log
        pass

    def connection_dropped(self, error: BaseException, environ=None) -> None:
        self.close_connection = True

    # Long on purpose (issue 20): werkzeug's run_wsgi with our framing, kept whole to read against werkzeug's.
    def run_wsgi(self) -> None:  # noqa: C901 - werkzeug's, with framing and keep-alive
        if self.headers.get("Expect", "").lower().strip(" \t") == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.environ = environ = self.make_environ()
        body: _Body | None = None
        if not environ.get("wsgi.input_terminated"):      # not chunked: Content-Length frames the body
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = -1
            if length < 0:
                self.close_connection = True
                length = 0
            # typeshed's rfile is a BufferedIOBase, which is an IO[bytes] in all but name
            body = _Body(cast("IO[bytes]", self.rfile), length)
            environ["wsgi.input"] = body
        http11 = self.request_version >= "HTTP/1.1"
        state: dict = {"status": None, "headers": None, "sent": False, "chunked": False}

        def write(data: bytes) -> None:
            assert state["status"] is not None, "write() before start_response"
            if not state["sent"]:
                state["sent"] = True
                try:
                    code_str, msg = state["status"].split(None, 1)
                except ValueError:
                    code_str, msg = state["status"], ""
                code = int(code_str)
                self.send_response(code, msg)
                keys = set()
                for key, value in state["headers"]:
                    self.send_header(key, value)     # a `Connection: close` from the app closes too
                    keys.add(key.lower())
                bodyless = environ["REQUEST_METHOD"] == "HEAD" or 100 <= code < 200 or code in (204, 304)
                if "content-length" not in keys and not bodyless:
                    if http11:
                        state["chunked"] = True
                        self.send_header("Transfer-Encoding", "chunked")
                    else:
                        self.close_connection = True   # the end of the connection ends the answer
                if self.close_connection and "connection" not in keys:
                    self.send_header("Connection", "close")
                elif not http11 and not self.close_connection:
                    self.send_header("Connection", "keep-alive")
                self.end_headers()   # the headers in one write; TCP_NODELAY sends the body at once too
                if data:
                    self.wfile.write(b"%x\r\n%b\r\n" % (len(data), data) if state["chunked"] else data)
            elif data:
                if state["chunked"]:
                    self.wfile.write(b"%x\r\n%b\r\n" % (len(data), data))
                else:
                    self.wfile.write(data)
            self.wfile.flush()

        def start_response(status, headers, exc_info=None):
            if exc_info:
                try:
                    if state["sent"]:
                        raise exc_info[1].with_traceback(exc_info[2])
                finally:
                    exc_info = None
            elif state["headers"] is not None:
                raise AssertionError("Headers already set")
            state["status"], state["headers"] = status, headers
            return write

        def execute(app) -> None:
            iterable = app(environ, start_response)
            try:
                for data in iterable:
                    write(data)
                if not state["sent"]:
                    write(b"")
                if state["chunked"]:
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
            finally:
                if hasattr(iterable, "close"):
                    iterable.close()

        try:
            execute(self.server.app)
        except (ConnectionError, TimeoutError) as exc:
            self.connection_dropped(exc, environ)
            return
        except Exception:  # noqa: BLE001 - werkzeug's behaviour: a 500, the traceback to the log
            self.close_connection = True
            if not state["sent"]:
                state.update(status=None, headers=None)
                try:
                    execute(InternalServerError())
                except Exception:  # noqa: BLE001
                    pass
            self.server.log("error", "Error on request:\n" + traceback.format_exc())
            return
        if not self.close_connection:
            self._drain(environ, body)
        if self.close_connection and body is not None and not body.broken and body.tell() < body.limit:
            self._linger()

    def _linger(self) -> None:
        """Closing with unread input makes the kernel send a reset, which can throw away the answer
        before the client reads it (a 404 for an upload a reset ended became a broken pipe). So stop
        writing, then read and drop what the client still sends for up to LINGER_S."""
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(0.5)
            deadline = time.monotonic() + LINGER_S
            while time.monotonic() < deadline and self.connection.recv(1 << 16):
                pass
        except OSError:
            pass

    def _drain(self, environ, body) -> None:
        """Read what is left of the request body (or close the connection when it is too much)."""
        try:
            if body is not None:
                left = body.limit - body.tell()
                if body.broken or left > DRAIN_LIMIT:
                    self.close_connection = True
                elif left > 0:
                    body.exhaust()
                return
            stream, total = environ["wsgi.input"], 0   # chunked
            while True:
                chunk = stream.read(1 << 16)
                if not chunk:
                    return
                total += len(chunk)
                if total > DRAIN_LIMIT:
                    self.close_connection = True
                    return
        except Exception:  # noqa: BLE001 - a body that cannot be read to its end: no next request on it
            self.close_connection = True


class _Body(LimitedStream):
    """A Content-Length request body that remembers whether reading it failed (a client that
    stalled or went away: the connection cannot carry another request)."""

    broken = False

    def on_disconnect(self, error=None):
        self.broken = True
        return super().on_disconnect(error)


class _Server(ThreadedWSGIServer):
    """The server make_server(threaded=True) makes, with the hook _QuietHandler reports its
    connections to (opened: True, closed: False)."""

    track_connection: Callable[[socket.socket, bool], None] | None = None


class EmulatorServer:
    """The emulator on a real port: `with EmulatorServer(Options(port=0)) as emu: emu.url`."""

    def __init__(self, options: Options | None = None):
        self.options = options or Options()
        # Bound here, not by werkzeug: on a busy port werkzeug prints its own advice and exits the
        # process, where a caller (`provision emulator`) wants an OSError to explain with --port.
        family = socket.AF_INET6 if ":" in self.options.host else socket.AF_INET
        listening = socket.create_server((self.options.host, self.options.port), family=family)
        try:
            self.world, self.app = build(self.options)
            self._server = _Server(self.options.host, self.options.port, self.app, _QuietHandler,
                                   fd=listening.fileno())
        finally:
            listening.close()   # werkzeug listens on its own duplicate of the socket
        self._server.daemon_threads = True
        # Open (kept-alive) connections, closed with the server so that no idle one goes on serving
        # a closed world; `connections_accepted` counts every connection ever accepted.
        self._connections: set = set()
        self._conn_lock = threading.Condition()
        self.connections_accepted = 0
        self._server.track_connection = self._track
        self.port = self._server.port   # werkzeug records the bound port (the one asked for, or the one port 0 got)
        self.url = f"http://{self.options.host}:{self.port}"
        self._thread: threading.Thread | None = None

    def start(self) -> "EmulatorServer":
        """Serve in a background thread; returns self."""
        # A short poll interval: stop() returns within ~50 ms instead of the default 0.5 s.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="emulator", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted."""
        try:
            self._server.serve_forever()
        finally:
            self.close()

    def stop(self) -> None:
        self._server.shutdown()
        if self._thread:
            self._thread.join(timeout=10)
        self.close()

    def _track(self, sock, opened: bool) -> None:
        with self._conn_lock:
            if opened:
                self._connections.add(sock)
                self.connections_accepted += 1
            else:
                self._connections.discard(sock)
                self._conn_lock.notify_all()

    def close(self) -> None:
        self._server.server_close()
        with self._conn_lock:
            open_ = list(self._connections)
        for sock in open_:   # idle keep-alive connections: their threads see EOF and end
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        # A request still being answered finishes (its socket is shut, so soon) before the state it
        # reads is closed under it: else its thread meets a closed database and prints a traceback.
        with self._conn_lock:
            self._conn_lock.wait_for(lambda: not self._connections, timeout=5)
        self.world.close()

    def __enter__(self) -> "EmulatorServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
