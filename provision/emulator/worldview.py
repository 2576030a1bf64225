"""What an API backend sees of the World: the shared stores, the clock and the knobs, and the few
calls it makes into other APIs' backends (the Healthcare service agent reading a bucket, billing
before enabling a service).

Every backend (`<api>/state.py`) types against `WorldView`, never against `world.World`: world.py
names the concrete backends, so a backend importing it would close a circle. `World` satisfies
this protocol; a test may build one with only some backends attached, which is why the backends
reach the others through `getattr(world, "crm", None)` where they can do without them.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Protocol

from provision.emulator.faults import Faults
from provision.emulator.latency import Latency
from provision.emulator.operations import Operations
from provision.emulator.options import Options
from provision.emulator.quotas import Quotas
from provision.emulator.store import BlobStore, Database, DocStore


class ProjectsApi(Protocol):
    """Resource Manager (`world.crm`), as the other APIs call it."""

    def lookup(self, id_or_number: str) -> dict | None: ...
    def policy_chain(self, project_id: str) -> list[dict]: ...
    def add_binding(self, project_id: str, role: str, member: str) -> None: ...


class ServiceUsageApi(Protocol):
    """Service Usage (`world.serviceusage`): enabled services and service agents."""

    def require_enabled(self, project_record: dict, service: str) -> None: ...
    def agent_exists(self, project_number: str, service: str) -> bool: ...
    def ensure_agent(self, project_number: str, service: str) -> str: ...
    def parse_agent_email(self, email: str) -> tuple[str, str] | None: ...


class BillingApi(Protocol):
    """Cloud Billing (`world.billing`)."""

    def linked_account(self, project_id: str) -> str | None: ...


class StorageApi(Protocol):
    """Cloud Storage (`world.storage`): what a Healthcare import and export read and write."""

    def bucket(self, name: str) -> dict | None: ...
    def get_object(self, bucket: str, name: str) -> dict | None: ...
    def can_read(self, member: str, bucket: str) -> bool: ...
    def holds(self, member: str, permission: str, bucket: str) -> bool: ...
    def iter_objects(self, bucket: str, glob: str | None = None,
                     prefix: str = "") -> Iterator[tuple[str, str, int]]: ...
    def put_object(self, bucket: str, name: str, data: bytes, content_type: str = "application/octet-stream",
                   conditions: dict[str, int] | None = None) -> dict: ...


class LoggingApi(Protocol):
    """Cloud Logging (`world.logging`): where a Healthcare import writes its per-file errors."""

    def write(self, project_id: str, log_id: str, entries: list[dict]) -> None: ...


class WorldView(Protocol):
    """The part of `world.World` a backend uses."""

    options: Options
    db: Database
    docs: DocStore
    blobs: BlobStore
    clock: Callable[[], float]
    latency: Latency
    quotas: Quotas
    faults: Faults
    operations: Operations
    stand_ins: set[str]     # names of the public-dataset stand-ins (publicdata.py)
    epoch: int              # bumped by every reset

    # The other APIs' backends, read-only here (so that World's concrete backends satisfy them).
    @property
    def crm(self) -> ProjectsApi: ...
    @property
    def serviceusage(self) -> ServiceUsageApi: ...
    @property
    def billing(self) -> BillingApi: ...
    @property
    def storage(self) -> StorageApi: ...
    @property
    def logging(self) -> LoggingApi: ...
    # Backends reached by few others (organization policies, KMS, service accounts, IAP, Cloud Run,
    # Google sign-in), through getattr where they are optional: typed loosely here, each documents
    # what it offers in its own state.py.
    orgpolicy: Any
    kms: Any
    iamadmin: Any
    iap: Any
    cloudrun: Any
    builds: Any
    oauth: Any

    def blobs_dirty(self) -> None: ...
