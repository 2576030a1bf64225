"""Helpers for tests of the emulated Cloud Run: a project ready for it, a source archive in
Cloud Storage, a deploy through the run.v2 discovery client, and a tiny "browser" that reaches
run.app and Google hosts the way request routing does (Google's hosts by path on the emulator,
run.app hosts by their Host header), keeping cookies per host."""
from __future__ import annotations

import io
import tarfile
import textwrap
import time
from http.cookies import SimpleCookie
from urllib.parse import urlsplit

import requests
from google.cloud import storage

from emulator_helpers import CONTROL, create_project, credentials, discovery_client

REGION = "us-central1"
BASE_IMAGE = "us-central1-docker.pkg.dev/serverless-runtimes/google-22/runtimes/python312"

# The service every test deploys: echoes what reached it, mints a token through the metadata
# server with google-auth's compute_engine credentials, streams a large answer, counts a body.
APP = textwrap.dedent('''
    import json, os
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def log_message(self, *args):
            pass
        def _json(self, body, status=200):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        def do_GET(self):
            if self.path == "/token":
                import google.auth.compute_engine, google.auth.transport.requests
                creds = google.auth.compute_engine.Credentials()
                creds.refresh(google.auth.transport.requests.Request())
                return self._json({"token": creds.token, "email": creds.service_account_email})
            if self.path.startswith("/idtoken?aud="):
                import urllib.request
                aud = self.path.split("=", 1)[1]
                req = urllib.request.Request(
                    f"http://{os.environ['GCE_METADATA_HOST']}/computeMetadata/v1/instance/service-accounts/"
                    f"default/identity?audience={aud}", headers={"Metadata-Flavor": "Google"})
                return self._json({"token": urllib.request.urlopen(req).read().decode()})
            if self.path.startswith("/big/"):
                size = int(self.path.split("/")[2])
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                block = b"x" * 65536
                for _ in range(size // 65536):
                    self.wfile.write(b"%x\\r\\n%b\\r\\n" % (len(block), block))
                self.wfile.write(b"0\\r\\n\\r\\n")
                return
            print(json.dumps({"severity": "INFO", "message": "served", "path": self.path}), flush=True)
            self._json({"path": self.path, "headers": dict(self.headers),
                        "env": {k: os.environ.get(k) for k in ("K_SERVICE", "K_REVISION", "K_CONFIGURATION",
                                                                "GREETING", "GCE_METADATA_HOST")}})
        def do_POST(self):
            got = 0
            if self.headers.get("Transfer-Encoding") == "chunked":
                while True:
                    size = int(self.rfile.readline().strip(), 16)
                    if size == 0:
                        self.rfile.readline()
                        break
                    got += len(self.rfile.read(size))
                    self.rfile.readline()
            else:
                length = int(self.headers.get("Content-Length") or 0)
                while got < length:
                    got += len(self.rfile.read(min(65536, length - got)))
            self._json({"received": got})

    ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
''')


def tar_gz(files: dict[str, str | bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def ready_project(url: str, project_id: str, *, apis=("run.googleapis.com", "iam.googleapis.com",
                                                      "iap.googleapis.com")) -> str:
    """A project with billing and the APIs on; its number."""
    return create_project(url, project_id, enable=tuple(apis))


def upload_source(url: str, project_id: str, bucket: str, files: dict[str, str | bytes] | None = None,
                  member: str | None = None) -> dict:
    """The app as a gzipped tar in a new bucket; the cloudStorageSource naming it."""
    client = storage.Client(project=project_id, credentials=credentials(member),
                            client_options={"api_endpoint": url})
    b = client.create_bucket(bucket)
    blob = b.blob("viewer/source.tar.gz")
    blob.upload_from_string(tar_gz(files or {"main.py": APP}), content_type="application/gzip")
    blob.reload()
    return {"bucket": bucket, "object": blob.name, "generation": str(blob.generation)}


def service_body(source: dict, **extra) -> dict:
    container = {"image": "scratch", "baseImageUri": BASE_IMAGE, "command": ["python3"], "args": ["main.py"],
                 "sourceCode": {"cloudStorageSource": source}, "env": [{"name": "GREETING", "value": "hello"}]}
    return {"template": {"containers": [container], **extra.pop("template", {})}, **extra}


def run_client(url: str, member: str | None = None):
    return discovery_client(url, "run", "v2", member)


def wait_run_operation(run, name: str, timeout: float = 60.0) -> dict:
    deadline = time.time() + timeout
    while True:
        op = run.projects().locations().operations().get(name=name).execute()
        if op.get("done"):
            return op
        if time.time() > deadline:
            raise TimeoutError(f"operation {name} not done after {timeout}s")
        time.sleep(0.05)


def deploy(url: str, project_id: str, name: str, body: dict, member: str | None = None) -> dict:
    """Create a service and wait for its operation; the finished operation."""
    run = run_client(url, member)
    op = run.projects().locations().services().create(parent=f"projects/{project_id}/locations/{REGION}",
                                                      serviceId=name, body=body).execute()
    return wait_run_operation(run, op["name"])


def add_binding(url: str, resource: str, role: str, member: str) -> None:
    """Read-modify-write a Cloud Run service's policy."""
    services = run_client(url).projects().locations().services()
    policy = services.getIamPolicy(resource=resource).execute()
    policy.setdefault("bindings", []).append({"role": role, "members": [member]})
    services.setIamPolicy(resource=resource, body={"policy": policy}).execute()


def iap_agent(url: str, project_id: str) -> str:
    """IAP's service agent of the project (generateServiceIdentity, its operation waited for)."""
    su = discovery_client(url, "serviceusage", "v1beta1")
    op = su.services().generateServiceIdentity(parent=f"projects/{project_id}/services/iap.googleapis.com").execute()
    while not op.get("done"):
        time.sleep(0.05)
        op = su.operations().get(name=op["name"]).execute()
    return op["response"]["email"]


def grant_iap_access(url: str, number: str, service_id: str, member: str) -> None:
    """`member` may pass IAP in front of the Cloud Run service (read-modify-write of its IAP policy)."""
    iap = discovery_client(url, "iap", "v1")
    resource = f"projects/{number}/iap_web/cloud_run-{REGION}/services/{service_id}"
    policy = iap.v1().getIamPolicy(resource=resource, body={}).execute()
    policy.setdefault("bindings", []).append({"role": "roles/iap.httpsResourceAccessor", "members": [member]})
    iap.v1().setIamPolicy(resource=resource, body={"policy": policy}).execute()


def behind_iap(url: str, project_id: str, number: str, service: dict, email: str) -> None:
    """IAP's agent may invoke `service`; the user `email` may pass IAP."""
    add_binding(url, service["name"], "roles/run.invoker", f"serviceAccount:{iap_agent(url, project_id)}")
    grant_iap_access(url, number, service["name"].rsplit("/", 1)[1], f"user:{email}")


def sign_in(url: str, email: str | None) -> None:
    requests.put(f"{url}/_emulator/oauth/account", json={"email": email}, headers=CONTROL).raise_for_status()


class Browser:
    """Follows redirects across run.app and Google hosts through one emulator, with cookies."""

    def __init__(self, emulator_url: str):
        self.url = emulator_url
        self.cookies: dict[str, dict[str, str]] = {}
        self.visited: list[tuple[str, int]] = []

    def request(self, method: str, absolute: str, **kwargs) -> requests.Response:
        parts = urlsplit(absolute)
        headers = dict(kwargs.pop("headers", {}) or {})
        jar = self.cookies.setdefault(parts.hostname, {})
        if jar:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
        if parts.hostname.endswith(".run.app"):
            headers["Host"] = parts.hostname
        target = self.url + parts.path + (f"?{parts.query}" if parts.query else "")
        resp = requests.request(method, target, headers=headers, allow_redirects=False, timeout=30, **kwargs)
        for raw in resp.raw.headers.getlist("Set-Cookie"):
            for key, morsel in SimpleCookie(raw).items():
                if morsel["max-age"] == "0":
                    jar.pop(key, None)
                else:
                    jar[key] = morsel.value
        self.visited.append((f"{parts.hostname}{parts.path}", resp.status_code))
        return resp

    def get(self, absolute: str, follow: bool = True, **kwargs) -> requests.Response:
        resp = self.request("GET", absolute, **kwargs)
        hops = 0
        while follow and resp.status_code in (301, 302, 303) and hops < 10:
            location = resp.headers["Location"]
            if location.startswith("/"):
                parts = urlsplit(absolute)
                location = f"{parts.scheme}://{parts.hostname}{location}"
            absolute = location
            resp = self.request("GET", absolute)
            hops += 1
        return resp
