"""The `--json` documents and their published schema have one source (provision.running.documents):
a field a document carries that the schema does not describe is refused, every object in the
schema is closed, and what passes is printed exactly as its builder made it."""
from __future__ import annotations

import dataclasses
import json

import jsonschema
import pydantic
import pytest

from provision.checks.browser import BrowserReport
from provision.checks.dicomweb import Check, SmokeReport
from provision.planning.plan import Plan
from provision.resources.steps import Step, field_change
from provision.running import output
from provision.running.smoke import BlueprintSmoke

VALIDATOR = jsonschema.Draft202012Validator(output.schema())


def _filled(cls):
    """An instance of dataclass `cls` with every field set to a value of its type that is not its default."""
    samples = {"str": "x", "int": 7, "float": 1.5, "bool": True, "list[str]": ["a"],
               "dict[str, float]": {"total": 2.25}, "dict[str, Any]": {"k": [1, {"n": None}]},
               "int | None": 3, "str | None": "y", "bool | None": False}
    return cls(**{f.name: samples[f.type] for f in dataclasses.fields(cls) if f.init and f.repr})


def _smoke() -> BlueprintSmoke:
    report = SmokeReport("https://dicomweb.example/v1", "http://localhost:3000", 1,
                         [Check("studies", True, 12.5, "1 study", "GET https://dicomweb.example/v1/studies", 200),
                          Check("series", False, 0, "not run: studies failed", skipped=True)], studies_found=1)
    return BlueprintSmoke(stores={"primary": report}, browser=_filled(BrowserReport),
                          browser_sources={"other": BrowserReport(problems=["blank canvas"])},
                          browser_sources_not_run={"third": "no study"}, as_member="group:a@example.com")


def _plan_doc() -> dict:
    step = Step("store:primary", "dicom_store", "projects/p/.../dicomStores/primary", "update", ["labels"],
                deps=["dataset"], fields=[field_change("labels", {"a": "1"}, None)])
    return Plan("p", "emulator", [step], notes=["a note"]).to_json()


def _results(**payload) -> list[dict]:
    return [output.result("p.yaml", "p", **payload)]


def test_every_field_of_the_report_classes_is_in_the_schema():
    """A field added to a smoke report (all of its fields set here, none left at its default) is a
    field the models must name, or this document is refused."""
    doc = output.envelope("smoke", _results(smoke=_smoke().to_dict()), 0)
    assert not list(VALIDATOR.iter_errors(doc))
    browser = doc["results"][0]["smoke"]["browser"]
    assert set(browser) == {f.name for f in dataclasses.fields(BrowserReport)} | {"ok"}


def test_a_document_field_the_schema_does_not_describe_is_refused():
    plan = _plan_doc()
    plan["steps"][0]["owner"] = "someone"
    with pytest.raises(pydantic.ValidationError, match=r"results\.0\.plan\.steps\.0\.owner"):
        output.envelope("plan", _results(plan=plan), 0)
    with pytest.raises(pydantic.ValidationError, match=r"results\.0\.surprise"):
        output.envelope("plan", _results(plan=_plan_doc(), surprise=1), 0)


def test_a_value_of_the_wrong_type_is_refused_not_converted():
    plan = _plan_doc()
    plan["changes"] = "1"
    with pytest.raises(pydantic.ValidationError, match="changes"):
        output.envelope("plan", _results(plan=plan), 0)


def test_documents_are_printed_exactly_as_built():
    """Passing through the models changes nothing: no field filled in, no int made a float."""
    for command, payload in (("plan", {"plan": _plan_doc()}), ("smoke", {"smoke": _smoke().to_dict()}),
                             ("validate", {"validate": {"valid": True, "dicom_stores": 2}})):
        built = {"format": output.FORMAT, "command": command, "version": output.__version__, "ok": True,
                 "exit_code": 0, "error": None, "results": _results(**payload)}
        printed = output.envelope(command, _results(**payload), 0)
        assert json.dumps(printed, sort_keys=True) == json.dumps(built, sort_keys=True)
        assert not list(VALIDATOR.iter_errors(printed))


def test_every_object_in_the_schema_is_closed():
    """additionalProperties false on every object with properties: the schema names every field a
    document may carry (maps keyed by store or source name are the only open objects)."""
    schema = output.schema()
    objects = [(name, d) for name, d in schema["$defs"].items()] + [("Envelope", schema)]
    assert len(objects) > 20
    open_ = [name for name, d in objects if d.get("type") == "object" and d.get("additionalProperties") is not False]
    assert not open_


def test_a_result_without_its_commands_payload_fails_the_schema_unless_it_failed():
    doc = output.envelope("plan", _results(), 0)
    assert list(VALIDATOR.iter_errors(doc))
    assert not list(VALIDATOR.iter_errors(output.envelope("plan", [output.result("p.yaml", "p", ok=False,
                                                                                     err="boom")], 1)))
