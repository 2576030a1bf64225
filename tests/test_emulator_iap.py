"""Emulated IAP in front of a Cloud Run service (`iapEnabled`): the sign-in redirect through the
emulator's Google accounts, IAP's 403 for a signed-in non-member, a member's request with an
assertion that verifies against the keys at Google's path, Cloud Run's own invoker check on
IAP's service agent, and IAP IAM through the iap v1 discovery client."""
from __future__ import annotations

import time

import jwt
import pytest
import requests
from googleapiclient.errors import HttpError

from cloudrun_helpers import (REGION, Browser, add_binding, deploy, grant_iap_access, iap_agent, ready_project,
                              service_body, sign_in, upload_source)
from emulator_helpers import discovery_client

PROJECT = "iap-project-1"
ANA = "ana@example.com"
BOB = "bob@example.com"


@pytest.fixture
def behind_iap(emulator):
    """A service `viewer` with IAP on, IAP's agent holding run.invoker, ana granted access."""
    number = ready_project(emulator.url, PROJECT)
    source = upload_source(emulator.url, PROJECT, "iap-project-1-src")
    op = deploy(emulator.url, PROJECT, "viewer", service_body(source, iapEnabled=True, launchStage="BETA"))
    service = op["response"]
    agent = iap_agent(emulator.url, PROJECT)
    assert agent == f"service-{number}@gcp-sa-iap.iam.gserviceaccount.com"
    add_binding(emulator.url, service["name"], "roles/run.invoker", f"serviceAccount:{agent}")
    grant_iap_access(emulator.url, number, "viewer", f"user:{ANA}")
    return emulator, number, service


def test_a_member_signs_in_and_the_service_gets_a_verifiable_assertion(behind_iap):
    emulator, number, service = behind_iap
    sign_in(emulator.url, ANA)
    browser = Browser(emulator.url)
    first = browser.get(service["uri"] + "/studies?x=1", follow=False)
    assert first.status_code == 302 and first.headers["X-Goog-IAP-Generated-Response"] == "true"
    assert first.headers["Location"].startswith("https://accounts.google.com/o/oauth2/v2/auth?")
    spoofed = {"x-goog-iap-jwt-assertion": "forged", "X-Goog-Authenticated-User-Email": "accounts.google.com:x@y"}
    page = browser.get(service["uri"] + "/studies?x=1", headers=spoofed)
    assert page.status_code == 200, (page.text, browser.visited)
    hosts = [v[0].split("/")[0] for v in browser.visited]
    assert "accounts.google.com" in hosts and "iap.googleapis.com" in hosts   # the whole sign-in round trip
    seen = {k.lower(): v for k, v in page.json()["headers"].items()}
    assert page.json()["path"] == "/studies?x=1"
    assert seen["x-goog-authenticated-user-email"] == f"accounts.google.com:{ANA}"
    assert seen["x-serverless-authorization"].startswith("Bearer ")
    assert not any(k.startswith("__host-gcp_iap") for k in seen.get("cookie", "").lower().split("="))
    keys = requests.get(f"{emulator.url}/iap/verify/public_key-jwk").json()
    key = jwt.PyJWKSet.from_dict(keys)[jwt.get_unverified_header(seen["x-goog-iap-jwt-assertion"])["kid"]]
    claims = jwt.decode(seen["x-goog-iap-jwt-assertion"], key.key, algorithms=["ES256"],
                        audience=f"/projects/{number}/locations/{REGION}/services/viewer",
                        issuer="https://cloud.google.com/iap")
    assert claims["email"] == ANA and claims["sub"].startswith("accounts.google.com:")
    assert claims["exp"] > time.time() > claims["iat"] - 5
    # The cookie carries the session: the next request needs no sign-in.
    again = browser.get(service["uri"] + "/again", follow=False)
    assert again.status_code == 200
    identity = browser.get(service["uri"] + "/?gcp-iap-mode=IDENTITY").json()
    assert identity["email"] == f"accounts.google.com:{ANA}"


def test_a_signed_in_non_member_gets_iaps_403(behind_iap):
    emulator, _, service = behind_iap
    sign_in(emulator.url, BOB)
    page = Browser(emulator.url).get(service["uri"] + "/")
    assert page.status_code == 403
    assert page.headers["X-Goog-IAP-Generated-Response"] == "true" and BOB in page.text
    assert "path" not in page.text   # nothing came from the service
    # Programmatic access (a bearer identity instead of the cookie) gets the same answers.
    as_bob = Browser(emulator.url).get(service["uri"] + "/", headers={"Authorization": f"Bearer emulator:user:{BOB}"})
    as_ana = Browser(emulator.url).get(service["uri"] + "/", headers={"Authorization": f"Bearer emulator:user:{ANA}"})
    assert (as_bob.status_code, as_ana.status_code) == (403, 200)


def test_without_a_google_session_sign_in_stops_at_google(behind_iap):
    emulator, _, service = behind_iap
    sign_in(emulator.url, None)
    page = Browser(emulator.url).get(service["uri"] + "/")
    assert page.status_code == 401 and "login_required" in page.text
    xhr = Browser(emulator.url).get(service["uri"] + "/", headers={"X-Requested-With": "XMLHttpRequest"})
    assert xhr.status_code == 401


def test_project_owner_is_no_member_and_project_level_grants_count(behind_iap):
    emulator, _, service = behind_iap
    sign_in(emulator.url, "emulator-owner@example.com")    # owns the project, not granted through IAP
    assert Browser(emulator.url).get(service["uri"] + "/").status_code == 403
    crm = discovery_client(emulator.url, "cloudresourcemanager", "v3")
    policy = crm.projects().getIamPolicy(resource=f"projects/{PROJECT}", body={}).execute()
    policy["bindings"].append({"role": "roles/iap.httpsResourceAccessor", "members": ["user:emulator-owner@example.com"]})
    crm.projects().setIamPolicy(resource=f"projects/{PROJECT}", body={"policy": policy}).execute()
    assert Browser(emulator.url).get(service["uri"] + "/").status_code == 200


def test_iaps_agent_without_run_invoker_is_refused_by_cloud_run(behind_iap):
    emulator, _, service = behind_iap
    run = discovery_client(emulator.url, "run", "v2").projects().locations().services()
    run.setIamPolicy(resource=service["name"], body={"policy": {"bindings": []}}).execute()
    sign_in(emulator.url, ANA)
    page = Browser(emulator.url).get(service["uri"] + "/")
    assert page.status_code == 403 and "does not have permission to get URL" in page.text
    assert "X-Goog-IAP-Generated-Response" not in page.headers   # Cloud Run's answer, not IAP's


def test_iap_iam_needs_the_api_and_an_existing_service(emulator):
    number = ready_project(emulator.url, PROJECT, apis=("run.googleapis.com",))
    iap = discovery_client(emulator.url, "iap", "v1")
    with pytest.raises(HttpError) as err:
        iap.v1().getIamPolicy(resource=f"projects/{number}/iap_web", body={}).execute()
    assert err.value.resp.status == 403 and b"SERVICE_DISABLED" in err.value.content
    ready_project(emulator.url, "iap-project-2")
    rec = emulator.world.crm.lookup("iap-project-2")
    with pytest.raises(HttpError) as err:
        iap.v1().getIamPolicy(resource=f"projects/{rec['number']}/iap_web/cloud_run-{REGION}/services/nope",
                              body={}).execute()
    assert err.value.resp.status == 404
    with pytest.raises(HttpError) as err:
        iap.v1().setIamPolicy(resource=f"projects/{rec['number']}/iap_web", body={"polic": {}}).execute()
    assert err.value.resp.status == 400


def test_granting_the_iap_agent_before_it_exists_fails(emulator):
    number = ready_project(emulator.url, PROJECT)
    source = upload_source(emulator.url, PROJECT, "iap-project-1-src")
    service = deploy(emulator.url, PROJECT, "viewer", service_body(source, iapEnabled=True))["response"]
    with pytest.raises(HttpError) as err:
        add_binding(emulator.url, service["name"], "roles/run.invoker",
                    f"serviceAccount:service-{number}@gcp-sa-iap.iam.gserviceaccount.com")
    assert err.value.resp.status == 400 and b"does not exist" in err.value.content


def test_clear_login_cookie_signs_out_of_the_app(behind_iap):
    emulator, _, service = behind_iap
    sign_in(emulator.url, ANA)
    browser = Browser(emulator.url)
    assert browser.get(service["uri"] + "/").status_code == 200
    cleared = browser.get(service["uri"] + "/?gcp-iap-mode=CLEAR_LOGIN_COOKIE", follow=False)
    assert cleared.status_code == 302
    host = service["uri"].removeprefix("https://")
    assert browser.cookies[host] == {}
    assert browser.get(service["uri"] + "/", follow=False).status_code == 302   # back to sign-in
