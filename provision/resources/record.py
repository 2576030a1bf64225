"""The ownership record: what provision created and granted in one project, kept on Google Cloud.

Where: the object `record.json` in the bucket `gs://<project-id>-provision-state`, created in
the project itself on the first write. Why there: CI needs no local state; anyone who may read
the project can read it (`gcloud storage cat gs://P-provision-state/record.json`); and Cloud
Storage gives compare-and-swap writes (`ifGenerationMatch`, what Terraform's GCS backend relies
on), so two applies at once never lose each other's entries. A bucket of the blueprint would not
do: it may be `create: false`, shared, or matched by an import pattern. Project labels (the
earlier approach, `provision-iam-<hash>`) hold at most 64 opaque hashes and cannot name a member.

Discipline that keeps it true after a kill at any point: an entry is written *before* the
resource is created or the role granted, and dropped only *after* the deletion or revocation.
So the record may name something that does not exist (the next plan forgets it), never the
reverse. The one exception is the project itself, recorded right after it exists (the record
lives inside it). The bucket must belong to the project (its project number is checked), else
the record is refused: it decides what provision deletes.
"""
from __future__ import annotations

import copy
import json
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from provision.errors import ProvisionError
from provision.gcp.context import Ctx
from provision.gcp.errors import is_already_exists, is_status
from provision.resources.lockdown import lock_down, locked_down

FORMAT = "provision-record/1"
OBJECT = "record.json"
CAS_ATTEMPTS = 20
NOTE = ("What provision created and granted in this project. provision deletes and revokes what this record "
        "names once the blueprint no longer names it, and never touches anything else.")

Pair = tuple[str, str]  # (role, member), as in resources/iam.py


def bucket_for(project_id: str) -> str:
    """The record's bucket for a project (bucket names are global; project IDs are too)."""
    return f"{project_id}-provision-state"


def location_for(dataset_location: str) -> str:
    """Where the record lives: the dataset's region, or its multi-region (Healthcare `us`/`eu` are
    Cloud Storage's `US`/`EU`). The record names members (emails): it stays where the data is."""
    return dataset_location.upper()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class Record:
    """Resources provision created ((kind, name) -> when) and grants it added ((resource, role, member) -> when)."""

    project: str
    resources: dict[tuple[str, str], str] = field(default_factory=dict)
    grants: dict[tuple[str, str, str], str] = field(default_factory=dict)
    generation: int = 0   # of the object read; 0: there is none yet

    def owns(self, kind: str, name: str) -> bool:
        return (kind, name) in self.resources

    def names(self, kind: str) -> list[str]:
        return sorted(n for k, n in self.resources if k == kind)

    def pairs_on(self, resource: str) -> set[Pair]:
        return {(role, member) for res, role, member in self.grants if res == resource}

    def granted_resources(self) -> set[str]:
        return {res for res, _, _ in self.grants}

    @property
    def empty(self) -> bool:
        return not self.resources and not self.grants

    # -------------------------------------------------------------- changes (in memory)
    def add_resource(self, kind: str, name: str) -> None:
        self.resources.setdefault((kind, name), _now())

    def drop_resource(self, kind: str, name: str) -> None:
        self.resources.pop((kind, name), None)

    def add_grants(self, resource: str, pairs: Iterable[Pair]) -> None:
        for role, member in pairs:
            self.grants.setdefault((resource, role, member), _now())

    def drop_grants(self, resource: str, pairs: Iterable[Pair] | None = None) -> None:
        """Drop these grants on `resource` (all of them when `pairs` is None)."""
        drop = None if pairs is None else set(pairs)
        for key in [k for k in self.grants if k[0] == resource and (drop is None or (k[1], k[2]) in drop)]:
            del self.grants[key]

    # -------------------------------------------------------------- wire form
    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "project": self.project,
            "note": NOTE,
            "resources": [{"kind": k, "name": n, "created": t} for (k, n), t in sorted(self.resources.items())],
            "grants": [{"resource": r, "role": role, "member": m, "granted": t}
                       for (r, role, m), t in sorted(self.grants.items())],
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any], project: str, generation: int) -> "Record":
        if doc.get("format") != FORMAT:
            raise ProvisionError(f"gs://{bucket_for(project)}/{OBJECT} is not a provision record of format {FORMAT} "
                                 f"(it says {doc.get('format')!r}); a newer provision may have written it")
        rec = cls(project, generation=generation)
        for r in doc.get("resources") or []:
            rec.resources[(r["kind"], r["name"])] = r.get("created", "")
        for g in doc.get("grants") or []:
            rec.grants[(g["resource"], g["role"], g["member"])] = g.get("granted", "")
        return rec


class RecordStore:
    """One project's record, shared by every step of a run: read once, changed under a lock, each
    change written with `ifGenerationMatch` and, on a conflict (412: someone else wrote it), re-read
    and re-applied."""

    def __init__(self, project_id: str, location: str = "US"):
        self.project_id = project_id
        self.bucket = bucket_for(project_id)
        self.location = location
        self.project_number: str | None = None
        self.current: Record | None = None
        self.checked = False   # the bucket was seen absent or in this project (a write before that reads first)
        # the bucket as read (None: absent or not read yet): its location and whether it is locked down
        self.found_location: str | None = None
        self.found_locked: bool | None = None
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        return f"gs://{self.bucket}/{OBJECT}"

    def read(self, ctx: Ctx, project_number: str | None) -> Record:
        """The record as stored now (an empty one when there is none). Refuses a bucket of another project."""
        self.project_number = project_number or self.project_number
        with self._lock:
            self.current = self._read(ctx)
            return copy.deepcopy(self.current)

    def _read(self, ctx: Ctx) -> Record:
        client = ctx.target.storage()

        def get() -> Record:
            try:
                bucket = client.get_bucket(self.bucket, retry=None)
            except Exception as exc:  # noqa: BLE001
                if is_status(exc, 404):
                    self.checked = True
                    return Record(self.project_id)
                if is_status(exc, 403):
                    raise ProvisionError(f"the ownership record's bucket gs://{self.bucket} exists but you cannot "
                                         "read it (it may belong to another project); provision cannot tell what "
                                         "it made here. Ask for storage.objects.get on it, or delete it if it is "
                                         "not this project's") from None
                raise
            number = str(bucket.project_number or "")
            if not self.project_number or not number or number != str(self.project_number):
                raise ProvisionError(f"the ownership record's bucket gs://{self.bucket} belongs to another project "
                                     f"(number {number or '?'}, not {self.project_number or 'this one'}): provision will "
                                     "not trust a record it did not write, and keeps nothing there. Ask the owner of "
                                     "that bucket to delete it (bucket names are global), then apply again")
            self.checked = True
            self.found_location, self.found_locked = str(bucket.location or ""), locked_down(bucket)
            blob = bucket.blob(OBJECT)
            try:
                data = blob.download_as_bytes(retry=None)
            except Exception as exc:  # noqa: BLE001
                if is_status(exc, 404):
                    return Record(self.project_id)
                raise
            try:
                doc = json.loads(data)
            except ValueError:
                raise ProvisionError(f"{self.where} is not valid JSON; restore it from its previous generation "
                                     f"(`gcloud storage ls -a {self.where}`)") from None
            return Record.from_json(doc, self.project_id, int(blob.generation or 0))

        return ctx.call(get)

    def change(self, ctx: Ctx, fn: Callable[[Record], None]) -> None:
        """Apply `fn` to the record and write it, compare-and-swap, retrying on a foreign write."""
        with self._lock:
            self._take_pending_lock(ctx)
            for _ in range(CAS_ATTEMPTS):
                if self.current is None or not self.checked:
                    self.current = self._read(ctx)
                new = copy.deepcopy(self.current)
                fn(new)
                if new.resources == self.current.resources and new.grants == self.current.grants:
                    return
                written = self._write(ctx, new)
                if written is not None:
                    new.generation = written
                    self.current = new
                    return
                self.current = None   # someone else wrote it: read again, apply again
        raise ProvisionError(f"{self.where} kept changing under provision ({CAS_ATTEMPTS} conflicting writes); "
                             "is another apply running on this project? Run again when it is done")

    def _take_pending_lock(self, ctx: Ctx) -> None:
        """A run on a new project could not take its lock (provision/resources/lock.py) before the
        record bucket existed: make (or find) the bucket now and take it before the first write."""
        lock = ctx.facts.lock
        if lock is None or not lock.pending:
            return

        def ensure_bucket() -> None:
            try:
                ctx.target.storage(self.project_id).get_bucket(self.bucket, retry=None)
            except Exception as exc:  # noqa: BLE001
                if not is_status(exc, 404):
                    raise
                self._create_bucket(ctx)

        ctx.call(ensure_bucket)
        self._read(ctx)   # only a bucket of this project holds our lock (raises otherwise)
        lock.take_pending(ctx)

    def _write(self, ctx: Ctx, rec: Record) -> int | None:
        """Write `rec` if the stored generation is still `rec.generation`; None on a conflict."""
        client = ctx.target.storage(self.project_id)
        body = json.dumps(rec.to_json(), indent=2, sort_keys=True) + "\n"

        def put() -> int | None:
            blob = client.bucket(self.bucket).blob(OBJECT)
            try:
                blob.upload_from_string(body, content_type="application/json", if_generation_match=rec.generation,
                                        retry=None)
            except Exception as exc:  # noqa: BLE001
                if is_status(exc, 412):
                    return None
                if is_status(exc, 404):   # first write: the bucket does not exist yet
                    self._create_bucket(ctx)
                    blob.upload_from_string(body, content_type="application/json",
                                            if_generation_match=rec.generation, retry=None)
                else:
                    raise
            return int(blob.generation or 0)

        return ctx.call(put)

    def _create_bucket(self, ctx: Ctx) -> None:
        client = ctx.target.storage(self.project_id)
        bucket = client.bucket(self.bucket)
        lock_down(bucket)
        try:
            client.create_bucket(bucket, project=self.project_id, location=self.location, retry=None)
        except Exception as exc:  # noqa: BLE001
            if not is_already_exists(exc):
                raise
            self._read(ctx)   # exists: only if it is ours (raises otherwise)

    def lock(self, ctx: Ctx) -> None:
        """Turn on uniform access and public access prevention on the record's bucket (one made by a
        provision from before both were its defaults)."""
        def patch() -> None:
            bucket = ctx.target.storage(self.project_id).get_bucket(self.bucket, retry=None)
            lock_down(bucket)
            bucket.patch(retry=None)

        ctx.call(patch)
        self.found_locked = True

    def delete(self, ctx: Ctx) -> None:
        """Remove the record and its bucket (destroy, once the record names nothing)."""
        client = ctx.target.storage(self.project_id)

        def gone_ok(fn: Callable[[], Any]) -> None:
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - already gone is what we want
                if not is_status(exc, 404):
                    raise

        def attempt() -> None:
            blobs: list[Any] = []
            gone_ok(lambda: blobs.extend(client.list_blobs(self.bucket, versions=True, retry=None)))
            for blob in blobs:
                gone_ok(lambda b=blob: b.delete(retry=None))  # type: ignore[misc]  # a lambda with a bound default (mypy cannot infer it)
            gone_ok(lambda: client.bucket(self.bucket).delete(retry=None))

        with self._lock:
            ctx.call(attempt)
            self.current = Record(self.project_id)

    # -------------------------------------------------------------- the changes steps make
    def claim(self, ctx: Ctx, claims: Iterable[tuple[Any, ...]]) -> None:
        """Record, in one write, everything about to be created or granted (see Step.claims)."""
        claims = list(claims)

        def fn(r: Record) -> None:
            for c in claims:
                if c[0] == "resource":
                    r.add_resource(c[1], c[2])
                else:
                    r.add_grants(c[1], [(c[2], c[3])])

        if claims:
            self.change(ctx, fn)

    def add_resource(self, ctx: Ctx, kind: str, name: str) -> None:
        self.change(ctx, lambda r: r.add_resource(kind, name))

    def drop_resource(self, ctx: Ctx, kind: str, name: str, *, with_grants: bool = True) -> None:
        def fn(r: Record) -> None:
            r.drop_resource(kind, name)
            if with_grants:
                r.drop_grants(name)
        self.change(ctx, fn)

    def add_grants(self, ctx: Ctx, resource: str, pairs: Iterable[Pair]) -> None:
        pairs = list(pairs)
        self.change(ctx, lambda r: r.add_grants(resource, pairs))

    def drop_grants(self, ctx: Ctx, resource: str, pairs: Iterable[Pair]) -> None:
        pairs = list(pairs)
        self.change(ctx, lambda r: r.drop_grants(resource, pairs))
