"""A plan saved by `provision plan --out`, applied later (`provision apply PLAN.json`): each of its
blueprints is planned again now and refused (planning.saved.PlanMoved) unless the new plan is the saved
one, so that apply changes exactly what was reviewed."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from provision.gcp.target import Target
from provision.planning import saved
from provision.running import fleet, lifecycle


def blueprint_paths(doc: dict[str, Any]) -> list[Path]:
    """The blueprint files a saved plan (planning.saved.load) was made from, in its order."""
    return [Path(e["blueprint"]) for e in doc["plans"]]


def replan(doc: dict[str, Any], items: list[fleet.Item], target: Target) -> list[fleet.Outcome]:
    """Every blueprint of the saved plan `doc`, planned again now: its Outcome holds the fresh plan, or
    the PlanMoved (or changed inputs) that refuses it."""
    by_path = {str(Path(e["blueprint"])): e for e in doc["plans"]}
    opts = saved.options(doc)

    def check(it: fleet.Item) -> Any:
        entry = by_path[str(it.path)]
        saved.check_inputs(entry, target.label, doc["target"])
        fresh = lifecycle.plan(it.bp, target, opts=opts)
        moved = saved.differences(entry["plan"], fresh)
        if moved:
            raise saved.PlanMoved("the live state moved since the plan was saved; nothing was changed:\n  "
                                  + "\n  ".join(moved) + "\nplan again, review, and apply the new plan")
        return fresh

    return fleet.each(items, check)
