"""The metadata server a running revision sees (`GCE_METADATA_HOST` / `GCE_METADATA_IP`): one
small HTTP server per instance on 127.0.0.1, so the port alone says which service asks.

Paths as on Google's metadata server (what google-auth's compute_engine module calls):
`/` (its ping: 200 with `Metadata-Flavor: Google`), and under `/computeMetadata/v1/`:
`instance/service-accounts/{default|EMAIL}/` (`?recursive=true`: email, aliases, scopes),
`.../email`, `.../scopes`, `.../token` (`?scopes=` a comma-separated list), `.../identity`
(`?audience=`: an ID token), `project/project-id`, `project/numeric-project-id`,
`instance/region`, `universe/universe-domain`. Every `/computeMetadata/` request needs the
`Metadata-Flavor: Google` header (403 without, as on Google).

A token is an emulator OAuth access token whose principal is the service's service account:
under --enforce-iam a call made with it acts as that account; without, the anonymous-owner rule
applies as for any token.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from provision.emulator.oauth.state import ISSUER, subject
from provision.emulator.worldview import WorldView as World


CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
ID_TOKEN_LIFETIME_S = 3600


class MetadataServer:
    """`MetadataServer(world, identity).start()`; `.host` is what GCE_METADATA_HOST names; `.stop()`."""

    def __init__(self, world: World, identity: dict[str, str]):
        self.world = world
        self.identity = identity   # email, project_id, project_number, region
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.metadata = self  # type: ignore[attr-defined]  # the stdlib server carries it to the handlers
        self._server = server
        self.host = f"127.0.0.1:{server.server_address[1]}"
        self._thread: threading.Thread | None = None

    def start(self) -> MetadataServer:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="run-metadata", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # ------------------------------------------------------------------ answers
    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, str, Any]:
        """(status, content type, body) for one metadata path below /computeMetadata/v1/."""
        ident = self.identity
        email = ident["email"]
        accounts = "instance/service-accounts/"
        if path.startswith(accounts):
            account, _, leaf = path[len(accounts):].partition("/")
            if account not in ("default", email):
                return 404, "text/html", "Not Found"
            return self._account(leaf, query)
        text = {"project/project-id": ident["project_id"], "project/numeric-project-id": ident["project_number"],
                "instance/region": f"projects/{ident['project_number']}/regions/{ident['region']}",
                "instance/id": ident.get("instance_id", "0"), "universe/universe-domain": "googleapis.com"}
        if path in text:
            return 200, "application/text", text[path]
        return 404, "text/html", "Not Found"

    def _account(self, leaf: str, query: dict[str, list[str]]) -> tuple[int, str, Any]:
        email = self.identity["email"]
        if leaf == "" and query.get("recursive", [""])[0] == "true":
            return 200, "application/json", {"aliases": ["default"], "email": email, "scopes": [CLOUD_PLATFORM]}
        if leaf == "email":
            return 200, "application/text", email
        if leaf == "scopes":
            return 200, "application/text", CLOUD_PLATFORM + "\n"
        if leaf == "token":
            scopes = [s for s in ",".join(query.get("scopes", [])).split(",") if s] or [CLOUD_PLATFORM]
            return 200, "application/json", self._token(scopes)
        if leaf == "identity":
            audience = query.get("audience", [""])[0]
            if not audience:
                return 400, "text/html", "non-empty audience parameter required"
            return 200, "text/html", self._id_token(audience)
        return 404, "text/html", "Not Found"

    def _token(self, scopes: list[str]) -> dict:
        email = self.identity["email"]
        token, info = self.world.oauth.issue(member=f"serviceAccount:{email}", client_id=subject(email),
                                             client_project=self.identity["project_id"], scopes=scopes)
        return {"access_token": token, "expires_in": int(info["exp"] - info["iat"]), "token_type": "Bearer"}

    def _id_token(self, audience: str) -> str:
        import jwt

        key, kid = self.world.oauth.signing_key()
        now = int(self.world.clock())
        email = self.identity["email"]
        claims = {"iss": ISSUER, "aud": audience, "azp": subject(email), "sub": subject(email), "email": email,
                  "email_verified": True, "iat": now, "exp": now + ID_TOKEN_LIFETIME_S}
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # noqa: ANN002 - quiet: the service's own logs matter
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        meta: MetadataServer = self.server.metadata  # type: ignore[attr-defined]  # set on the server above
        parts = urlsplit(self.path)
        if parts.path == "/":
            return self._send(200, "application/text", "computeMetadata/\n")
        prefix = "/computeMetadata/v1/"
        if not parts.path.startswith(prefix):
            return self._send(404, "text/html", "Not Found")
        if self.headers.get("Metadata-Flavor") != "Google":
            return self._send(403, "text/html", "Missing required header: Metadata-Flavor: Google")
        try:
            status, ctype, body = meta.answer(parts.path[len(prefix):], parse_qs(parts.query))
        except Exception:  # noqa: BLE001 - the metadata server answers, never hangs
            status, ctype, body = 500, "text/html", "Internal error"
        self._send(status, ctype, body)

    def _send(self, status: int, ctype: str, body: Any) -> None:
        data = (json.dumps(body) if not isinstance(body, str) else body).encode()
        self.send_response(status)
        self.send_header("Metadata-Flavor", "Google")
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
