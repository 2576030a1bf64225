"""Cloud Logging `entries:list` on the emulator, through the real googleapiclient (the logging v2
discovery document bundled with it): the Healthcare import writes one error entry per object it
could not store, in the shape Google documents, and the listing filters, orders, pages and
checks permissions as the API describes."""
from __future__ import annotations

import json

import pytest
import requests
from googleapiclient.errors import HttpError

import dicom_factory as f
from emulator_helpers import CONTROL, discovery_client, ready_store
from provision.emulator import discovery

LOG = "healthcare.googleapis.com%2Fimport_dicom_errors"


def logging_client(url: str, member: str | None = None):
    return discovery_client(url, "logging", "v2", member)


def failed_import(env, bucket_name: str) -> dict:
    """Import 3 good instances, a README, an empty .dcm and a clashing copy of one instance."""
    bucket = env.bucket(bucket_name)
    cts = f.ct_series("log-ct", slices=3, size=16)
    env.upload(bucket, {f"d/{d.SOPInstanceUID}.dcm": f.to_bytes(d) for d in cts})
    first = env.import_(f"gs://{bucket_name}/d/**")
    assert "error" not in first
    clash = cts[0].copy()
    clash.PatientName = "Other^Name"   # same UIDs, other bytes
    env.upload(bucket, {"d/README.txt": b"how to use this folder", "d/empty.dcm": b"", "d/zz-clash.dcm": f.to_bytes(clash)})
    op = env.import_(f"gs://{bucket_name}/d/**")
    assert op["error"]["code"] and op["metadata"]["counter"] == {"success": "3", "failure": "3"}
    return op


def test_import_errors_are_listed_with_their_object_and_error(emulator):
    env = ready_store(emulator, project="log-one")
    op = failed_import(env, "log-one-data")
    body = {"resourceNames": ["projects/log-one"],
            "filter": f'logName="projects/log-one/logs/{LOG}" AND operation.id="{op["name"]}"'}
    resp = logging_client(emulator.url).entries().list(body=body).execute()
    assert discovery.response_problems("logging", "POST", "/v2/entries:list", resp) == []
    entries = resp["entries"]
    by_source = {e["jsonPayload"]["source"]: e for e in entries}
    assert set(by_source) == {"gs://log-one-data/d/README.txt", "gs://log-one-data/d/empty.dcm",
                              "gs://log-one-data/d/zz-clash.dcm"}
    readme = by_source["gs://log-one-data/d/README.txt"]
    assert readme["logName"] == f"projects/log-one/logs/{LOG}"
    assert readme["severity"] == "ERROR"
    assert readme["jsonPayload"]["@type"] == "type.googleapis.com/google.cloud.healthcare.logging.ImportDicomLogEntry"
    assert readme["jsonPayload"]["error"]["code"] == 3 and "DICM" in readme["jsonPayload"]["error"]["message"]
    assert readme["operation"] == {"id": op["name"], "producer": "healthcare.googleapis.com/ImportDicomData"}
    assert readme["resource"] == {"type": "healthcare_dicom_store", "labels": {
        "project_id": "log-one", "location": "us-central1", "dataset_id": "ds1", "dicom_store_id": "store1"}}
    assert {"timestamp", "receiveTimestamp", "insertId"} <= set(readme)
    assert by_source["gs://log-one-data/d/empty.dcm"]["jsonPayload"]["error"] == {
        "code": 3, "message": "empty DICOM instance found"}   # Google's own words (logging how-to)
    assert "checksum mismatch" in by_source["gs://log-one-data/d/zz-clash.dcm"]["jsonPayload"]["error"]["message"]
    # The operation's logs link points at the same entries.
    assert LOG.replace("%", "%25") in op["metadata"]["logsUrl"]
    # The first, successful import logged nothing; another operation's filter finds nothing.
    other = dict(body, filter=f'operation.id="{op["name"]}0"')
    assert logging_client(emulator.url).entries().list(body=other).execute() == {}
    # What Google documents of these entries (resource type, payload type, operation) finds the same ones.
    documented = dict(body, filter='resource.type="healthcare_dicom_store" AND jsonPayload.@type='
                      '"type.googleapis.com/google.cloud.healthcare.logging.ImportDicomLogEntry" AND '
                      f'operation.id:"{op["name"].rsplit("/", 1)[1]}"')
    found = logging_client(emulator.url).entries().list(body=documented).execute()["entries"]
    assert sorted(e["insertId"] for e in found) == sorted(e["insertId"] for e in entries)


def test_filter_order_and_pages(emulator):
    env = ready_store(emulator, project="log-two")
    op = failed_import(env, "log-two-data")
    lg = logging_client(emulator.url).entries()
    op_id = op["name"].rsplit("/", 1)[1]
    base = {"resourceNames": ["projects/log-two"]}
    asc = lg.list(body=dict(base, filter=f'operation.id:"{op_id}" severity>=ERROR')).execute()["entries"]
    desc = lg.list(body=dict(base, filter=f'operation.id:"{op_id}"', orderBy="timestamp desc")).execute()["entries"]
    assert [e["insertId"] for e in desc] == [e["insertId"] for e in asc][::-1]
    assert lg.list(body=dict(base, filter="severity<ERROR")).execute() == {}
    assert len(lg.list(body=dict(base, filter='jsonPayload.source:"README" OR jsonPayload.source:"empty"')
                   ).execute()["entries"]) == 2
    assert lg.list(body=dict(base, filter='timestamp>="2999-01-01T00:00:00Z"')).execute() == {}
    seen, token = [], None
    while True:
        page = lg.list(body=dict(base, pageSize=2, **({"pageToken": token} if token else {}))).execute()
        seen += page["entries"]
        token = page.get("nextPageToken")
        if not token:
            break
    assert [e["insertId"] for e in seen] == [e["insertId"] for e in asc]
    # A project number lists the same entries as the project ID.
    assert lg.list(body={"resourceNames": [f"projects/{env.number}"]}).execute()["entries"] == asc


@pytest.mark.parametrize("body, status, phrase", [
    ({"resourceNames": ["projects/log-three"], "filtr": "x"}, 400, 'Unknown name "filtr"'),
    ({"resourceNames": ["projects/log-three"], "filter": "README"}, 400, "Unparseable filter"),
    ({"resourceNames": ["projects/log-three"], "filter": '(severity=ERROR'}, 400, "Unparseable filter"),
    ({"resourceNames": ["projects/log-three"], "orderBy": "insertId"}, 400, "timestamp asc"),
    ({"resourceNames": ["projects/log-three"], "pageSize": -1}, 400, "negative"),
    ({}, 400, "resourceNames is required"),
    ({"resourceNames": ["folders/123"]}, 501, "projects only"),
    ({"resourceNames": ["projects/no-such-project-x"]}, 403, "logging.logEntries.list"),
])
def test_bad_requests_are_refused_as_google_does(emulator, body, status, phrase):
    ready_store(emulator, project="log-three")
    with pytest.raises(HttpError) as err:
        logging_client(emulator.url).entries().list(body=body).execute()
    assert err.value.status_code == status
    assert phrase in json.loads(err.value.content)["error"]["message"]


def test_reading_entries_needs_logging_permission(emulator_factory):
    emu = emulator_factory(enforce_iam=True)
    owner, reader, editor = "user:ana@example.com", "user:lou@example.com", "user:ed@example.com"
    requests.put(f"{emu.url}/_emulator/policies/organizations/1", json={"bindings": [
        {"role": "roles/resourcemanager.projectCreator", "members": [owner]}]}, headers=CONTROL, timeout=10)
    requests.put(f"{emu.url}/_emulator/policies/billingAccounts/012345-6789AB-CDEF01", json={"bindings": [
        {"role": "roles/billing.user", "members": [owner]}]}, headers=CONTROL, timeout=10)
    env = ready_store(emu, project="log-iam", member=owner, parent="organizations/1")
    failed_import(env, "log-iam-data")
    crm = discovery_client(emu.url, "cloudresourcemanager", "v3", owner).projects()
    policy = crm.getIamPolicy(resource="projects/log-iam", body={}).execute()
    policy["bindings"] += [{"role": "roles/logging.viewer", "members": [reader]},
                           {"role": "roles/healthcare.dicomEditor", "members": [editor]}]
    crm.setIamPolicy(resource="projects/log-iam", body={"policy": policy}).execute()
    body = {"resourceNames": ["projects/log-iam"], "filter": f'logName="projects/log-iam/logs/{LOG}"'}
    assert len(logging_client(emu.url, owner).entries().list(body=body).execute()["entries"]) == 3
    assert len(logging_client(emu.url, reader).entries().list(body=body).execute()["entries"]) == 3
    with pytest.raises(HttpError) as denied:
        logging_client(emu.url, editor).entries().list(body=body).execute()
    assert denied.value.status_code == 403
    assert "logging.logEntries.list" in json.loads(denied.value.content)["error"]["message"]
