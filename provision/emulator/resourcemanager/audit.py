"""The `auditConfigs` of a project's IAM policy, as Resource Manager keeps them. Pure functions.

A policy's auditConfigs say which Data Access audit logs a service writes:
`[{service: "healthcare.googleapis.com" | "allServices", auditLogConfigs: [{logType: DATA_READ |
DATA_WRITE | ADMIN_READ, exemptedMembers: [...]}]}]` (cloudresourcemanager v3 discovery, AuditConfig).
setIamPolicy writes them only when its `updateMask` names them: "If no mask is provided, the
following default mask is used: `paths: "bindings, etag"`" (the SetIamPolicyRequest.updateMask
description), so a client that rewrites bindings never drops another party's audit configuration.
"""
from __future__ import annotations

import copy
from typing import Any

from provision.emulator import iam
from provision.emulator.errors import ApiError, bad_request

LOG_TYPES = ("ADMIN_READ", "DATA_WRITE", "DATA_READ")
# Field names a mask may hold; the JSON name and the proto name of auditConfigs both occur on the wire.
MASK_FIELDS = {"bindings": "bindings", "etag": "etag", "version": "version", "auditConfigs": "auditConfigs",
               "audit_configs": "auditConfigs"}
DEFAULT_MASK = "bindings,etag"


def update_mask(text: str | None) -> set[str]:
    """The fields a setIamPolicy writes (`bindings,etag` when no mask is sent). An unknown path is
    a 400, as Google answers for a mask naming no Policy field (our wording)."""
    out = set()
    for path in (text or DEFAULT_MASK).split(","):
        path = path.strip()
        if not path:
            continue
        if path not in MASK_FIELDS:
            raise ApiError("INVALID_ARGUMENT", f"Invalid update mask path '{path}': a policy's fields are "
                           "bindings, etag and auditConfigs.", [bad_request([("update_mask", f"unknown path {path}")])])
        out.add(MASK_FIELDS[path])
    return out


def _invalid(field: str, issue: str) -> ApiError:
    return ApiError("INVALID_ARGUMENT", "Request contains an invalid argument.", [bad_request([(field, issue)])])


def validate(configs: Any) -> list[dict]:
    """The auditConfigs of a setIamPolicy body, checked (a service, known log types, member-shaped
    exemptions) and kept as sent, less empty exemption lists (proto3 JSON leaves them out)."""
    if configs in (None, []):
        return []
    if not isinstance(configs, list):
        raise _invalid("policy.audit_configs", "must be a list")
    out = []
    for i, cfg in enumerate(configs):
        at = f"policy.audit_configs[{i}]"
        if not isinstance(cfg, dict) or not isinstance(cfg.get("service"), str) or not cfg["service"]:
            raise _invalid(f"{at}.service", "A service must be specified (a service name or allServices).")
        logs = []
        for j, log in enumerate(cfg.get("auditLogConfigs") or []):
            kind = log.get("logType") if isinstance(log, dict) else None
            if kind not in LOG_TYPES:
                raise _invalid(f"{at}.audit_log_configs[{j}].log_type",
                               f"Invalid log type {kind!r}: one of {', '.join(LOG_TYPES)}.")
            entry: dict = {"logType": kind}
            members = [m for m in log.get("exemptedMembers") or []]
            for m in members:
                if not isinstance(m, str) or ":" not in m:
                    raise _invalid(f"{at}.audit_log_configs[{j}].exempted_members",
                                   'Policy members must be of the form "<type>:<value>".')
            if members:
                entry["exemptedMembers"] = members
            logs.append(entry)
        out.append({"service": cfg["service"], "auditLogConfigs": logs} if logs else {"service": cfg["service"]})
    return out


def with_configs(policy: dict, configs: list[dict]) -> dict:
    """`policy` (as iam.replace made it) carrying `configs`; the etag covers them too, so a change
    to audit configuration alone is a new policy version for read-modify-write."""
    out = dict(policy)
    if configs:
        out["auditConfigs"] = copy.deepcopy(configs)
        out["etag"] = iam.make_etag([policy["etag"], configs])
    else:
        out.pop("auditConfigs", None)
    return out


def with_view(answer: dict, policy: dict) -> dict:
    """getIamPolicy's / setIamPolicy's answer with the stored auditConfigs (left out when none)."""
    if policy.get("auditConfigs"):
        answer = dict(answer, auditConfigs=copy.deepcopy(policy["auditConfigs"]))
    return answer


def enabled(policies: list[dict | None], service: str, log_type: str, member: str) -> bool:
    """Whether the policies of a resource's ancestry (project, then folder or organization) turn
    `log_type` on for `service` (or allServices), and `member` is exempted from it in none of them:
    what decides that a Data Access entry is written. The configuration in effect is the union of
    the levels' (logging/docs/audit/configure-data-access: configs at an organization or folder
    apply to the projects under it)."""
    on = False
    for policy in policies:
        for cfg in (policy or {}).get("auditConfigs") or []:
            if cfg.get("service") not in (service, "allServices"):
                continue
            for log in cfg.get("auditLogConfigs") or []:
                if log.get("logType") == log_type:
                    if member and member in (log.get("exemptedMembers") or []):
                        return False
                    on = True
    return on
