"""Shared fixtures: a real emulator on a free loopback port, stopped after each test."""
from __future__ import annotations

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
