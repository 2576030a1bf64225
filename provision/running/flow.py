"""`apply` as a user sees it: the cloud resources, then the OHIF config, then the smoke check.

The provisioner makes live state match the blueprint; this module adds the two steps that
follow it (... → import → config → smoke) and is shared by `provision apply`
and `provision demo`. A blueprint's failure is kept in its Outcome (with whatever was built
and checked before it failed), so one document can describe every blueprint of a run.
Google's libraries are imported where they are used (provision/gcp/__init__.py says why).
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provision.errors import ProvisionError, UsageError
from provision.gcp.context import Ctx
from provision.gcp.errors import parse as parse_error
from provision.gcp.retry import Cancelled
from provision.gcp.target import Target
from provision.ohif import config as ohif_config
from provision.ohif.config import config_warnings
from provision.resources.hosting_calls import get_service
from provision.resources.hosting_names import region, service_id, service_name
from provision.resources.viewer_source import pin
from provision.running import fleet, lifecycle

if TYPE_CHECKING:  # for annotations only: no import at run time
    from provision.blueprint.models import Blueprint


@dataclass
class Outcome:
    """What one blueprint's apply produced: the provisioner's result, the config path, the smoke
    report, and the error that stopped it (None when everything passed)."""

    project: str
    apply: Any = None
    config: Path | None = None
    smoke: Any = None
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    oauth_checklist: str | None = None   # the hosted google-sign-in viewer's console steps, at its exact origin

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "ok": self.ok,
            "error": self.error,
            "apply": self.apply.to_json() if self.apply is not None else None,
            "config": str(self.config) if self.config else None,
            "smoke": self.smoke.to_dict() if self.smoke is not None else None,
            "notes": self.notes,
            **({"oauth_checklist": self.oauth_checklist} if self.oauth_checklist else {}),
        }

    def render(self) -> str:
        """The human summary (the error, when there is one, is reported apart)."""
        lines = [self.apply.render()] if self.apply is not None else []
        if self.config:
            lines.append(f"OHIF config: {self.config}")
        if self.oauth_checklist:
            lines.append(self.oauth_checklist.rstrip("\n"))
        if self.smoke is not None:
            lines.append(self.smoke.summary(brief=True))   # `provision smoke` shows every check
        lines += [f"warning: {note}" for note in self.notes]
        return "\n".join(lines)


def access_token(target: Target) -> str | None:
    """The bearer token the browser hands to OHIF with `?token=` (never printed)."""
    creds = target.credentials()
    from google.auth.credentials import AnonymousCredentials

    if isinstance(creds, AnonymousCredentials):
        return None
    if not creds.valid:
        from google.auth.transport.requests import Request

        creds.refresh(Request())
    token: str | None = creds.token   # google-auth's Credentials.token
    return token


def target_as(target: Target, member: str) -> Target:
    """The same target, acting as `member`: on the emulator its `emulator:MEMBER` token, on Google
    Cloud the service account impersonated (a person cannot be impersonated)."""
    if target.is_emulator:
        if ":" not in member:
            raise UsageError(f"--as {member!r}: name a member, e.g. user:ana@example.com or serviceAccount:EMAIL")
        return Target(emulator=target.emulator, token=f"emulator:{member}")
    kind, _, email = member.partition(":")
    if kind != "serviceAccount" or not email:
        raise UsageError(f"--as {member!r}: on Google Cloud only a service account can be acted as "
                         "(serviceAccount:EMAIL, impersonated; you need roles/iam.serviceAccountTokenCreator on it)")
    return Target(impersonate=email)


def write_config(bp: Blueprint, target: Target, out: Path | None = None, fmt: ohif_config.Format = "js") -> Path:
    """Write OHIF's config for `bp` (to `viewer.config_out` unless `out`), pointing at the target.
    JSON never lands on the viewer's .js path by default: it goes next to it, as .json."""
    path = Path(out or bp.viewer.config_out)
    if out is None and fmt == "json":
        path = path.with_suffix(".json")
    return ohif_config.write_config(pinned(bp, target), path, emulator_url=target.emulator, fmt=fmt)


def pinned(bp: Blueprint, target: Target, releases: list[int] | str | None = None) -> Any:
    """`bp` with its viewer sources' `idc: latest` resolved to the release IDC publishes now (`releases`:
    the releases a plan listed, instead of listing them again)."""
    return pin(bp, target, releases)


def smoke(bp: Blueprint, target: Target, *, browser: bool | None = None, out_dir: Path | str = "out/smoke",
          as_member: str | None = None) -> Any:
    """The DICOMweb smoke on every store and every viewer source (at least one study each: a source the
    viewer cannot read fails the smoke, with how to get access), and the browser smoke on the default
    data source and each viewer source when asked (default: `smoke.browser`)."""
    # Imported here: the smoke's DICOM, image and browser machinery (~0.1 s) is not loaded by `apply --no-smoke`.
    from provision.running.smoke import run_blueprint_smoke

    bp = pinned(bp, target)
    browser = bp.smoke.browser if browser is None else browser
    hosted = hosted_url(bp, target) if browser else None
    behind_iap = getattr(getattr(bp.viewer, "hosting", None), "access", None) == "iap"
    return run_blueprint_smoke(bp, session=target.session(), emulator_url=target.emulator, browser=browser,
                               token=access_token(target) if browser and not (hosted and behind_iap) else None,
                               out_dir=out_dir,
                               retry_s=target.timing.smoke_retry_s, as_member=as_member, hosted_url=hosted)


def hosted_checklist(bp: Any, url: str | None) -> str | None:
    """With `viewer.hosting.access: google-sign-in`, the OAuth console steps for the service's exact origin
    (its run.app URL) and `/callback`: the web client must name them before anyone can sign in."""
    hosting = getattr(bp.viewer, "hosting", None)
    if hosting is None or hosting.access != "google-sign-in" or not url:
        return None
    return ohif_config.oauth_checklist(bp, origin=url)


def config_checklist(bp: Any, target: Target) -> str | None:
    """The OAuth console steps `provision config` prints (None: none to print). For the hosted viewer with
    `access: google-sign-in` they name the Cloud Run service's exact origin, read back from the target, on
    any target (as apply prints them); when that cannot be read (not deployed yet, or the read failed) a
    plain note says the origin is known after apply. Otherwise: at `viewer.origin`, on Google Cloud."""
    hosting = getattr(bp.viewer, "hosting", None)
    if hosting is None or hosting.access != "google-sign-in":
        return None if target.is_emulator else ohif_config.oauth_checklist(bp)
    why = "the service is not deployed"
    try:
        url = hosted_url(bp, target)
    except ProvisionError as exc:   # e.g. no credentials
        url, why = None, f"its URL could not be read: {str(exc).splitlines()[0]}"
    except Exception as exc:  # noqa: BLE001 - a Google error is reported, never a traceback: config still wrote
        ge = parse_error(exc)
        if ge is None:
            raise
        code = f"{ge.code_text} " if ge.http_status or ge.status else ""
        url, why = None, f"its URL could not be read: {code}{ge.message.rstrip('.')}"
    if url:
        return hosted_checklist(bp, url)
    return (f"OAuth for the hosted viewer of project {bp.project.id} (viewer.hosting.access: google-sign-in): the web "
            f"client needs the Cloud Run service's own origin, https://{service_id(bp)}-PROJECT_NUMBER.{region(bp)}"
            f".run.app, known once `provision apply` has deployed it (here {why}). apply prints the console steps "
            "for that exact origin, and so does `provision config` afterwards.\n")


def hosted_url(bp: Any, target: Target) -> str | None:
    """The hosted viewer's URL, read back from Cloud Run (None: no viewer.hosting, or not deployed yet)."""
    if getattr(bp.viewer, "hosting", None) is None:
        return None
    service = get_service(Ctx(target), service_name(bp))
    return (service or {}).get("uri")


def apply_and_check(bp: Blueprint, target: Target, listener: Any = None, *, plan_: Any = None, run_smoke: bool = True,
                    browser: bool | None = None, cancel: threading.Event | None = None,
                    smoke_dir: Path | str = "out/smoke", opts: Any = None) -> Outcome:
    """Apply, write the OHIF config, then smoke-check (browser screenshots into `smoke_dir`).
    Failures land in `Outcome.error`."""
    outcome = Outcome(bp.project.id)
    try:
        outcome.apply = lifecycle.apply(bp, target, listener, plan_=plan_, cancel=cancel, opts=opts)
        outcome.oauth_checklist = hosted_checklist(bp, outcome.apply.outputs.get("viewer_url"))
        # The release the plan chose (and named) for `idc: latest`: the config and the smoke use it, and
        # IDC's stores are not listed again (a no-op re-apply reads each thing once).
        live = outcome.apply.plan.live
        chosen = pinned(bp, target, live.get("idc_releases") if live is not None else None)
        outcome.config = write_config(chosen, target)
        outcome.notes += config_warnings(bp, emulator_url=target.emulator)
        if run_smoke:
            outcome.smoke = smoke(chosen, target, browser=browser, out_dir=smoke_dir)
            if not outcome.smoke.ok:
                outcome.error = "smoke check failed:\n" + outcome.smoke.summary()
    except ProvisionError as exc:
        outcome.apply = outcome.apply or getattr(exc, "result", None)
        outcome.error = str(exc)
    except Cancelled:   # Ctrl-C while planning again or waiting for the lock: nothing of this run started
        outcome.error = "interrupted before any step started"
    return outcome


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped `apply_many`: `outcomes` holds every blueprint's, as far as it got (a blueprint
    that never started says so in its error)."""

    def __init__(self, outcomes: list[Any]):
        self.outcomes = outcomes
        super().__init__("interrupted")


def apply_many(bps: list[Any], target: Target, listener: Any = None, *, plans: list[Any] | None = None,
               parallel: int = 4, run_smoke: bool = True, opts: Any = None) -> list[Outcome]:
    """Onboard several teams at once: one Outcome per blueprint, in order. Ctrl-C stops every
    blueprint's run (steps under way end at their next wait, none starts after it), then raises
    Interrupted with what each blueprint finished, had in flight and never started."""
    cancel = threading.Event()
    plans = plans or [None] * len(bps)
    pool = ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="blueprint")
    futures = [pool.submit(apply_and_check, bp, target, listener, plan_=p, run_smoke=run_smoke, cancel=cancel,
                           opts=opts)
               for bp, p in zip(bps, plans, strict=True)]
    try:
        # Waked every quarter second: Ctrl-C may reach a worker thread, and a main thread blocked
        # on a lock without a timeout would only see it once every blueprint had finished.
        while wait(futures, timeout=0.25).not_done:
            pass
        return [f.result() for f in futures]
    except KeyboardInterrupt:
        cancel.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise Interrupted([f.result() if f.done() and not f.cancelled() else
                           Outcome(bp.project.id, error="interrupted before it started")
                           for bp, f in zip(bps, futures, strict=True)]) from None
    finally:
        pool.shutdown(wait=False)


def apply_planned(plans: list[fleet.Outcome], target: Target, listener: Any = None, *, parallel: int = 4,
                  run_smoke: bool = True, opts: Any = None) -> list[fleet.Outcome]:
    """apply_many over the blueprints whose plan (fleet.each of lifecycle.plan) succeeded: every
    blueprint's fleet Outcome, in order, its value this module's Outcome (a failed plan's stays as it
    was). Ctrl-C raises Interrupted, its outcomes these as far as they got."""
    good = [o for o in plans if o.ok]
    try:
        applied = apply_many([o.item.bp for o in good], target, listener, plans=[o.value for o in good],
                             parallel=parallel, run_smoke=run_smoke, opts=opts)
    except Interrupted as stop:
        raise Interrupted(_per_blueprint(plans, good, stop.outcomes)) from None
    return _per_blueprint(plans, good, applied)


def _per_blueprint(plans: list[fleet.Outcome], good: list[fleet.Outcome], applied: list[Outcome]) -> list[fleet.Outcome]:
    done = {id(o.item.bp): a for o, a in zip(good, applied, strict=True)}
    return [fleet.Outcome(o.item, done[id(o.item.bp)], done[id(o.item.bp)].error) if o.ok else o for o in plans]
