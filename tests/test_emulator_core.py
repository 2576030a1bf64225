"""The emulator's shared HTTP behaviour: control endpoints, Google-shaped 404s, CORS, path tricks."""
import requests


def test_health_and_state(emulator):
    assert requests.get(f"{emulator.url}/_emulator/health").json()["status"] == "ok"
    assert "docs" in requests.get(f"{emulator.url}/_emulator/state").json()


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
    assert requests.get(f"{emulator.url}/_emulator/health").status_code == 200
