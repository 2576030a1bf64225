"""Import from and export to Cloud Storage: long-running operations a background worker carries out.

As Google does: an import whose bucket the service agent cannot read ends with PERMISSION_DENIED;
each object that cannot be imported is a failure in the operation's counter and one entry in
Cloud Logging; a duplicate instance with identical bytes is a no-op, with different bytes a failure."""
from __future__ import annotations

import functools
import threading
import time
from dataclasses import dataclass
from typing import Any

from provision.emulator.errors import ApiError, invalid_argument
from provision.emulator.healthcare.dicomfile import EXPLICIT_LE
from provision.emulator.healthcare.index import IngestResult
from provision.emulator.healthcare.pixels import to_explicit_le
from provision.emulator.operations import injected_failure
from provision.emulator.healthcare.common import (
    METADATA_TYPE,
    timestamp,
)
from provision.emulator.healthcare.backend import HealthcareCore

IMPORT_RESPONSE_TYPE = "type.googleapis.com/google.cloud.healthcare.v1.dicom.ImportDicomDataResponse"
EXPORT_RESPONSE_TYPE = "type.googleapis.com/google.cloud.healthcare.v1.dicom.ExportDicomDataResponse"
IMPORT_METHOD = "google.cloud.healthcare.v1.dicom.DicomService.ImportDicomData"
EXPORT_METHOD = "google.cloud.healthcare.v1.dicom.DicomService.ExportDicomData"
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


class Transfers(HealthcareCore):
    """importDicomData and exportDicomData."""

    # ---- import -------------------------------------------------------------------------------
    def start_import(self, store_name: str, project: dict, body: dict) -> dict:
        """Validate the request and answer the operation at once; a background worker lists the
        bucket and imports."""
        if body.get("blobStorageSettings"):
            raise invalid_argument("blobStorageSettings is not supported in v1.")
        raw = (body.get("gcsSource") or {}).get("uri")
        bucket, path = parse_gcs_uri(raw, "gcsSource.uri")
        uri = str(raw)   # a str already: parse_gcs_uri refuses anything else
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
            objects = self._import_sources(storage, job)
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

    def _import_sources(self, storage: Any, job: "_ImportJob") -> list:
        """The objects an import reads, (name, blob key, size) each, pinned against the sweeper."""
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
        return objects

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

