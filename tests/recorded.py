"""The format of shared/fidelity/gcp-recorded/*.http.log: exchanges separated by `---`, each a
request line, headers, body, then a status line, headers, body."""
from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass
class Exchange:
    index: int
    method: str
    url: str
    headers: dict[str, str]
    body: str
    status: int
    response: str
    response_headers: dict[str, str] = field(default_factory=dict)


def _headers(lines: list[str], i: int) -> tuple[dict[str, str], int]:
    out: dict[str, str] = {}
    while i < len(lines) and lines[i].strip():
        key, _, value = lines[i].partition(":")
        out[key.strip()] = value.strip()
        i += 1
    return out, i


def parse_log(text: str) -> list[Exchange]:
    """Split a recording into its exchanges, in order."""
    out: list[Exchange] = []
    for block in re.split(r"\n---\n", text):
        lines = block.strip("\n").split("\n")
        if not lines or not lines[0].strip():
            continue
        method, url = lines[0].split(" ", 1)
        headers, i = _headers(lines, 1)
        start = i
        while i < len(lines) and not re.match(r"^\d{3} ", lines[i]):
            i += 1
        body = "\n".join(lines[start:i]).strip()
        status = int(lines[i].split(" ", 1)[0])
        response_headers, i = _headers(lines, i + 1)
        out.append(Exchange(len(out), method, url.strip(), headers, body, status, "\n".join(lines[i:]).strip(),
                            response_headers))
    return out
