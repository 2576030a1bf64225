"""Discovery-based clients (googleapiclient) built once and shared by every thread.

Building one parses the API's bundled discovery document (JSON, up to a few MB) and makes a
method for each call; every `svc.projects().locations()…` step makes a fresh Resource with all
of its methods again. Per thread and per call, that was a quarter of provision's CPU in a fleet
of 100 blueprints (bench/fleet.py, sampled with py-spy --gil): each blueprint's thread pools
built their own clients. So:

- one Resource tree per target and API, built once; a nested resource is made the first time
  it is asked for and then kept (`_Once`), so a call chain costs attribute lookups;
- httplib2, which the clients send through, is not thread-safe: every request goes out on the
  calling thread's own authorized connection, as googleapiclient's documentation advises
  (`request.execute(http=...)`), here through the request class the client builds requests with.

The discovery document's method descriptions are filled in (googleapiclient adds its own
parameters to them) while a resource is made, which `_Once` does once, under its lock, before
any other thread can see the resource.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable

HttpFactory = Callable[[], Any]


class _Once:
    """A nested resource's accessor that makes it once (and wraps its own accessors likewise)."""

    __is_resource__ = True   # what googleapiclient marks a nested resource's accessor with

    def __init__(self, make: Callable[[], Any]):
        self._make = make
        self._value: Any = None
        self._lock = threading.Lock()

    def __call__(self) -> Any:
        value = self._value
        if value is None:
            with self._lock:
                if self._value is None:
                    self._value = _memoize(self._make())
                value = self._value
        return value


def _memoize(resource: Any) -> Any:
    for name in list(getattr(resource, "_dynamic_attrs", [])):
        accessor = resource.__dict__.get(name)
        if getattr(accessor, "__is_resource__", False) and not isinstance(accessor, _Once):
            resource.__dict__[name] = _Once(accessor)
    return resource


def authorized_http(credentials: Any) -> Any:
    """An authorized httplib2 connection as googleapiclient makes one (its timeout, no redirects
    of POSTs)."""
    import google_auth_httplib2
    from googleapiclient.http import build_http

    return google_auth_httplib2.AuthorizedHttp(credentials, http=build_http())


def build(api: str, version: str, credentials: Any, thread_http: HttpFactory, endpoint: str | None) -> Any:
    """The shared client of `api` `version` from its bundled discovery document; `thread_http()`
    gives the calling thread's connection; `endpoint`: an emulator's root (None: Google's)."""
    from googleapiclient import discovery
    from googleapiclient.http import HttpRequest

    # googleapiclient logs every 403/429 as a WARNING; we report errors ourselves.
    logging.getLogger("googleapiclient.http").setLevel(logging.ERROR)

    class ThreadHttpRequest(HttpRequest):  # type: ignore[misc]  # googleapiclient is untyped (Any)
        """A request sent on the calling thread's connection unless one is given."""

        def execute(self, http: Any = None, num_retries: int = 0) -> Any:  # noqa: D102 - HttpRequest's
            return super().execute(http=http or thread_http(), num_retries=num_retries)

    opts = {"api_endpoint": endpoint} if endpoint else None
    svc = discovery.build(api, version, credentials=credentials, client_options=opts, cache_discovery=False,
                          static_discovery=True, requestBuilder=ThreadHttpRequest)
    return _memoize(svc)
