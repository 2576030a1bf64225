"""The protocol every resource kind follows, and what a plan is built from.

A kind is a module in provision/resources/ with:

    KIND = "dicom-store"
    def reads(bp, live, phase) -> {key: fn(ctx)}   what to read of live state in this phase
    def diff(bp, live, opts, draft) -> None         add Steps (and notes) to the draft
    def finish(bp, live, opts, draft) -> None       optional, after every kind's diff

Phases of reading (each phase's reads run in parallel; later phases see earlier results):
  1. what hangs off nothing: the project, its billing link, the bucket, the local upload tree;
  2. with the project known: the ownership record and everything the blueprint names;
  3. what the record names that the blueprint no longer does (to remove it), and counts that
     depend on phase 2 (studies in stores that exist).
A Step's `run(ctx)` makes the change, records it (provision/resources/record.py) and verifies it by
reading back. Kinds never call each other's diff; they share what was read through `live`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, cast

from provision.gcp.context import Ctx, Facts
from provision.resources.record import Record
from provision.resources.states import BucketState, DatasetState, LocalFile, ProjectState, StoreState
from provision.resources.steps import KEEP, Options, Step

PHASES = (1, 2, 3)
Reads = dict[str, Callable[[Ctx], Any]]


class Key:
    """Names of what one kind reads and other kinds use: the reading kind's `reads` names them with
    these, the others read them through Live's typed accessors, so a misspelt name fails at import
    or type-check time instead of reading as "absent". Keys one kind keeps to itself stay there."""

    PROJECT = "project"                # ProjectState | None (kind project)
    RECORD = "record"                  # the RecordStore (kind record)
    BILLING = "billing"                # the project's billing account, "" when none (kind billing)
    BUCKET = "bucket"                  # BucketState (kind bucket)
    LOCAL = "local"                    # the local upload tree, LocalFiles (kind upload)
    REMOTE = "remote"                  # objects under the upload prefix (kind upload)
    PROJECT_POLICY = "project_policy"  # the project's IAM policy (kind project-iam)
    BUCKET_POLICY = "bucket_policy"    # the blueprint's bucket's IAM policy (kind bucket-iam)
    DATASET = "dataset"                # DatasetState | None (kind dataset)
    VIEWER_SERVICE = "viewer_service"  # the hosted viewer's Cloud Run service as read, None (kind viewer-service)
    VIEWER_ARCHIVE = "viewer_archive"  # the hosted viewer's source archive to run (kind viewer-service)

    @staticmethod
    def store(name: str) -> str:
        """StoreState | None of a store the blueprint names (kind dicom-store)."""
        return f"store:{name}"

    @staticmethod
    def old_store(name: str) -> str:
        """(StoreState | None, studies) of a recorded store the blueprint no longer names (kind dicom-store)."""
        return f"old_store:{name}"

    @staticmethod
    def store_policy(name: str) -> str:
        """A store's IAM policy, None when the store is gone (kind dicom-store-iam)."""
        return f"store_policy:{name}"

    @staticmethod
    def old_dataset(name: str) -> str:
        """The stores of a recorded dataset the blueprint no longer names, None when gone (kind dataset)."""
        return f"old_dataset:{name}"


@dataclass
class Live:
    """What the reads found, by key (each kind documents the keys it reads), and the record.
    What kinds share is read through the typed accessors below (keys in `Key`)."""

    read: dict[str, Any] = field(default_factory=dict)
    record: Record = field(default_factory=lambda: Record(""))
    opts: Options = field(default_factory=Options)   # what the user allowed (destroy reads what it removes)
    bucket_replace: bool = False   # the bucket kind plans to delete and create the bucket again (-/+ replace)

    def get(self, key: str, default: Any = None) -> Any:
        value = self.read.get(key, default)
        return default if value is None else value

    def has(self, key: str) -> bool:
        return key in self.read

    @property
    def project(self) -> ProjectState | None:
        return cast("ProjectState | None", self.read.get(Key.PROJECT))

    @property
    def project_number(self) -> str | None:
        p = self.project
        return p.number if p is not None else None

    @property
    def billing(self) -> str | None:
        return cast("str | None", self.get(Key.BILLING))

    @property
    def bucket(self) -> BucketState | None:
        return cast("BucketState | None", self.get(Key.BUCKET))

    @property
    def own_bucket(self) -> BucketState:
        """The blueprint's bucket, for a kind that knows the blueprint names one (then it is read in phase 1)."""
        state = self.bucket
        if state is None:
            raise RuntimeError("the blueprint's bucket was not read (phase 1 reads it whenever the blueprint names one)")
        return state

    @property
    def local(self) -> list[LocalFile]:
        return cast("list[LocalFile]", self.get(Key.LOCAL, []))

    @property
    def remote(self) -> dict[str, dict[str, Any]]:
        return cast("dict[str, dict[str, Any]]", self.get(Key.REMOTE, {}))

    @property
    def project_policy(self) -> dict[str, Any] | None:
        return cast("dict[str, Any] | None", self.get(Key.PROJECT_POLICY))

    @property
    def bucket_policy(self) -> dict[str, Any] | None:
        return cast("dict[str, Any] | None", self.get(Key.BUCKET_POLICY))

    @property
    def dataset(self) -> DatasetState | None:
        return cast("DatasetState | None", self.get(Key.DATASET))

    def store(self, name: str) -> StoreState | None:
        return cast("StoreState | None", self.get(Key.store(name)))

    @property
    def viewer_service(self) -> dict[str, Any] | None:
        return cast("dict[str, Any] | None", self.get(Key.VIEWER_SERVICE))

    def old_store(self, name: str) -> tuple[StoreState | None, int]:
        return cast("tuple[StoreState | None, int]", self.get(Key.old_store(name), (None, 0)))

    def store_policy(self, name: str) -> dict[str, Any] | None:
        return cast("dict[str, Any] | None", self.get(Key.store_policy(name)))

    def old_dataset(self, name: str) -> list[str] | None:
        return cast("list[str] | None", self.get(Key.old_dataset(name)))


@dataclass
class Draft:
    """The plan being built: steps in the order kinds add them, notes, and facts for apply."""

    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    facts: Facts = field(default_factory=Facts)

    def add(self, step: Step) -> Step:
        self.steps.append(step)
        return step

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def keep(self, step_id: str, kind: str, resource: str, why: str, deps: list[str] | None = None) -> Step:
        """A resource provision leaves in place although the blueprint no longer names it (or destroy
        does not delete it), with the reason and what would delete it."""
        return self.add(Step(step_id, kind, resource, KEEP, [why], deps or []))

    def ids(self) -> set[str]:
        return {s.id for s in self.steps}
