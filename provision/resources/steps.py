"""A plan's unit of work (`Step`), its actions, and the options that allow destructive ones.

Every resource kind's `diff` returns Steps; the engine runs them in dependency order.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # for annotations only: no import at run time
    from provision.gcp.context import Ctx

CREATE, UPDATE, NOOP, DELETE, KEEP, REPLACE = "create", "update", "no-op", "delete", "keep", "replace"
SIGN = {CREATE: "+", UPDATE: "~", DELETE: "-", NOOP: "=", KEEP: "=", REPLACE: "-/+"}


@dataclass
class Options:
    """What the user allowed beyond the default (CLI flags, library keywords).

    delete_data: delete data-bearing resources provision made (stores with studies, buckets with
    objects, datasets with stores). replace: carry out `-/+ replace` steps. reimport: store IDs
    whose import runs again. destroy: the desired state is "nothing" (what `destroy` plans).
    delete_project: with destroy, the project too. wait_lock_s: how long apply waits for another
    run's lock on the project before it stops (0: it stops at once, naming the holder)."""

    delete_data: bool = False
    replace: bool = False
    reimport: frozenset[str] = frozenset()
    destroy: bool = False
    delete_project: bool = False
    wait_lock_s: float = 0.0


@dataclass
class Step:
    id: str
    kind: str
    resource: str
    action: str
    changes: list[str] = field(default_factory=list)
    deps: list[str] = field(default_factory=list)
    run: Callable[[Ctx], Any] | None = field(default=None, repr=False, compare=False)
    drift: list[str] = field(default_factory=list)   # what differs that apply will not change (status reports it)
    # what the step will create or grant, for the ownership record: ("resource", kind, name) or
    # ("grant", resource, role, member). Apply records every step's claims in one write before
    # the first change (each step also records its own before acting: a no-op by then).
    claims: list[tuple[Any, ...]] = field(default_factory=list, repr=False)
    # the same change for machines: {"field", "before", "after"} per changed field
    fields: list[dict[str, Any]] = field(default_factory=list)
    # > 0: the step only drops this many entries from the ownership record (what they name is gone)
    forgets: int = 0

    @property
    def changing(self) -> bool:
        return self.action not in (NOOP, KEEP)

    @property
    def bookkeeping(self) -> bool:
        """Only the ownership record changes (its own write, or forgetting what is gone): how a
        change is made, not a change; plan's summary does not count it."""
        return self.kind == "record" or self.forgets > 0

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "resource": self.resource, "action": self.action,
                "changes": list(self.changes), "fields": [dict(f) for f in self.fields], "drift": list(self.drift),
                "depends_on": list(self.deps)}


def field_change(name: str, before: object, after: object) -> dict[str, Any]:
    """One changed field of a step, for `--json` (None: absent)."""
    return {"field": name, "before": before, "after": after}
