"""Bucket records and bucket IAM policies, kept in the shared document store: creation with
Cloud Storage's location and storage-class rules, listing, patching, and the wire
`storage#bucket`. Whether a bucket still holds objects is the caller's question (`Backend`)."""
from __future__ import annotations

import builtins
import re
from typing import Any

from provision.emulator import iam
from provision.emulator.storage.access import default_policy
from provision.emulator.storage.common import (PAGE_MAX, bucket_not_found, gcs_error, merge_patch, precondition_failed,
                                               proto_etag, rfc3339)
from provision.emulator.storage.names import bucket_name_problem
from provision.emulator.worldview import WorldView

BUCKET = "storage.bucket"    # docs kind: bucket records, keyed by bucket name
POLICY = "storage.policy"    # docs kind: bucket IAM policies, keyed by bucket name
ACL = "storage.acl"          # docs kind: legacy ACLs, "<bucket>\x00<scope>" -> {entity: role} (scope: bucket,
                             # default, object:<name>); absent: Google's default ACL (`default_acl`)
TEAMS = (("owners", "OWNER"), ("editors", "OWNER"), ("viewers", "READER"))

MULTI_REGIONS = {"US", "EU", "ASIA"}
DUAL_REGIONS = {"NAM4", "EUR4", "EUR5", "EUR7", "EUR8", "ASIA1"}
STORAGE_CLASSES = {"STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE", "MULTI_REGIONAL", "REGIONAL",
                   "DURABLE_REDUCED_AVAILABILITY"}
# Bucket fields a caller may set (insert/patch) and that we keep and echo back as sent.
BUCKET_SETTABLE = ("labels", "versioning", "cors", "lifecycle", "website", "logging", "billing",
                   "defaultEventBasedHold", "retentionPolicy", "encryption", "autoclass",
                   "hierarchicalNamespace", "objectRetention", "customPlacementConfig")


def check_metageneration(current: int, conditions: dict[str, int]) -> None:
    """ifMetagenerationMatch / ifMetagenerationNotMatch on a bucket; 412 when one does not hold."""
    if "ifMetagenerationMatch" in conditions and conditions["ifMetagenerationMatch"] != current:
        raise precondition_failed()
    if "ifMetagenerationNotMatch" in conditions and conditions["ifMetagenerationNotMatch"] == current:
        raise precondition_failed()


def iam_configuration(cfg: dict, now: float, old: dict | None = None) -> dict:
    """The bucket's `iamConfiguration` from what the caller sent (and, on patch, what it was):
    `bucketPolicyOnly` is the old name of uniform bucket-level access and mirrors it."""
    ubla_in = cfg.get("uniformBucketLevelAccess") or cfg.get("bucketPolicyOnly")
    if ubla_in is None and old is not None:
        block = dict(old["uniformBucketLevelAccess"])
    else:
        enabled = bool((ubla_in or {}).get("enabled"))
        block = {"enabled": enabled}
        if enabled:
            was = old["uniformBucketLevelAccess"] if old else {}
            block["lockedTime"] = was.get("lockedTime") or rfc3339(now + 90 * 86400)
    pap = cfg.get("publicAccessPrevention") or (old or {}).get("publicAccessPrevention") or "inherited"
    if pap == "unspecified":
        pap = "inherited"
    return {"bucketPolicyOnly": dict(block), "publicAccessPrevention": pap,
            "uniformBucketLevelAccess": dict(block)}


def default_acl(rec: dict) -> dict[str, str]:
    """A new bucket's (and object's) ACL: the project's owners and editors OWNER, viewers READER."""
    pn = rec["projectNumber"]
    return {f"project-{team}-{pn}": role for team, role in TEAMS}


def acl_entry(rec: dict, base: str, scope: str, entity: str, role: str) -> dict:
    """One storage#bucketAccessControl / storage#objectAccessControl."""
    name = rec["name"]
    out = {"entity": entity, "role": role, "etag": proto_etag(rec["metageneration"]), "bucket": name}
    if scope == "bucket":
        out.update(kind="storage#bucketAccessControl", id=f"{name}/{entity}",
                   selfLink=f"{base}storage/v1/b/{name}/acl/{entity}")
    else:
        out["kind"] = "storage#objectAccessControl"
        if scope.startswith("object:"):
            out["object"] = scope[len("object:"):]
    if entity.startswith("project-"):
        _, team, number = entity.split("-", 2)
        out["projectTeam"] = {"projectNumber": number, "team": team}
    return out


def bucket_resource(rec: dict, base: str, *, full: bool = False, acls: dict | None = None) -> dict:
    """The wire `storage#bucket` (only fields of the discovery Bucket schema)."""
    name, pn = rec["name"], rec["projectNumber"]
    out: dict[str, Any] = {
        "kind": "storage#bucket", "selfLink": f"{base}storage/v1/b/{name}", "id": name, "name": name,
        "projectNumber": pn, "generation": rec["generation"], "metageneration": str(rec["metageneration"]),
        "location": rec["location"], "locationType": rec["locationType"], "storageClass": rec["storageClass"],
        "etag": proto_etag(rec["metageneration"]), "timeCreated": rec["timeCreated"], "updated": rec["updated"],
        "softDeletePolicy": {"retentionDurationSeconds": "604800", "effectiveTime": rec["timeCreated"]},
        "iamConfiguration": rec["iamConfiguration"],
    }
    if "rpo" in rec:
        out["rpo"] = rec["rpo"]
    for key in BUCKET_SETTABLE:
        if key in rec:
            out[key] = rec[key]
    if full:
        out["owner"] = {"entity": f"project-owners-{pn}"}
        if not rec["iamConfiguration"]["uniformBucketLevelAccess"]["enabled"]:
            acls = acls or {}
            for key, scope in (("acl", "bucket"), ("defaultObjectAcl", "default")):
                entries = acls.get(scope) or default_acl(rec)
                out[key] = [acl_entry(rec, base, scope, e, r) for e, r in sorted(entries.items())]
                if scope == "default":
                    for item in out[key]:
                        item.pop("bucket", None)
    return out


class Buckets:
    """Bucket records and their IAM policies in the world's document store."""

    def __init__(self, world: WorldView):
        self.world = world
        self.db = world.db
        self.docs = world.docs

    def get(self, name: str) -> dict | None:
        """The bucket record (name, projectId, projectNumber, location, ...), or None."""
        return self.docs.get(BUCKET, name)

    def policy(self, bucket: str) -> dict:
        """The bucket's IAM policy (an empty one when none is stored)."""
        return self.docs.get(POLICY, bucket) or iam.empty_policy()

    def acl(self, rec: dict, scope: str) -> dict[str, str]:
        """The bucket's (scope `bucket`), default object (`default`) or an object's (`object:NAME`) ACL."""
        return self.docs.get(ACL, f"{rec['name']}\x00{scope}") or default_acl(rec)

    def put_acl(self, bucket: str, scope: str, entries: dict[str, str]) -> None:
        """Store an ACL as given (entity -> role)."""
        self.docs.put(ACL, f"{bucket}\x00{scope}", dict(entries))

    def drop_acl(self, bucket: str, scope: str) -> None:
        """Forget a stored ACL (back to the default)."""
        self.docs.delete(ACL, f"{bucket}\x00{scope}")

    def create(self, project: dict, body: dict) -> dict:
        """buckets.insert: validate `body`, store the record and its default policy; 409 when
        the name is taken (Google's two messages: by this project, or by anyone else)."""
        asked = body.get("name")
        problem = bucket_name_problem(asked)
        if problem:
            raise gcs_error(400, problem, "required" if problem == "Required" else "invalid")
        name = str(asked)   # a str already: bucket_name_problem refuses anything else
        location = str(body.get("location") or "US").upper()
        if location in MULTI_REGIONS:
            location_type = "multi-region"
        elif location in DUAL_REGIONS or body.get("customPlacementConfig"):
            location_type = "dual-region"
        elif re.fullmatch(r"[A-Z]+(-[A-Z]+)+[0-9]+", location):
            location_type = "region"
        else:
            raise gcs_error(400, "The specified location constraint is not valid.", "invalid")
        storage_class = str(body.get("storageClass") or "STANDARD").upper()
        if storage_class not in STORAGE_CLASSES:
            raise gcs_error(400, f"Invalid storage class: '{body.get('storageClass')}'", "invalid")
        now = self.world.clock()
        rec: dict[str, Any] = {
            "name": name, "projectId": project["projectId"], "projectNumber": project["projectNumber"],
            "location": location, "locationType": location_type, "storageClass": storage_class,
            "timeCreated": rfc3339(now), "updated": rfc3339(now), "metageneration": 1,
            "generation": str(int(now * 1_000_000)),
            "iamConfiguration": iam_configuration(body.get("iamConfiguration") or {}, now),
        }
        if location_type != "region":
            rec["rpo"] = body.get("rpo") or "DEFAULT"
        for key in BUCKET_SETTABLE:
            if body.get(key) is not None:
                rec[key] = body[key]
        with self.db.transaction():
            existing = self.get(name)
            if existing is not None:
                if existing["projectNumber"] == project["projectNumber"]:
                    raise gcs_error(409, "Your previous request to create the named bucket succeeded and you "
                                         "already own it.", "conflict")
                raise gcs_error(409, "The requested bucket name is not available. The bucket namespace is shared "
                                     "by all users of the system. Please select a different name and try again.",
                                "conflict")
            self.docs.put(BUCKET, name, rec)
            self.docs.put(POLICY, name, default_policy(rec))
            self._acls_from(name, body)
        return rec

    def list(self, project_number: str, *, prefix: str = "", cursor: str = "",
             max_results: int = PAGE_MAX) -> tuple[list[dict], str | None]:
        """One page of the project's buckets in name order, and the cursor of the next page."""
        found = [rec for name, rec in self.docs.list(BUCKET, prefix)
                 if rec["projectNumber"] == project_number and name >= cursor]
        page = found[:max_results]
        more = len(found) > max_results
        return page, (page[-1]["name"] + "\x00" if more else None)

    def all(self) -> builtins.list[tuple[str, dict]]:
        """Every bucket as (name, record), in name order."""
        return list(self.docs.list(BUCKET))

    def patch(self, name: str, body: dict, conditions: dict[str, int]) -> dict:
        """buckets.patch: settable fields merge-patched, metageneration bumped."""
        with self.db.transaction():
            rec = self.get(name)
            if rec is None:
                raise bucket_not_found()
            check_metageneration(rec["metageneration"], conditions)
            now = self.world.clock()
            if "iamConfiguration" in body and body["iamConfiguration"] is not None:
                rec["iamConfiguration"] = iam_configuration(body["iamConfiguration"], now, rec["iamConfiguration"])
            if body.get("storageClass"):
                storage_class = str(body["storageClass"]).upper()
                if storage_class not in STORAGE_CLASSES:
                    raise gcs_error(400, f"Invalid storage class: '{body['storageClass']}'", "invalid")
                rec["storageClass"] = storage_class
            for key in BUCKET_SETTABLE:
                if key not in body:
                    continue
                if body[key] is None:
                    rec.pop(key, None)
                elif isinstance(body[key], dict) and isinstance(rec.get(key), dict):
                    rec[key] = merge_patch(rec[key], body[key])
                else:
                    rec[key] = merge_patch({}, body[key]) if isinstance(body[key], dict) else body[key]
            rec["metageneration"] += 1
            rec["updated"] = rfc3339(now)
            self.docs.put(BUCKET, name, rec)
            self._acls_from(name, body)
        return rec

    def _acls_from(self, name: str, body: dict) -> None:
        """`acl` / `defaultObjectAcl` sent with a bucket insert or patch replace the stored ones."""
        for key, scope in (("acl", "bucket"), ("defaultObjectAcl", "default")):
            self.acl_from(name, scope, body.get(key))

    def acl_from(self, bucket: str, scope: str, acl) -> None:
        """An `acl` list sent with an insert or patch (None: not sent) replaces the stored one (the
        handler has refused it already where the bucket's iamConfiguration forbids it)."""
        if isinstance(acl, list):
            self.put_acl(bucket, scope, {a["entity"]: a.get("role", "READER") for a in acl
                                         if isinstance(a, dict) and a.get("entity")})

    def drop(self, name: str) -> None:
        """Forget the bucket record, its policy and its ACLs (the caller holds the transaction)."""
        self.docs.delete(BUCKET, name)
        self.docs.delete(POLICY, name)
        for key, _ in self.docs.list(ACL, f"{name}\x00"):
            self.docs.delete(ACL, key)

    def put_policy(self, bucket: str, policy: dict) -> None:
        """Store the bucket's IAM policy as given."""
        self.docs.put(POLICY, bucket, policy)

    def clear(self) -> None:
        """Forget every bucket and policy (a world reset)."""
        for key in (BUCKET, POLICY, ACL):
            for name, _ in self.docs.list(key):
                self.docs.delete(key, name)
