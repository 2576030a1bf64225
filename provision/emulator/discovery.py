"""Google's own API descriptions (the discovery documents bundled in google-api-python-client)
used to hold request bodies to the real schema: an unknown field or a wrong type is the same
400 INVALID_ARGUMENT that Google's front end answers. Tests reuse `problems` on responses.
"""
from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from pathlib import Path
from typing import Any

import googleapiclient  # for its bundled discovery documents only (importing it loads nothing heavy)

from provision.emulator.errors import ApiError, bad_request

PROTO_TYPES: dict[tuple[str | None, str | None], str] = {   # (schema type, format): proto type
    ("integer", "int32"): "TYPE_INT32", ("integer", "uint32"): "TYPE_UINT32",
    ("string", "int64"): "TYPE_INT64", ("string", "uint64"): "TYPE_UINT64",
    ("string", "byte"): "TYPE_BYTES", ("boolean", None): "TYPE_BOOL",
    ("number", "double"): "TYPE_DOUBLE", ("number", "float"): "TYPE_FLOAT"}


@functools.cache
def _documents_dir() -> Path:
    return Path(googleapiclient.__file__).parent / "discovery_cache" / "documents"


@functools.cache
def document(name: str) -> dict:
    """A discovery document by file stem, e.g. `healthcare.v1`."""
    return json.loads((_documents_dir() / f"{name}.json").read_text())


@functools.cache
def _methods(name: str) -> dict[str, dict]:
    out: dict[str, dict] = {}

    def walk(res: dict) -> None:
        for m in res.get("methods", {}).values():
            out[m["id"]] = m
        for sub in res.get("resources", {}).values():
            walk(sub)

    walk(document(name))
    return out


def method(doc: str, method_id: str) -> dict:
    """The discovery description of one method, e.g. ('cloudresourcemanager.v3', 'cloudresourcemanager.projects.create')."""
    return _methods(doc)[method_id]


def problems(doc: str, schema_ref: str, value: Any, root: str = "", *, strict: bool = False) -> list[tuple[str, str]]:
    """Every way `value` departs from the named schema: (field path, Google-style description).
    `root` is the field the value sits in (a request body's field, e.g. `dataset`).

    An enum field must hold one of its values, always. `strict` is for what Google writes (a
    response): proto3 JSON as Google's front end renders it, so an int64 is a string of digits,
    an int32 a JSON number, a double a number (or "NaN"/"Infinity"), and an `Any` (an operation's
    `metadata`, `response`) is checked against the message its `@type` names when a bundled
    discovery document of the same API describes it. Without `strict` (a request), Google's
    parser also takes an int64 as a number and an int32 as a string, so those pass."""
    out: list[tuple[str, str]] = []
    _check(document(doc)["schemas"], {"$ref": schema_ref}, value, root, out, _Mode(strict, doc))
    return out


def any_schema(doc: str, type_url: Any) -> tuple[dict, dict] | None:
    """(schemas, schema) of the message an Any's `@type` names, looked up in `doc`'s API (another
    version's document when the type names one); None for well-known and undescribed types."""
    return _Mode(True, doc).any_schema(type_url)


class _Mode:
    def __init__(self, strict: bool, doc: str):
        self.strict = strict
        self.doc = doc

    def any_schema(self, type_url: Any) -> tuple[dict, dict] | None:
        """(schemas, schema) of the message an Any's `@type` names, e.g.
        `type.googleapis.com/google.cloud.resourcemanager.v3.Project` -> cloudresourcemanager.v3 `Project`."""
        if not isinstance(type_url, str) or "/" not in type_url:
            return None
        full = type_url.rsplit("/", 1)[1]
        if full.startswith("google.protobuf."):
            return None   # a well-known type: its JSON form is {"@type", "value"}, no message fields
        parts = full.split(".")
        version = next((p for p in parts if re.fullmatch(r"v\d+((alpha|beta|p\d+beta)\d*)?", p)), None)
        family = self.doc.split(".", 1)[0]
        name = f"{family}.{version}" if version else self.doc
        if not (_documents_dir() / f"{name}.json").is_file():
            name = self.doc
        schemas = document(name)["schemas"]
        schema = schemas.get(parts[-1])
        return (schemas, schema) if schema else None


def body_field(request: dict) -> str:
    """The request-message field a method's JSON body fills, as Google names it in errors: the
    discovery `parameterName` if given; '' when the body is the whole request message (`body: "*"`,
    a `...Request` schema); else the snake_case of the schema (`DicomStore` -> `dicom_store`)."""
    if request.get("parameterName"):
        return request["parameterName"]
    ref = request.get("$ref", "")
    if ref.endswith("Request"):
        return ""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", ref).lower()


def enum_names(doc: str, method_id: str, body: Any) -> Any:
    """A request body sent with `$alt=json;enum-encoding=int` (what the REST gapic clients send)
    with every enum given as its number turned into its name, as Google's front end reads it: a
    number is the value at that position of the discovery `enum` list (proto order)."""
    req = method(doc, method_id).get("request")
    if req is None:
        return body
    schemas = document(doc)["schemas"]

    def walk(schema: dict, value: Any) -> Any:
        schema = schemas.get(schema["$ref"], {}) if "$ref" in schema else schema
        if "enum" in schema and isinstance(value, int) and not isinstance(value, bool):
            return schema["enum"][value] if 0 <= value < len(schema["enum"]) else value
        if isinstance(value, list) and "items" in schema:
            return [walk(schema["items"], v) for v in value]
        if isinstance(value, dict) and "properties" in schema:
            return {k: walk(schema["properties"][k], v) if k in schema["properties"] else v
                    for k, v in value.items()}
        if isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
            return {k: walk(schema["additionalProperties"], v) for k, v in value.items()}
        return value

    return walk({"$ref": req["$ref"]}, body)


def validate_request(doc: str, method_id: str, body: Any) -> None:
    """Raise the INVALID_ARGUMENT Google's front end gives for a body that breaks the method's request schema."""
    req = method(doc, method_id).get("request")
    if req is None:
        return
    # Cloud Storage's JSON API is not a proto front end: its messages name no request field.
    found = problems(doc, req["$ref"], body, "" if doc.startswith("storage.") else body_field(req))
    if found:
        raise ApiError("INVALID_ARGUMENT", found[0][1], [bad_request(found)])


# Query parameters every Google API accepts, beyond a method's own (the discovery document's
# top-level `parameters` list most of them; the `$` forms are what the REST gapic clients send).
STANDARD_QUERY = frozenset({"alt", "$alt", "prettyPrint", "$prettyPrint", "fields", "$fields", "key", "access_token",
                            "oauth_token", "upload_protocol", "uploadType", "callback", "$callback", "quotaUser",
                            "$.xgafv", "userProject", "userIp", "$userProject"})


def validate_query(doc: str, method_id: str, names: list[str]) -> None:
    """Raise Google's 400 for a query parameter the method's request message has no field for."""
    allowed = STANDARD_QUERY | set(document(doc).get("parameters", {})) | set(method(doc, method_id).get("parameters", {}))
    for name in names:
        if name not in allowed:
            message = (f'Invalid JSON payload received. Unknown name "{name}": Cannot bind query parameter. '
                       f"Field '{name}' could not be found in request message.")
            raise ApiError("INVALID_ARGUMENT", message,
                           [{"@type": "type.googleapis.com/google.rpc.BadRequest",
                             "fieldViolations": [{"description": message}]}])


def _check(schemas: dict, schema: dict, value: Any, path: str, out: list, mode: _Mode | None = None) -> None:
    if "$ref" in schema:
        schema = schemas[schema["$ref"]]
    kind, fmt = schema.get("type"), schema.get("format")
    if kind == "any" or value is None:
        return
    if kind == "object" or "properties" in schema:
        if not isinstance(value, dict):
            out.append((path, f"Invalid value at '{path or 'request'}' (TYPE_MESSAGE), {json.dumps(value)}"))
            return
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        if mode and mode.strict and props is None and (extra or {}).get("type") == "any" and "@type" in value:
            found = mode.any_schema(value["@type"])   # an Any: check the message it carries
            if found is not None:
                rest = {k: v for k, v in value.items() if k != "@type"}
                _check(found[0], found[1], rest, path, out, mode)
            return
        for key, sub in value.items():
            if props is not None and key in props:
                _check(schemas, props[key], sub, f"{path}.{key}" if path else key, out, mode)
            elif extra is not None:
                _check(schemas, extra, sub, f"{path}[{key!r}]", out, mode)
            elif props is not None:
                where = f" at '{path}'" if path else ""
                out.append((path, f'Invalid JSON payload received. Unknown name "{key}"{where}: Cannot find field.'))
        return
    if kind == "array":
        if not isinstance(value, list):
            out.append((path, f"Invalid value at '{path}' (TYPE_LIST), {json.dumps(value)}"))
            return
        for i, item in enumerate(value):
            _check(schemas, schema.get("items", {}), item, f"{path}[{i}]", out, mode)
        return
    strict = bool(mode and mode.strict)
    if not strict and "enum" in schema and _enum_number(schema, value) is not None:
        return   # an enum by its number: what gapic REST clients send (`$alt=json;enum-encoding=int`)
    if not _scalar_ok(kind, fmt, value, strict) or ("enum" in schema and value not in schema["enum"]):
        proto = PROTO_TYPES.get((kind, fmt), "TYPE_STRING" if kind == "string" else f"TYPE_{str(kind).upper()}")
        shown = json.dumps(value)
        if "enum" in schema and isinstance(value, str):
            proto = "TYPE_ENUM"
        out.append((path, f"Invalid value at '{path}' ({proto}), {shown}"))


def _enum_number(schema: dict, value: Any) -> str | None:
    """The enum value name a number stands for (discovery lists values in number order), else None."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(schema["enum"]):
        return schema["enum"][value]
    return None


def with_enum_names(doc: str, schema_ref: str, value: Any) -> Any:
    """`value` (a request body already checked) with every enum given by its number replaced by
    its name, so a handler sees the same body whichever encoding the client chose."""
    schemas = document(doc)["schemas"]

    def walk(schema: dict, v: Any) -> Any:
        if "$ref" in schema:
            schema = schemas[schema["$ref"]]
        if isinstance(v, dict) and "properties" in schema:
            props = schema["properties"]
            return {k: walk(props[k], x) if k in props else x for k, x in v.items()}
        if isinstance(v, dict) and isinstance(schema.get("additionalProperties"), dict):
            return {k: walk(schema["additionalProperties"], x) for k, x in v.items()}
        if isinstance(v, list) and "items" in schema:
            return [walk(schema["items"], x) for x in v]
        if "enum" in schema:
            name = _enum_number(schema, v)
            return v if name is None else name
        return v

    return walk({"$ref": schema_ref}, value)


def _scalar_ok(kind: str | None, fmt: str | None, value: Any, strict: bool = False) -> bool:
    if kind == "boolean":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind == "integer":
        if strict:
            return isinstance(value, int)
        return isinstance(value, int) or (isinstance(value, str) and value.lstrip("-").isdigit())
    if kind == "number":
        if strict:
            return isinstance(value, (int, float)) or value in ("NaN", "Infinity", "-Infinity")
        return isinstance(value, (int, float)) or isinstance(value, str)
    if kind == "string":
        if fmt in ("int64", "uint64"):
            digits = isinstance(value, str) and value.lstrip("-").isdigit()
            return digits if strict else digits or isinstance(value, int)
        if fmt == "byte":
            if not isinstance(value, str):
                return False
            try:
                base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_" if "-" in value or "_" in value else None, validate=True)
                return True
            except (binascii.Error, ValueError):
                return False
        return isinstance(value, str)
    return True



# Which discovery documents describe each API the emulator serves (by the route's `api`).
DOCUMENTS = {
    "cloudresourcemanager": ("cloudresourcemanager.v3", "cloudresourcemanager.v1"),
    "serviceusage": ("serviceusage.v1", "serviceusage.v1beta1"),
    "cloudbilling": ("cloudbilling.v1",),
    "healthcare": ("healthcare.v1",),
    "storage": ("storage.v1",),
    "logging": ("logging.v2",),
    "orgpolicy": ("orgpolicy.v2",),
    "cloudkms": ("cloudkms.v1",),
    "run": ("run.v2",),
    "iap": ("iap.v1",),
    "iam": ("iam.v1",),
    "cloudbuild": ("cloudbuild.v1",),
    "artifactregistry": ("artifactregistry.v1",),
}


@functools.cache
def _templates(doc: str) -> list[tuple[str, re.Pattern[str], dict]]:
    base = document(doc).get("servicePath", "")
    out = []
    for m in _methods(doc).values():
        paths = [base + m.get("flatPath", m["path"])]
        for proto in m.get("mediaUpload", {}).get("protocols", {}).values():
            paths.append(proto["path"].lstrip("/"))
        for path in paths:
            regex = "".join("[^/]+" if part.startswith("{") else re.escape(part)
                            for part in re.split(r"(\{[^}]+\})", path))
            out.append((m["httpMethod"], re.compile(f"^/{regex}$"), m))
    # Literal segments beat parameters: longer templates (fewer wildcards) first.
    out.sort(key=lambda t: (t[1].pattern.count("[^/]+"), -len(t[1].pattern)))
    return out


def method_for(api: str | None, http_method: str, path: str) -> tuple[str, dict] | None:
    """The discovery method (document, description) that a request stands for (any API when `api` is None)."""
    docs = DOCUMENTS.get(api, ()) if api else [d for ds in DOCUMENTS.values() for d in ds]
    for doc in docs:
        for verb, pattern, m in _templates(doc):
            if verb == http_method and pattern.match(path):
                return doc, m
    return None


def response_problems(api: str | None, http_method: str, path: str, body: Any) -> list[tuple[str, str]] | None:
    """How a JSON response body departs from its method's response schema; None when no method
    describes it (or it is a raw HttpBody, as DICOMweb answers are)."""
    found = method_for(api, http_method, path)
    if found is None:
        return None
    doc, m = found
    ref = (m.get("response") or {}).get("$ref")
    if ref in (None, "HttpBody"):
        return None
    return problems(doc, ref, body, strict=True)
