"""`provision demo`: the whole flow offline — synthetic studies, an emulator, apply of the
packaged demo blueprint (bucket upload and import included), the OHIF config, the smoke check.

Everything the demo makes goes into one output folder (`./out` unless told otherwise): a
copy of the blueprint (`demo.yaml`), the studies it uploads (`demo-data/`), the OHIF config
(`google.js`) and, with `--browser`, the screenshots (`smoke/`). The blueprint is package
data (`provision/blueprints/demo.yaml`), read with importlib.resources, so an installed
`provision` needs nothing from a source checkout.

With no emulator given it embeds one for the run; with `--emulator URL` (or
PROVISION_EMULATOR_HOST) it uses that running emulator, so the result stays there for
`provision viewer OUT/demo.yaml` and a later `provision apply OUT/demo.yaml` reports no changes.
"""
from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

import yaml

from provision.blueprint.load import load_blueprint
from provision.demo.studies import write_demo_studies
from provision.errors import ProvisionError
from provision.gcp.target import Target
from provision.running import flow

DEFAULT_OUT = Path("out")
DEMO_MEMBER = "emulator-owner@example.com"   # the emulator's signed-in browser account, a member in demo.yaml


def demo_blueprint_text() -> str:
    """The demo blueprint as shipped in the package (its relative paths are relative to the copy)."""
    return resources.files("provision").joinpath("blueprints", "demo.yaml").read_text(encoding="utf-8")


def write_demo_blueprint(out_dir: Path | str = DEFAULT_OUT) -> Path:
    """Copy the demo blueprint into `out_dir` (created if needed) as demo.yaml; returns its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "demo.yaml"
    path.write_text(demo_blueprint_text(), encoding="utf-8")
    return path


def _shown(path: Path) -> str:
    """A path as the user would type it: relative to the current directory when under it."""
    path = path.absolute()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


@dataclass
class DemoResult:
    out_dir: Path
    blueprint: Path
    emulator: str
    embedded: bool
    studies: list[Any]
    outcome: Any
    elapsed: float

    def render(self) -> str:
        """What was made, and how to look at it."""
        bp_outputs = self.outcome.apply.outputs
        files = sum(s.n_instances for s in self.studies)
        lines = [f"demo finished in {self.elapsed:.1f}s on the {'embedded ' if self.embedded else ''}emulator {self.emulator}",
                 f"  wrote {self.out_dir}: demo.yaml (the blueprint), demo-data/ ({files} DICOM files), google.js",
                 f"  studies written: {len(self.studies)} ("
                 + ", ".join(f"{s.patient_name_ohif}: {s.modality} {s.n_instances} images" for s in self.studies) + ")"]
        for store_id, store in (bp_outputs.get("dicom_stores") or {}).items():
            lines.append(f"  DICOM store {store_id}: {store['dicomweb']}")
        lines.append(f"  OHIF config: {self.outcome.config}")
        smoke = self.outcome.smoke
        if smoke is not None:
            lines += ["  " + line for line in smoke.summary().splitlines()]
        bp, out = _shown(self.blueprint), _shown(self.out_dir)
        again = "provision demo" + ("" if self.out_dir.absolute() == DEFAULT_OUT.absolute() else f" --out {out}")
        url = bp_outputs.get("viewer_url")
        if url:
            lines.append(f"  hosted viewer: {url} (Cloud Run behind IAP, served by the emulator)")
        if self.embedded:
            lines += ["to look at it in a browser, keep an emulator running and point the demo at it:",
                      "  provision emulator --data-dir .emu &",
                      "  export PROVISION_EMULATOR_HOST=http://127.0.0.1:8765",
                      f"  {again} && provision viewer {bp}   # open http://127.0.0.1:3000"]
        else:
            lines += [f"to look at it: provision viewer {bp}   # open http://127.0.0.1:3000"]
        if url and self.embedded:
            lines += ["the hosted viewer opens in your own browser once the emulator is kept running (above): "
                      "the demo then prints its http://...run.app.localhost:8765/ address"]
        elif url:
            lines += hosted_lines(url, self.emulator, bp, bp_outputs.get("viewer_local_url"))
        return "\n".join(lines)


def hosted_lines(url: str, emulator: str, blueprint: str, local: str | None) -> list[str]:
    """How to reach the hosted viewer on a kept emulator: in a browser at its `.localhost` address
    (`local`, emulator on loopback: provision/emulator/door.py), where IAP's sign-in goes through the
    emulated Google accounts page; with a plain HTTP client as IAP's programmatic access; or with
    the smoke's headless Chromium."""
    host = url.split("://", 1)[1].rstrip("/")
    lines = []
    if local:
        lines += ["open the hosted viewer in your browser (Chrome, Firefox; nothing to install):",
                  f"  {local}",
                  f"  sign in on the emulated Google page as {DEMO_MEMBER} (a member in demo.yaml, one click, no "
                  "password); any other address gets IAP's 403"]
    lines += ["the hosted viewer answers on the emulator's port for its run.app host (IAP lets members in):",
              (f"  curl -H 'Host: {host}' -H 'Authorization: Bearer emulator:user:{DEMO_MEMBER}' "
               f"{emulator}/dicomweb/primary/studies"),
              (f"  provision smoke --browser {blueprint}   # signs in through IAP and opens it in headless Chromium; "
               "screenshots in out/smoke")]
    return lines


def demo_data_dir(blueprint: Path) -> Path:
    """Where the demo blueprint uploads from; the data must exist before the blueprint validates."""
    raw = yaml.safe_load(blueprint.read_text())
    folder: str = raw["bucket"]["upload"]["from"]
    return (blueprint.parent / folder).resolve()


@contextlib.contextmanager
def _emulator(url: str | None) -> Iterator[tuple[str, bool]]:
    if url:
        yield url, False
        return
    # Imported here: the emulator's modules load only when the demo starts one (not for --emulator URL).
    from provision.emulator.server import EmulatorServer
    from provision.emulator.world import Options

    server = EmulatorServer(Options(port=0)).start()
    try:
        yield server.url, True
    finally:
        server.stop()


def run_demo(*, out_dir: Path | str = DEFAULT_OUT, emulator_url: str | None = None, browser: bool = False,
             listener: Any = None) -> DemoResult:
    """Write the demo blueprint and studies into `out_dir`, then apply, configure and smoke-check
    the blueprint on an emulator (embedded unless `emulator_url`)."""
    started = time.monotonic()
    out = Path(os.path.abspath(out_dir))
    try:
        blueprint = write_demo_blueprint(out)
        studies = write_demo_studies(demo_data_dir(blueprint))
    except OSError as exc:
        raise ProvisionError(f"the demo cannot write into {out}: {exc.strerror or exc}; choose another folder with --out") from None
    bp = load_blueprint(blueprint)
    with _emulator(emulator_url) as (url, embedded):
        target = Target.from_env(emulator=url)
        outcome = flow.apply_and_check(bp, target, listener, browser=browser or None, smoke_dir=out / "smoke")
    if not outcome.ok:
        raise ProvisionError(f"the demo failed: {outcome.error}")
    return DemoResult(out, blueprint, url, embedded, studies, outcome, time.monotonic() - started)
