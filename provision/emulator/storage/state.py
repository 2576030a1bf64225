"""Cloud Storage as the emulator keeps it, with no HTTP: bucket records and bucket IAM policies
in the shared document store, object metadata in an indexed SQLite table of its own (listing
thousands of objects walks the primary-key index, never a scan of JSON documents), object
bytes in the content-addressed blob store, and resumable-upload sessions that survive a
restart when `--data-dir` is set.

Object names are only SQLite keys; no name ever becomes a file path, so a name such as
`../../etc/passwd` touches nothing outside the blob directory.

Public helpers for other APIs (the Healthcare import/export reads and writes buckets):
`bucket(name)`, `policy_chain(bucket)`, `iter_objects(bucket, glob, prefix)`,
`can_read(member, bucket)`, `get_object(bucket, name)`, `put_object(bucket, name, data)`.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import tempfile
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import quote

import google_crc32c

from provision.emulator import discovery, iam
from provision.emulator.common import parse_agent_email
from provision.emulator.errors import ApiError

ATTACH_AS = "storage"

BUCKET = "storage.bucket"    # docs kind: bucket records, keyed by bucket name
POLICY = "storage.policy"    # docs kind: bucket IAM policies, keyed by bucket name

MAX_OBJECT_NAME_BYTES = 1024
SPILL_BYTES = 8 << 20        # upload bodies beyond this go to a temp file, not memory
PAGE_MAX = 1000              # objects.list / buckets.list page size ceiling (as Google's)
SCAN_BATCH = 1000

MULTI_REGIONS = {"US", "EU", "ASIA"}
DUAL_REGIONS = {"NAM4", "EUR4", "EUR5", "EUR7", "EUR8", "ASIA1"}
STORAGE_CLASSES = {"STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE", "MULTI_REGIONAL", "REGIONAL",
                   "DURABLE_REDUCED_AVAILABILITY"}
# Bucket fields a caller may set (insert/patch) and that we keep and echo back as sent.
BUCKET_SETTABLE = ("labels", "versioning", "cors", "lifecycle", "website", "logging", "billing",
                   "defaultEventBasedHold", "retentionPolicy", "encryption", "autoclass",
                   "hierarchicalNamespace", "objectRetention", "customPlacementConfig")
# Object fields a caller may set at upload (or patch) and that we keep and echo back.
OBJECT_SETTABLE = ("cacheControl", "contentDisposition", "contentEncoding", "contentLanguage", "metadata",
                   "customTime", "temporaryHold", "eventBasedHold")

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


def gcs_error(http_status: int, message: str, reason: str | None = None) -> ApiError:
    """An error in Cloud Storage's own envelope (`errors[].reason`)."""
    status = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 409: "ALREADY_EXISTS",
              412: "FAILED_PRECONDITION", 416: "OUT_OF_RANGE"}.get(http_status, "INVALID_ARGUMENT")
    return ApiError(status, message, http_status=http_status, gcs_reason=reason)


def bucket_not_found() -> ApiError:
    return gcs_error(404, "The specified bucket does not exist.", "notFound")


def upload_gone() -> ApiError:
    """A resumable session that no longer exists (cancelled, failed, or the world was reset)."""
    return gcs_error(404, "No such upload session.", "notFound")


def object_not_found(bucket: str, name: str) -> ApiError:
    return gcs_error(404, f"No such object: {bucket}/{name}", "notFound")


def precondition_failed() -> ApiError:
    return gcs_error(412, "At least one of the pre-conditions you specified did not hold.", "conditionNotMet")


def rfc3339(t: float) -> str:
    """`2024-04-01T12:34:56.123Z`, as Cloud Storage writes times."""
    dt = datetime.fromtimestamp(t, timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def proto_etag(*fields: int) -> str:
    """Cloud Storage's etags are base64 protobuf: field 1 = generation (or metageneration), field 2 = ..."""
    raw = b"".join(bytes([(i + 1) << 3]) + _varint(v) for i, v in enumerate(fields))
    return base64.b64encode(raw).decode()


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


# ---------------------------------------------------------------------------------------------
# names

def bucket_name_problem(name: Any) -> str | None:
    """Why `name` is not a valid bucket name (Cloud Storage's naming rules), or None."""
    if not isinstance(name, str) or not name:
        return "Required"
    invalid = f"Invalid bucket name: '{name}'"
    if not 3 <= len(name) <= 222 or not re.fullmatch(r"[a-z0-9][a-z0-9._-]*[a-z0-9]", name):
        return invalid
    parts = name.split(".")
    if any(not p or len(p) > 63 for p in parts) or ("." not in name and len(name) > 63):
        return invalid
    if re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", name):
        return invalid  # IP-address form
    if name.startswith("goog") or "google" in name or "g00gle" in name:
        return invalid
    return None


def object_name_problem(name: Any) -> ApiError | None:
    """The 400 Cloud Storage answers for an unusable object name, or None."""
    if not isinstance(name, str) or name == "":
        return gcs_error(400, "Required", "required")
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > MAX_OBJECT_NAME_BYTES:
        shown = name[:64]
        return gcs_error(400, f"The maximum object length is {MAX_OBJECT_NAME_BYTES} characters, but got a name "
                              f"with {size} characters: ''{shown}...''", "invalid")
    if name in (".", "..") or "\r" in name or "\n" in name or name.startswith(".well-known/acme-challenge/"):
        return gcs_error(400, "The specified object name is not valid.", "invalid")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return gcs_error(400, "The specified object name is not valid.", "invalid")
    return None


# ---------------------------------------------------------------------------------------------
# globs

def compile_glob(pattern: str, *, import_semantics: bool = False) -> tuple[re.Pattern, str]:
    """A glob as a regex over whole object names, and the literal prefix every match starts with.

    objects.list `matchGlob`: `*` any run without `/`, `**` any run (a whole `**/` segment also
    matches no directory at all), `?` one character other than `/`, `[abc]`, `[a-z]`, `[!abc]`,
    `{a,b}`, `\\x` a literal x.
    Healthcare import URIs (`import_semantics=True`): only `*`, `**` and `?`; everything else is
    literal (brackets and braces are legal in object names).
    """
    literal = []
    for ch in pattern:
        if ch in "*?" or (not import_semantics and ch in "[{\\"):
            break
        literal.append(ch)
    return re.compile(_glob_to_regex(pattern, import_semantics), re.DOTALL), "".join(literal)


def _glob_to_regex(pattern: str, import_semantics: bool) -> str:
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                whole_segment = (i == 0 or pattern[i - 1] == "/") and pattern.startswith("/", i + 2)
                if whole_segment and not import_semantics:
                    out.append("(?:.*/)?")
                    i += 3
                else:
                    out.append(".*")
                    i += 2
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif import_semantics:
            out.append(re.escape(c))
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        elif c == "[":
            j = i + 1
            if j < n and pattern[j] in "!^":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:j]
                negate = body[:1] in ("!", "^")
                if negate:
                    body = body[1:]
                body = body.replace("\\", "\\\\").replace("^", "\\^")
                out.append(f"[{'^' if negate else ''}{body}]")
                i = j
        elif c == "{":
            j = pattern.find("}", i)
            if j < 0:
                out.append(re.escape(c))
            else:
                alts = pattern[i + 1:j].split(",")
                out.append("(?:" + "|".join(_glob_to_regex(a, False) for a in alts) + ")")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def after_prefix(prefix: str) -> str | None:
    """The least string above every string that starts with `prefix` (None: no bound)."""
    while prefix:
        code = ord(prefix[-1]) + 1
        if 0xD800 <= code <= 0xDFFF:
            code = 0xE000
        if code <= 0x10FFFF:
            return prefix[:-1] + chr(code)
        prefix = prefix[:-1]
    return None


def encode_token(cursor: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": cursor}).encode()).decode()


def decode_token(token: str) -> str:
    try:
        return json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))["after"]
    except (ValueError, KeyError, TypeError):
        raise gcs_error(400, "Invalid page token.", "invalid") from None


# ---------------------------------------------------------------------------------------------
# bytes on their way in

class Sink:
    """One upload's bytes as they arrive: hashed on the fly (MD5, CRC32C), held in memory while
    small and spilled to a temp file (next to the blob store, so storing it is a rename) once large."""

    def __init__(self, tmp_dir: Path, spill: int = SPILL_BYTES):
        self.tmp_dir = tmp_dir
        self.spill = spill
        self.md5 = hashlib.md5()
        self.crc = google_crc32c.Checksum()
        self.size = 0
        self.buf = bytearray()
        self.file = None
        self.path: Path | None = None

    def write(self, data: bytes) -> None:
        if not data:
            return
        self.md5.update(data)
        self.crc.update(data)
        self.size += len(data)
        if self.file is None and len(self.buf) + len(data) > self.spill:
            fd, name = tempfile.mkstemp(dir=self.tmp_dir, prefix="up-")
            self.file = os.fdopen(fd, "wb")
            self.path = Path(name)
            self.file.write(self.buf)
            self.buf = bytearray()
        if self.file is not None:
            self.file.write(data)
        else:
            self.buf += data

    @property
    def md5_b64(self) -> str:
        return b64(self.md5.digest())

    @property
    def crc32c_b64(self) -> str:
        return b64(self.crc.digest())

    def store(self, blobs) -> str:
        """Move the bytes into the blob store; returns the blob key."""
        if self.file is not None:
            self.file.close()
            self.file = None
            key = blobs.put_file(self.path)
            self.path = None
            return key
        return blobs.put(bytes(self.buf))

    def discard(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None


def hash_file(path: Path) -> tuple[int, str, str]:
    """(size, md5 base64, crc32c base64) of a file, in one pass."""
    md5, crc, size = hashlib.md5(), google_crc32c.Checksum(), 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            md5.update(chunk)
            crc.update(chunk)
            size += len(chunk)
    return size, b64(md5.digest()), b64(crc.digest())


def verify_hashes(declared: dict[str, str], md5_b64: str, crc_b64: str) -> None:
    """A client-declared crc32c / md5Hash that differs from what arrived is a 400, as on Google."""
    given = declared.get("crc32c")
    if given and given != crc_b64:
        raise gcs_error(400, f'Provided CRC32C "{given}" doesn\'t match calculated CRC32C "{crc_b64}".', "invalid")
    given = declared.get("md5Hash")
    if given and given != md5_b64:
        raise gcs_error(400, f'Provided MD5 hash "{given}" doesn\'t match calculated MD5 hash "{md5_b64}".', "invalid")


# ---------------------------------------------------------------------------------------------

_OBJ_COLS = ("name, generation, metageneration, size, blob, content_type, md5, crc32c, storage_class, created, "
             "updated, extra")


class Backend:
    """`world.storage`."""

    def __init__(self, world):
        self.world = world
        self.db = world.db
        self.docs = world.docs
        self.blobs = world.blobs
        self.upload_dir = Path(self.blobs.root) / "_uploads"
        self.upload_dir.mkdir(parents=True, exist_ok=True)
        self._session_locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        with self.db.transaction():
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS storage_objects ("
                " bucket TEXT NOT NULL, name TEXT NOT NULL, generation INTEGER NOT NULL,"
                " metageneration INTEGER NOT NULL, size INTEGER NOT NULL, blob TEXT NOT NULL,"
                " content_type TEXT NOT NULL, md5 TEXT NOT NULL, crc32c TEXT NOT NULL, storage_class TEXT NOT NULL,"
                " created TEXT NOT NULL, updated TEXT NOT NULL, extra TEXT NOT NULL DEFAULT '{}',"
                " PRIMARY KEY (bucket, name)) WITHOUT ROWID")
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS storage_uploads ("
                " upload_id TEXT PRIMARY KEY, bucket TEXT NOT NULL, name TEXT NOT NULL, meta TEXT NOT NULL,"
                " conditions TEXT NOT NULL, received INTEGER NOT NULL DEFAULT 0, total INTEGER,"
                " created REAL NOT NULL, result TEXT)")

    # ----------------------------------------------------------------- projects (Resource Manager)

    def project(self, id_or_number: str) -> dict | None:
        """`{"projectId", "projectNumber"}` of an existing, active project, or None."""
        found = self.world.crm.lookup(str(id_or_number))
        if not found or found.get("state") not in (None, "ACTIVE", 1):
            return None
        number = (found.get("number") or found.get("projectNumber")
                  or str(found.get("name", "")).rpartition("/")[2])
        return {"projectId": found["projectId"], "projectNumber": str(number)}

    def project_chain(self, project_id: str) -> list[dict]:
        """The project's IAM policy and its ancestors'."""
        return [p for p in (self.world.crm.policy_chain(project_id) or []) if p]

    # ----------------------------------------------------------------- IAM evaluation

    @staticmethod
    def role_grants(role: str, permission: str) -> bool:
        return iam.grants(iam.ROLE_PERMISSIONS.get(role) or STORAGE_ROLES.get(role, ()), permission)

    def _policies_grant(self, policies: list[dict], permission: str, identities: set[str]) -> bool:
        for policy in policies:
            for b in policy.get("bindings", []):
                if "condition" in b:
                    continue  # conditions are not evaluated: a conditional grant never satisfies a check
                if identities.intersection(b.get("members", [])) and self.role_grants(b["role"], permission):
                    return True
        return False

    @staticmethod
    def _identities(member: str, project: dict, chain: list[dict]) -> set[str]:
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

    @staticmethod
    def _object_acl_equivalent(rec: dict) -> list[dict]:
        """Without uniform bucket-level access, objects carry the default object ACL (project
        owners/editors OWNER, viewers READER); expressed as the legacy object roles it amounts to."""
        if rec["iamConfiguration"]["uniformBucketLevelAccess"]["enabled"]:
            return []
        pid = rec["projectId"]
        return [{"bindings": [
            {"role": "roles/storage.legacyObjectOwner", "members": [f"projectOwner:{pid}", f"projectEditor:{pid}"]},
            {"role": "roles/storage.legacyObjectReader", "members": [f"projectViewer:{pid}"]}]}]

    def holds(self, member: str, permission: str, bucket: str) -> bool:
        """Whether `member` holds `permission` on the bucket (bucket policy, its object ACL
        equivalent, and the project's policy chain). Always evaluated: no --enforce-iam shortcut."""
        rec = self.bucket(bucket)
        if rec is None:
            return False
        chain = self.project_chain(rec["projectId"])
        identities = self._identities(member, rec, chain)
        policies = [self.policy(bucket), *self._object_acl_equivalent(rec), *chain]
        return self._policies_grant(policies, permission, identities)

    def holds_on_project(self, member: str, permission: str, project: dict) -> bool:
        chain = self.project_chain(project["projectId"])
        return self._policies_grant(chain, permission, self._identities(member, project, chain))

    def can_read(self, member: str, bucket: str) -> bool:
        """Whether `member` may list and read the bucket's objects (storage.objects.get and .list),
        e.g. the Healthcare service agent before an import."""
        return self.holds(member, "storage.objects.get", bucket) and self.holds(member, "storage.objects.list", bucket)

    # ----------------------------------------------------------------- buckets

    def bucket(self, name: str) -> dict | None:
        """The bucket record (name, projectId, projectNumber, location, ...), or None."""
        return self.docs.get(BUCKET, name)

    def policy(self, bucket: str) -> dict:
        return self.docs.get(POLICY, bucket) or iam.empty_policy()

    def policy_chain(self, bucket: str) -> list[dict]:
        """The bucket's IAM policy followed by its project's policy chain (via Resource Manager)."""
        rec = self.bucket(bucket)
        if rec is None:
            return []
        return [self.policy(bucket), *self.project_chain(rec["projectId"])]

    def create_bucket(self, project: dict, body: dict) -> dict:
        name = body.get("name")
        problem = bucket_name_problem(name)
        if problem:
            raise gcs_error(400, problem, "required" if problem == "Required" else "invalid")
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
            "iamConfiguration": self._iam_configuration(body.get("iamConfiguration") or {}, now),
        }
        if location_type != "region":
            rec["rpo"] = body.get("rpo") or "DEFAULT"
        for key in BUCKET_SETTABLE:
            if body.get(key) is not None:
                rec[key] = body[key]
        with self.db.transaction():
            existing = self.bucket(name)
            if existing is not None:
                if existing["projectNumber"] == project["projectNumber"]:
                    raise gcs_error(409, "Your previous request to create the named bucket succeeded and you "
                                         "already own it.", "conflict")
                raise gcs_error(409, "The requested bucket name is not available. The bucket namespace is shared "
                                     "by all users of the system. Please select a different name and try again.",
                                "conflict")
            self.docs.put(BUCKET, name, rec)
            self.docs.put(POLICY, name, self._default_policy(rec))
        return rec

    @staticmethod
    def _iam_configuration(cfg: dict, now: float, old: dict | None = None) -> dict:
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

    @staticmethod
    def _default_policy(rec: dict) -> dict:
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

    def list_buckets(self, project_number: str, *, prefix: str = "", cursor: str = "",
                     max_results: int = PAGE_MAX) -> tuple[list[dict], str | None]:
        """One page of the project's buckets in name order, and the cursor of the next page."""
        found = [rec for name, rec in self.docs.list(BUCKET, prefix)
                 if rec["projectNumber"] == project_number and name >= cursor]
        page = found[:max_results]
        more = len(found) > max_results
        return page, (page[-1]["name"] + "\x00" if more else None)

    def patch_bucket(self, name: str, body: dict, conditions: dict[str, int]) -> dict:
        with self.db.transaction():
            rec = self.bucket(name)
            if rec is None:
                raise bucket_not_found()
            self.check_metageneration(rec["metageneration"], conditions)
            now = self.world.clock()
            if "iamConfiguration" in body and body["iamConfiguration"] is not None:
                rec["iamConfiguration"] = self._iam_configuration(body["iamConfiguration"], now,
                                                                  rec["iamConfiguration"])
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
                    rec[key] = _merge_patch(rec[key], body[key])
                else:
                    rec[key] = _merge_patch({}, body[key]) if isinstance(body[key], dict) else body[key]
            rec["metageneration"] += 1
            rec["updated"] = rfc3339(now)
            self.docs.put(BUCKET, name, rec)
        return rec

    def delete_bucket(self, name: str, conditions: dict[str, int]) -> None:
        with self.db.transaction():
            rec = self.bucket(name)
            if rec is None:
                raise bucket_not_found()
            self.check_metageneration(rec["metageneration"], conditions)
            if self.db.execute("SELECT 1 FROM storage_objects WHERE bucket=? LIMIT 1", (name,)).fetchone():
                raise gcs_error(409, "The bucket you tried to delete is not empty.", "conflict")
            uploads = [r[0] for r in self.db.execute("SELECT upload_id FROM storage_uploads WHERE bucket=?", (name,))]
            self.db.execute("DELETE FROM storage_uploads WHERE bucket=?", (name,))
            self.docs.delete(BUCKET, name)
            self.docs.delete(POLICY, name)
        for upload_id in uploads:
            (self.upload_dir / upload_id).unlink(missing_ok=True)

    @staticmethod
    def check_metageneration(current: int, conditions: dict[str, int]) -> None:
        if "ifMetagenerationMatch" in conditions and conditions["ifMetagenerationMatch"] != current:
            raise precondition_failed()
        if "ifMetagenerationNotMatch" in conditions and conditions["ifMetagenerationNotMatch"] == current:
            raise precondition_failed()

    def bucket_resource(self, rec: dict, base: str, *, full: bool = False) -> dict:
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
                etag = proto_etag(rec["metageneration"])
                teams = (("owners", "OWNER"), ("editors", "OWNER"), ("viewers", "READER"))
                out["acl"] = [{
                    "kind": "storage#bucketAccessControl", "id": f"{name}/project-{team}-{pn}",
                    "selfLink": f"{base}storage/v1/b/{name}/acl/project-{team}-{pn}", "bucket": name,
                    "entity": f"project-{team}-{pn}", "role": role, "etag": etag,
                    "projectTeam": {"projectNumber": pn, "team": team}} for team, role in teams]
                out["defaultObjectAcl"] = [{
                    "kind": "storage#objectAccessControl", "entity": f"project-{team}-{pn}", "role": role,
                    "etag": etag, "projectTeam": {"projectNumber": pn, "team": team}} for team, role in teams]
        return out

    # ----------------------------------------------------------------- bucket IAM

    def policy_resource(self, bucket: str, requested_version: int | None) -> dict:
        return iam.view(self.policy(bucket), requested_version, storage=True,
                        resource_id=f"projects/_/buckets/{bucket}")

    def set_policy(self, bucket: str, body: dict) -> dict:
        """setIamPolicy: Cloud Storage roles only, known member types, existing service agents;
        a stale etag is 412 conditionNotMet."""
        rec = self.bucket(bucket)
        if rec is None:
            raise bucket_not_found()
        bindings = body.get("bindings") or []
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
                self._check_service_agent(member)
        with self.db.transaction():
            new = iam.replace(self.policy(bucket), body, storage=True)
            self.docs.put(POLICY, bucket, new)
        return new

    def _check_service_agent(self, member: str) -> None:
        """A Google-managed service agent that has not been created yet cannot be granted anything."""
        parsed = parse_agent_email(member) if member.startswith("serviceAccount:") else None
        usage = getattr(self.world, "serviceusage", None)
        if not parsed or usage is None:
            return
        if not usage.agent_exists(*parsed):
            email = member.partition(":")[2]
            raise gcs_error(400, f"Service account {email} does not exist.", "badRequest")

    # ----------------------------------------------------------------- objects

    def _obj(self, bucket: str, row) -> dict:
        (name, gen, mgen, size, blob, ctype, md5, crc, sclass, created, updated, extra) = row
        return {"bucket": bucket, "name": name, "generation": gen, "metageneration": mgen, "size": size,
                "blob": blob, "contentType": ctype, "md5Hash": md5, "crc32c": crc, "storageClass": sclass,
                "timeCreated": created, "updated": updated, "extra": json.loads(extra)}

    def get_object(self, bucket: str, name: str) -> dict | None:
        """The live object's record (with `blob`, its blob-store key), or None."""
        row = self.db.execute(f"SELECT {_OBJ_COLS} FROM storage_objects WHERE bucket=? AND name=?",
                              (bucket, name)).fetchone()
        return self._obj(bucket, row) if row else None

    @staticmethod
    def check_conditions(current: dict | None, conditions: dict[str, int]) -> None:
        """ifGenerationMatch (0: must not exist) and friends; 412 when one does not hold."""
        gen = current["generation"] if current else 0
        mgen = current["metageneration"] if current else None
        if "ifGenerationMatch" in conditions and conditions["ifGenerationMatch"] != gen:
            raise precondition_failed()
        if "ifGenerationNotMatch" in conditions and conditions["ifGenerationNotMatch"] == gen:
            raise precondition_failed()
        if "ifMetagenerationMatch" in conditions and conditions["ifMetagenerationMatch"] != mgen:
            raise precondition_failed()
        if "ifMetagenerationNotMatch" in conditions and mgen is not None \
                and conditions["ifMetagenerationNotMatch"] == mgen:
            raise precondition_failed()

    def commit_object(self, bucket: str, name: str, *, blob: str, size: int, md5: str, crc32c: str,
                      meta: dict, conditions: dict[str, int] | None = None, epoch: int | None = None) -> dict:
        """Make uploaded bytes the live object `name` (a new generation), preconditions permitting.
        `epoch`: the world's epoch when the upload began; after a reset the bucket is gone (404)."""
        err = object_name_problem(name)
        if err:
            raise err
        rec = self.bucket(bucket)
        if rec is None:
            raise bucket_not_found()
        now = self.world.clock()
        stamp = rfc3339(now)
        ctype = meta.get("contentType") or "application/octet-stream"
        sclass = str(meta.get("storageClass") or rec["storageClass"]).upper()
        extra = {k: meta[k] for k in OBJECT_SETTABLE if meta.get(k) is not None}
        with self.db.transaction():
            if epoch is not None and epoch != self.world.epoch:
                raise bucket_not_found()
            current = self.get_object(bucket, name)
            self.check_conditions(current, conditions or {})
            gen = int(now * 1_000_000)
            if current and gen <= current["generation"]:
                gen = current["generation"] + 1
            self.db.execute(
                f"INSERT OR REPLACE INTO storage_objects ({_OBJ_COLS}, bucket) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (name, gen, 1, size, blob, ctype, md5, crc32c, sclass, stamp, stamp, json.dumps(extra), bucket))
        return {"bucket": bucket, "name": name, "generation": gen, "metageneration": 1, "size": size, "blob": blob,
                "contentType": ctype, "md5Hash": md5, "crc32c": crc32c, "storageClass": sclass,
                "timeCreated": stamp, "updated": stamp, "extra": extra}

    def put_object(self, bucket: str, name: str, data: bytes, content_type: str = "application/octet-stream",
                   conditions: dict[str, int] | None = None) -> dict:
        """Write an object from Python (e.g. a Healthcare export); returns its record."""
        md5 = b64(hashlib.md5(data).digest())
        crc = b64(google_crc32c.Checksum(data).digest())
        key = self.blobs.put(data)
        return self.commit_object(bucket, name, blob=key, size=len(data), md5=md5, crc32c=crc,
                                  meta={"contentType": content_type}, conditions=conditions)

    def patch_object(self, bucket: str, name: str, body: dict, conditions: dict[str, int]) -> dict:
        with self.db.transaction():
            current = self.get_object(bucket, name)
            if current is None:
                raise object_not_found(bucket, name)
            self.check_conditions(current, conditions)
            extra = current["extra"]
            for key in OBJECT_SETTABLE:
                if key not in body:
                    continue
                if body[key] is None:
                    extra.pop(key, None)
                elif isinstance(body[key], dict):
                    extra[key] = _merge_patch(extra.get(key) or {}, body[key])
                else:
                    extra[key] = body[key]
            ctype = body.get("contentType") or current["contentType"]
            updated = rfc3339(self.world.clock())
            self.db.execute("UPDATE storage_objects SET metageneration=metageneration+1, content_type=?, updated=?, "
                            "extra=? WHERE bucket=? AND name=?", (ctype, updated, json.dumps(extra), bucket, name))
            return self.get_object(bucket, name)

    def delete_object(self, bucket: str, name: str, conditions: dict[str, int], generation: int | None = None) -> None:
        with self.db.transaction():
            current = self.get_object(bucket, name)
            if current is None or (generation is not None and generation != current["generation"]):
                raise object_not_found(bucket, name)
            self.check_conditions(current, conditions)
            self.db.execute("DELETE FROM storage_objects WHERE bucket=? AND name=?", (bucket, name))
        # The bytes stay in the blob store: it is content-addressed and shared (DICOM instances too).

    def object_resource(self, obj: dict, base: str) -> dict:
        """The wire `storage#object` (only fields of the discovery Object schema)."""
        bucket, name, gen = obj["bucket"], obj["name"], obj["generation"]
        qname = quote(name, safe="")
        out = {
            "kind": "storage#object", "id": f"{bucket}/{name}/{gen}",
            "selfLink": f"{base}storage/v1/b/{bucket}/o/{qname}",
            "mediaLink": f"{base}download/storage/v1/b/{bucket}/o/{qname}?generation={gen}&alt=media",
            "name": name, "bucket": bucket, "generation": str(gen), "metageneration": str(obj["metageneration"]),
            "contentType": obj["contentType"], "storageClass": obj["storageClass"], "size": str(obj["size"]),
            "md5Hash": obj["md5Hash"], "crc32c": obj["crc32c"], "etag": proto_etag(gen, obj["metageneration"]),
            "timeCreated": obj["timeCreated"], "updated": obj["updated"],
            "timeStorageClassUpdated": obj["timeCreated"], "timeFinalized": obj["timeCreated"],
        }
        out.update(obj["extra"])
        return out

    # ----------------------------------------------------------------- listing

    def _rows(self, bucket: str, lo: str, hi: str | None, limit: int) -> list:
        if hi is None:
            return self.db.execute(f"SELECT {_OBJ_COLS} FROM storage_objects WHERE bucket=? AND name>=? "
                                   "ORDER BY name LIMIT ?", (bucket, lo, limit)).fetchall()
        return self.db.execute(f"SELECT {_OBJ_COLS} FROM storage_objects WHERE bucket=? AND name>=? AND name<? "
                               "ORDER BY name LIMIT ?", (bucket, lo, hi, limit)).fetchall()

    @staticmethod
    def _bounds(prefix: str, literal: str, start: str, end: str | None) -> tuple[str, str | None] | None:
        """The [lo, hi) name range that can hold matches, or None when nothing can match."""
        if literal.startswith(prefix):
            narrow = literal
        elif prefix.startswith(literal):
            narrow = prefix
        else:
            return None
        lo = max(narrow, start)
        hi = after_prefix(narrow)
        if end is not None and (hi is None or end < hi):
            hi = end
        if hi is not None and lo >= hi:
            return None
        return lo, hi

    def list_objects(self, bucket: str, *, prefix: str = "", delimiter: str = "", match_glob: str | None = None,
                     start_offset: str = "", end_offset: str | None = None, cursor: str = "",
                     max_results: int = PAGE_MAX, include_trailing_delimiter: bool = False,
                     ) -> tuple[list[dict], list[str], str | None]:
        """One page of objects.list: (items, prefixes, cursor of the next page or None).
        Items and prefixes together fill at most `max_results` entries, as on Google."""
        regex, literal = compile_glob(match_glob) if match_glob else (None, "")
        bounds = self._bounds(prefix, literal, max(start_offset, cursor), end_offset or None)
        items: list[dict] = []
        prefixes: list[str] = []
        if bounds is None:
            return items, prefixes, None
        lo, hi = bounds
        while len(items) + len(prefixes) < max_results:
            rows = self._rows(bucket, lo, hi, SCAN_BATCH)
            if not rows:
                return items, prefixes, None
            restarted = False
            for row in rows:
                name = row[0]
                lo = name + "\x00"
                if regex is not None and not regex.fullmatch(name):
                    continue
                if delimiter:
                    cut = name.find(delimiter, len(prefix))
                    if cut >= 0:
                        common = name[:cut + len(delimiter)]
                        if include_trailing_delimiter and name == common:
                            items.append(self._obj(bucket, row))
                        prefixes.append(common)
                        nxt = after_prefix(common)
                        if nxt is None:
                            return items, prefixes, None
                        lo = nxt
                        restarted = True
                        break
                items.append(self._obj(bucket, row))
                if len(items) + len(prefixes) >= max_results:
                    break
            if not restarted and len(rows) < SCAN_BATCH and len(items) + len(prefixes) < max_results:
                return items, prefixes, None
            if hi is not None and lo >= hi:
                return items, prefixes, None
        more = self._rows(bucket, lo, hi, 1)
        return items, prefixes, (lo if more else None)

    def iter_objects(self, bucket: str, glob: str | None = None, prefix: str = "") -> Iterator[tuple[str, str, int]]:
        """(name, blob key, size) of the bucket's objects in name order, restricted to names that
        start with `prefix` and match `glob` (Healthcare import semantics, over the whole name:
        `*` any run without `/`, `**` any run, `?` one character other than `/`)."""
        regex, literal = compile_glob(glob, import_semantics=True) if glob else (None, "")
        bounds = self._bounds(prefix, literal, "", None)
        if bounds is None:
            return
        lo, hi = bounds
        while True:
            if hi is None:
                rows = self.db.execute("SELECT name, blob, size FROM storage_objects WHERE bucket=? AND name>=? "
                                       "ORDER BY name LIMIT ?", (bucket, lo, SCAN_BATCH)).fetchall()
            else:
                rows = self.db.execute("SELECT name, blob, size FROM storage_objects WHERE bucket=? AND name>=? "
                                       "AND name<? ORDER BY name LIMIT ?", (bucket, lo, hi, SCAN_BATCH)).fetchall()
            for name, blob, size in rows:
                if regex is None or regex.fullmatch(name):
                    yield name, blob, size
            if len(rows) < SCAN_BATCH:
                return
            lo = rows[-1][0] + "\x00"

    # ----------------------------------------------------------------- resumable uploads

    def _session_lock(self, upload_id: str) -> threading.Lock:
        with self._locks_guard:
            return self._session_locks.setdefault(upload_id, threading.Lock())

    def start_upload(self, bucket: str, name: str, meta: dict, conditions: dict[str, int],
                     total: int | None = None) -> str:
        """Open a resumable-upload session; returns its upload_id."""
        err = object_name_problem(name)
        if err:
            raise err
        if self.bucket(bucket) is None:
            raise bucket_not_found()
        self.check_conditions(self.get_object(bucket, name), conditions)
        upload_id = "ADPyc" + secrets.token_urlsafe(48)
        (self.upload_dir / upload_id).touch()
        self.db.execute("INSERT INTO storage_uploads (upload_id, bucket, name, meta, conditions, received, total, "
                        "created) VALUES (?,?,?,?,?,0,?,?)",
                        (upload_id, bucket, name, json.dumps({**meta, "name": name}), json.dumps(conditions), total,
                         self.world.clock()))
        return upload_id

    def _session(self, upload_id: str, bucket: str) -> dict:
        row = self.db.execute("SELECT bucket, name, meta, conditions, received, total, result FROM storage_uploads "
                              "WHERE upload_id=?", (upload_id,)).fetchone()
        if row is None or row[0] != bucket:
            raise upload_gone()
        b, name, meta, cond, received, total, result = row
        return {"bucket": b, "name": name, "meta": json.loads(meta), "conditions": json.loads(cond),
                "received": received, "total": total, "result": json.loads(result) if result else None}

    def upload_chunk(self, upload_id: str, bucket: str, *, first: int | None, total: int | None,
                     read: Callable[[int], bytes], length: int, declared: dict[str, str]) -> tuple[str, Any]:
        """One PUT of a resumable session. `first` is the chunk's first byte offset (None: a status
        query), `total` the object size once the client knows it. Answers ("done", object record)
        or ("partial", bytes received so far).

        The chunk is read in full (into a temp file past SPILL_BYTES) before the session's lock is
        taken, so a stalled client never blocks others on the same session; a chunk cut short
        (the client went away) changes nothing, and the session's bytes on disk are always the
        `received` ones. A reset of the world meanwhile ends the session (404)."""
        epoch = self.world.epoch
        sess = self._session(upload_id, bucket)
        if sess["result"] is not None:
            return "done", sess["result"]
        with tempfile.SpooledTemporaryFile(max_size=SPILL_BYTES, dir=self.upload_dir) as spool:
            got = 0
            if first is not None and length:
                try:
                    while got < length:
                        chunk = read(min(length - got, 1 << 20))
                        if not chunk:
                            break
                        spool.write(chunk)
                        got += len(chunk)
                except OSError:
                    got = -1
                if got != length:
                    raise gcs_error(400, f"Invalid request. The request body ended after {max(got, 0)} of the "
                                         f"{length} byte(s) its Content-Length declared.", "invalid")
            with self._session_lock(upload_id):
                if self.world.epoch != epoch:
                    raise upload_gone()
                sess = self._session(upload_id, bucket)
                if sess["result"] is not None:
                    return "done", sess["result"]
                try:
                    return self._append_chunk(upload_id, bucket, sess, spool, first, length, total, declared, epoch)
                except FileNotFoundError:
                    raise upload_gone() from None  # the world was reset under us

    def _append_chunk(self, upload_id: str, bucket: str, sess: dict, spool, first: int | None, length: int,
                      total: int | None, declared: dict[str, str], epoch: int) -> tuple[str, Any]:
        path = self.upload_dir / upload_id
        received = sess["received"]
        if first is not None and length:
            if first > received:
                raise gcs_error(400, f"Invalid request. According to the Content-Range header, the upload "
                                     f"offset is {first} byte(s), which exceeds already uploaded size of "
                                     f"{received} byte(s).", "invalid")
            try:
                with open(path, "r+b") as fh:
                    fh.truncate(received)  # whatever an earlier, interrupted append left is not the session's
                    fh.seek(received)
                    spool.seek(received - first)
                    while True:
                        chunk = spool.read(1 << 20)
                        if not chunk:
                            break
                        fh.write(chunk)
            finally:
                received = path.stat().st_size
                self.db.execute("UPDATE storage_uploads SET received=? WHERE upload_id=?", (received, upload_id))
        if total is None:
            total = sess["total"]
        if total is not None and received > total:
            raise gcs_error(400, f"Invalid request. The upload size {received} exceeds the declared object "
                                 f"size {total}.", "invalid")
        if total is None or received < total:
            self.db.execute("UPDATE storage_uploads SET received=?, total=? WHERE upload_id=?",
                            (received, total, upload_id))
            return "partial", received
        # complete: hash, check what the client declared, commit
        size, md5, crc = hash_file(path)
        meta = sess["meta"]
        try:
            verify_hashes({**{k: meta[k] for k in ("crc32c", "md5Hash") if meta.get(k)}, **declared}, md5, crc)
            key = self.blobs.put_file(path)
            obj = self.commit_object(bucket, sess["name"], blob=key, size=size, md5=md5, crc32c=crc, meta=meta,
                                     conditions=sess["conditions"], epoch=epoch)
        except ApiError:
            # the upload failed for good (checksum mismatch, precondition): the session ends with it
            self.db.execute("DELETE FROM storage_uploads WHERE upload_id=?", (upload_id,))
            path.unlink(missing_ok=True)
            raise
        self.db.execute("UPDATE storage_uploads SET received=?, total=?, result=? WHERE upload_id=?",
                        (size, total, json.dumps(obj), upload_id))
        return "done", obj

    def cancel_upload(self, upload_id: str, bucket: str) -> None:
        with self._session_lock(upload_id):
            self._session(upload_id, bucket)
            self.db.execute("DELETE FROM storage_uploads WHERE upload_id=?", (upload_id,))
            (self.upload_dir / upload_id).unlink(missing_ok=True)

    def new_sink(self) -> Sink:
        return Sink(self.upload_dir)

    # ----------------------------------------------------------------- control

    def reset(self) -> None:
        self.db.execute("DELETE FROM storage_objects")
        self.db.execute("DELETE FROM storage_uploads")
        for key in (BUCKET, POLICY):
            for name, _ in self.docs.list(key):
                self.docs.delete(key, name)
        for path in self.upload_dir.iterdir():
            path.unlink(missing_ok=True)

    def dump(self) -> dict:
        counts = {b: (n, total or 0) for b, n, total in self.db.execute(
            "SELECT bucket, COUNT(*), SUM(size) FROM storage_objects GROUP BY bucket")}
        buckets = {}
        for name, rec in self.docs.list(BUCKET):
            n, size = counts.get(name, (0, 0))
            buckets[name] = {"projectId": rec["projectId"], "projectNumber": rec["projectNumber"],
                             "location": rec["location"], "objects": n, "bytes": size,
                             "uniformBucketLevelAccess": rec["iamConfiguration"]["uniformBucketLevelAccess"]["enabled"]}
        uploads = self.db.execute("SELECT COUNT(*) FROM storage_uploads WHERE result IS NULL").fetchone()[0]
        return {"storage": {"buckets": buckets, "uploadsInProgress": uploads}}


def _merge_patch(current: dict, patch: dict) -> dict:
    """JSON merge-patch as the JSON API applies PATCH to maps (labels, metadata): null deletes."""
    out = dict(current)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge_patch(out[key], value)
        else:
            out[key] = value
    return out


def validate_object_metadata(meta: Any) -> dict:
    """An upload's JSON metadata held to the discovery Object schema (unknown field: 400)."""
    if not isinstance(meta, dict):
        raise gcs_error(400, "Invalid JSON payload received: metadata must be an object.", "invalid")
    discovery.validate_request("storage.v1", "storage.objects.insert", meta)
    return meta
