"""The hosted viewer deployed the way provision deploys it, entirely offline: its reproducible
source archive (provision.ohif.hosted_source) uploaded with google-cloud-storage, an Artifact
Registry repository, `builds:submit`, the Cloud Build operation polled to done, a Cloud Run
service with IAP on running the built image as its service account, and a member's requests
through the run.app host reaching the store with the service account's identity."""
from __future__ import annotations

import json
import time

import os

import pytest
from google.cloud import storage
from googleapiclient.errors import HttpError

import dicom_factory as f
from builds_helpers import BUILD_APIS, create_repository, submit_build, wait_build_operation
from cloudrun_helpers import REGION, Browser, behind_iap, deploy
from emulator_helpers import credentials, discovery_client, ready_store
from hosted_helpers import config_for

from provision.ohif.fetch import ensure_viewer
from provision.ohif.hosted_source import build_source
from provision.resources.hosted_archive import EMULATOR_LEVEL

PROJECT = "hosted-build-1"
ANA = "ana@example.com"
BOB = "bob@example.com"


def _records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:   # a reaped-soon zombie is gone for our purpose
        return fh.read().split()[2] != "Z"


def _enable(url: str, apis: tuple[str, ...]) -> None:
    su = discovery_client(url, "serviceusage", "v1")
    op = su.services().batchEnable(parent=f"projects/{PROJECT}", body={"serviceIds": list(apis)}).execute()
    deadline = time.time() + 30
    while not op.get("done") and time.time() < deadline:
        time.sleep(0.05)
        op = su.operations().get(name=op["name"]).execute()
    assert op.get("done"), op


def _service_account(url: str) -> str:
    iam_ = discovery_client(url, "iam", "v1")
    sa = iam_.projects().serviceAccounts().create(name=f"projects/{PROJECT}", body={
        "accountId": "ohif-viewer", "serviceAccount": {"displayName": "Hosted OHIF viewer"}}).execute()
    return sa["email"]


def test_the_hosted_viewer_is_built_deployed_and_serves_a_member_as_its_service_account(emulator_factory, tmp_path):
    record = tmp_path / "record.jsonl"
    emu = emulator_factory(record=record)
    env = ready_store(emu, project=PROJECT)
    env.dicomweb.store_instances(f.ct_series("ct1", slices=2, size=32))
    number = env.number
    # The archive provision deploys, uploaded as provision uploads it.
    artifact = build_source(tmp_path / "out", config_js=config_for(env.dicomweb_url), dist=ensure_viewer(),
                            level=EMULATOR_LEVEL)
    bucket = storage.Client(project=PROJECT, credentials=credentials(), client_options={"api_endpoint": emu.url}
                            ).create_bucket(f"{PROJECT}-sources")
    blob = bucket.blob(f"hosted/{artifact.path.name}")
    blob.upload_from_filename(str(artifact.path), content_type="application/gzip")
    source = {"bucket": bucket.name, "object": blob.name, "generation": str(blob.generation)}
    image = f"{REGION}-docker.pkg.dev/{PROJECT}/viewer/ohif-viewer"

    # Nothing builds before the APIs are on.
    with pytest.raises(HttpError) as err:
        submit_build(emu.url, PROJECT, source, image)
    assert err.value.resp.status == 403 and b"SERVICE_DISABLED" in err.value.content
    _enable(emu.url, BUILD_APIS)

    create_repository(emu.url, PROJECT)
    done = wait_build_operation(emu.url, submit_build(emu.url, PROJECT, source, image)["buildOperation"]["name"])
    built = done["response"]["results"]["images"][0]
    assert built["digest"] == f"sha256:{artifact.sha256}"   # the artifact is the image's identity

    account = _service_account(emu.url)
    env.stores.setIamPolicy(resource=env.store, body={"policy": {"bindings": [
        {"role": "roles/healthcare.dicomViewer", "members": [f"serviceAccount:{account}"]}]}}).execute()
    audience = f"/projects/{number}/locations/{REGION}/services/viewer"
    variables = {"HOSTED_IAP_AUDIENCE": audience, "HOSTED_IAP_JWKS_URL": f"{emu.url}/iap/verify/public_key-jwk",
                 "HOSTED_SOURCES": json.dumps({"store1": env.dicomweb_url})}
    body = {"iapEnabled": True, "launchStage": "BETA", "template": {
        "serviceAccount": account, "containers": [{
            "image": f"{image}@{built['digest']}", "env": [{"name": k, "value": v} for k, v in variables.items()]}]}}
    op = deploy(emu.url, PROJECT, "viewer", body)
    assert "error" not in op, op
    service = op["response"]
    behind_iap(emu.url, PROJECT, number, service, ANA)

    as_ana = {"Authorization": f"Bearer emulator:user:{ANA}"}   # IAP's programmatic access: a member
    browser = Browser(emu.url)
    config = browser.get(service["uri"] + "/app-config.js", headers=as_ana)
    assert config.status_code == 200, config.text
    assert "/dicomweb/store1" in config.text and env.dicomweb_url not in config.text   # same-origin roots
    studies = browser.get(service["uri"] + "/dicomweb/store1/studies", headers=as_ana)
    assert studies.status_code == 200, studies.text
    assert [s["0020000D"]["Value"][0] for s in studies.json()] == [f.uid("study", "ct1")]
    refused = browser.get(service["uri"] + "/dicomweb/store1/studies",
                          headers={"Authorization": f"Bearer emulator:user:{BOB}"})
    assert refused.status_code == 403   # IAP's answer for a non-member

    # Healthcare saw the service account, never the member.
    qido = [r for r in _records(record) if r["path"].endswith("/dicomWeb/studies") and r["method"] == "GET"]
    assert qido and {r["principal"] for r in qido} == {f"serviceAccount:{account}"}, qido
    # Stopping the emulator stops the service's process (conftest stops it; here it is checked).
    pids = list(emu.world.cloudrun.running().values())
    emu.stop()
    assert pids and not any(_alive(pid) for pid in pids)
