"""The real OHIF viewer (Debian chromium, Playwright) through the hosted app, with IAP played by the
browser context: every request carries the signed assertion IAP would add. The study list shows the
study, the viewer draws it, the page is cross-origin isolated, and no request leaves the app's origin
(no Google token in the browser, no call to googleapis.com or to the store itself)."""
from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

from dicom_factory import ct_series
from emulator_helpers import ready_store
from hosted_helpers import AUD, IapKeys, run_app
from provision.hosted.app import create_app
from provision.hosted.settings import Settings

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"


def drawn(png: bytes) -> bool:
    """A viewport screenshot with an image in it (many gray levels, a good part not black)."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as img:
        hist = img.convert("L").histogram()
    total = sum(hist)
    return sum(1 for n in hist if n) >= 16 and sum(hist[17:]) / total >= 0.05


def test_ohif_through_the_hosted_app(emulator, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    from provision.checks.browser_chromium import chromium_args
    from provision.ohif.config import render_config
    from provision.ohif.fetch import ensure_viewer
    from types import SimpleNamespace

    env = ready_store(emulator, project="hosted-browser", dataset="imaging", store="primary")
    series = ct_series("hb1", slices=4, size=64, patient_name="Hosted^Hanna")
    env.dicomweb.store_instances(series)
    bp = SimpleNamespace(project=SimpleNamespace(id=env.project),
                         dataset=SimpleNamespace(id=env.dataset_id, location=env.location),
                         dicom_stores=[SimpleNamespace(id=env.store_id)],
                         viewer=SimpleNamespace(origin="http://127.0.0.1:3000", oauth_client_id=None))
    log = io.StringIO()
    with IapKeys() as iap:
        cfg = Settings(dist=ensure_viewer(), config_js=render_config(bp, emulator_url=env.url),
                       sources={"primary": env.dicomweb_url}, iap_audience=AUD, iap_jwks_url=iap.url,
                       upstream_auth="none")
        with run_app(create_app(cfg, log_stream=log)) as url, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=chromium_args(offline=True))
            try:
                context = browser.new_context(viewport={"width": 1280, "height": 900},
                                              extra_http_headers=iap.header(email="hanna@example.com"))
                page = context.new_page()
                seen: list[str] = []
                page.on("request", lambda r: seen.append(r.url))
                page.goto(url + "/", wait_until="domcontentloaded")
                page.wait_for_function("() => document.body && document.body.innerText.includes('Hosted, Hanna')",
                                       timeout=60_000)
                st = series[0].StudyInstanceUID
                with page.expect_response(lambda r: "/frames/" in r.url, timeout=60_000) as first:
                    page.goto(f"{url}/viewer?StudyInstanceUIDs={st}", wait_until="domcontentloaded")
                assert first.value.status == 200 and first.value.url.startswith(f"{url}/dicomweb/primary/")
                canvas = page.locator("canvas.cornerstone-canvas").first
                page.wait_for_function("() => document.querySelector('canvas.cornerstone-canvas')", timeout=60_000)
                deadline = time.monotonic() + 30   # until the image is drawn (bounded), judged on screen
                while not drawn(canvas.screenshot()):
                    assert time.monotonic() < deadline, "the viewport is still blank after 30 s"
                assert page.evaluate("() => self.crossOriginIsolated") is True
                page.reload(wait_until="domcontentloaded")   # the deep link after a reload
                page.wait_for_function("() => document.querySelector('canvas.cornerstone-canvas')", timeout=60_000)
            finally:
                browser.close()
    outside = [u for u in seen if not u.startswith(url) and not u.startswith(("data:", "blob:"))]
    assert not outside, outside[:5]
    assert env.url not in log.getvalue()
    entries = [line for line in log.getvalue().splitlines() if '"/dicomweb/primary/' in line]
    assert entries and all('"user":"hanna@example.com"' in e for e in entries)
    assert any(f'"study":"{st}"' in e for e in entries)
