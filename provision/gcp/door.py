"""The address a person opens in their own browser for a URL an emulator serves under a Google host
(the hosted viewer's `https://SERVICE-N.REGION.run.app`): its `.localhost` twin on the emulator's
port, which the emulator answers as that host and through which IAP's whole sign-in stays local
(provision/emulator/door.py). Only for an emulator on this machine's loopback: a `.localhost`
name always resolves to loopback (RFC 6761 §6.3), so it cannot reach an emulator elsewhere.
"""
from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

SUFFIX = ".localhost"


def on_loopback(emulator: str) -> bool:
    """Whether the emulator URL names this machine's loopback (localhost, 127.0.0.0/8, ::1)."""
    host = (urlsplit(emulator).hostname or "").lower()
    if host == "localhost" or host.endswith(SUFFIX):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def local_url(url: str, emulator: str | None) -> str | None:
    """`https://HOST/path` served by the emulator at `emulator` -> `http://HOST.localhost:PORT/path`;
    None off an emulator, or for an emulator that is not on loopback."""
    if not emulator or not on_loopback(emulator):
        return None
    parts, emu = urlsplit(url), urlsplit(emulator)
    if parts.scheme != "https" or not parts.hostname:
        return None
    port = f":{emu.port}" if emu.port else ""
    return f"http://{parts.hostname}{SUFFIX}{port}{parts.path or '/'}"
