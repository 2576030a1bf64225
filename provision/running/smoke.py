"""The smoke check of a whole blueprint: DICOMweb per store and per viewer source
(provision.checks.dicomweb), then, when asked, the real viewer in a browser (provision.checks.browser)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from provision.checks.dicomweb import SmokeReport, run_dicomweb_smoke
from provision.errors import ProvisionError
from provision.checks import browser as browser_smoke
from provision.ohif.config import dicomweb_root, hosted_sources, render_config, source_root
from provision.blueprint.sources import Source, resolve

if TYPE_CHECKING:  # for annotations only: no import at run time
    from provision.blueprint.models import Blueprint


@dataclass
class BlueprintSmoke:
    """The smoke of a whole blueprint: DICOMweb per store and per viewer source (`source:NAME`),
    then (when asked) the browser on the default data source and on each viewer source.

    A browser smoke that was asked for and could not run (no study to look for, the DICOMweb
    smoke failed, no Chromium or Playwright, no viewer) is `browser_not_run` (a source's:
    `browser_sources_not_run[NAME]`), with the reason, and fails the smoke: a check nobody ran
    must never read as passed."""

    stores: dict[str, SmokeReport] = field(default_factory=dict)
    browser: Any = None  # provision.checks.browser.BrowserReport, when run
    browser_not_run: str = ""
    browser_sources: dict[str, Any] = field(default_factory=dict)        # source name -> BrowserReport
    browser_sources_not_run: dict[str, str] = field(default_factory=dict)  # source name -> why
    as_member: str | None = None   # `smoke --as MEMBER`: whose access was checked (None: the caller's)

    @property
    def ok(self) -> bool:
        return (all(r.ok for r in self.stores.values()) and not self.browser_not_run
                and (self.browser is None or self.browser.ok)
                and not self.browser_sources_not_run and all(r.ok for r in self.browser_sources.values()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "as": self.as_member,
            "dicomweb": {store: r.to_dict() for store, r in self.stores.items()},
            "browser": self.browser.to_dict() if self.browser is not None else None,
            **({"browser_not_run": self.browser_not_run} if self.browser_not_run else {}),
            **({"browser_sources": {n: r.to_dict() for n, r in self.browser_sources.items()}}
               if self.browser_sources else {}),
            **({"browser_sources_not_run": self.browser_sources_not_run} if self.browser_sources_not_run else {}),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def summary(self, brief: bool = False) -> str:
        """Each store's and source's DICOMweb smoke (`brief`: one line each when it passed), then the browser's."""
        parts = [r.summary(brief) for r in self.stores.values()]
        if self.browser is not None:
            parts.append(self.browser.summary())
        elif self.browser_not_run:
            parts.append(f"browser smoke NOT RUN (asked for, so the smoke fails): {self.browser_not_run}")
        parts += [r.summary() for r in self.browser_sources.values()]
        parts += [f"browser smoke of data source {name} NOT RUN (asked for, so the smoke fails): {why}"
                  for name, why in self.browser_sources_not_run.items()]
        return "\n".join(parts)


def run_blueprint_smoke(
    bp: Blueprint,
    *,
    session: requests.Session | None = None,
    emulator_url: str | None = None,
    browser: bool = False,
    token: str | None = None,
    out_dir: Any = "out/smoke",
    retry_s: float = 60.0,
    as_member: str | None = None,
    hosted_url: str | None = None,
) -> BlueprintSmoke:
    """`provision smoke`: the DICOMweb smoke on every store of `bp` and on every viewer source (at least
    one study each), then with `browser=True` the real viewer on the first store (the viewer's default
    data source) and on each viewer source (`?datasources=NAME`). Never raises for a check that
    failed or could not run: the report says which, and why. Viewer sources saying `idc: latest`
    must be pinned first (provision.running.flow.pinned).

    `session` carries the credentials (an AuthorizedSession for Google Cloud; None for an emulator
    without --enforce-iam); a viewer source that is a plain DICOMweb root gets none (the caller's
    Google token goes to Google only). `token` is the access token handed to the viewer with `?token=` (ADC's
    token on Google Cloud); it is used only inside the browser and never reported. `retry_s`: how
    long each GET is retried (the target's timing profile, `smoke_retry_s`). `as_member`: whom
    `session` acts as (`smoke --as`), named in the report.

    `hosted_url`: the hosted viewer's URL (viewer.hosting deployed): the browser opens the viewer that runs
    there instead of a local one. On an emulator it signs in as the account the emulator's Google sign-in
    has signed in (a member must be signed in); on Google Cloud IAP's interactive sign-in cannot be
    automated, so the browser smoke is not run and says why (hosted_not_automated). With access
    google-sign-in the hosted viewer signs in with Google itself: on an emulator the browser does so at its
    URL (the OAuth client registered as apply's checklist says); on Google Cloud it drives a served viewer
    with ADC's token, as without hosting.
    """
    result = BlueprintSmoke(as_member=as_member)
    sources = _dicomweb_smokes(bp, result, session=session, emulator_url=emulator_url, retry_s=retry_s)
    for report in result.stores.values():
        report.as_member = as_member or ""
    if not browser:
        return result
    expected = _first_store_expectations(bp, result)
    signs_in = getattr(getattr(bp.viewer, "hosting", None), "access", None) == "google-sign-in"
    if hosted_url and not signs_in:
        return _hosted_browser(bp, result, expected, sources, hosted_url, emulator_url, Path(out_dir))
    return _local_browser(bp, result, expected, sources, emulator_url, token, Path(out_dir),
                          hosted_url=hosted_url)


def _dicomweb_smokes(bp: Blueprint, result: BlueprintSmoke, *, session: requests.Session | None,
                     emulator_url: str | None, retry_s: float) -> list[Any]:
    """The DICOMweb smoke of every store and viewer source, into `result.stores`; the resolved sources."""
    for store in bp.dicom_stores:
        root = dicomweb_root(bp, store.id, emulator_url=emulator_url)
        has_import = bool(getattr(store, "import_", None))
        result.stores[store.id] = run_dicomweb_smoke(root, session=session, origin=bp.viewer.origin,
                                                     min_studies=bp.smoke.min_studies if has_import else 0,
                                                     retry_s=retry_s, has_import=has_import)
    sources = resolve(bp) if getattr(bp, "viewer_sources", None) else []
    for source in sources:
        report = run_dicomweb_smoke(source_root(source, emulator_url=emulator_url),
                                    session=session if source.store else requests.Session(),
                                    origin=bp.viewer.origin, min_studies=1, retry_s=retry_s)
        if source.store and any(c.status in (401, 403) for c in report.failures):
            for c in report.failures:
                c.detail += f" How to get access to source {source.name}: {source.access}."
        result.stores[f"source:{source.name}"] = report
    return sources


def _first_store_expectations(bp: Blueprint, result: BlueprintSmoke) -> list[Any]:
    """The studies the viewer's default data source (the first store) must show; when there are none to
    show, or its DICOMweb smoke failed, `result.browser_not_run` says so."""
    first_id = bp.dicom_stores[0].id
    first = result.stores[first_id]
    expected = first.browser_expectations()
    if not first.ok:
        result.browser_not_run = f"the DICOMweb smoke of store {first_id} failed (above); fix that first"
    elif not expected:
        result.browser_not_run = (f"store {first_id} (the viewer's default data source) holds no study for the viewer "
                                  "to show; import studies into it, or leave out --browser (smoke.browser)")
    return expected


def _local_browser(bp: Blueprint, result: BlueprintSmoke, expected: list[Any], sources: list[Any], emulator_url: str | None,
                   token: str | None, out_dir: Path, *, hosted_url: str | None = None) -> BlueprintSmoke:
    """The browser smoke of the viewer served here with the blueprint's config: the default data source,
    then each viewer source (`?datasources=NAME`, screenshots in out_dir/source-NAME). `hosted_url`: a
    hosted google-sign-in viewer, which serves that very config at its run.app URL."""
    if emulator_url:
        # What `provision config` writes for Google Cloud, unchanged; Google's hosts are routed to the
        # emulator, where the viewer signs in for real when the config has an oidc block. A hosted
        # google-sign-in viewer serves that very config at its run.app URL: the browser opens it there.
        config_js = render_config(bp)
        route: dict[str, Any] = {"google_via": emulator_url, "origin": bp.viewer.origin}
        if hosted_url:
            route = {"google_via": emulator_url, "emulator_host": emulator_url, "hosted": {"url": hosted_url}}
        token = None if getattr(bp.viewer, "oauth_client_id", None) else token
    else:  # on Google Cloud no one can sign in interactively: ADC's token through OHIF's ?token=
        config_js = render_config(bp, oidc=False)
        route = {}
    if not result.browser_not_run:
        try:
            result.browser = browser_smoke.run_browser_smoke(config_js, expected_studies=expected, token=token,
                                                             out_dir=out_dir, **route)
        except ProvisionError as exc:  # no Chromium, no Playwright, no viewer: the check could not run
            result.browser_not_run = str(exc)
    for source in sources:
        report = result.stores[f"source:{source.name}"]
        wanted = report.browser_expectations()
        if not report.ok or not wanted:
            result.browser_sources_not_run[source.name] = (
                f"the DICOMweb smoke of source {source.name} failed (above); fix that first")
            continue
        try:
            result.browser_sources[source.name] = browser_smoke.run_browser_smoke(
                config_js, expected_studies=wanted, token=token, out_dir=out_dir / f"source-{source.name}",
                data_source=source.name, **route)
        except ProvisionError as exc:
            result.browser_sources_not_run[source.name] = str(exc)
    return result


def hosted_roots(bp: Any, url: str) -> dict[str, str]:
    """The hosted viewer's same-origin DICOMweb roots at `url`, by source name (what its config names)."""
    return {name: f"{url.rstrip('/')}/dicomweb/{name}" for name in hosted_sources(bp, "http://unused.invalid")}


def hosted_not_automated(url: str) -> str:
    """Why the browser smoke of a viewer behind IAP does not run on Google Cloud, and what to do instead."""
    return (f"the viewer is hosted behind Identity-Aware Proxy at {url}: opening it needs an interactive Google "
            "sign-in (IAP's own page, with your organization's login and second factor), which a headless browser "
            "cannot do for you. The DICOMweb checks above ran against the stores directly. Open the URL in your "
            "browser as a member of viewer.hosting.members and check the study list, or leave out --browser")


def _hosted_browser(bp: Any, result: BlueprintSmoke, expected: list[dict[str, str]], sources: list[Source], url: str,
                    emulator_url: str | None, out_dir: Path) -> BlueprintSmoke:
    """The browser smoke of the hosted viewer at `url` (run_blueprint_smoke's `hosted_url`)."""
    if not emulator_url:
        result.browser_not_run = result.browser_not_run or hosted_not_automated(url)
        return result
    hosted = {"url": url, "roots": hosted_roots(bp, url)}
    if not result.browser_not_run:
        try:
            result.browser = browser_smoke.run_browser_smoke("", expected_studies=expected, out_dir=out_dir,
                                                             emulator_host=emulator_url, hosted=hosted)
        except ProvisionError as exc:
            result.browser_not_run = str(exc)
    for source in sources:
        report = result.stores[f"source:{source.name}"]
        wanted = report.browser_expectations()
        if source.name not in hosted["roots"] or not report.ok or not wanted:
            result.browser_sources_not_run[source.name] = (
                f"the DICOMweb smoke of source {source.name} failed (above); fix that first" if not report.ok or not wanted
                else f"source {source.name} is not proxied by the hosted viewer (a plain DICOMweb root)")
            continue
        try:
            result.browser_sources[source.name] = browser_smoke.run_browser_smoke(
                "", expected_studies=wanted, out_dir=out_dir / f"source-{source.name}", emulator_host=emulator_url,
                hosted=hosted, data_source=source.name)
        except ProvisionError as exc:
            result.browser_sources_not_run[source.name] = str(exc)
    return result


# A member no policy can name (the .invalid domain never exists): if a target lets it read a
# store, it checks no IAM, and a smoke acting as anyone there proves nothing about their access.
PROBE_MEMBER = "user:provision-iam-probe@example.invalid"


def refuse_unchecked_identity(bp: Blueprint, target: Any, member: str) -> None:
    """`smoke --as MEMBER` on an emulator: UsageError when the target lets a member that holds no
    grant read the blueprint's first store (started without --enforce-iam: every caller acts as
    the owner). On Google Cloud the impersonated identity is checked by IAM itself: nothing to do."""
    from provision.errors import UsageError
    from provision.gcp.target import Target
    from provision.ohif.config import dicomweb_root

    if not target.is_emulator:
        return
    root = dicomweb_root(bp, bp.dicom_stores[0].id, emulator_url=target.emulator)
    probe = Target(emulator=target.emulator, token=f"emulator:{PROBE_MEMBER}").session()
    try:
        answer = probe.get(f"{root}/studies", params={"limit": "1"}, timeout=30)
    except requests.RequestException:
        return   # unreachable: the smoke itself says so, with the fix
    if answer.ok:
        raise UsageError(f"smoke --as {member} proves nothing here: the emulator at {target.emulator} let "
                         f"{PROBE_MEMBER}, who holds no grant, read store {bp.dicom_stores[0].id}, so it checks no "
                         f"IAM (it was started without --enforce-iam) and {member} would pass as the owner does. "
                         "Restart it with `provision emulator --enforce-iam`, or leave out --as")
