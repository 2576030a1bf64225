"""The emulator's whole state and knobs, apart from any HTTP: every API's backend hangs off one
World, so cross-API rules (billing before enabling, the service agent reading a bucket) are plain
method calls.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provision.emulator.faults import Faults
from provision.emulator.latency import Latency
from provision.emulator.operations import Operations
from provision.emulator.quotas import Quotas
from provision.emulator.store import BlobStore, Database, DocStore

if TYPE_CHECKING:  # the backends import World; World only names them
    from provision.emulator.billing.state import Billing
    from provision.emulator.healthcare.state import Healthcare
    from provision.emulator.logging.state import Logging
    from provision.emulator.resourcemanager.state import ResourceManager
    from provision.emulator.serviceusage.state import ServiceUsage
    from provision.emulator.storage.state import Backend as Storage


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


class World:
    crm: "ResourceManager"
    serviceusage: "ServiceUsage"
    billing: "Billing"
    storage: "Storage"
    healthcare: "Healthcare"
    logging: "Logging"

    def __init__(self, options: Options):
        self.options = options
        data_dir = Path(options.data_dir) if options.data_dir else None
        if data_dir:
            data_dir.mkdir(parents=True, exist_ok=True)
        self.db = Database(data_dir / "state.sqlite" if data_dir else None)
        self.docs = DocStore(self.db)
        self.blobs = BlobStore(data_dir / "blobs" if data_dir else None)
        self.latency = Latency.from_option(options.latency, options.time_scale)
        self.quotas = Quotas.from_option(options.quotas, options.latency, options.time_scale)
        self.faults = Faults.parse(options.faults, options.seed)
        self.clock = time.time
        self.operations = Operations(self.docs, self.clock)
        self._backends: list[Any] = []
        # Bumped by every reset: long-running work (an upload, an import) notes it when it starts
        # and checks it, under the database lock, before it commits, so it never writes into the
        # new world what it read from the old one.
        self.epoch = 0

    def attach(self, name: str, backend: Any) -> None:
        """Register an API backend under `name` (it becomes `world.<name>`)."""
        setattr(self, name, backend)
        self._backends.append(backend)

    def reset(self) -> None:
        """Forget everything (POST /_emulator/reset); the fault generator starts over from its seed."""
        with self.db.transaction():
            self.epoch += 1
            self.faults.reseed()
            self.quotas.reset()
            self.docs.clear()
            for backend in self._backends:
                if hasattr(backend, "reset"):
                    backend.reset()

    def dump(self) -> dict:
        """Every resource, for GET /_emulator/state."""
        out: dict[str, Any] = {"docs": self.docs.dump()}
        for backend in self._backends:
            if hasattr(backend, "dump"):
                out.update(backend.dump())
        return out

    def close(self) -> None:
        self.db.close()
        self.blobs.close()
