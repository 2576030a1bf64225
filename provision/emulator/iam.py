"""IAM as the emulator plays it: policies with base64 etags, optimistic concurrency, and the
predefined roles we use with their real permissions, so `--enforce-iam` can check every call.
"""
from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from provision.emulator.errors import ApiError, bad_request

# Predefined roles and the permissions they grant (the subset this product's calls need).
# A permission ending in ".*" covers every permission with that prefix.
ROLE_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "roles/owner": ("*",),
    # The basic roles include reading (non-private) log entries, as Google's do.
    "roles/editor": ("resourcemanager.projects.get", "resourcemanager.projects.update", "serviceusage.*",
                     "healthcare.*", "storage.buckets.*", "storage.objects.*", "logging.logEntries.list",
                     "run.services.create", "run.services.get", "run.services.list", "run.services.update",
                     "run.services.delete", "run.operations.*", "iam.serviceAccounts.create",
                     "iam.serviceAccounts.get", "iam.serviceAccounts.list", "iam.serviceAccounts.delete",
                     "iam.serviceAccounts.actAs", "run.builds.create", "cloudbuild.builds.*", "artifactregistry.*"),
    "roles/viewer": ("resourcemanager.projects.get", "serviceusage.services.get", "serviceusage.services.list",
                     "healthcare.*.get", "healthcare.*.list", "storage.buckets.get", "storage.buckets.list",
                     "logging.logEntries.list"),
    "roles/browser": ("resourcemanager.projects.get", "resourcemanager.projects.list", "resourcemanager.projects.getIamPolicy",
                      "resourcemanager.folders.get", "resourcemanager.folders.list", "resourcemanager.organizations.get"),
    "roles/logging.viewer": ("logging.logEntries.list", "logging.logs.list", "logging.logServices.list",
                             "logging.logServiceIndexes.list"),
    # Data Access audit logs are private logs: reading them takes this role (or owner, logging.admin).
    "roles/logging.privateLogViewer": ("logging.privateLogEntries.list", "logging.logEntries.list", "logging.logs.list",
                                       "logging.logServices.list", "logging.logServiceIndexes.list"),
    "roles/logging.admin": ("logging.*",),
    "roles/resourcemanager.projectCreator": ("resourcemanager.projects.create",),
    "roles/resourcemanager.projectIamAdmin": ("resourcemanager.projects.get", "resourcemanager.projects.getIamPolicy",
                                              "resourcemanager.projects.setIamPolicy"),
    "roles/billing.user": ("billing.resourceAssociations.create", "billing.accounts.get"),
    "roles/billing.admin": ("billing.*",),
    "roles/billing.viewer": ("billing.accounts.get", "billing.accounts.getIamPolicy", "billing.accounts.list",
                             "billing.resourceAssociations.list"),
    "roles/billing.projectManager": ("resourcemanager.projects.createBillingAssignment",
                                     "resourcemanager.projects.deleteBillingAssignment"),
    "roles/serviceusage.serviceUsageAdmin": ("serviceusage.*", "resourcemanager.projects.get"),
    "roles/serviceusage.serviceUsageConsumer": ("serviceusage.services.use", "serviceusage.services.get",
                                                "serviceusage.services.list"),
    "roles/healthcare.datasetAdmin": ("healthcare.datasets.*", "healthcare.dicomStores.*", "healthcare.operations.*",
                                      "healthcare.locations.*", "resourcemanager.projects.get", "resourcemanager.projects.list"),
    "roles/healthcare.dicomStoreAdmin": ("healthcare.dicomStores.*", "healthcare.datasets.get", "healthcare.datasets.list",
                                         "healthcare.operations.*", "healthcare.locations.*"),
    "roles/healthcare.dicomEditor": ("healthcare.dicomStores.dicomWebRead", "healthcare.dicomStores.dicomWebWrite",
                                     "healthcare.dicomStores.dicomWebDelete", "healthcare.dicomStores.get",
                                     "healthcare.dicomStores.list", "healthcare.dicomStores.import",
                                     "healthcare.dicomStores.export", "healthcare.datasets.get", "healthcare.datasets.list",
                                     "healthcare.operations.get", "healthcare.operations.list", "healthcare.locations.*",
                                     "resourcemanager.projects.get", "resourcemanager.projects.list"),
    "roles/healthcare.dicomViewer": ("healthcare.dicomStores.dicomWebRead", "healthcare.dicomStores.get",
                                     "healthcare.dicomStores.list", "healthcare.datasets.get", "healthcare.datasets.list",
                                     "healthcare.locations.*", "resourcemanager.projects.get", "resourcemanager.projects.list"),
    "roles/healthcare.serviceAgent": ("healthcare.*", "storage.buckets.get"),
    "roles/iam.serviceAccountTokenCreator": ("iam.serviceAccounts.getAccessToken", "iam.serviceAccounts.getOpenIdToken",
                                             "iam.serviceAccounts.signBlob", "iam.serviceAccounts.signJwt",
                                             "iam.serviceAccounts.implicitDelegation", "iam.serviceAccounts.get",
                                             "iam.serviceAccounts.list", "resourcemanager.projects.get"),
    "roles/orgpolicy.policyViewer": ("orgpolicy.constraints.list", "orgpolicy.policies.list", "orgpolicy.policy.get"),
    "roles/orgpolicy.policyAdmin": ("orgpolicy.*",),
    "roles/cloudkms.admin": ("cloudkms.keyRings.*", "cloudkms.cryptoKeys.*", "cloudkms.cryptoKeyVersions.create",
                             "cloudkms.cryptoKeyVersions.get", "cloudkms.cryptoKeyVersions.list",
                             "cloudkms.locations.*", "resourcemanager.projects.get"),
    "roles/cloudkms.viewer": ("cloudkms.keyRings.get", "cloudkms.keyRings.list", "cloudkms.cryptoKeys.get",
                              "cloudkms.cryptoKeys.list", "cloudkms.locations.*", "resourcemanager.projects.get"),
    "roles/cloudkms.cryptoKeyEncrypterDecrypter": ("cloudkms.cryptoKeyVersions.useToEncrypt",
                                                   "cloudkms.cryptoKeyVersions.useToDecrypt",
                                                   "cloudkms.locations.get", "cloudkms.locations.list",
                                                   "resourcemanager.projects.get"),
    "roles/storage.admin": ("storage.*",),
    "roles/storage.objectAdmin": ("storage.objects.*",),
    "roles/storage.objectViewer": ("storage.objects.get", "storage.objects.list"),
    "roles/storage.legacyBucketOwner": ("storage.buckets.*", "storage.objects.list", "storage.objects.create",
                                        "storage.objects.delete"),
    "roles/storage.legacyBucketReader": ("storage.buckets.get", "storage.objects.list"),
    # Cloud Run, IAM service accounts and IAP (the hosted viewer).
    "roles/run.admin": ("run.*", "resourcemanager.projects.get"),
    "roles/run.developer": ("run.services.create", "run.services.get", "run.services.list", "run.services.update",
                            "run.services.delete", "run.operations.*", "run.revisions.*", "run.locations.list"),
    "roles/run.viewer": ("run.services.get", "run.services.list", "run.operations.get", "run.operations.list",
                         "run.services.getIamPolicy", "run.revisions.get", "run.revisions.list"),
    "roles/run.invoker": ("run.routes.invoke", "run.services.get"),
    "roles/iam.serviceAccountUser": ("iam.serviceAccounts.actAs", "iam.serviceAccounts.get",
                                     "iam.serviceAccounts.list", "resourcemanager.projects.get"),
    "roles/iam.serviceAccountAdmin": ("iam.serviceAccounts.*", "resourcemanager.projects.get"),
    "roles/iap.admin": ("iap.*", "resourcemanager.projects.get"),
    "roles/iap.httpsResourceAccessor": ("iap.webServiceVersions.accessViaIAP",),
    # Building from source (Cloud Run builds:submit, Cloud Build, Artifact Registry).
    "roles/run.sourceDeveloper": ("run.builds.create", "run.services.create", "run.services.get", "run.services.list",
                                  "run.services.update", "run.operations.*", "cloudbuild.builds.get",
                                  "cloudbuild.builds.list", "resourcemanager.projects.get"),
    "roles/cloudbuild.builds.editor": ("cloudbuild.builds.*", "resourcemanager.projects.get"),
    "roles/cloudbuild.builds.viewer": ("cloudbuild.builds.get", "cloudbuild.builds.list"),
    "roles/artifactregistry.admin": ("artifactregistry.*", "resourcemanager.projects.get"),
    "roles/artifactregistry.writer": ("artifactregistry.repositories.get", "artifactregistry.repositories.list",
                                      "artifactregistry.repositories.uploadArtifacts",
                                      "artifactregistry.repositories.downloadArtifacts", "artifactregistry.dockerimages.*"),
    "roles/artifactregistry.reader": ("artifactregistry.repositories.get", "artifactregistry.repositories.list",
                                      "artifactregistry.repositories.downloadArtifacts",
                                      "artifactregistry.dockerimages.get", "artifactregistry.dockerimages.list"),
}

# The cheapest predefined role that grants each permission, to name in a denial.
def role_for(permission: str) -> str | None:
    """The narrowest predefined role in the table that grants `permission`."""
    best = None
    for role, perms in ROLE_PERMISSIONS.items():
        if role in ("roles/owner", "roles/editor") or not grants(perms, permission):
            continue
        if best is None or len(perms) < len(ROLE_PERMISSIONS[best]):
            best = role
    return best


def grants(perms: tuple[str, ...], permission: str) -> bool:
    """Whether one of `perms` (exact names, `*`, or one `*` wildcard inside) covers `permission`."""
    for p in perms:
        if p == "*" or p == permission:
            return True
        if "*" in p:
            head, _, tail = p.partition("*")
            if permission.startswith(head) and permission.endswith(tail):
                return True
    return False


def make_etag(seed: Any) -> str:
    """A canonical standard-base64 etag (what the client libraries round-trip unchanged)."""
    digest = hashlib.sha256(json.dumps(seed, sort_keys=True, default=str).encode()).digest()[:8]
    return base64.b64encode(digest).decode()


def empty_policy() -> dict:
    """A new resource's policy: no bindings, version 1."""
    return {"version": 1, "bindings": [], "etag": make_etag([])}


def never_set_policy() -> dict:
    """The policy of a resource nobody has granted anything on yet: getIamPolicy answers just its
    etag (version 0, which proto3 JSON leaves out, and no bindings), as the recorded first read of
    a project a service account created under an organization shows. `ACAB` is the etag Google
    answers for such a policy (`gcloud ... get-iam-policy` prints `etag: ACAB`)."""
    return {"version": 0, "bindings": [], "etag": "ACAB"}


def normalise_bindings(bindings: list[dict]) -> list[dict]:
    """Merge bindings of one role and condition, sort members, drop empty ones (as Google stores them)."""
    merged: dict[tuple, dict] = {}
    for i, b in enumerate(bindings):
        if not isinstance(b, dict) or not isinstance(b.get("role"), str) or not b["role"]:
            raise ApiError("INVALID_ARGUMENT", "Request contains an invalid argument.",
                           [bad_request([(f"policy.bindings[{i}].role", "A role must be specified.")])])
        cond = b.get("condition")
        key = (b["role"], json.dumps(cond, sort_keys=True) if cond else "")
        slot = merged.setdefault(key, {"role": b["role"], "members": set(), **({"condition": cond} if cond else {})})
        slot["members"].update(b.get("members", []))
    out = []
    for slot in merged.values():
        if slot["members"]:
            slot["members"] = sorted(slot["members"])
            out.append(slot)
    return sorted(out, key=lambda b: (b["role"], json.dumps(b.get("condition", {}), sort_keys=True)))


def view(policy: dict, requested_version: int | None, *, storage: bool = False, resource_id: str | None = None) -> dict:
    """The policy as getIamPolicy answers it: conditional bindings only to callers asking for version 3."""
    bindings = policy.get("bindings", [])
    has_conditions = any("condition" in b for b in bindings)
    if has_conditions and (requested_version or 1) < 3:
        raise ApiError("INVALID_ARGUMENT", "Request policy version 1 cannot be used on policies with conditions; "
                       "request version 3 instead.")
    out: dict[str, Any] = {}
    if storage:
        out["kind"] = "storage#policy"
        out["resourceId"] = resource_id
    if policy.get("version", 1) != 0 or bindings:   # version 0: a policy never set (`never_set_policy`)
        out["version"] = 3 if has_conditions else 1
    if bindings or storage:
        out["bindings"] = [dict(b) for b in bindings]
    out["etag"] = policy["etag"]
    return out


def replace(current: dict, new: dict, *, storage: bool = False) -> dict:
    """Apply a setIamPolicy body: a stale etag is a conflict (409 ABORTED; Storage answers 412)."""
    etag = new.get("etag")
    if etag and etag != current["etag"]:
        if storage:
            raise ApiError("FAILED_PRECONDITION", "Precondition Failed", http_status=412, gcs_reason="conditionNotMet")
        raise ApiError("ABORTED", "There were concurrent policy changes. Please retry the whole read-modify-write with "
                       f"exponential backoff. The request's ETag '{etag}' did not match the current policy's ETag "
                       f"'{current['etag']}'.")
    bindings = normalise_bindings(new.get("bindings", []))
    for b in bindings:
        if "condition" in b and int(new.get("version") or 1) < 3:
            raise ApiError("INVALID_ARGUMENT", "Conditional role bindings require policy version 3; set version to 3.")
    policy: dict[str, Any] = {"version": 3 if any("condition" in b for b in bindings) else 1, "bindings": bindings}
    policy["etag"] = make_etag([current["etag"], bindings])
    return policy


def members_with(policy: dict, permission: str) -> set[str]:
    """Members that unconditionally hold `permission` through this policy."""
    out: set[str] = set()
    for b in policy.get("bindings", []):
        if "condition" in b or b["role"] in EXCLUDED_ROLES.get(permission, ()):
            continue  # conditions are not evaluated: a conditional grant never satisfies a check
        if grants(ROLE_PERMISSIONS.get(b["role"], ()), permission):
            out.update(b.get("members", []))
    return out


# Roles that never grant a permission even when their table entry would: a basic role gives no
# access through IAP ("Owner ... only allows modifying policies, not accessing the app",
# cloud.google.com/iap/docs/managing-access), and roles/owner's "*" would otherwise include it.
EXCLUDED_ROLES: dict[str, frozenset[str]] = {
    "iap.webServiceVersions.accessViaIAP": frozenset({"roles/owner", "roles/editor", "roles/viewer"}),
}


def allowed(principal: str, permission: str, policies: list[dict]) -> bool:
    """Whether `principal` holds `permission` through any policy on the resource's ancestry."""
    candidates = {principal, "allUsers", "allAuthenticatedUsers"}
    return any(members_with(p, permission) & candidates for p in policies if p)
