"""The way to the Healthcare API: the service's own bearer token, and a retrying streaming send.

The token comes from google-auth (`google.auth.default()`: on Cloud Run the metadata server, which
google-auth finds by itself and which GCE_METADATA_HOST can point elsewhere). google-auth refreshes
synchronously, so a refresh runs in a worker thread, one at a time, and only when the token is
missing or about to expire.

Retries: 429 and 503 (and a connection that fails before any answer) are retried with exponential
backoff and jitter, honouring a short Retry-After, for idempotent methods only (a STOW-RS POST or a
DELETE is sent once: its body is a stream that cannot be replayed, and doing it twice is not safe).

The HTTP client is aiohttp's (`session()`): a keep-alive pool with C-accelerated parsing, bodies
streamed both ways with backpressure. It is set up so the proxy stays a pass-through: no automatic
decompression (bytes go on as Google sent them, Content-Encoding and Content-Length with them), no
cookie jar (a Set-Cookie from one user's answer must never ride along with another user's request),
no environment (trust_env=False: HTTP(S)_PROXY and .netrc are not read; Cloud Run has no proxy between
a service and Google's APIs), no redirects (the proxy never followed them), and no default Accept,
Accept-Encoding or Content-Type (what goes upstream is the allow-list proxy.py builds, nothing more).
"""
from __future__ import annotations

import asyncio
import random
import ssl
import zlib
from typing import Any, AsyncIterator

import aiohttp
import anyio.to_thread
from yarl import URL

from .streams import through

__all__ = ["IDEMPOTENT", "UpstreamError", "TokenSource", "decoded", "send", "session"]

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})
RETRY_STATUSES = frozenset({429, 503})
ATTEMPTS = 4                 # the first try and three retries
BACKOFF_S = 0.2              # 0.2, 0.4, 0.8 s (x jitter 0.5..1.5)
RETRY_AFTER_MAX_S = 5.0      # a longer Retry-After is not waited for: the answer goes back as it is
KEEPALIVE_S = 5.0            # an idle connection older than this is closed, not reused (httpx's default)
READ_BUFFER = 1 << 19        # aiohttp pauses the socket at twice this unread: 1 MiB per slow reader
USER_AGENT = "ohif-hosted-viewer"
# What "the Healthcare API did not answer" is made of: aiohttp's errors (connecting, a connection
# dropped before or during an answer, a malformed answer) and its timeouts.
UpstreamError = (aiohttp.ClientError, asyncio.TimeoutError)


def _tls() -> ssl.SSLContext:
    try:
        import certifi   # the same roots whatever the base image holds (requests brings certifi)

        return ssl.create_default_context(cafile=certifi.where())
    except ImportError:
        return ssl.create_default_context()


def session(*, max_connections: int = 256, connect_timeout: float = 10.0, pool_timeout: float = 30.0,
            read_timeout: float = 120.0) -> aiohttp.ClientSession:
    """The proxy's client toward Google (made inside the running loop; closed with `await s.close()`).

    At most `max_connections` open at once; a request waits up to `pool_timeout` for a free one, then
    up to `connect_timeout` to connect (aiohttp bounds both together: `connect` is their sum); each
    read waits up to `read_timeout` for data (a stalled answer is an error, never a short answer)."""
    connector = aiohttp.TCPConnector(limit=max_connections, limit_per_host=0, keepalive_timeout=KEEPALIVE_S,
                                     ssl=_tls())
    timeout = aiohttp.ClientTimeout(total=None, connect=pool_timeout + connect_timeout,
                                    sock_connect=connect_timeout, sock_read=read_timeout)
    return aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False,
                                 cookie_jar=aiohttp.DummyCookieJar(), trust_env=False,
                                 headers={"User-Agent": USER_AGENT}, read_bufsize=READ_BUFFER,
                                 skip_auto_headers=("Accept", "Accept-Encoding", "Content-Type"))


def decoded(resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """The body decoded from its Content-Encoding (gzip or deflate; anything else as it came)."""
    encoding = resp.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif encoding == "deflate":
        decoder = zlib.decompressobj()
    else:
        return resp.content.iter_any()
    return through(resp.content.iter_any(), decoder.decompress, decoder.flush)


class TokenSource:
    """`headers()` gives the Authorization header for the mode in HOSTED_UPSTREAM_AUTH."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self._creds: Any = None   # google.auth credentials, made on first use
        self._lock = asyncio.Lock()

    def _refresh_sync(self) -> None:
        import google.auth
        import google.auth.transport.requests

        if self._creds is None:
            self._creds, _ = google.auth.default(scopes=SCOPES)
        self._creds.refresh(google.auth.transport.requests.Request())

    async def headers(self) -> dict[str, str]:
        if self.mode == "none":
            return {}
        if self.mode.startswith("token:"):
            return {"Authorization": f"Bearer {self.mode[len('token:'):]}"}
        if self._creds is None or not self._creds.valid:
            async with self._lock:
                if self._creds is None or not self._creds.valid:
                    await anyio.to_thread.run_sync(self._refresh_sync)
        return {"Authorization": f"Bearer {self._creds.token}"}


def _delay(attempt: int, resp: aiohttp.ClientResponse | None) -> float | None:
    """Seconds to wait before the next attempt, or None to give up and pass the answer on."""
    if attempt + 1 >= ATTEMPTS:
        return None
    if resp is not None:
        after = resp.headers.get("retry-after", "")
        if after.isdigit():
            return float(after) if float(after) <= RETRY_AFTER_MAX_S else None
    return BACKOFF_S * (2.0 ** attempt) * random.uniform(0.5, 1.5)


async def send(client: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str],
               body: AsyncIterator[bytes] | None) -> tuple[aiohttp.ClientResponse, int]:
    """Send and return the (streamed, still open) answer and how many retries it took.

    The caller releases the answer (`resp.release()`) once its body is passed on: the connection goes
    back to the pool after a whole answer and is closed after a partial one."""
    retryable = method in IDEMPOTENT
    target = URL(url, encoded=True)   # sent as the browser wrote it: no re-quoting of path or query
    attempt = 0
    while True:
        try:
            resp = await client.request(method, target, headers=headers, data=body, allow_redirects=False)
        except aiohttp.ClientConnectionError as exc:
            # A failed connect or a connection dropped before the answer; not a read that timed out.
            wait = _delay(attempt, None) if retryable and not isinstance(exc, asyncio.TimeoutError) else None
            if wait is None:
                raise
        else:
            wait = _delay(attempt, resp) if retryable and resp.status in RETRY_STATUSES else None
            if wait is None:
                return resp, attempt
            resp.release()
        await asyncio.sleep(wait)
        attempt += 1
