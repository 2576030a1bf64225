"""What a bucket's `iamConfiguration` forbids, in Cloud Storage's words. Pure functions over a
bucket record; the handlers call them before they change anything.

- Uniform bucket-level access: "If this is enabled, calls to access legacy ACL information will
  fail" (the Bucket.IamConfiguration reference). Google's answers, as clients report them: a 400
  `invalid` "Cannot get legacy ACL for a bucket that has uniform bucket-level access. Read more at
  https://cloud.google.com/storage/docs/uniform-bucket-level-access." (hashicorp/terraform#23769,
  a BucketAccessControl create), "Cannot use ACL API to update bucket policy when uniform
  bucket-level access is enabled. Read more at ..." (a default object ACL update,
  GoogleCloudPlatform/terraform-large-data-sharing-golang-webapp#61), and "Cannot insert legacy
  ACL for an object when uniform bucket-level access is enabled. Read more at ..." (an object
  upload with an ACL, fog/fog-google#536, googleapis/nodejs-storage#1230). Reading an object's
  ACL is answered like the bucket's, in the object's words: our choice by analogy.
- Public access prevention `enforced`: a grant to allUsers or allAuthenticatedUsers is a 412
  "The member bindings allUsers and allAuthenticatedUsers are not allowed since public access
  prevention is enforced." (gsutil's report of an ACL change, GoogleCloudPlatform/gsutil#1620).
  The same answer for setIamPolicy is our choice (the docs say public grants fail; no capture of
  the IAM wording was found); its reason is `conditionNotMet`, Storage's reason for every 412.
  Public bindings made before prevention stay in the policy and grant nothing while it is
  enforced (the policy "overrides existing public permissions", Cloud Storage docs).
"""
from __future__ import annotations

from provision.emulator.storage.common import gcs_error

READ_MORE = "Read more at https://cloud.google.com/storage/docs/uniform-bucket-level-access"
PUBLIC = ("allUsers", "allAuthenticatedUsers")
# predefinedAcl values that grant to allUsers / allAuthenticatedUsers (storage v1 discovery).
PUBLIC_PREDEFINED = {"publicRead", "publicReadWrite", "authenticatedRead"}


def uniform(rec: dict) -> bool:
    """Whether the bucket has uniform bucket-level access."""
    return bool(rec["iamConfiguration"]["uniformBucketLevelAccess"]["enabled"])


def prevents_public(rec: dict) -> bool:
    """Whether public access prevention is enforced on the bucket."""
    return rec["iamConfiguration"].get("publicAccessPrevention") == "enforced"


def refuse_bucket_acl(rec: dict, *, write: bool) -> None:
    """The 400 for a bucket (or default object) ACL call on a bucket with uniform access."""
    if not uniform(rec):
        return
    if write:
        raise gcs_error(400, "Cannot use ACL API to update bucket policy when uniform bucket-level access is "
                             f"enabled. {READ_MORE}", "invalid")
    raise gcs_error(400, f"Cannot get legacy ACL for a bucket that has uniform bucket-level access. {READ_MORE}.",
                    "invalid")


def refuse_object_acl(rec: dict, *, write: bool) -> None:
    """The 400 for an object ACL call (or an upload carrying an ACL) on a bucket with uniform access."""
    if not uniform(rec):
        return
    verb = "insert" if write else "get"
    raise gcs_error(400, f"Cannot {verb} legacy ACL for an object when uniform bucket-level access is enabled. "
                         f"{READ_MORE}", "invalid")


def public_refused() -> Exception:
    return gcs_error(412, "The member bindings allUsers and allAuthenticatedUsers are not allowed since public "
                          "access prevention is enforced.", "conditionNotMet")


def refuse_public_members(rec: dict, members) -> None:
    """The 412 for granting allUsers/allAuthenticatedUsers (IAM members or ACL entities) under prevention."""
    if prevents_public(rec) and any(m in PUBLIC for m in members):
        raise public_refused()


def refuse_predefined(rec: dict, value: str | None, *, on_object: bool) -> None:
    """A `predefinedAcl` / `predefinedDefaultObjectAcl` query parameter: an ACL under uniform access
    (400), a public one under prevention (412)."""
    if not value:
        return
    if on_object:
        refuse_object_acl(rec, write=True)
    else:
        refuse_bucket_acl(rec, write=True)
    if value in PUBLIC_PREDEFINED and prevents_public(rec):
        raise public_refused()


def _entities(acl) -> list:
    return [a.get("entity") for a in acl or [] if isinstance(a, dict)]


def refuse_bucket_acls(rec: dict, body: dict, query) -> None:
    """ACLs in a bucket insert or patch (`acl`, `defaultObjectAcl`, or the predefined parameters)
    that `rec`'s iamConfiguration forbids."""
    for key, param in (("acl", "predefinedAcl"), ("defaultObjectAcl", "predefinedDefaultObjectAcl")):
        if body.get(key) is not None or query.get(param):
            refuse_predefined(rec, query.get(param) or "private", on_object=False)
            refuse_public_members(rec, _entities(body.get(key)))


def refuse_object_acls(rec: dict, meta: dict, query) -> None:
    """An object write carrying an ACL (`acl` metadata or `predefinedAcl`) that the bucket forbids."""
    if meta.get("acl") is not None or query.get("predefinedAcl"):
        refuse_predefined(rec, query.get("predefinedAcl") or "private", on_object=True)
        refuse_public_members(rec, _entities(meta.get("acl")))
