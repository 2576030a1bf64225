"""Glob matching over object names, and the name range a listing has to scan.

Two dialects: objects.list `matchGlob` (Cloud Storage's) and Healthcare import URIs (only `*`,
`**` and `?`). Both compile to a regex over whole names plus the literal prefix every match
starts with, so a listing can walk the primary-key index from that prefix instead of the bucket.
"""
from __future__ import annotations

import re


def compile_glob(pattern: str, *, import_semantics: bool = False) -> tuple[re.Pattern, str]:
    """A glob as a regex over whole object names, and the literal prefix every match starts with.

    objects.list `matchGlob`: `*` any run without `/`, `**` any run (a whole `**/` segment also
    matches no directory at all), `?` one character other than `/`, `[abc]`, `[a-z]`, `[!abc]`,
    `{a,b}`, `\\x` a literal x.
    Healthcare import URIs (`import_semantics=True`): only `*`, `**` and `?`; everything else is
    literal (brackets and braces are legal in object names).
    """
    literal = []
    for ch in pattern:
        if ch in "*?" or (not import_semantics and ch in "[{\\"):
            break
        literal.append(ch)
    return re.compile(_glob_to_regex(pattern, import_semantics), re.DOTALL), "".join(literal)


def _glob_to_regex(pattern: str, import_semantics: bool) -> str:
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                whole_segment = (i == 0 or pattern[i - 1] == "/") and pattern.startswith("/", i + 2)
                if whole_segment and not import_semantics:
                    out.append("(?:.*/)?")
                    i += 3
                else:
                    out.append(".*")
                    i += 2
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif import_semantics:
            out.append(re.escape(c))
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        elif c == "[":
            j = i + 1
            if j < n and pattern[j] in "!^":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:j]
                negate = body[:1] in ("!", "^")
                if negate:
                    body = body[1:]
                body = body.replace("\\", "\\\\").replace("^", "\\^")
                out.append(f"[{'^' if negate else ''}{body}]")
                i = j
        elif c == "{":
            j = pattern.find("}", i)
            if j < 0:
                out.append(re.escape(c))
            else:
                alts = pattern[i + 1:j].split(",")
                out.append("(?:" + "|".join(_glob_to_regex(a, False) for a in alts) + ")")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def after_prefix(prefix: str) -> str | None:
    """The least string above every string that starts with `prefix` (None: no bound)."""
    while prefix:
        code = ord(prefix[-1]) + 1
        if 0xD800 <= code <= 0xDFFF:
            code = 0xE000
        if code <= 0x10FFFF:
            return prefix[:-1] + chr(code)
        prefix = prefix[:-1]
    return None


def name_range(prefix: str, literal: str, start: str, end: str | None) -> tuple[str, str | None] | None:
    """The [lo, hi) name range that can hold names starting with both `prefix` and a glob's
    `literal` prefix, clipped to [start, end); None when nothing can match."""
    if literal.startswith(prefix):
        narrow = literal
    elif prefix.startswith(literal):
        narrow = prefix
    else:
        return None
    lo = max(narrow, start)
    hi = after_prefix(narrow)
    if end is not None and (hi is None or end < hi):
        hi = end
    if hi is not None and lo >= hi:
        return None
    return lo, hi
