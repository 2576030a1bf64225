"""`apply` as a user sees it: the cloud resources, then the OHIF config, then the smoke check.

The provisioner makes live state match the blueprint; this module adds the two steps that
follow it (DESIGN.md §4: ... → import → config → smoke) and is shared by `provision apply`
and `provision demo`.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision.errors import ProvisionError
from provision.gcp.target import Target


class SmokeFailed(ProvisionError):
    """The environment was built but the viewer would not work: exit 1 with what failed."""

    def __init__(self, report: Any):
        self.report = report
        super().__init__("smoke check failed:\n" + report.summary())


@dataclass
class Outcome:
    """What one blueprint's apply produced: the provisioner's result, the config path, the smoke report."""

    apply: Any
    config: Path | None = None
    smoke: Any = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "apply": self.apply.to_json(),
            "config": str(self.config) if self.config else None,
            "smoke": self.smoke.to_dict() if self.smoke is not None else None,
            "notes": self.notes,
        }


def access_token(target: Target) -> str | None:
    """The bearer token the browser hands to OHIF with `?token=` (never printed)."""
    if target.is_emulator:
        return target.token
    creds = target.credentials()
    if not creds.valid:
        from google.auth.transport.requests import Request

        creds.refresh(Request())
    return creds.token


def write_config(bp: Any, target: Target, out: Path | None = None, fmt: str = "js") -> Path:
    """Write OHIF's config for `bp` (to `viewer.config_out` unless `out`), pointing at the target."""
    from provision.ohif import config as ohif_config

    return ohif_config.write_config(bp, out or bp.viewer.config_out, emulator_url=target.emulator, fmt=fmt)


def smoke(bp: Any, target: Target, *, browser: bool | None = None, out_dir: Path | str = "out/smoke") -> Any:
    """The DICOMweb smoke on every store, and the browser smoke when asked (default: `smoke.browser`)."""
    from provision.smoke import run_blueprint_smoke

    browser = bp.smoke.browser if browser is None else browser
    return run_blueprint_smoke(bp, session=target.session(), emulator_url=target.emulator, browser=browser,
                               token=access_token(target) if browser else None, out_dir=out_dir)


def apply_and_check(bp: Any, target: Target, listener: Any = None, *, plan_: Any = None,
                    run_smoke: bool = True, browser: bool | None = None) -> Outcome:
    """Apply, write the OHIF config, then smoke-check. Raises ApplyFailed / SmokeFailed (exit 1)."""
    from provision import provisioner
    from provision.ohif.config import config_warnings

    result = provisioner.apply(bp, target, listener, plan_=plan_)
    outcome = Outcome(result, write_config(bp, target))
    outcome.notes += config_warnings(bp, emulator_url=target.emulator)
    if run_smoke:
        outcome.smoke = smoke(bp, target, browser=browser)
        if not outcome.smoke.ok:
            raise SmokeFailed(outcome.smoke)
    return outcome


def apply_many(bps: list[Any], target: Target, listener: Any = None, *, parallel: int = 4,
               run_smoke: bool = True) -> list[Outcome | ProvisionError]:
    """Onboard several teams at once: one Outcome (or the error it failed with) per blueprint, in order."""

    def one(bp: Any) -> Outcome | ProvisionError:
        try:
            return apply_and_check(bp, target, listener, run_smoke=run_smoke)
        except ProvisionError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        return list(pool.map(one, bps))
