"""Bucket IAM as Cloud Storage evaluates and validates it: the storage roles the shared IAM
table lacks, who a caller counts as (project convenience values), the default policy of a new
bucket, and which bindings setIamPolicy accepts. Pure functions over policy documents."""
from __future__ import annotations

import re
from typing import Callable

from provision.emulator import iam
from provision.emulator.common import parse_agent_email
from provision.emulator.storage.common import gcs_error, proto_etag

# Storage roles the shared IAM table (iam.ROLE_PERMISSIONS) does not carry, with their real
# permissions (the subset the emulator checks).
STORAGE_ROLES: dict[str, tuple[str, ...]] = {
    "roles/storage.objectCreator": ("storage.objects.create",),
    "roles/storage.objectUser": ("storage.objects.*",),
    "roles/storage.bucketViewer": ("storage.buckets.get", "storage.buckets.list"),
    "roles/storage.legacyBucketWriter": ("storage.buckets.get", "storage.objects.list", "storage.objects.create",
                                         "storage.objects.delete"),
    "roles/storage.legacyObjectReader": ("storage.objects.get",),
    "roles/storage.legacyObjectOwner": ("storage.objects.get", "storage.objects.update",
                                        "storage.objects.getIamPolicy", "storage.objects.setIamPolicy"),
}
MEMBER_PREFIXES = ("user:", "serviceAccount:", "group:", "domain:", "projectOwner:", "projectEditor:",
                   "projectViewer:", "principal:", "principalSet:", "deleted:")


def role_grants(role: str, permission: str) -> bool:
    """Whether `role` (a shared IAM role or a storage one) carries `permission`."""
    return iam.grants(iam.ROLE_PERMISSIONS.get(role) or STORAGE_ROLES.get(role, ()), permission)


def policies_grant(policies: list[dict], permission: str, identities: set[str]) -> bool:
    """Whether any unconditional binding in `policies` gives one of `identities` `permission`."""
    for policy in policies:
        for b in policy.get("bindings", []):
            if "condition" in b:
                continue  # conditions are not evaluated: a conditional grant never satisfies a check
            if identities.intersection(b.get("members", [])) and role_grants(b["role"], permission):
                return True
    return False


def identities(member: str, project: dict, chain: list[dict]) -> set[str]:
    """Who `member` counts as: itself, allUsers/allAuthenticatedUsers, and the project
    convenience values (projectOwner:P ...) for the basic roles it holds on the project."""
    out = {"allUsers"}
    if member:
        out |= {member, "allAuthenticatedUsers"}
    for role, convenience in (("roles/owner", "projectOwner"), ("roles/editor", "projectEditor"),
                              ("roles/viewer", "projectViewer")):
        if member and any(b.get("role") == role and "condition" not in b and member in b.get("members", [])
                          for p in chain for b in p.get("bindings", [])):
            out |= {f"{convenience}:{project['projectId']}", f"{convenience}:{project['projectNumber']}"}
    return out


def object_acl_equivalent(rec: dict) -> list[dict]:
    """Without uniform bucket-level access, objects carry the default object ACL (project
    owners/editors OWNER, viewers READER); expressed as the legacy object roles it amounts to."""
    if rec["iamConfiguration"]["uniformBucketLevelAccess"]["enabled"]:
        return []
    pid = rec["projectId"]
    return [{"bindings": [
        {"role": "roles/storage.legacyObjectOwner", "members": [f"projectOwner:{pid}", f"projectEditor:{pid}"]},
        {"role": "roles/storage.legacyObjectReader", "members": [f"projectViewer:{pid}"]}]}]


def default_policy(rec: dict) -> dict:
    """Google's policy on a new bucket: the project's basic-role holders as legacy bucket roles
    (and, with uniform bucket-level access, the legacy object roles that replace the ACLs)."""
    pid = rec["projectId"]
    bindings = [
        {"role": "roles/storage.legacyBucketOwner", "members": [f"projectEditor:{pid}", f"projectOwner:{pid}"]},
        {"role": "roles/storage.legacyBucketReader", "members": [f"projectViewer:{pid}"]},
    ]
    if rec["iamConfiguration"]["uniformBucketLevelAccess"]["enabled"]:
        bindings += [
            {"role": "roles/storage.legacyObjectOwner", "members": [f"projectEditor:{pid}", f"projectOwner:{pid}"]},
            {"role": "roles/storage.legacyObjectReader", "members": [f"projectViewer:{pid}"]},
        ]
    return {"version": 1, "bindings": iam.normalise_bindings(bindings), "etag": proto_etag(1)}


def check_bindings(rec: dict, bindings: list[dict], agent_exists: Callable[..., bool] | None) -> None:
    """setIamPolicy's checks on the bucket `rec`: Cloud Storage roles only, known member types,
    and no grant to a service agent not created yet (`agent_exists(service, project)`; None: no
    Service Usage to ask, so every agent passes). Raises the 400 Google answers."""
    for b in bindings:
        role = b.get("role")
        if not role:
            raise gcs_error(400, "Role is required for each binding.", "invalid")
        if not (role.startswith("roles/storage.") or re.fullmatch(r"(projects|organizations)/[^/]+/roles/[\w.]+", role)):
            raise gcs_error(400, f"Role {role} is not supported for this resource.", "invalid")
        if "condition" in b and not rec["iamConfiguration"]["uniformBucketLevelAccess"]["enabled"]:
            raise gcs_error(400, "IAM conditions can only be set on a bucket with uniform bucket-level access "
                                 "enabled.", "invalid")
        for member in b.get("members") or []:
            if member not in ("allUsers", "allAuthenticatedUsers") and not member.startswith(MEMBER_PREFIXES):
                raise gcs_error(400, f"Invalid argument: member {member!r} is of an unknown type.", "invalid")
            _check_service_agent(member, agent_exists)


def _check_service_agent(member: str, agent_exists: Callable[..., bool] | None) -> None:
    """A Google-managed service agent that has not been created yet cannot be granted anything."""
    parsed = parse_agent_email(member) if member.startswith("serviceAccount:") else None
    if not parsed or agent_exists is None:
        return
    if not agent_exists(*parsed):
        email = member.partition(":")[2]
        raise gcs_error(400, f"Service account {email} does not exist.", "badRequest")
