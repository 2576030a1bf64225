"""What `provision emulator` was started with: the knobs every part of the emulator may read."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class Options:
    """What `provision emulator` was started with."""

    host: str = "127.0.0.1"
    port: int = 8765
    data_dir: Path | None = None
    record: Path | None = None
    latency: str = "none"
    time_scale: float = 1.0
    quotas: str | None = None           # none | realistic | FILE; None: on with --latency realistic
    faults: str | None = None
    seed: int = 0
    enforce_iam: bool = False
    allow_hosts: tuple[str, ...] = ()   # Host names served besides loopback and the bound address
    # Stand-ins for the public datasets (IDC releases, the NIH Chest X-ray store and its Requester
    # Pays bucket) at their real names: provision/emulator/publicdata.py.
    public_datasets: bool = True
