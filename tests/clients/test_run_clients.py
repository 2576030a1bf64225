"""google-cloud-run, unmodified, over its REST transport against the emulator: a source deploy
(`source_code.cloud_storage_source` + `base_image_uri`, no build) created, read, listed, its IAM
policy set, updated and deleted, every answer parsed by the client's strict protobuf messages
(the operations' metadata and response are `google.cloud.run.v2.Service`)."""
from __future__ import annotations

import pytest
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import run_v2
from google.iam.v1 import iam_policy_pb2, policy_pb2

from cloudrun_helpers import BASE_IMAGE, REGION, Browser, ready_project, upload_source

PROJECT = "run-client-1"


def client(emu) -> run_v2.ServicesClient:
    return run_v2.ServicesClient(credentials=AnonymousCredentials(), transport="rest",
                                 client_options=ClientOptions(api_endpoint=emu.url))


def test_deploy_read_update_delete_with_google_cloud_run(emulator):
    number = ready_project(emulator.url, PROJECT)
    src = upload_source(emulator.url, PROJECT, "run-client-1-src")
    services = client(emulator)
    parent = f"projects/{PROJECT}/locations/{REGION}"
    container = run_v2.Container(
        image="scratch", base_image_uri=BASE_IMAGE, command=["python3"], args=["main.py"],
        env=[run_v2.EnvVar(name="GREETING", value="hi")],
        source_code=run_v2.SourceCode(cloud_storage_source=run_v2.SourceCode.CloudStorageSource(
            bucket=src["bucket"], object_=src["object"], generation=int(src["generation"]))))
    wanted = run_v2.Service(template=run_v2.RevisionTemplate(containers=[container]), iap_enabled=True,
                            ingress=run_v2.IngressTraffic.INGRESS_TRAFFIC_ALL, launch_stage="BETA")
    made = services.create_service(parent=parent, service=wanted, service_id="hosted").result(timeout=60)
    assert made.uri == f"https://hosted-{number}.{REGION}.run.app"
    assert made.iap_enabled and not made.invoker_iam_disabled
    assert made.terminal_condition.state == run_v2.Condition.State.CONDITION_SUCCEEDED
    assert made.template.containers[0].source_code.cloud_storage_source.bucket == src["bucket"]
    assert made.latest_ready_revision.endswith("/revisions/" + made.latest_created_revision.rsplit("/", 1)[1])

    assert [s.name for s in services.list_services(parent=parent)] == [made.name]
    policy = services.set_iam_policy(request=iam_policy_pb2.SetIamPolicyRequest(
        resource=made.name, policy=policy_pb2.Policy(bindings=[policy_pb2.Binding(
            role="roles/run.invoker", members=["allUsers"])])))
    assert [b.role for b in policy.bindings] == ["roles/run.invoker"]
    assert services.get_iam_policy(request=iam_policy_pb2.GetIamPolicyRequest(resource=made.name)).etag == policy.etag

    changed = services.get_service(name=made.name)
    changed.iap_enabled = False
    changed.template.containers[0].env = [run_v2.EnvVar(name="GREETING", value="bonjour")]
    updated = services.update_service(service=changed).result(timeout=60)
    assert updated.generation == 2 and not updated.iap_enabled
    answer = Browser(emulator.url).get(updated.uri + "/").json()
    assert answer["env"]["GREETING"] == "bonjour"

    services.delete_service(name=made.name).result(timeout=60)
    with pytest.raises(gexc.NotFound):
        services.get_service(name=made.name)
