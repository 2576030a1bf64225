"""Print every runtime dependency of pyproject.toml pinned to its declared lower bound (`name==min`).

`make minimums` installs exactly these into a fresh environment and runs the demo there, so a lower
bound that is not true (too old to resolve, or missing an API provision uses) fails CI.
"""
from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path


def pins(pyproject: Path, extras: tuple[str, ...] = ("browser",)) -> list[str]:
    """`name==min` for each dependency (and each dependency of `extras`) that declares `>=min`."""
    project = tomllib.loads(pyproject.read_text())["project"]
    deps = list(project["dependencies"])
    for extra in extras:
        deps += project.get("optional-dependencies", {}).get(extra, [])
    out = []
    for dep in deps:
        m = re.match(r"\s*([A-Za-z0-9_.\[\]-]+)\s*>=\s*([^,;\s]+)", dep)
        if not m:
            raise SystemExit(f"{pyproject}: dependency {dep!r} declares no lower bound (name>=version)")
        out.append(f"{m.group(1)}=={m.group(2)}")
    return out


if __name__ == "__main__":
    root = Path(__file__).resolve().parent.parent
    print("\n".join(pins(root / "pyproject.toml")))
    sys.exit(0)
