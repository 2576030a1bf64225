"""plan and status: reads only, and drift named resource by resource."""
from __future__ import annotations

import pytest

from provision.running import lifecycle
from provision.errors import ProvisionError
from provision.gcp.context import Ctx
from provision.gcp.target import Target
from provision.resources import iam, project
from test_apply_support import blueprint_dict, load, records, write_dicom, writes


def test_status_reports_drift_then_apply_repairs_it(emulator_factory, tmp_path):
    rec = tmp_path / "rec.jsonl"
    emu = emulator_factory(record=rec)
    data = tmp_path / "data"
    write_dicom(data, studies=1)
    target = Target(emulator=emu.url)
    bp = load(tmp_path, blueprint_dict("ohif-status", data, smoke={"min_studies": 1}))
    before = lifecycle.status(bp, target)
    assert not before.in_sync and {r["state"] for r in before.resources} == {"missing"}
    result = lifecycle.apply(bp, target)
    assert lifecycle.status(bp, target).in_sync

    # Drift made by others: a label changed, a store grant removed, a new local file.
    other = Ctx(Target(emulator=emu.url))
    live = project.read(other, bp.project.id)
    spec = type("S", (), {"id": bp.project.id, "labels": {"team": "b"}, "display_name": None})()
    project.update(other, spec, live)
    store = result.outputs["dicom_stores"]["primary"]["name"]
    iam.remove(other, iam.dicom_store_io(other, store), [("roles/healthcare.dicomViewer", "group:radiology@example.com")])
    write_dicom(data / "more", studies=2)   # one more study (the CT is the same as before, the MR is new)

    n = len(records(rec))
    report = lifecycle.status(bp, target)
    assert writes(records(rec)[n:]) == []
    states = {r["id"]: r for r in report.resources}
    assert states["project"]["state"] == "drift" and states["project"]["details"] == ["label team=a (was b)"]
    assert states["store-iam:primary"]["state"] == "drift"
    assert states["store-iam:primary"]["details"] == ["+ group:radiology@example.com roles/healthcare.dicomViewer"]
    assert states["upload"]["state"] == "missing" and "upload 5 of 8" in states["upload"]["details"][0]
    assert states["import:primary"]["state"] == "missing"
    assert {r["id"] for r in report.resources if r["state"] != "ok"} == {"project", "store-iam:primary", "upload",
                                                                         "import:primary", "record"}
    assert states["record"]["details"] == ["record 0 resource(s) and 1 grant(s) before making them"]
    doc = report.to_json()
    assert list(doc) == ["project", "target", "in_sync", "resources", "notes", "outputs"] and doc["in_sync"] is False
    assert "differ" in report.render()

    bp2 = load(tmp_path, blueprint_dict("ohif-status", data, smoke={"min_studies": 2}), "bp2.yaml")
    lifecycle.apply(bp2, target)
    assert lifecycle.status(bp2, target).in_sync
    assert project.read(other, bp.project.id).labels["team"] == "a"


def test_plan_refuses_a_project_pending_deletion(emulator, tmp_path):
    target = Target(emulator=emulator.url)
    bp = load(tmp_path, blueprint_dict("ohif-deleted", bucket=None, dicom_stores=[{"id": "s"}]))
    lifecycle.apply(bp, target)
    project.delete(Ctx(target), bp.project.id)
    with pytest.raises(ProvisionError, match="undelete"):
        lifecycle.plan(bp, target)
