"""What `--json` prints: exactly one document per run, success or failure, and its JSON Schema.

Every command has the same envelope, for one blueprint or many:

    {"format": "provision-output/1", "command": "plan", "version": "0.1.0",
     "ok": false, "exit_code": 1,
     "error": {"kind": "runtime", "message": "...", "problems": []} | null,
     "results": [{"blueprint": "team-a.yaml", "project": "ohif-team-a", "ok": true, "error": null,
                  "plan": {...}}, ...]}

`error` is the failure of the run as a whole (an invalid blueprint, a usage error, an
interrupt); a blueprint's own failure is in its result. Each result carries one payload named
after the command (`apply` results also carry `config` and `smoke`). `provision schema
--output` prints SCHEMA; the tests validate every `--json` document against it.
"""
from __future__ import annotations

from typing import Any

from provision import __version__

FORMAT = "provision-output/1"
ERROR_KINDS = ("invalid_blueprint", "usage", "runtime", "interrupted")
ACTIONS = ("create", "update", "delete", "replace", "no-op", "keep")
STATES = ("ok", "missing", "drift", "extra", "kept", "pending_deletion")
COMMANDS = ("validate", "plan", "apply", "status", "destroy", "config", "smoke", "audit")


def error(kind: str, message: str, problems: list[str] | None = None) -> dict[str, Any]:
    """The run's error object (`kind` one of ERROR_KINDS)."""
    return {"kind": kind, "message": message, "problems": list(problems or [])}


def result(blueprint: str | None, project: str | None, *, ok: bool = True, err: str | None = None,
           **payload: Any) -> dict[str, Any]:
    """One blueprint's result: who, whether it worked, and the command's payload."""
    return {"blueprint": blueprint, "project": project, "ok": ok, "error": err, **payload}


def envelope(command: str, results: list[dict[str, Any]], exit_code: int, err: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"format": FORMAT, "command": command, "version": __version__,
            "ok": exit_code in (0, 3) and err is None and all(r["ok"] for r in results),
            "exit_code": exit_code, "error": err, "results": results}


# ---------------------------------------------------------------------------- schema
_STR_OR_NULL = {"type": ["string", "null"]}
_STEP = {
    "type": "object",
    "required": ["id", "kind", "resource", "action", "changes", "fields", "drift", "depends_on"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string"},
        "kind": {"type": "string"},
        "resource": {"type": "string"},
        "action": {"enum": list(ACTIONS)},
        "changes": {"type": "array", "items": {"type": "string"}},
        "fields": {"type": "array", "items": {
            "type": "object", "required": ["field", "before", "after"], "additionalProperties": False,
            "properties": {"field": {"type": "string"}, "before": {}, "after": {}}}},
        "drift": {"type": "array", "items": {"type": "string"}},
        "depends_on": {"type": "array", "items": {"type": "string"}},
        "status": {"enum": ["pending", "running", "done", "failed", "skipped"]},
        "message": {"type": "string"},
    },
}
_PLAN = {
    "type": "object",
    "required": ["project", "target", "changes", "summary", "steps", "notes"],
    "properties": {
        "project": {"type": "string"}, "target": {"type": "string"}, "changes": {"type": "integer"},
        "summary": {"type": "string"}, "steps": {"type": "array", "items": _STEP},
        "notes": {"type": "array", "items": {"type": "string"}},
    },
}
_STEP_RESULT = {
    "type": "object", "required": ["id", "action", "status", "elapsed_s", "message", "retries", "limited_by"],
    "properties": {"id": {"type": "string"}, "action": {"enum": list(ACTIONS)},
                   "limited_by": {"type": "array", "items": {"type": "string"}},
                   "status": {"enum": ["pending", "running", "done", "failed", "skipped"]},
                   "elapsed_s": {"type": "number"}, "message": {"type": "string"}, "retries": {"type": "integer"}},
}
_PAYLOADS = {
    "validate": {"type": "object", "required": ["valid", "dicom_stores"],
                 "properties": {"valid": {"type": "boolean"}, "dicom_stores": {"type": "integer"}}},
    "plan": _PLAN,
    "apply": {"type": ["object", "null"], "required": ["changed", "summary", "steps", "outputs"],
              "properties": {"changed": {"type": "boolean"}, "summary": {"type": "string"},
                             "steps": {"type": "array", "items": _STEP_RESULT},
                             "outputs": {"type": "object", "properties": {
                                 "viewer_url": {"type": "string", "description": "the hosted viewer's URL"}}}}},
    "status": {"type": "object", "required": ["in_sync", "resources", "notes"],
               "properties": {"in_sync": {"type": "boolean"},
                              "outputs": {"type": "object", "properties": {"viewer_url": {"type": "string"}}},
                              "resources": {"type": "array", "items": {
                   "type": "object", "required": ["id", "kind", "resource", "state", "details"],
                   "properties": {"state": {"enum": list(STATES)}}}}}},
    "destroy": {"type": "object", "required": ["deleted", "kept"],
                "properties": {"deleted": {"type": "array", "items": _STEP},
                               "kept": {"type": "array", "items": {"type": "string"}}}},
    "config": {"type": "object", "required": ["path", "format"],
               "properties": {"path": {"type": "string"}, "format": {"enum": ["js", "json"]}}},
    "smoke": {"type": ["object", "null"], "required": ["ok"], "properties": {"ok": {"type": "boolean"},
                                                                          "as": _STR_OR_NULL}},
    "audit": {"type": "object", "required": ["project", "target", "since", "entries", "rows", "notes"],
              "properties": {"since": {"type": "string"}, "entries": {"type": "integer"},
                             "notes": {"type": "array", "items": {"type": "string"}},
                             "rows": {"type": "array", "items": {
                                 "type": "object", "additionalProperties": False,
                                 "required": ["principal", "action", "service", "store", "study", "count", "first",
                                              "last"],
                                 "properties": {"principal": {"type": "string"}, "action": {"type": "string"},
                                                "service": {"type": "string"}, "store": {"type": "string"},
                                                "study": _STR_OR_NULL, "count": {"type": "integer"},
                                                "first": {"type": "string"}, "last": {"type": "string"}}}}}},
}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "provision --json output",
    "type": "object",
    "required": ["format", "command", "version", "ok", "exit_code", "error", "results"],
    "additionalProperties": False,
    "properties": {
        "format": {"const": FORMAT},
        "command": {"enum": list(COMMANDS)},
        "version": {"type": "string"},
        "ok": {"type": "boolean"},
        "exit_code": {"enum": [0, 1, 2, 3, 130]},
        "error": {"oneOf": [{"type": "null"}, {
            "type": "object", "required": ["kind", "message", "problems"], "additionalProperties": False,
            "properties": {"kind": {"enum": list(ERROR_KINDS)}, "message": {"type": "string"},
                           "problems": {"type": "array", "items": {"type": "string"}}}}]},
        "results": {"type": "array", "items": {
            "type": "object", "required": ["blueprint", "project", "ok", "error"],
            "properties": {"blueprint": _STR_OR_NULL, "project": _STR_OR_NULL, "ok": {"type": "boolean"},
                           "error": _STR_OR_NULL, **_PAYLOADS,
                           "config_path": _STR_OR_NULL, "notes": {"type": "array", "items": {"type": "string"}}},
        }},
    },
    "allOf": [{"if": {"properties": {"command": {"const": c}}},
               "then": {"properties": {"results": {"items": {"anyOf": [
                   {"required": [c]}, {"properties": {"ok": {"const": False}}}]}}}}} for c in COMMANDS],
}
