"""The local door (provision/emulator/door.py): a person's browser opens a service behind emulated IAP
at `http://SERVICE.run.app.localhost:PORT` and signs in without leaving the `.localhost` names:
every redirect names a twin, the accounts page lets the person pick the account, the service sees
the Host the browser used with an unchanged IAP assertion. Played here by a plain HTTP client that
does what a browser does with such a name: connect to loopback and send the name as Host."""
from __future__ import annotations

import re
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest
import requests

from cloudrun_helpers import REGION, behind_iap, deploy, ready_project, service_body, sign_in, upload_source

PROJECT = "door-project-1"
ANA = "ana@example.com"
BOB = "bob@example.com"


class LoopbackBrowser:
    """Goes to `http://NAME.localhost:PORT/...` by connecting to 127.0.0.1:PORT (what Chromium and
    Firefox do for `.localhost` names) with `Host: NAME.localhost:PORT`; keeps cookies per host."""

    def __init__(self) -> None:
        self.cookies: dict[str, dict[str, str]] = {}
        self.visited: list[str] = []

    def get(self, url: str) -> requests.Response:
        parts = urlsplit(url)
        assert parts.scheme == "http" and parts.hostname.endswith(".localhost"), url
        jar = self.cookies.setdefault(parts.hostname, {})
        headers = {"Host": parts.netloc}
        if jar:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
        target = f"http://127.0.0.1:{parts.port}{parts.path}" + (f"?{parts.query}" if parts.query else "")
        resp = requests.get(target, headers=headers, allow_redirects=False, timeout=30)
        for raw in resp.raw.headers.getlist("Set-Cookie"):
            for key, morsel in SimpleCookie(raw).items():
                jar[key] = morsel.value
        self.visited.append(f"{parts.hostname}{parts.path} {resp.status_code}")
        resp.url = url   # the address the browser shows, not the loopback connection
        return resp

    def follow(self, url: str) -> requests.Response:
        resp = self.get(url)
        for _ in range(10):
            if resp.status_code not in (301, 302, 303):
                break
            location = resp.headers["Location"]
            if location.startswith("/"):
                parts = urlsplit(url)
                location = f"http://{parts.netloc}{location}"
            url = location
            resp = self.get(url)
        return resp


def choose(page: requests.Response, email: str) -> str:
    """The URL the accounts page's "Use another account" form goes to with `email` typed in."""
    form = page.text.split("Use another account", 1)[1]
    fields = dict(re.findall(r'<input type=hidden name="([^"]+)" value="([^"]*)">', form))
    return f"{page.url.split('?', 1)[0]}?{urlencode({**fields, 'login_hint': email})}"


@pytest.fixture
def door(emulator):
    """A service `viewer` behind IAP (ana a member), and its local door URL."""
    number = ready_project(emulator.url, PROJECT)
    source = upload_source(emulator.url, PROJECT, "door-project-1-src")
    service = deploy(emulator.url, PROJECT, "viewer", service_body(source, iapEnabled=True))["response"]
    behind_iap(emulator.url, PROJECT, number, service, ANA)
    port = urlsplit(emulator.url).port
    host = urlsplit(service["uri"]).hostname
    return emulator, number, f"http://{host}.localhost:{port}", port, service["uri"]


def test_a_member_signs_in_at_the_local_door_and_every_hop_stays_on_localhost(door):
    emulator, number, url, port, uri = door
    sign_in(emulator.url, BOB)   # the browser's account is not the one the person picks
    browser = LoopbackBrowser()
    first = browser.get(url + "/studies?x=1")
    assert first.status_code == 302
    location = first.headers["Location"]
    assert location.startswith(f"http://accounts.google.com.localhost:{port}/o/oauth2/v2/auth?")
    # What the OAuth client registered stays Google's: only where the browser goes changes.
    assert parse_qs(urlsplit(location).query)["redirect_uri"][0].startswith("https://iap.googleapis.com/")
    page = browser.get(location)
    assert page.status_code == 200 and "Choose an account" in page.text and BOB in page.text
    final = browser.follow(choose(page, ANA))
    assert final.status_code == 200, browser.visited
    hosts = [v.split("/")[0] for v in browser.visited]
    assert hosts[:3] == [urlsplit(url).hostname, "accounts.google.com.localhost", "accounts.google.com.localhost"]
    assert "iap.googleapis.com.localhost" in hosts and all(h.endswith(".localhost") for h in hosts)
    cookie = [k for k in browser.cookies[urlsplit(url).hostname] if k.startswith("__Host-GCP_IAP_AUTH_TOKEN_")]
    assert cookie
    seen = {k.lower(): v for k, v in final.json()["headers"].items()}
    assert final.json()["path"] == "/studies?x=1"
    # The service sees the Host and scheme the browser used (its absolute URLs must work there) ...
    assert seen["host"] == urlsplit(url).netloc and seen["x-forwarded-proto"] == "http"
    # ... and the very assertion Google's IAP would send: its audience is the service, not a URL.
    keys = jwt.PyJWKSet.from_dict(requests.get(f"{emulator.url}/iap/verify/public_key-jwk").json())
    assertion = seen["x-goog-iap-jwt-assertion"]
    claims = jwt.decode(assertion, keys[jwt.get_unverified_header(assertion)["kid"]].key, algorithms=["ES256"],
                        audience=f"/projects/{number}/locations/{REGION}/services/viewer",
                        issuer="https://cloud.google.com/iap")
    assert claims["email"] == ANA
    agent = jwt.decode(seen["x-serverless-authorization"].split(" ", 1)[1], options={"verify_signature": False})
    assert agent["aud"] == uri   # IAP calls Cloud Run for the service's https URL, door or not


def test_a_non_member_gets_iaps_403_at_the_local_door(door):
    emulator, _, url, _, _ = door
    browser = LoopbackBrowser()
    page = browser.follow(url + "/")
    assert page.status_code == 200 and "Choose an account" in page.text
    denied = browser.follow(choose(page, BOB))
    assert denied.status_code == 403 and BOB in denied.text and "path" not in denied.text


def test_the_browsers_own_account_is_one_click(door):
    emulator, _, url, _, _ = door
    sign_in(emulator.url, ANA)
    browser = LoopbackBrowser()
    page = browser.follow(url + "/")
    button = re.search(r'<button id=account name=login_hint value="([^"]+)">', page.text)
    assert button and button.group(1) == ANA
    assert browser.follow(choose(page, button.group(1))).status_code == 200


def test_only_twins_of_the_hosts_it_plays_pass_the_host_check(emulator):
    port = urlsplit(emulator.url).port

    def status(host: str) -> int:
        return requests.get(f"{emulator.url}/.well-known/openid-configuration", headers={"Host": f"{host}:{port}"},
                            timeout=10).status_code

    assert status("accounts.google.com.localhost") == 200
    assert status("oauth2.googleapis.com.localhost") == 200
    for name in ("evil.localhost", "accounts.google.com.evil.localhost", "localhost.accounts.google.com", ".localhost",
                 "run.app.localhost"):
        assert status(name) == 421, name
    refused = requests.get(f"{emulator.url}/", headers={"Host": f"evil.localhost:{port}"}, timeout=10).json()
    assert "accounts.google.com.localhost" in refused["error"]["message"]   # says which .localhost names it serves


def test_a_redirect_to_an_app_elsewhere_is_left_alone(emulator):
    """Only Google hosts the emulator plays get their twin: an app's own redirect URI is the app's."""
    requests.put(f"{emulator.url}/_emulator/oauth/clients/app.apps.googleusercontent.com",
                 json={"project": "p", "redirect_uris": ["http://127.0.0.1:3000/callback"]},
                 headers={"X-Emulator-Control": "1"}).raise_for_status()
    port = urlsplit(emulator.url).port
    query = urlencode({"client_id": "app.apps.googleusercontent.com", "redirect_uri": "http://127.0.0.1:3000/callback",
                       "response_type": "code", "scope": "openid email", "login_hint": ANA})
    resp = requests.get(f"{emulator.url}/o/oauth2/v2/auth?{query}", allow_redirects=False, timeout=10,
                        headers={"Host": f"accounts.google.com.localhost:{port}"})
    assert resp.status_code == 302 and resp.headers["Location"].startswith("http://127.0.0.1:3000/callback?code=")
