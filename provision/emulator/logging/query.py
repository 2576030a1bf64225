"""The subset of the Logging query language (https://cloud.google.com/logging/docs/view/logging-query-language)
that `entries:list` filters use here. Pure functions: a filter string becomes a predicate on a
LogEntry dict. No HTTP, no state.

Supported: comparisons `FIELD OP VALUE` with OP one of `=`, `!=`, `:` (has: substring, or
`:*` for presence), `<`, `<=`, `>`, `>=`; `AND`, `OR`, `NOT` / a leading `-`, parentheses,
and juxtaposition as AND. String comparisons ignore case and `:` is "contains" (the query
language page: "NOT textPayload:robot" matches entries whose textPayload does not contain
robot; "string comparisons are case-insensitive"). NOT binds tightest and OR tighter than AND
(`a OR b AND c` is `(a OR b) AND c`), as Google's filter grammar (AIP-160) has it: recalled,
not found in our references; provision's own filters use AND only. `severity` compares by
level (`severity>=ERROR`), `timestamp` and `receiveTimestamp` as instants.

Not supported (answered 400 so that a client never gets a silently wrong list): global
restrictions (a bare word with no field), regular expressions (`=~`, `!~`), functions
(`sample()`, `log_id()`, ...). The error text is ours; Google's wording is not recorded.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any, Callable

MAX_LENGTH = 20000  # "The maximum length of a filter is 20,000 characters" (logging.v2 discovery)

SEVERITIES = {"DEFAULT": 0, "DEBUG": 100, "INFO": 200, "NOTICE": 300, "WARNING": 400, "ERROR": 500,
              "CRITICAL": 600, "ALERT": 700, "EMERGENCY": 800}
TIME_FIELDS = ("timestamp", "receiveTimestamp")

Predicate = Callable[[dict], bool]


class FilterError(ValueError):
    """The filter is outside the supported grammar (or malformed)."""


_TOKEN = re.compile(r'''
    \s*(?:
      (?P<string>"(?:[^"\\]|\\.)*")
    | (?P<op>!=|>=|<=|=~|!~|[=:<>])
    | (?P<paren>[()])
    | (?P<word>[^\s()"=:<>!]+)
    )''', re.VERBOSE)


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise FilterError(f"unexpected character {text[pos:].lstrip()[:1]!r} at column {pos + 1}")
        kind = m.lastgroup or ""
        value = m.group(kind)
        if kind == "string":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        out.append((kind, value))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str):
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise FilterError("the filter ends too early")
        self.i += 1
        return tok

    def keyword(self, word: str) -> bool:
        tok = self.peek()
        if tok and tok[0] == "word" and tok[1] == word:
            self.i += 1
            return True
        return False

    def parse(self) -> Predicate:
        if not self.toks:
            return lambda entry: True
        pred = self.and_expr()
        rest = self.peek()
        if rest is not None:
            raise FilterError(f"unexpected {rest[1]!r}")
        return pred

    def and_expr(self) -> Predicate:
        parts = [self.or_expr()]
        while True:
            tok = self.peek()
            if tok is None or tok == ("paren", ")"):
                break
            self.keyword("AND")  # juxtaposition is AND
            parts.append(self.or_expr())
        return parts[0] if len(parts) == 1 else (lambda e, ps=parts: all(p(e) for p in ps))  # type: ignore[misc]  # a lambda with a bound default (mypy cannot infer it)

    def or_expr(self) -> Predicate:
        parts = [self.unary()]
        while self.keyword("OR"):
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else (lambda e, ps=parts: any(p(e) for p in ps))  # type: ignore[misc]  # a lambda with a bound default (mypy cannot infer it)

    def unary(self) -> Predicate:
        if self.keyword("NOT"):
            inner = self.unary()
            return lambda e: not inner(e)
        tok = self.peek()
        if tok and tok[0] == "word" and tok[1].startswith("-") and len(tok[1]) > 1:
            self.toks[self.i] = ("word", tok[1][1:])
            inner = self.unary()
            return lambda e: not inner(e)
        if tok == ("paren", "("):
            self.take()
            inner = self.and_expr()
            if self.take() != ("paren", ")"):
                raise FilterError("unbalanced parentheses")
            return inner
        return self.comparison()

    def comparison(self) -> Predicate:
        kind, field = self.take()
        if kind not in ("word", "string") or field in ("AND", "OR"):
            raise FilterError(f"expected a field name, got {field!r}")
        if self.peek() == ("paren", "("):
            raise FilterError(f"functions are not supported: {field}(...)")
        # A path is dotted words, where a segment may be quoted: jsonPayload."@type"
        path = [field] if kind == "string" else _field_path(field.rstrip(".") if field.endswith(".") else field)
        while field.endswith(".") and (nxt := self.peek()) is not None and nxt[0] in ("word", "string"):
            kind, field = self.take()
            path += [field] if kind == "string" else _field_path(field.rstrip(".") if field.endswith(".") else field)
        tok = self.peek()
        if tok is None or tok[0] != "op":
            raise FilterError(f"global restrictions (a value with no field, here {field!r}) are not supported; "
                              "write FIELD=VALUE")
        op = self.take()[1]
        if op in ("=~", "!~"):
            raise FilterError("regular expressions are not supported")
        vkind, value = self.take()
        if vkind not in ("word", "string"):
            raise FilterError(f"expected a value after {field}{op}")
        return _compare(path, op, value, quoted=vkind == "string")


def _field_path(text: str) -> list[str]:
    parts = text.split(".")
    if not all(parts):
        raise FilterError(f"malformed field name {text!r}")
    return parts


def _lookup(entry: Any, path: list[str]) -> tuple[bool, Any]:
    cur = entry
    for part in path:
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            return False, None
    return True, cur


def _instant(text: str) -> datetime:
    s = text.strip().replace("z", "Z")
    m = re.match(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})?$", s)
    if not m:
        raise FilterError(f"invalid timestamp {text!r}; use RFC 3339, e.g. 2026-01-02T03:04:05Z")
    frac = (m.group(2) or ".0")[:7]  # nanoseconds are accepted; microseconds are kept
    zone = m.group(3) or "Z"
    dt = datetime.fromisoformat(m.group(1) + frac + ("+00:00" if zone == "Z" else zone))
    return dt.astimezone(timezone.utc)


def _ordered(op: str, a: Any, b: Any) -> bool:
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b, "=": a == b}[op]


def _compare(path: list[str], op: str, value: str, *, quoted: bool) -> Predicate:
    name = ".".join(path)
    if op == ":" and value == "*" and not quoted:
        return lambda e: _lookup(e, path)[0]
    if op == "!=":
        inner = _compare(path, "=", value, quoted=quoted)
        return lambda e: not inner(e)
    if name == "severity":
        want = SEVERITIES.get(value.upper())
        if want is None:
            if value.isdigit():
                want = int(value)
            else:
                raise FilterError(f"unknown severity {value!r}; one of {', '.join(SEVERITIES)}")
        if op == ":":
            op = "="
        return lambda e: _ordered(op, SEVERITIES.get(str(e.get("severity") or "DEFAULT"), 0), want)
    if name in TIME_FIELDS:
        when = _instant(value)
        if op == ":":
            raise FilterError(f"{name} takes =, <, <=, > or >=")
        return lambda e: _lookup(e, path)[0] and _ordered(op, _instant(str(_lookup(e, path)[1])), when)
    needle = value.lower()

    def match(e: dict) -> bool:
        found, got = _lookup(e, path)
        if not found:
            return False
        items = got if isinstance(got, list) else [got]
        for item in items:
            if isinstance(item, (dict, list)):
                continue
            text = str(item).lower()
            if op == ":":
                if needle in text:
                    return True
            elif op == "=":
                if text == needle:
                    return True
            else:
                try:
                    if _ordered(op, float(text), float(needle)):
                        return True
                except ValueError:
                    if _ordered(op, text, needle):
                        return True
        return False

    return match


def compile_filter(text: str | None) -> Predicate:
    """A predicate for `text` (empty: everything); FilterError when it is outside the subset."""
    text = text or ""
    if len(text) > MAX_LENGTH:
        raise FilterError(f"the filter is {len(text)} characters long; at most {MAX_LENGTH} are allowed")
    return _Parser(text).parse()
