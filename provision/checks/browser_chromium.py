"""Starting the browser smoke's browser: Debian's /usr/bin/chromium through Playwright, with a fresh
profile (never `playwright install`), offline when the smoke runs against an emulator."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from provision.errors import ProvisionError

CHROMIUM = "/usr/bin/chromium"


def chromium_args(*, offline: bool) -> list[str]:
    """Flags for Debian's chromium in a container (--no-sandbox and --disable-dev-shm-usage, as
    Puppeteer's troubleshooting guide advises for containers: https://pptr.dev/troubleshooting; the
    others stop background calls home), plus offline isolation."""
    args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-domain-reliability",
        "--no-first-run",
        "--no-default-browser-check",
        "--metrics-recording-only",
    ]
    if offline:
        # No name resolves and anything not on loopback goes to a closed proxy port
        # (Chromium never proxies loopback): nothing leaves the machine, and CORS stays real.
        # `*.localhost` names are loopback by definition (RFC 6761 §6.3): an emulator's local door.
        args += ["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE *.localhost, EXCLUDE 127.0.0.1",
                 "--proxy-server=http://127.0.0.1:9"]
    return args


def require_browser(chromium: str) -> Any:
    """Playwright's sync_api module, once `chromium` and Playwright are both there; else a ProvisionError
    that says how to install what is missing."""
    if not Path(chromium).exists():
        raise ProvisionError(f"cannot run the browser smoke: {chromium} is not installed (Debian: apt-get install chromium)")
    try:
        # Not `from playwright import sync_api`: once imported, that reads the package's attribute and
        # misses a sync_api made unimportable in sys.modules (as tests/test_smoke_not_run.py does).
        import playwright.sync_api as sync_api
    except ImportError:
        # Not `pip install 'provision[browser]'`: an unrelated `provision` is on the package index.
        raise ProvisionError(f"cannot run the browser smoke: the Python package playwright is not installed in "
                             f"{sys.executable}; install it there (`{sys.executable} -m pip install "
                             "'playwright>=1.44'`, or `pipx inject provision playwright`), or in a checkout run "
                             "`make test`, which sets everything up") from None
    return sync_api


def launch(pw: Any, profile: str, *, chromium: str, offline: bool) -> Any:
    """A persistent Chromium context on the fresh `profile` directory (pw: a started sync_playwright)."""
    from playwright.sync_api import Error as PlaywrightError

    try:
        return pw.chromium.launch_persistent_context(
            profile,
            executable_path=chromium,
            headless=True,
            args=chromium_args(offline=offline),
            viewport={"width": 1280, "height": 900},
            device_scale_factor=1,
            service_workers="block",
            env={**os.environ, "TZ": "UTC"},
        )
    except PlaywrightError as exc:
        raise ProvisionError(f"cannot run the browser smoke: chromium did not start: {str(exc).splitlines()[0]}") from None

