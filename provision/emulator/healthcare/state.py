"""Healthcare API backend (no HTTP): datasets, DICOM stores, their IAM policies, dataset-level
long-running operations, ingest (STOW and import share it), import from and export to Cloud
Storage, and the DICOM index.

Rules it keeps, as Google does: a project's Healthcare calls fail with SERVICE_DISABLED until the
API is enabled; the Healthcare service agent comes into being with the project's first dataset;
an import whose bucket the agent cannot read ends with PERMISSION_DENIED; a duplicate instance
with identical bytes is a no-op, with different bytes a failure.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import threading
import time
import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from provision.emulator import iam
from provision.emulator.errors import ApiError, already_exists, error_info, invalid_argument, not_found
from provision.emulator.healthcare import cmek, wire
from provision.emulator.healthcare.dicomfile import EXPLICIT_LE, NotDicom, Parsed, parse_file
from provision.emulator.healthcare.index import DicomIndex, IngestResult
from provision.emulator.healthcare.pixels import to_explicit_le
from provision.emulator.operations import injected_failure
from provision.emulator.worldview import WorldView

ATTACH_AS = "healthcare"
SERVICE = "healthcare.googleapis.com"
DATASET = "healthcare.dataset"
STORE = "healthcare.dicomStore"
POLICY = "policy"

# What projects.locations.list answers: Google's list (reference/google-evidence.md §4.3, the
# locations page crawled 2026-04-08): 27 regions, then the multi-regions us and eu. Each entry is a
# Location with only name and locationId: the discovery document also declares displayName, labels and
# metadata, but no capture shows Healthcare filling them, and JSON leaves out empty fields.
LOCATIONS = ("northamerica-northeast1", "northamerica-northeast2", "us-central1", "us-east1", "us-east4", "us-west1",
             "us-west2", "us-west3", "southamerica-east1", "asia-east1", "asia-east2", "asia-northeast1",
             "asia-northeast2", "asia-northeast3", "asia-south1", "asia-southeast1", "asia-southeast2",
             "australia-southeast1", "australia-southeast2", "europe-north1", "europe-west2", "europe-west3",
             "europe-west4", "europe-west6", "me-west1", "me-central1", "me-central2", "us", "eu")

METADATA_TYPE = "type.googleapis.com/google.cloud.healthcare.v1.OperationMetadata"
DATASET_TYPE = "type.googleapis.com/google.cloud.healthcare.v1.dataset.Dataset"
IMPORT_RESPONSE_TYPE = "type.googleapis.com/google.cloud.healthcare.v1.dicom.ImportDicomDataResponse"
EXPORT_RESPONSE_TYPE = "type.googleapis.com/google.cloud.healthcare.v1.dicom.ExportDicomDataResponse"
EMPTY_TYPE = "type.googleapis.com/google.protobuf.Empty"
CREATE_DATASET = "google.cloud.healthcare.v1.dataset.DatasetService.CreateDataset"
IMPORT_METHOD = "google.cloud.healthcare.v1.dicom.DicomService.ImportDicomData"
EXPORT_METHOD = "google.cloud.healthcare.v1.dicom.DicomService.ExportDicomData"
DELETE_STUDY = "google.cloud.healthcare.v1.dicomweb.DicomWebService.DeleteStudy"
DELETE_SERIES = "google.cloud.healthcare.v1.dicomweb.DicomWebService.DeleteSeries"
GCS_PERMISSION_MESSAGE = ("Healthcare API doesn't have required Cloud Storage permission. See "
                          "https://cloud.google.com/healthcare/docs/how-tos/permissions-healthcare-api-gcp-products "
                          "for more information")
IMPORT_BATCH = 256
# Import errors go to Cloud Logging, one entry per failed object. The shape follows Google's
# documentation: jsonPayload is a google.cloud.healthcare.logging.ImportDicomLogEntry {source,
# error{code, message}} (googleapis google/cloud/healthcare/logging/dicom.proto; the logging
# how-to's sample: code 3 "empty DICOM instance found", source gs://...), `operation` holds the
# operation's type and ID, `resource` the location, dataset and store; the how-to filters them by
# resource.type healthcare_dicom_store (https://cloud.google.com/healthcare-api/docs/how-tos/logging),
# so a client can find them by those documented fields alone. The log ID, the resource label
# names and operation.producer are not in any public text we found: they follow the documented
# query_accessible_data entry (discovery healthcare.v1:
# logName .../logs/healthcare.googleapis.com%2Fquery_accessible_data, operation{id: the full
# operation name, producer: healthcare.googleapis.com/QueryAccessibleData}, resource
# healthcare_consent_store with labels project_id, location, dataset_id, consent_store_id).
IMPORT_ERRORS_LOG = "healthcare.googleapis.com/import_dicom_errors"
IMPORT_LOG_TYPE = "type.googleapis.com/google.cloud.healthcare.logging.ImportDicomLogEntry"
IMPORT_PRODUCER = "healthcare.googleapis.com/ImportDicomData"
# "If the number of errors exceeds a threshold, a limited number ... is shown in Cloud Logging"
# (logging how-to); Google sizes the threshold by the input, the emulator keeps the first 1000.
MAX_LOGGED_ERRORS = 1000
PAGE_DEFAULT, PAGE_MAX = 100, 1000


def timestamp(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


ID_RULE = ("use 1-256 letters, numbers, underscores, hyphens and periods, with at least one character that is "
           "not a period ('.', '..' and other all-period IDs are not allowed)")


def valid_id(value: str | None) -> bool:
    """Dataset and DICOM store IDs: 1-256 of letters, digits, '_', '-' and '.' (Unicode letters
    allowed), not only periods ('.' and '..' could never be addressed in a URL path)."""
    return (bool(value) and len(value) <= 256 and all(ch.isalnum() or ch in "_-." for ch in value)
            and value.strip(".") != "")


def page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode().rstrip("=")


def page_offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        return int(json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))["o"])
    except (ValueError, KeyError, TypeError):
        raise invalid_argument("Invalid page token.") from None


def page_size(raw: str | None, default: int = PAGE_DEFAULT, cap: int = PAGE_MAX) -> int:
    if raw in (None, ""):
        return default
    try:
        n = int(raw)
    except ValueError:
        raise invalid_argument(f"Invalid value for pageSize: {raw!r}") from None
    if n < 0:
        raise invalid_argument("pageSize must not be negative")
    return min(n or default, cap)


def paginate(items: list, key: str, size: int, token: str | None) -> dict:
    start = page_offset(token)
    out: dict[str, Any] = {key: items[start:start + size]} if items[start:start + size] else {}
    if start + size < len(items):
        out["nextPageToken"] = page_token(start + size)
    return out


def denied(permission: str, resource: str) -> ApiError:
    """403 for a resource that is missing or not allowed: Google does not tell the two apart."""
    return ApiError("PERMISSION_DENIED", f"Permission '{permission}' denied on resource '{resource}' (or it may not exist).",
                    [error_info("IAM_PERMISSION_DENIED", "iam.googleapis.com",
                                {"permission": permission, "resource": resource})])


def parse_gcs_uri(uri: Any, what: str) -> tuple[str, str]:
    if not isinstance(uri, str) or not uri.startswith("gs://") or len(uri) <= 5:
        raise invalid_argument(f"{what} must be a Cloud Storage URI of the form gs://bucket/path, got {uri!r}")
    bucket, _, path = uri[5:].partition("/")
    if not bucket:
        raise invalid_argument(f"{what} has no bucket: {uri!r}")
    return bucket, path


def check_import_glob(path: str, uri: str) -> str:
    """Validate an import source's wildcards; returns the literal prefix before the first one."""
    if not path:
        raise invalid_argument(f"gcsSource.uri must name objects (e.g. gs://bucket/dir/**.dcm), got {uri!r}")
    first_wild = min([i for i in (path.find("*"), path.find("?")) if i >= 0], default=-1)
    if "**" in path:
        at = path.find("**")
        rest = path[at + 2:]
        if path.count("**") > 1 or "*" in rest or "?" in rest or "/" in rest or "*" in path[:at] or "?" in path[:at]:
            raise invalid_argument(f"Invalid gcsSource.uri {uri!r}: '**' must be the last wildcard in the path, "
                                   "with no other wildcard; it may be followed by an extension such as .dcm.")
    if "***" in path:
        raise invalid_argument(f"Invalid gcsSource.uri {uri!r}.")
    return path if first_wild < 0 else path[:first_wild]


class Healthcare:
    def __init__(self, world: WorldView):
        self.world = world
        self.docs = world.docs
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

    def create_dataset(self, project: dict, location: str, dataset_id: str | None, body: dict) -> dict:
        if not dataset_id:
            raise invalid_argument("datasetId is required.", [("dataset_id", "required")])
        if not valid_id(dataset_id):
            raise invalid_argument(f"Invalid dataset ID {dataset_id!r}: {ID_RULE}.", [("dataset_id", "invalid")])
        self.check_location(location)
        orgpolicy = getattr(self.world, "orgpolicy", None)
        refusal = orgpolicy.location_refusal(project, location, "a dataset") if orgpolicy else None
        if refusal is not None:
            raise refusal
        cmek.check(self.world, project, location, body)
        name = f"projects/{project['projectId']}/locations/{location}/datasets/{dataset_id}"
        now = self.world.clock()
        metadata = {"@type": METADATA_TYPE, "apiMethodName": CREATE_DATASET, "createTime": timestamp(now)}
        seconds = self.world.latency.seconds("op:healthcare.datasets.create")
        with self.world.db.transaction():
            if self.dataset_record(name) is not None:
                raise already_exists(f"already exists: dataset {name}")
            op_name = self._op_name(name)
            metadata["logsUrl"] = self._logs_url(project["projectId"], op_name.rsplit("/", 1)[1], log=None)
            done_meta = {**metadata, "endTime": timestamp(now + seconds)}
            if self.world.faults.draw_operation():
                return self.world.operations.start(op_name, metadata, seconds=seconds, error=injected_failure(),
                                                   done_metadata=done_meta)
            view = {"name": name, "timeZone": body.get("timeZone") or "UTC"}
            if body.get("encryptionSpec"):
                view["encryptionSpec"] = body["encryptionSpec"]
            self.docs.put(DATASET, name, {"view": view, "createdAt": now, "readyAt": now + seconds,
                                          "projectNumber": str(project["number"])})
            # The first dataset creates the service agent, and Google grants an agent it creates
            # itself its default role (agents made by generateServiceIdentity get none).
            number = str(project["number"])
            if not self.world.serviceusage.agent_exists(number, SERVICE):
                email = self.world.serviceusage.ensure_agent(number, SERVICE)
                self.world.crm.add_binding(project["projectId"], "roles/healthcare.serviceAgent",
                                           f"serviceAccount:{email}")
            return self.world.operations.start(op_name, metadata, seconds=seconds,
                                               response={"@type": DATASET_TYPE, **view}, done_metadata=done_meta)

    def list_datasets(self, project_id: str, location: str) -> list[dict]:
        prefix = f"projects/{project_id}/locations/{location}/datasets/"
        return [r["view"] for k, r in self.docs.list(DATASET, prefix) if "/" not in k[len(prefix):]]

    def patch_dataset(self, name: str, body: dict, mask: str | None) -> dict:
        paths = _mask_paths(mask)
        for p in paths:
            if p != "timeZone" and p != "time_zone":
                raise invalid_argument(f"Invalid update mask path {p!r}: only timeZone can be updated.")
        with self.world.db.transaction():   # read-check-write: a concurrent delete is never undone
            record = self.dataset_record(name)
            if record is None:
                raise denied("healthcare.datasets.update", name)
            if paths:
                record["view"]["timeZone"] = body.get("timeZone") or "UTC"
            self.docs.put(DATASET, name, record)
        return record["view"]

    def delete_dataset(self, name: str) -> None:
        with self.world.db.transaction():
            for store_name, _ in self.docs.list(STORE, name + "/dicomStores/"):
                self.docs.delete(STORE, store_name)
                self.docs.delete(POLICY, store_name)
            self.docs.delete(DATASET, name)
            self.docs.delete(POLICY, name)
            self.index.drop_stores_under(name + "/dicomStores/")

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

    def create_store(self, dataset: str, store_id: str | None, body: dict) -> dict:
        if not store_id:
            raise invalid_argument("dicomStoreId is required.", [("dicom_store_id", "required")])
        if not valid_id(store_id):
            raise invalid_argument(f"Invalid DICOM store ID {store_id!r}: {ID_RULE}.", [("dicom_store_id", "invalid")])
        _check_labels(body.get("labels"))
        name = f"{dataset}/dicomStores/{store_id}"
        self.world.latency.sleep("sync:healthcare.dicomStores.create")
        with self.world.db.transaction():
            if self.store_record(name) is not None:
                raise already_exists(f"already exists: DICOM store {name}")
            view = {"name": name, **{k: v for k, v in body.items() if k != "name" and v not in (None, {}, [])}}
            sid = self.index.add_store(name)   # the only place an index row is made
            self.docs.put(STORE, name, {"view": view, "sid": sid})
        return view

    def list_stores(self, dataset: str, filter_expr: str | None = None) -> list[dict]:
        prefix = dataset + "/dicomStores/"
        views = [r["view"] for k, r in self.docs.list(STORE, prefix)]
        if filter_expr:
            views = [v for v in views if _label_filter(filter_expr)(v)]
        return views

    def patch_store(self, name: str, body: dict, mask: str | None) -> dict:
        allowed = {"labels", "notificationConfig", "notificationConfigs", "streamConfigs"}
        tops = []
        for p in _mask_paths(mask):
            top = p.split(".")[0]
            top = {"notification_config": "notificationConfig", "notification_configs": "notificationConfigs",
                   "stream_configs": "streamConfigs"}.get(top, top)
            if top not in allowed:
                raise invalid_argument(f"Invalid update mask path {p!r}: updatable fields are {', '.join(sorted(allowed))}.")
            if top == "labels":
                _check_labels(body.get("labels"))
            tops.append(top)
        with self.world.db.transaction():   # read-check-write: a concurrent delete is never undone
            record = self.store_record(name)
            if record is None:
                raise denied("healthcare.dicomStores.update", name)
            view = record["view"]
            for top in tops:
                if body.get(top) in (None, {}, []):
                    view.pop(top, None)
                else:
                    view[top] = body[top]
            self.docs.put(STORE, name, record)
        return view

    def delete_store(self, name: str) -> None:
        with self.world.db.transaction():
            self.docs.delete(STORE, name)
            self.docs.delete(POLICY, name)
            self.index.drop_store(name)

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

    # ---- IAM ----------------------------------------------------------------------------------
    def get_policy(self, resource: str, requested_version: int | None) -> dict:
        return iam.view(self.policy(resource) or iam.empty_policy(), requested_version)

    def set_policy(self, resource: str, body: dict) -> dict:
        policy = body.get("policy")
        if not isinstance(policy, dict):
            raise invalid_argument("policy is required.", [("policy", "required")])
        for b in policy.get("bindings") or []:
            role = b.get("role") or ""
            if not (role.startswith("roles/") or "/roles/" in role):
                raise invalid_argument(f"Role {role!r} is not a valid role name.")
            for m in b.get("members") or []:
                self._check_member(m)
        self.world.latency.sleep("sync:healthcare.setIamPolicy")
        with self.world.db.transaction():
            current = self.policy(resource) or iam.empty_policy()
            added = {m for b in policy.get("bindings") or [] for m in b.get("members") or []} - \
                {m for b in current.get("bindings") or [] for m in b.get("members") or []}
            if added and getattr(self.world, "orgpolicy", None) is not None:
                self.world.orgpolicy.check_members(resource.split("/")[1], sorted(added))
            new = iam.replace(current, policy)
            self.docs.put(POLICY, resource, new)
        return iam.view(new, 3)

    def _check_member(self, member: str) -> None:
        if member in ("allUsers", "allAuthenticatedUsers"):
            return
        kind, sep, who = member.partition(":")
        if not sep or not who or kind not in ("user", "serviceAccount", "group", "domain", "principal", "principalSet",
                                              "deleted", "projectOwner", "projectEditor", "projectViewer"):
            raise invalid_argument(f"Invalid member {member!r} in the policy.")
        if kind == "serviceAccount":
            usage = getattr(self.world, "serviceusage", None)
            parsed = usage.parse_agent_email(who) if usage is not None else None
            if parsed and not usage.agent_exists(*parsed):
                raise ApiError("INVALID_ARGUMENT", f"Service account {who} does not exist.",
                               [error_info("INVALID_IAM_POLICY", "healthcare.googleapis.com", {"member": member})])

    def test_permissions(self, principal: str | None, permissions: list[str], policies: list[dict | None]) -> dict:
        if not isinstance(permissions, list):
            raise invalid_argument("permissions must be a list.")
        held = []
        for p in permissions:
            if not isinstance(p, str) or "." not in p or "*" in p:
                raise invalid_argument(f"Permission {p!r} is not valid.")
            if not p.startswith("healthcare."):
                raise invalid_argument(f"Permission {p} is not valid for this resource.")
            if not self.world.options.enforce_iam or iam.allowed(principal or "", p, [x for x in policies if x]):
                held.append(p)
        return {"permissions": held} if held else {}

    # ---- ingest -------------------------------------------------------------------------------
    def ingest_blobs(self, sid: int, blobs: list[tuple[str, int]]) -> list[IngestResult | str] | None:
        """Parse and index stored blobs into store `sid`; each result is an IngestResult or the
        reason the object is not storable. None when the store is gone (nothing indexed)."""
        parsed, out = [], []
        positions = []
        for key, size in blobs:
            try:
                parsed.append((parse_file(self.world.blobs.path(key)), key, size))
                positions.append(len(out))
                out.append(None)
            except NotDicom as exc:
                out.append(str(exc))
            except OSError as exc:
                out.append(f"cannot read object: {exc}")
            except Exception as exc:  # noqa: BLE001 - one bad object is one failure, never the whole import
                out.append(f"malformed DICOM data: {exc}")
        if parsed:
            results = self.index.ingest(sid, parsed)
            if results is None:
                return None
            for pos, res in zip(positions, results, strict=True):
                out[pos] = res
        return out

    # ---- STOW-RS --------------------------------------------------------------------------------
    def spool_dir(self) -> str:
        """Where request bodies are spooled: beside the blobs, so accepted files are moved, not copied."""
        return str(self.world.blobs.root)

    def store_instances(self, store_name: str, files: list[str], study: str | None) -> tuple[list, list[dict]]:
        """STOW-RS: parse each spooled part file, keep only the instances that can be stored (moved
        into the blob store), index them; the files are consumed. Returns (IngestResults of the
        indexed instances, failures as {sop_class?, sop?, reason, code, detail})."""
        failed: list[dict] = []
        accepted: list[tuple[Parsed, str, int]] = []
        try:
            sid = self.sid(store_name)
            for path in files:
                try:
                    parsed = parse_file(path)
                except NotDicom as exc:
                    failed.append({"reason": wire.FAILURE_CANNOT_UNDERSTAND, "detail": f"invalid DICOM data: {exc}",
                                   "code": 400})
                    continue
                except Exception as exc:  # noqa: BLE001 - any parse failure is a rejected part, not a 500
                    failed.append({"reason": wire.FAILURE_CANNOT_UNDERSTAND, "detail": f"malformed DICOM data: {exc}",
                                   "code": 400})
                    continue
                if study and parsed.study != study:
                    failed.append({"sop_class": parsed.sop_class, "sop": parsed.sop, "reason": wire.FAILURE_PROCESSING,
                                   "code": 409, "detail": f"the instance's StudyInstanceUID {parsed.study} does not "
                                   f"match the study {study} in the request URL"})
                    continue
                size = os.path.getsize(path)
                accepted.append((parsed, self.world.blobs.put_file(path), size))
        finally:
            for path in files:
                if os.path.exists(path):
                    os.unlink(path)
        results = self.index.ingest(sid, accepted) if accepted else []
        if results is None or any(r.outcome != "stored" for r in results):
            self.world.blobs_dirty()   # bytes stored for instances that were not kept
        if results is None:   # deleted (or reset) while the request was being read
            raise denied("healthcare.dicomStores.dicomWebWrite", store_name)
        return results, failed

    def delete_instance(self, store_name: str, study: str, series: str, sop: str) -> int:
        return self.index.delete(self.sid(store_name), study, series, sop)

    # ---- import -------------------------------------------------------------------------------
    def start_import(self, store_name: str, project: dict, body: dict) -> dict:
        """Validate the request and answer the operation at once; a background worker lists the
        bucket and imports."""
        if body.get("blobStorageSettings"):
            raise invalid_argument("blobStorageSettings is not supported in v1.")
        uri = (body.get("gcsSource") or {}).get("uri")
        bucket, path = parse_gcs_uri(uri, "gcsSource.uri")
        prefix = check_import_glob(path, uri)
        dataset = store_name.rsplit("/dicomStores/", 1)[0]
        op_name = self._op_name(dataset)
        op_id = op_name.rsplit("/", 1)[1]
        now = self.world.clock()
        metadata = {"@type": METADATA_TYPE, "apiMethodName": IMPORT_METHOD, "createTime": timestamp(now),
                    "logsUrl": self._logs_url(project["projectId"], op_name, IMPORT_ERRORS_LOG,
                                              "healthcare_dicom_store")}
        seconds = self.world.latency.seconds("op:healthcare.import")
        if self.world.faults.draw_operation():
            return self.world.operations.start(op_name, metadata, seconds=seconds, error=injected_failure(),
                                               done_metadata={**metadata, "endTime": timestamp(now + seconds)})
        sid = self.sid(store_name)
        view = self.world.operations.start(op_name, metadata, seconds=seconds, busy=True)
        agent = f"serviceAccount:{self.agent_email(project['number'])}"
        job = _ImportJob(op_name, metadata, now, store_name, sid, self._epoch(), bucket, uri, path, prefix, agent)
        threading.Thread(target=self._run_import, name=f"import-{op_id}", daemon=True, args=(job,)).start()
        return view

    def _current(self, store_name: str, sid: int, epoch: int) -> bool:
        """The store a background job works on still exists (same sid) and the world was not reset."""
        return self._epoch() == epoch and self.store_sid(store_name) == sid

    def _finish_operation(self, op_name: str, metadata: dict, done_at: float, response_type: str,
                          error: dict | None = None, counter: dict | None = None, epoch: int | None = None) -> None:
        """End an import or export: endTime not before the promised `done_at`, the counter if any, then
        the error, or else a response of `response_type`. Nothing happens after a reset (`epoch`)."""
        meta = {**metadata, "endTime": timestamp(max(self.world.clock(), done_at))}
        if counter:
            meta["counter"] = counter
        with self.world.db.transaction():
            if epoch is not None and self._epoch() != epoch:
                return
            if error:
                self.world.operations.finish(op_name, error=error, done_metadata=meta)
            else:
                self.world.operations.finish(op_name, response={"@type": response_type}, done_metadata=meta)

    def _progress(self, job: "_ImportJob", counter: dict) -> None:
        with self.world.db.transaction():
            if self._epoch() == job.epoch:
                self.world.operations.update_metadata(job.op_name, {**job.metadata, "counter": counter})

    def _run_import(self, job: "_ImportJob") -> None:
        done_at = job.started + self.world.latency.seconds("op:healthcare.import")

        def end(error=None, counter=None):
            self._finish_operation(job.op_name, job.metadata, done_at, IMPORT_RESPONSE_TYPE, error, counter,
                                   epoch=job.epoch)

        success = failure = 0
        total = logged = 0
        try:
            storage = getattr(self.world, "storage", None)
            if storage is None or storage.bucket(job.bucket) is None:
                return end({"code": 5, "message": f"Cloud Storage bucket {job.bucket} not found: cannot import {job.uri}."})
            if not storage.can_read(job.agent, job.bucket):
                return end({"code": 7, "message": GCS_PERMISSION_MESSAGE})
            # A Requester Pays source bucket: the import request has no userProject (the discovery
            # document's ImportDicomDataRequest is {gcsSource{uri}, blobStorageSettings}); the
            # service agent reads the objects and its own project, the store's, is the one billed.
            # Google documents no such rule; it is what a Google Cloud Skills Boost lab does with no
            # billing project at all (a public copy of its solution script runs `gcloud healthcare
            # dicom-stores import gcs ... --gcs-uri=gs://gcs-public-data--healthcare-nih-chest-xray/
            # dicom/000000*.dcm`), and the NIH dataset's page says "Your GCP project will be billed".
            objects = list(storage.iter_objects(job.bucket, glob=job.path if job.path != job.prefix else None,
                                                prefix=job.prefix))
            if job.path == job.prefix:   # no wildcard: exactly that object
                objects = [o for o in objects if o[0] == job.path]
            for _, key, _ in objects:    # kept from the sweeper until indexed (or the job ends)
                self.world.blobs.pin(key)
            total = len(objects)
            # The operation takes the fixed time plus a share per instance.
            done_at += self.world.latency.seconds("op:healthcare.import.per_instance", total)
            if not objects:
                return end({"code": 5, "message": f"No objects found matching {job.uri}."})
            self._progress(job, _counter(0, 0, total))
            gone = {"code": 5, "message": f"DICOM store {job.store_name} was deleted during the import."}
            for i in range(0, total, IMPORT_BATCH):
                if not self._current(job.store_name, job.sid, job.epoch):   # deleted or reset meanwhile
                    return end(gone, _counter(success, failure + total - i, 0))
                batch = objects[i:i + IMPORT_BATCH]
                results = self.ingest_blobs(job.sid, [(key, size) for _, key, size in batch])
                if results is None:
                    return end(gone, _counter(success, failure + total - i, 0))
                errors = []
                for (name, _, _), res in zip(batch, results, strict=True):
                    if isinstance(res, IngestResult) and res.outcome in ("stored", "duplicate"):
                        success += 1
                    else:
                        failure += 1
                        errors.append((f"gs://{job.bucket}/{name}", *_import_error(res)))
                logged = self._log_import_errors(job, errors, logged)
                pending = total - i - len(batch)
                if pending:
                    self._progress(job, _counter(success, failure, pending))
            while self.world.clock() < done_at and self._epoch() == job.epoch:   # the per-instance time
                time.sleep(min(0.05, max(0.0, done_at - self.world.clock())))
            counter = _counter(success, failure, 0)
            if failure:
                return end({"code": 13, "message": f"{failure} of {total} files failed to import; the errors are in "
                                                   f"Cloud Logging: see metadata.logsUrl."}, counter)
            end(None, counter)
        except Exception as exc:  # noqa: BLE001 - an import must always finish
            end({"code": 13, "message": f"Internal error during import: {exc}"},
                _counter(success, failure + max(total - success - failure, 0), 0))
        finally:
            self.world.blobs.release_pins()

    def _log_import_errors(self, job: "_ImportJob", errors: list[tuple[str, int, str]], logged: int) -> int:
        """Write one Cloud Logging entry per failed object (up to MAX_LOGGED_ERRORS per operation);
        returns how many this operation has logged."""
        logging_api = getattr(self.world, "logging", None)
        keep = errors[:max(0, MAX_LOGGED_ERRORS - logged)]
        if logging_api is None or not keep or self._epoch() != job.epoch:
            return logged
        parts = job.store_name.split("/")   # projects/P/locations/L/datasets/D/dicomStores/S
        labels = {"project_id": parts[1], "location": parts[3], "dataset_id": parts[5], "dicom_store_id": parts[7]}
        logging_api.write(parts[1], IMPORT_ERRORS_LOG, [{
            "resource": {"type": "healthcare_dicom_store", "labels": labels},
            "severity": "ERROR",
            "operation": {"id": job.op_name, "producer": IMPORT_PRODUCER},
            "jsonPayload": {"@type": IMPORT_LOG_TYPE, "source": source, "error": {"code": code, "message": message}},
        } for source, code, message in keep])
        return logged + len(keep)

    # ---- export -------------------------------------------------------------------------------
    def start_export(self, store_name: str, project: dict, body: dict) -> dict:
        if body.get("bigqueryDestination") or body.get("filterConfig"):
            raise ApiError("UNIMPLEMENTED", "The emulator exports to Cloud Storage only, without filterConfig.")
        dest = body.get("gcsDestination") or {}
        bucket, prefix = parse_gcs_uri(dest.get("uriPrefix"), "gcsDestination.uriPrefix")
        mime = (dest.get("mimeType") or "").replace(" ", "")
        if mime not in ("", "application/dicom", "application/dicom;transfer-syntax=*",
                        "application/dicom;transfer-syntax=1.2.840.10008.1.2.1"):
            raise invalid_argument(f"Unsupported export mimeType {dest.get('mimeType')!r}: the emulator exports "
                                   "application/dicom, as stored or in Explicit VR Little Endian.")
        dataset = store_name.rsplit("/dicomStores/", 1)[0]
        op_name = self._op_name(dataset)
        now = self.world.clock()
        metadata = {"@type": METADATA_TYPE, "apiMethodName": EXPORT_METHOD, "createTime": timestamp(now),
                    "logsUrl": self._logs_url(project["projectId"], op_name.rsplit("/", 1)[1])}
        seconds = self.world.latency.seconds("op:healthcare.import")
        if self.world.faults.draw_operation():
            return self.world.operations.start(op_name, metadata, seconds=seconds, error=injected_failure(),
                                               done_metadata={**metadata, "endTime": timestamp(now + seconds)})
        view = self.world.operations.start(op_name, metadata, seconds=seconds, busy=True)
        agent = f"serviceAccount:{self.agent_email(project['number'])}"
        threading.Thread(target=self._run_export, daemon=True, name="export",
                         args=(op_name, metadata, now + seconds, store_name, bucket, prefix.rstrip("/"), mime, agent)).start()
        return view

    def _run_export(self, op_name, metadata, done_at, store_name, bucket, prefix, mime, agent) -> None:
        end = functools.partial(self._finish_operation, op_name, metadata, done_at, EXPORT_RESPONSE_TYPE)
        try:
            storage = getattr(self.world, "storage", None)
            if storage is None or storage.bucket(bucket) is None:
                return end({"code": 5, "message": f"Cloud Storage bucket {bucket} not found."})
            if not storage.holds(agent, "storage.objects.create", bucket):
                return end({"code": 7, "message": GCS_PERMISSION_MESSAGE})
            rows = self.index.all_instances(self.sid(store_name), "study, series, sop, blob, ts")
            done = 0
            for study, series, sop, blob, ts in rows:
                path = self.world.blobs.path(blob)
                if mime.endswith(EXPLICIT_LE) and ts != EXPLICIT_LE:
                    data = to_explicit_le(path, ts)
                else:
                    data = path.read_bytes()
                name = f"{prefix}/{study}/{series}/{sop}.dcm" if prefix else f"{study}/{series}/{sop}.dcm"
                storage.put_object(bucket, name, data, "application/dicom")
                done += 1
            end(None, _counter(done, 0, 0))
        except ApiError as exc:
            end(exc.rpc_status())
        except Exception as exc:  # noqa: BLE001
            end({"code": 13, "message": f"Internal error during export: {exc}"})
        finally:
            if self.world.blobs.release_pins():   # the objects it wrote are committed (or not: swept)
                self.world.blobs_dirty()

    # ---- DICOMweb delete ----------------------------------------------------------------------
    def delete_dicom(self, store_name: str, project: dict, study: str, series: str | None) -> dict:
        sid = self.sid(store_name)
        dataset = store_name.rsplit("/dicomStores/", 1)[0]
        op_name = self._op_name(dataset)
        now = self.world.clock()
        metadata = {"@type": METADATA_TYPE, "apiMethodName": DELETE_SERIES if series else DELETE_STUDY,
                    "createTime": timestamp(now), "logsUrl": self._logs_url(project["projectId"], op_name.rsplit("/", 1)[1])}
        seconds = self.world.latency.seconds("op:healthcare.delete")
        done_meta = {**metadata, "endTime": timestamp(now + seconds)}
        if self.world.faults.draw_operation():
            return self.world.operations.start(op_name, metadata, seconds=seconds, error=injected_failure(),
                                               done_metadata=done_meta)
        self.index.delete(sid, study, series)
        return self.world.operations.start(op_name, metadata, seconds=seconds, response={"@type": EMPTY_TYPE},
                                           done_metadata=done_meta)

    # ---- world hooks --------------------------------------------------------------------------
    def blob_refs(self, keys: list[str] | None) -> set[str]:
        """Which blob keys DICOM instances use (World.referenced_blobs)."""
        return self.index.blob_refs(keys)

    def reset(self) -> None:
        self.index.reset()

    def dump(self) -> dict:
        stores = {name: n for name, n in self.index.summary().items() if name not in self.world.stand_ins}
        return {"healthcare": {"dicomStores": stores}}   # the stand-ins: under publicDatasets


Backend = Healthcare


@dataclass
class _ImportJob:
    op_name: str
    metadata: dict
    started: float
    store_name: str
    sid: int
    epoch: int
    bucket: str
    uri: str
    path: str
    prefix: str
    agent: str


def _import_error(result: Any) -> tuple[int, str]:
    """(google.rpc.Code, message) for one object an import could not store."""
    if isinstance(result, IngestResult):   # a conflict: same UIDs, other bytes
        return 6, result.detail or "An instance with the same UIDs already exists."
    reason = str(result)
    if reason == "empty file":
        return 3, "empty DICOM instance found"   # Google's words for it (logging how-to sample)
    return 3, reason


def _counter(success: int, failure: int, pending: int) -> dict:
    """ProgressCounter as proto3 JSON: int64 as strings, zero fields left out."""
    out = {}
    for k, v in (("success", success), ("failure", failure), ("pending", pending)):
        if v:
            out[k] = str(v)
    return out


def _mask_paths(mask: str | None) -> list[str]:
    if not mask:
        raise invalid_argument("updateMask is required.", [("update_mask", "required")])
    return [p.strip() for p in mask.split(",") if p.strip()]


def _check_labels(labels: Any) -> None:
    if labels is None:
        return
    if not isinstance(labels, dict) or len(labels) > 64:
        raise invalid_argument("labels must be a map of at most 64 entries.")
    for k, v in labels.items():
        if not (1 <= len(k) <= 63 and k[0].isalpha() and k[0].islower()
                and all(c.islower() or c.isdigit() or c in "_-" for c in k)):
            raise invalid_argument(f"Invalid label key {k!r}: 1-63 lower-case letters, digits, '_' or '-', "
                                   "starting with a letter.")
        if not isinstance(v, str) or len(v) > 63 or not all(c.islower() or c.isdigit() or c in "_-" for c in v):
            raise invalid_argument(f"Invalid label value {v!r} for key {k!r}.")


def _label_filter(expr: str):
    """`labels.KEY=VALUE` (and `labels.KEY:*`), joined with AND: the filters dicomStores.list documents."""
    terms = [t.strip() for t in expr.replace(" and ", " AND ").split(" AND ") if t.strip()]
    checks = []
    for t in terms:
        if t.startswith("labels.") and "=" in t:
            k, _, v = t[7:].partition("=")
            k, v = k.strip(), v.strip().strip('"')
            checks.append(lambda view, k=k, v=v: view.get("labels", {}).get(k) == v)
        elif t.startswith("labels.") and t.endswith(":*"):
            key = t[7:-2].strip()
            checks.append(lambda view, k=key: k in view.get("labels", {}))  # type: ignore[misc]  # a lambda with a bound default (mypy cannot infer it)
        else:
            raise invalid_argument(f"Unsupported filter {expr!r}: use labels.KEY=VALUE.")
    return lambda view: all(c(view) for c in checks)
