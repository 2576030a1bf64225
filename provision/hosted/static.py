"""The OHIF viewer's files, its config, and the single-page-app fallback.

- `/app-config.js` is the config (Cache-Control: no-cache, so a redeploy is seen on the next load);
- a file whose name carries a content hash (`1180.bundle.762993518ea30ae3.js`, `0ddf...eda.wasm`)
  is immutable: cached for a year;
- other files (index.html, sw.js, manifest.json...) are revalidated (no-cache, with an ETag);
- any path without a file extension (`/viewer`, `/callback`...) is the app: index.html, so a deep
  link `/viewer?StudyInstanceUIDs=...` works after a reload; a missing file with an extension is 404;
- text types are compressed (brotli, else gzip) when the browser accepts it; compressed bodies
  are kept in a bounded in-memory cache (the viewer's bundles are the same for every user).
"""
from __future__ import annotations

import gzip
import hashlib
import mimetypes
import posixpath
import re
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import anyio.to_thread
import brotli
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response

__all__ = ["CONFIG_PATH", "StaticFiles"]

CONFIG_PATH = "/app-config.js"
TYPES = {".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".html": "text/html; charset=utf-8", ".json": "application/json",
         ".map": "application/json", ".wasm": "application/wasm", ".svg": "image/svg+xml",
         ".webmanifest": "application/manifest+json", ".woff2": "font/woff2", ".woff": "font/woff",
         ".txt": "text/plain; charset=utf-8", ".ico": "image/x-icon", ".png": "image/png"}
COMPRESSIBLE = ("text/", "application/javascript", "application/json", "application/wasm", "image/svg+xml",
                "application/manifest+json", "application/xml")
HASHED = re.compile(r"(^|[.-])[0-9a-f]{16,}[.-]")   # a 16+ hex-digit content hash in the file name
IMMUTABLE = "max-age=31536000, immutable"
MIN_COMPRESS = 1024
CACHE_BYTES = 96 << 20        # compressed bodies kept in memory at most
MAX_COMPRESS_FILE = 64 << 20  # a larger file is sent as it is


def content_type(name: str) -> str:
    ext = posixpath.splitext(name)[1].lower()
    return TYPES.get(ext) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def _encoding(request: Request) -> str | None:
    accepted = {part.split(";")[0].strip().lower() for part in request.headers.get("accept-encoding", "").split(",")}
    return "br" if "br" in accepted else "gzip" if "gzip" in accepted else None


class StaticFiles:
    """Serves `dist` and the config; `private` adds `private` to Cache-Control (behind IAP)."""

    def __init__(self, dist: Path, *, private: bool) -> None:
        self.dist = dist.resolve()
        self.scope = "private" if private else "public"
        self._cache: OrderedDict[tuple[str, str], tuple[bytes, str]] = OrderedDict()
        self._cached = 0

    def resolve(self, path: str) -> Path | None:
        """The file for a URL path, index.html for an app route, or None (404)."""
        parts = [p for p in posixpath.normpath("/" + path).split("/") if p not in ("", ".", "..")]
        candidate = self.dist.joinpath(*parts) if parts else self.dist / "index.html"
        if candidate.is_dir():
            candidate = candidate / "index.html"
        try:
            candidate.resolve().relative_to(self.dist)
        except ValueError:
            return None
        if candidate.is_file():
            return candidate
        if not parts or "." not in parts[-1]:
            return self.dist / "index.html"
        return None

    def cache_control(self, file: Path) -> str:
        return f"{self.scope}, {IMMUTABLE}" if HASHED.search(file.name) else f"{self.scope}, no-cache"

    async def send_config(self, request: Request, data: bytes) -> Response:
        """The config JavaScript `data` (revalidated on every load: no-cache, with its ETag)."""
        etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
        return await self._send_bytes(request, data, "text/javascript; charset=utf-8", etag,
                                      f"{self.scope}, no-cache", f"{CONFIG_PATH}#{etag}")

    async def handle(self, request: Request) -> Response:
        """The route endpoint for every other path."""
        if request.method not in ("GET", "HEAD"):
            return PlainTextResponse("method not allowed\n", status_code=405, headers={"Allow": "GET, HEAD"})
        file = self.resolve(request.url.path)
        if file is None:
            return PlainTextResponse(f"not found: {request.url.path}\n", status_code=404)
        ctype = content_type(file.name)
        stat = file.stat()
        encoding = _encoding(request)
        compress = (ctype.startswith(COMPRESSIBLE) and MIN_COMPRESS <= stat.st_size <= MAX_COMPRESS_FILE
                    and "range" not in request.headers)
        if not encoding or not compress:
            return FileResponse(file, media_type=ctype, stat_result=stat,
                                headers={"cache-control": self.cache_control(file), "vary": "Accept-Encoding"})
        etag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'
        return await self._send_file_compressed(request, file, ctype, etag, encoding)

    async def _send_file_compressed(self, request: Request, file: Path, ctype: str, etag: str, enc: str) -> Response:
        if request.headers.get("if-none-match") == f'{etag[:-1]}-{enc}"':
            return Response(status_code=304, headers={"etag": f'{etag[:-1]}-{enc}"',
                                                       "cache-control": self.cache_control(file)})
        body = await self._compressed(str(file), etag, enc, lambda: file.read_bytes())
        headers = {"content-encoding": enc, "vary": "Accept-Encoding", "etag": f'{etag[:-1]}-{enc}"',
                   "cache-control": self.cache_control(file), "content-length": str(len(body))}
        return Response(b"" if request.method == "HEAD" else body, media_type=ctype, headers=headers)

    async def _send_bytes(self, request: Request, data: bytes, ctype: str, etag: str, cache: str, key: str) -> Response:
        enc = _encoding(request)
        headers = {"etag": etag, "cache-control": cache, "vary": "Accept-Encoding"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        body = data
        if enc and len(data) >= MIN_COMPRESS:
            body = await self._compressed(key, etag, enc, lambda: data)
            headers["content-encoding"] = enc
        headers["content-length"] = str(len(body))
        return Response(b"" if request.method == "HEAD" else body, media_type=ctype, headers=headers)

    async def _compressed(self, key: str, version: str, enc: str, read: Callable[[], bytes]) -> bytes:
        """The compressed body (from the cache, else compressed in a worker thread and cached)."""
        cache_key = (key, enc)
        hit = self._cache.get(cache_key)
        if hit and hit[1] == version:
            self._cache.move_to_end(cache_key)
            return hit[0]

        def work() -> bytes:
            raw = read()
            # brotli quality 5 / gzip 6: most of the gain at a fraction of the CPU of the maximum.
            return brotli.compress(raw, quality=5) if enc == "br" else gzip.compress(raw, 6, mtime=0)

        body = await anyio.to_thread.run_sync(work)
        if hit:
            self._cached -= len(hit[0])
        self._cache[cache_key] = (body, version)
        self._cached += len(body)
        while self._cached > CACHE_BYTES and len(self._cache) > 1:
            _, (old, _) = self._cache.popitem(last=False)
            self._cached -= len(old)
        return body
