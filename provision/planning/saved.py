"""Saved plans: `plan --out plan.json`, then `apply plan.json` applies exactly that plan, or
refuses, saying what moved, when the blueprint, the target or the live state changed since.

The file holds, per blueprint, its path and the SHA-256 of its text, the target, the options
the plan was made with, and the plan's steps as `--json` shows them. Apply plans again from
live state and compares the steps (what each does, field by field); only an identical plan
runs. Steps hold no secret: a saved plan can be reviewed and kept as a CI artefact.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from provision.errors import ProvisionError, UsageError
from provision.resources.steps import Options

FORMAT = "provision-plan/1"


class PlanMoved(ProvisionError):
    """Live state (or the blueprint, or the target) moved since the plan was saved: nothing was changed."""


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def save(out: Path, entries: list[tuple[Path, Any]], target_label: str, opts: Options) -> None:
    """Write the plans (blueprint path, Plan) to `out`."""
    doc = {
        "format": FORMAT,
        "target": target_label,
        "options": {"delete_data": opts.delete_data, "replace": opts.replace, "reimport": sorted(opts.reimport)},
        "plans": [{"blueprint": str(Path(p).resolve()), "sha256": digest(p), "plan": plan.to_json()}
                  for p, plan in entries],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


def is_saved_plan(path: Path) -> bool:
    """A file `apply` takes as a saved plan rather than a blueprint."""
    if path.suffix != ".json" or not path.is_file():
        return False
    try:
        return bool(json.loads(path.read_text()).get("format") == FORMAT)
    except (ValueError, AttributeError, OSError):
        return False


def load(path: Path) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not a saved plan ({exc})") from None
    if doc.get("format") != FORMAT:
        raise UsageError(f"{path}: not a saved plan of format {FORMAT} (write one with `provision plan --out`)")
    return doc


def options(doc: dict[str, Any]) -> Options:
    o = doc.get("options") or {}
    return Options(delete_data=bool(o.get("delete_data")), replace=bool(o.get("replace")),
                   reimport=frozenset(o.get("reimport") or ()))


def check_inputs(entry: dict[str, Any], target_label: str, saved_target: str) -> None:
    """The blueprint file and the target are those the plan was made from."""
    path = Path(entry["blueprint"])
    if saved_target != target_label:
        raise PlanMoved(f"the plan was made for {saved_target}, this run targets {target_label}: plan again")
    if not path.is_file():
        raise PlanMoved(f"{path}: the blueprint the plan was made from is gone: plan again")
    if digest(path) != entry["sha256"]:
        raise PlanMoved(f"{path} changed since the plan was saved: plan again (and review the new plan)")


def differences(saved: dict[str, Any], fresh: Any) -> list[str]:
    """What differs between the saved plan's steps and a fresh plan's, in words ([] when identical)."""
    def key(s: dict[str, Any]) -> tuple[Any, ...]:
        return s["action"], s["changes"], s["fields"], sorted(s["depends_on"])

    old = {s["id"]: s for s in saved["steps"]}
    new = {s["id"]: s for s in fresh.to_json()["steps"]}
    out = []
    for sid in sorted(old.keys() | new.keys()):
        a, b = old.get(sid), new.get(sid)
        if a is None:
            out.append(f"{sid}: now {b['action']} ({'; '.join(b['changes']) or 'no change'}), not in the saved plan")  # type: ignore[index]  # sid is in one of the two
        elif b is None:
            out.append(f"{sid}: in the saved plan ({a['action']}), no longer planned")
        elif key(a) != key(b):
            was = "; ".join(a["changes"]) or "no change"
            now = "; ".join(b["changes"]) or "no change"
            out.append(f"{sid}: saved {a['action']} ({was}), now {b['action']} ({now})")
    return out
