"""What `--json` prints: exactly one document per run, success or failure, and its JSON Schema.

Every command has the same envelope, for one blueprint or many:

    {"format": "provision-output/1", "command": "plan", "version": "0.1.0",
     "ok": false, "exit_code": 1,
     "error": {"kind": "runtime", "message": "...", "problems": []} | null,
     "results": [{"blueprint": "team-a.yaml", "project": "ohif-team-a", "ok": true, "error": null,
                  "plan": {...}}, ...]}

`error` is the failure of the run as a whole (an invalid blueprint, a usage error, an
interrupt); a blueprint's own failure is in its result. Each result carries one payload named
after the command (`apply` results also carry `config_path`, `smoke` and `notes`).

The document models (provision.running.documents) are the one source of both: `envelope()`
passes every document through them on its way out (a field no model names is refused, so it
cannot be missing from the schema), and `provision schema --output` prints their JSON Schema.
"""
from __future__ import annotations

from functools import cache
from typing import Any

from provision import __version__
from provision.running.documents import COMMANDS, ERROR_KINDS, FORMAT, Envelope

__all__ = ["COMMANDS", "ERROR_KINDS", "FORMAT", "envelope", "error", "result", "schema"]


def error(kind: str, message: str, problems: list[str] | None = None) -> dict[str, Any]:
    """The run's error object (`kind` one of ERROR_KINDS)."""
    return {"kind": kind, "message": message, "problems": list(problems or [])}


def result(blueprint: str | None, project: str | None, *, ok: bool = True, err: str | None = None,
           **payload: Any) -> dict[str, Any]:
    """One blueprint's result: who, whether it worked, and the command's payload."""
    return {"blueprint": blueprint, "project": project, "ok": ok, "error": err, **payload}


def envelope(command: str, results: list[dict[str, Any]], exit_code: int,
             err: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run's one document, checked against the document models and serialised by them: a
    field they do not name raises (pydantic's ValidationError names where), so every field printed
    is in the schema. Fields a builder left out stay out (the documents are what they were)."""
    doc = {"format": FORMAT, "command": command, "version": __version__,
           "ok": exit_code in (0, 3) and err is None and all(r["ok"] for r in results),
           "exit_code": exit_code, "error": err, "results": results}
    return Envelope.model_validate(doc).model_dump(mode="json", by_alias=True, exclude_unset=True)


@cache
def schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of every `--json` document: what `provision schema --output` prints."""
    return Envelope.model_json_schema(by_alias=True)
