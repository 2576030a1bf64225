"""Cloud Logging's backend: the log entries other emulated APIs write, and the listing that
`entries:list` answers. No HTTP here.

Records in `world.docs`: ("log_entry", "<projectId>/<timestamp>/<insertId>") -> the LogEntry as
listed (logName, resource, timestamp, receiveTimestamp, severity, insertId, operation?,
jsonPayload?). Keys sort by time, so a project's entries come back oldest first.

Writers (today the Healthcare import worker) call `write(project_id, log_id, entries)`; the
cross-API interface is that one method. Retention, sinks, buckets and views are not modelled.
"""
from __future__ import annotations

import hashlib
import urllib.parse
from typing import Any

from provision.emulator.state_base import ApiBackend
from provision.emulator.common import timestamp
from provision.emulator.errors import ApiError, invalid_argument
from provision.emulator.logging.query import FilterError, compile_filter

ATTACH_AS = "logging"
SERVICE = "logging.googleapis.com"
KIND = "log_entry"
PAGE_DEFAULT, PAGE_MAX = 50, 1000   # default 50 (discovery); the cap is ours (Google's is not documented there)
MAX_RESOURCES = 100                 # "A maximum of 100 resources may be specified in a single request."
ORDERS = {"timestamp asc": False, "timestamp desc": True}


def log_name(project_id: str, log_id: str) -> str:
    """`projects/P/logs/<LOG_ID URL-encoded>`, as LogEntry.logName spells it (`%2F` for `/`)."""
    return f"projects/{project_id}/logs/{urllib.parse.quote(log_id, safe='')}"


class Logging(ApiBackend):
    """Cross-API interface: `write(project_id, log_id, entries)`."""

    def write(self, project_id: str, log_id: str, entries: list[dict]) -> None:
        """Store entries in the project's log `log_id` (e.g. `healthcare.googleapis.com/import_dicom_errors`);
        each gets logName, timestamp (unless given), receiveTimestamp, severity (DEFAULT unless given)
        and an insertId."""
        now = self.world.clock()
        name = log_name(project_id, log_id)
        with self.world.db.transaction():
            counter = self.docs.get("counter", "logging.entries") or {"value": 0}
            for entry in entries:
                counter["value"] += 1
                insert_id = hashlib.sha256(f"{self.world.options.seed}:{counter['value']}".encode()).hexdigest()[:16]
                stamp = entry.get("timestamp") or timestamp(now)
                doc: dict[str, Any] = {"logName": name, **entry, "timestamp": stamp,
                                       "receiveTimestamp": timestamp(now), "insertId": insert_id}
                doc.setdefault("severity", "DEFAULT")
                self.docs.put(KIND, f"{project_id}/{stamp}/{insert_id}", doc)
            self.docs.put("counter", "logging.entries", counter)

    def entries(self, project_ids: list[str], filter_text: str | None, order_by: str | None) -> list[dict]:
        """The entries of these projects that match the filter, ordered by timestamp (then insertId)."""
        try:
            keep = compile_filter(filter_text)
        except FilterError as exc:
            raise invalid_argument(f"Unparseable filter: {exc}", [("filter", str(exc))]) from None
        order = (order_by or "timestamp asc").strip().lower()
        order = " ".join(order.split())
        if order not in ORDERS:
            raise invalid_argument(f"Invalid orderBy {order_by!r}: use \"timestamp asc\" or \"timestamp desc\".",
                                   [("order_by", "only timestamp asc and timestamp desc are permitted")])
        found = []
        for pid in dict.fromkeys(project_ids):
            found += [doc for _, doc in self.docs.list(KIND, f"{pid}/") if keep(doc)]
        found.sort(key=lambda d: (d["timestamp"], d["insertId"]), reverse=ORDERS[order])
        return found

    @staticmethod
    def unsupported(resource: str) -> ApiError:
        return ApiError("UNIMPLEMENTED", f"The emulator lists the log entries of projects only "
                                         f"(resourceNames projects/PROJECT_ID), not {resource!r}.")


Backend = Logging
