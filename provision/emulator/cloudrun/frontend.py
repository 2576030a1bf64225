"""The run.app front end: what answers `https://SERVICE-NUMBER.REGION.run.app` (the emulator
serves requests whose Host is a service's run.app name; a browser reaches it by request routing,
as it reaches Google's API hosts, or at its `.localhost` twin: provision/emulator/door.py). In
order, as on Google:

1. IAP, when the service has `iapEnabled` (provision/emulator/iap: sign-in redirect, 403 for
   non-members, the signed assertion); IAP then calls the service as its service agent;
2. Cloud Run's invoker check (unless `invokerIamDisabled`): the caller (IAP's agent, or the
   `Authorization: Bearer` identity: an ID token this emulator signed for the service's URL,
   or `emulator:MEMBER`) needs run.routes.invoke on the service; `allUsers` lets anyone in.
   Denied: Google's 403 page "Your client does not have permission to get URL";
3. the request, streamed both ways, to the service's running instance (started on demand).

These checks are the product itself, so they hold with or without --enforce-iam.
"""
from __future__ import annotations

import html
import http.client
import time
from collections.abc import Iterable, Iterator
from typing import Callable

from werkzeug.wrappers import Request, Response

from provision.emulator import door, iam
from provision.emulator.cloudrun import runner
from provision.emulator.cloudrun.views import hosts, with_defaults
from provision.emulator.oauth.state import ISSUER
from provision.emulator.worldview import WorldView as World


HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                        "trailers", "transfer-encoding", "upgrade", "host", "content-length"})
# What IAP sets itself: a client's own copy is dropped, never passed on as if IAP had sent it.
IAP_HEADERS = frozenset({"x-goog-iap-jwt-assertion", "x-goog-authenticated-user-email",
                         "x-goog-authenticated-user-id", "x-serverless-authorization"})
CHUNK = 1 << 16


def google_error_page(status: int, title: str, text: str) -> Response:
    """Google's front-end error page (`<h1>Error: Forbidden</h1>`)."""
    body = (f"\n<html><head>\n<meta http-equiv=\"content-type\" content=\"text/html;charset=utf-8\">\n"
            f"<title>{status} {html.escape(title)}</title>\n</head>\n<body text=#000000 bgcolor=#ffffff>\n"
            f"<h1>Error: {html.escape(title)}</h1>\n<h2>{text}</h2>\n<h2></h2>\n</body></html>\n")
    return Response(body, status=status, content_type="text/html; charset=UTF-8")


class Frontend:
    """The WSGI app for one run.app host."""

    def __init__(self, world: World, host: str):
        self.world = world
        self.host = host

    def __call__(self, environ, start_response):
        request = Request(environ)
        try:
            result = self._handle(request)
        except runner.StartFailed:
            result = google_error_page(503, "Service Unavailable", "The service you requested is not available yet. "
                                                                   "Please try again in 30 seconds.")
        if isinstance(result, Response):
            return result(environ, start_response)
        return result(start_response)

    def _handle(self, request: Request):
        rec = self.world.cloudrun.by_host(self.host)
        if rec is None or not rec.get("latestReadyRevision"):
            return google_error_page(404, "Page not found", "The requested URL was not found on this server.")
        spec = with_defaults(rec["spec"], rec["number"])
        if spec["ingress"] == "INGRESS_TRAFFIC_INTERNAL_ONLY":   # a request from outside the project's network
            return google_error_page(404, "Page not found", "The requested URL was not found on this server.")
        extra: dict[str, str] = {}
        invoker: str | None   # None: nobody signed in
        if spec.get("iapEnabled"):
            outcome = self.world.iap.gate(rec, request, self.host)
            if isinstance(outcome, Response):
                return outcome
            extra = outcome            # the IAP headers, X-Serverless-Authorization among them
            invoker = f"serviceAccount:{self.world.iap.agent_email(rec['number'])}"
        else:
            invoker = self._caller(request, rec)
            if invoker == "invalid":
                return google_error_page(401, "Unauthorized", "Your client does not have permission to the "
                                                              "requested URL <code>" + html.escape(request.path) + "</code>.")
        if not spec.get("invokerIamDisabled") and not self._may_invoke(invoker, rec):
            return google_error_page(403, "Forbidden", "Your client does not have permission to get URL <code>"
                                     + html.escape(request.path) + "</code> from this server.")
        inst = self.world.cloudrun.instance(rec)
        forward = _Forward(request, inst.port, lambda: self.world.cloudrun.replace_dead(rec, inst).port, self.host,
                           extra, strip_iap=bool(spec.get("iapEnabled")), timeout=_seconds(spec["template"]["timeout"]),
                           door_host=request.environ.get(door.DOOR_KEY))
        forward.on_done = lambda fields: self.world.cloudrun.log_request(rec, inst.revision, fields)
        return forward

    def _caller(self, request: Request, rec: dict) -> str | None:
        """Who calls, from `X-Serverless-Authorization` or `Authorization` (None: nobody; "invalid")."""
        header = request.headers.get("X-Serverless-Authorization") or request.headers.get("Authorization") or ""
        if not header.lower().startswith("bearer "):
            return None
        token = header[7:].strip()
        if token.startswith("emulator:"):
            return token[len("emulator:"):]
        claims = self._verify_id_token(token, rec)
        if claims is None:
            return "invalid"
        email = str(claims.get("email") or "")
        return f"serviceAccount:{email}" if email.endswith("gserviceaccount.com") else f"user:{email}"

    def _verify_id_token(self, token: str, rec: dict) -> dict | None:
        """The claims of an ID token the emulator's Google key signed for one of this service's URLs."""
        import jwt

        key, _ = self.world.oauth.signing_key()
        audiences = [f"https://{h}" for h in hosts(rec["name"], rec["number"], rec["region"])]
        audiences += list(rec["spec"].get("customAudiences") or [])
        try:
            return jwt.decode(token, key.public_key(), algorithms=["RS256"], audience=audiences, issuer=ISSUER)
        except jwt.PyJWTError:
            return None

    def _may_invoke(self, member: str | None, rec: dict) -> bool:
        chain = self.world.cloudrun.policy_chain(rec)
        holders: set[str] = set()
        for policy in chain:
            holders |= iam.members_with(policy, "run.routes.invoke")
        if "allUsers" in holders:
            return True
        return member is not None and member != "invalid" and bool({member, "allAuthenticatedUsers"} & holders)


def _seconds(duration: str) -> float:
    """A protobuf Duration (`300s`, `1.5s`) in seconds."""
    try:
        return float(str(duration).rstrip("s"))
    except ValueError:
        return 300.0


class _Forward:
    """The request passed to the instance and its answer streamed back (no buffering)."""

    def __init__(self, request: Request, port: int, restart: Callable[[], int], host: str, extra: dict[str, str],
                 *, strip_iap: bool, timeout: float = 300.0, door_host: str | None = None):
        self.request = request
        self.door_host = door_host   # the browser's NAME.run.app.localhost:PORT at the local door (emulator/door.py)
        self.timeout = timeout   # the revision's request timeout (template.timeout)
        self.on_done: Callable[[dict], None] | None = None   # gets the request log's httpRequest
        self.started = time.perf_counter()
        self.port = port
        self.restart = restart   # a new instance's port, when this one's refuses the connection
        self.host = host
        self.extra = extra
        self.strip_iap = strip_iap

    def _headers(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, value in self.request.headers.items():
            low = name.lower()
            if low in HOP_BY_HOP or low in IAP_HEADERS:
                continue
            if low == "cookie" and self.strip_iap:
                value = "; ".join(c for c in value.split("; ") if not c.startswith("__Host-GCP_IAP_AUTH_TOKEN"))
                if not value:
                    continue
            out[name] = value
        # As Cloud Run's front end: the Host the browser used and its scheme, so an absolute URL the
        # service writes (its same-origin DICOMweb roots) is one the browser can reach, door or not.
        out["Host"] = self.door_host or self.host
        out["X-Forwarded-For"] = self.request.remote_addr or "127.0.0.1"
        out["X-Forwarded-Proto"] = "http" if self.door_host else "https"
        out.update(self.extra)
        return out

    def __call__(self, start_response) -> Iterable[bytes]:
        req = self.request
        conn: http.client.HTTPConnection | None = None
        try:
            conn = self._connect()
            target = req.environ.get("RAW_URI") or req.full_path
            conn.putrequest(req.method, target, skip_host=True, skip_accept_encoding=True)
            headers = self._headers()
            length = req.content_length
            chunked = length is None and req.environ.get("wsgi.input_terminated")
            for name, value in headers.items():
                conn.putheader(name, value)
            if length is not None:
                conn.putheader("Content-Length", str(length))
            elif chunked:
                conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            self._send_body(conn, length, bool(chunked))
            resp = conn.getresponse()
        except (OSError, runner.StartFailed):
            if conn is not None:
                conn.close()
            return google_error_page(502, "Bad Gateway", "The server encountered a temporary error and could not "
                                     "complete your request.")(req.environ, start_response)
        headers_out = [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP - {"content-length"}]
        start_response(f"{resp.status} {resp.reason}", headers_out)
        return self._stream(conn, resp)

    def _logged(self, status: int, size: int) -> None:
        if self.on_done is None:
            return
        req = self.request
        fields = {"requestMethod": req.method, "requestUrl": f"https://{self.host}{req.full_path.rstrip('?')}",
                  "status": status, "responseSize": str(size), "userAgent": req.headers.get("User-Agent", ""),
                  "remoteIp": req.remote_addr or "127.0.0.1", "protocol": "HTTP/1.1",
                  "latency": f"{time.perf_counter() - self.started:.6f}s"}
        if req.content_length:
            fields["requestSize"] = str(req.content_length)
        try:
            self.on_done(fields)
        except Exception:  # noqa: BLE001 - a log line never breaks an answer
            pass

    def _connect(self) -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            conn.connect()
        except ConnectionRefusedError:   # the instance died: start another (a cold start), once
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", self.restart(), timeout=self.timeout)
            conn.connect()
        return conn

    def _send_body(self, conn: http.client.HTTPConnection, length: int | None, chunked: bool) -> None:
        stream = self.request.stream
        left = length or 0
        while chunked or left > 0:
            data = stream.read(CHUNK if chunked else min(CHUNK, left))
            if not data:
                break
            left -= len(data)
            conn.send(b"%x\r\n%b\r\n" % (len(data), data) if chunked else data)
        if chunked:
            conn.send(b"0\r\n\r\n")

    def _stream(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse) -> Iterator[bytes]:
        size = 0
        try:
            while True:
                data = resp.read1(CHUNK) if hasattr(resp, "read1") else resp.read(CHUNK)
                if not data:
                    return
                size += len(data)
                yield data
        finally:
            conn.close()
            self._logged(resp.status, size)
