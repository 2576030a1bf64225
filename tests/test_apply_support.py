"""Helpers shared by the apply / plan / destroy / reliability tests (no tests here).

Blueprints are written as YAML and loaded with the real loader; DICOM files come from
tests/dicom_factory.py (small, deterministic); the emulator's --record file is read back to
count what provision asked of it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from provision.blueprint.load import load_blueprint

READ_ONLY_POSTS = (":getIamPolicy", ":testIamPermissions")
BILLING = "012345-6789AB-CDEF01"
ORG = "organizations/123456789012"


def write_dicom(directory: Path, *, studies: int = 2) -> list[Path]:
    """`studies` small studies (CT 3x32², then MR 2x16²...) as Part-10 files under `directory`."""
    from dicom_factory import ct_series, mr_series, write_all

    datasets = []
    for i in range(studies):
        if i % 2 == 0:
            datasets += ct_series(f"ct{i}", slices=3, size=32, patient_id=f"PID-CT{i}", accession=f"ACC-CT{i}")
        else:
            datasets += mr_series(f"mr{i}", slices=2, size=16, patient_id=f"PID-MR{i}", accession=f"ACC-MR{i}")
    return write_all(datasets, directory)


def blueprint_dict(project_id: str, data_dir: Path | None = None, **over: Any) -> dict:
    """A demo-like blueprint: project with billing and labels, one project grant, a bucket with an
    upload, a dataset, one store with a grant and an import."""
    bucket = f"{project_id}-dicom"
    bp: dict = {
        "version": 1,
        "project": {"id": project_id, "display_name": "Provision Test", "parent": ORG,
                    "billing_account": BILLING, "labels": {"team": "a"}},
        "iam": [{"member": "group:radiology@example.com", "roles": ["roles/serviceusage.serviceUsageConsumer"]}],
        "bucket": {"name": bucket, "location": "US", "create": True},
        "dataset": {"id": "imaging", "location": "us-central1", "time_zone": "UTC"},
        "dicom_stores": [{"id": "primary",
                          "iam": [{"member": "group:radiology@example.com", "roles": ["roles/healthcare.dicomViewer"]}],
                          "import": {"uri": f"gs://{bucket}/dicom/**.dcm"}}],
        "viewer": {"origin": "http://127.0.0.1:3000", "config_out": f"out/{project_id}.js"},
        "smoke": {"min_studies": 2},
    }
    if data_dir is not None:
        bp["bucket"]["upload"] = {"from": str(data_dir), "prefix": "dicom/"}
    for key, value in over.items():
        if value is None:
            bp.pop(key, None)
        else:
            bp[key] = value
    return bp


def load(tmp_path: Path, data: dict, name: str = "bp.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_blueprint(path)


def records(path: Path) -> list[dict]:
    if not Path(path).exists():
        return []
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def is_write(rec: dict) -> bool:
    """A create / update / set / delete call (read-only POSTs excluded)."""
    if rec["method"] in ("GET", "HEAD", "OPTIONS"):
        return False
    if rec["method"] == "POST" and rec["path"].endswith(READ_ONLY_POSTS):
        return False
    return True


def writes(recs: list[dict]) -> list[dict]:
    return [r for r in recs if is_write(r)]


def mark(path: Path) -> int:
    """How many records the file holds now (to look only at what comes after)."""
    return len(records(path))


class Events:
    """A listener that keeps every engine event."""

    def __init__(self) -> None:
        self.events: list = []

    def __call__(self, event) -> None:
        self.events.append(event)

    def kinds(self, kind: str) -> list:
        return [e for e in self.events if e.kind == kind]

    def steps(self, kind: str) -> list[str]:
        return [e.step for e in self.kinds(kind)]
