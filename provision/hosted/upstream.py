"""The way to the Healthcare API: the service's own bearer token, and a retrying streaming send.

The token comes from google-auth (`google.auth.default()`: on Cloud Run the metadata server, which
google-auth finds by itself and which GCE_METADATA_HOST can point elsewhere). google-auth refreshes
synchronously, so a refresh runs in a worker thread, one at a time, and only when the token is
missing or about to expire.

Retries: 429 and 503 (and a connection that fails before any answer) are retried with exponential
backoff and jitter, honouring a short Retry-After, for idempotent methods only (a STOW-RS POST or a
DELETE is sent once: its body is a stream that cannot be replayed, and doing it twice is not safe).
"""
from __future__ import annotations

import asyncio
import random
from typing import Any, AsyncIterator

import anyio.to_thread

from .h1 import Client, ConnectFailed, Disconnected, Response

__all__ = ["IDEMPOTENT", "TokenSource", "send"]

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})
RETRY_STATUSES = frozenset({429, 503})
ATTEMPTS = 4                 # the first try and three retries
BACKOFF_S = 0.2              # 0.2, 0.4, 0.8 s (x jitter 0.5..1.5)
RETRY_AFTER_MAX_S = 5.0      # a longer Retry-After is not waited for: the answer goes back as it is


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


def _delay(attempt: int, resp: Response | None) -> float | None:
    """Seconds to wait before the next attempt, or None to give up and pass the answer on."""
    if attempt + 1 >= ATTEMPTS:
        return None
    if resp is not None:
        after = resp.headers.get("retry-after", "")
        if after.isdigit():
            return float(after) if float(after) <= RETRY_AFTER_MAX_S else None
    return BACKOFF_S * (2.0 ** attempt) * random.uniform(0.5, 1.5)


async def send(client: Client, method: str, url: str, headers: dict[str, str],
               body: AsyncIterator[bytes] | None) -> tuple[Response, int]:
    """Send and return the (streamed, still open) answer and how many retries it took.

    The caller closes the answer (`await resp.aclose()`) once its body is passed on."""
    retryable = method in IDEMPOTENT
    attempt = 0
    while True:
        try:
            resp = await client.send(method, url, headers.items(), body)
        except (ConnectFailed, Disconnected):
            wait = _delay(attempt, None) if retryable else None
            if wait is None:
                raise
        else:
            wait = _delay(attempt, resp) if retryable and resp.status_code in RETRY_STATUSES else None
            if wait is None:
                return resp, attempt
            await resp.aclose()
        await asyncio.sleep(wait)
        attempt += 1
