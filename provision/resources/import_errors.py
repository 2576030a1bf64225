"""The files an import failed on: read from Cloud Logging by what Google documents of the
import's error entries, and said in one report (at most SHOW_FAILED named, then "and K more").
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from provision.gcp.context import Ctx
from provision.gcp.errors import RPC_CODES, is_service_disabled, parse
from provision.gcp.retry import Cancelled, NotYet

SHOW_FAILED = 10      # failed objects named in a message; the rest are counted ("and K more")
LOG_PAGE = 100        # entries read from Cloud Logging (one page) to find those names
# An import's error entries in Cloud Logging, found by what Google documents of them (the logging
# how-to, https://cloud.google.com/healthcare-api/docs/how-tos/logging, "Log contents" and its DICOM
# import sample): `resource.type` healthcare_dicom_store, a jsonPayload of @type ImportDicomLogEntry
# {source, error {code, message}}, and `operation` holding the ID of the operation that failed.
# The log's name is not documented, so the query does not name it.
STORE_RESOURCE = "healthcare_dicom_store"
IMPORT_LOG_ENTRY = "type.googleapis.com/google.cloud.healthcare.logging.ImportDicomLogEntry"
LOGS_ROLE = "roles/logging.viewer"


def counts_text(c: dict[str, int]) -> str:
    """"3 imported, 1 failed[, 2 pending]": an import operation's counters."""
    return f"{c['success']} imported, {c['failure']} failed" + (f", {c['pending']} pending" if c.get("pending") else "")


@dataclass
class ImportErrors:
    """What Cloud Logging says about an import's failed objects: (gs:// source, error) pairs, in
    name order, and `unavailable`, why they could not be read ("" when they were)."""

    failed: list[tuple[str, str]] = field(default_factory=list)
    unavailable: str = ""


def log_filter(op_name: str, created: str | None) -> str:
    """The entries:list filter for one import's error entries (the documented fields above).

    `operation.id:` (has) with the bare operation number matches whether Google puts the full
    operation name there or only the ID (the how-to says "the type and ID of the operation").
    The timestamp bound, a minute before the operation began, keeps the query fast, as the
    API's description advises."""
    terms = [f'resource.type="{STORE_RESOURCE}"', f'jsonPayload.@type="{IMPORT_LOG_ENTRY}"',
             f'operation.id:"{op_name.rsplit("/", 1)[-1]}"']
    since = _minus_a_minute(created)
    if since:
        terms.append(f'timestamp>="{since}"')
    return " AND ".join(terms)


def _minus_a_minute(stamp: str | None) -> str | None:
    """An RFC 3339 time (`Z` or an offset; nanoseconds allowed) a minute earlier, in UTC; None if unreadable."""
    m = re.match(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.\d+)?(Z|[+-]\d{2}:\d{2})?$", stamp or "")
    if not m:
        return None
    when = datetime.fromisoformat(m.group(1) + (m.group(2) or "Z").replace("Z", "+00:00"))
    return (when - timedelta(minutes=1)).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def import_errors(ctx: Ctx, op_name: str, *, created: str | None = None, expected: int = 1) -> ImportErrors:
    """The objects an import failed on, with their errors, from Cloud Logging
    (POST https://logging.googleapis.com/v2/entries:list). Entries may lag the operation's end:
    while none shows and `expected` > 0, it asks again for up to `target.logs_lag_s`. A caller
    who may not read the logs (403), a disabled Logging API, or any other failure gives an
    `unavailable` reason instead of an error: naming files is a courtesy, never the failure."""
    project = op_name.split("/")[1] if op_name.startswith("projects/") else ""
    body = {"resourceNames": [f"projects/{project}"], "filter": log_filter(op_name, created),
            "orderBy": "timestamp asc", "pageSize": LOG_PAGE}

    def read() -> dict[str, str]:
        resp = ctx.target.logging().entries().list(body=body).execute(num_retries=0)
        found: dict[str, str] = {}
        for entry in resp.get("entries") or []:
            payload = entry.get("jsonPayload") or {}
            source = payload.get("source")
            if isinstance(source, str) and source:
                err = payload.get("error") or {}
                code = err.get("code")
                name = RPC_CODES.get(code, "failed") if isinstance(code, int) else "failed"
                found.setdefault(source, str(err.get("message") or name))
        if not found and expected:
            raise NotYet("the import's error entries are not in Cloud Logging yet")
        return found

    try:
        found = ctx.call(read, within=ctx.target.logs_lag_s)
    except NotYet:
        return ImportErrors(unavailable="Cloud Logging shows no error entry for this import")
    except Cancelled:
        raise
    except Exception as exc:  # noqa: BLE001 - see the docstring
        ge = parse(exc)
        if ge is not None and is_service_disabled(ge):
            why = f"the Cloud Logging API is disabled in project {project}"
        elif ge is not None and ge.http_status == 403:
            why = f"you may not read project {project}'s logs (logging.logEntries.list; ask for {LOGS_ROLE})"
        else:
            why = f"reading Cloud Logging failed ({ge.code_text + ': ' + ge.message if ge else exc})"
        return ImportErrors(unavailable=why)
    return ImportErrors(sorted(found.items()))


def _failed_lines(errors: ImportErrors, failures: int) -> str:
    """The failed objects, one per line (at most SHOW_FAILED, then "and K more")."""
    shown = errors.failed[:SHOW_FAILED]
    lines = [f"\n    {source}: {message}" for source, message in shown]
    if failures > len(shown):
        lines.append(f"\n    ... and {failures - len(shown)} more")
    return "".join(lines)


def failure_report(uri: str, c: dict[str, int], errors: ImportErrors, logs: str | None) -> str:
    text = counts_text(c)
    if errors.failed:
        text += ":" + _failed_lines(errors, c["failure"])
    elif errors.unavailable:
        text += f"; the failed files are not named here: {errors.unavailable}"
    if logs:
        text += ("\n  logs: " if errors.failed else "; logs: ") + logs
    return text
