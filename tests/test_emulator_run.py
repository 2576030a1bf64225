"""The emulator's Cloud Run Admin v2 (services, operations, IAM), driven by the real discovery client
(googleapiclient `run` v2): what the hosted viewer's deploy will call. A deployed service does not run
yet (no archive started, no IAP in front)."""
from __future__ import annotations

import time

import pytest
import requests
from googleapiclient.errors import HttpError

from emulator_helpers import CONTROL, create_project, discovery_client

LOCATION = "us-central1"


def run_client(url: str, member: str | None = None):
    return discovery_client(url, "run", "v2", member)


def wait(run, op: dict, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while not op.get("done"):
        assert time.monotonic() < deadline, op
        time.sleep(0.05)
        op = run.projects().locations().operations().get(name=op["name"]).execute()
    return op


def service_body() -> dict:
    return {"ingress": "INGRESS_TRAFFIC_ALL", "launchStage": "BETA", "iapEnabled": True,
            "template": {"serviceAccount": "ohif-viewer@run-proj.iam.gserviceaccount.com",
                         "containers": [{"image": "us-central1-docker.pkg.dev/run-proj/ohif/viewer:abc",
                                         "env": [{"name": "HOSTED_ACCESS", "value": "iap"}]}],
                         "scaling": {"maxInstanceCount": 3}}}


def test_services_lifecycle_through_the_discovery_client(emulator):
    number = create_project(emulator.url, "run-proj", enable=("run.googleapis.com",))
    run = run_client(emulator.url)
    services = run.projects().locations().services()
    parent = f"projects/run-proj/locations/{LOCATION}"
    op = services.create(parent=parent, serviceId="ohif-viewer", body=service_body()).execute()
    assert op["name"].startswith(f"{parent}/operations/") and "done" not in op
    assert op["metadata"]["@type"] == "type.googleapis.com/google.cloud.run.v2.Service"
    done = wait(run, op)
    svc = done["response"]
    name = f"{parent}/services/ohif-viewer"
    assert svc["name"] == name and svc["iapEnabled"] is True and svc["launchStage"] == "BETA"
    assert svc["terminalCondition"]["state"] == "CONDITION_SUCCEEDED" and svc["generation"] == "1"
    assert f"https://ohif-viewer-{number}.{LOCATION}.run.app" in svc["urls"] and svc["uri"] in svc["urls"]
    assert "invokerIamDisabled" not in svc
    got = services.get(name=name).execute()
    assert got["latestReadyRevision"].startswith(f"{name}/revisions/ohif-viewer-00001-")
    assert [s["name"] for s in services.list(parent=parent).execute()["services"]] == [name]
    with pytest.raises(HttpError) as again:
        services.create(parent=parent, serviceId="ohif-viewer", body=service_body()).execute()
    assert again.value.resp.status == 409
    patched = wait(run, services.patch(name=name, body={**service_body(), "iapEnabled": False}).execute())
    assert patched["response"]["generation"] == "2" and patched["response"]["iapEnabled"] is False
    assert patched["response"]["createTime"] == svc["createTime"]
    wait(run, services.delete(name=name).execute())
    with pytest.raises(HttpError) as gone:
        services.get(name=name).execute()
    assert gone.value.resp.status == 404


def test_requests_are_checked_like_googles(emulator):
    create_project(emulator.url, "run-off", enable=("healthcare.googleapis.com",))
    run = run_client(emulator.url)
    services = run.projects().locations().services()
    with pytest.raises(HttpError) as off:
        services.list(parent=f"projects/run-off/locations/{LOCATION}").execute()
    assert off.value.resp.status == 403 and b"SERVICE_DISABLED" in off.value.content
    create_project(emulator.url, "run-on1", enable=("run.googleapis.com",))
    parent = f"projects/run-on1/locations/{LOCATION}"
    with pytest.raises(HttpError) as unknown:   # an unknown field: 400, as Google answers
        services.create(parent=parent, serviceId="v", body={"iapEnable": True}).execute()
    assert unknown.value.resp.status == 400
    with pytest.raises(HttpError) as bad_id:
        services.create(parent=parent, serviceId="Ohif_Viewer", body=service_body()).execute()
    assert bad_id.value.resp.status == 400
    op = services.create(parent=parent, serviceId="dry", body=service_body(), validateOnly=True).execute()
    wait(run, op)
    assert "services" not in services.list(parent=parent).execute()


def test_service_iam_policy_read_modify_write(emulator):
    create_project(emulator.url, "run-iam1", enable=("run.googleapis.com",))
    run = run_client(emulator.url)
    services = run.projects().locations().services()
    name = f"projects/run-iam1/locations/{LOCATION}/services/ohif-viewer"
    wait(run, services.create(parent=name.rsplit("/services/", 1)[0], serviceId="ohif-viewer",
                              body=service_body()).execute())
    policy = services.getIamPolicy(resource=name).execute()
    agent = "serviceAccount:service-1@gcp-sa-iap.iam.gserviceaccount.com"
    policy["bindings"] = [{"role": "roles/run.invoker", "members": [agent]}]
    stored = services.setIamPolicy(resource=name, body={"policy": policy}).execute()
    assert stored["bindings"] == [{"role": "roles/run.invoker", "members": [agent]}]
    with pytest.raises(HttpError) as stale:   # the old etag again: a concurrent change
        services.setIamPolicy(resource=name, body={"policy": policy}).execute()
    assert stale.value.resp.status == 409


def test_enforced_iam_uses_run_permissions(emulator_factory):
    emu = emulator_factory(enforce_iam=True)
    owner, dev = "user:ana@example.com", "user:dev@example.com"
    for resource, role in (("organizations/1", "roles/resourcemanager.projectCreator"),
                           ("billingAccounts/012345-6789AB-CDEF01", "roles/billing.user")):
        requests.put(f"{emu.url}/_emulator/policies/{resource}", json={"bindings": [
            {"role": role, "members": [owner]}]}, timeout=10, headers=CONTROL).raise_for_status()
    create_project(emu.url, "run-iam2", enable=("run.googleapis.com",), member=owner, parent="organizations/1")
    parent = f"projects/run-iam2/locations/{LOCATION}"
    with pytest.raises(HttpError) as denied:
        run_client(emu.url, dev).projects().locations().services().create(
            parent=parent, serviceId="v", body=service_body()).execute()
    assert denied.value.resp.status == 403
    run = run_client(emu.url, owner)
    wait(run, run.projects().locations().services().create(parent=parent, serviceId="v",
                                                           body=service_body()).execute())
    held = run.projects().locations().services().testIamPermissions(
        resource=f"{parent}/services/v", body={"permissions": ["run.services.get", "run.routes.invoke"]}).execute()
    assert set(held["permissions"]) == {"run.services.get", "run.routes.invoke"}   # the owner holds both


def test_iap_web_policy_of_a_cloud_run_service(emulator):
    """IAP v1 IAM on `projects/NUMBER/iap_web/cloud_run-REGION/services/S`: who may open the service."""
    number = create_project(emulator.url, "run-iap1", enable=("run.googleapis.com", "iap.googleapis.com"))
    run = run_client(emulator.url)
    wait(run, run.projects().locations().services().create(
        parent=f"projects/run-iap1/locations/{LOCATION}", serviceId="ohif-viewer", body=service_body()).execute())
    iap = discovery_client(emulator.url, "iap", "v1")
    resource = f"projects/{number}/iap_web/cloud_run-{LOCATION}/services/ohif-viewer"
    policy = iap.v1().getIamPolicy(resource=resource, body={}).execute()
    policy["bindings"] = [{"role": "roles/iap.httpsResourceAccessor", "members": ["group:radiology@example.com"]}]
    stored = iap.v1().setIamPolicy(resource=resource, body={"policy": policy}).execute()
    assert stored["bindings"] == policy["bindings"]
    assert iap.v1().getIamPolicy(resource=resource, body={}).execute()["etag"] == stored["etag"]
    by_id = f"projects/run-iap1/iap_web/cloud_run-{LOCATION}/services/ohif-viewer"   # the same resource
    assert iap.v1().getIamPolicy(resource=by_id, body={}).execute()["bindings"] == policy["bindings"]
    with pytest.raises(HttpError) as missing:
        iap.v1().getIamPolicy(resource=resource.replace("ohif-viewer", "nope"), body={}).execute()
    assert missing.value.resp.status == 404
    with pytest.raises(HttpError) as stale:
        iap.v1().setIamPolicy(resource=resource, body={"policy": policy}).execute()
    assert stale.value.resp.status == 409


def test_iap_needs_its_api_enabled(emulator):
    number = create_project(emulator.url, "run-iap2", enable=("run.googleapis.com",))
    iap = discovery_client(emulator.url, "iap", "v1")
    with pytest.raises(HttpError) as off:
        iap.v1().getIamPolicy(resource=f"projects/{number}/iap_web/cloud_run-{LOCATION}/services/x", body={}).execute()
    assert off.value.resp.status == 403 and b"SERVICE_DISABLED" in off.value.content
