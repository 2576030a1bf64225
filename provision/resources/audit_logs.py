"""Data Access audit logs for the services that hold patient data, in the project's IAM policy.

Kind `audit-logs`: turns on DATA_READ, DATA_WRITE and ADMIN_READ for healthcare.googleapis.com
and storage.googleapis.com (`auditConfigs`, Resource Manager v3 setIamPolicy with updateMask
`bindings,etag,audit_configs`: without the mask Google writes bindings and etag only). Owned like
grants: each (service, log type) provision adds is recorded first (record kind `audit-log`, name
`SERVICE/LOG_TYPE`); when the blueprint turns them off (`audit_logs.data_access: false`, flagged in
the plan) only those are removed. Another party's configs, an `allServices` config, and exempted
members are never removed; exemptions from what provision turns on are reported as drift.
Read-modify-write with the policy etag, retried on a conflict, then read back until visible.
Reads `project_policy` (read by project-iam in phase 2); writes after project-iam (one policy).
"""
from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Iterable

from provision.gcp.context import Ctx
from provision.gcp.retry import NotYet
from provision.resources import iam
from provision.resources.base import Draft, Live, Reads
from provision.resources.steps import CREATE, DELETE, KEEP, NOOP, UPDATE, Options, Step, field_change

if TYPE_CHECKING:  # for annotations only: no import at run time
    from provision.blueprint.models import Blueprint

KIND = "audit-logs"
RECORD_KIND = "audit-log"
SERVICES = ("healthcare.googleapis.com", "storage.googleapis.com")
LOG_TYPES = ("DATA_READ", "DATA_WRITE", "ADMIN_READ")
ALL = tuple((s, t) for s in SERVICES for t in LOG_TYPES)
MASK = ("bindings", "etag", "audit_configs")
COST = ("Data Access audit logs add log volume, which costs money: every DICOMweb call and object read writes an "
        "entry, and Cloud Logging bills ingestion past the project's free monthly allotment (audit_logs.data_access: "
        "false turns them off)")
DATA_KINDS = ("dicom-store", "bucket", "dataset")

Pair = tuple[str, str]   # (service, log type)


def present(policy: dict[str, Any] | None, *, own_only: bool = False) -> set[Pair]:
    """The (service, log type) pairs of ours that the policy turns on (through allServices too,
    unless `own_only`: only a service's own config, the ones provision may remove)."""
    out: set[Pair] = set()
    for cfg in (policy or {}).get("auditConfigs") or []:
        service = cfg.get("service")
        services = SERVICES if service == "allServices" and not own_only else (service,)
        for log in cfg.get("auditLogConfigs") or []:
            out |= {(s, log.get("logType")) for s in services if (s, log.get("logType")) in ALL}
    return out


def with_added(policy: dict[str, Any], pairs: Iterable[Pair]) -> dict[str, Any]:
    """A copy of the policy whose service configs carry these log types (exemptions untouched)."""
    new = copy.deepcopy(policy)
    configs = new.setdefault("auditConfigs", [])
    for service, log_type in pairs:
        cfg = next((c for c in configs if c.get("service") == service), None)
        if cfg is None:
            cfg = {"service": service, "auditLogConfigs": []}
            configs.append(cfg)
        logs = cfg.setdefault("auditLogConfigs", [])
        if not any(log.get("logType") == log_type for log in logs):
            logs.append({"logType": log_type})
    return new


def with_removed(policy: dict[str, Any], pairs: Iterable[Pair]) -> dict[str, Any]:
    """A copy without these log types in the services' own configs (a config left empty goes)."""
    drop = set(pairs)
    new = copy.deepcopy(policy)
    kept = []
    for cfg in new.get("auditConfigs") or []:
        logs = [log for log in cfg.get("auditLogConfigs") or [] if (cfg.get("service"), log.get("logType")) not in drop]
        if logs or not cfg.get("auditLogConfigs"):
            kept.append(dict(cfg, auditLogConfigs=logs) if logs else cfg)
    new["auditConfigs"] = kept
    return new


def exemptions(policy: dict[str, Any] | None) -> list[str]:
    """Members exempted from a log type provision turns on: their reads leave no entry (drift)."""
    return [f"{m} is exempted from {log.get('logType')} on {cfg.get('service')}: its calls are not logged (left alone)"
            for cfg in (policy or {}).get("auditConfigs") or [] if cfg.get("service") in SERVICES + ("allServices",)
            for log in cfg.get("auditLogConfigs") or [] if log.get("logType") in LOG_TYPES
            for m in log.get("exemptedMembers") or []]


def reads(bp: Blueprint, live: Live, phase: int) -> Reads:
    return {}   # the project's policy is read once, by project-iam (`project_policy`)


def diff(bp: Blueprint, live: Live, opts: Options, draft: Draft) -> None:
    exists = live.project is not None
    policy = live.project_policy if exists else None
    on = bool(bp.audit_logs.data_access) and not opts.destroy
    want = set(ALL) if on else set()
    recorded = {_pair(n) for n in live.record.names(RECORD_KIND)}
    add = sorted(want - present(policy))
    gone = sorted(recorded - want)
    mine = present(policy, own_only=True)
    remove, forget = [p for p in gone if p in mine], [p for p in gone if p not in mine]
    _notes(bp, opts, draft, policy, add, recorded)
    if not (want or recorded):
        return
    resource = f"projects/{bp.project.id}"
    changes = ([f"+ {s} {t}" for s, t in add] + [f"- {s} {t}" for s, t in remove]
               + [f"- {s} {t} (already gone: forget it in the record)" for s, t in forget])
    fields = ([field_change("auditConfig", None, {"service": s, "logType": t}) for s, t in add]
              + [field_change("auditConfig", {"service": s, "logType": t}, None) for s, t in remove + forget])
    action = NOOP if not changes else CREATE if add and not (present(policy) or recorded) else \
        UPDATE if add else DELETE
    draft.add(Step(KIND, KIND, resource, action, changes, ["apis", "record", "project-iam"],
                   (lambda ctx: _run(ctx, bp.project.id, add, remove, forget)) if changes else None,
                   drift=exemptions(policy) if on else [], fields=fields,
                   claims=[("resource", RECORD_KIND, f"{s}/{t}") for s, t in add]))


def _pair(name: str) -> Pair:
    """A recorded name, "service/logType" as _run writes it, as its pair."""
    service, log_type = name.split("/", 1)
    return service, log_type


def _notes(bp: Blueprint, opts: Options, draft: Draft, policy: dict[str, Any] | None, add: list[Pair], recorded: set[Any]) -> None:
    if opts.destroy:
        return
    if add:
        draft.note(COST)
    if not bp.audit_logs.data_access:
        draft.note("safety: Data Access audit logs off (audit_logs.data_access: false): nobody can tell who read or "
                   "changed which study in this project")
        theirs = sorted(present(policy) - recorded)
        if theirs:
            draft.note(f"Data Access audit logs provision did not turn on stay on ({len(theirs)} service/log type "
                       "pair(s)): provision removes only what it added")


def finish(bp: Blueprint, live: Live, opts: Options, draft: Draft) -> None:
    """Destroy keeps the audit logs on while the data they watch is kept."""
    step = next((s for s in draft.steps if s.id == KIND), None)
    kept = [s.id for s in draft.steps if s.action == KEEP and s.kind in DATA_KINDS]
    if opts.destroy and step is not None and step.changing and kept:
        why = f"kept: Data Access audit logs stay on while {', '.join(kept)} keep(s) data"
        draft.steps[draft.steps.index(step)] = Step(KIND, KIND, step.resource, KEEP, [why], step.deps)


def _run(ctx: Ctx, pid: str, add: list[Pair], remove: list[Pair], forget: list[Pair]) -> str:
    record = ctx.facts.record
    if add:   # recorded before the write: an interrupted run still knows, next time, that provision added them
        record.change(ctx, lambda r: [r.add_resource(RECORD_KIND, f"{s}/{t}") for s, t in add])
    io = iam.project_io(ctx, pid, MASK)

    def cycle() -> None:
        current = io.read()
        new = with_removed(with_added(current, add), remove)
        if new.get("auditConfigs") == current.get("auditConfigs"):
            return
        new["etag"] = current.get("etag")
        io.write(new)

    ctx.call(cycle, quota=io.quota)
    _until_visible(ctx, io, add, remove)
    if remove or forget:
        record.change(ctx, lambda r: [r.drop_resource(RECORD_KIND, f"{s}/{t}") for s, t in remove + forget])
    parts = ([f"turned on {len(add)} log type(s)"] if add else []) + ([f"turned off {len(remove)}"] if remove else [])
    return ", ".join(parts) or "nothing left to change"


def _until_visible(ctx: Ctx, io: iam.PolicyIO, add: list[Pair], remove: list[Pair]) -> None:
    """Re-read until our own change shows (IAM is eventually consistent)."""
    def check() -> None:
        seen = present(io.read(), own_only=True)
        late = [p for p in add if p not in seen] + [p for p in remove if p in seen]
        if late:
            raise NotYet(f"audit config on {io.resource} not visible yet ({late[0][0]} {late[0][1]})")

    ctx.call(check)
