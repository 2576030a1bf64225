"""The HTTP layer shared by every API: routing, strict JSON bodies, who is calling, IAM checks,
CORS, fault injection, the request record, and Google-shaped errors. API modules only declare
routes and turn requests into backend calls.

Routing works on the raw request path: it is split on `/` first and each segment is then
percent-decoded, so `%2F` is never a separator. An encoded slash inside a resource ID is a
400, as on Google; a `<path:...>` argument (a Cloud Storage object name) keeps it as `/`.
The `.`/`..` rule applies to raw segments only (`a%2F..%2Fb` is a legal object name).

Any exception a handler did not turn into an ApiError answers a Google-shaped 500 INTERNAL
(the traceback goes to stderr, never to the client), with CORS headers, and is recorded.

What a web page can do here (the emulator answers CORS for any Origin on Google's API paths,
as Google does, so a page in the user's browser is a client too):
- DNS rebinding: every request's `Host` must name the emulator: `localhost`, `127.0.0.1`,
  `[::1]`, the bound address or a name given with `--allow-host`, on any port (dicomweb-client
  sends no port, port forwarding changes it, and a rebinding page differs by its name, not
  its port). When bound to a wildcard address (0.0.0.0, ::) any IP literal is served too: a
  rebinding page always comes by a DNS name. Anything else is a 421 Misdirected Request,
  before any routing, and changes nothing; except a name a backend answers for itself
  (`World.host_app`: a Cloud Run service's `*.run.app`), which no rebinding page can own, and
  the `.localhost` twin of a Google host the emulator plays (provision/emulator/door.py: such a
  name resolves to loopback only, so no remote page can own it either).
- Control endpoints (`/_emulator/*`) need the header `X-Emulator-Control` (any value, e.g. `1`).
  A page cannot send it cross-origin without a CORS preflight, and preflights for them are
  refused (403, no Access-Control-* headers); their answers never carry CORS headers. A
  request marked as coming from a page (`Origin` or `Sec-Fetch-Site`) is refused too, which
  covers a page served by the emulator itself (an HTML object downloaded from a bucket).
- `--record` never writes a header, and keeps the name but not the value of credential query
  parameters (`access_token`, `upload_id`, ...; see provision.redact).
"""
# Long module (issue 20): the HTTP layer every API shares; its App is one request's life in order.
from __future__ import annotations

import ipaddress
import json
import re
import socket
import struct
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import unquote_to_bytes, urlsplit

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge
from werkzeug.routing import BaseConverter, Map, PathConverter, Rule
from werkzeug.wrappers import Request, Response

from provision.emulator import auditlog, discovery, door, iam, quotas
from provision.emulator.errors import ApiError, error_info, permission_denied, unauthenticated
from provision.emulator.options import Options
from provision.emulator.world import World
from provision.redact import redact, redact_query, redact_value

JSON_LIMIT = 10 * 1024 * 1024
ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
CONTROL_PREFIX = "/_emulator"
CONTROL_HEADER = "X-Emulator-Control"  # required on /_emulator/*: a page cannot send it without a preflight
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
WILDCARD_ADDRESSES = frozenset({"0.0.0.0", "[::]", ""})


def is_control(path: str) -> bool:
    """Whether `path` is one of the emulator's own control endpoints (not a Google API)."""
    return path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/")


def host_name(value: str) -> str:
    """The name in a Host header (or an --allow-host value), lower-case, without its port:
    `[::1]:8765` -> `[::1]`, `LocalHost:80` -> `localhost`; a bare IPv6 address gets its brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[: end + 1] if end > 0 else value
    if value.count(":") > 1:  # a bare IPv6 address (a bind address, never a valid Host)
        return f"[{value}]"
    name, sep, port = value.rpartition(":")
    return name if sep and (port.isdigit() or not port) else value


def served_host_names(options: Options) -> frozenset[str]:
    """The Host names the emulator answers: loopback names, the bound address, --allow-host names."""
    return LOOPBACK_NAMES | {host_name(options.host)} | {host_name(h) for h in options.allow_hosts}


def _is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name[1:-1] if name.startswith("[") else name)
    except ValueError:
        return False
    return True


class IdConverter(BaseConverter):
    """One path segment that cannot swallow a custom verb (`s:getIamPolicy`)."""

    regex = r"[^/:]+"


@dataclass
class Route:
    api: str                     # e.g. "healthcare", used in the record and for the error style
    handler: Callable[..., Any]
    discovery: tuple[str, str] | None = None   # (document, method id) whose request schema the body must meet
    body_limit: int = JSON_LIMIT
    url_credential: bool = False  # the URL itself is the credential (a resumable-upload session URI)


class Router:
    """Collects the routes of every API module."""

    def __init__(self) -> None:
        self.rules: list[Rule] = []
        self.routes: dict[str, Route] = {}
        self._map: Map | None = None

    def route(self, methods: str | list[str], rule: str, *, api: str, discovery: tuple[str, str] | None = None,
              body_limit: int = JSON_LIMIT, url_credential: bool = False) -> Callable:
        """Decorator: `@router.route("GET", "/v3/projects/<id:project>", api="cloudresourcemanager")`."""
        verbs = [methods] if isinstance(methods, str) else list(methods)

        def wrap(fn: Callable) -> Callable:
            endpoint = f"{fn.__module__}.{fn.__qualname__}:{rule}:{','.join(verbs)}"
            self.routes[endpoint] = Route(api, fn, discovery, body_limit, url_credential)
            self.rules.append(Rule(rule, endpoint=endpoint, methods=verbs))
            self._map = None
            return fn

        return wrap

    def include(self, other: "Router") -> "Router":
        """Add every route of `other` (an API module's router) to this one; returns self."""
        self.rules.extend(rule.empty() for rule in other.rules)
        self.routes.update(other.routes)
        self._map = None
        return self

    def build(self) -> Map:
        """The werkzeug Map of these routes, built once and shared by every App made from this router:
        compiling ~200 rules costs ~0.1-0.5 s, and a Map is read-only once built (matching is thread-safe)."""
        if self._map is None:
            self._map = Map(self.rules, converters={"id": IdConverter}, strict_slashes=False, merge_slashes=False)
        return self._map


class Ctx:
    """One request as a handler sees it."""

    def __init__(self, world: World, request: Request, route: Route, principal: str | None):
        self.world = world
        self.request = request
        self.route = route
        self.principal = principal
        self.query = request.args
        self._json: Any = _UNSET

    def json(self, *, validate: bool = True) -> Any:
        """The request body parsed as JSON ({} when empty), checked against the method's discovery schema."""
        if self._json is _UNSET:
            self._json = parse_json_body(self.request, self.route.body_limit)
            if self.route.discovery and "enum-encoding=int" in self.query.get("$alt", ""):
                self._json = discovery.enum_names(*self.route.discovery, self._json)
            if validate and self.route.discovery:
                discovery.validate_request(*self.route.discovery, self._json)
        return self._json

    def allows(self, permission: str, policies: Sequence[dict | None]) -> bool:
        """Whether the caller holds `permission` through one of `policies` (the resource's own policy
        and its ancestors'); always under no --enforce-iam, where every caller is the owner."""
        if not self.world.options.enforce_iam:
            return True
        return iam.allowed(self.principal or "", permission, [p for p in policies if p])

    def require(self, permission: str, resource: str, policies: Sequence[dict | None]) -> None:
        """Deny unless the caller `allows` `permission` through one of `policies`."""
        if not self.allows(permission, policies):
            raise permission_denied(f"Permission '{permission}' denied on resource '{resource}' (or it may not exist).")


_UNSET = object()


BODY_KEY = "provision.emulator.body"  # environ key: the request body once read (bytes), or TOO_LARGE
TOO_LARGE = object()


def read_body(request: Request, limit: int) -> bytes | None:
    """The request body, read once and at most `limit` bytes of it: None when it is larger (a
    declared length is refused before reading; a chunked body stops at `limit` + 1 bytes)."""
    cached = request.environ.get(BODY_KEY)
    if cached is TOO_LARGE:
        return None
    if cached is None and isinstance(getattr(request, "_cached_data", None), bytes):
        cached = request._cached_data  # a handler read it with werkzeug's get_data()
        request.environ[BODY_KEY] = cached if len(cached) <= limit else TOO_LARGE
        return cached if len(cached) <= limit else None
    if cached is not None:
        return cached
    if request.content_length and request.content_length > limit:
        request.environ[BODY_KEY] = TOO_LARGE
        return None
    buf = bytearray()
    read = request.stream.read
    while len(buf) <= limit:
        chunk = read(min(1 << 20, limit + 1 - len(buf)))
        if not chunk:
            break
        buf += chunk
    if len(buf) > limit:
        request.environ[BODY_KEY] = TOO_LARGE
        return None
    request.environ[BODY_KEY] = raw = bytes(buf)
    return raw


def parse_json_body(request: Request, limit: int = JSON_LIMIT) -> Any:
    """Parse a JSON request body the way Google's front end does: empty is {}, junk is a 400."""
    raw = read_body(request, limit)
    if raw is None:
        raise ApiError("INVALID_ARGUMENT", f"Request payload size exceeds the limit: {limit} bytes.", http_status=413)
    if not raw.strip():
        return {}
    ctype = (request.mimetype or "").lower()
    if ctype and ctype not in ("application/json", "text/plain", "application/x-www-form-urlencoded"):
        raise ApiError("INVALID_ARGUMENT", f"Invalid JSON payload received. Unsupported content type {ctype!r}.")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError("INVALID_ARGUMENT", f"Invalid JSON payload received. {exc}.") from None


def json_response(body: Any, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers, content_type="application/json; charset=UTF-8")


class Recorder:
    """`--record FILE`: one JSON line per request, the audit trail of what a client did."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()

    def write(self, entry: dict) -> None:
        line = json.dumps(entry, separators=(",", ":")) + "\n"
        with self.lock, open(self.path, "a") as fh:
            fh.write(line)


class App:
    """The WSGI application: one port, every API."""

    def __init__(self, world: World, router: Router):
        self.world = world
        self.map = router.build()
        self.routes = router.routes
        self.recorder = Recorder(world.options.record) if world.options.record else None
        self.host_names = served_host_names(world.options)
        self.any_ip = host_name(world.options.host) in WILDCARD_ADDRESSES

    # Long on purpose (issue 20): one request's life in order (route, authorize, answer, audit, record).
    def __call__(self, environ, start_response):
        name = host_name(environ.get("HTTP_HOST", ""))
        real = door.google_name(name)
        if real is not None:   # a .localhost twin of a Google host, from a person's browser (emulator/door.py)
            environ[door.DOOR_KEY] = environ["HTTP_HOST"].strip().lower()
            start_response = door.rewriting(start_response, environ[door.DOOR_KEY])
            name = real
        virtual = self.world.host_app(name)
        if virtual is not None:   # a deployed service's run.app host (provision/emulator/cloudrun/frontend.py)
            return virtual(environ, start_response)
        request = Request(environ)
        started = time.perf_counter()
        api, principal, status = "unknown", None, 500
        audited: tuple | None = None   # (handler name, path arguments) of a call that may be audited
        control = is_control(request.path)
        cors = not control
        response: Response
        try:
            if not self._host_served(request):
                cors = False  # a rebinding page is same-origin: CORS headers would only add noise
                raise self._misdirected(request)
            if control:
                self._guard_control(request)
            principal = self._principal(request)
            segments = _raw_segments(environ, request)
            if any(raw in (b".", b"..") for raw, _ in segments):
                raise ApiError("INVALID_ARGUMENT", f"Invalid resource path {request.path!r}: '.' and '..' segments are not allowed.")
            if request.method == "OPTIONS":
                response = self._preflight(request)
                api = "cors"
            else:
                adapter = self.map.bind_to_environ(environ)
                rule, args = adapter.match(path_info="/".join(_escape(seg) for _, seg in segments), return_rule=True)
                route = self.routes[rule.endpoint]
                api = route.api
                args = _decode_args(rule, args)
                audited = (route.handler.__name__, args)
                response = self._dispatch(request, route, args, principal, environ)
        except ApiError as exc:
            response = json_response(exc.body(_style(api, request.path)), exc.http_status)
        except (NotFound, MethodNotAllowed):
            response = self._not_found(request)
        except RequestEntityTooLarge:
            response = json_response(ApiError("INVALID_ARGUMENT", "Request payload size exceeds the limit.",
                                              http_status=413).body(), 413)
        except HTTPException as exc:
            response = json_response(ApiError("INVALID_ARGUMENT", exc.description or "Bad request.",
                                              http_status=exc.code or 400).body(), exc.code or 400)
        except (TimeoutError, ConnectionError):  # the client stalled (socket timeout) or went away mid-body
            err = ApiError("INVALID_ARGUMENT", "The client stopped sending the request body.", http_status=408,
                           gcs_reason="requestTimeout")
            response = json_response(err.body(_style(api, request.path)), 408)
        except Exception:  # noqa: BLE001 - a bug: Google's 500, the traceback on stderr only
            print(f"emulator: unhandled error in {request.method} {request.path}", file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
            response = json_response(ApiError("INTERNAL", "Internal error encountered.").body(_style(api, request.path)),
                                     500)
        status = response.status_code
        # Bytes this request stored are referenced by now (committed), or never will be.
        if self.world.blobs.release_pins() and status >= 400:
            self.world.blobs_dirty()
        if cors:
            self._cors(request, response)
        if audited is not None and api in auditlog.SERVICES:
            try:
                auditlog.write(self.world, api, audited[0], audited[1], request, principal, status)
            except Exception:  # noqa: BLE001 - a bug in the trail must not fail the call it records
                print(f"emulator: audit entry for {request.method} {request.path} failed", file=sys.stderr)
                traceback.print_exc(file=sys.stderr)
        if self.recorder and not control:
            self.recorder.write(self._record(request, api, principal, status, started))
        return response(environ, start_response)

    def _host_served(self, request: Request) -> bool:
        """Whether the Host header names this emulator (the DNS-rebinding check; module docstring)."""
        if door.DOOR_KEY in request.environ:   # a .localhost twin (__call__): loopback only, no rebinding page owns it
            return True
        name = host_name(request.headers.get("Host", ""))
        return name in self.host_names or (self.any_ip and _is_ip_literal(name))

    def _misdirected(self, request: Request) -> ApiError:
        host = request.headers.get("Host")
        what = f"Host {host!r}" if host else "a request without a Host header"
        bound = host_name(self.world.options.host)
        names = ", ".join(sorted(self.host_names | ({"any IP address"} if self.any_ip else set())))
        if host_name(host or "").endswith(door.SUFFIX):
            names += (", and the .localhost twin of a Google host it plays (accounts.google.com.localhost, "
                      "NAME.googleapis.com.localhost, SERVICE.run.app.localhost)")
        hint = f" (or start the emulator with --allow-host {host_name(host)})" if host else ""
        return ApiError("PERMISSION_DENIED",
                        f"Misdirected request: this emulator (bound to {bound}) does not serve {what}; it serves "
                        f"{names}{hint}. This protects it from DNS rebinding.",
                        [error_info("HOST_NOT_ALLOWED", "emulator.provision", {"host": host or ""})],
                        http_status=421)

    def _guard_control(self, request: Request) -> None:
        """Control endpoints are for local tools, never for web pages (module docstring)."""
        if request.method == "OPTIONS":
            raise permission_denied("The emulator's control endpoints refuse cross-origin requests: "
                                    "no CORS preflight is answered for them.")
        if request.headers.get("Origin") is not None or request.headers.get("Sec-Fetch-Site") is not None:
            raise permission_denied("The emulator's control endpoints refuse requests from web pages "
                                    "(the request carries Origin or Sec-Fetch-Site).")
        if CONTROL_HEADER not in request.headers:
            raise permission_denied(f"The emulator's control endpoints need the request header "
                                    f"'{CONTROL_HEADER}: 1' (a web page cannot send it).")

    def _dispatch(self, request: Request, route: Route, args: dict, principal: str | None, environ) -> Response:
        if not is_control(request.path):
            fault = self.world.faults.draw_request()
            if fault == "reset":
                read_body(request, JSON_LIMIT)  # read before the drop, so the record still shows the body
                _reset_connection(environ)
                return Response(b"", status=500)
            if fault:
                return _fault_response(fault, route.api, request.path)
            if self.world.options.enforce_iam and principal is None and not route.url_credential:
                raise unauthenticated()
            if not route.url_credential:  # scopes and the quota project of an OAuth token (emulator/oauth)
                self.world.oauth.check_call(route.api, request.method, request.headers,
                                            self.world.oauth.bearer(request.headers.get("Authorization", "")), principal)
            if self.world.quotas.enabled:  # Google checks quota after the caller, before the request itself
                exhausted = quotas.check(self.world.quotas, route.api, request.method, request.path,
                                         request.headers, principal, self._project_number)
                if exhausted is not None:
                    raise exhausted
            if route.discovery and route.api != "storage":
                discovery.validate_query(*route.discovery, list(request.args.keys()))
        ctx = Ctx(self.world, request, route, principal)
        result = route.handler(ctx, **args)
        if isinstance(result, Response):
            return result
        if isinstance(result, tuple):
            status, body = result
            return json_response(body, status) if body is not None else Response(b"", status=status)
        return json_response(result)

    def _project_number(self, project_id: str) -> str | None:
        record = self.world.crm.lookup(project_id)
        return record["number"] if record else None

    def _principal(self, request: Request) -> str | None:
        auth = request.headers.get("Authorization", "")
        if auth.lower().startswith("bearer emulator:"):
            return auth[len("bearer emulator:"):].strip()
        return self.world.oauth.principal(auth)  # a token it issued (emulator/oauth); a dead one is a 401

    def _preflight(self, request: Request) -> Response:
        headers = {
            "Access-Control-Allow-Methods": ALLOW_METHODS,
            "Access-Control-Allow-Headers": request.headers.get("Access-Control-Request-Headers", "authorization, content-type"),
            "Access-Control-Max-Age": "3600",
        }
        return Response(b"", status=200, headers=headers)

    def _cors(self, request: Request, response: Response) -> None:
        origin = request.headers.get("Origin")
        if origin:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
            response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"

    def _not_found(self, request: Request) -> Response:
        api = _api_for_path(request.path)
        # Google's front end answers unknown URLs with a 404 whose body names the path.
        err = ApiError("NOT_FOUND", f"The requested URL {request.path} was not found on this server.")
        return json_response(err.body(_style(api, request.path)), 404)

    def _record(self, request: Request, api: str, principal: str | None, status: int, started: float) -> dict:
        """One line of the record. The body is a JSON request's, at most JSON_LIMIT bytes of it: the one a
        handler already read, else one whose declared length is within the limit (never an unbounded read)."""
        body = None
        if (request.mimetype or "") in ("application/json", "") and request.method in ("POST", "PUT", "PATCH"):
            try:
                raw = request.environ.get(BODY_KEY)
                if raw is None and request.content_length is not None and request.content_length <= JSON_LIMIT:
                    raw = read_body(request, JSON_LIMIT)
                if isinstance(raw, bytes) and raw.strip():
                    body = json.loads(raw)
            except Exception:  # noqa: BLE001 - a dropped connection or junk body: record no body
                body = None
        # No header is recorded, and no credential: the query keeps credential parameters' names only.
        return {
            "t": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "method": request.method,
            "path": redact(request.path),
            "query": redact_query({k: request.args.getlist(k) for k in request.args}),
            "status": status,
            "api": api,
            "principal": principal or "anonymous",
            "request": redact_value(body),
            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
        }


def _raw_segments(environ, request: Request) -> list[tuple[bytes, str]]:
    """The request path as (raw segment, percent-decoded segment) pairs, split before decoding.
    Without a raw URI (not werkzeug's server), the decoded PATH_INFO is all there is."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw is None:
        return [(seg.encode(), seg) for seg in request.path.split("/")]
    target = raw.encode("latin-1", "replace").decode("utf-8", "replace")  # undo the WSGI encoding dance
    if not target.startswith("/"):
        target = urlsplit(target).path or "/"  # absolute-form request target
    path = target.partition("?")[0].partition("#")[0].encode("latin-1", "replace")
    return [(seg, unquote_to_bytes(seg).decode("utf-8", "replace")) for seg in path.split(b"/")]


def _escape(segment: str) -> str:
    """A decoded segment as the route map sees it: a `/` inside stays `%2F` (and `%` is `%25`)."""
    return segment.replace("%", "%25").replace("/", "%2F")


_ESCAPED = re.compile(r"%(25|2F)")


def _decode_args(rule: Rule, args: Mapping[str, Any]) -> dict:
    """Undo `_escape` in the matched arguments: a `<path:...>` argument turns `%2F` into `/`; any
    other argument is one resource ID, where a `/` is a 400 (Google never splits on `%2F`)."""
    out = {}
    for name, value in args.items():
        if isinstance(value, str) and "%" in value:
            decoded = _ESCAPED.sub(lambda m: "%" if m.group(1) == "25" else "/", value)
            if "/" in decoded and not isinstance(rule._converters.get(name), PathConverter):
                raise ApiError("INVALID_ARGUMENT", f"Invalid resource field value in the request: {name} "
                                                   f"{decoded!r} must not contain '/'.")
            value = decoded
        out[name] = value
    return out


def _api_for_path(path: str) -> str:
    if path.startswith(("/storage/", "/upload/storage/", "/download/storage/")):
        return "storage"
    return "unknown"


def _style(api: str, path: str) -> str:
    return "gcs" if api == "storage" or _api_for_path(path) == "storage" else "rpc"


_PROJECT_IN_PATH = re.compile(r"/projects/([^/:]+)")


def _fault_response(kind: str, api: str, path: str) -> Response:
    code = int(kind)
    if code == 429:
        err = rate_limited(api, path)
    else:
        status = {500: "INTERNAL", 503: "UNAVAILABLE"}[code]
        message = {500: "Internal error encountered.", 503: "The service is currently unavailable."}[code]
        err = ApiError(status, message, http_status=code)
    return json_response(err.body(_style(api, path)), code)


def rate_limited(api: str, path: str) -> ApiError:
    """A per-minute request quota exhausted, as Google answers it: 429 RESOURCE_EXHAUSTED with an
    ErrorInfo RATE_LIMIT_EXCEEDED (what Terraform's Is429RetryableQuotaError retries on; gcp-wire
    §4.8). Google sends no Retry-After header here, so neither do we."""
    service = f"{api}.googleapis.com"
    found = _PROJECT_IN_PATH.search(path)
    consumer = f"projects/{found.group(1)}" if found else "projects/unknown"
    metadata = {"service": service, "consumer": consumer, "quota_metric": f"{service}/default_requests",
                "quota_limit": "DefaultRequestsPerMinutePerProject", "quota_limit_value": "6000",
                "quota_location": "global", "quota_unit": "1/min/{project}"}
    message = (f"Quota exceeded for quota metric 'Requests' and limit 'Requests per minute' of service "
               f"'{service}' for consumer '{consumer}'.")
    return ApiError("RESOURCE_EXHAUSTED", message, [error_info("RATE_LIMIT_EXCEEDED", "googleapis.com", metadata)],
                    http_status=429)


def _reset_connection(environ) -> None:
    """Drop the TCP connection with an RST, as a flaky network does."""
    sock = environ.get("werkzeug.socket")
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
