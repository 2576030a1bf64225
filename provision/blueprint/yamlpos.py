"""Read a YAML file defensively and remember where every key and value came from.

PyYAML's constructor throws positions away, and it silently keeps the last of two
duplicate keys, expands aliases (the "billion laughs" bomb) and recurses as deep as the
input nests. This module reads the file with hard limits, composes the node graph with
a SafeLoader that refuses anchors, aliases and deep nesting as soon as it meets them,
and walks the nodes itself, so that every problem can be reported as `FILE:LINE:COL`.

The walk yields plain data (dict / list / str / int / float / bool / None) plus two maps
from a path tuple such as `("dicom_stores", 0, "import", "uri")` to the 1-based
(line, column) of the key and of the value. `${NAME}` references in string values are
expanded here too, because only here do we still know where in the file each one is.
"""
from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, NamedTuple

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

try:   # libyaml's event parser (PyYAML's wheels are built with it)
    from yaml._yaml import CParser
except ImportError:   # a PyYAML built without libyaml: every file takes the pure-Python path
    CParser = None  # type: ignore[assignment,misc]  # the fallback's own marker

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 32  # a blueprint nests 5 deep; anything far deeper is not a blueprint

PathKey = tuple[Any, ...]

_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_TAG + t for t in ("str", "int", "float", "bool", "null")}


class Problem(NamedTuple):
    """One thing wrong with the file; `line`/`col` are 1-based, or None for the file as a whole."""

    line: int | None
    col: int | None
    message: str


@dataclass
class Document:
    """The outcome of reading one YAML file.

    `data` is None when the file could not be read or parsed at all; `problems` holds
    everything found so far (a document can have data *and* problems, e.g. an unset
    environment variable). `unreadable` names the paths whose values were already
    reported, so that later checks do not pile a second complaint on the same value.
    """

    path: Path
    data: Any = None
    keys: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    values: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    scalars: dict[PathKey, str] = field(default_factory=dict)  # scalar values as written
    unreadable: set[PathKey] = field(default_factory=set)  # values already reported as problems
    problems: list[Problem] = field(default_factory=list)

    def value_pos(self, path: PathKey) -> tuple[int, int]:
        """Where the value at `path` starts, or its nearest known ancestor's (1, 1 at worst)."""
        return _nearest(self.values, path)

    def key_pos(self, path: PathKey) -> tuple[int, int]:
        """Where the key naming `path` is written; falls back to the value position."""
        if path in self.keys:
            return self.keys[path]
        return self.value_pos(path)


def _nearest(table: dict[PathKey, tuple[int, int]], path: PathKey) -> tuple[int, int]:
    for cut in range(len(path), -1, -1):
        if path[:cut] in table:
            return table[path[:cut]]
    return (1, 1)


class _Refused(Exception):
    def __init__(self, mark: Any, message: str):
        super().__init__(message)
        self.mark = mark
        self.message = message


class _Guard(Composer):
    """A composer that refuses what a blueprint never needs.

    Refusing at compose time (rather than after loading) is what makes an alias bomb
    or a pathologically nested file fail at its first offending token instead of after
    the whole graph has been built.
    """

    _depth = 0

    def _next_event(self) -> Any:
        raise NotImplementedError

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        event = self._next_event()
        if isinstance(event, AliasEvent):
            raise _Refused(
                event.start_mark,
                f"YAML alias '*{event.anchor}' is not allowed; blueprints refuse anchors and aliases "
                "(they can expand exponentially); write the value out in full",
            )
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            raise _Refused(
                event.start_mark,
                f"YAML anchor '&{anchor}' is not allowed; blueprints refuse anchors and aliases "
                "(they can expand exponentially); write the value out in full",
            )
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(event.start_mark, f"the YAML nests more than {MAX_DEPTH} levels deep; a blueprint nests about 5")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _GuardedLoader(_Guard, yaml.SafeLoader):
    """A SafeLoader with the guarded composer: every problem's words and positions come from here."""

    def _next_event(self) -> Any:
        # Named through yaml's class: typeshed leaves peek_event unannotated, and untyped_calls_exclude
        # (pyproject.toml) admits yaml's untyped functions only by their own name.
        return yaml.parser.Parser.peek_event(self)


if CParser is not None:
    class _FastLoader(_Guard, CParser, SafeConstructor, Resolver):
        """libyaml scans and parses (the bulk of the time, ~10x faster: a fleet reads 100s of blueprints);
        the same guarded composer in Python builds the same nodes, with the same marks for ASCII text."""

        def __init__(self, stream: str):
            CParser.__init__(self, stream)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

        def _next_event(self) -> Any:
            return CParser.peek_event(self)


def _pos(mark: Any) -> tuple[int, int]:
    return (mark.line + 1, mark.column + 1)


def _line_col(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    col = index - (text.rfind("\n", 0, index) + 1) + 1
    return line, col


# `$${` is a literal `${`; `${NAME}` is a reference; any other `${` is malformed.
_ENV_RE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$\{")


def read_yaml(path: Path | str, env: Mapping[str, str] | None = None) -> Document:
    """Read `path` as one YAML document with positions; never raises for bad input.

    Refuses, with a positioned problem: a missing file, a directory or other non-regular
    file, more than 1 MiB, NUL bytes or non-UTF-8 content, a YAML syntax error, several
    documents, anchors/aliases, unsupported tags, non-scalar keys, duplicate keys, nesting
    deeper than 32, and `${NAME}` references to variables missing from `env`
    (default: `os.environ`).
    """
    path = Path(path)
    doc = Document(path=path)
    text = _read_text(path, doc)
    if text is None:
        return doc
    if CParser is not None and text.isascii() and _read_fast(text, doc, os.environ if env is None else env):
        return doc
    try:
        loader = _GuardedLoader(text)
    except yaml.reader.ReaderError as exc:  # the reader checks the characters up front
        line, col = _line_col(text, exc.position)
        doc.problems.append(Problem(line, col, f"character U+{exc.character:04X} is not allowed in YAML; remove it"))
        return doc
    try:
        return _compose_and_walk(loader, text, doc, os.environ if env is None else env)
    finally:
        loader.dispose()


def _read_fast(text: str, doc: Document, env: Mapping[str, str]) -> bool:
    """Fill `doc` through libyaml; False, `doc` untouched, when anything is amiss (a syntax error, an
    anchor, deep nesting, a character YAML refuses): the pure-Python path then says what, in its words.
    ASCII only: libyaml's marks count bytes, the pure-Python reader characters."""
    try:
        loader = _FastLoader(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except Exception:  # noqa: BLE001 - any failure is said by the pure-Python path
        return False
    if root is None:
        return False
    doc.data = _Walker(text, doc, loader, env).walk(root, ())
    return True


def _compose_and_walk(loader: _GuardedLoader, text: str, doc: Document, env: Mapping[str, str]) -> Document:
    try:
        root = loader.get_single_node()
    except _Refused as exc:
        doc.problems.append(Problem(*_pos(exc.mark), exc.message))
        return doc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = _pos(mark) if mark is not None else (1, 1)
        what = exc.problem or "invalid YAML"
        if exc.context and exc.context_mark is not None:
            what = f"{what} ({exc.context} at line {exc.context_mark.line + 1}, column {exc.context_mark.column + 1})"
        hint = "check the indentation and quoting around here"
        source_line = text.splitlines()[line - 1] if line <= len(text.splitlines()) else ""
        if "${" in source_line:  # `{` is a flow indicator: an unquoted ${X} inside { } breaks the YAML
            hint = 'inside { } or [ ], quote a value that holds ${...}, e.g. {id: "${PROJECT}"}'
        if "single document" in f"{exc.problem} {exc.context}":
            hint = "a blueprint is one YAML document: remove the extra '---'"
        doc.problems.append(Problem(line, col, f"YAML syntax error: {what}; {hint}"))
        return doc
    except RecursionError:
        doc.problems.append(Problem(1, 1, "the YAML nests too deeply to be a blueprint"))
        return doc
    if root is None:
        doc.problems.append(
            Problem(1, 1, "the file holds no blueprint (it is empty or only comments); run `provision init` for a starter")
        )
        return doc
    doc.data = _Walker(text, doc, loader, env).walk(root, ())
    return doc


def _read_text(path: Path, doc: Document) -> str | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        doc.problems.append(
            Problem(None, None, "no such file; check the path, or run `provision init` to write a starter blueprint")
        )
        return None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        why = getattr(exc, "strerror", None) or exc
        doc.problems.append(Problem(None, None, f"cannot read the file ({why}); check the path and its permissions"))
        return None
    if stat.S_ISDIR(st.st_mode):
        doc.problems.append(Problem(None, None, "is a directory; give the path of a blueprint YAML file inside it"))
        return None
    if not stat.S_ISREG(st.st_mode):
        doc.problems.append(Problem(None, None, "is not a regular file; give the path of a blueprint YAML file"))
        return None
    # stat first, then read at most one byte past the limit: a huge (or growing) file is
    # refused without reading it.
    if st.st_size > MAX_BYTES:
        doc.problems.append(Problem(1, 1, f"the file is {st.st_size / MAX_BYTES:.1f} MiB; a blueprint must be at most 1 MiB"))
        return None
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        doc.problems.append(Problem(None, None, f"cannot read the file ({exc.strerror or exc}); check its permissions"))
        return None
    if len(raw) > MAX_BYTES:
        doc.problems.append(Problem(1, 1, "the file is larger than 1 MiB; a blueprint must be at most 1 MiB"))
        return None
    nul = raw.find(b"\0")
    if nul >= 0:
        before = raw[:nul].decode("utf-8", "replace")
        line, col = _line_col(before, len(before))
        doc.problems.append(Problem(line, col, "the file is binary (it contains a NUL byte); a blueprint is UTF-8 YAML text"))
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start].decode("utf-8", "replace")
        line, col = _line_col(before, len(before))
        doc.problems.append(
            Problem(line, col, f"the file is not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the blueprint as UTF-8")
        )
        return None
    return text.removeprefix("\ufeff")


class _Walker:
    """Turns composed nodes into plain data, recording positions and problems."""

    def __init__(self, text: str, doc: Document, loader: SafeConstructor, env: Mapping[str, str]):
        self.text = text
        self.doc = doc
        self.loader = loader
        self.env = env

    def problem(self, pos: tuple[int, int], message: str) -> None:
        self.doc.problems.append(Problem(pos[0], pos[1], message))

    def walk(self, node: Node, path: PathKey) -> Any:
        self.doc.values.setdefault(path, _pos(node.start_mark))
        if isinstance(node, MappingNode):
            return self._mapping(node, path)
        if isinstance(node, SequenceNode):
            if node.tag != _TAG + "seq":
                self.problem(_pos(node.start_mark), f"YAML tag {_tag(node.tag)} is not supported; remove it")
                self.doc.unreadable.add(path)
                return None
            return [self.walk(item, path + (i,)) for i, item in enumerate(node.value)]
        return self._scalar(node, path)

    def _mapping(self, node: MappingNode, path: PathKey) -> Any:
        if node.tag != _TAG + "map":
            self.problem(_pos(node.start_mark), f"YAML tag {_tag(node.tag)} is not supported; remove it")
            self.doc.unreadable.add(path)
            return None
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            kpos = _pos(key_node.start_mark)
            if not isinstance(key_node, ScalarNode):
                self.problem(kpos, f"a key must be a plain name, not {_kind_of_node(key_node)}; write `name: value`")
                continue
            # Keep the key as written: YAML 1.1 would turn `on:` into True and `1:` into 1.
            key = key_node.value
            if key in out:
                first = self.doc.keys[path + (key,)]
                self.problem(
                    kpos,
                    f"duplicate key '{key}' (first at line {first[0]}, column {first[1]}); "
                    "YAML would silently keep only one: remove or merge them",
                )
                continue
            self.doc.keys[path + (key,)] = kpos
            out[key] = self.walk(value_node, path + (key,))
        return out

    def _scalar(self, node: Node, path: PathKey) -> Any:
        # Any node that is neither a mapping nor a sequence: the composer makes only ScalarNodes here.
        self.doc.scalars[path] = node.value
        if node.tag == _TAG + "timestamp":
            # A date is never what a blueprint field means; keep what was written.
            value: Any = node.value
        elif node.tag in _SCALAR_TAGS:
            try:
                value = self.loader.construct_object(node, deep=True)
            except Exception:  # e.g. an integer with more digits than Python will parse
                self.problem(_pos(node.start_mark), f"cannot read the value {node.value[:40]!r}; quote it if it is text")
                self.doc.unreadable.add(path)
                return None
        else:
            self.problem(
                _pos(node.start_mark), f"YAML tag {_tag(node.tag)} is not supported; remove it (only plain values are allowed)"
            )
            self.doc.unreadable.add(path)
            return None
        if isinstance(value, str) and "$" in value:
            value = self._expand(value, node, path)
        return value

    def _expand(self, value: str, node: Node, path: PathKey) -> str:
        source = self.text[node.start_mark.index : node.end_mark.index]
        cursor = [0]

        def where(token: str) -> tuple[int, int]:
            at = source.find(token, cursor[0])
            if at < 0:  # written with escapes or folded: point at the value itself
                return _pos(node.start_mark)
            cursor[0] = at + len(token)
            return _line_col(self.text, node.start_mark.index + at)

        def substitute(match: re.Match[str]) -> str:
            token = match.group(0)
            name = match.group(1)
            if token == "$${":
                where(token)
                return "${"
            if name is None:
                self.problem(
                    where(token),
                    "malformed '${' in a value; write ${NAME} (letters, digits, underscore) for an environment "
                    "variable, or $${ for a literal ${",
                )
                self.doc.unreadable.add(path)
                return token
            pos = where(token)
            if name not in self.env:
                self.problem(
                    pos,
                    f"environment variable {name} is not set (referenced as ${{{name}}}); set it, "
                    f"or write $${{{name}}} for a literal ${{{name}}}",
                )
                self.doc.unreadable.add(path)
                return token
            return self.env[name]

        return _ENV_RE.sub(substitute, value)


def _tag(tag: str) -> str:
    return "!!" + tag[len(_TAG) :] if tag.startswith(_TAG) else tag


def _kind_of_node(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    return "a value"
