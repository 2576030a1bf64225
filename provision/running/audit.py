"""`provision audit`: who read or changed what in a blueprint's project, from its Data Access audit
entries (Cloud Logging entries:list on `projects/P/logs/cloudaudit.googleapis.com%2Fdata_access`)
and, when the viewer is hosted, from the hosted viewer's own access log (one JSON line per request
on its stdout, which Cloud Run writes to `run.googleapis.com%2Fstdout`): Google's audit entries show
only the viewer's service account there, the access log names the signed-in user.

One row per principal, action, store (or bucket) and study, with how many calls and the first and
last time. The study comes from a DICOMweb call's `request.dicomWebPath` (`studies/UID/...`);
calls that name no study (a search of the whole store, a bucket listing) have none. No command line
here: `audit()` returns an AuditReport with `to_json()` and `render()`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from provision.errors import ProvisionError, UsageError
from provision.gcp.context import Ctx
from provision.gcp.errors import to_provision_error
from provision.gcp.target import Target
from provision.resources.hosting_names import deploys, service_id

if TYPE_CHECKING:  # for annotations only: no import at run time
    from provision.blueprint.models import Blueprint

LOG_ID = "cloudaudit.googleapis.com%2Fdata_access"
VIEWER_LOG_ID = "run.googleapis.com%2Fstdout"
VIEWER_SERVICE = "hosted viewer"    # the `service` of rows read from the viewer's access log
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

    def to_json(self) -> dict[str, Any]:
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

    def to_json(self) -> dict[str, Any]:
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
    ctx = Ctx(target, "audit")
    viewer: list[dict[str, Any]] = []
    try:
        entries, capped = _read(ctx, pid, f'logName="projects/{pid}/logs/{LOG_ID}" AND timestamp>="{stamp}"')
        if deploys(bp):
            viewer, more = _read(ctx, pid, f'logName="projects/{pid}/logs/{VIEWER_LOG_ID}" AND '
                                           f'resource.type="cloud_run_revision" AND '
                                           f'resource.labels.service_name="{service_id(bp)}" AND timestamp>="{stamp}"')
            capped = capped or more
    except (ProvisionError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - an API error or an unreachable endpoint: one clear message
        raise to_provision_error(exc, "audit", f"projects/{pid}", project=pid, target=target) from None
    accesses = [e for e in viewer if isinstance(e.get("jsonPayload"), dict) and "user" in e["jsonPayload"]]
    report = AuditReport(pid, target.label, stamp, len(entries) + len(accesses),
                         _group(_audit_fields(entries) + _viewer_fields(accesses)))
    if capped:
        report.notes.append(f"stopped after {MAX_ENTRIES} entries: give a shorter --since")
    if not entries:
        report.notes.append("no Data Access entries: are the audit logs on (audit_logs.data_access, plan shows "
                            "the audit-logs step), did anyone call the stores since then, and may you read them "
                            "(Data Access logs are private: roles/logging.privateLogViewer)?")
    return report


def _read(ctx: Ctx, pid: str, query: str) -> tuple[list[dict[str, Any]], bool]:
    body: dict[str, Any] = {"resourceNames": [f"projects/{pid}"], "orderBy": "timestamp asc", "pageSize": PAGE,
                  "filter": query}
    out: list[dict[str, Any]] = []
    while True:
        resp = ctx.call(lambda b=dict(body): ctx.target.logging().entries().list(body=b).execute(num_retries=0))  # type: ignore[misc]  # a lambda with a bound default (mypy cannot infer it)
        out += resp.get("entries") or []
        token = resp.get("nextPageToken")
        if not token or len(out) >= MAX_ENTRIES:
            return out, bool(token)
        body["pageToken"] = token


Fields = tuple[str, str, str, str, str, str]   # principal, method, service, store, study, time


def _audit_fields(entries: list[dict[str, Any]]) -> list[Fields]:
    """What a Data Access entry says: who, which method of which service, on which store and study."""
    out = []
    for e in entries:
        p = e.get("protoPayload") or {}
        who = (p.get("authenticationInfo") or {}).get("principalEmail") or "(unknown)"
        store, study = _where(str(p.get("resourceName") or ""), p.get("request") or {})
        out.append((who, _action(str(p.get("methodName") or "")), str(p.get("serviceName") or ""), store, study,
                    str(e.get("timestamp") or "")))
    return out


def _viewer_fields(entries: list[dict[str, Any]]) -> list[Fields]:
    """What a line of the hosted viewer's access log says: the verified user, the HTTP method, the store
    and study of a DICOMweb request (a page of the viewer itself names no store)."""
    out = []
    for e in entries:
        line = e["jsonPayload"]
        store = str(line.get("store") or "(viewer)")
        out.append((str(line.get("user") or "(no user)"), f"viewer {line.get('method', '?')} {line.get('status', '')}".strip(),
                    VIEWER_SERVICE, store, str(line.get("study") or ""), str(e.get("timestamp") or "")))
    return out


def _group(fields: list[Fields]) -> list[AuditRow]:
    groups: dict[tuple[str, str, str, str, str], AuditRow] = {}
    for who, action, service, store, study, when in fields:
        key = (who, action, service, store, study)
        row = groups.get(key)
        if row is None:
            groups[key] = AuditRow(who, action, service, store, study, 1, when, when)
        else:
            row.count += 1
            row.first, row.last = min(row.first, when), max(row.last, when)
    return sorted(groups.values(), key=lambda r: (r.principal, r.store, r.study, r.action))


def _action(method: str) -> str:
    """`google.cloud.healthcare.v1.dicomweb.DicomWebService.RetrieveStudy` -> RetrieveStudy; Storage's
    `storage.objects.get` stays as it is."""
    return method.rsplit(".", 1)[-1] if method.startswith("google.") else method


def _where(resource: str, request: dict[str, Any]) -> tuple[str, str]:
    """(store, study): the store's ID (or gs://bucket) and the study UID the call named, if any."""
    if resource.startswith("projects/_/buckets/"):
        bucket, _, obj = resource[len("projects/_/buckets/"):].partition("/objects/")
        return f"gs://{bucket}", obj
    m = re.search(r"/dicomStores/([^/]+)", resource)
    store = m.group(1) if m else resource.rsplit("/", 1)[-1]
    path = str(request.get("dicomWebPath") or "")
    s = re.match(r"studies/([^/]+)", path)
    return store, s.group(1) if s else ""
