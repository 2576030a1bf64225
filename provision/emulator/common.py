"""Small helpers several APIs share: Google's timestamps, offset page tokens, the owner of what
an anonymous caller creates, and Google-managed service agent emails. No state here."""
from __future__ import annotations

import base64
import re
from datetime import datetime, timezone
from typing import Any, Mapping

from provision.emulator.errors import ApiError, invalid_argument

# Who owns what an anonymous caller creates (no --enforce-iam, no bearer token): the projects
# it creates, and the seeded billing account it may use.
ANONYMOUS_OWNER = "user:emulator-owner@example.com"

# service-<project number>@gcp-sa-<short service name>.iam.gserviceaccount.com
AGENT_EMAIL_RE = re.compile(r"^service-([0-9]+)@gcp-sa-([a-z0-9-]+)\.iam\.gserviceaccount\.com$")


def timestamp(t: float) -> str:
    """RFC 3339 UTC with microseconds, as Google writes createTime (`2026-01-02T03:04:05.123456Z`)."""
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def agent_email(number: str, service: str) -> str:
    """The service agent of `service` (`healthcare.googleapis.com`) in project `number`."""
    return f"service-{number}@gcp-sa-{service.split('.', 1)[0]}.iam.gserviceaccount.com"


def parse_agent_email(email: str) -> tuple[str, str] | None:
    """`service-N@gcp-sa-x.iam.gserviceaccount.com` (or `serviceAccount:` + that) -> (N, "x.googleapis.com");
    None for any other email."""
    m = AGENT_EMAIL_RE.match(email.removeprefix("serviceAccount:"))
    return (m.group(1), f"{m.group(2)}.googleapis.com") if m else None


def page(query: Mapping[str, Any], items: list, *, default_size: int, max_size: int,
         too_large: ApiError | None = None) -> tuple[list, str]:
    """One page of `items` by `pageSize` and an offset `pageToken`: (the page, the next token or "").
    A page size over `max_size` (or negative) raises `too_large`; without it, the size is clamped
    (and a size of 0 or less means `default_size`). A token or size that does not parse is a 400."""
    try:
        size = int(query.get("pageSize") or default_size)
        token = query.get("pageToken")
        start = int(base64.urlsafe_b64decode(token).decode()) if token else 0
    except (ValueError, UnicodeDecodeError):
        raise invalid_argument("Invalid page token or page size.") from None
    if too_large is not None and (size < 0 or size > max_size):
        raise too_large
    size = min(size, max_size) if size > 0 else default_size
    nxt = base64.urlsafe_b64encode(str(start + size).encode()).decode() if start + size < len(items) else ""
    return items[start:start + size], nxt
