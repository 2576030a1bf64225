"""Loading a blueprint file: every problem of all three layers (see `provision.blueprint.models`),
each as `FILE:LINE:COL: what is wrong; what would be valid`; and the blueprint's JSON Schema."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Mapping, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from provision.blueprint.models import Blueprint
from provision.blueprint.rules import _AT_KEY, _cross_checks, _dotted
from provision.blueprint.naming import closest
from provision.blueprint.yamlpos import Document, PathKey, Problem, read_yaml
from provision.errors import BlueprintError

__all__ = ["json_schema", "load_blueprint"]


def _unwrap(tp: Any) -> Any:
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin is Union or (origin is not None and type(tp).__name__ == "UnionType"):
            args = [a for a in get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _key_of(name: str, field: Any) -> str:
    return field.alias or name


def _model_at(path: PathKey) -> type[BaseModel] | None:
    """The model class that validates the mapping at `path` (None if not a model)."""
    tp: Any = Blueprint
    for part in path:
        tp = _unwrap(tp)
        if isinstance(part, int):
            if get_origin(tp) is not list:
                return None
            tp = get_args(tp)[0]
        elif _is_model(tp):
            fields = {_key_of(n, f): f for n, f in tp.model_fields.items()}
            if part not in fields:
                return None
            tp = fields[part].annotation
        else:
            return None
    tp = _unwrap(tp)
    return tp if _is_model(tp) else None


def _has_default(path: PathKey) -> bool:
    model = _model_at(path[:-1])
    if model is None or not isinstance(path[-1], str):
        return False
    fields = {_key_of(n, f): f for n, f in model.model_fields.items()}
    return path[-1] in fields and not fields[path[-1]].is_required()


def _valid_keys(model: type[BaseModel]) -> list[str]:
    return [_key_of(n, f) for n, f in model.model_fields.items()]


def _describe_input(value: Any, source: str | None) -> str:
    if value is None:
        return "nothing (the value is empty)"
    if isinstance(value, bool):
        return f"the boolean {source or str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {source or value}"
    if isinstance(value, str):
        return f"the text {value!r}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


_EXPECTED = {
    "string_type": "text",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "float_type": "a number",
    "dict_type": "a mapping (key: value lines)",
    "model_type": "a mapping (key: value lines)",
    "model_attributes_type": "a mapping (key: value lines)",
    "list_type": "a list (one '- ' item per line)",
    "path_type": "a path",
}


def _example_for(parent: PathKey, key: str) -> str | None:
    model = _model_at(parent)
    if model is None:
        return None
    for name, field in model.model_fields.items():
        if _key_of(name, field) == key and field.examples:
            text = yaml.safe_dump(field.examples[0], default_flow_style=True, width=1000).strip()
            return f"{key}: {text.removesuffix('...').strip()}"
    return None


def _explain(err: Mapping[str, Any], doc: Document) -> tuple[tuple[int, int], str]:
    """Turn one pydantic error into (position, message) for the blueprint's author."""
    loc = tuple(err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        model = _model_at(loc[:-1])
        valid = _valid_keys(model) if model else []
        near = closest(key, valid)
        where = "at the top level" if len(loc) == 1 else f"in {_dotted(loc[:-1])}"
        hint = f"; did you mean '{near}'? Valid keys" if near else "; valid keys"
        return doc.key_pos(loc), f"unknown key '{key}' {where}{hint}: {', '.join(valid)}"
    if kind == "missing":
        key = str(loc[-1])
        parent = loc[:-1]
        example = _example_for(parent, key)
        add = f"add it, e.g. `{example}`" if example else "add it"
        return doc.value_pos(parent), f"{_dotted(parent)} is missing the required key '{key}'; {add}"
    if loc and loc[-1] == "[key]":
        return doc.key_pos(loc[:-1]), f"{_dotted(loc[:-2])}: {err.get('ctx', {}).get('detail') or err['msg']}"
    pos = doc.value_pos(loc)
    subject = _dotted(loc)
    if kind == "blueprint":
        return pos, f"{subject}: {err['ctx']['detail']}"
    if kind == "literal_error" and loc == ("version",):
        given = doc.scalars.get(loc, repr(err.get("input")))
        return pos, f"version {given} is not supported: this provision understands version 1; write `version: 1`"
    if kind in _EXPECTED:
        value = err.get("input")
        source = doc.scalars.get(loc)
        msg = f"{subject}: expected {_EXPECTED[kind]}, got {_describe_input(value, source)}"
        if kind == "string_type" and isinstance(value, (bool, int, float)):
            msg += f"; quote it if you mean the text: \"{source or value}\""
        elif kind in ("model_type", "dict_type") and value is None and _has_default(loc):
            msg += "; remove the key to use the defaults, or fill it in"
        return pos, msg
    if kind == "too_short":
        if loc == ("dicom_stores",):
            return pos, "dicom_stores: needs at least one DICOM store; add one, e.g. `- id: primary`"
        if loc[-1:] == ("roles",):
            return pos, f"{subject}: needs at least one role, e.g. [roles/healthcare.dicomViewer]"
        return pos, f"{subject}: must not be empty"
    if kind == "greater_than_equal":
        return pos, f"{subject}: {err['input']} is too small; it must be {err['ctx']['ge']} or more (it is a count)"
    msg = str(err["msg"]).removeprefix("Value error, ")
    return pos, f"{subject}: {msg}"


def _covered(loc: PathKey, bad: set[PathKey]) -> bool:
    return any(loc[: len(b)] == b for b in bad)


# --------------------------------------------------------------------------- loading


def load_blueprint(path: Path | str, env: Mapping[str, str] | None = None) -> Blueprint:
    """Load and validate a blueprint file.

    `${NAME}` in string values is replaced from `env` (default: `os.environ`); `$${` is a
    literal `${`. Relative paths in the blueprint are resolved against the file's
    directory. Nothing here touches the network.

    Raises `BlueprintError` carrying every problem found, each formatted as
    `FILE:LINE:COL: what is wrong; what would be valid` (or `FILE: ...` when the file
    itself cannot be read), sorted by position.
    """
    shown = str(path)
    file = Path(path)
    doc = read_yaml(file, env)
    problems = list(doc.problems)
    blueprint: Blueprint | None = None
    if doc.data is not None and not isinstance(doc.data, dict):
        kind = "a list" if isinstance(doc.data, list) else f"a single value ({doc.data!r:.40})"
        problems.append(
            Problem(*doc.value_pos(()), f"the top level must be a mapping of keys (version, project, dataset, "
                                        f"dicom_stores, ...), not {kind}; run `provision init` for a starter")
        )
    elif isinstance(doc.data, dict):
        context = {"base_dir": file.absolute().parent, "loading": True}
        try:
            blueprint = Blueprint.model_validate(doc.data, context=context, by_alias=True, by_name=False)
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                if err["type"] != "extra_forbidden" and _covered(tuple(err["loc"]), doc.unreadable):
                    continue  # already reported by the reader (e.g. an unset variable)
                (line, col), message = _explain(err, doc)
                problems.append(Problem(line, col, message))
        for where, message in _cross_checks(doc.data):
            pos = doc.key_pos(where) if where in _AT_KEY else doc.value_pos(where)
            problems.append(Problem(*pos, f"{_dotted(where)}: {message}"))
    if problems:
        raise BlueprintError(_format(shown, problems))
    assert blueprint is not None
    blueprint._source = Path(os.path.normpath(file.absolute()))
    blueprint._positions = dict(doc.values)
    return blueprint


MAX_PROBLEMS = 100


def _printable(text: str) -> str:
    # Values are echoed back in messages; a control or bidi-override character must not
    # reach the terminal as itself.
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _format(shown: str, problems: list[Problem]) -> list[str]:
    ordered = sorted(set(problems), key=lambda p: (p.line or 0, p.col or 0, p.message))
    shown = _printable(shown)
    lines = [
        f"{shown}: {_printable(p.message)}" if p.line is None else f"{shown}:{p.line}:{p.col}: {_printable(p.message)}"
        for p in ordered
    ]
    if len(lines) > MAX_PROBLEMS:
        lines = lines[:MAX_PROBLEMS] + [f"{shown}: ... and {len(lines) - MAX_PROBLEMS} more problems"]
    return lines


def json_schema() -> dict[str, Any]:
    """The blueprint's JSON Schema (YAML key names), for editors to complete and check blueprints."""
    schema = Blueprint.model_json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "provision blueprint (version 1)", **schema}
