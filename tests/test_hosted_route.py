"""The browser smoke's route to a hosted viewer on an emulator (provision/checks/hosted_route.py): a fetch
that fails is aborted and said, never raised into Playwright's dispatcher (where it left the request
hanging, or failed the run with "Target page, context or browser has been closed" once the smoke was
over and closing the browser cut an in-flight frame off)."""
from __future__ import annotations

from types import SimpleNamespace

from provision.checks.hosted_route import HostedRoute

HOST = "ohif-viewer-1.us-central1.run.app"


class _Route:
    """Playwright's Route, as far as HostedRoute uses it, with a fetch that fails as a closed page's does."""

    def __init__(self, url: str):
        self.request = SimpleNamespace(url=url, method="GET", headers={}, is_navigation_request=lambda: False)
        self.aborted = False

    def fetch(self, **_: object) -> None:
        raise RuntimeError("Route.fetch: Target page, context or browser has been closed")

    def abort(self, *_: object) -> None:
        self.aborted = True


def test_a_failed_fetch_is_aborted_and_named():
    route, frame = HostedRoute("http://127.0.0.1:9", HOST), _Route(f"https://{HOST}/dicomweb/primary/studies/1/frames/1")
    route(frame)
    assert frame.aborted
    assert route.requests == [f"GET {HOST}/dicomweb/primary/studies/1/frames/1 -> failed"]
    assert route.failed == [f"GET {HOST}/dicomweb/primary/studies/1/frames/1: Route.fetch: Target page, context or "
                            "browser has been closed"]


def test_a_fetch_the_closing_browser_cuts_off_is_no_failure():
    route, frame = HostedRoute("http://127.0.0.1:9", HOST), _Route(f"https://{HOST}/dicomweb/primary/studies")
    route.closing = True
    route(frame)
    assert frame.aborted and route.failed == []
