"""The `viewer.hosting` block of a blueprint (the hosted viewer on Cloud Run): what loads, its defaults,
and the starter's commented example. Its mistakes are in the invalid corpus (tests/blueprints/invalid/hosting-*)."""
from __future__ import annotations

import re

import pytest

from provision.blueprint.hosting import hosting_region
from provision.blueprint.load import BlueprintError, json_schema, load_blueprint
from provision.blueprint.models import Blueprint
from provision.blueprint.starter import starter_blueprint

BASE = """\
version: 1
project: {id: ohif-team-a}
dataset: {id: imaging, location: LOCATION}
dicom_stores:
  - id: primary
viewer:
  hosting:
"""


def load(tmp_path, location: str, hosting: str):
    path = tmp_path / "blueprint.yaml"
    path.write_text(BASE.replace("LOCATION", location) + hosting)
    return load_blueprint(path, env={})


def test_a_hosting_block_loads_with_its_defaults(tmp_path):
    bp = load(tmp_path, "europe-west4", "    members: [group:radiology@example.com]\n")
    h = bp.viewer.hosting
    assert (h.on, h.region, h.service, h.access, h.members) == (
        "cloud-run", None, "ohif-viewer", "iap", ["group:radiology@example.com"])
    assert (h.scaling.min_instances, h.scaling.max_instances) == (0, 3)
    assert hosting_region(h.model_dump(), bp.dataset.model_dump()) == "europe-west4"   # the dataset's region
    multi = load(tmp_path, "eu", "    region: europe-west1\n    members: [domain:example.com]\n")
    assert hosting_region(multi.viewer.hosting.model_dump(), multi.dataset.model_dump()) == "europe-west1"



def test_google_sign_in_loads_with_a_client_id_and_no_members(tmp_path):
    path = tmp_path / "blueprint.yaml"
    path.write_text(BASE.replace("LOCATION", "us-central1").replace(
        "viewer:\n", "viewer:\n  oauth_client_id: 123456789012-abc123def456.apps.googleusercontent.com\n")
        + "    access: google-sign-in\n")
    h = load_blueprint(path, env={}).viewer.hosting
    assert (h.access, h.members) == ("google-sign-in", [])


def test_a_multi_region_dataset_needs_a_region_and_says_which(tmp_path):
    with pytest.raises(BlueprintError) as err:
        load(tmp_path, "eu", "    members: [group:radiology@example.com]\n")
    (problem,) = err.value.problems
    assert re.search(r"blueprint\.yaml:7:3: viewer\.hosting: needs a region", problem)
    assert "region: europe-west4" in problem


def test_built_in_python_the_same_rules_apply():
    with pytest.raises(ValueError, match="names no members"):
        Blueprint(version=1, project={"id": "ohif-team-a"}, dataset={"id": "d", "location": "us-central1"},
                  dicom_stores=[{"id": "s"}], viewer={"hosting": {"access": "iap"}})


def test_the_starter_shows_hosting_commented_and_it_validates_uncommented(tmp_path):
    text = starter_blueprint()
    assert "  # hosting:" in text and "#   access: iap" in text
    block = re.search(r"^  # hosting:.*?(?=^\S|^  [a-z])", text, re.S | re.M).group(0)
    opened = "\n".join(line.replace("  # ", "  ", 1) if not line.lstrip("# ").startswith("(") else ""
                       for line in block.splitlines())
    path = tmp_path / "blueprint.yaml"
    path.write_text(text.replace(block, opened + "\n"))
    bp = load_blueprint(path, env={})
    assert bp.viewer.hosting.members == ["group:imaging-team@example.com"] and bp.viewer.hosting.region == "us-central1"


def test_the_schema_describes_hosting():
    schema = json_schema()
    hosting = schema["$defs"]["Hosting"]
    assert hosting["additionalProperties"] is False
    assert hosting["properties"]["access"]["enum"] == ["iap", "google-sign-in"]
    assert re.fullmatch(hosting["properties"]["service"]["pattern"], "ohif-viewer")
    assert not re.fullmatch(hosting["properties"]["service"]["pattern"], "Ohif_Viewer")
    region = hosting["properties"]["region"]["pattern"]   # beside anyOf, as the other optional fields have it
    assert re.fullmatch(region, "us-central1") and not re.fullmatch(region, "us")


@pytest.mark.usefixtures("small_ohif_dist")
def test_plan_of_a_blueprint_with_hosting_deploys_it(emulator, tmp_path):
    """A blueprint with hosting plans the hosted viewer's deploy (no "not deployed yet" note any more)."""
    from provision.gcp.target import Target
    from provision.running import lifecycle

    path = tmp_path / "blueprint.yaml"
    path.write_text(BASE.replace("LOCATION", "us-central1").replace(
        "project: {id: ohif-team-a}", "project: {id: ohif-team-a, billing_account: 012345-6789AB-CDEF01}")
        + "    members: [group:radiology@example.com]\n")
    bp = load_blueprint(path, env={})
    plan = lifecycle.plan(bp, Target(emulator=emulator.url))
    assert not any("not deploy" in n for n in plan.notes)
    assert plan.step("viewer-service").action == "create" and plan.step("viewer-build").action == "create"
