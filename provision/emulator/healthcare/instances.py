"""DICOMweb writes: STOW-RS (store instances) and deletes of an instance, a series or a study
(the last two a long-running operation, as Google's are). Reads go to the index directly."""
from __future__ import annotations

import os

from provision.emulator.healthcare import wire
from provision.emulator.healthcare.dicomfile import NotDicom, Parsed, parse_file
from provision.emulator.operations import injected_failure
from provision.emulator.healthcare.common import (
    METADATA_TYPE,
    EMPTY_TYPE,
    DELETE_STUDY,
    DELETE_SERIES,
    timestamp,
    denied,
)
from provision.emulator.healthcare.backend import HealthcareCore


class Instances(HealthcareCore):
    """STOW-RS and DICOMweb deletes."""

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
