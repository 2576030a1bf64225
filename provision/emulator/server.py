"""Assemble the emulator (World + every API's routes) and serve it, embedded or standalone, on
uvicorn: the App is a WSGI application (werkzeug), served through a2wsgi's WSGIMiddleware.

uvicorn does HTTP/1.1 as it is meant to be done (keep-alive, chunked answers when there is no
Content-Length, 100-continue, a request body the application did not read drained before the next
request). What this module adds around it, in `serving.py`: a count of the connections accepted
(keep-alive is observable), the `reset` fault (an RST, as a flaky network gives), a read timeout
for a request body that stalls, and the raw request path the App routes on.
"""
from __future__ import annotations

import asyncio
import socket
import threading

import uvicorn

from provision.emulator import control, publicdata
from provision.emulator.billing import handlers as billing_handlers, state as billing_state
from provision.emulator.healthcare import handlers as healthcare_handlers, state as healthcare_state
from provision.emulator.http import App, Router
from provision.emulator.logging import handlers as logging_handlers, state as logging_state
from provision.emulator.oauth import handlers as oauth_handlers, state as oauth_state
from provision.emulator.resourcemanager import handlers as resourcemanager_handlers, state as resourcemanager_state
from provision.emulator.serving import Connections, asgi_app
from provision.emulator.serviceusage import handlers as serviceusage_handlers, state as serviceusage_state
from provision.emulator.storage import handlers as storage_handlers, state as storage_state
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
)


def build(options: Options) -> tuple[World, App]:
    """A World with every backend attached, and the WSGI app that serves it."""
    world = World(options)
    router = Router().include(control.router)
    for state, handlers in APIS:
        world.attach(state.ATTACH_AS, state.Backend(world))
        router.include(handlers.router)
    # Last: the public-dataset stand-ins are written into every API's state (and again after a reset).
    world.attach(publicdata.ATTACH_AS, publicdata.Backend(world))
    return world, App(world, router)


class EmulatorServer:
    """The emulator on a real port: `with EmulatorServer(Options(port=0)) as emu: emu.url`.

    The port is bound when the server is made (port 0: any free port; a port in use raises
    OSError here), so clients may connect as soon as `start()` returns."""

    def __init__(self, options: Options | None = None):
        self.options = options or Options()
        self.world, self.app = build(self.options)
        try:
            self._sock = _listen(self.options.host, self.options.port)
        except OSError:
            self.world.close()
            raise
        self.port = self._sock.getsockname()[1]
        host = self.options.host
        self.url = f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"
        self._connections = Connections()
        self._asgi = asgi_app(self.app, self._connections)
        self._server = _Server(uvicorn.Config(
            self._asgi, interface="asgi3", http=self._connections.protocol, lifespan="off",
            log_config=None, access_log=False, server_header=False, proxy_headers=False,
            timeout_keep_alive=KEEP_ALIVE_S, timeout_graceful_shutdown=GRACE_S, loop="asyncio"))
        self._thread: threading.Thread | None = None

    @property
    def connections_accepted(self) -> int:
        """Every connection accepted since the start (a kept-alive connection counts once)."""
        return self._connections.accepted

    def start(self) -> "EmulatorServer":
        """Serve in a background thread; returns self."""
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        name="emulator", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted (Ctrl-C stops the server, then reaches the caller)."""
        try:
            self._server.run(sockets=[self._sock])
        finally:
            self.close()

    def stop(self) -> None:
        """Stop serving: idle kept-alive connections are closed, answers under way finish (up to
        GRACE_S seconds), then the World is closed."""
        self._server.exit_now()
        if self._thread:
            self._thread.join(timeout=GRACE_S + 5)
        self.close()

    def close(self) -> None:
        self._sock.close()
        self._asgi.close()
        self.world.close()

    def __enter__(self) -> "EmulatorServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _Server(uvicorn.Server):
    """uvicorn's Server, stopped without its polling: uvicorn looks for `should_exit` every 0.1 s
    and waits 0.1 s more, then in steps of 0.1 s, for connections to close, which made each stop
    take about 0.2 s (the test suite starts and stops hundreds of emulators). Here `exit_now()`
    wakes the main loop, and the shutdown, uvicorn's steps otherwise, polls every 5 ms."""

    _wake: asyncio.Event | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    async def main_loop(self) -> None:   # uvicorn's, with a wait stop() can cut short
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864000
            try:
                await asyncio.wait_for(self._wake.wait(), 0.1)
            except asyncio.TimeoutError:
                pass
            should_exit = await self.on_tick(counter)

    def exit_now(self) -> None:
        """Stop serving (from any thread)."""
        self.should_exit = True
        if self._loop is not None and self._wake is not None:
            try:
                self._loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:   # the loop is closed: the server has stopped already
                pass

    async def shutdown(self, sockets=None) -> None:
        state = self.server_state
        for server in self.servers:               # stop accepting
            server.close()
        for connection in list(state.connections):
            connection.shutdown()                 # idle: closed now; busy: closed after its answer
        # Answers under way finish (their worker threads need this loop to send); past the grace
        # period their connections are dropped, which ends what still waits for a request body.
        await self._settle(lambda: state.connections or state.tasks, self.config.timeout_graceful_shutdown)
        for connection in list(state.connections):
            connection.transport.abort()
        await self._settle(lambda: state.tasks, 1.0)
        for task in list(state.tasks):
            task.cancel()
        for server in self.servers:
            await server.wait_closed()

    @staticmethod
    async def _settle(busy, seconds: float) -> None:
        deadline = asyncio.get_running_loop().time() + seconds
        while busy() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.005)


# An idle kept-alive connection is closed after this many seconds (Google's front end keeps them
# for minutes; clients reconnect when they find one closed).
KEEP_ALIVE_S = 60
# At stop, answers under way get this long to finish before their connections are dropped.
GRACE_S = 2


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not left 0: asyncio sets TCP_NODELAY only on sockets that say they are
    # TCP; without it an answer sent in pieces waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    return sock
