"""Helpers for the hosted viewer's tests: the app on a real loopback port (uvicorn in a thread),
an IAP stand-in that signs assertions (ES256) and serves its JWK set, and an OHIF dist.

    with IapKeys() as iap, run_app(create_app(settings)) as url:
        httpx.get(url + "/", headers=iap.header(email="ana@example.com", aud=AUD))
"""
from __future__ import annotations

import contextlib
import io
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec

ISSUER = "https://cloud.google.com/iap"
AUD = "/projects/123456789012/locations/us-central1/services/ohif-viewer"


def config_for(root: str) -> str:
    """A minimal OHIF config with one data source at `root`."""
    return f"window.config = {{ dataSources: [{{ configuration: {{ qidoRoot: '{root}', wadoRoot: '{root}' }} }}] }};\n"


@contextlib.contextmanager
def run_app(app, *, log: io.StringIO | None = None) -> Iterator[str]:
    """Serve an ASGI app on 127.0.0.1 (a socket bound before uvicorn starts: no wait for readiness)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, access_log=False, log_level="warning", lifespan="on",
                                           timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="hosted-app", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


class IapKeys:
    """An ES256 key pair (and a second, untrusted one), its JWK set served on loopback, and assertions."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.other = ec.generate_private_key(ec.SECP256R1())   # a key IAP never published
        self.kid = "test-kid-1"
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key()))
        self.jwks = json.dumps({"keys": [{**jwk, "kid": self.kid, "alg": "ES256", "use": "sig"}]}).encode()
        self.fetches = 0
        keys = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                keys.fetches += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(keys.jwks)))
                self.end_headers()
                self.wfile.write(keys.jwks)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}/iap/verify/public_key-jwk"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> "IapKeys":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def assertion(self, *, email: str = "ana@example.com", aud: str = AUD, iss: str = ISSUER,
                  exp_in: float = 600, key=None, kid: str | None = None, alg: str = "ES256") -> str:
        now = int(time.time())
        claims = {"iss": iss, "aud": aud, "sub": f"accounts.google.com:{abs(hash(email))}", "email": email,
                  "iat": now - 5, "exp": now + int(exp_in), "hd": email.split("@")[-1]}
        return jwt.encode(claims, key or self.key, algorithm=alg, headers={"kid": kid or self.kid})

    def header(self, **kw) -> dict[str, str]:
        return {"x-goog-iap-jwt-assertion": self.assertion(**kw)}
