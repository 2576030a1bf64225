"""The one place that says what token material looks like, and removes it from text.

Used wherever a message is built from something we do not control (a server's error message,
an exception's text, a URL) and at the chokepoints every message passes (engine events, the
CLI's error line, the emulator's --record file). What is removed:

- `Bearer <anything>` (an Authorization header value, whatever the token's form);
- Google OAuth access tokens (`ya29.…`), refresh tokens (`1//…`) and JWTs (`eyJ….eyJ….…`,
  ID tokens and signed assertions);
- credentials in URLs and form bodies: `access_token=`, `oauth_token=`, `refresh_token=`,
  `id_token=`, `client_secret=` anywhere, and `token=` / `upload_id=` as query parameters
  (`?token=` is how OHIF takes a token; a resumable upload's `upload_id` is that upload's
  credential); the same names as JSON keys (`"access_token": "…"`);
- emulator tokens (`emulator:user:ana@example.com`). They name a principal rather than hide a
  secret, but under `--enforce-iam` that string is exactly what the emulator accepts as a
  credential, so text carries the member (`user:ana@example.com`, as in IAM policies and
  every emulator message) and never the token. The documented placeholder
  `emulator:user:NAME@DOMAIN` in our own fix hints is left alone.

Redaction keeps the shape (`Bearer <redacted>`, `access_token=<redacted>`), so a message
still says that a token was there.
"""
from __future__ import annotations

import re
from typing import Any

REDACTED = "<redacted>"

# Query parameters whose value is a credential: the emulator's --record keeps the name and drops the value.
SECRET_QUERY_PARAMS = frozenset({"access_token", "oauth_token", "refresh_token", "id_token", "client_secret",
                                 "key", "token", "upload_id"})

_VALUE = r"[^\s&'\"#<>,;)\]}]+"
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b(Bearer)(\s+)" r"(?!<redacted>)[^\s'\"]+", re.I), rf"\1\2{REDACTED}"),
    (re.compile(r"\b(access_token|oauth_token|refresh_token|id_token|client_secret)=" + _VALUE, re.I),
     rf"\1={REDACTED}"),
    (re.compile(r"([?&])(token|upload_id|key)=" + _VALUE, re.I), rf"\1\2={REDACTED}"),
    (re.compile(r"(\"(?:access_token|refresh_token|id_token|client_secret)\"\s*:\s*)\"[^\"]*\""), rf'\1"{REDACTED}"'),
    (re.compile(r"\bya29\.[\w.~+/=-]+"), REDACTED),
    (re.compile(r"\b1//[\w.~+/=-]{20,}"), REDACTED),
    (re.compile(r"\beyJ[\w-]+\.eyJ[\w-]+\.[\w-]*"), REDACTED),
    (re.compile(r"\bemulator:(?!user:NAME@DOMAIN\b)[A-Za-z]+:[^\s'\"<>,;)\]}]+"),
     REDACTED),
)


def redact(text: str) -> str:
    """`text` with every bearer token, OAuth token and credential query parameter replaced by `<redacted>`."""
    if not text:
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_value(value: Any) -> Any:
    """`redact` applied to every string inside a JSON-like value (dicts, lists); other values unchanged."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_value(v) for v in value]
    return value


def redact_query(query: dict[str, list[str]]) -> dict[str, list[str]]:
    """A query (name -> values) whose credential parameters keep their name but not their value."""
    return {name: [REDACTED] * len(values) if name.lower() in SECRET_QUERY_PARAMS else [redact(v) for v in values]
            for name, values in query.items()}
