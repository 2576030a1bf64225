"""`provision audit`: who read or changed what in a blueprint's project, from its Data Access audit
entries (Cloud Logging entries:list on `projects/P/logs/cloudaudit.googleapis.com%2Fdata_access`).

One row per principal, action, store (or bucket) and study, with how many calls and the first and
last time. The study comes from a DICOMweb call's `request.dicomWebPath` (`studies/UID/...`);
calls that name no study (a search of the whole store, a bucket listing) have none. No command line
here: `audit()` returns an AuditReport with `to_json()` and `render()`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from provision.errors import ProvisionError, UsageError
from provision.gcp.context import Ctx
from provision.gcp.errors import to_provision_error
from provision.gcp.target import Target

if TYPE_CHECKING:  # for annotations only: no import at run time
    from provision.blueprint.models import Blueprint

LOG_ID = "cloudaudit.googleapis.com%2Fdata_access"
PAGE = 1000
MAX_ENTRIES = 100_000      # a bound on one report's reading; the report says when it was reached
UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str) -> timedelta:
    """`30m`, `12h`, `7d`, `2w` as a duration; anything else is a usage error."""
    m = re.fullmatch(r"\s*([0-9]+)\s*([mhdw])\s*", text or "")
    if not m or int(m.group(1)) == 0:
        raise UsageError(f"--since {text!r}: give a duration such as 30m, 12h, 7d or 2w")
    return timedelta(**{UNITS[m.group(2)]: int(m.group(1))})


@dataclass
class AuditRow:
    principal: str
    action: str
    service: str
    store: str
    study: str
    count: int
    first: str
    last: str

    def to_json(self) -> dict:
        return {"principal": self.principal, "action": self.action, "service": self.service, "store": self.store,
                "study": self.study or None, "count": self.count, "first": self.first, "last": self.last}


@dataclass
class AuditReport:
    project: str
    target: str
    since: str
    entries: int
    rows: list[AuditRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"project": self.project, "target": self.target, "since": self.since, "entries": self.entries,
                "rows": [r.to_json() for r in self.rows], "notes": list(self.notes)}

    def render(self) -> str:
        """A table, widest columns as wide as their longest cell."""
        head = f"audit of {self.project} on {self.target} since {self.since}: {self.entries} Data Access entr" + \
               ("y" if self.entries == 1 else "ies")
        cells = [("PRINCIPAL", "ACTION", "STORE", "STUDY", "COUNT", "FIRST", "LAST")] + [
            (r.principal, r.action, r.store, r.study or "-", str(r.count), _short(r.first), _short(r.last))
            for r in self.rows]
        widths = [max(len(c[i]) for c in cells) for i in range(7)]
        lines = [head] + (["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
                          if self.rows else [])
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])


def _short(stamp: str) -> str:
    """`2026-12-08T00:25:54.393568Z` -> `2026-12-08T00:25:54Z` (the table's; --json keeps Google's)."""
    return re.sub(r"\.\d+Z$", "Z", stamp)


def audit(bp: Blueprint, target: Target, since: timedelta, *, now: datetime | None = None) -> AuditReport:
    """The Data Access entries of the blueprint's project since `since` ago, grouped."""
    start = (now or datetime.now(timezone.utc)) - since
    stamp = start.strftime("%Y-%m-%dT%H:%M:%SZ")
    pid = bp.project.id
    try:
        entries, capped = _read(Ctx(target, "audit"), pid, stamp)
    except (ProvisionError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - an API error or an unreachable endpoint: one clear message
        raise to_provision_error(exc, "audit", f"projects/{pid}", project=pid, target=target) from None
    report = AuditReport(pid, target.label, stamp, len(entries), _rows(entries))
    if capped:
        report.notes.append(f"stopped after {MAX_ENTRIES} entries: give a shorter --since")
    if not entries:
        report.notes.append("no Data Access entries: are the audit logs on (audit_logs.data_access, plan shows "
                            "the audit-logs step), did anyone call the stores since then, and may you read them "
                            "(Data Access logs are private: roles/logging.privateLogViewer)?")
    return report


def _read(ctx: Ctx, pid: str, stamp: str) -> tuple[list[dict], bool]:
    body: dict = {"resourceNames": [f"projects/{pid}"], "orderBy": "timestamp asc", "pageSize": PAGE,
                  "filter": f'logName="projects/{pid}/logs/{LOG_ID}" AND timestamp>="{stamp}"'}
    out: list[dict] = []
    while True:
        resp = ctx.call(lambda b=dict(body): ctx.target.logging().entries().list(body=b).execute(num_retries=0))  # type: ignore[misc]  # a lambda with a bound default (mypy cannot infer it)
        out += resp.get("entries") or []
        token = resp.get("nextPageToken")
        if not token or len(out) >= MAX_ENTRIES:
            return out, bool(token)
        body["pageToken"] = token


def _rows(entries: list[dict]) -> list[AuditRow]:
    groups: dict[tuple, AuditRow] = {}
    for e in entries:
        p = e.get("protoPayload") or {}
        who = (p.get("authenticationInfo") or {}).get("principalEmail") or "(unknown)"
        method = str(p.get("methodName") or "")
        store, study = _where(str(p.get("resourceName") or ""), p.get("request") or {})
        key = (who, method, store, study)
        when = str(e.get("timestamp") or "")
        row = groups.get(key)
        if row is None:
            groups[key] = AuditRow(who, _action(method), str(p.get("serviceName") or ""), store, study, 1, when, when)
        else:
            row.count += 1
            row.first, row.last = min(row.first, when), max(row.last, when)
    return sorted(groups.values(), key=lambda r: (r.principal, r.store, r.study, r.action))


def _action(method: str) -> str:
    """`google.cloud.healthcare.v1.dicomweb.DicomWebService.RetrieveStudy` -> RetrieveStudy; Storage's
    `storage.objects.get` stays as it is."""
    return method.rsplit(".", 1)[-1] if method.startswith("google.") else method


def _where(resource: str, request: dict) -> tuple[str, str]:
    """(store, study): the store's ID (or gs://bucket) and the study UID the call named, if any."""
    if resource.startswith("projects/_/buckets/"):
        bucket, _, obj = resource[len("projects/_/buckets/"):].partition("/objects/")
        return f"gs://{bucket}", obj
    m = re.search(r"/dicomStores/([^/]+)", resource)
    store = m.group(1) if m else resource.rsplit("/", 1)[-1]
    path = str(request.get("dicomWebPath") or "")
    s = re.match(r"studies/([^/]+)", path)
    return store, s.group(1) if s else ""
