"""Resource Manager's list filters and search queries: v1 `projects.list` filters (`id:my-proj
labels.env:prod lifecycleState:ACTIVE name:Demo*`) and v3 `projects.search` queries, parsed into terms,
and whether a project matches a term (state.py applies them to its records)."""
from __future__ import annotations

import re
import shlex

from provision.emulator.errors import ApiError


def parse_filter(text: str) -> list[tuple[str, str]]:
    """Space- (or AND-) separated `key:value` / `key=value` terms; quotes group spaces."""
    try:
        tokens = shlex.split(text)
    except ValueError:
        raise ApiError("INVALID_ARGUMENT", f"Invalid filter: {text!r}") from None
    terms = []
    for token in tokens:
        if token.upper() == "AND":
            continue
        m = re.match(r"^([A-Za-z_.\-]+)\s*[:=]\s*(.*)$", token)
        if not m:
            raise ApiError("INVALID_ARGUMENT", f"Invalid filter: {text!r}")
        terms.append((m.group(1), m.group(2)))
    return terms


def parse_search(text: str) -> list[list[tuple[str, str]]]:
    """A v3 search query as OR-ed groups of AND-ed `(field, value)` terms."""
    try:
        tokens = shlex.split(text)
    except ValueError:
        raise ApiError("INVALID_ARGUMENT", f"Invalid query: {text!r}") from None
    groups: list[list[tuple[str, str]]] = []
    join = False
    for token in tokens:
        if token.upper() in ("AND", "OR"):
            join = token.upper() == "AND" and bool(groups)
            continue
        m = re.match(r"^([A-Za-z_.\-]+)\s*[:=]\s*(.*)$", token)
        if not m:
            raise ApiError("INVALID_ARGUMENT", f"Invalid query: {text!r}")
        if join:
            groups[-1].append((m.group(1), m.group(2)))
        else:
            groups.append([(m.group(1), m.group(2))])
        join = False
    return groups


def term_matches(view: dict, parent: str, key: str, value: str) -> bool:
    """Whether a project, as v1 shows it (`view`; `parent`: its v3 parent name), matches one `key:value` term."""
    k = key.lower()
    if k in ("id", "projectid"):
        actual = view["projectId"]
    elif k in ("name", "displayname"):
        actual = view.get("name", "")
    elif k == "labels":
        labels = view.get("labels") or {}
        return value == "*" and bool(labels) or any(
            _text_matches(x, value) for pair in labels.items() for x in pair)
    elif k in ("lifecyclestate", "state"):
        actual = view["lifecycleState"]
    elif k in ("projectnumber", "number"):
        actual = view["projectNumber"]
    elif k == "parent.type":
        actual = (view.get("parent") or {}).get("type", "")
    elif k == "parent.id":
        actual = (view.get("parent") or {}).get("id", "")
    elif k == "parent":
        actual = parent
    elif k.startswith("labels."):
        labels = view.get("labels") or {}
        label = key[len("labels."):]
        if label not in labels:
            return False
        actual = labels[label]
        if value == "*":
            return True
    else:
        raise ApiError("INVALID_ARGUMENT", f"Invalid filter field: {key!r}")
    return _text_matches(actual, value)


def _text_matches(actual: str, value: str) -> bool:
    """Case-insensitive equality; a trailing `*` makes the value a prefix."""
    if value.endswith("*"):
        return actual.lower().startswith(value[:-1].lower())
    return actual.lower() == value.lower()
