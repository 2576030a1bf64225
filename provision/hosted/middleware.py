"""Pure ASGI layers around the app: the access log, the IAP gate, and the headers every answer carries.

Order (outermost first): AccessLog (sees every request, also a 401) -> Headers -> IapGate -> app.
They share a per-request dict at `scope["hosted"]`, where the gate puts the verified user and the
DICOMweb route the store, the UIDs and the retries.
"""
from __future__ import annotations

import json
import sys
import time
from typing import Any, Awaitable, Callable, MutableMapping, TextIO

from .iap import InvalidAssertion, KeySet, verify

__all__ = ["HEALTH_PATH", "AccessLog", "Headers", "IapGate"]

Scope = dict[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
HEALTH_PATH = "/_hosted/health"   # not ending in "z": Cloud Run reserves such paths on run.app
ISOLATION = [
    # OHIF's MPR needs SharedArrayBuffer, which needs cross-origin isolation (OHIF issues #3220, #3033).
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-embedder-policy", b"require-corp"),
    # Everything here is for this origin's pages only.
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]
# access google-sign-in: the same, but the document isolates itself with Document-Isolation-Policy
# instead of COEP. OHIF renews the user's token in a hidden iframe sent to accounts.google.com, which
# answers with a 302 back to /silent-refresh.html. Under COEP (require-corp and credentialless alike)
# each cross-origin response of a frame's navigation, that 302 included, needs
# `Cross-Origin-Resource-Policy: cross-origin` (Fetch: "cross-origin resource policy check",
# forNavigation), which nothing shows Google sending (its accounts pages refuse framing): Debian
# chromium 156 blocks it (net::ERR_BLOCKED_BY_RESPONSE, tests/test_hosted_sign_in_browser.py), the
# renewal never completes and the user must sign in again once the hour-long token expires.
# Document-Isolation-Policy (Chromium's desktop builds since about 137; observed in 156) isolates this
# document without constraining its frames: renewal works and crossOriginIsolated stays true in Chromium.
# Browsers without it (Firefox, Safari as far as we know) get no isolation; OHIF 3.13.2 then runs without
# SharedArrayBuffer, as it does when served without these headers (provision viewer, the Google-mode
# browser smoke). iap mode keeps COEP: IAP's cookie carries the session, no page leaves the origin in a frame.
SIGN_IN_ISOLATION = [
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"document-isolation-policy", b"isolate-and-require-corp"),
    *ISOLATION[2:],
]


class Headers:
    """Adds the cross-origin isolation headers to every answer (`SIGN_IN_ISOLATION` with `sign_in`)."""

    def __init__(self, app: ASGIApp, *, sign_in: bool = False) -> None:
        self.app = app
        self.headers = SIGN_IN_ISOLATION if sign_in else ISOLATION

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with(message: Message) -> None:
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [h for h in self.headers if h[0] not in have]
            await send(message)

        await self.app(scope, receive, send_with)


class IapGate:
    """Lets a request through only with a valid IAP assertion for `audience` (the health check aside)."""

    def __init__(self, app: ASGIApp, *, audience: str, keys: KeySet) -> None:
        self.app, self.audience, self.keys = app, audience, keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == HEALTH_PATH:
            return await self.app(scope, receive, send)
        info = scope.setdefault("hosted", {})
        assertion = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-goog-iap-jwt-assertion"), None)
        try:
            identity = await verify(assertion, audience=self.audience, keys=self.keys)
        except InvalidAssertion as exc:
            info["denied"] = str(exc)
            body = json.dumps({"error": {"code": 401, "message": "a valid IAP assertion is required: open this "
                                         "viewer through its run.app URL and sign in"}}).encode()
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode()), (b"cache-control", b"no-store")]})
            await send({"type": "http.response.body", "body": body})
            return
        info["user"] = identity.email
        await self.app(scope, receive, send)


class AccessLog:
    """One JSON line per request on `stream` (stdout: Cloud Logging reads it as a structured entry)."""

    FIELDS = ("store", "study", "series", "instance", "retries", "denied")

    def __init__(self, app: ASGIApp, stream: TextIO | None = None) -> None:
        self.app = app
        self.stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        info = scope.setdefault("hosted", {})
        seen = {"status": 500, "bytes": 0}

        async def counting(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
            elif message["type"] == "http.response.body":
                seen["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, counting)
        finally:
            self._write(scope, info, seen, (time.perf_counter() - start) * 1000.0)

    def _write(self, scope: Scope, info: dict[str, Any], seen: dict[str, Any], ms: float) -> None:
        status = seen["status"]
        headers = dict(scope["headers"])
        entry = {
            "severity": "ERROR" if status >= 500 else "WARNING" if status >= 400 else "INFO",
            "message": f"{scope['method']} {scope['path']} {status}",
            "user": info.get("user"),
            "method": scope["method"],
            "path": scope["path"],   # the query is left out: QIDO searches can hold patient names
            **{key: info[key] for key in self.FIELDS if info.get(key) is not None},
            "status": status,
            "bytes": seen["bytes"],
            "latency_ms": round(ms, 2),
            "httpRequest": {   # Cloud Logging's own request fields
                "requestMethod": scope["method"], "requestUrl": scope["path"], "status": status,
                "responseSize": str(seen["bytes"]), "latency": f"{ms / 1000.0:.6f}s",
                "userAgent": headers.get(b"user-agent", b"").decode("latin-1"),
            },
        }
        stream = self.stream or sys.stdout
        stream.write(json.dumps(entry, separators=(",", ":")) + "\n")
        stream.flush()
