"""Kind `viewer-source`: read-only data sources the viewer shows beside the blueprint's own stores
(`viewer_sources:` in the blueprint): another team's DICOM store, a plain DICOMweb root, or a
public dataset.

Nothing is ever written to a source or its project: a source's step is a `no-op` that says what
the viewer will show. Plan reads, as the caller:

- phase 1, `idc_releases`: for `idc: latest`, IDC's release stores, listed with
  `dicomStores.list` on `projects/nci-idc-data/locations/us-central1/datasets/idc` (one store per
  release, `idc-store-v<N>`); the highest N is chosen and the plan says which, and of what;
- phase 2, `source_access:<name>`: for every Cloud Healthcare source, `testIamPermissions` for
  `healthcare.dicomStores.dicomWebRead` on its store. Missing access is a plan note saying how to
  get it (the dataset's access page, or the owning team and the exact gcloud grant), never an
  error: a team may plan before its access arrives. The viewer's users need the same permission
  (`provision smoke BLUEPRINT --as MEMBER` checks one of them); plan says so once, as a note.

`pin(bp, target)` returns the blueprint with `idc: latest` replaced by the release plan would
choose: the OHIF config, `provision viewer` and the smoke all use a pinned blueprint.

Where the public datasets are (checked with `search`, see the README): IDC publishes
`projects/nci-idc-data/locations/us-central1/datasets/idc/dicomStores/idc-store-v<N>` (readable by
any signed-in Google account) and a public DICOMweb proxy without sign-in (daily quota per IP);
the NIH Chest X-ray store is `projects/chc-nih-chest-xray/locations/us-central1/datasets/
nih-chest-xray/dicomStores/nih-chest-xray` (Google's dataset page: access on request).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from provision.blueprint.sources import IDC_DATASET, IDC_STORE_RE, resolve, wants_releases
from provision.errors import ProvisionError
from provision.gcp.context import Ctx
from provision.gcp.errors import parse
from provision.resources.base import Draft, Live, Reads
from provision.resources.steps import NOOP, Options, Step

if TYPE_CHECKING:  # for annotations only: no import at run time
    from provision.blueprint.models import Blueprint

KIND = "viewer-source"
READ = "healthcare.dicomStores.dicomWebRead"
HELD, MISSING, HIDDEN = "held", "missing", "hidden"


def list_releases(ctx: Ctx) -> list[int] | str:
    """The IDC releases published as Healthcare stores (numbers), or why they could not be listed."""
    stores = ctx.target.healthcare().projects().locations().datasets().dicomStores()

    def page(token: str | None) -> dict[str, Any]:
        return cast("dict[str, Any]", stores.list(parent=IDC_DATASET, pageToken=token, pageSize=1000).execute(num_retries=0))

    found: list[int] = []
    token = None
    try:
        while True:
            resp = ctx.call(lambda: page(token))  # noqa: B023 -- ctx.call runs it before the loop moves on
            for st in resp.get("dicomStores") or []:
                m = IDC_STORE_RE.search(st.get("name", ""))
                if m:
                    found.append(int(m.group(1)))
            token = resp.get("nextPageToken")
            if not token:
                break
    except Exception as exc:  # noqa: BLE001
        ge = parse(exc)
        if ge is None:
            raise
        return f"{ge.code_text}: {ge.message}"
    return found or "the dataset lists no idc-store-v<N> store"


def caller(target: Any) -> str:
    """The member plan checks access as (for the gcloud grant it suggests)."""
    token = getattr(target, "token", None)
    if target.is_emulator:
        return token.removeprefix("emulator:") if token else "user:YOUR_EMAIL"
    if getattr(target, "impersonate", None):
        return f"serviceAccount:{target.impersonate}"
    email = getattr(target.credentials(), "service_account_email", None)
    return f"serviceAccount:{email}" if email and "@" in str(email) else "user:YOUR_EMAIL"


def test_access(ctx: Ctx, store: str) -> str:
    """HELD / MISSING (testIamPermissions answered without it) / HIDDEN (403: Google answers so for a
    store that does not exist and one you may not see alike), or another answer's text."""
    stores = ctx.target.healthcare().projects().locations().datasets().dicomStores()
    try:
        resp = ctx.call(lambda: stores.testIamPermissions(resource=store, body={"permissions": [READ]})
                        .execute(num_retries=0))
    except Exception as exc:  # noqa: BLE001
        ge = parse(exc)
        if ge is None:
            raise
        if ge.http_status in (403, 404) and "SERVICE_DISABLED" not in (ge.reason or ""):
            return HIDDEN
        return f"{ge.code_text}: {ge.message}"
    return HELD if READ in (resp.get("permissions") or []) else MISSING


def pin(bp: Blueprint, target: Any, releases: list[int] | str | None = None) -> Any:
    """`bp` with `idc: latest` replaced by the release IDC publishes now (a copy; `bp` as it is when
    nothing says latest). `releases`: what the plan listed (`idc_releases`), so that apply's config and
    smoke use the release its plan named, without listing IDC's stores again."""
    if not wants_releases(bp):
        return bp
    if releases is None:
        releases = list_releases(Ctx(target))
    if isinstance(releases, str):
        raise ProvisionError(_unresolved(releases))
    latest = f"v{max(releases)}"
    sources = [s.model_copy(update={"idc": latest}) if s.idc == "latest" else s for s in bp.viewer_sources]
    return bp.model_copy(update={"viewer_sources": sources})


def _unresolved(why: str) -> str:
    return (f"viewer_sources: `idc: latest` cannot be resolved: listing IDC's stores ({IDC_DATASET}) answered "
            f"{why}; pin a release instead (idc: v23), or sign in with an account that may list them")


# ---------------------------------------------------------------------------- kind
def reads(bp: Blueprint, live: Live, phase: int) -> Reads:
    if live.opts.destroy or not bp.viewer_sources:
        return {}
    if phase == 1:
        out: Reads = {"caller": lambda ctx: caller(ctx.target)}
        if wants_releases(bp):
            out["idc_releases"] = list_releases
        return out
    if phase == 2:
        releases = live.get("idc_releases")
        if isinstance(releases, str):
            return {}   # diff refuses the plan
        return {f"source_access:{s.name}": (lambda ctx, st=s.store: test_access(ctx, st))  # type: ignore[misc]  # a lambda with a bound default (mypy cannot infer it)
                for s in resolve(bp, releases) if s.store}
    return {}


def diff(bp: Blueprint, live: Live, opts: Options, draft: Draft) -> None:
    if opts.destroy or not bp.viewer_sources:
        return
    releases = live.get("idc_releases")
    if isinstance(releases, str):
        raise ProvisionError(_unresolved(releases))
    member = live.read.get("caller") or "MEMBER"
    checked = False
    for s in resolve(bp, releases, member):
        where = s.store or s.dicomweb or ""   # resolve() gives every Source one of the two
        changes = [f"read-only OHIF data source '{s.name}' (\"{s.label}\"): {s.what}; nothing is written to it"]
        draft.add(Step(f"source:{s.name}", KIND, where, NOOP, changes, []))
        if not s.store:
            continue
        checked = True
        access = live.get(f"source_access:{s.name}")
        if access == HELD or access is None:
            continue
        if access == MISSING:
            why = f"you ({member}) lack {READ} on {s.store}"
        elif access == HIDDEN:
            why = (f"{s.store} answers 403 to you ({member}): it does not exist, or you may not see it (Google "
                   "does not tell the two apart; check the path)")
        else:
            why = f"checking your access to {s.store} failed ({access})"
        draft.note(f"viewer source {s.name}: {why}; the viewer cannot show it until then. How to get access: "
                   f"{s.access}. provision writes nothing to project {s.project}.")
    if checked:
        draft.note(f"viewer sources: plan checked {READ} for you ({member}); the viewer's users need it on each "
                   "Cloud Healthcare source as well (`provision smoke BLUEPRINT --as MEMBER` checks one of them)")
