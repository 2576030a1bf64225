"""Google's sign-in in the emulator (provision/emulator/oauth): OpenID discovery, the authorization
endpoint's implicit and code flows, ID tokens verified with PyJWT against the JWKS, the token
endpoint driven by google-auth itself (refresh_token for authorized_user, JWT-bearer and
self-signed JWTs for service-account keys), IAM Credentials generateAccessToken through
google-auth's impersonated credentials, revocation, scopes, the quota-project rule, and every
token mapped to its principal under --enforce-iam."""
from __future__ import annotations

import base64
import hashlib
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import requests
from google.api_core.client_options import ClientOptions
from google.auth import impersonated_credentials
from google.auth.transport.requests import AuthorizedSession
from google.oauth2 import service_account
from google.oauth2.credentials import Credentials

from emulator_helpers import CONTROL, create_project

CLIENT = "1234-emu.apps.googleusercontent.com"
ORIGIN = "http://127.0.0.1:3000"
SCOPES = ("email profile openid https://www.googleapis.com/auth/cloudplatformprojects.readonly "
          "https://www.googleapis.com/auth/cloud-healthcare")
CLOUD = ["https://www.googleapis.com/auth/cloud-platform"]


def control(emu, method: str, path: str, body: dict) -> dict:
    resp = requests.request(method, f"{emu.url}/_emulator/oauth/{path}", json=body, headers=CONTROL, timeout=10)
    resp.raise_for_status()
    return resp.json()


def register(emu, project: str = "oauth-proj") -> None:
    control(emu, "PUT", f"clients/{CLIENT}", {"project": project, "redirect_uris": [f"{ORIGIN}/callback",
                                                                                    f"{ORIGIN}/silent-refresh.html"],
                                              "javascript_origins": [ORIGIN]})


def authorize(emu, **params) -> requests.Response:
    q = {"client_id": CLIENT, "redirect_uri": f"{ORIGIN}/callback", "response_type": "id_token token",
         "scope": SCOPES, "state": "s1", "nonce": "n1", **params}
    return requests.get(f"{emu.url}/o/oauth2/v2/auth", params={k: v for k, v in q.items() if v is not None},
                        allow_redirects=False, timeout=10)


def fragment(resp: requests.Response) -> dict:
    assert resp.status_code == 302, resp.text
    loc = resp.headers["Location"]
    assert loc.startswith(f"{ORIGIN}/callback#")
    return {k: v[0] for k, v in parse_qs(urlsplit(loc).fragment).items()}


def user_adc(emu, email: str, **extra) -> Credentials:
    info = control(emu, "POST", "adc", {"type": "authorized_user", "email": email, **extra})
    assert info["type"] == "authorized_user" and info["refresh_token"].startswith("1//")
    # google-auth always sends authorized_user refreshes to Google's token endpoint; the emulator is
    # reached the way provision's Target reaches it: the token endpoint redirected, nothing else.
    return Credentials.from_authorized_user_info(info, scopes=CLOUD).with_token_uri(f"{emu.url}/token")


def test_discovery_and_implicit_sign_in_with_a_verifiable_id_token(emulator):
    register(emulator)
    disc = requests.get(f"{emulator.url}/.well-known/openid-configuration", timeout=10).json()
    assert disc["issuer"] == "https://accounts.google.com"
    assert disc["authorization_endpoint"] == "https://accounts.google.com/o/oauth2/v2/auth"
    assert disc["jwks_uri"] == "https://www.googleapis.com/oauth2/v3/certs"
    assert disc["revocation_endpoint"] == "https://oauth2.googleapis.com/revoke"
    got = fragment(authorize(emulator))
    assert got["token_type"] == "Bearer" and got["state"] == "s1" and got["access_token"].startswith("ya29.")
    assert int(got["expires_in"]) == 3599
    jwks = jwt.PyJWKSet.from_dict(requests.get(f"{emulator.url}/oauth2/v3/certs", timeout=10).json())
    kid = jwt.get_unverified_header(got["id_token"])["kid"]
    claims = jwt.decode(got["id_token"], jwks[kid].key, algorithms=["RS256"], audience=CLIENT,
                        issuer="https://accounts.google.com")
    assert claims["email"] == "emulator-owner@example.com" and claims["nonce"] == "n1" and claims["azp"] == CLIENT
    half = hashlib.sha256(got["access_token"].encode()).digest()[:16]
    assert claims["at_hash"] == base64.urlsafe_b64encode(half).rstrip(b"=").decode()  # oidc-client requires it
    info = requests.get(f"{emulator.url}/v1/userinfo", headers={"Authorization": f"Bearer {got['access_token']}"},
                        timeout=10).json()
    assert info["email"] == "emulator-owner@example.com" and info["sub"] == claims["sub"] and info["name"]


def test_authorization_errors_are_googles_pages(emulator):
    register(emulator)
    cases = [({"client_id": "999-nope.apps.googleusercontent.com"}, 401, "invalid_client"),
             ({"redirect_uri": "http://evil.example/callback"}, 400, "redirect_uri_mismatch"),
             ({"redirect_uri": f"{ORIGIN}/other"}, 400, "redirect_uri_mismatch"),
             ({"scope": "openid https://www.googleapis.com/auth/not-a-scope"}, 400, "invalid_scope"),
             ({"nonce": None}, 400, "invalid_request")]
    for params, status, error in cases:
        resp = authorize(emulator, **params)
        assert resp.status_code == status and f"Error {status}: {error}" in resp.text, (params, resp.text)
        assert "Location" not in resp.headers  # a page, never a redirect to an unchecked URI
    # signed out: prompt=none (silent renewal) answers login_required to the redirect URI
    control(emulator, "PUT", "account", {"email": None})
    assert fragment(authorize(emulator, prompt="none"))["error"] == "login_required"
    control(emulator, "PUT", "account", {"email": "vic@example.com"})
    got = fragment(authorize(emulator, prompt="none"))
    assert requests.get(f"{emulator.url}/oauth2/v3/tokeninfo", params={"access_token": got["access_token"]},
                        timeout=10).json()["email"] == "vic@example.com"


def test_code_flow_with_pkce(emulator):
    register(emulator)
    verifier = "v" * 50
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    resp = authorize(emulator, response_type="code", nonce=None, code_challenge=challenge, code_challenge_method="S256")
    code = parse_qs(urlsplit(resp.headers["Location"]).query)["code"][0]
    form = {"grant_type": "authorization_code", "client_id": CLIENT, "code": code,
            "redirect_uri": f"{ORIGIN}/callback", "code_verifier": "wrong"}
    assert requests.post(f"{emulator.url}/token", data=form, timeout=10).json()["error"] == "invalid_grant"
    resp = authorize(emulator, response_type="code", nonce=None, code_challenge=challenge, code_challenge_method="S256")
    form["code"] = parse_qs(urlsplit(resp.headers["Location"]).query)["code"][0]
    form["code_verifier"] = verifier
    answer = requests.post(f"{emulator.url}/token", data=form, timeout=10).json()
    assert answer["access_token"].startswith("ya29.") and answer["id_token"]
    assert requests.post(f"{emulator.url}/token", data=form, timeout=10).status_code == 400  # a code works once


def test_tokens_are_principals_under_enforce_iam(emulator_factory):
    emu = emulator_factory(enforce_iam=True)
    ana = user_adc(emu, "ana@example.com")
    session = AuthorizedSession(ana)
    assert session.get(f"{emu.url}/v3/projects/oauth-p1", timeout=10).status_code == 403  # google-auth refreshed
    assert ana.token.startswith("ya29.")
    info = requests.get(f"{emu.url}/oauth2/v3/tokeninfo", params={"access_token": ana.token}, timeout=10).json()
    assert info["email"] == "ana@example.com" and "cloud-platform" in info["scope"]
    requests.put(f"{emu.url}/_emulator/policies/organizations/1", json={"bindings": [
        {"role": "roles/resourcemanager.projectCreator", "members": ["user:ana@example.com"]}]},
        headers=CONTROL, timeout=10).raise_for_status()
    from google.cloud import resourcemanager_v3
    client = resourcemanager_v3.ProjectsClient(credentials=ana, transport="rest",
                                               client_options=ClientOptions(api_endpoint=emu.url))
    client.create_project(project=resourcemanager_v3.Project(project_id="oauth-p1", parent="organizations/1")).result(30)
    assert session.get(f"{emu.url}/v3/projects/oauth-p1", timeout=10).status_code == 200  # ana owns what she made
    state = requests.get(f"{emu.url}/_emulator/state", headers=CONTROL, timeout=10).text
    assert ana.token not in state and ana.refresh_token not in state  # kept as hashes only
    # revoked: every call is a 401 (with or without --enforce-iam), and google-auth cannot refresh the grant
    assert requests.post(f"{emu.url}/revoke", data={"token": ana.token}, timeout=10).json() == {}
    resp = requests.get(f"{emu.url}/v3/projects/oauth-p1", headers={"Authorization": f"Bearer {ana.token}"}, timeout=10)
    assert resp.status_code == 401 and resp.json()["error"]["details"][0]["reason"] == "ACCESS_TOKEN_EXPIRED"
    refresh = requests.post(f"{emu.url}/token", data={"grant_type": "refresh_token", "client_id": ana.client_id,
                                                       "client_secret": ana.client_secret,
                                                       "refresh_token": ana.refresh_token}, timeout=10)
    assert refresh.status_code == 400 and refresh.json()["error"] == "invalid_grant"
    assert requests.post(f"{emu.url}/revoke", data={"token": ana.token}, timeout=10).status_code == 400


def test_service_account_keys_and_impersonation(emulator_factory):
    emu = emulator_factory(enforce_iam=True)
    owner = "user:ana@example.com"
    requests.put(f"{emu.url}/_emulator/policies/organizations/1", json={"bindings": [
        {"role": "roles/resourcemanager.projectCreator", "members": [owner]}]}, headers=CONTROL, timeout=10)
    requests.put(f"{emu.url}/_emulator/policies/billingAccounts/012345-6789AB-CDEF01", json={"bindings": [
        {"role": "roles/billing.user", "members": [owner]}]}, headers=CONTROL, timeout=10)
    create_project(emu.url, "oauth-sa", member=owner, parent="organizations/1", enable=())
    sa_email = "ci@oauth-sa.iam.gserviceaccount.com"
    key = control(emu, "POST", "adc", {"type": "service_account", "email": sa_email})
    assert key["token_uri"] == f"{emu.url}/token" and "BEGIN PRIVATE KEY" in key["private_key"]
    sa = service_account.Credentials.from_service_account_info(key, scopes=CLOUD)
    url = f"{emu.url}/v3/projects/oauth-sa"
    assert AuthorizedSession(sa).get(url, timeout=10).status_code == 403   # JWT-bearer grant: the SA, no role
    requests.post(f"{emu.url}/v3/projects/oauth-sa:setIamPolicy", json={"policy": {"bindings": [
        {"role": "roles/owner", "members": [owner]},
        {"role": "roles/viewer", "members": [f"serviceAccount:{sa_email}"]}]}},
        headers={"Authorization": "Bearer emulator:" + owner}, timeout=10).raise_for_status()
    assert AuthorizedSession(sa).get(url, timeout=10).status_code == 200
    from google.cloud import resourcemanager_v3  # the gapic client signs its own JWT (always_use_jwt_access)
    client = resourcemanager_v3.ProjectsClient(credentials=sa, transport="rest",
                                               client_options=ClientOptions(api_endpoint=emu.url))
    assert client.get_project(name="projects/oauth-sa").project_id == "oauth-sa"
    # impersonation: bob may act as deployer only once he holds Token Creator on it
    bob = user_adc(emu, "bob@example.com")
    deployer = "deployer@oauth-sa.iam.gserviceaccount.com"
    endpoint = f"{emu.url}/v1/projects/-/serviceAccounts/{deployer}:generateAccessToken"
    acting = impersonated_credentials.Credentials(source_credentials=bob, target_principal=deployer,
                                                  target_scopes=CLOUD, iam_endpoint_override=endpoint)
    from google.auth.exceptions import RefreshError
    with pytest.raises(RefreshError, match="Gaia id not found"):
        AuthorizedSession(acting).get(url, timeout=10)
    control(emu, "PUT", f"service-accounts/{deployer}", {"bindings": []})
    with pytest.raises(RefreshError, match="iam.serviceAccounts.getAccessToken"):
        AuthorizedSession(acting).get(url, timeout=10)
    control(emu, "PUT", f"service-accounts/{deployer}", {"bindings": [
        {"role": "roles/iam.serviceAccountTokenCreator", "members": ["user:bob@example.com"]}]})
    assert AuthorizedSession(acting).get(url, timeout=10).status_code == 403  # deployer holds nothing on it
    who = requests.get(f"{emu.url}/oauth2/v3/tokeninfo", params={"access_token": acting.token}, timeout=10).json()
    assert who["email"] == deployer


def test_scopes_and_the_quota_project(emulator_factory):
    emu = emulator_factory(enforce_iam=True)
    owner = "user:ana@example.com"
    requests.put(f"{emu.url}/_emulator/policies/organizations/1", json={"bindings": [
        {"role": "roles/resourcemanager.projectCreator", "members": [owner]}]}, headers=CONTROL, timeout=10)
    requests.put(f"{emu.url}/_emulator/policies/billingAccounts/012345-6789AB-CDEF01", json={"bindings": [
        {"role": "roles/billing.user", "members": [owner]}]}, headers=CONTROL, timeout=10)
    create_project(emu.url, "oauth-q", member=owner, parent="organizations/1", enable=())
    services = f"{emu.url}/v1/projects/oauth-q/services"
    # gcloud's ADC for a user, no quota project: Service Usage refuses, Google's words and ErrorInfo
    resp = AuthorizedSession(user_adc(emu, "ana@example.com")).get(services, timeout=10)
    assert resp.status_code == 403
    err = resp.json()["error"]
    assert "requires a quota project, which is not set by default" in err["message"]
    assert err["details"][0]["reason"] == "SERVICE_DISABLED"
    assert err["details"][0]["metadata"] == {"consumer": "projects/764086051850", "service": "serviceusage.googleapis.com"}
    assert AuthorizedSession(user_adc(emu, "ana@example.com")).get(f"{emu.url}/v3/projects/oauth-q",
                                                                   timeout=10).status_code == 200
    # with the file's quota_project_id google-auth sends x-goog-user-project: accepted
    creds = user_adc(emu, "ana@example.com", quota_project_id="oauth-q")
    assert creds.quota_project_id == "oauth-q"
    assert AuthorizedSession(creds).get(services, timeout=10).status_code == 200
    # a quota project the caller may not use
    bob = AuthorizedSession(user_adc(emu, "bob@example.com").with_quota_project("oauth-q"))
    resp = bob.get(services, timeout=10)
    assert resp.status_code == 403 and resp.json()["error"]["details"][0]["reason"] == "USER_PROJECT_DENIED"
    assert "Caller does not have required permission to use project oauth-q" in resp.json()["error"]["message"]
    # a viewer token (OHIF's scopes) cannot call Service Usage: insufficient scopes
    register(emu, "oauth-q")
    requests.put(f"{emu.url}/_emulator/oauth/account", json={"email": "ana@example.com"}, headers=CONTROL, timeout=10)
    viewer = fragment(authorize(emu))["access_token"]
    resp = requests.get(services, headers={"Authorization": f"Bearer {viewer}"}, timeout=10)
    assert resp.status_code == 403 and resp.json()["error"]["details"][0]["reason"] == "ACCESS_TOKEN_SCOPE_INSUFFICIENT"
    assert requests.get(f"{emu.url}/v1/projects/oauth-q", headers={"Authorization": f"Bearer {viewer}"},
                        timeout=10).status_code == 200  # cloudplatformprojects.readonly reads projects


def test_token_lifetime_and_expiry(emulator):
    register(emulator)
    control(emulator, "PUT", "settings", {"token_lifetime_s": 1})
    got = fragment(authorize(emulator))
    assert got["expires_in"] == "1"
    import time
    time.sleep(1.2)
    resp = requests.get(f"{emulator.url}/v1/projects/x", headers={"Authorization": f"Bearer {got['access_token']}"},
                        timeout=10)
    assert resp.status_code == 401  # expired, even without --enforce-iam
