"""google-api-python-client's discovery clients, unmodified, with their bundled (static) discovery
documents, pointed at the emulator the way its documentation says: `client_options=
{"api_endpoint": URL}`, which replaces rootUrl + servicePath (so Cloud Storage's endpoint carries
its `/storage/v1/` service path). Every answer is also held to the method's response schema,
strictly (int64 as strings, enums in range, an operation's Any checked against its @type).

Media uploads are not made through the discovery client: for them it swaps only the host and
port of the endpoint and keeps https (`_fix_up_media_path_base_url`, shared/reference/gcp-wire.md
3.1), which cannot reach a plain-HTTP endpoint; google-cloud-storage uploads the objects instead.
"""
from __future__ import annotations

import pytest
from google.auth.credentials import AnonymousCredentials
from googleapiclient import discovery as gdisc
from googleapiclient.errors import HttpError

from emulator_helpers import ACCOUNT, HEALTHCARE, create_project, wait_operation
from provision.emulator import discovery


def build(emu, api: str, version: str, path: str = ""):
    return gdisc.build(api, version, credentials=AnonymousCredentials(), cache_discovery=False,
                       client_options={"api_endpoint": emu.url + path})


def meets(doc: str, ref: str, body: dict) -> dict:
    assert discovery.problems(doc, ref, body, strict=True) == [], body
    return body


def test_resource_manager_v1_and_v3(emulator):
    v3 = build(emulator, "cloudresourcemanager", "v3")
    v1 = build(emulator, "cloudresourcemanager", "v1")
    op = meets("cloudresourcemanager.v3", "Operation", v3.projects().create(body={
        "projectId": "disc-one", "displayName": "Discovery One", "parent": "folders/7", "labels": {"k": "v"}}).execute())
    done = meets("cloudresourcemanager.v3", "Operation", v3.operations().get(name=op["name"]).execute())
    assert done["response"]["projectId"] == "disc-one"
    v1.projects().create(body={"projectId": "disc-two", "name": "Discovery Two"}).execute()
    found = meets("cloudresourcemanager.v3", "SearchProjectsResponse",
                  v3.projects().search(query="labels.k:v").execute())
    assert [p["projectId"] for p in found["projects"]] == ["disc-one"]
    assert v3.projects().search(query="id:nothing-like-it").execute() == {}   # proto3: no empty list
    meets("cloudresourcemanager.v3", "Operation", v3.projects().delete(name="projects/disc-two").execute())
    undone = v3.projects().undelete(name="projects/disc-two", body={}).execute()
    assert undone["metadata"]["@type"].endswith("v3.UndeleteProjectMetadata")
    final = meets("cloudresourcemanager.v3", "Operation", v3.operations().get(name=undone["name"]).execute())
    assert final["response"]["state"] == "ACTIVE"
    listed = meets("cloudresourcemanager.v1", "ListProjectsResponse", v1.projects().list(filter="id:disc-*").execute())
    assert sorted(p["projectId"] for p in listed["projects"]) == ["disc-one", "disc-two"]


def test_service_usage_and_billing(emulator):
    number = create_project(emulator.url, "disc-su", enable=())
    su = build(emulator, "serviceusage", "v1")
    got = meets("serviceusage.v1", "GoogleApiServiceusageV1Service",
                su.services().get(name=f"projects/disc-su/services/{HEALTHCARE}").execute())
    assert got["config"]["title"] == "Cloud Healthcare API" and got["state"] == "DISABLED"
    op = su.services().enable(name=f"projects/{number}/services/{HEALTHCARE}", body={}).execute()
    assert meets("serviceusage.v1", "Operation", su.operations().get(name=op["name"]).execute())["done"]
    page = meets("serviceusage.v1", "ListServicesResponse",
                 su.services().list(parent="projects/disc-su", filter="state:ENABLED", pageSize=200).execute())
    assert {s["config"]["name"]: s["config"]["title"] for s in page["services"]}[HEALTHCARE] == "Cloud Healthcare API"
    beta = build(emulator, "serviceusage", "v1beta1")
    identity = beta.services().generateServiceIdentity(parent=f"projects/disc-su/services/{HEALTHCARE}").execute()
    identity = meets("serviceusage.v1beta1", "Operation", beta.operations().get(name=identity["name"]).execute())
    assert identity["response"]["email"] == f"service-{number}@gcp-sa-healthcare.iam.gserviceaccount.com"

    billing = build(emulator, "cloudbilling", "v1")
    policy = meets("cloudbilling.v1", "Policy", billing.billingAccounts().getIamPolicy(
        resource=ACCOUNT, options_requestedPolicyVersion=3).execute())
    policy["bindings"].append({"role": "roles/billing.viewer", "members": ["user:audit@example.com"]})
    meets("cloudbilling.v1", "Policy", billing.billingAccounts().setIamPolicy(
        resource=ACCOUNT, body={"policy": policy}).execute())
    with pytest.raises(HttpError) as stale:
        billing.billingAccounts().setIamPolicy(resource=ACCOUNT, body={"policy": policy}).execute()
    assert stale.value.status_code == 409
    with pytest.raises(HttpError) as unknown:                        # strict request bodies, as on Google
        billing.billingAccounts().setIamPolicy(resource=ACCOUNT, body={"policy": policy, "colour": 1}).execute()
    assert unknown.value.status_code == 400


def test_storage_copy_rewrite_compose_and_a_dataset_through_discovery(emulator):
    create_project(emulator.url, "disc-gcs", enable=(HEALTHCARE,))
    gcs = build(emulator, "storage", "v1", "/storage/v1/")   # servicePath is replaced too
    gcs.buckets().insert(project="disc-gcs", body={"name": "disc-gcs-bucket"}).execute()
    from google.cloud import storage

    client = storage.Client(project="disc-gcs", credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": emulator.url})
    client.bucket("disc-gcs-bucket").blob("a/one").upload_from_string(b"one,")   # see the module notes
    client.bucket("disc-gcs-bucket").blob("a/two").upload_from_string(b"two")
    copied = meets("storage.v1", "Object", gcs.objects().copy(
        sourceBucket="disc-gcs-bucket", sourceObject="a/one", destinationBucket="disc-gcs-bucket",
        destinationObject="b/one", body={}).execute())
    assert copied["size"] == "4"
    rewritten = meets("storage.v1", "RewriteResponse", gcs.objects().rewrite(
        sourceBucket="disc-gcs-bucket", sourceObject="a/two", destinationBucket="disc-gcs-bucket",
        destinationObject="b/two", body={}).execute())
    assert rewritten["done"] is True and rewritten["resource"]["name"] == "b/two"
    composed = meets("storage.v1", "Object", gcs.objects().compose(
        destinationBucket="disc-gcs-bucket", destinationObject="c/all",
        body={"sourceObjects": [{"name": "b/one"}, {"name": "b/two"}], "destination": {"contentType": "text/csv"}}
    ).execute())
    assert (composed["componentCount"], composed["contentType"]) == (2, "text/csv")
    assert gcs.objects().get_media(bucket="disc-gcs-bucket", object="c/all").execute() == b"one,two"
    moved = meets("storage.v1", "Object", gcs.objects().move(
        bucket="disc-gcs-bucket", sourceObject="c/all", destinationObject="d/all").execute())
    assert moved["name"] == "d/all"
    with pytest.raises(HttpError) as gone:
        gcs.objects().get(bucket="disc-gcs-bucket", object="c/all").execute()
    assert gone.value.status_code == 404

    hc = build(emulator, "healthcare", "v1")
    datasets = hc.projects().locations().datasets()
    op = datasets.create(parent="projects/disc-gcs/locations/us", datasetId="d1", body={}).execute()
    done = meets("healthcare.v1", "Operation", wait_operation(hc, op["name"]))
    assert done["response"]["@type"].endswith("v1.dataset.Dataset")
    assert done["metadata"]["apiMethodName"] == "google.cloud.healthcare.v1.dataset.DatasetService.CreateDataset"
