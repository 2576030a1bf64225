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
from typing import Any, Callable

from provision.resources.record import Record
from provision.resources.steps import KEEP, Options, Step

PHASES = (1, 2, 3)
Reads = dict[str, Callable[[Any], Any]]


@dataclass
class Live:
    """What the reads found, by key (each kind documents the keys it reads), and the record."""

    read: dict[str, Any] = field(default_factory=dict)
    record: Record = field(default_factory=lambda: Record(""))
    opts: Options = field(default_factory=Options)   # what the user allowed (destroy reads what it removes)

    def get(self, key: str, default: Any = None) -> Any:
        value = self.read.get(key, default)
        return default if value is None else value

    def has(self, key: str) -> bool:
        return key in self.read

    @property
    def project(self) -> Any:
        return self.read.get("project")

    @property
    def project_number(self) -> str | None:
        p = self.project
        return p.number if p is not None else None


@dataclass
class Draft:
    """The plan being built: steps in the order kinds add them, notes, and facts for apply."""

    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    facts: dict = field(default_factory=dict)

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
