"""The local door: a person's own browser reaches the Google hosts the emulator plays through their
`.localhost` twins, `http://NAME.localhost:PORT` (e.g. `http://viewer-123.us-central1.run.app.localhost:8765`,
`http://accounts.google.com.localhost:8765`), with nothing to install and no request routing.

Why this works (checked with Debian chromium in tests/test_hosted_door.py):
- every name under `.localhost` is the loopback address (RFC 6761 §6.3); Chromium and Firefox
  resolve them to loopback themselves, without asking DNS (Firefox: nsHostResolver's
  IsLoopbackHostname; Chromium: net::IsLocalHostname), so the browser reaches this emulator's port;
- `http://*.localhost` is a potentially trustworthy origin (W3C Secure Contexts §3.2), so the
  browser accepts IAP's `__Host-` Secure cookie there and the viewer is a secure context.

A twin routes as the real name does: a run.app twin goes to that service's front end, any other
twin to the API routes (which route by path). Only the URLs the browser is sent to change: a
`Location` to one of these https hosts becomes its twin (same port), so the whole sign-in
(accounts, IAP's handleRedirect, the service's cookie step) stays on local names. Tokens,
assertions and the URLs inside them keep Google's names (an IAP assertion's audience, an ID
token's `aud` of `https://SERVICE.run.app`, the `redirect_uri` an OAuth client registered).

DNS rebinding: the Host check accepts a twin of a host this emulator plays (not any `.localhost`
name). A twin resolves to loopback only, so no remote page can own it: a page there is one
this emulator (or another local program) served.
"""
from __future__ import annotations

from typing import Callable
from urllib.parse import urlsplit

SUFFIX = ".localhost"
DOOR_KEY = "provision.emulator.door"   # environ key: the browser's own Host (NAME.localhost:PORT) of a door request
# Google hosts the emulator plays, by exact name or by suffix (any API host, any Cloud Run service).
EXACT = frozenset({"accounts.google.com", "www.gstatic.com"})
SUFFIXES = (".googleapis.com", ".run.app")


def plays(name: str) -> bool:
    """Whether `name` (lower-case, no port) is a Google host whose requests the emulator answers."""
    return name in EXACT or any(name.endswith(s) and len(name) > len(s) for s in SUFFIXES)


def google_name(name: str) -> str | None:
    """The Google host a `.localhost` twin stands for (`accounts.google.com.localhost` ->
    `accounts.google.com`), or None when `name` is not the twin of a host the emulator plays."""
    if not name.endswith(SUFFIX):
        return None
    real = name[: -len(SUFFIX)]
    return real if plays(real) else None


def twin_url(url: str, port: str) -> str:
    """`https://HOST/path` -> `http://HOST.localhost:PORT/path` when HOST is played here; else `url`."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme != "https" or not plays(host) or parts.port not in (None, 443):
        return url
    rest = url.split(parts.netloc, 1)[1]
    return f"http://{host}{SUFFIX}{':' + port if port else ''}{rest}"


def rewriting(start_response: Callable, door_host: str) -> Callable:
    """`start_response` whose `Location` header, when it sends the browser to a host played here,
    names its twin on the port the browser used (`door_host` is the request's Host)."""
    port = door_host.rpartition(":")[2] if ":" in door_host and not door_host.endswith("]") else ""

    def start(status, headers, exc_info=None):
        headers = [(k, twin_url(v, port) if k.lower() == "location" else v) for k, v in headers]
        return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

    return start
