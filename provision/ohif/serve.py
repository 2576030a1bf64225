"""Serve the released OHIF viewer with our config: a small threaded static server on 127.0.0.1.

- `/app-config.js` is the emitted config (from memory, never cached by the browser);
- files of the viewer's `dist` are served with the types browsers insist on
  (`application/wasm` for WebAssembly, JavaScript, CSS, JSON, SVG);
- any other path without a file extension (`/viewer`, `/callback`, `/notfoundstudy`...)
  is the single-page app: `index.html`. A missing file with an extension is a 404, so a
  missing bundle fails loudly instead of becoming HTML.

    with serve_viewer(config_js, port=0) as srv:      # port 0: any free port
        print(srv.url)

    serve_viewer(config_js, 3000).wait()              # `provision viewer`: until Ctrl-C
"""
from __future__ import annotations

import errno
import mimetypes
import posixpath
import shutil
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import unquote, urlsplit

from provision.errors import ProvisionError
from provision.ohif.fetch import ensure_viewer

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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # the default 5 drops bursts of connections (SYN retried after 1 s)

    dist: Path
    config_js: bytes
    on_request: Callable[[str, str, int], None] | None

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001

        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return  # the browser went away mid-response: normal for a viewer that cancels requests
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "provision-viewer"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in separate writes: no 40 ms delayed-ACK stalls

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - quiet: no access log on stderr
        pass

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def _send(self, status: int, ctype: str, length: int, *, cache: str = "no-cache") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        self.send_header("Cache-Control", cache)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()

    def _serve(self, *, body: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        status = HTTPStatus.OK
        try:
            if path == CONFIG_PATH:
                data = self.server.config_js
                self._send(status, CONTENT_TYPES[".js"], len(data), cache="no-store")
                if body:
                    self.wfile.write(data)
                return
            file = self._resolve(path)
            if file is None:
                status = HTTPStatus.NOT_FOUND
                data = f"not found: {path}\n".encode()
                self._send(status, "text/plain; charset=utf-8", len(data))
                if body:
                    self.wfile.write(data)
                return
            size = file.stat().st_size
            self._send(status, content_type(file.name), size)
            if body:
                with file.open("rb") as fh:
                    shutil.copyfileobj(fh, self.wfile, 1 << 16)
        finally:
            if self.server.on_request:
                self.server.on_request(self.command, path, int(status))

    def _resolve(self, path: str) -> Path | None:
        """The file for a URL path, index.html for an app route, or None (404)."""
        root = self.server.dist
        clean = posixpath.normpath("/" + path.lstrip("/"))
        parts = [p for p in clean.split("/") if p and p not in (".", "..")]
        candidate = root.joinpath(*parts) if parts else root / "index.html"
        if candidate.is_dir():
            candidate = candidate / "index.html"
        try:
            candidate.resolve().relative_to(root.resolve())
        except ValueError:
            return None
        if candidate.is_file():
            return candidate
        last = parts[-1] if parts else ""
        if "." not in last:  # an app route such as /viewer or /callback
            return root / "index.html"
        return None


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
            self._httpd = _Server((host, port), _Handler)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ProvisionError(f"cannot serve the viewer: port {port} on {host} is in use; choose another port") from None
            raise ProvisionError(f"cannot serve the viewer on {host}:{port}: {exc.strerror or exc}") from None
        self._httpd.dist = self.dist
        self._httpd.config_js = config_js.encode("utf-8")
        self._httpd.on_request = on_request
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    @property
    def host(self) -> str:
        return self._httpd.server_address[0]

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def set_config(self, config_js: str) -> None:
        """Serve another config from now on (the next page load sees it)."""
        self._httpd.config_js = config_js.encode("utf-8")

    def start(self) -> ViewerServer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name=f"ohif-viewer:{self.port}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._httpd.server_close()
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

    def __exit__(self, *exc) -> None:
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
        dist = ensure_viewer()
    return ViewerServer(dist, config_js, host=host, port=port, on_request=on_request).start()
