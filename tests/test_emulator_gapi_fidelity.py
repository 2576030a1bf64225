"""What the recorded exchanges and Google's own evidence settle about Resource Manager, Service
Usage and Healthcare datasets, and that provision copes with each (issue 10):

- a project a service account creates under a folder or organization starts with an empty
  policy ({etag} alone) and without Google's default services (cloudapis.googleapis.com is
  enabled by a real operation); a project a person creates is its creator's, with the defaults;
- provision, run as such a service account (its rights on the project come from the
  organization's policy), provisions the whole blueprint;
- a new dataset answers 404 "dataset not initialized" to a GET or a store created in it until
  its create operation is done (terraform-provider-google #8128), and provision, meeting that
  window under `--latency realistic`, waits it out.
"""
from __future__ import annotations

import json
import time

import pytest
import requests
from googleapiclient.errors import HttpError

from emulator_helpers import CONTROL, HEALTHCARE, create_project, discovery_client, healthcare, wait_operation
from provision.running import lifecycle
from provision.gcp.target import Target
from test_apply_support import BILLING, ORG, blueprint_dict, load, write_dicom

ROBOT = "serviceAccount:robot@automation-1.iam.gserviceaccount.com"
FOLDER = "folders/424242424242"


def auth(member: str) -> dict:
    return {"Authorization": f"Bearer emulator:{member}"}


def service_state(url: str, project: str, service: str, member: str | None = None) -> dict:
    r = requests.get(f"{url}/v1/projects/{project}/services/{service}", headers=auth(member) if member else {})
    assert r.status_code == 200, r.text
    return r.json()


def test_a_project_a_service_account_creates_under_a_parent_starts_empty(emulator):
    url = emulator.url
    create_project(url, "robot-made-1", member=ROBOT, parent=FOLDER, billing=False, enable=())
    first = requests.post(f"{url}/v1/projects/robot-made-1:getIamPolicy", json={"options": {"requestedPolicyVersion": 3}},
                          headers=auth(ROBOT)).json()
    assert first == {"etag": "ACAB"}                       # no owner binding, no version: never set
    number = create_project(url, "person-made-1", member="user:ana@example.com", parent=FOLDER, billing=False,
                            enable=())
    person = requests.post(f"{url}/v3/projects/person-made-1:getIamPolicy", json={}).json()
    assert person["bindings"] == [{"role": "roles/owner", "members": ["user:ana@example.com"]}]

    robot_number = requests.get(f"{url}/v3/projects/robot-made-1").json()["name"].split("/")[1]
    untouched = service_state(url, "robot-made-1", "cloudapis.googleapis.com")
    assert untouched["state"] == "DISABLED" and "parent" not in untouched
    assert service_state(url, "robot-made-1", "storage.googleapis.com")["state"] == "DISABLED"
    assert service_state(url, "person-made-1", "cloudapis.googleapis.com")["state"] == "ENABLED"
    su = discovery_client(url, "serviceusage", "v1", ROBOT)
    op = su.services().enable(name="projects/robot-made-1/services/cloudapis.googleapis.com", body={}).execute()
    assert op["name"].startswith(f"operations/acf.p2-{robot_number}-") and "done" not in op   # a real operation
    done = su.operations().get(name=op["name"]).execute()
    assert done["response"]["service"]["state"] == "ENABLED"
    noop = discovery_client(url, "serviceusage", "v1").services().enable(
        name=f"projects/{number}/services/cloudapis.googleapis.com", body={}).execute()
    assert noop["name"] == "operations/noop.DONE_OPERATION"      # on by default for the person's project

    # the empty policy takes a first write with its etag, as recorded
    written = requests.post(f"{url}/v1/projects/robot-made-1:setIamPolicy", headers=auth(ROBOT), json={
        "policy": {"etag": "ACAB", "version": 3, "bindings": [
            {"role": "roles/viewer", "members": ["user:test@example.com"]}]},
        "updateMask": "bindings,etag,auditConfigs"}).json()
    assert written["version"] == 1 and written["etag"] != "ACAB"


def test_provision_applies_as_a_service_account_under_an_organization(emulator_factory, tmp_path):
    emu = emulator_factory(enforce_iam=True, record=tmp_path / "rec.jsonl")
    for resource, bindings in ((ORG, [{"role": "roles/resourcemanager.projectCreator", "members": [ROBOT]},
                                      {"role": "roles/owner", "members": [ROBOT]}]),
                               (f"billingAccounts/{BILLING}", [{"role": "roles/billing.user", "members": [ROBOT]}])):
        r = requests.put(f"{emu.url}/_emulator/policies/{resource}", json={"bindings": bindings}, headers=CONTROL)
        assert r.status_code == 200, r.text
    data = tmp_path / "dicom"
    write_dicom(data)
    bp = load(tmp_path, blueprint_dict("ohif-robot-org", data))
    target = Target(emulator=emu.url, token=f"emulator:{ROBOT}")
    result = lifecycle.apply(bp, target)
    assert result.ok
    policy = requests.post(f"{emu.url}/v3/projects/ohif-robot-org:getIamPolicy", json={}, headers=auth(ROBOT)).json()
    members = {m for b in policy["bindings"] for m in b["members"]}
    assert ROBOT not in members and "group:radiology@example.com" in members   # its rights come from the org
    assert not lifecycle.apply(bp, target).changed


def realistic_with_project(emulator_factory, tmp_path, project: str, time_scale: float):
    """An emulator with `--latency realistic --time-scale X` serving a project that already has
    billing and the Healthcare API (made, instantly, by an emulator with no latency on the same
    --data-dir: enabling alone would take 50 s of the realistic table)."""
    setup = emulator_factory(data_dir=tmp_path / "state")
    create_project(setup.url, project, parent=ORG, enable=(HEALTHCARE, "cloudresourcemanager.googleapis.com"))
    setup.stop()
    return emulator_factory(data_dir=tmp_path / "state", latency="realistic", time_scale=time_scale,
                            record=tmp_path / "rec.jsonl")


def test_a_new_dataset_is_not_initialized_until_its_operation_is_done(emulator_factory, tmp_path):
    emu = realistic_with_project(emulator_factory, tmp_path, "hc-window", time_scale=0.1)  # creation: 0.5 s
    hc = healthcare(emu.url)
    datasets = hc.projects().locations().datasets()
    parent = "projects/hc-window/locations/us-central1"
    started = time.monotonic()
    op = datasets.create(parent=parent, datasetId="fresh", body={"timeZone": "UTC"}).execute()
    assert set(op) == {"name", "metadata"}
    with pytest.raises(HttpError) as early:
        datasets.get(name=f"{parent}/datasets/fresh").execute()
    body = json.loads(early.value.content)["error"]
    assert (body["code"], body["status"], body["message"]) == (404, "NOT_FOUND", "dataset not initialized")
    with pytest.raises(HttpError) as child:
        datasets.dicomStores().create(parent=f"{parent}/datasets/fresh", dicomStoreId="s", body={}).execute()
    assert child.value.status_code == 404 and b"dataset not initialized" in child.value.content
    while time.monotonic() - started < 0.35:   # past the old fixed 0.2 s window, still before the operation ends
        time.sleep(0.02)
    assert not hc.projects().locations().datasets().operations().get(name=op["name"]).execute().get("done")
    with pytest.raises(HttpError) as still:
        datasets.get(name=f"{parent}/datasets/fresh").execute()
    assert still.value.status_code == 404
    done = wait_operation(hc, op["name"])
    assert done["response"]["name"] == f"{parent}/datasets/fresh"
    assert datasets.get(name=f"{parent}/datasets/fresh").execute()["timeZone"] == "UTC"   # usable at once
    datasets.dicomStores().create(parent=f"{parent}/datasets/fresh", dicomStoreId="s", body={}).execute()


def test_provision_waits_out_a_dataset_that_is_not_initialized_yet(emulator_factory, tmp_path):
    """A run killed right after its dataset create call leaves a dataset being initialized; the
    next run reads it inside the window, and the retry policy (404 "dataset not initialized")
    waits until it is usable instead of failing or creating it again."""
    emu = realistic_with_project(emulator_factory, tmp_path, "ohif-window", time_scale=0.2)  # creation: 1 s
    bp = load(tmp_path, blueprint_dict("ohif-window", bucket=None, dicom_stores=[{"id": "primary"}]))
    datasets = healthcare(emu.url).projects().locations().datasets()
    datasets.create(parent="projects/ohif-window/locations/us-central1", datasetId="imaging",
                    body={"timeZone": "UTC"}).execute()
    result = lifecycle.apply(bp, Target(emulator=emu.url))
    assert result.ok
    gets = [(r["status"]) for r in map(json.loads, (tmp_path / "rec.jsonl").read_text().splitlines())
            if r["method"] == "GET" and r["path"] == "/v1/projects/ohif-window/locations/us-central1/datasets/imaging"]
    assert gets[0] == 404 and gets[-1] == 200, gets          # it met the window, then saw the dataset
    creates = [r for r in map(json.loads, (tmp_path / "rec.jsonl").read_text().splitlines())
               if r["method"] == "POST" and r["path"].endswith("/datasets")]
    assert len(creates) == 1                                  # ours above: provision adopted it
    stores = datasets.dicomStores().list(parent="projects/ohif-window/locations/us-central1/datasets/imaging").execute()
    assert [s["name"].rsplit("/", 1)[1] for s in stores["dicomStores"]] == ["primary"]
