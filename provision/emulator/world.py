"""The emulator's whole state and knobs, apart from any HTTP: every API's backend hangs off one
World, so cross-API rules (billing before enabling, the service agent reading a bucket) are plain
method calls.
"""
from __future__ import annotations

import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from provision.emulator.billing.state import Billing
from provision.emulator.builds.state import Builds
from provision.emulator.cloudrun.state import CloudRun
from provision.emulator.faults import Faults
from provision.emulator.healthcare.state import Healthcare
from provision.emulator.iamadmin.state import IamAdmin
from provision.emulator.iap.state import Iap
from provision.emulator.kms.state import Kms
from provision.emulator.latency import Latency
from provision.emulator.logging.state import Logging
from provision.emulator.oauth.state import OAuth
from provision.emulator.operations import Operations
from provision.emulator.orgpolicy.state import OrgPolicy
from provision.emulator.options import Options
from provision.emulator.quotas import Quotas
from provision.emulator.resourcemanager.state import ResourceManager
from provision.emulator.serviceusage.state import ServiceUsage
from provision.emulator.storage.state import Backend as Storage
from provision.emulator.store import BlobStore, Database, DocStore

__all__ = ["Options", "World"]   # Options lives in options.py (below the backends); importable here too


class World:
    """Satisfies worldview.WorldView, which is what the backends see of it. The backends are
    attached by server.build (`attach`); a test may attach only those it needs."""

    crm: ResourceManager
    serviceusage: ServiceUsage
    billing: Billing
    storage: Storage
    healthcare: Healthcare
    logging: Logging
    oauth: OAuth
    orgpolicy: OrgPolicy
    kms: Kms
    iamadmin: IamAdmin
    iap: Iap
    cloudrun: CloudRun
    builds: Builds

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
        # Names of the public-dataset stand-ins (buckets, DICOM stores; provision/emulator/publicdata.py):
        # the state dump lists them apart, so it shows what clients made.
        self.stand_ins: set[str] = set()
        # Blob garbage collection: `blobs_dirty()` (something may have lost its last reference)
        # wakes a background sweeper, which lets a burst of deletes settle for GC_SETTLE_S first.
        self._gc_wake = threading.Event()
        self._gc_thread: threading.Thread | None = None
        self._gc_lock = threading.Lock()
        self._closing = False
        self.gc_runs = 0

    GC_SETTLE_S = 0.1

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
        self.blobs_dirty()

    # ------------------------------------------------------------------ blob garbage
    def referenced_blobs(self, keys: list[str] | None = None) -> set[str]:
        """Which of `keys` (every key when None) a backend's rows name (objects, DICOM instances)."""
        out: set[str] = set()
        for backend in self._backends:
            refs = getattr(backend, "blob_refs", None)
            if refs is not None:
                out |= refs(keys)
        return out

    def collect_garbage(self) -> dict[str, int]:
        """Remove every blob nothing refers to now; returns the files and bytes freed."""
        with self._gc_lock:
            freed = self.blobs.sweep(self.referenced_blobs, self.db.lock)
            self.gc_runs += 1
            return freed

    def blobs_dirty(self) -> None:
        """Bytes may have lost their last reference (a delete, an overwrite, a refused write):
        sweep soon, in the background."""
        if self._closing:
            return
        self._gc_wake.set()
        if self._gc_thread is None:
            with self._gc_lock:
                if self._gc_thread is None:
                    self._gc_thread = threading.Thread(target=self._gc_loop, name="blob-gc", daemon=True)
                    self._gc_thread.start()

    def _gc_loop(self) -> None:
        while not self._closing:
            self._gc_wake.wait()
            if self._closing:
                return
            time.sleep(self.GC_SETTLE_S)     # let a burst of deletes finish: one sweep for all
            self._gc_wake.clear()
            started = time.monotonic()
            try:
                self.collect_garbage()
            except Exception:  # noqa: BLE001 - never take the emulator down; try again next time
                if not self._closing:
                    print("emulator: blob garbage collection failed", file=sys.stderr)
                    traceback.print_exc(file=sys.stderr)
            # A sweep reads every blob name and every reference (about half a second per 100,000
            # instances): under a stream of deletes, sweep at most half the time.
            if not self._closing:
                time.sleep(min(5.0, time.monotonic() - started))

    def dump(self) -> dict:
        """Every resource, for GET /_emulator/state."""
        out: dict[str, Any] = {"docs": self.docs.dump()}
        for backend in self._backends:
            if hasattr(backend, "dump"):
                out.update(backend.dump())
        return out

    def host_app(self, host: str) -> Any:
        """The WSGI app of a backend that answers for `host` itself (a Cloud Run service's run.app
        name), or None: such hosts bypass the Host check and the API routes."""
        for backend in self._backends:
            app = backend.host_app(host) if hasattr(backend, "host_app") else None
            if app is not None:
                return app
        return None

    def close(self) -> None:
        for backend in self._backends:   # stop what backends run (Cloud Run's instances)
            if hasattr(backend, "close"):
                backend.close()
        self._closing = True
        self._gc_wake.set()
        if self._gc_thread is not None:
            self._gc_thread.join(timeout=10)
        self.db.close()
        self.blobs.close()
