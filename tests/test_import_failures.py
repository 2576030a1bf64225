"""Import failures name their files (issue 8, defect 7), against the emulator with the real clients:
the failing objects come from Cloud Logging `entries:list` when the caller may read the logs,
else the message gives the logs link and says why; the upload sends DICOM files only; and
`import.max_failures` lets a known number of bad files through with a note."""
from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from provision.running import lifecycle
from provision.cli import app
from provision.gcp.context import Ctx
from provision.gcp.errors import StepError
from provision.gcp.target import Target
from provision.resources import bucket_reads
from provision.resources import dicom_import, import_errors
from emulator_helpers import CONTROL
from test_apply_support import BILLING, ORG, Events, blueprint_dict, load, write_dicom

README = b"# Scans for the teaching file\nNot DICOM: do not import.\n"


def put_object(target: Target, bucket: str, name: str, data: bytes) -> None:
    """An object put in the bucket behind provision's back (a colleague, an older upload)."""
    target.storage().bucket(bucket).blob(name).upload_from_string(data, content_type="text/plain")


def any_bucket_blueprint(project: str, data_dir, **import_over) -> dict:
    """The test blueprint, importing everything under dicom/ (not only *.dcm)."""
    bp = blueprint_dict(project, data_dir, smoke={"min_studies": 1})
    bp["dicom_stores"][0]["import"] = {"uri": f"gs://{project}-dicom/dicom/**", **import_over}
    return bp


def cli(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data"
    write_dicom(d, studies=2)
    return d


def test_a_non_dicom_object_fails_apply_with_exit_1_naming_it(emulator, tmp_path, data_dir):
    target = Target(emulator=emulator.url)
    data = any_bucket_blueprint("ohif-imp-one", data_dir)
    lifecycle.apply(load(tmp_path, data), target)
    put_object(target, "ohif-imp-one-dicom", "dicom/notes/README.txt", README)
    # A file apply changes (the import runs again, so the new object is in its source).
    path = tmp_path / "bp.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))

    result = cli("apply", str(path), "--emulator", emulator.url, "--yes", "--no-smoke")

    assert result.exit_code == 1, result.output
    out = result.output
    assert "gs://ohif-imp-one-dicom/dicom/notes/README.txt: not a DICOM Part-10 file" in out, out
    assert "5 imported, 1 failed" in out
    assert "logs: https://console.cloud.google.com/logs/query" in out
    assert "gcloud storage rm" in out and "max_failures" in out
    assert "Traceback" not in out


def test_without_permission_to_read_logs_the_message_falls_back_to_the_logs_link(emulator_factory, tmp_path, data_dir):
    import requests

    emu = emulator_factory(enforce_iam=True)
    owner, ci = "user:owner@example.com", "user:ci@example.com"
    for resource, role in ((ORG, "roles/resourcemanager.projectCreator"), (f"billingAccounts/{BILLING}", "roles/billing.user")):
        assert requests.put(f"{emu.url}/_emulator/policies/{resource}", json={"bindings": [
            {"role": role, "members": [owner]}]}, headers=CONTROL, timeout=10).status_code == 200
    data = any_bucket_blueprint("ohif-imp-iam", data_dir)
    data["iam"].append({"member": ci, "roles": ["roles/healthcare.dicomEditor"]})   # may import, not read logs
    as_owner = Target(emulator=emu.url, token=f"emulator:{owner}")
    result = lifecycle.apply(load(tmp_path, data), as_owner)
    store = result.outputs["dicom_stores"]["primary"]["name"]
    put_object(as_owner, "ohif-imp-iam-dicom", "dicom/README.txt", README)
    uri = data["dicom_stores"][0]["import"]["uri"]

    as_ci = Target(emulator=emu.url, token=f"emulator:{ci}")
    with pytest.raises(StepError) as err:
        dicom_import.run(Ctx(as_ci, step="import:primary"), store, uri, min_studies=1, fingerprint_value="x")
    text = str(err.value)
    assert "5 imported, 1 failed; the failed files are not named here" in text, text
    assert "logging.logEntries.list; ask for roles/logging.viewer" in text
    assert "logs: https://console.cloud.google.com/logs/query" in text
    assert "README.txt" not in text

    # The owner may read the logs: the same failure names the file.
    with pytest.raises(StepError) as named:
        dicom_import.run(Ctx(as_owner, step="import:primary"), store, uri, min_studies=1, fingerprint_value="x")
    assert "gs://ohif-imp-iam-dicom/dicom/README.txt: not a DICOM Part-10 file" in str(named.value)


def test_the_log_query_names_only_what_google_documents():
    """An import's error entries are found by what Google documents of them (the logging how-to:
    resource.type, the jsonPayload's @type, the operation), never by the log's name, which no public
    text gives."""
    flt = import_errors.log_filter("projects/p/locations/us-central1/datasets/d/operations/123", "2026-01-01T00:01:00Z")
    assert 'resource.type="healthcare_dicom_store"' in flt
    assert 'jsonPayload.@type="type.googleapis.com/google.cloud.healthcare.logging.ImportDicomLogEntry"' in flt
    assert 'operation.id:"123"' in flt and 'timestamp>="2026-01-01T00:00:00Z"' in flt
    assert "logName" not in flt and "import_dicom_errors" not in flt and "logs/" not in flt


def test_failed_files_are_named_whatever_google_calls_the_log(emulator, monkeypatch, tmp_path, data_dir):
    # The emulator writes import errors under a log ID of its own choosing (Google's is not documented).
    # Under another name the same failure still names the file: the query does not depend on it.
    from provision.emulator.healthcare import transfers

    monkeypatch.setattr(transfers, "IMPORT_ERRORS_LOG", "healthcare.googleapis.com/some_other_log")
    target = Target(emulator=emulator.url)
    data = any_bucket_blueprint("ohif-imp-log", data_dir)
    store = lifecycle.apply(load(tmp_path, data), target).outputs["dicom_stores"]["primary"]["name"]
    put_object(target, "ohif-imp-log-dicom", "dicom/README.txt", README)
    with pytest.raises(StepError) as err:
        dicom_import.run(Ctx(target, step="import:primary"), store, data["dicom_stores"][0]["import"]["uri"],
                         min_studies=1, fingerprint_value="x")
    text = str(err.value)
    assert "gs://ohif-imp-log-dicom/dicom/README.txt: not a DICOM Part-10 file" in text, text
    assert "some_other_log" in text   # the logs link (the operation's logsUrl) names the log the emulator used


def test_upload_sends_only_dicom_files_and_says_which_it_left_out(emulator, tmp_path, data_dir):
    (data_dir / "README.txt").write_bytes(README)
    (data_dir / "notes").mkdir()
    (data_dir / "notes" / "protocol.pdf").write_bytes(b"%PDF-1.4\n" + b"\0" * 200)
    target = Target(emulator=emulator.url)
    data = blueprint_dict("ohif-imp-up", data_dir)
    path = tmp_path / "bp.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))

    plan = lifecycle.plan(load(tmp_path, data), target)
    assert plan.step("upload").changes == [f"upload 5 of 5 files from {data_dir}"]
    note = next(n for n in plan.notes if n.startswith("upload:"))
    assert "2 file(s)" in note and "not DICOM" in note and "README.txt" in note

    result = cli("apply", str(path), "--emulator", emulator.url, "--yes", "--no-smoke")
    assert result.exit_code == 0, result.output
    assert "2 file(s) in" in result.output and "are not DICOM Part-10 files" in result.output
    names = set(bucket_reads.list_objects(Ctx(target), "ohif-imp-up-dicom"))
    assert len(names) == 5 and all(n.endswith(".dcm") for n in names), names
    # Nothing left to upload: a second plan has no upload change, and still says why README.txt is not there.
    again = lifecycle.plan(load(tmp_path, data), target)
    assert not again.has_changes and any("README.txt" in n for n in again.notes)


def test_max_failures_lets_a_known_bad_file_through_with_a_note(emulator, tmp_path, data_dir):
    target = Target(emulator=emulator.url)
    data = any_bucket_blueprint("ohif-imp-max", data_dir, max_failures=1)
    lifecycle.apply(load(tmp_path, data), target)
    put_object(target, "ohif-imp-max-dicom", "dicom/README.txt", README)
    events = Events()

    result = lifecycle.apply(load(tmp_path, data), target, events)

    assert result.ok
    notes = [e.message for e in events.kinds("note") if e.step == "import:primary"]
    assert len(notes) == 1 and "1 file(s) failed and were left out (import.max_failures: 1)" in notes[0], notes
    assert "gs://ohif-imp-max-dicom/dicom/README.txt: not a DICOM Part-10 file" in notes[0]
    # Accepted once, it stays accepted: the next apply changes nothing.
    assert not lifecycle.apply(load(tmp_path, data), target).changed
    # A second bad file is one more than allowed.
    put_object(target, "ohif-imp-max-dicom", "dicom/empty.dcm", b"")
    with pytest.raises(lifecycle.ApplyFailed, match=r"5 imported, 2 failed") as err:
        lifecycle.apply(load(tmp_path, data), target)
    assert "dicom/empty.dcm: empty DICOM instance found" in str(err.value)
    assert "raise import.max_failures (now 1) to 2" in str(err.value)


def test_a_long_list_of_failures_names_the_first_ten_and_counts_the_rest():
    errors = import_errors.ImportErrors([(f"gs://b/d/{i:02}.txt", "not DICOM") for i in range(12)])
    text = import_errors.failure_report("gs://b/d/**", {"success": 1, "failure": 40, "pending": 0}, errors, "https://logs")
    assert text.count("not DICOM") == 10 and "gs://b/d/09.txt" in text and "gs://b/d/10.txt" not in text
    assert "... and 30 more" in text and text.endswith("logs: https://logs")
