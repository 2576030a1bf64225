"""The emulator's shared HTTP behaviour: control endpoints, Google-shaped 404s, CORS, path tricks."""
import requests

from emulator_helpers import CONTROL


def test_health_and_state(emulator):
    assert requests.get(f"{emulator.url}/_emulator/health", headers=CONTROL).json()["status"] == "ok"
    assert "docs" in requests.get(f"{emulator.url}/_emulator/state", headers=CONTROL).json()


def test_unknown_url_is_google_shaped_404(emulator):
    r = requests.get(f"{emulator.url}/v1/nothing/here")
    assert r.status_code == 404
    assert r.json()["error"]["status"] == "NOT_FOUND"


def test_cors_preflight_answers_authorization(emulator):
    r = requests.options(f"{emulator.url}/v1/projects/p/locations", headers={
        "Origin": "http://127.0.0.1:3000", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization"})
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:3000"
    assert "authorization" in r.headers["Access-Control-Allow-Headers"].lower()
    assert "GET" in r.headers["Access-Control-Allow-Methods"]


def test_dot_dot_segments_refused_and_server_keeps_serving(emulator):
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", emulator.port)
    conn.request("GET", "/v1/projects/p/locations/../../x")
    resp = conn.getresponse()
    assert resp.status == 400
    assert b"INVALID_ARGUMENT" in resp.read()
    assert requests.get(f"{emulator.url}/_emulator/health", headers=CONTROL).status_code == 200


def test_top_level_body_problems_name_the_body_field(emulator):
    r = requests.post(f"{emulator.url}/v3/projects", json={"projectId": "field-named", "foo": 1})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["message"] == "Invalid JSON payload received. Unknown name \"foo\" at 'project': Cannot find field."
    assert err["details"][0]["fieldViolations"] == [{"field": "project", "description": err["message"]}]
    # a body that is the whole request message (body "*") has no field to name
    assert requests.post(f"{emulator.url}/v3/projects", json={"projectId": "field-named"}).status_code == 200
    r = requests.post(f"{emulator.url}/v3/projects/field-named:setIamPolicy", json={"foo": 1})
    assert r.json()["error"]["message"] == "Invalid JSON payload received. Unknown name \"foo\": Cannot find field."
    assert r.json()["error"]["details"][0]["fieldViolations"] == [{"description": r.json()["error"]["message"]}]


def test_unknown_query_parameter_cannot_be_bound(emulator):
    r = requests.post(f"{emulator.url}/v3/projects", params={"foo": "1"}, json={"projectId": "query-bound"})
    assert r.status_code == 400
    assert r.json()["error"]["message"] == ("Invalid JSON payload received. Unknown name \"foo\": Cannot bind query "
                                            "parameter. Field 'foo' could not be found in request message.")
    ok = {"alt": "json", "$alt": "json;enum-encoding=int", "prettyPrint": "false", "fields": "name", "quotaUser": "x"}
    r = requests.post(f"{emulator.url}/v3/projects", params=ok, json={"projectId": "query-bound"})
    assert r.status_code == 200, r.text
    r = requests.patch(f"{emulator.url}/v3/projects/query-bound", params={"updateMask": "labels", "alt": "json"},
                       json={"labels": {"a": "b"}})
    assert r.status_code == 200, r.text
