"""Import failures name their files (issue 8, defect 7), against the emulator with the real clients:
the upload sends DICOM files only."""
from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from provision import provisioner
from provision.cli import app
from provision.gcp.context import Ctx
from provision.gcp.target import Target
from provision.resources import bucket as bucket_mod
from test_apply_support import blueprint_dict, load, write_dicom

README = b"# Scans for the teaching file\nNot DICOM: do not import.\n"


def cli(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data"
    write_dicom(d, studies=2)
    return d


def test_upload_sends_only_dicom_files_and_says_which_it_left_out(emulator, tmp_path, data_dir):
    (data_dir / "README.txt").write_bytes(README)
    (data_dir / "notes").mkdir()
    (data_dir / "notes" / "protocol.pdf").write_bytes(b"%PDF-1.4\n" + b"\0" * 200)
    target = Target(emulator=emulator.url)
    data = blueprint_dict("ohif-imp-up", data_dir)
    path = tmp_path / "bp.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))

    plan = provisioner.plan(load(tmp_path, data), target)
    assert plan.step("upload").changes == [f"upload 5 of 5 file(s) from {data_dir}"]
    note = next(n for n in plan.notes if n.startswith("upload:"))
    assert "2 file(s)" in note and "not DICOM" in note and "README.txt" in note

    result = cli("apply", str(path), "--emulator", emulator.url, "--yes", "--no-smoke")
    assert result.exit_code == 0, result.output
    assert "2 file(s) in" in result.output and "are not DICOM Part-10 files" in result.output
    names = set(bucket_mod.list_objects(Ctx(target), "ohif-imp-up-dicom"))
    assert len(names) == 5 and all(n.endswith(".dcm") for n in names), names
    # Nothing left to upload: a second plan has no upload change, and still says why README.txt is not there.
    again = provisioner.plan(load(tmp_path, data), target)
    assert not again.has_changes and any("README.txt" in n for n in again.notes)
