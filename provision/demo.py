"""`provision demo`: the whole flow offline — synthetic studies, an emulator, apply of
`blueprints/demo.yaml` (bucket upload and import included), the OHIF config, the smoke check.

With no emulator given it embeds one for the run; with `--emulator URL` (or
PROVISION_EMULATOR_HOST) it uses that running emulator, so the result stays there for
`provision viewer` and a later `provision apply blueprints/demo.yaml` reports no changes.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

DEMO_BLUEPRINT = Path(__file__).resolve().parent.parent / "blueprints" / "demo.yaml"


@dataclass
class DemoResult:
    blueprint: Path
    emulator: str
    embedded: bool
    studies: list[Any]
    outcome: Any
    elapsed: float

    def render(self) -> str:
        """What was made, and how to look at it."""
        bp_outputs = self.outcome.apply.outputs
        lines = [f"demo finished in {self.elapsed:.1f}s on the {'embedded ' if self.embedded else ''}emulator {self.emulator}",
                 f"  studies written: {len(self.studies)} ("
                 + ", ".join(f"{s.patient_name_ohif}: {s.modality} {s.n_instances} images" for s in self.studies) + ")"]
        for store_id, store in (bp_outputs.get("dicom_stores") or {}).items():
            lines.append(f"  DICOM store {store_id}: {store['dicomweb']}")
        lines.append(f"  OHIF config: {self.outcome.config}")
        smoke = self.outcome.smoke
        if smoke is not None:
            lines += ["  " + line for line in smoke.summary().splitlines()]
        if self.embedded:
            lines += ["to look at it in a browser, keep an emulator running and point the demo at it:",
                      "  .venv/bin/provision emulator --data-dir .emu &",
                      "  export PROVISION_EMULATOR_HOST=http://127.0.0.1:8765",
                      "  .venv/bin/provision demo && .venv/bin/provision viewer blueprints/demo.yaml   # open http://127.0.0.1:3000"]
        else:
            lines += ["to look at it: .venv/bin/provision viewer blueprints/demo.yaml   # open http://127.0.0.1:3000"]
        return "\n".join(lines)


def demo_data_dir(blueprint: Path = DEMO_BLUEPRINT) -> Path:
    """Where the demo blueprint uploads from; the data must exist before the blueprint validates."""
    import yaml

    raw = yaml.safe_load(blueprint.read_text())
    return (blueprint.parent / raw["bucket"]["upload"]["from"]).resolve()


@contextlib.contextmanager
def _emulator(url: str | None) -> Iterator[tuple[str, bool]]:
    if url:
        yield url, False
        return
    from provision.emulator.server import EmulatorServer
    from provision.emulator.world import Options

    server = EmulatorServer(Options(port=0)).start()
    try:
        yield server.url, True
    finally:
        server.stop()


def run_demo(*, emulator_url: str | None = None, browser: bool = False, listener: Any = None,
             blueprint: Path = DEMO_BLUEPRINT) -> DemoResult:
    """Write the demo studies, then apply, configure and smoke-check the demo blueprint on an emulator."""
    from provision import pipeline
    from provision.blueprint import load_blueprint
    from provision.demo_data import write_demo_studies
    from provision.errors import ProvisionError
    from provision.gcp.target import Target

    started = time.monotonic()
    studies = write_demo_studies(demo_data_dir(blueprint))
    bp = load_blueprint(blueprint)
    with _emulator(emulator_url) as (url, embedded):
        target = Target.from_env(emulator=url)
        outcome = pipeline.apply_and_check(bp, target, listener, browser=browser or None)
    if not outcome.ok:
        raise ProvisionError(f"the demo failed: {outcome.error}")
    return DemoResult(blueprint, url, embedded, studies, outcome, time.monotonic() - started)
