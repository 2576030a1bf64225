"""The Healthcare backend's core, which the other parts build on: the cross-API lookups (project,
its policies, the service agent), the dataset-level long-running operations (IDs, logs links,
recovery after a restart), the records of datasets and stores, and ingest (STOW and import share it)."""
from __future__ import annotations

import hashlib
import urllib.parse

from provision.emulator.errors import invalid_argument, not_found
from provision.emulator.state_base import ApiBackend
from provision.emulator.healthcare.dicomfile import NotDicom, Parsed, parse_file
from provision.emulator.healthcare.index import DicomIndex, IngestResult
from provision.emulator.worldview import WorldView
from provision.emulator.healthcare.common import (
    SERVICE,
    DATASET,
    STORE,
    POLICY,
    LOCATIONS,
    timestamp,
    denied,
)


class HealthcareCore(ApiBackend):
    """The state every part of the Healthcare backend (`provision.emulator.healthcare.state`) works on."""

    def __init__(self, world: WorldView):
        super().__init__(world)
        self.index = DicomIndex(world.db, on_release=world.blobs_dirty)
        self._recover_interrupted()

    # ---- cross-API lookups ------------------------------------------------------------------
    def project(self, project: str, permission: str, resource: str) -> dict:
        """The project record for a Healthcare call; 403 when it does not exist (or is being
        deleted), SERVICE_DISABLED while the API is not enabled."""
        crm = getattr(self.world, "crm", None)
        record = crm.lookup(project) if crm else None
        if record is None or record.get("state", "ACTIVE") != "ACTIVE":
            raise denied(permission, resource)
        usage = getattr(self.world, "serviceusage", None)
        if usage is not None:
            usage.require_enabled(record, SERVICE)
        return record

    def project_policies(self, project_id: str) -> list[dict]:
        crm = getattr(self.world, "crm", None)
        return list(crm.policy_chain(project_id)) if crm else []

    def policy(self, resource: str) -> dict | None:
        return self.docs.get(POLICY, resource)

    @staticmethod
    def check_location(location: str) -> None:
        # No capture shows Google's answer to a dataset created in a location it does not offer. The
        # closest real one (GoogleCloudPlatform/mllp#2, 2019: a Healthcare call naming the wrong
        # location) is 400 INVALID_ARGUMENT "location ID invalid, expected us-central1"; so a
        # synchronous 400 INVALID_ARGUMENT here too, before any operation starts.
        if location not in LOCATIONS:
            raise invalid_argument(f"Location '{location}' is not supported by the Cloud Healthcare API; "
                                   f"supported locations: {', '.join(LOCATIONS)}.")

    def agent_email(self, project_number: str) -> str:
        return f"service-{project_number}@gcp-sa-healthcare.iam.gserviceaccount.com"

    # ---- locations ----------------------------------------------------------------------------
    @staticmethod
    def location_view(project_id: str, location: str) -> dict:
        return {"name": f"projects/{project_id}/locations/{location}", "locationId": location}

    # ---- datasets -----------------------------------------------------------------------------
    def dataset_record(self, name: str) -> dict | None:
        return self.docs.get(DATASET, name)

    def initialized(self, record: dict) -> bool:
        """Whether the dataset is usable: its create operation has finished (plus the optional
        `propagation:healthcare.datasets.create` window). Until then Google answers a GET, and a
        store created in it, 404 "dataset not initialized" (terraform-provider-google #8128:
        Terraform GETs right after the create call without waiting for the operation; its
        predicate HealthcareDatasetNotInitialized retries exactly that; python-docs-samples
        #5331 shows it for a child store; Google's Go sample: "the dataset is not always ready to
        use immediately ... Initialization usually takes less than a minute")."""
        ready = record.get("readyAt")
        if ready is None:   # a record written before readyAt existed
            ready = record.get("createdAt", 0) + self.world.latency.seconds("op:healthcare.datasets.create")
        return self.world.clock() >= ready + self.world.latency.seconds("propagation:healthcare.datasets.create")

    def require_initialized(self, record: dict) -> None:
        if not self.initialized(record):
            # The message Google's answer carries: an HttpError whose details are the message
            # alone, `Details: "dataset not initialized"` (python-docs-samples #5331).
            raise not_found("dataset not initialized")

    # ---- operations ---------------------------------------------------------------------------
    def _op_name(self, dataset: str) -> str:
        """A 19-digit operation ID drawn from a persisted counter and the run's seed: the same seed
        and the same calls give the same IDs."""
        with self.world.db.transaction():
            doc = self.docs.get("counter", "healthcare.operations") or {"value": 0}
            doc["value"] += 1
            self.docs.put("counter", "healthcare.operations", doc)
        digest = hashlib.sha256(f"{self.world.options.seed}:{doc['value']}".encode()).digest()
        return f"{dataset}/operations/{10**18 + int.from_bytes(digest[:8], 'big') % (9 * 10**18)}"

    def _epoch(self) -> int:
        return getattr(self.world, "epoch", 0)

    @staticmethod
    def _logs_url(project_id: str, op_id: str, log: str | None = None,
                  resource_type: str = "healthcare_dataset") -> str:
        """The Cloud Logging query of an operation's log entries (the dataset's; for an import,
        the store's import error log, the entries `_log_import_errors` writes)."""
        query = f'resource.type="{resource_type}"\n'
        if log:
            query += f'logName="projects/{project_id}/logs/{urllib.parse.quote(log, safe="")}"\n'
        query += f'operation.id="{op_id}"'
        return (f"https://console.cloud.google.com/logs/query/query={urllib.parse.quote(query, safe='')}"
                f"?project={project_id}")

    def list_operations(self, dataset: str) -> list[dict]:
        return self.world.operations.list(dataset + "/operations/")

    def _recover_interrupted(self) -> None:
        """Imports and exports that were running when the emulator stopped end with ABORTED."""
        for name, record in self.docs.list("operation", "projects/"):
            if record.get("busy") and "/datasets/" in name:
                meta = dict(record.get("metadata") or {})
                meta["endTime"] = timestamp(self.world.clock())
                counter = dict(meta.get("counter") or {})
                if counter.get("pending"):   # what was still to do failed with the interruption
                    pending = int(counter.pop("pending"))
                    counter["failure"] = str(int(counter.get("failure") or 0) + pending)
                    meta["counter"] = counter
                self.world.operations.finish(name, error={"code": 10, "message": "The operation was interrupted by an "
                                                          "emulator restart; run it again."}, done_metadata=meta)

    # ---- DICOM stores -------------------------------------------------------------------------
    def store_record(self, name: str) -> dict | None:
        return self.docs.get(STORE, name)

    def store_sid(self, store_name: str) -> int | None:
        """The index sid of an existing store (kept in its record), or None when there is no store."""
        with self.world.db.transaction():
            record = self.store_record(store_name)
            if record is None:
                return None
            sid = record.get("sid")
            return sid if sid is not None else self.index.store_id(store_name)

    def sid(self, store_name: str) -> int:
        """The sid of a store the caller has just checked exists; 403 when it went away meanwhile."""
        sid = self.store_sid(store_name)
        if sid is None:
            raise denied("healthcare.dicomStores.get", store_name)
        return sid

    # ---- ingest -------------------------------------------------------------------------------
    def ingest_blobs(self, sid: int, blobs: list[tuple[str, int]]) -> list[IngestResult | str] | None:
        """Parse and index stored blobs into store `sid`; each result is an IngestResult or the
        reason the object is not storable. None when the store is gone (nothing indexed)."""
        parsed: list[tuple[Parsed, str, int]] = []
        positions: list[int] = []          # where each parsed one's result goes
        failed: dict[int, str] = {}        # position: why that object is not storable
        for pos, (key, size) in enumerate(blobs):
            try:
                parsed.append((parse_file(self.world.blobs.path(key)), key, size))
                positions.append(pos)
            except NotDicom as exc:
                failed[pos] = str(exc)
            except OSError as exc:
                failed[pos] = f"cannot read object: {exc}"
            except Exception as exc:  # noqa: BLE001 - one bad object is one failure, never the whole import
                failed[pos] = f"malformed DICOM data: {exc}"
        indexed: dict[int, IngestResult] = {}
        if parsed:
            results = self.index.ingest(sid, parsed)
            if results is None:
                return None
            indexed = dict(zip(positions, results, strict=True))
        return [indexed[pos] if pos in indexed else failed[pos] for pos in range(len(blobs))]
