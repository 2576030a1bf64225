"""Streaming replacement of upstream URLs in JSON answers, with bounded memory.

DICOM JSON metadata names each instance's bulk data by absolute URL (`BulkDataURI`), and QIDO and
STOW answers name instances by `RetrieveURL`; they point at the upstream (Google's host), which
the browser must never call. Rather than parse a possibly large JSON document, the answer is
rewritten as it streams: every occurrence of an upstream root is replaced by its same-origin root.
Only the last `longest needle - 1` bytes are held back between chunks (a root cut in two by a
chunk boundary is still found), so memory does not grow with the answer.
"""
from __future__ import annotations

import re
from typing import Mapping

__all__ = ["Rewriter"]


class _Plan:
    """What a table compiles to; kept per table (a service has one or two origins, so a few tables)."""

    def __init__(self, table: Mapping[bytes, bytes]) -> None:
        needles = sorted(table, key=len, reverse=True)  # the longest first where roots nest
        self.pattern = re.compile(b"|".join(re.escape(n) for n in needles)) if needles else None
        self.hold = max((len(n) for n in needles), default=1) - 1
        # One root that cannot overlap itself (a URL root never does): the regex engine replaces it
        # with a template, in C, about three times faster than a Python step per match.
        self.needle: bytes | None = None
        self.template = b""
        if len(needles) == 1 and not any(needles[0][:k] == needles[0][-k:] for k in range(1, len(needles[0]))):
            self.needle, self.template = needles[0], table[needles[0]].replace(b"\\", b"\\\\")


_PLANS: dict[tuple[tuple[bytes, bytes], ...], _Plan] = {}


class Rewriter:
    """Replaces each key of `table` (bytes) by its value, across chunk boundaries."""

    def __init__(self, table: Mapping[bytes, bytes]) -> None:
        self.table = dict(table)
        key = tuple(sorted(self.table.items()))
        plan = _PLANS.get(key)
        if plan is None:
            plan = _Plan(self.table)
            if len(_PLANS) < 64:   # bounded: a Host header the app does not know makes a new table
                _PLANS[key] = plan
        self._pattern, self._hold, self._needle, self._template = plan.pattern, plan.hold, plan.needle, plan.template
        self._carry = b""

    def feed(self, chunk: bytes) -> bytes:
        """Rewritten bytes that are final; a possible partial match is kept for the next call."""
        if self._pattern is None:
            return chunk
        buf = self._carry + chunk if self._carry else chunk
        # A match starting in the last `hold` bytes waits for the next chunk: a longer root that nests
        # it may still be completed there (with "longest first", the longer one must win).
        cut = len(buf) - self._hold
        if self._needle is not None:
            return self._feed_one(buf, cut)
        out: list[bytes] = []
        pos = 0
        for match in self._pattern.finditer(buf):
            if match.start() >= cut:
                break
            out.append(buf[pos:match.start()])
            out.append(self.table[match.group()])
            pos = match.end()
        keep_from = max(pos, cut, 0)
        out.append(buf[pos:keep_from])
        self._carry = buf[keep_from:]
        return b"".join(out)

    def _feed_one(self, buf: bytes, cut: int) -> bytes:
        # The same cut as above for one root that cannot overlap itself: an occurrence starting before
        # the cut lies whole in `buf` (hold = its length - 1), and at most one crosses the cut.
        assert self._needle is not None and self._pattern is not None
        if cut <= 0:
            self._carry = buf
            return b""
        size = len(self._needle)
        at = buf.rfind(self._needle, max(0, cut - size + 1), cut + size - 1)
        if at >= 0:
            cut = at + size
        self._carry = buf[cut:]
        return self._pattern.sub(self._template, buf[:cut])

    def flush(self) -> bytes:
        """The bytes held back, rewritten: the answer has ended."""
        rest, self._carry = self._carry, b""
        if self._needle is not None and self._pattern is not None:
            rest = self._pattern.sub(self._template, rest)
        elif self._pattern is not None:
            rest = self._pattern.sub(lambda match: self.table[match.group()], rest)
        return rest
