"""Honest checks: a smoke check that was asked for and could not run is reported as "not run",
with the reason, and fails the command (exit 1). Against the real emulator, through the CLI.

No browser is started in these tests: where the browser smoke would run, the route to Chromium
is cut (Playwright made unimportable) and must be reported; where it must not even be tried,
run_browser_smoke is replaced by a tripwire.
"""
from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from provision.cli import app


def run(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def no_browser_allowed(monkeypatch):
    """Fail the test if anything tries to start the browser smoke."""
    import provision.checks.browser as browser

    def tripwire(*args, **kwargs):
        raise AssertionError("the browser smoke was started")

    monkeypatch.setattr(browser, "run_browser_smoke", tripwire)


def _empty_store_blueprint(tmp_path, emulator) -> str:
    """A blueprint whose (only) store exists and holds no study, applied to the emulator."""
    path = tmp_path / "empty.yaml"
    path.write_text("""\
version: 1
project: {id: ohif-empty-store, parent: organizations/123456789012, billing_account: 012345-6789AB-CDEF01}
dataset: {id: imaging, location: us-central1}
dicom_stores: [{id: primary}]
viewer: {origin: "http://127.0.0.1:3000"}
smoke: {min_studies: 0}
""")
    applied = run("apply", str(path), "--emulator", emulator.url, "--yes", "--no-smoke")
    assert applied.exit_code == 0, applied.output
    return str(path)


def test_browser_smoke_on_an_empty_first_store_is_not_run_and_fails(emulator, tmp_path, no_browser_allowed):
    path = _empty_store_blueprint(tmp_path, emulator)
    # Without --browser the empty store is fine (min_studies 0): the DICOMweb smoke passes.
    assert run("smoke", path, "--emulator", emulator.url).exit_code == 0

    result = run("smoke", path, "--browser", "--emulator", emulator.url)
    assert result.exit_code == 1, result.output
    assert "DICOMweb smoke passed" in result.output
    assert "browser smoke NOT RUN" in result.output and "store primary" in result.output
    assert "holds no study" in result.output and "Traceback" not in result.output

    doc = json.loads(run("smoke", path, "--browser", "--emulator", emulator.url, "--json").stdout)["results"][0]["smoke"]
    assert doc["ok"] is False and doc["browser"] is None
    assert doc["dicomweb"]["primary"]["ok"] is True
    assert "holds no study" in doc["browser_not_run"]


def test_browser_smoke_without_playwright_is_not_run_and_keeps_the_dicomweb_results(emulator, tmp_path, monkeypatch):
    demo = run("demo", "--out", str(tmp_path / "out"), "--emulator", emulator.url)
    assert demo.exit_code == 0, demo.output
    blueprint = str(tmp_path / "out" / "demo.yaml")
    # Playwright made unimportable (or, on a machine without it, Chromium missing): the check cannot run.
    monkeypatch.setitem(sys.modules, "playwright.sync_api", None)
    result = run("smoke", blueprint, "--browser", "--emulator", emulator.url, "--json")
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)["results"][0]["smoke"]
    assert doc["ok"] is False and doc["browser"] is None
    assert doc["dicomweb"]["primary"]["ok"] is True and doc["dicomweb"]["primary"]["studies_found"] == 2
    assert doc["browser_not_run"].startswith("cannot run the browser smoke: ")

    text = run("smoke", blueprint, "--browser", "--emulator", emulator.url)
    assert text.exit_code == 1
    assert "DICOMweb smoke passed" in text.output and "browser smoke NOT RUN" in text.output
    assert "Traceback" not in text.output


def test_a_failed_dicomweb_smoke_means_the_browser_is_not_run(emulator, tmp_path, no_browser_allowed):
    """The first store misses the studies smoke.min_studies asks for: DICOMweb fails, the browser is
    not started, and the report says why it did not run."""
    path = tmp_path / "short.yaml"
    path.write_text("""\
version: 1
project: {id: ohif-short-store, parent: organizations/123456789012, billing_account: 012345-6789AB-CDEF01}
dataset: {id: imaging, location: us-central1}
dicom_stores: [{id: primary}]
smoke: {min_studies: 0}
""")
    assert run("apply", str(path), "--emulator", emulator.url, "--yes", "--no-smoke").exit_code == 0
    wrong = tmp_path / "wrong.yaml"  # same project, a store that does not exist: 403/404 on QIDO
    wrong.write_text(path.read_text().replace("[{id: primary}]", "[{id: missing}]"))
    result = run("smoke", str(wrong), "--browser", "--emulator", emulator.url, "--json")
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)["results"][0]["smoke"]
    assert doc["ok"] is False and doc["dicomweb"]["missing"]["ok"] is False
    assert "DICOMweb smoke of store missing failed" in doc["browser_not_run"]
