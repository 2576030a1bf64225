"""Assemble the emulator (World + every API's routes) and serve it, embedded or standalone."""
from __future__ import annotations

import importlib
import threading

from werkzeug.serving import WSGIRequestHandler, make_server

from provision.emulator.http import App, Router
from provision.emulator.world import Options, World

# API packages: each has `state.py` (backend, no HTTP) and `handlers.py` (a module-level `router`).
API_PACKAGES = ("resourcemanager", "serviceusage", "billing", "storage", "healthcare", "logging", "oauth")


def build(options: Options) -> tuple[World, App]:
    """A World with every backend attached, and the WSGI app that serves it."""
    world = World(options)
    router = Router()
    from provision.emulator import control

    _merge(router, control.router)
    for name in API_PACKAGES:
        state = importlib.import_module(f"provision.emulator.{name}.state")
        handlers = importlib.import_module(f"provision.emulator.{name}.handlers")
        world.attach(state.ATTACH_AS, state.Backend(world))
        _merge(router, handlers.router)
    # Last: the public-dataset stand-ins are written into every API's state (and again after a reset).
    from provision.emulator import publicdata

    world.attach(publicdata.ATTACH_AS, publicdata.Backend(world))
    return world, App(world, router)


def _merge(into: Router, other: Router) -> None:
    into.rules.extend(r.empty() for r in other.rules)
    into.routes.update(other.routes)


class _QuietHandler(WSGIRequestHandler):
    # HTTP/1.1 lets werkzeug send a response with no Content-Length (a streamed DICOMweb answer)
    # chunked. It gives no keep-alive: werkzeug's dev server closes every connection
    # (`Connection: close`), so clients open one connection per request.
    protocol_version = "HTTP/1.1"
    # A stalled client (a request body that stops arriving) is dropped after this many seconds
    # of silence instead of holding its thread, and the upload session it was writing, forever.
    timeout = 60


    def log_request(self, *args, **kwargs) -> None:  # the --record file is the request log
        pass


class EmulatorServer:
    """The emulator on a real port: `with EmulatorServer(Options(port=0)) as emu: emu.url`."""

    def __init__(self, options: Options | None = None):
        self.options = options or Options()
        self.world, self.app = build(self.options)
        self._server = make_server(self.options.host, self.options.port, self.app, threaded=True,
                                   request_handler=_QuietHandler)
        self._server.daemon_threads = True
        self.port = self._server.server_port
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

    def close(self) -> None:
        self._server.server_close()
        self.world.close()

    def __enter__(self) -> "EmulatorServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
