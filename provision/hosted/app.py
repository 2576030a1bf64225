"""The hosted viewer's ASGI app: `create_app(settings)`; settings from the environment when not given.

    python -m hosted                               # what the Procfile runs (__main__.py)
    uvicorn --factory hosted.app:create_app        # the same, through uvicorn's command line

Routes: /_hosted/health (the startup probe, no assertion needed), /dicomweb/NAME/... (proxy.py,
iap mode only), /app-config.js and the viewer's files (static.py). Around them: the access log,
the cross-origin isolation headers (which depend on the access mode) and, in iap mode, the IAP gate
(middleware.py).
"""
from __future__ import annotations

import contextlib
from typing import Any, AsyncIterator, TextIO

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import __version__
from .iap import KeySet
from .middleware import HEALTH_PATH, AccessLog, Headers, IapGate
from .proxy import PREFIX, BadOrigin, Direct, public_origin
from .settings import Settings, SettingsError, from_env
from .static import StaticFiles
from .upstream import TokenSource, session

__all__ = ["create_app", "render_config"]

TIMEOUT = httpx.Timeout(connect=10.0, read=120.0, write=120.0, pool=30.0)
LIMITS = httpx.Limits(max_connections=256, max_keepalive_connections=128)
METHODS = ["GET", "HEAD", "OPTIONS", "POST", "PUT", "DELETE", "PATCH"]


def render_config(settings: Settings, origin: str) -> str:
    """The config with each quoted upstream root replaced by its same-origin URL at `origin`."""
    text = settings.config_js
    if settings.access != "iap":
        return text  # google-sign-in: the browser calls Google itself, with the user's own token
    for name, root in settings.sources.items():
        for quote in ("'", '"'):
            text = text.replace(f"{quote}{root}{quote}", f"{quote}{origin}{PREFIX}/{name}{quote}")
    return text


def _check_config(settings: Settings) -> None:
    """In iap mode the browser must never be sent to googleapis.com: refuse a config that would."""
    if settings.access == "iap":
        left = render_config(settings, "https://viewer.invalid")
        # OHIF's Google configuration API calls Google's hosts itself (hard-coded in OHIF), whatever the roots.
        if "googleapis.com" in left or "dataSourceConfigurationAPI.google" in left:
            raise SettingsError("the config still names googleapis.com after its DICOMweb roots are made "
                                "same-origin: every root must be a source of HOSTED_SOURCES, and no oidc block "
                                "or configurationAPI may be left in an iap config")


async def _health(request: Request) -> Response:
    return JSONResponse({"status": "ok", "version": __version__})


class _Config:
    """/app-config.js for the origin the browser used (rendered once per origin, kept)."""

    def __init__(self, settings: Settings, static: StaticFiles) -> None:
        self.settings, self.static = settings, static
        self._by_origin: dict[str, Any] = {}

    async def handle(self, request: Request) -> Response:
        try:
            origin = public_origin(request)
        except BadOrigin as exc:
            return JSONResponse({"error": {"code": 400, "message": str(exc)}}, status_code=400)
        data = self._by_origin.get(origin)
        if data is None:
            data = render_config(self.settings, origin).encode("utf-8")
            if len(self._by_origin) < 16:  # a service has one or two URLs; never grow without bound
                self._by_origin[origin] = data
        return await self.static.send_config(request, data)


def create_app(settings: Settings | None = None, *, log_stream: TextIO | None = None) -> AccessLog:
    """The whole app, wrapped in its middleware; settings from the environment when not given."""
    settings = settings or from_env()
    _check_config(settings)
    iap = settings.access == "iap"
    static = StaticFiles(settings.dist, private=iap)
    keys = KeySet(settings.iap_jwks_url)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with httpx.AsyncClient(timeout=TIMEOUT, limits=LIMITS, follow_redirects=False) as client:
            app.state.client = client   # IAP's keys
            app.state.upstream = session(max_connections=256, connect_timeout=10.0, pool_timeout=30.0,
                                         read_timeout=120.0)
            app.state.tokens = TokenSource(settings.upstream_auth)
            keys.bind(client)
            try:
                yield
            finally:
                await app.state.upstream.close()

    routes = [Route(HEALTH_PATH, _health, methods=["GET", "HEAD"]),
              Route("/app-config.js", _Config(settings, static).handle, methods=["GET", "HEAD"])]
    routes.append(Route("/{path:path}", static.handle, methods=METHODS))
    inner = Starlette(routes=routes, lifespan=lifespan)
    inner.state.settings = settings
    audience = settings.iap_audience if iap else None   # Settings requires it in iap mode
    # In iap mode /dicomweb/NAME/... is the proxy's (proxy.Direct, ahead of Starlette's routes).
    app = IapGate(Direct(inner), audience=audience, keys=keys) if audience else inner
    return AccessLog(Headers(app, sign_in=not iap), stream=log_stream)
