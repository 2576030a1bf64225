"""The emulated Cloud Run: a service deployed from a source archive really runs, answers on its
run.app host behind Cloud Run's invoker check, gets a metadata server, and stops with the
service. All through real HTTP and the run.v2 discovery client."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from google.cloud import storage
from googleapiclient.errors import HttpError

from cloudrun_helpers import (APP, REGION, Browser, add_binding, deploy, ready_project, run_client, service_body,
                              tar_gz, upload_source, wait_run_operation)
from emulator_helpers import create_project, credentials, discovery_client

from provision.emulator import discovery

PROJECT = "run-project-1"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purpose: the emulator reaps its children when it stops them
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().split()[2] != "Z"


@pytest.fixture
def deployed(emulator):
    """A project with a service named `echo` deployed from the test app; (emulator, number, service)."""
    number = ready_project(emulator.url, PROJECT)
    source = upload_source(emulator.url, PROJECT, "run-project-1-src")
    op = deploy(emulator.url, PROJECT, "echo", service_body(source))
    assert "error" not in op, op
    return emulator, number, op["response"]


def test_deployed_service_answers_on_its_run_app_host_to_an_invoker(deployed):
    emulator, number, service = deployed
    assert service["uri"] == f"https://echo-{number}.{REGION}.run.app"
    assert service["terminalCondition"]["state"] == "CONDITION_SUCCEEDED"
    assert service["latestReadyRevision"].startswith(f"projects/{PROJECT}/locations/{REGION}/services/echo/revisions/echo-00001-")
    browser = Browser(emulator.url)
    # Nobody may invoke it yet: Google's 403 page, before any byte reaches the service.
    denied = browser.get(service["uri"] + "/hello")
    assert denied.status_code == 403 and "does not have permission to get URL" in denied.text
    add_binding(emulator.url, service["name"], "roles/run.invoker", "user:ana@example.com")
    ok = browser.get(service["uri"] + "/hello?x=1", headers={"Authorization": "Bearer emulator:user:ana@example.com"})
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["path"] == "/hello?x=1"
    assert body["env"]["K_SERVICE"] == "echo" and body["env"]["GREETING"] == "hello"
    assert body["env"]["K_REVISION"] == service["latestReadyRevision"].rsplit("/", 1)[1]
    assert body["headers"]["Host"] == f"echo-{number}.{REGION}.run.app"
    other = browser.get(service["uri"] + "/", headers={"Authorization": "Bearer emulator:user:bob@example.com"})
    assert other.status_code == 403


def test_bodies_stream_both_ways(deployed):
    emulator, _, service = deployed
    add_binding(emulator.url, service["name"], "roles/run.invoker", "allUsers")
    host = service["uri"].removeprefix("https://")
    with requests.get(f"{emulator.url}/big/{32 << 20}", headers={"Host": host}, stream=True, timeout=60) as resp:
        assert resp.status_code == 200
        total = sum(len(chunk) for chunk in resp.iter_content(1 << 20))
    assert total == 32 << 20

    def body():   # a chunked upload of 8 MB: no Content-Length, streamed through to the service
        for _ in range(128):
            yield b"y" * 65536

    posted = requests.post(f"{emulator.url}/upload", data=body(), headers={"Host": host}, timeout=60)
    assert posted.status_code == 200 and posted.json() == {"received": 8 << 20}


def test_metadata_server_gives_google_auth_a_token_of_the_service_account(emulator):
    ready_project(emulator.url, PROJECT)
    iam_ = discovery_client(emulator.url, "iam", "v1")
    sa = iam_.projects().serviceAccounts().create(name=f"projects/{PROJECT}", body={
        "accountId": "viewer-sa", "serviceAccount": {"displayName": "Viewer"}}).execute()
    assert sa["email"] == f"viewer-sa@{PROJECT}.iam.gserviceaccount.com"
    source = upload_source(emulator.url, PROJECT, "run-project-1-src")
    op = deploy(emulator.url, PROJECT, "echo", service_body(source, template={"serviceAccount": sa["email"]}))
    service = op["response"]
    add_binding(emulator.url, service["name"], "roles/run.invoker", "allUsers")
    got = Browser(emulator.url).get(service["uri"] + "/token")
    assert got.status_code == 200, got.text
    assert got.json()["email"] == sa["email"]
    info = requests.get(f"{emulator.url}/oauth2/v3/tokeninfo", params={"access_token": got.json()["token"]}).json()
    assert info["email"] == sa["email"]   # the emulator maps the token to the service account


def test_delete_stops_the_process_and_the_host(deployed):
    emulator, _, service = deployed
    pids = list(emulator.world.cloudrun.running().values())
    assert len(pids) == 1 and _alive(pids[0])
    run = run_client(emulator.url)
    op = run.projects().locations().services().delete(name=service["name"]).execute()
    assert wait_run_operation(run, op["name"])["done"]
    assert not _alive(pids[0])
    assert emulator.world.cloudrun.running() == {}
    gone = Browser(emulator.url).get(service["uri"] + "/")
    assert gone.status_code == 404
    with pytest.raises(HttpError) as err:
        run.projects().locations().services().get(name=service["name"]).execute()
    assert err.value.resp.status == 404


def test_emulator_stop_and_reset_stop_every_process(emulator_factory):
    emu = emulator_factory()
    ready_project(emu.url, PROJECT)
    source = upload_source(emu.url, PROJECT, "run-project-1-src")
    deploy(emu.url, PROJECT, "one", service_body(source))
    first = list(emu.world.cloudrun.running().values())
    requests.post(f"{emu.url}/_emulator/reset", headers={"X-Emulator-Control": "1"}).raise_for_status()
    assert first and not any(_alive(p) for p in first)
    ready_project(emu.url, PROJECT)
    source = upload_source(emu.url, PROJECT, "run-project-1-src")
    deploy(emu.url, PROJECT, "two", service_body(source))
    second = list(emu.world.cloudrun.running().values())
    emu.stop()
    assert second and not any(_alive(p) for p in second)


def test_patch_deploys_a_new_revision_and_restarts(deployed):
    emulator, _, service = deployed
    run = run_client(emulator.url)
    services = run.projects().locations().services()
    before = list(emulator.world.cloudrun.running().values())
    body = services.get(name=service["name"]).execute()
    body["template"]["containers"][0]["env"] = [{"name": "GREETING", "value": "bonjour"}]
    op = wait_run_operation(run, services.patch(name=service["name"], body=body).execute()["name"])
    assert op["response"]["latestReadyRevision"].rsplit("/", 1)[1].startswith("echo-00002-")
    after = list(emulator.world.cloudrun.running().values())
    assert after != before and not _alive(before[0])
    add_binding(emulator.url, service["name"], "roles/run.invoker", "allUsers")
    assert Browser(emulator.url).get(service["uri"] + "/").json()["env"]["GREETING"] == "bonjour"


def test_a_crash_before_ready_fails_the_operation(emulator):
    ready_project(emulator.url, PROJECT)
    source = upload_source(emulator.url, PROJECT, "run-project-1-src", {"main.py": "raise SystemExit(3)\n"})
    op = deploy(emulator.url, PROJECT, "crash", service_body(source))
    assert op["error"]["code"] == 9
    assert "is not ready and cannot serve traffic" in op["error"]["message"]
    got = run_client(emulator.url).projects().locations().services().get(
        name=f"projects/{PROJECT}/locations/{REGION}/services/crash").execute()
    assert got["terminalCondition"]["state"] == "CONDITION_FAILED"
    assert emulator.world.cloudrun.running() == {}


def test_an_archive_that_escapes_its_directory_is_refused(emulator, tmp_path):
    ready_project(emulator.url, PROJECT)
    evil = {"main.py": "print('x')\n", "../escaped.py": "x = 1\n"}
    source = upload_source(emulator.url, PROJECT, "run-project-1-src", evil)
    op = deploy(emulator.url, PROJECT, "evil", service_body(source))
    assert op["error"]["code"] == 9 and "cannot be extracted safely" in op["error"]["message"]


def test_cloud_run_is_refused_until_the_api_is_enabled(emulator):
    create_project(emulator.url, PROJECT, enable=())
    with pytest.raises(HttpError) as err:
        run_client(emulator.url).projects().locations().services().list(
            parent=f"projects/{PROJECT}/locations/{REGION}").execute()
    assert err.value.resp.status == 403
    assert b"SERVICE_DISABLED" in err.value.content and b"run.googleapis.com" in err.value.content


def test_an_unknown_body_field_is_a_400(emulator):
    ready_project(emulator.url, PROJECT)
    body = service_body({"bucket": "b", "object": "o"})
    body["template"]["containers"][0]["sourceCodez"] = {}
    with pytest.raises(HttpError) as err:
        run_client(emulator.url).projects().locations().services().create(
            parent=f"projects/{PROJECT}/locations/{REGION}", serviceId="bad", body=body).execute()
    assert err.value.resp.status == 400 and b'Unknown name \\"sourceCodez\\"' in err.value.content


def test_the_revision_service_account_must_exist(emulator):
    ready_project(emulator.url, PROJECT)
    body = service_body({"bucket": "b", "object": "o"}, template={"serviceAccount": f"nobody@{PROJECT}.iam.gserviceaccount.com"})
    with pytest.raises(HttpError) as err:
        run_client(emulator.url).projects().locations().services().create(
            parent=f"projects/{PROJECT}/locations/{REGION}", serviceId="nosa", body=body).execute()
    assert err.value.resp.status == 403 and b"iam.serviceaccounts.actAs" in err.value.content


def test_container_output_reaches_cloud_logging(deployed):
    emulator, _, service = deployed
    add_binding(emulator.url, service["name"], "roles/run.invoker", "allUsers")
    assert Browser(emulator.url).get(service["uri"] + "/logged").status_code == 200
    logging_ = discovery_client(emulator.url, "logging", "v2")
    deadline = time.time() + 10
    while True:   # written by the service (stdout) and by the front end (requests), then stored
        entries = logging_.entries().list(body={"resourceNames": [f"projects/{PROJECT}"],
                                                "filter": 'logName:"run.googleapis.com"'}).execute()
        found = [e for e in entries.get("entries", []) if (e.get("jsonPayload") or {}).get("path") == "/logged"]
        served = [e["httpRequest"] for e in entries.get("entries", [])
                  if e.get("httpRequest", {}).get("requestUrl", "").endswith("/logged")]
        if (found and served) or time.time() > deadline:
            break
        time.sleep(0.05)
    assert found and found[0]["resource"]["labels"]["service_name"] == "echo"
    assert found[0]["logName"] == f"projects/{PROJECT}/logs/run.googleapis.com%2Fstdout"
    assert served and served[0]["status"] == 200 and served[0]["requestMethod"] == "GET"


def test_answers_meet_the_discovery_schemas(deployed):
    emulator, _, service = deployed
    run = run_client(emulator.url)
    got = run.projects().locations().services().get(name=service["name"]).execute()
    assert discovery.response_problems("run", "GET", "/" + "v2/" + service["name"], got) == []
    listed = run.projects().locations().services().list(parent=f"projects/{PROJECT}/locations/-").execute()
    assert [s["name"] for s in listed["services"]] == [service["name"]]
    policy = run.projects().locations().services().getIamPolicy(resource=service["name"]).execute()
    assert discovery.problems("run.v2", "GoogleIamV1Policy", policy, strict=True) == []
    op = run.projects().locations().services().patch(name=service["name"], body={**got, "ingress": "INGRESS_TRAFFIC_ALL",
                                                                                  "description": "d"}).execute()
    done = wait_run_operation(run, op["name"])
    assert discovery.problems("run.v2", "GoogleLongrunningOperation", done, strict=True) == []
    assert done["response"]["description"] == "d" and done["response"]["generation"] == "2"


def test_service_accounts_through_iam_v1(emulator):
    ready_project(emulator.url, PROJECT)
    accounts = discovery_client(emulator.url, "iam", "v1").projects().serviceAccounts()
    made = accounts.create(name=f"projects/{PROJECT}", body={"accountId": "hosted-viewer"}).execute()
    email = f"hosted-viewer@{PROJECT}.iam.gserviceaccount.com"
    assert made["email"] == email and made["name"] == f"projects/{PROJECT}/serviceAccounts/{email}"
    with pytest.raises(HttpError) as err:
        accounts.create(name=f"projects/{PROJECT}", body={"accountId": "hosted-viewer"}).execute()
    assert err.value.resp.status == 409
    with pytest.raises(HttpError) as err:
        accounts.create(name=f"projects/{PROJECT}", body={"accountId": "no"}).execute()
    assert err.value.resp.status == 400
    assert accounts.get(name=f"projects/-/serviceAccounts/{email}").execute()["uniqueId"] == made["uniqueId"]
    assert [a["email"] for a in accounts.list(name=f"projects/{PROJECT}").execute()["accounts"]] == [email]
    accounts.delete(name=f"projects/{PROJECT}/serviceAccounts/{email}").execute()
    with pytest.raises(HttpError) as err:
        accounts.get(name=f"projects/{PROJECT}/serviceAccounts/{email}").execute()
    assert err.value.resp.status == 404


def test_under_enforce_iam_the_metadata_token_acts_as_the_service_account(emulator_factory):
    emu = emulator_factory(enforce_iam=True)
    owner = "user:owner@example.com"
    control = {"X-Emulator-Control": "1"}
    requests.put(f"{emu.url}/_emulator/policies/organizations/1", json={"bindings": [
        {"role": "roles/resourcemanager.projectCreator", "members": [owner]}]}, headers=control).raise_for_status()
    requests.put(f"{emu.url}/_emulator/policies/billingAccounts/012345-6789AB-CDEF01", json={"bindings": [
        {"role": "roles/billing.user", "members": [owner]}]}, headers=control).raise_for_status()
    create_project(emu.url, PROJECT, enable=("run.googleapis.com", "iam.googleapis.com"), member=owner,
                   parent="organizations/1")
    sa = discovery_client(emu.url, "iam", "v1", owner).projects().serviceAccounts().create(
        name=f"projects/{PROJECT}", body={"accountId": "viewer-sa"}).execute()["email"]
    client = storage.Client(project=PROJECT, credentials=credentials(owner), client_options={"api_endpoint": emu.url})
    blob = client.create_bucket("run-project-1-src").blob("src.tar.gz")
    blob.upload_from_string(tar_gz({"main.py": APP}))
    source = {"bucket": "run-project-1-src", "object": "src.tar.gz"}
    service = deploy(emu.url, PROJECT, "echo", service_body(source, template={"serviceAccount": sa}), owner)["response"]
    run = run_client(emu.url, owner).projects().locations().services()
    policy = run.getIamPolicy(resource=service["name"]).execute()
    policy["bindings"] = [{"role": "roles/run.invoker", "members": ["allUsers"]}]
    run.setIamPolicy(resource=service["name"], body={"policy": policy}).execute()
    token = Browser(emu.url).get(service["uri"] + "/token").json()["token"]
    as_sa = {"Authorization": f"Bearer {token}"}
    listing = f"{emu.url}/v2/projects/{PROJECT}/locations/{REGION}/services"
    assert requests.get(listing, headers=as_sa).status_code == 403
    crm = discovery_client(emu.url, "cloudresourcemanager", "v3", owner)
    proj_policy = crm.projects().getIamPolicy(resource=f"projects/{PROJECT}", body={}).execute()
    proj_policy["bindings"].append({"role": "roles/run.viewer", "members": [f"serviceAccount:{sa}"]})
    crm.projects().setIamPolicy(resource=f"projects/{PROJECT}", body={"policy": proj_policy}).execute()
    assert requests.get(listing, headers=as_sa).status_code == 200
    # Deploying as the account needs actAs on it: a developer without it is refused, then allowed.
    dev = "user:dev@example.com"
    proj_policy = crm.projects().getIamPolicy(resource=f"projects/{PROJECT}", body={}).execute()
    proj_policy["bindings"].append({"role": "roles/run.developer", "members": [dev]})
    crm.projects().setIamPolicy(resource=f"projects/{PROJECT}", body={"policy": proj_policy}).execute()
    body = service_body(source, template={"serviceAccount": sa})
    create = run_client(emu.url, dev).projects().locations().services().create
    with pytest.raises(HttpError) as err:
        create(parent=f"projects/{PROJECT}/locations/{REGION}", serviceId="second", body=body).execute()
    assert err.value.resp.status == 403 and b"iam.serviceaccounts.actAs" in err.value.content
    accounts = discovery_client(emu.url, "iam", "v1", owner).projects().serviceAccounts()
    sa_policy = accounts.getIamPolicy(resource=f"projects/{PROJECT}/serviceAccounts/{sa}").execute()
    sa_policy["bindings"] = [{"role": "roles/iam.serviceAccountUser", "members": [dev]}]
    accounts.setIamPolicy(resource=f"projects/{PROJECT}/serviceAccounts/{sa}", body={"policy": sa_policy}).execute()
    op = create(parent=f"projects/{PROJECT}/locations/{REGION}", serviceId="second", body=body).execute()
    assert "error" not in wait_run_operation(run_client(emu.url, dev), op["name"])


def test_a_failed_new_revision_leaves_the_last_ready_one_serving(deployed):
    emulator, _, service = deployed
    add_binding(emulator.url, service["name"], "roles/run.invoker", "allUsers")
    run = run_client(emulator.url)
    services = run.projects().locations().services()
    body = services.get(name=service["name"]).execute()
    body["template"]["containers"][0]["args"] = ["missing.py"]
    op = wait_run_operation(run, services.patch(name=service["name"], body=body).execute()["name"])
    assert op["error"]["code"] == 9
    got = services.get(name=service["name"]).execute()
    assert got["terminalCondition"]["state"] == "CONDITION_FAILED"
    assert got["latestReadyRevision"] == service["latestReadyRevision"]
    assert got["latestCreatedRevision"].rsplit("/", 1)[1].startswith("echo-00002-")
    # The old revision still answers, and after its process dies it starts again (a cold start).
    for inst in list(emulator.world.cloudrun._instances.values()):
        inst.proc.kill()
        inst.proc.wait(timeout=10)   # dead for sure before the next request (the emulator is its parent)
    page = Browser(emulator.url).get(service["uri"] + "/")
    assert page.status_code == 200 and page.json()["env"]["K_REVISION"].startswith("echo-00001-")


def test_a_ready_service_runs_again_after_a_restart_with_data_dir(emulator_factory, tmp_path):
    emu = emulator_factory(data_dir=tmp_path / "state")
    ready_project(emu.url, PROJECT)
    source = upload_source(emu.url, PROJECT, "run-project-1-src")
    service = deploy(emu.url, PROJECT, "echo", service_body(source))["response"]
    add_binding(emu.url, service["name"], "roles/run.invoker", "allUsers")
    emu.stop()
    again = emulator_factory(data_dir=tmp_path / "state")
    assert again.world.cloudrun.running() == {}
    page = Browser(again.url).get(service["uri"] + "/")
    assert page.status_code == 200 and page.json()["env"]["K_SERVICE"] == "echo"
    assert len(again.world.cloudrun.running()) == 1


def test_an_id_token_from_the_metadata_server_invokes_a_private_service(deployed):
    emulator, number, service = deployed
    run = run_client(emulator.url).projects().locations().services()
    add_binding(emulator.url, service["name"], "roles/run.invoker", "allUsers")
    browser = Browser(emulator.url)
    good = browser.get(f"{service['uri']}/idtoken?aud={service['uri']}").json()["token"]
    wrong = browser.get(f"{service['uri']}/idtoken?aud=https://elsewhere.example").json()["token"]
    identity = f"serviceAccount:{number}-compute@developer.gserviceaccount.com"   # the default identity
    run.setIamPolicy(resource=service["name"], body={"policy": {"bindings": [
        {"role": "roles/run.invoker", "members": [identity]}]}}).execute()
    assert browser.get(service["uri"] + "/", headers={"Authorization": f"Bearer {good}"}).status_code == 200
    assert browser.get(service["uri"] + "/", headers={"Authorization": f"Bearer {wrong}"}).status_code == 401
    assert browser.get(service["uri"] + "/").status_code == 403


def test_the_metadata_server_answers_like_googles(deployed):
    emulator, number, service = deployed
    add_binding(emulator.url, service["name"], "roles/run.invoker", "allUsers")
    host = Browser(emulator.url).get(service["uri"] + "/").json()["env"]["GCE_METADATA_HOST"]
    root = f"http://{host}/computeMetadata/v1"
    flavor = {"Metadata-Flavor": "Google"}
    assert requests.get(f"{root}/project/project-id").status_code == 403    # the header is required
    assert requests.get(f"{root}/project/project-id", headers=flavor).text == PROJECT
    assert requests.get(f"{root}/project/numeric-project-id", headers=flavor).text == number
    email = requests.get(f"{root}/instance/service-accounts/default/email", headers=flavor).text
    assert email == f"{number}-compute@developer.gserviceaccount.com"
    token = requests.get(f"{root}/instance/service-accounts/default/token", headers=flavor).json()
    assert token["token_type"] == "Bearer" and 0 < token["expires_in"] <= 3600
    ping = requests.get(f"http://{host}/")
    assert ping.status_code == 200 and ping.headers["Metadata-Flavor"] == "Google"


def test_only_run_app_names_pass_the_host_check(emulator):
    unknown = requests.get(f"{emulator.url}/", headers={"Host": "nothing-123.us-central1.run.app"})
    assert unknown.status_code == 404 and "Page not found" in unknown.text
    other = requests.get(f"{emulator.url}/v3/projects/x", headers={"Host": "evil.example"})
    assert other.status_code == 421


def test_iam_checks_on_the_admin_api_under_enforce_iam(emulator_factory):
    emu = emulator_factory(enforce_iam=True)
    owner, stranger = "user:owner@example.com", "user:eve@example.com"
    control = {"X-Emulator-Control": "1"}
    requests.put(f"{emu.url}/_emulator/policies/organizations/1", json={"bindings": [
        {"role": "roles/resourcemanager.projectCreator", "members": [owner]}]}, headers=control).raise_for_status()
    requests.put(f"{emu.url}/_emulator/policies/billingAccounts/012345-6789AB-CDEF01", json={"bindings": [
        {"role": "roles/billing.user", "members": [owner]}]}, headers=control).raise_for_status()
    create_project(emu.url, PROJECT, enable=("run.googleapis.com",), member=owner, parent="organizations/1")
    parent = f"projects/{PROJECT}/locations/{REGION}"
    with pytest.raises(HttpError) as err:
        run_client(emu.url, stranger).projects().locations().services().list(parent=parent).execute()
    assert err.value.resp.status == 403 and b"run.services.list" in err.value.content
    body = service_body({"bucket": "b", "object": "o"})
    op = run_client(emu.url, owner).projects().locations().services().create(
        parent=parent, serviceId="svc", body=body).execute()
    name = f"{parent}/services/svc"
    services = run_client(emu.url, stranger).projects().locations().services()
    assert services.testIamPermissions(resource=name, body={"permissions": ["run.services.get"]}).execute() == {}
    held = run_client(emu.url, owner).projects().locations().services().testIamPermissions(
        resource=name, body={"permissions": ["run.services.get", "run.routes.invoke"]}).execute()
    assert held["permissions"] == ["run.services.get", "run.routes.invoke"]
    assert wait_run_operation(run_client(emu.url, owner), op["name"])["error"]["code"] == 9   # no such object


SLOW_APP = "import time, runpy\ntime.sleep(1.5)\nrunpy.run_path('main.py', run_name='__main__')\n"


def test_a_deploy_under_way_when_the_emulator_stops_goes_on_after_a_restart(emulator_factory, tmp_path):

    emu = emulator_factory(data_dir=tmp_path / "state")
    ready_project(emu.url, PROJECT)
    source = upload_source(emu.url, PROJECT, "run-project-1-src", {"main.py": APP, "slow.py": SLOW_APP})
    body = service_body(source)
    body["template"]["containers"][0]["args"] = ["slow.py"]
    run = run_client(emu.url)
    op = run.projects().locations().services().create(parent=f"projects/{PROJECT}/locations/{REGION}",
                                                      serviceId="echo", body=body).execute()
    assert not op.get("done")
    emu.stop()     # mid-deploy: the child is stopped, no process is left
    assert emu.world.cloudrun.running() == {}
    again = emulator_factory(data_dir=tmp_path / "state")
    done = wait_run_operation(run_client(again.url), op["name"])
    assert "error" not in done and done["response"]["terminalCondition"]["state"] == "CONDITION_SUCCEEDED"
    assert len(again.world.cloudrun.running()) == 1


def test_sending_back_what_was_read_changes_nothing(deployed):
    emulator, _, service = deployed
    run = run_client(emulator.url)
    services = run.projects().locations().services()
    pid = list(emulator.world.cloudrun.running().values())
    got = services.get(name=service["name"]).execute()
    done = wait_run_operation(run, services.patch(name=service["name"], body=got).execute()["name"])
    assert done["response"]["generation"] == "1"
    assert done["response"]["latestReadyRevision"] == service["latestReadyRevision"]
    assert list(emulator.world.cloudrun.running().values()) == pid   # not restarted
    iap_on = wait_run_operation(run, services.patch(name=service["name"], body={**got, "iapEnabled": True}
                                                    ).execute()["name"])
    assert iap_on["response"]["generation"] == "2" and iap_on["response"]["iapEnabled"] is True
    assert list(emulator.world.cloudrun.running().values()) == pid   # no new revision for a service-level field


KILLED_EMULATOR = '''
import sys
sys.path[:0] = [{root!r}, {root!r} + "/tests"]
from provision.emulator.server import EmulatorServer
from provision.emulator.world import Options
from cloudrun_helpers import deploy, ready_project, service_body, upload_source
emu = EmulatorServer(Options(host="127.0.0.1", port=0)).start()
ready_project(emu.url, "run-project-1")
source = upload_source(emu.url, "run-project-1", "run-project-1-src")
deploy(emu.url, "run-project-1", "echo", service_body(source))
print(*emu.world.cloudrun.running().values(), flush=True)
sys.stdin.read()
'''


def test_a_killed_emulator_takes_its_services_with_it():
    """Even a SIGKILL (no cleanup runs) leaves no service process behind."""
    root = str(Path(__file__).resolve().parent.parent)
    emu = subprocess.Popen([sys.executable, "-c", KILLED_EMULATOR.format(root=root)], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
    try:
        pid = int(emu.stdout.readline())
        assert _alive(pid)
    finally:
        emu.kill()
        emu.wait(timeout=10)
    # The child gets SIGKILL from the kernel when its parent dies; it is reaped by init.
    deadline = time.time() + 10
    while _alive(pid) and time.time() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)
