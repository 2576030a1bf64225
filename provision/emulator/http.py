"""The HTTP layer shared by every API: routing, strict JSON bodies, who is calling, IAM checks,
CORS, fault injection, the request record, and Google-shaped errors. API modules only declare
routes and turn requests into backend calls.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge
from werkzeug.routing import BaseConverter, Map, Rule
from werkzeug.wrappers import Request, Response

from provision.emulator import discovery, iam
from provision.emulator.errors import ApiError, permission_denied, unauthenticated
from provision.emulator.world import World

JSON_LIMIT = 10 * 1024 * 1024
ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"


class IdConverter(BaseConverter):
    """One path segment that cannot swallow a custom verb (`s:getIamPolicy`)."""

    regex = r"[^/:]+"


@dataclass
class Route:
    api: str                     # e.g. "healthcare", used in the record and for the error style
    handler: Callable[..., Any]
    discovery: tuple[str, str] | None = None   # (document, method id) whose request schema the body must meet
    body_limit: int = JSON_LIMIT


class Router:
    """Collects the routes of every API module."""

    def __init__(self) -> None:
        self.rules: list[Rule] = []
        self.routes: dict[str, Route] = {}

    def route(self, methods: str | list[str], rule: str, *, api: str, discovery: tuple[str, str] | None = None,
              body_limit: int = JSON_LIMIT) -> Callable:
        """Decorator: `@router.route("GET", "/v3/projects/<id:project>", api="cloudresourcemanager")`."""
        verbs = [methods] if isinstance(methods, str) else list(methods)

        def wrap(fn: Callable) -> Callable:
            endpoint = f"{fn.__module__}.{fn.__qualname__}:{rule}:{','.join(verbs)}"
            self.routes[endpoint] = Route(api, fn, discovery, body_limit)
            self.rules.append(Rule(rule, endpoint=endpoint, methods=verbs))
            return fn

        return wrap

    def build(self) -> Map:
        return Map(self.rules, converters={"id": IdConverter}, strict_slashes=False, merge_slashes=False)


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
            if validate and self.route.discovery:
                discovery.validate_request(*self.route.discovery, self._json)
        return self._json

    def allows(self, permission: str, policies: list[dict | None]) -> bool:
        """Whether the caller holds `permission` through one of `policies` (the resource's own policy
        and its ancestors'); always under no --enforce-iam, where every caller is the owner."""
        if not self.world.options.enforce_iam:
            return True
        return iam.allowed(self.principal or "", permission, [p for p in policies if p])

    def require(self, permission: str, resource: str, policies: list[dict | None]) -> None:
        """Deny unless the caller `allows` `permission` through one of `policies`."""
        if not self.allows(permission, policies):
            raise permission_denied(f"Permission '{permission}' denied on resource '{resource}' (or it may not exist).")


_UNSET = object()


def parse_json_body(request: Request, limit: int = JSON_LIMIT) -> Any:
    """Parse a JSON request body the way Google's front end does: empty is {}, junk is a 400."""
    if request.content_length and request.content_length > limit:
        raise ApiError("INVALID_ARGUMENT", f"Request payload size exceeds the limit: {limit} bytes.", http_status=413)
    raw = request.get_data(cache=True)
    if len(raw) > limit:
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

    def __call__(self, environ, start_response):
        request = Request(environ)
        started = time.perf_counter()
        api, principal, status = "unknown", None, 500
        response: Response
        try:
            principal = self._principal(request)
            if any(seg in (".", "..") for seg in request.path.split("/")):
                raise ApiError("INVALID_ARGUMENT", f"Invalid resource path {request.path!r}: '.' and '..' segments are not allowed.")
            if request.method == "OPTIONS":
                response = self._preflight(request)
                api = "cors"
            else:
                adapter = self.map.bind_to_environ(environ)
                endpoint, args = adapter.match()
                route = self.routes[endpoint]
                api = route.api
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
        status = response.status_code
        self._cors(request, response)
        if self.recorder and not request.path.startswith("/_emulator/"):
            self.recorder.write(self._record(request, api, principal, status, started))
        return response(environ, start_response)

    def _dispatch(self, request: Request, route: Route, args: dict, principal: str | None, environ) -> Response:
        if not request.path.startswith("/_emulator/"):
            fault = self.world.faults.draw_request()
            if fault == "reset":
                if (request.content_length or 0) <= JSON_LIMIT:
                    request.get_data(cache=True)  # read before the drop, so the record still shows the body
                _reset_connection(environ)
                return Response(b"", status=500)
            if fault:
                return _fault_response(fault, route.api, request.path)
            if self.world.options.enforce_iam and principal is None:
                raise unauthenticated()
        ctx = Ctx(self.world, request, route, principal)
        result = route.handler(ctx, **args)
        if isinstance(result, Response):
            return result
        if isinstance(result, tuple):
            status, body = result
            return json_response(body, status) if body is not None else Response(b"", status=status)
        return json_response(result)

    def _principal(self, request: Request) -> str | None:
        auth = request.headers.get("Authorization", "")
        if auth.lower().startswith("bearer emulator:"):
            return auth[len("bearer emulator:"):].strip()
        return None

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
        body = None
        if (request.mimetype or "") in ("application/json", "") and request.method in ("POST", "PUT", "PATCH"):
            try:
                raw = request.get_data(cache=True)
                body = json.loads(raw) if raw.strip() else None
            except Exception:  # noqa: BLE001 - a dropped connection or junk body: record no body
                body = None
        return {
            "t": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "method": request.method,
            "path": request.path,
            "query": {k: request.args.getlist(k) for k in request.args},
            "status": status,
            "api": api,
            "principal": principal or "anonymous",
            "request": body,
            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
        }


def _api_for_path(path: str) -> str:
    if path.startswith(("/storage/", "/upload/storage/", "/download/storage/")):
        return "storage"
    return "unknown"


def _style(api: str, path: str) -> str:
    return "gcs" if api == "storage" or _api_for_path(path) == "storage" else "rpc"


def _fault_response(kind: str, api: str, path: str) -> Response:
    code = int(kind)
    status = {429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}[code]
    message = {429: "Quota exceeded for quota metric 'Requests' and limit 'Requests per minute'.",
               500: "Internal error encountered.", 503: "The service is currently unavailable."}[code]
    err = ApiError(status, message, http_status=code)
    return json_response(err.body(_style(api, path)), code)


def _reset_connection(environ) -> None:
    """Drop the TCP connection with an RST, as a flaky network does."""
    sock = environ.get("werkzeug.socket")
    if sock is None:
        return
    try:
        import struct

        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
