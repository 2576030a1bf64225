"""Commands over one blueprint or a fleet of them: which blueprints (files, directories, a CI
shard), loaded all at once (every problem of every file reported together, nothing called
before all are valid), then one library call per blueprint, each outcome kept apart so one
team's failure never hides another's result.
"""
from __future__ import annotations

import hashlib
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from provision.blueprint.load import load_blueprint
from provision.errors import BlueprintError, ProvisionError, UsageError
from provision.redact import redact
from provision.words import plural

if TYPE_CHECKING:  # for annotations only: no import at run time
    from provision.blueprint.models import Blueprint

SUFFIXES = (".yaml", ".yml")
# Blueprints applied at once by default: enough that a fleet waits on Google's quotas (which the
# governor in gcp/quota.py paces), not on a queue of its own; each has a few threads.
AUTO_PARALLEL = 32


@dataclass
class Item:
    """One blueprint of the run: where it came from and what it says."""

    path: Path
    bp: Blueprint

    @property
    def project(self) -> str:
        return self.bp.project.id


@dataclass
class Outcome:
    """What one blueprint's call gave: a value, or the message of its expected failure."""

    item: Item
    value: Any = None
    error: str | None = None
    code: int = 1   # the exit code its failure stands for (2: the blueprint was refused at plan)

    @property
    def ok(self) -> bool:
        return self.error is None


def expand(paths: list[Path]) -> list[Path]:
    """Files as given; a directory stands for every *.yaml / *.yml under it, in path order."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix in SUFFIXES and f.is_file()
                           and not any(part.startswith(".") for part in f.relative_to(p).parts))
            if not found:
                raise UsageError(f"{p}: no blueprint (*.yaml, *.yml) in this directory")
            out += found
        else:
            out.append(p)
    return list(dict.fromkeys(out))


def shard(paths: list[Path], spec: str | None) -> list[Path]:
    """The blueprints of CI job I of N (`spec` "I/N", 1-based): a stable hash of each file's name
    picks its job, so N jobs cover the fleet exactly once, whatever order they list it in."""
    if not spec:
        return paths
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", spec)
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise UsageError(f"--shard {spec!r}: use I/N with 1 <= I <= N, e.g. --shard 2/4")
    i, n = int(m.group(1)), int(m.group(2))
    return [p for p in paths if int(hashlib.sha256(p.as_posix().encode()).hexdigest(), 16) % n == i - 1]


def load(paths: list[Path], shard_spec: str | None = None,
         on_shard: Callable[[str], None] | None = None) -> list[Item]:
    """Load every blueprint; all problems of all files in one BlueprintError. With a shard,
    `on_shard` hears how many blueprints it holds ("shard 1/2: 0 of 3 blueprints"): an empty
    shard does nothing, and says so."""
    every = expand(paths)
    chosen = shard(every, shard_spec)
    if shard_spec and on_shard is not None:
        on_shard(f"shard {shard_spec.strip()}: {len(chosen)} of {plural(len(every), 'blueprint')}"
                 + (" (nothing to do)" if not chosen else ""))
    items, problems = [], []
    for path in chosen:
        try:
            items.append(Item(path, load_blueprint(path)))
        except BlueprintError as exc:
            problems += exc.problems
    if problems:
        raise BlueprintError(problems)
    seen: dict[str, Path] = {}
    for it in items:
        if it.project in seen:
            raise UsageError(f"{seen[it.project]} and {it.path} both name project {it.project}: one blueprint per "
                             "project (they would share its ownership record and remove each other's resources)")
        seen[it.project] = it.path
    _refuse_shared_config(items)
    return items


def _refuse_shared_config(items: list[Item]) -> None:
    """Two blueprints writing one OHIF config: the last one applied would silently overwrite the other's."""
    from provision.blueprint.yamlpos import read_yaml

    writers: dict[Path, Path] = {}
    problems = []
    for it in items:
        out = it.bp.viewer.config_out
        if out not in writers:
            writers[out] = it.path
            continue
        line, col = read_yaml(it.path).value_pos(("viewer", "config_out"))
        problems.append(f"{it.path}:{line}:{col}: viewer.config_out: {out} is taken: {writers[out]} writes its OHIF "
                        "config there too, and the last apply would overwrite the other's; give each blueprint its "
                        f"own file (e.g. out/{it.project}.js, the default when config_out is left out)")
    if problems:
        raise BlueprintError(problems)


def summary_table(outcomes: list[Outcome], cell: Callable[[Outcome], str]) -> str:
    """One line per blueprint: project, result, and what happened (the command's `cell`)."""
    def failure(o: Outcome) -> str:    # the file's name, not its full path: the reason must fit the row
        first = (o.error or "").splitlines()[0] if o.error else ""
        return first.replace(f"{o.item.path}:", f"{Path(o.item.path).name}:", 1)[:100]

    rows = [(o.item.project, "ok" if o.ok else "FAILED", cell(o) if o.ok else failure(o)) for o in outcomes]
    w = max(len(r[0]) for r in rows)
    failed = sum(not o.ok for o in outcomes)
    head = f"{len(outcomes)} blueprints: {len(outcomes) - failed} ok" + (f", {failed} failed" if failed else "")
    return "\n".join([head] + [f"  {p:<{w}}  {r:<6}  {c}".rstrip() for p, r, c in rows])


def each(items: list[Item], fn: Callable[[Item], Any], parallel: int = 4) -> list[Outcome]:
    """`fn` for every blueprint, `parallel` at a time; an expected failure stays in its Outcome."""

    def one(it: Item) -> Outcome:
        try:
            return Outcome(it, fn(it))
        except UsageError:
            raise   # the command line is wrong for every blueprint: exit 2
        except ProvisionError as exc:
            return Outcome(it, getattr(exc, "result", None), redact(str(exc)), exc.exit_code)

    if len(items) <= 1:
        return [one(it) for it in items]
    with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="blueprint") as pool:
        return list(pool.map(one, items))
