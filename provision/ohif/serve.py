"""Serve the released OHIF viewer with our config: a small Starlette app on uvicorn, 127.0.0.1.

- `/app-config.js` is the emitted config (from memory, never cached by the browser);
- files of the viewer's `dist` are served with the types browsers insist on
  (`application/wasm` for WebAssembly, JavaScript, CSS, JSON, SVG);
- any other path without a file extension (`/viewer`, `/callback`, `/notfoundstudy`...)
  is the single-page app: `index.html`. A missing file with an extension is a 404, so a
  missing bundle fails loudly instead of becoming HTML.

    with serve_viewer(config_js, port=0) as srv:      # port 0: any free port
        print(srv.url)

    serve_viewer(config_js, 3000).wait()              # `provision viewer`: until Ctrl-C

uvicorn and Starlette are what the hosted viewer (provision/hosted) runs on too: one server stack.
"""
from __future__ import annotations

import errno
import mimetypes
import posixpath
import socket
import threading
from pathlib import Path
from typing import Callable

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from provision.errors import ProvisionError

__all__ = ["CONTENT_TYPES", "ViewerServer", "serve_viewer"]

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".jsonc": "application/json",
    ".map": "application/json",
    ".webmanifest": "application/manifest+json",
    ".svg": "image/svg+xml",
    ".wasm": "application/wasm",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".ico": "image/x-icon",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".xml": "application/xml",
    ".txt": "text/plain; charset=utf-8",
}
CONFIG_PATH = "/app-config.js"


def content_type(name: str) -> str:
    ext = posixpath.splitext(name)[1].lower()
    return CONTENT_TYPES.get(ext) or mimetypes.guess_type(name)[0] or "application/octet-stream"


class _Viewer:
    """The viewer's pages, files and config as one Starlette app."""

    def __init__(self, dist: Path, config_js: bytes, on_request: Callable[[str, str, int], None] | None):
        self.dist, self.root, self.config_js, self.on_request = dist, dist.resolve(), config_js, on_request
        self.app = Starlette(routes=[Route("/{path:path}", self.serve, methods=["GET", "HEAD"])])

    async def serve(self, request: Request) -> Response:
        path = request.url.path
        response = self._answer(path)
        if self.on_request:
            self.on_request(request.method, path, response.status_code)
        return response

    def _answer(self, path: str) -> Response:
        if path == CONFIG_PATH:
            return Response(self.config_js, media_type=CONTENT_TYPES[".js"], headers=_headers("no-store"))
        file = self._resolve(path)
        if file is None:
            return Response(f"not found: {path}\n", status_code=404, media_type="text/plain; charset=utf-8",
                            headers=_headers())
        return FileResponse(file, media_type=content_type(file.name), headers=_headers())

    def _resolve(self, path: str) -> Path | None:
        """The file for a URL path, index.html for an app route, or None (404)."""
        clean = posixpath.normpath("/" + path.lstrip("/"))
        parts = [p for p in clean.split("/") if p and p not in (".", "..")]
        candidate = self.dist.joinpath(*parts) if parts else self.dist / "index.html"
        if candidate.is_dir():
            candidate = candidate / "index.html"
        try:
            candidate.resolve().relative_to(self.root)
        except ValueError:
            return None
        if candidate.is_file():
            return candidate
        last = parts[-1] if parts else ""
        if "." not in last:  # an app route such as /viewer or /callback
            return self.dist / "index.html"
        return None


def _headers(cache: str = "no-cache") -> dict[str, str]:
    return {"Cache-Control": cache, "X-Content-Type-Options": "nosniff"}


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket, bound before uvicorn starts (port 0: any free port; a port in use
    fails here, not in uvicorn's thread). IPPROTO_TCP named: asyncio sets TCP_NODELAY only on
    sockets that say they are TCP, and without it a response sent in pieces waits ~40 ms for
    the browser's delayed ACK."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)   # a burst of the viewer's parallel requests is not dropped
    except OSError:
        sock.close()
        raise
    return sock


class ViewerServer:
    """The OHIF viewer's `dist` and a config, served on host:port (0 = any free port)."""

    def __init__(
        self,
        dist: Path,
        config_js: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        on_request: Callable[[str, str, int], None] | None = None,
    ) -> None:
        self.dist = Path(dist)
        if not (self.dist / "index.html").is_file():
            raise ProvisionError(f"{self.dist} is not an OHIF viewer build (no index.html); run `python -m provision.ohif.fetch`")
        try:
            self._sock = _listen(host, port)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ProvisionError(f"cannot serve the viewer: port {port} on {host} is in use; choose another port") from None
            raise ProvisionError(f"cannot serve the viewer on {host}:{port}: {exc.strerror or exc}") from None
        self._address: tuple[str, int] = self._sock.getsockname()[:2]
        self._viewer = _Viewer(self.dist, config_js.encode("utf-8"), on_request)
        self._server = uvicorn.Server(uvicorn.Config(
            self._viewer.app, http="h11", loop="asyncio", lifespan="off", log_config=None,
            access_log=False, server_header=False, proxy_headers=False, timeout_graceful_shutdown=2))
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    @property
    def host(self) -> str:
        return self._address[0]

    @property
    def port(self) -> int:
        return self._address[1]

    @property
    def url(self) -> str:
        return f"http://[{self.host}]:{self.port}" if ":" in self.host else f"http://{self.host}:{self.port}"

    def set_config(self, config_js: str) -> None:
        """Serve another config from now on (the next page load sees it)."""
        self._viewer.config_js = config_js.encode("utf-8")

    def start(self) -> ViewerServer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                            name=f"ohif-viewer:{self.port}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
            self._thread = None
        self._sock.close()
        self._stopped.set()

    def wait(self) -> None:
        """Block until stop() or Ctrl-C (KeyboardInterrupt reaches the caller; the server is stopped first)."""
        self.start()
        try:
            while not self._stopped.wait(0.5):
                pass
        finally:
            self.stop()

    def __enter__(self) -> ViewerServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_viewer(
    config_js: str,
    port: int = 3000,
    *,
    host: str = "127.0.0.1",
    dist: Path | None = None,
    on_request: Callable[[str, str, int], None] | None = None,
) -> ViewerServer:
    """Start serving the viewer (fetched into the cache if needed) with `config_js`; returns the running server."""
    if dist is None:
        from provision.ohif.fetch import ensure_viewer

        dist = ensure_viewer()
    return ViewerServer(dist, config_js, host=host, port=port, on_request=on_request).start()
