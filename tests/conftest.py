"""Shared fixtures: a real emulator on a free loopback port, stopped after each test."""
from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Callable, Iterator

import pytest

from provision.emulator.server import EmulatorServer
from provision.emulator.world import Options

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


@pytest.fixture
def emulator_factory() -> Iterator[Callable[..., EmulatorServer]]:
    """Start emulators with chosen options: `emu = emulator_factory(enforce_iam=True)`; all are stopped afterwards."""
    started: list[EmulatorServer] = []

    def start(**options) -> EmulatorServer:
        emu = EmulatorServer(Options(host="127.0.0.1", port=0, **options)).start()
        started.append(emu)
        return emu

    yield start
    for emu in started:
        emu.stop()


@pytest.fixture
def emulator(emulator_factory) -> EmulatorServer:
    """A fresh in-memory emulator with no latency and no faults."""
    return emulator_factory()


@pytest.fixture
def small_ohif_dist(tmp_path, monkeypatch) -> Path:
    """A one-page OHIF dist as the pinned release in a private provision cache: the hosted viewer's
    archive is built from it in milliseconds (tests that do not open it in a browser)."""
    from provision.ohif.fetch import PINNED

    dist = tmp_path / "cache" / "ohif" / PINNED / "dist"
    dist.mkdir(parents=True)
    (dist / "index.html").write_text("<html>viewer</html>")
    (dist / ".provision-complete").write_text("{}")
    monkeypatch.setenv("PROVISION_CACHE", str(tmp_path / "cache"))
    return dist


@pytest.fixture
def quick_unreachable(monkeypatch) -> None:
    """A refused connection is given up on after ~0.6 s (the emulator time scale's 30 s x 0.02)
    instead of the 5 s floor, for in-process runs against a dead port that test what is said, not
    how long the retries last (tests/test_review_fixes.py keeps the floor's own test)."""
    from provision.gcp.target import Timing

    monkeypatch.setattr(Timing, "UNREACHABLE_FLOOR_S", 0.0)


# `make test` installs everything the tests need (chromium, node, the OHIF viewer, Orthanc), so there
# a skip means a missing install step, not a passing test: with PROVISION_NO_SKIP=1 (set by the
# Makefile) any skip but a `live` test's (real Google Cloud, no credentials here) fails the run.
_UNEXPECTED_SKIPS: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and "live" not in report.keywords and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _UNEXPECTED_SKIPS.append(f"{report.nodeid}: {reason}")


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:  # noqa: ANN001
    if _UNEXPECTED_SKIPS and os.environ.get("PROVISION_NO_SKIP") == "1":
        terminalreporter.section("unexpected skips (PROVISION_NO_SKIP=1): a missing install step?", red=True)
        for line in _UNEXPECTED_SKIPS:
            terminalreporter.line(line)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _UNEXPECTED_SKIPS and os.environ.get("PROVISION_NO_SKIP") == "1" and exitstatus == 0:
        session.exitstatus = 1


def pytest_collection_finish(session: pytest.Session) -> None:
    # What collection loaded (modules, test functions, fixtures) lives until the session ends: frozen,
    # the full garbage collections that the tests' temporary objects trigger stop walking it again
    # (their time in a worker fell by about a third: the suite is CPU bound on two cores).
    gc.collect()
    gc.freeze()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The suite is CPU bound on two cores, and xdist's worksteal splits the collection into contiguous
    # chunks: a long test that happens to start last runs alone on one core (test_no_token's 20 s full run
    # once started at 193 s of 196). Modules holding long tests (`browser`, `slow`) are spread evenly among
    # the others, each module kept whole so its module-scoped fixtures are made once.
    modules: dict[str, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::")[0], []).append(item)
    blocks = list(modules.values())
    long_ = [b for b in blocks if any(i.get_closest_marker("browser") or i.get_closest_marker("slow") for i in b)]
    short = [b for b in blocks if b not in long_]
    if not long_ or not short:
        return
    ordered: list[list[pytest.Item]] = []
    step = len(short) / len(long_)
    taken = 0
    for k, block in enumerate(long_):
        ordered.append(block)
        upto = round((k + 1) * step)
        ordered.extend(short[taken:upto])
        taken = upto
    ordered.extend(short[taken:])
    items[:] = [item for block in ordered for item in block]

