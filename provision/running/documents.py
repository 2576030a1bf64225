"""The `--json` documents as pydantic models: the one source of what provision prints and of
the schema it publishes (`provision schema --output`, draft 2020-12).

Every model is closed (`extra="forbid"`: additionalProperties false in the schema) and strict
(no coercion: a document is printed as built or refused). A field that some documents carry and
others leave out is `_absent()`: optional, not nullable, and never filled in, so the documents
stay byte for byte what their builders (the `to_json`/`to_dict` methods) make.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Union, get_args

from pydantic import BaseModel, ConfigDict, Field, JsonValue, WithJsonSchema

FORMAT = "provision-output/1"
Command = Literal["validate", "plan", "apply", "status", "destroy", "config", "smoke", "audit"]
ErrorKind = Literal["invalid_blueprint", "usage", "runtime", "interrupted"]
COMMANDS: tuple[str, ...] = get_args(Command)
ERROR_KINDS: tuple[str, ...] = get_args(ErrorKind)

Action = Literal["create", "update", "delete", "replace", "no-op", "keep"]
StepStatus = Literal["pending", "running", "done", "failed", "skipped"]
State = Literal["ok", "missing", "drift", "extra", "kept", "pending_deletion"]
# A JSON number printed as built: an int stays an int (pydantic would make 0 into 0.0).
Number = Annotated[Union[int, float], WithJsonSchema({"type": "number"})]


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def _absent(description: str | None = None, alias: str | None = None) -> Any:
    """A field some documents leave out: optional in the schema, never null, never filled in."""
    return Field(default=None, description=description, alias=alias, json_schema_extra=_no_default)


class Doc(BaseModel):
    """A closed, strict document object."""
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


# ---------------------------------------------------------------------------- plan, apply, destroy
class FieldChange(Doc):
    field: str
    before: Any = Field(description="the live value (null: absent)")
    after: Any = Field(description="the blueprint's value (null: absent)")


class Step(Doc):
    id: str
    kind: str
    resource: str
    action: Action
    changes: list[str]
    fields: list[FieldChange]
    drift: list[str] = Field(description="what differs that apply will not change")
    depends_on: list[str]
    status: StepStatus = _absent("destroy: how the step ended")
    message: str = _absent("destroy: what happened")


class Plan(Doc):
    project: str
    target: str
    changes: int
    summary: str
    steps: list[Step]
    notes: list[str]


class StepResult(Doc):
    id: str
    action: Action
    status: StepStatus
    elapsed_s: Number
    message: str
    retries: int
    limited_by: list[str] = Field(description="quotas that made the step wait")


class StoreOutput(Doc):
    name: str
    dicomweb: str = Field(description="the store's DICOMweb root")


class ApplyOutputs(Doc):
    project_id: str
    dataset: str
    dicom_stores: dict[str, StoreOutput]
    project_number: str = _absent()
    service_agent: str = _absent("the Cloud Healthcare service agent's email")
    viewer_url: str = _absent("the hosted viewer's URL")
    viewer_local_url: str = _absent("on an emulator on loopback: where a browser opens the hosted viewer")


class Stopped(Doc):
    """Where an interrupted apply stopped."""
    finished: list[str]
    in_flight: list[str] = Field(description="stopped at their next wait; Google may still finish them")
    skipped: list[str]


class Apply(Doc):
    project: str
    target: str
    ok: bool
    changed: bool
    summary: str
    elapsed_s: Number
    retries: int
    steps: list[StepResult]
    outputs: ApplyOutputs
    notes: list[str]
    error: str | None
    interrupted: Stopped = _absent("only when Ctrl-C stopped the run")


class Destroy(Doc):
    project: str
    target: str
    deleted: list[Step]
    kept: list[str]


# ---------------------------------------------------------------------------- status, audit, ...
class StatusResource(Doc):
    id: str
    kind: str
    resource: str
    state: State
    details: list[str]


class StatusOutputs(Doc):
    viewer_url: str = _absent("the hosted viewer's URL")
    viewer_local_url: str = _absent("on an emulator on loopback: where a browser opens the hosted viewer")


class Status(Doc):
    project: str
    target: str
    in_sync: bool
    resources: list[StatusResource]
    notes: list[str]
    outputs: StatusOutputs


class AuditRow(Doc):
    principal: str
    action: str
    service: str
    store: str
    study: str | None
    count: int
    first: str
    last: str


class Audit(Doc):
    project: str
    target: str
    since: str
    entries: int
    rows: list[AuditRow]
    notes: list[str]


class Validate(Doc):
    valid: bool
    dicom_stores: int


class Config(Doc):
    path: str
    format: Literal["js", "json"]


# ---------------------------------------------------------------------------- smoke
class Check(Doc):
    name: str
    ok: bool
    ms: Number
    detail: str
    request: str
    status: int | None
    skipped: bool


class DicomwebSmoke(Doc):
    ok: bool
    root: str
    origin: str
    min_studies: int
    studies_found: int | None
    total_ms: Number
    checks: list[Check]


class Browser(Doc):
    ok: bool
    viewer_url: str
    problems: list[str]
    timings: dict[str, Number] = Field(description="seconds")
    screenshots: list[str]
    studies_expected: list[str]
    studies_shown: list[str]
    canvas: dict[str, Any]
    page_errors: list[str]
    external_requests: list[str]
    failed_requests: list[str]
    console_errors: list[str]
    mode: str = Field(description="emulator | google | google-via-emulator | hosted | hosted-google-sign-in")
    config_sha256: str
    google_requests: list[str]
    stubbed_requests: list[str]
    dicomweb_requests: int
    dicomweb_unauthorized: list[str]
    sign_in: dict[str, Any]
    dialog: dict[str, Any]
    notes: list[str]
    data_source: str
    cross_origin_isolated: bool | None = Field(description="the viewer page's self.crossOriginIsolated (null: not read)")
    routed_requests: list[str]
    bearer_requests: list[str]
    token_in_url: list[str]


class Smoke(Doc):
    ok: bool
    as_member: str | None = Field(alias="as", description="whose access was checked (null: the caller's)")
    dicomweb: dict[str, DicomwebSmoke]
    browser: Browser | None
    browser_not_run: str = _absent("why the browser smoke asked for could not run")
    browser_sources: dict[str, Browser] = _absent()
    browser_sources_not_run: dict[str, str] = _absent()


# ---------------------------------------------------------------------------- the envelope
class RunError(Doc):
    kind: ErrorKind
    message: str
    problems: list[str]


class Result(Doc):
    """One blueprint's result; it carries the payload named after the command."""
    blueprint: str | None
    project: str | None
    ok: bool
    error: str | None
    validate_: Validate = _absent(alias="validate")   # `validate` would shadow BaseModel.validate
    plan: Plan = _absent()
    apply: Apply | None = _absent()
    status: Status = _absent()
    destroy: Destroy = _absent()
    config: Config = _absent()
    smoke: Smoke | None = _absent()
    audit: Audit = _absent()
    config_path: str | None = _absent("apply: the OHIF configuration written")
    oauth_checklist: str = _absent("apply of a hosted google-sign-in viewer: the console steps for its OAuth "
                                   "client, at the service's exact origin")
    notes: list[str] = _absent()


def _payload_required() -> list[JsonValue]:
    """A result of command C that succeeded carries the payload C."""
    return [{"if": {"properties": {"command": {"const": c}}},
             "then": {"properties": {"results": {"items": {"anyOf": [
                 {"required": [c]}, {"properties": {"ok": {"const": False}}}]}}}}} for c in COMMANDS]


class Envelope(Doc):
    model_config = ConfigDict(title="provision --json output", json_schema_extra={
        "$schema": "https://json-schema.org/draft/2020-12/schema", "allOf": _payload_required()})

    format: Literal["provision-output/1"]
    command: Command
    version: str
    ok: bool
    exit_code: Literal[0, 1, 2, 3, 130]
    error: RunError | None
    results: list[Result]
