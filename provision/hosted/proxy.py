"""The same-origin DICOMweb path of one store: /dicomweb/NAME/... forwarded to its upstream root.

- Only an allow-list of request headers goes upstream (what DICOMweb content negotiation, ranges
  and conditional requests need); never the browser's Cookie, Authorization, IAP's assertion, or
  Cloud Run's X-Serverless-Authorization. The Authorization sent is the service's own.
- Bodies stream both ways; JSON and XML answers are rewritten as they stream (rewrite.py) so every
  upstream URL in them becomes this origin's.
- Read-only unless HOSTED_WRITE=read-write: other methods than GET, HEAD and OPTIONS get 405.
- A path with `.` or `..` segments (also percent-encoded) or an encoded slash is refused: the
  upstream URL must stay below the store's DICOMweb root.
"""
from __future__ import annotations

import gzip
import re
import zlib
from typing import Any, AsyncIterator
from urllib.parse import parse_qsl, unquote

import aiohttp
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from . import upstream
from .rewrite import Rewriter
from .streams import through

__all__ = ["PREFIX", "BadOrigin", "Direct", "forward", "public_origin", "public_root"]

PREFIX = "/dicomweb"
FORWARD_REQUEST = ("accept", "range", "if-none-match", "if-modified-since", "if-match", "if-unmodified-since",
                   "content-type")
PASS_BACK = ("content-type", "etag", "last-modified", "content-range", "accept-ranges", "retry-after", "warning",
             "content-location")
# An answer up to this size (by its Content-Length) is read whole and sent in one piece; a larger
# one, or one without a length, streams. Either way the memory a request holds is bounded.
BUFFER_MAX = 1 << 20
# Cloud Run refuses HTTP/1 answers above 32 MiB unless they are streamed (chunked): cited second-hand
# in shared/reference/hosting.md, unconfirmed. A larger answer (a big instance) is therefore sent
# without its Content-Length, which makes uvicorn chunk it; the threshold keeps a wide margin.
CHUNK_ABOVE = 16 << 20
READ_METHODS = ("GET", "HEAD", "OPTIONS")
WRITE_METHODS = ("POST", "PUT", "DELETE")
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?")
_UID_KEYS = {"studies": "study", "series": "series", "instances": "instance"}
_QUERY_UIDS = {"StudyInstanceUID": "study", "0020000D": "study", "SeriesInstanceUID": "series",
               "0020000E": "series", "SOPInstanceUID": "instance", "00080018": "instance"}


def public_origin(request: Request) -> str:
    """This origin as the browser called it (Cloud Run's front end sets X-Forwarded-Proto; the container
    itself is reached over plain HTTP). Host and scheme are checked: they are written into JavaScript
    and JSON, so nothing but a host name and a port gets through."""
    proto = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower() or request.url.scheme
    host = request.headers.get("host") or request.url.netloc
    if proto not in ("http", "https") or not _HOST.fullmatch(host):
        raise BadOrigin("the request's Host is not a host name with an optional port, or its X-Forwarded-Proto "
                        "is not http or https")   # the values are not echoed: they are the attacker's
    return f"{proto}://{host}"


def public_root(request: Request, name: str) -> str:
    """This origin's DICOMweb root for source `name`."""
    return f"{public_origin(request)}{PREFIX}/{name}"


class BadOrigin(ValueError):
    """The request's Host or X-Forwarded-Proto cannot be written into an answer."""


def uids(rest: str, query: str) -> dict[str, str]:
    """Study, series and instance UIDs named by a DICOMweb path or its QIDO query."""
    found: dict[str, str] = {}
    parts = rest.split("/")
    for key, value in zip(parts, parts[1:], strict=False):
        if key in _UID_KEYS and value:
            found[_UID_KEYS[key]] = value
    for key, value in parse_qsl(query):
        if key in _QUERY_UIDS and value:
            found.setdefault(_QUERY_UIDS[key], value)
    return found


def _safe(rest: str) -> bool:
    if "%2f" in rest.lower() or "\\" in rest or "%5c" in rest.lower():
        return False
    return all(seg not in (".", "..") for seg in unquote(rest).split("/"))


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": {"code": status, "message": message}}, status_code=status, headers=headers)


def _rewrites(content_type: str) -> bool:
    ctype = content_type.split(";")[0].strip().lower()
    return ctype.endswith(("json", "xml"))


async def _relay(resp: aiohttp.ClientResponse, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """`chunks`, then the upstream answer closed, also when the browser goes away mid-answer (OHIF
    cancels requests all the time): its connection goes back to the pool or is dropped, never leaked.
    (release() is synchronous: nothing to shield from a cancelled scope.)"""
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        resp.release()


def _allowed(method: str, read_write: bool) -> bool:
    return method in READ_METHODS or (read_write and method in WRITE_METHODS)


class Direct:
    """Pure ASGI in front of the Starlette app: /dicomweb/NAME[/...] goes to `forward` without Starlette's
    router and its two exception layers (a fifth of the app's CPU per proxied request in a profile
    of bench/hosted.py); everything else goes to the Starlette app, whose state `forward` reads."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIX + "/"):
            name = scope["path"][len(PREFIX) + 1:].split("/", 1)[0]
            if name:   # as the routes /dicomweb/{name} and /dicomweb/{name}/{rest:path} would match
                scope["app"] = self.app
                scope["path_params"] = {"name": name}
                response = await forward(Request(scope, receive, send))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def forward(request: Request) -> Response:
    """The route handler of /dicomweb/{name}/{rest:path}."""
    state = request.app.state
    name = request.path_params["name"]
    info = request.scope.setdefault("hosted", {})
    info["store"] = name
    root = state.settings.sources.get(name)
    if root is None:
        return _error(404, f"no DICOMweb source named {name!r} here; sources: {', '.join(state.settings.sources)}")
    raw_path = request.scope.get("raw_path", request.url.path.encode()).decode("latin-1")
    rest = raw_path[len(f"{PREFIX}/{name}"):].lstrip("/")
    query = request.scope.get("query_string", b"").decode("latin-1")
    info.update(uids(unquote(rest), query))
    allow = ", ".join(READ_METHODS + (WRITE_METHODS if state.settings.read_write else ()))
    if not _allowed(request.method, state.settings.read_write):
        return _error(405, f"{request.method} is refused: this viewer is read-only (HOSTED_WRITE=read-only); "
                           "the blueprint grants no editor role", {"Allow": allow})
    if request.method == "OPTIONS":
        return Response(status_code=204, headers={"Allow": allow})
    if not rest or not _safe(rest):
        return _error(400, "the path must name a DICOMweb resource below the store, without . or .. segments")
    return await _send(request, f"{root}/{rest}" + (f"?{query}" if query else ""), name)


async def _send(request: Request, url: str, name: str) -> Response:
    """Forward the request (allow-listed headers, the service's token, the body streamed)."""
    state = request.app.state
    headers = {k: v for k in FORWARD_REQUEST if (v := request.headers.get(k))}
    client_gzip = "gzip" in request.headers.get("accept-encoding", "").lower()
    headers["accept-encoding"] = "gzip" if client_gzip else "identity"
    headers.update(await state.tokens.headers())
    body = None
    if request.method in WRITE_METHODS:
        body = request.stream()
        if request.headers.get("content-length", "").isdigit():   # streamed as is, not re-chunked
            headers["content-length"] = request.headers["content-length"]
    try:
        resp, retries = await upstream.send(state.upstream, request.method, url, headers, body)
    except upstream.UpstreamError as exc:
        return _error(502, f"the Healthcare API did not answer: {type(exc).__name__}")
    request.scope["hosted"]["retries"] = retries
    return await _answer(request, resp, client_gzip)


async def _read_raw(resp: aiohttp.ClientResponse) -> bytes:
    """The body as it came (still encoded: its Content-Encoding and Content-Length go on with it)."""
    try:
        return await resp.read()
    finally:
        resp.release()


async def _answer(request: Request, resp: aiohttp.ClientResponse, client_gzip: bool) -> Response:
    """The upstream answer for the browser: passed through, or with its upstream URLs rewritten."""
    # a header Google repeats (e.g. Warning) passes on whole, its values joined as RFC 9110 §5.3 allows
    out = {k: ", ".join(vs) for k in PASS_BACK if (vs := resp.headers.getall(k, []))}
    out["cache-control"] = "no-store"  # patient data: nothing in the browser's disk cache
    length = resp.headers.get("content-length", "")
    small = length.isdigit() and int(length) <= BUFFER_MAX
    if request.method == "HEAD" or not _rewrites(resp.headers.get("content-type", "")):
        for key in ("content-length", "content-encoding"):
            if key in resp.headers:
                out[key] = resp.headers[key]
        if request.method != "HEAD" and length.isdigit() and int(length) > CHUNK_ABOVE:
            del out["content-length"]
        if small:   # one read, one send: cheaper than a streamed answer, and bounded by BUFFER_MAX
            return Response(await _read_raw(resp), status_code=resp.status, headers=out)
        return StreamingResponse(_relay(resp, resp.content.iter_any()), status_code=resp.status, headers=out)
    sources = request.app.state.settings.sources
    try:
        rewriter = Rewriter({root.encode(): public_root(request, n).encode() for n, root in sources.items()})
    except BadOrigin as exc:
        resp.release()
        return _error(400, str(exc))
    if small and resp.headers.get("content-encoding", "identity") == "identity":
        body = await _read_raw(resp)
        body = rewriter.feed(body) + rewriter.flush()
        if client_gzip and len(body) >= 1024:
            body = gzip.compress(body, 5, mtime=0)
            out.update({"content-encoding": "gzip", "vary": "Accept-Encoding"})
        return Response(body, status_code=resp.status, headers=out)
    chunks = through(upstream.decoded(resp), rewriter.feed, rewriter.flush)   # decoded, rewritten, re-encoded below
    if client_gzip:
        out.update({"content-encoding": "gzip", "vary": "Accept-Encoding"})
        gzip_framing = zlib.compressobj(5, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        chunks = through(chunks, gzip_framing.compress, gzip_framing.flush)
    return StreamingResponse(_relay(resp, chunks), status_code=resp.status, headers=out)
