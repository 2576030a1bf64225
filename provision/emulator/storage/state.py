"""Cloud Storage as the emulator keeps it, with no HTTP. `Backend` (`world.storage`) is the one
entry point; the work is done by modules with one job each:

- `buckets`  bucket records and bucket IAM policies in the shared document store
- `access`   bucket IAM evaluation and setIamPolicy validation (pure functions)
- `objects`  object metadata in an indexed SQLite table, listing, the wire `storage#object`
- `globs`    matchGlob / Healthcare import-glob matching and the name range a listing scans
- `uploads`  the hashing upload sink, checksum checks, resumable-upload sessions
- `names`    bucket and object naming rules;  `common`  errors, times, etags, page tokens

Object bytes live in the content-addressed blob store; resumable sessions survive a restart
when `--data-dir` is set. Object names are only SQLite keys, never file paths.

Public helpers for other APIs (the Healthcare import/export reads and writes buckets):
`bucket(name)`, `policy_chain(bucket)`, `iter_objects(bucket, glob, prefix)`,
`can_read(member, bucket)`, `holds(member, permission, bucket)`, `get_object(bucket, name)`,
`put_object(bucket, name, data)`.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable, Iterator

import google_crc32c

from provision.emulator import iam
from provision.emulator.state_base import ApiBackend
from provision.emulator.storage import access, buckets, constraints, lockdown, objects, uploads
from provision.emulator.storage.common import PAGE_MAX, b64, bucket_not_found, gcs_error
from provision.emulator.storage.names import object_name_problem
from provision.emulator.storage.uploads import Sink
from provision.emulator.worldview import WorldView

ATTACH_AS = "storage"


class Backend(ApiBackend):
    """`world.storage`: the facade the handlers and other APIs call. It owns what crosses module
    lines (a bucket's existence before an object write, emptiness before a bucket delete) and
    delegates everything else."""

    def __init__(self, world: WorldView):
        super().__init__(world)
        self.db = world.db
        self.blobs = world.blobs
        self.upload_dir = Path(self.blobs.root) / "_uploads"
        self.upload_dir.mkdir(parents=True, exist_ok=True)
        with self.db.transaction():
            self.db.execute(objects.SCHEMA)
            self.db.execute(uploads.SCHEMA)
        self.buckets = buckets.Buckets(world)
        self.objects = objects.ObjectTable(world)
        self.uploads = uploads.UploadSessions(world, self.upload_dir, commit=self.commit_object)

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

    role_grants = staticmethod(access.role_grants)

    def holds(self, member: str, permission: str, bucket: str) -> bool:
        """Whether `member` holds `permission` on the bucket (bucket policy, its object ACL
        equivalent, and the project's policy chain). Always evaluated: no --enforce-iam shortcut."""
        rec = self.bucket(bucket)
        if rec is None:
            return False
        chain = self.project_chain(rec["projectId"])
        identities = access.identities(member, rec, chain)
        if lockdown.prevents_public(rec):   # public bindings may stay in the policy; they grant nothing
            identities -= set(lockdown.PUBLIC)
        policies = [self.policy(bucket), *access.object_acl_equivalent(rec), *chain]
        return access.policies_grant(policies, permission, identities)

    def holds_on_project(self, member: str, permission: str, project: dict) -> bool:
        """Whether `member` holds `permission` through the project's policy chain alone."""
        chain = self.project_chain(project["projectId"])
        return access.policies_grant(chain, permission, access.identities(member, project, chain))

    def can_read(self, member: str, bucket: str) -> bool:
        """Whether `member` may list and read the bucket's objects (storage.objects.get and .list),
        e.g. the Healthcare service agent before an import."""
        return self.holds(member, "storage.objects.get", bucket) and self.holds(member, "storage.objects.list", bucket)

    # ----------------------------------------------------------------- buckets

    def bucket(self, name: str) -> dict | None:
        """The bucket record (name, projectId, projectNumber, location, ...), or None."""
        return self.buckets.get(name)

    def policy(self, bucket: str) -> dict:
        """The bucket's IAM policy (an empty one when none is stored)."""
        return self.buckets.policy(bucket)

    def policy_chain(self, bucket: str) -> list[dict]:
        """The bucket's IAM policy followed by its project's policy chain (via Resource Manager)."""
        rec = self.bucket(bucket)
        if rec is None:
            return []
        return [self.policy(bucket), *self.project_chain(rec["projectId"])]

    def create_bucket(self, project: dict, body: dict) -> dict:
        """buckets.insert in `project` (under its organization policies); returns the stored record."""
        constraints.check_create(self.world, project, body)
        return self.buckets.create(project, body)

    def list_buckets(self, project_number: str, *, prefix: str = "", cursor: str = "",
                     max_results: int = PAGE_MAX) -> tuple[list[dict], str | None]:
        """One page of the project's buckets in name order, and the cursor of the next page."""
        return self.buckets.list(project_number, prefix=prefix, cursor=cursor, max_results=max_results)

    def patch_bucket(self, name: str, body: dict, conditions: dict[str, int]) -> dict:
        """buckets.patch; returns the updated record."""
        return self.buckets.patch(name, body, conditions)

    def delete_bucket(self, name: str, conditions: dict[str, int]) -> None:
        """buckets.delete: only an empty bucket; its unfinished upload sessions end with it."""
        with self.db.transaction():
            rec = self.bucket(name)
            if rec is None:
                raise bucket_not_found()
            self.check_metageneration(rec["metageneration"], conditions)
            if self.objects.any_in(name):
                raise gcs_error(409, "The bucket you tried to delete is not empty.", "conflict")
            upload_ids = self.uploads.forget_bucket(name)
            self.buckets.drop(name)
        # spool files go only once the rows are gone for good (a rolled-back delete keeps both)
        self.uploads.remove_files(upload_ids)

    check_metageneration = staticmethod(buckets.check_metageneration)

    def bucket_resource(self, rec: dict, base: str, *, full: bool = False) -> dict:
        """The wire `storage#bucket` (only fields of the discovery Bucket schema)."""
        acls = {scope: self.buckets.acl(rec, scope) for scope in ("bucket", "default")} if full else None
        return buckets.bucket_resource(rec, base, full=full, acls=acls)

    # ----------------------------------------------------------------- bucket IAM

    def policy_resource(self, bucket: str, requested_version: int | None) -> dict:
        """getIamPolicy's answer for the bucket, at the requested policy version."""
        return iam.view(self.policy(bucket), requested_version, storage=True,
                        resource_id=f"projects/_/buckets/{bucket}")

    def set_policy(self, bucket: str, body: dict) -> dict:
        """setIamPolicy: Cloud Storage roles only, known member types, existing service agents;
        a stale etag is 412 conditionNotMet."""
        rec = self.bucket(bucket)
        if rec is None:
            raise bucket_not_found()
        access.check_bindings(rec, body.get("bindings") or [], self._agent_exists)
        constraints.check_policy(self.world, rec, self.policy(bucket), body)
        with self.db.transaction():
            new = iam.replace(self.policy(bucket), body, storage=True)
            self.buckets.put_policy(bucket, new)
        return new

    def _agent_exists(self, *parsed: str) -> bool:
        # Looked up per member, as Service Usage may not be attached to this world at all.
        usage = getattr(self.world, "serviceusage", None)
        return True if usage is None else usage.agent_exists(*parsed)

    # ----------------------------------------------------------------- objects

    def get_object(self, bucket: str, name: str) -> dict | None:
        """The live object's record (with `blob`, its blob-store key), or None."""
        return self.objects.get(bucket, name)

    check_conditions = staticmethod(objects.check_conditions)

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
        return self.objects.commit(bucket, rec, name, blob=blob, size=size, md5=md5, crc32c=crc32c, meta=meta,
                                   conditions=conditions, epoch=epoch)

    def put_object(self, bucket: str, name: str, data: bytes, content_type: str = "application/octet-stream",
                   conditions: dict[str, int] | None = None) -> dict:
        """Write an object from Python (e.g. a Healthcare export); returns its record."""
        md5 = b64(hashlib.md5(data).digest())
        crc = b64(google_crc32c.Checksum(data).digest())
        key = self.blobs.put(data)
        return self.commit_object(bucket, name, blob=key, size=len(data), md5=md5, crc32c=crc,
                                  meta={"contentType": content_type}, conditions=conditions)

    # ------------------------------------------------------------- copy, rewrite, compose, move
    # Bytes are content-addressed, so a copy or a move shares the source's blob: nothing is read.

    def source_object(self, bucket: str, name: str, generation: int | None,
                      conditions: dict[str, int]) -> dict:
        """The object a copy, rewrite or move reads: 404 when it (or the asked generation) is not
        there, 412 when an ifSource* condition does not hold (`conditions` use the plain names)."""
        if self.bucket(bucket) is None:
            raise bucket_not_found()
        obj = self.get_object(bucket, name)
        if obj is None or (generation is not None and generation != obj["generation"]):
            raise gcs_error(404, f"No such object: {bucket}/{name}", "notFound")
        self.check_conditions(obj, conditions)
        return obj

    def copy_object(self, src: dict, bucket: str, name: str, body: dict, conditions: dict[str, int],
                    source_conditions: dict[str, int] | None = None) -> dict:
        """objects.copy / objects.rewrite: `src` (a `source_object` record) becomes the live object
        `name` in `bucket`. Metadata is the source's, with the fields the request body sets
        replacing it (our reading: the docs say the body is "metadata to apply to the destination";
        google-cloud-storage's rewrite sends just the destination's name and expects the source's
        content type to survive). The source is checked again in the write's transaction."""
        meta = {"contentType": src["contentType"], **src["extra"]}
        meta.pop("componentCount", None)
        meta.update({k: v for k, v in (body or {}).items() if v is not None})
        composite = src["extra"].get("componentCount")

        def unchanged() -> None:
            now = self.get_object(src["bucket"], src["name"])
            if now is None or now["generation"] != src["generation"]:
                raise gcs_error(404, f"No such object: {src['bucket']}/{src['name']}", "notFound")
            self.check_conditions(now, source_conditions or {})

        err = object_name_problem(name)
        if err:
            raise err
        rec = self.bucket(bucket)
        if rec is None:
            raise bucket_not_found()
        return self.objects.commit(bucket, rec, name, blob=src["blob"], size=src["size"], md5=src["md5Hash"],
                                   crc32c=src["crc32c"], meta=meta, conditions=conditions,
                                   component_count=composite, check=unchanged)

    def compose_objects(self, bucket: str, name: str, body: dict, conditions: dict[str, int]) -> dict:
        """objects.compose: 1 to 32 objects of the bucket, concatenated, become `name`. The result is
        a composite object: a CRC32C and no MD5, `componentCount` the sum of its sources' counts
        (docs: storage/docs/composite-objects). Its content type is the destination's, else
        application/octet-stream (the docs say only gcloud copies the first source's)."""
        sources = body.get("sourceObjects") or []
        if not sources:
            raise gcs_error(400, "Required: sourceObjects", "required")
        if len(sources) > 32:
            raise gcs_error(400, "The number of source components provided (%d) exceeds the maximum (32)"
                            % len(sources), "invalid")
        if self.bucket(bucket) is None:
            raise bucket_not_found()
        parts = []
        for i, item in enumerate(sources):
            src_name = (item or {}).get("name")
            if not src_name:
                raise gcs_error(400, f"Required: sourceObjects[{i}].name", "required")
            want = item.get("generation")
            obj = self.get_object(bucket, src_name)
            if obj is None or (want not in (None, "") and int(want) != obj["generation"]):
                raise gcs_error(404, f"No such object: {bucket}/{src_name}", "notFound")
            pre = (item.get("objectPreconditions") or {}).get("ifGenerationMatch")
            if pre not in (None, "") and int(pre) != obj["generation"]:
                raise gcs_error(412, "At least one of the pre-conditions you specified did not hold.",
                                "conditionNotMet")
            parts.append(obj)
        sink = Sink(self.upload_dir)
        try:
            for obj in parts:
                for chunk in self.blobs.iter_chunks(obj["blob"], 1 << 20):
                    sink.write(chunk)
            key = sink.store(self.blobs)
        finally:
            sink.discard()
        destination = dict(body.get("destination") or {})
        destination.pop("md5Hash", None)   # "Any MD5 value you provide as part of a compose request is ignored"
        meta = {"contentType": destination.get("contentType") or "application/octet-stream",
                **{k: v for k, v in destination.items() if v is not None}}
        count = sum(int(obj["extra"].get("componentCount") or 1) for obj in parts)
        generations = [(o["name"], o["generation"]) for o in parts]

        def unchanged() -> None:
            for src_name, gen in generations:
                now = self.get_object(bucket, src_name)
                if now is None or now["generation"] != gen:
                    raise gcs_error(404, f"No such object: {bucket}/{src_name}", "notFound")

        rec = self.bucket(bucket)
        if rec is None:
            raise bucket_not_found()
        err = object_name_problem(name)
        if err:
            raise err
        return self.objects.commit(bucket, rec, name, blob=key, size=sink.size, md5="", crc32c=sink.crc32c_b64,
                                   meta=meta, conditions=conditions, component_count=count, check=unchanged)

    def move_object(self, bucket: str, src_name: str, name: str, conditions: dict[str, int],
                    source_conditions: dict[str, int]) -> dict:
        """objects.move: rename within the bucket, in one transaction (the source is gone after)."""
        with self.db.transaction():
            src = self.source_object(bucket, src_name, None, source_conditions)
            obj = self.copy_object(src, bucket, name, {}, conditions)
            self.objects.delete(bucket, src_name, {}, src["generation"])
        return obj

    def patch_object(self, bucket: str, name: str, body: dict, conditions: dict[str, int]) -> dict:
        """objects.patch; returns the updated record."""
        return self.objects.patch(bucket, name, body, conditions)

    def delete_object(self, bucket: str, name: str, conditions: dict[str, int], generation: int | None = None) -> None:
        """objects.delete (the bytes stay in the shared, content-addressed blob store); its ACL goes
        with it (an object made again under the name starts from the default ACL)."""
        self.objects.delete(bucket, name, conditions, generation)
        self.buckets.drop_acl(bucket, f"object:{name}")

    def object_resource(self, obj: dict, base: str) -> dict:
        """The wire `storage#object` (only fields of the discovery Object schema)."""
        return objects.object_resource(obj, base)

    # ----------------------------------------------------------------- listing

    def list_objects(self, bucket: str, *, prefix: str = "", delimiter: str = "", match_glob: str | None = None,
                     start_offset: str = "", end_offset: str | None = None, cursor: str = "",
                     max_results: int = PAGE_MAX, include_trailing_delimiter: bool = False,
                     ) -> tuple[list[dict], list[str], str | None]:
        """One page of objects.list: (items, prefixes, cursor of the next page or None).
        Items and prefixes together fill at most `max_results` entries, as on Google."""
        return self.objects.list(bucket, prefix=prefix, delimiter=delimiter, match_glob=match_glob,
                                 start_offset=start_offset, end_offset=end_offset, cursor=cursor,
                                 max_results=max_results, include_trailing_delimiter=include_trailing_delimiter)

    def iter_objects(self, bucket: str, glob: str | None = None, prefix: str = "") -> Iterator[tuple[str, str, int]]:
        """(name, blob key, size) of the bucket's objects in name order, restricted to names that
        start with `prefix` and match `glob` (Healthcare import semantics, over the whole name:
        `*` any run without `/`, `**` any run, `?` one character other than `/`)."""
        return self.objects.iter(bucket, glob, prefix)

    # ----------------------------------------------------------------- uploads

    def start_upload(self, bucket: str, name: str, meta: dict, conditions: dict[str, int],
                     total: int | None = None) -> str:
        """Open a resumable-upload session; returns its upload_id."""
        err = object_name_problem(name)
        if err:
            raise err
        if self.bucket(bucket) is None:
            raise bucket_not_found()
        self.check_conditions(self.get_object(bucket, name), conditions)
        return self.uploads.open(bucket, name, meta, conditions, total)

    def upload_chunk(self, upload_id: str, bucket: str, *, first: int | None, total: int | None,
                     read: Callable[[int], bytes], length: int, declared: dict[str, str]) -> tuple[str, Any]:
        """One PUT of a resumable session: ("done", object record) or ("partial", bytes received).
        See `UploadSessions.chunk`."""
        return self.uploads.chunk(upload_id, bucket, first=first, total=total, read=read, length=length,
                                  declared=declared)

    def cancel_upload(self, upload_id: str, bucket: str) -> None:
        """End a resumable session (404 when there is none for this bucket)."""
        self.uploads.cancel(upload_id, bucket)

    def new_sink(self) -> Sink:
        """A fresh sink for a media or multipart upload body."""
        return Sink(self.upload_dir)

    # ----------------------------------------------------------------- control

    def blob_refs(self, keys: list[str] | None) -> set[str]:
        """Which blob keys objects use (World.referenced_blobs)."""
        return self.objects.blob_refs(keys)

    def reset(self) -> None:
        """Forget every bucket, policy, object and upload session."""
        super().reset()
        self.objects.clear()
        self.uploads.clear_rows()
        self.buckets.clear()
        self.uploads.clear_files()

    def dump(self) -> dict:
        """A summary of the state for `/_emulator/state`: buckets with object counts and bytes."""
        counts = self.objects.usage()
        out = {}
        for name, rec in self.buckets.all():
            if name in self.world.stand_ins:
                continue   # listed under publicDatasets (provision/emulator/publicdata.py)
            n, size = counts.get(name, (0, 0))
            out[name] = {"projectId": rec["projectId"], "projectNumber": rec["projectNumber"],
                         "location": rec["location"], "objects": n, "bytes": size,
                         "uniformBucketLevelAccess": rec["iamConfiguration"]["uniformBucketLevelAccess"]["enabled"]}
        return {"storage": {"buckets": out, "uploadsInProgress": self.uploads.in_progress()}}
