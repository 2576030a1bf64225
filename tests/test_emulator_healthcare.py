"""Healthcare v1 control plane in the emulator, through the real discovery client: locations,
dataset LRO, DICOM store CRUD, IAM read-modify-write, Google's 403/409/SERVICE_DISABLED rules,
import from Cloud Storage (counters, failures, the service agent's bucket grant), export,
persistence across a restart, --enforce-iam and injected operation failures."""
from __future__ import annotations

import json
import time

import pytest
import requests
from googleapiclient.errors import HttpError

import dicom_factory as f
from emulator_helpers import CONTROL, create_project, healthcare, ready_store, wait_operation
from provision.emulator import discovery
from provision.emulator.latency import REALISTIC

DOC = "healthcare.v1"
META_TYPE = "type.googleapis.com/google.cloud.healthcare.v1.OperationMetadata"


def error(exc: HttpError) -> dict:
    return json.loads(exc.content)["error"]


def no_problems(ref: str, body: dict) -> dict:
    found = discovery.problems(DOC, ref, body)
    assert not found, found
    return body


def latency_file(tmp_path, **overrides) -> str:
    table = {k: 0.0 for k in REALISTIC}
    table.update({k.replace("__", ":").replace("_dot_", "."): v for k, v in overrides.items()})
    path = tmp_path / "latency.json"
    path.write_text(json.dumps(table))
    return str(path)


# ---- locations, enablement, datasets -------------------------------------------------------------
def test_service_disabled_until_enabled_then_locations(emulator):
    create_project(emulator.url, "hc-off-1", enable=())
    hc = healthcare(emulator.url)
    with pytest.raises(HttpError) as off:
        hc.projects().locations().list(name="projects/hc-off-1").execute()
    err = error(off.value)
    assert err["code"] == 403 and any(d.get("reason") == "SERVICE_DISABLED" for d in err["details"])
    create_project(emulator.url, "hc-on-1")
    locs = hc.projects().locations().list(name="projects/hc-on-1").execute()
    names = [loc["name"] for loc in locs["locations"]]
    assert "projects/hc-on-1/locations/us-central1" in names and "projects/hc-on-1/locations/eu" in names
    assert locs["locations"][0].keys() == {"name", "locationId"}
    page = hc.projects().locations().list(name="projects/hc-on-1", pageSize=5).execute()
    assert len(page["locations"]) == 5 and page["nextPageToken"]
    rest = hc.projects().locations().list(name="projects/hc-on-1", pageSize=100, pageToken=page["nextPageToken"]).execute()
    assert [x["name"] for x in page["locations"] + rest["locations"]] == names and "nextPageToken" not in rest
    got = hc.projects().locations().get(name="projects/hc-on-1/locations/europe-west4").execute()
    assert got == {"name": "projects/hc-on-1/locations/europe-west4", "locationId": "europe-west4"}
    with pytest.raises(HttpError) as missing:
        hc.projects().locations().list(name="projects/no-such-project").execute()
    assert missing.value.status_code == 403


def test_dataset_create_is_an_operation(emulator):
    create_project(emulator.url, "hc-ds-1")
    hc = healthcare(emulator.url)
    datasets = hc.projects().locations().datasets()
    op = datasets.create(parent="projects/hc-ds-1/locations/us-central1", datasetId="ds.one_1-a", body={}).execute()
    no_problems("Operation", op)
    assert op["name"].startswith("projects/hc-ds-1/locations/us-central1/datasets/ds.one_1-a/operations/")
    meta = op["metadata"]
    assert meta["@type"] == META_TYPE and meta["apiMethodName"] == \
        "google.cloud.healthcare.v1.dataset.DatasetService.CreateDataset"
    assert meta["createTime"].endswith("Z") and meta["logsUrl"].startswith("https://console.cloud.google.com/logs/")
    done = wait_operation(hc, op["name"])
    assert done["done"] is True and "endTime" in done["metadata"]
    assert done["response"] == {"@type": "type.googleapis.com/google.cloud.healthcare.v1.dataset.Dataset",
                                "name": "projects/hc-ds-1/locations/us-central1/datasets/ds.one_1-a", "timeZone": "UTC"}
    assert datasets.get(name="projects/hc-ds-1/locations/us-central1/datasets/ds.one_1-a").execute()["timeZone"] == "UTC"
    ops = datasets.operations().list(name="projects/hc-ds-1/locations/us-central1/datasets/ds.one_1-a").execute()
    assert [o["name"] for o in ops["operations"]] == [op["name"]]
    for i in range(3):
        wait_operation(hc, datasets.create(parent="projects/hc-ds-1/locations/us-central1", datasetId=f"d{i}",
                                           body={"timeZone": "Europe/Paris"}).execute()["name"])
    seen, token = [], None
    while True:
        page = datasets.list(parent="projects/hc-ds-1/locations/us-central1", pageSize=2, pageToken=token).execute()
        seen += [d["name"].rsplit("/", 1)[1] for d in page["datasets"]]
        token = page.get("nextPageToken")
        if not token:
            break
    assert seen == ["d0", "d1", "d2", "ds.one_1-a"]
    patched = datasets.patch(name="projects/hc-ds-1/locations/us-central1/datasets/d0", updateMask="timeZone",
                             body={"timeZone": "America/New_York"}).execute()
    assert patched["timeZone"] == "America/New_York"
    assert datasets.delete(name="projects/hc-ds-1/locations/us-central1/datasets/d1").execute() == {}
    with pytest.raises(HttpError) as gone:
        datasets.get(name="projects/hc-ds-1/locations/us-central1/datasets/d1").execute()
    assert gone.value.status_code == 403 and error(gone.value)["status"] == "PERMISSION_DENIED"


def test_dataset_errors(emulator):
    create_project(emulator.url, "hc-err")
    datasets = healthcare(emulator.url).projects().locations().datasets()
    parent = "projects/hc-err/locations/us-central1"
    wait_operation(healthcare(emulator.url), datasets.create(parent=parent, datasetId="dup", body={}).execute()["name"])
    with pytest.raises(HttpError) as dup:
        datasets.create(parent=parent, datasetId="dup", body={}).execute()
    assert dup.value.status_code == 409 and error(dup.value)["status"] == "ALREADY_EXISTS"
    for bad in ("has space", "sl/ash", "x" * 257, "a:b"):
        with pytest.raises(HttpError) as invalid:
            datasets.create(parent=parent, datasetId=bad, body={}).execute()
        assert invalid.value.status_code == 400, bad
    op = datasets.create(parent=parent, datasetId="ünïcode", body={}).execute()
    assert op["name"].startswith(f"{parent}/datasets/ünïcode/operations/")
    with pytest.raises(HttpError) as unknown_field:
        datasets.create(parent=parent, datasetId="x1", body={"nope": 1}).execute()
    assert unknown_field.value.status_code == 400
    with pytest.raises(HttpError) as location:
        datasets.create(parent="projects/hc-err/locations/mars-east1", datasetId="x2", body={}).execute()
    assert location.value.status_code == 400
    with pytest.raises(HttpError) as missing:
        datasets.get(name=f"{parent}/datasets/missing").execute()
    assert missing.value.status_code == 403
    assert "or it may not exist" in error(missing.value)["message"]


def test_dataset_not_initialized_window_and_failed_operations(emulator_factory, tmp_path):
    emu = emulator_factory(latency=latency_file(tmp_path, **{"propagation:healthcare.datasets.create": 0.6,
                                                             "op:healthcare.datasets.create": 0.3}))
    create_project(emu.url, "hc-prop")
    hc = healthcare(emu.url)
    datasets = hc.projects().locations().datasets()
    op = datasets.create(parent="projects/hc-prop/locations/us", datasetId="slow", body={}).execute()
    assert "done" not in op
    with pytest.raises(HttpError) as early:
        datasets.get(name="projects/hc-prop/locations/us/datasets/slow").execute()
    assert early.value.status_code == 404 and "dataset not initialized" in early.value.content.decode().lower()
    assert wait_operation(hc, op["name"])["done"] is True
    time.sleep(0.7)   # the window lasts until the operation is done, plus the propagation key
    assert datasets.get(name="projects/hc-prop/locations/us/datasets/slow").execute()["name"].endswith("/slow")

    ready = emulator_factory(data_dir=tmp_path / "faults")
    create_project(ready.url, "hc-fault")
    ready.stop()
    broken = emulator_factory(data_dir=tmp_path / "faults", faults="operation=1.0")
    hc2 = healthcare(broken.url)
    op = hc2.projects().locations().datasets().create(parent="projects/hc-fault/locations/us", datasetId="d",
                                                      body={}).execute()
    failed = wait_operation(hc2, op["name"]) if "done" not in op else op
    assert failed["error"]["code"] == 13 and "response" not in failed
    with pytest.raises(HttpError) as never:
        hc2.projects().locations().datasets().get(name="projects/hc-fault/locations/us/datasets/d").execute()
    assert never.value.status_code == 403


# ---- DICOM stores and IAM ------------------------------------------------------------------------
def test_dicom_store_crud_and_paging(emulator):
    env = ready_store(emulator, project="hc-stores", store="s0")
    stores = env.stores
    created = stores.create(parent=env.dataset, dicomStoreId="s1", body={"labels": {"team": "imaging"}}).execute()
    assert no_problems("DicomStore", created) == {"name": f"{env.dataset}/dicomStores/s1", "labels": {"team": "imaging"}}
    stores.create(parent=env.dataset, dicomStoreId="s2", body={}).execute()
    with pytest.raises(HttpError) as dup:
        stores.create(parent=env.dataset, dicomStoreId="s1", body={}).execute()
    assert dup.value.status_code == 409
    names, token = [], None
    while True:
        page = stores.list(parent=env.dataset, pageSize=1, pageToken=token).execute()
        names += [s["name"].rsplit("/", 1)[1] for s in page["dicomStores"]]
        token = page.get("nextPageToken")
        if not token:
            break
    assert names == ["s0", "s1", "s2"]
    assert [s["name"].rsplit("/", 1)[1] for s in
            stores.list(parent=env.dataset, filter="labels.team=imaging").execute()["dicomStores"]] == ["s1"]
    patched = stores.patch(name=f"{env.dataset}/dicomStores/s2", updateMask="labels",
                           body={"labels": {"env": "demo"}}).execute()
    assert patched["labels"] == {"env": "demo"}
    assert stores.get(name=f"{env.dataset}/dicomStores/s2").execute()["labels"] == {"env": "demo"}
    with pytest.raises(HttpError) as no_mask:
        stores.patch(name=f"{env.dataset}/dicomStores/s2", body={"labels": {}}).execute()
    assert no_mask.value.status_code == 400
    assert stores.delete(name=f"{env.dataset}/dicomStores/s2").execute() == {}
    with pytest.raises(HttpError) as gone:
        stores.get(name=f"{env.dataset}/dicomStores/s2").execute()
    assert gone.value.status_code == 403
    with pytest.raises(HttpError) as no_dataset:
        stores.list(parent="projects/hc-stores/locations/us-central1/datasets/none").execute()
    assert no_dataset.value.status_code == 403


def test_iam_read_modify_write_stale_etag_and_agents(emulator):
    env = ready_store(emulator, project="hc-iam")
    stores = env.stores
    policy = stores.getIamPolicy(resource=env.store, options_requestedPolicyVersion=3).execute()
    assert no_problems("Policy", policy)["etag"] and "bindings" not in policy
    viewer = {"role": "roles/healthcare.dicomViewer", "members": ["user:ana@example.com"]}
    new = stores.setIamPolicy(resource=env.store, body={"policy": {"bindings": [viewer], "etag": policy["etag"]}}).execute()
    assert new["bindings"] == [viewer] and new["etag"] != policy["etag"]
    with pytest.raises(HttpError) as stale:
        stores.setIamPolicy(resource=env.store, body={"policy": {"bindings": [], "etag": policy["etag"]}}).execute()
    assert stale.value.status_code == 409 and error(stale.value)["status"] == "ABORTED"
    assert stores.getIamPolicy(resource=env.store).execute()["bindings"] == [viewer]
    # the project's own Healthcare agent exists (its first dataset made it); another project's does not
    agent = {"role": "roles/healthcare.dicomEditor", "members": [f"serviceAccount:{env.agent}"]}
    stores.setIamPolicy(resource=env.store, body={"policy": {"bindings": [viewer, agent]}}).execute()
    other = create_project(env.url, "hc-iam-other")
    ghost = f"service-{other}@gcp-sa-healthcare.iam.gserviceaccount.com"
    datasets = env.hc.projects().locations().datasets()
    with pytest.raises(HttpError) as missing:
        datasets.setIamPolicy(resource=env.dataset, body={"policy": {"bindings": [
            {"role": "roles/healthcare.datasetAdmin", "members": [f"serviceAccount:{ghost}"]}]}}).execute()
    assert missing.value.status_code == 400 and f"Service account {ghost} does not exist." in error(missing.value)["message"]
    dpol = datasets.getIamPolicy(resource=env.dataset).execute()
    assert "bindings" not in dpol
    perms = ["healthcare.dicomStores.dicomWebRead", "healthcare.dicomStores.get"]
    assert stores.testIamPermissions(resource=env.store, body={"permissions": perms}).execute() == {"permissions": perms}
    assert datasets.testIamPermissions(resource=env.dataset, body={"permissions": ["healthcare.datasets.get"]}).execute() \
        == {"permissions": ["healthcare.datasets.get"]}


def test_enforce_iam_dicom_viewer_can_search(emulator_factory):
    emu = emulator_factory(enforce_iam=True)
    owner, viewer, stranger = "user:ana@example.com", "user:vic@example.com", "user:eve@example.com"
    requests.put(f"{emu.url}/_emulator/policies/organizations/1", json={"bindings": [
        {"role": "roles/resourcemanager.projectCreator", "members": [owner]}]}, headers=CONTROL)
    requests.put(f"{emu.url}/_emulator/policies/billingAccounts/012345-6789AB-CDEF01", json={"bindings": [
        {"role": "roles/billing.user", "members": [owner]}]}, headers=CONTROL)
    env = ready_store(emu, project="hc-enforce", member=owner, parent="organizations/1")
    env.dicomweb.store_instances(f.ct_series(slices=2, size=16))
    env.stores.setIamPolicy(resource=env.store, body={"policy": {"bindings": [
        {"role": "roles/healthcare.dicomViewer", "members": [viewer]}]}}).execute()
    assert len(env.dicomweb_for(viewer).search_for_studies()) == 1
    with pytest.raises(requests.HTTPError) as denied:
        env.dicomweb_for(stranger).search_for_studies()
    assert denied.value.response.status_code == 403
    with pytest.raises(requests.HTTPError) as no_write:
        env.dicomweb_for(viewer).store_instances(f.mr_series(slices=1))
    assert no_write.value.response.status_code == 403
    anonymous = requests.get(f"{env.dicomweb_url}/studies")
    assert anonymous.status_code == 401
    mine = healthcare(emu.url, viewer).projects().locations().datasets().dicomStores().testIamPermissions(
        resource=env.store, body={"permissions": ["healthcare.dicomStores.dicomWebRead",
                                                  "healthcare.dicomStores.dicomWebWrite"]}).execute()
    assert mine == {"permissions": ["healthcare.dicomStores.dicomWebRead"]}


# ---- import / export -----------------------------------------------------------------------------
def test_import_counts_and_qido_sees_the_studies(emulator):
    env = ready_store(emulator, project="hc-import")
    bucket = env.bucket("hc-import-data")
    cts = f.ct_series("imp-ct", slices=5, size=32)
    mrs = f.mr_series("imp-mr", slices=3)
    env.upload(bucket, {f"dicom/{d.SeriesInstanceUID}/{d.SOPInstanceUID}.dcm": f.to_bytes(d) for d in cts + mrs})
    env.upload(bucket, {"other/readme.txt": b"not imported: outside the glob"})
    op = env.stores.import_(name=env.store, body={"gcsSource": {"uri": "gs://hc-import-data/dicom/**.dcm"}}).execute()
    meta = op["metadata"]
    assert meta["apiMethodName"] == "google.cloud.healthcare.v1.dicom.DicomService.ImportDicomData"
    assert op["name"].startswith(f"{env.dataset}/operations/")
    done = wait_operation(env.hc, op["name"])
    no_problems("Operation", done)
    assert done["metadata"]["counter"] == {"success": "8"}
    assert done["response"] == {"@type": "type.googleapis.com/google.cloud.healthcare.v1.dicom.ImportDicomDataResponse"}
    assert "endTime" in done["metadata"] and "error" not in done
    studies = env.dicomweb.search_for_studies()
    assert sorted(s["0020000D"]["Value"][0] for s in studies) == sorted({cts[0].StudyInstanceUID, mrs[0].StudyInstanceUID})
    # the same files again: identical duplicates are a no-op success
    again = env.import_("gs://hc-import-data/dicom/**")
    assert again["metadata"]["counter"] == {"success": "8"} and "error" not in again
    assert len(env.dicomweb.search_for_instances()) == 8


def test_import_failures_permission_and_missing_bucket(emulator):
    env = ready_store(emulator, project="hc-import-bad")
    bucket = env.bucket("hc-bad-data")
    good = f.ct_series("bad-ct", slices=2, size=16)
    env.upload(bucket, {"in/a.dcm": f.to_bytes(good[0]), "in/b.dcm": f.to_bytes(good[1]), "in/c.dcm": b"junk"})
    done = env.import_("gs://hc-bad-data/in/*.dcm")
    assert done["metadata"]["counter"] == {"success": "2", "failure": "1"}
    assert "response" not in done and done["error"]["code"] == 13 and "1 of 3" in done["error"]["message"]
    assert len(env.dicomweb.search_for_instances()) == 2
    # same UIDs, different bytes: a failure, the stored instance is kept
    changed = f.ct_series("bad-ct", slices=2, size=16)[0]
    changed.PatientID = "CHANGED"
    env.upload(bucket, {"in2/a.dcm": f.to_bytes(changed)})
    clash = env.import_("gs://hc-bad-data/in2/a.dcm")
    assert clash["metadata"]["counter"] == {"failure": "1"} and clash["error"]["code"] == 13
    assert env.dicomweb.search_for_studies()[0]["00100020"]["Value"] == ["PID-CT1"]
    # the service agent was never granted this bucket
    private = env.bucket("hc-private", grant_agent=False)
    env.upload(private, {"x.dcm": f.to_bytes(good[0])})
    denied = env.import_("gs://hc-private/**")
    assert denied["error"] == {"code": 7, "message": "Healthcare API doesn't have required Cloud Storage permission. See "
                               "https://cloud.google.com/healthcare/docs/how-tos/permissions-healthcare-api-gcp-products "
                               "for more information"}
    nowhere = env.import_("gs://no-such-bucket-xyz/**")
    assert nowhere["error"]["code"] == 5
    for bad in ("gs://hc-bad-data/**/x/**", "s3://b/x", "gs://", "gs://hc-bad-data/a**b/c"):
        with pytest.raises(HttpError) as invalid:
            env.stores.import_(name=env.store, body={"gcsSource": {"uri": bad}}).execute()
        assert invalid.value.status_code == 400, bad


def test_export_writes_objects(emulator):
    env = ready_store(emulator, project="hc-export")
    cts = f.ct_series("exp", slices=2, size=16)
    env.dicomweb.store_instances(cts)
    out = env.bucket("hc-export-out", grant_agent=False)
    denied = env.stores.export(name=env.store, body={"gcsDestination": {"uriPrefix": "gs://hc-export-out/dump"}}).execute()
    denied = wait_operation(env.hc, denied["name"])
    assert denied["error"]["code"] == 7
    policy = out.get_iam_policy(requested_policy_version=3)
    policy.bindings.append({"role": "roles/storage.objectAdmin", "members": {f"serviceAccount:{env.agent}"}})
    out.set_iam_policy(policy)
    op = env.stores.export(name=env.store, body={"gcsDestination": {"uriPrefix": "gs://hc-export-out/dump/"}}).execute()
    done = wait_operation(env.hc, op["name"])
    assert done["metadata"]["apiMethodName"] == "google.cloud.healthcare.v1.dicom.DicomService.ExportDicomData"
    assert "error" not in done
    names = sorted(b.name for b in env.gcs().list_blobs("hc-export-out"))
    assert names == sorted(f"dump/{d.StudyInstanceUID}/{d.SeriesInstanceUID}/{d.SOPInstanceUID}.dcm" for d in cts)
    data = env.gcs().bucket("hc-export-out").blob(names[0]).download_as_bytes()
    assert data[128:132] == b"DICM"


def test_state_survives_restart(emulator_factory, tmp_path):
    first = emulator_factory(data_dir=tmp_path)
    env = ready_store(first, project="hc-persist")
    bucket = env.bucket("hc-persist-data")
    cts = f.ct_series("persist", slices=3, size=16)
    env.upload(bucket, {f"{i}.dcm": f.to_bytes(d) for i, d in enumerate(cts)})
    assert env.import_("gs://hc-persist-data/**")["metadata"]["counter"] == {"success": "3"}
    first.stop()
    second = emulator_factory(data_dir=tmp_path)
    env.url = second.url
    env._clients.clear()
    assert len(env.dicomweb.search_for_instances(cts[0].StudyInstanceUID)) == 3
    frames = env.dicomweb.retrieve_instance_frames(cts[1].StudyInstanceUID, cts[1].SeriesInstanceUID,
                                                   cts[1].SOPInstanceUID, [1])
    assert frames[0] == bytes(cts[1].PixelData)
    assert env.stores.get(name=env.store).execute()["name"] == env.store
    ops = env.hc.projects().locations().datasets().operations().list(name=env.dataset).execute()["operations"]
    assert all(o["done"] for o in ops)


def test_store_delete_drops_its_instances_and_reset_forgets_all(emulator):
    env = ready_store(emulator, project="hc-reset")
    env.dicomweb.store_instances(f.ct_series("reset", slices=2, size=16))
    state = requests.get(f"{env.url}/_emulator/state", headers=CONTROL).json()
    assert state["healthcare"]["dicomStores"][env.store] == {"studies": 1, "series": 1, "instances": 2}
    env.stores.delete(name=env.store).execute()
    env.stores.create(parent=env.dataset, dicomStoreId=env.store_id, body={}).execute()
    assert env.dicomweb.search_for_studies() == []
    env.dicomweb.store_instances(f.ct_series("reset", slices=1, size=16))
    assert requests.post(f"{env.url}/_emulator/reset", headers=CONTROL).status_code == 200
    assert requests.get(f"{env.url}/_emulator/state", headers=CONTROL).json()["healthcare"]["dicomStores"] == {}
    assert requests.get(f"{env.dicomweb_url}/studies").status_code == 403


def test_the_agent_the_first_dataset_creates_gets_its_default_role(emulator):
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import resourcemanager_v3

    env = ready_store(emulator, project="hc-agent-role")
    crm = resourcemanager_v3.ProjectsClient(credentials=AnonymousCredentials(), transport="rest",
                                            client_options=ClientOptions(api_endpoint=emulator.url))
    policy = crm.get_iam_policy(request={"resource": "projects/hc-agent-role"})
    agents = {m for b in policy.bindings if b.role == "roles/healthcare.serviceAgent" for m in b.members}
    assert agents == {f"serviceAccount:{env.agent}"}
