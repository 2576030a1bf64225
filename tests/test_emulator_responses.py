"""Every JSON answer the emulator gives during the whole flow matches Google's own response
schema (the discovery documents), found by matching each request to its discovery method."""
from __future__ import annotations

import json
import threading
from collections import Counter

import pytest
import requests
from werkzeug.serving import make_server

from provision.emulator import discovery
from provision.emulator.server import build
from provision.emulator.world import Options


class ResponseChecker:
    """WSGI middleware: validate each 2xx JSON body against the discovery response schema."""

    def __init__(self, app):
        self.app = app
        self.checked: Counter[str] = Counter()
        self.problems: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = int(status.split()[0]), dict(headers)
            return start_response(status, headers, exc_info)

        body = b"".join(self.app(environ, capture))
        ctype = captured["headers"].get("Content-Type", "")
        if 200 <= captured["status"] < 300 and ctype.startswith("application/json") and body:
            method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]
            found = discovery.method_for(None, method, path)
            found_problems = discovery.response_problems(None, method, path, json.loads(body))
            with self.lock:
                if found_problems is not None:
                    self.checked[found[0]] += 1
                    self.problems += [f"{method} {path}: {field}: {why}" for field, why in found_problems]
        return [body]


@pytest.fixture
def checked_emulator():
    world, app = build(Options(port=0))
    checker = ResponseChecker(app)
    server = make_server("127.0.0.1", 0, checker, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", checker
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        world.close()


def test_every_json_answer_of_the_whole_flow_matches_the_discovery_schema(checked_emulator, tmp_path):
    from provision.running import lifecycle
    from provision.blueprint.load import load_blueprint
    from provision.demo.run import run_demo
    from provision.gcp.target import Target

    url, checker = checked_emulator
    result = run_demo(out_dir=tmp_path, emulator_url=url)
    bp = load_blueprint(result.blueprint)
    target = Target(emulator=url)
    lifecycle.status(bp, target)
    # The OHIF configuration dialog's walk (Resource Manager v1 and Healthcare lists).
    for path in ("/v1/projects", "/v1/projects/ohif-demo", "/v1/projects/ohif-demo/locations",
                 "/v1/projects/ohif-demo/locations/us-central1/datasets",
                 "/v1/projects/ohif-demo/locations/us-central1/datasets/imaging/dicomStores"):
        assert requests.get(url + path, timeout=10).status_code == 200
    lifecycle.destroy(bp, target, delete_data=True, delete_project=True)

    assert checker.problems == []
    assert set(checker.checked) >= {"cloudresourcemanager.v3", "cloudresourcemanager.v1", "serviceusage.v1",
                                    "serviceusage.v1beta1", "cloudbilling.v1", "healthcare.v1", "storage.v1"}, checker.checked
    assert sum(checker.checked.values()) >= 60, checker.checked
