"""Organization policies Cloud Storage enforces, with its own refusals: 412 conditionNotMet
"'us' violates constraint 'constraints/gcp.resourceLocations'" (spark-bigquery-connector#231,
cloud-guardrails-gcp#11) and "Request violates constraint 'constraints/storage.uniformBucketLevelAccess'"
(pulumi/docs#12973, terraform-google-event-function#41). For `storage.publicAccessPrevention` no capture
was found: the same 412 form, naming that constraint, refusing a public grant (a choice). Membership of
`iam.allowedPolicyMemberDomains` is Org Policy's own refusal (orgpolicy/state.py)."""
from __future__ import annotations

from typing import Any

from provision.emulator.storage.common import gcs_error

PUBLIC = ("allUsers", "allAuthenticatedUsers")


def _violates(constraint: str) -> Exception:
    return gcs_error(412, f"Request violates constraint 'constraints/{constraint}'", "conditionNotMet")


def check_create(world: Any, project: dict, body: dict) -> None:
    """buckets.insert under the project's effective policies."""
    op = getattr(world, "orgpolicy", None)
    if op is None:
        return
    pid = project["projectId"]
    location = str(body.get("location") or "US")
    if not op.allows_location(pid, location):
        raise gcs_error(412, f"'{location.lower()}' violates constraint 'constraints/gcp.resourceLocations'",
                        "conditionNotMet")
    config = body.get("iamConfiguration") or {}
    uniform = (config.get("uniformBucketLevelAccess") or config.get("bucketPolicyOnly") or {}).get("enabled")
    if not uniform and op.enforced(pid, "storage.uniformBucketLevelAccess"):
        raise _violates("storage.uniformBucketLevelAccess")


def check_policy(world: Any, rec: dict, current: dict, new: dict) -> None:
    """setIamPolicy on a bucket: members the policy adds, under the project's effective policies."""
    op = getattr(world, "orgpolicy", None)
    if op is None:
        return
    before = {m for b in current.get("bindings") or [] for m in b.get("members") or []}
    added = sorted({m for b in new.get("bindings") or [] for m in b.get("members") or []} - before)
    if not added:
        return
    if any(m in PUBLIC for m in added) and op.enforced(rec["projectId"], "storage.publicAccessPrevention"):
        raise _violates("storage.publicAccessPrevention")
    op.check_members(rec["projectId"], [m for m in added if m not in PUBLIC and not m.startswith("project")])
