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

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from provision.errors import ProvisionError
from provision.gcp.context import Ctx
from provision.gcp.errors import parse
from provision.resources.base import Draft, Live, Reads
from provision.resources.steps import NOOP, Options, Step

if TYPE_CHECKING:  # for annotations only: no import at run time
    from provision.blueprint.models import Blueprint

KIND = "viewer-source"
READ = "healthcare.dicomStores.dicomWebRead"
VIEWER_ROLE = "roles/healthcare.dicomViewer"

IDC_DATASET = "projects/nci-idc-data/locations/us-central1/datasets/idc"
IDC_STORE_RE = re.compile(r"/dicomStores/idc-store-v([0-9]+)$")
IDC_DOCS = "https://learn.canceridc.dev/data/organization-of-data"
IDC_PROXY = ("https://proxy.imaging.datacommons.cancer.gov/current/"
             "viewer-only-no-downloads-see-tinyurl-dot-com-slash-3j3d9jyp/dicomWeb")
NIH_STORE = "projects/chc-nih-chest-xray/locations/us-central1/datasets/nih-chest-xray/dicomStores/nih-chest-xray"
NIH_PAGE = "https://cloud.google.com/healthcare-api/docs/resources/public-datasets/nih-chest"

HELD, MISSING, HIDDEN = "held", "missing", "hidden"


@dataclass(frozen=True)
class Source:
    """A viewer source as the viewer gets it: a Healthcare store path or a plain DICOMweb root."""

    name: str
    label: str
    store: str | None = None       # projects/P/locations/L/datasets/D/dicomStores/S
    dicomweb: str | None = None    # a plain root, used as written (no credential is sent to it)
    what: str = ""                 # for the plan: which dataset, and how it was chosen
    access: str = ""               # how to get read access when it is missing

    @property
    def project(self) -> str | None:
        return self.store.split("/")[1] if self.store else None


def idc_store(release: str) -> str:
    return f"{IDC_DATASET}/dicomStores/idc-store-{release}"


def resolve(bp: Blueprint, releases: list[int] | None = None, member: str = "MEMBER") -> list[Source]:
    """Every `viewer_sources` entry as a Source; `idc: latest` needs `releases` (from `list_releases`)."""
    out = []
    for s in bp.viewer_sources:
        if s.idc is not None:
            release, what = s.idc, f"NCI Imaging Data Commons release {s.idc}"
            if release == "latest":
                if not releases:
                    raise ProvisionError(f"viewer source {s.name}: `idc: latest` is not resolved yet (plan, apply, "
                                         "config, smoke and viewer list IDC's releases first; pin one, idc: v23, to "
                                         "write the config without asking)")
                release = f"v{max(releases)}"
                what = (f"NCI Imaging Data Commons release {release}, the latest of the {len(releases)} IDC "
                        f"publishes ({', '.join(f'v{n}' for n in sorted(releases))}); `idc: latest` follows new "
                        "releases, pin it (idc: v23) to keep one")
            out.append(Source(s.name, s.label or f"NCI Imaging Data Commons {release} (public, read-only)",
                              store=idc_store(release), what=what,  # type: ignore[arg-type]  # mypy baseline (issue 20)
                              access=("IDC's stores are readable by any signed-in Google account with the "
                                      "cloud-healthcare scope: sign in (gcloud auth application-default login); "
                                      f"see {IDC_DOCS}")))
        elif s.public == "nih-chest-xray":
            out.append(Source(s.name, s.label or "NIH Chest X-ray (public, read-only)", store=NIH_STORE,
                              what="the NIH Chest X-ray dataset (NIH Clinical Center; cite it as its page asks)",
                              access=(f"the NIH Chest X-ray DICOM store is shared on request: ask for access on "
                                      f"{NIH_PAGE} (the page links the request); each of the viewer's users needs "
                                      "it as well")))
        elif s.public == "idc-proxy":
            out.append(Source(s.name, s.label or "NCI Imaging Data Commons proxy (public, read-only)",
                              dicomweb=IDC_PROXY, what="IDC's public DICOMweb proxy (latest release, no sign-in, a "
                                                       "daily quota per IP address)"))
        elif s.store is not None:
            project, location, dataset, store = s.store.split("/")[1::2]
            who = f" ({s.contact})" if s.contact else f" (the owners of project {project})"
            grant = (f"gcloud healthcare dicom-stores add-iam-policy-binding {store} --project={project} "
                     f"--location={location} --dataset={dataset} --member={member} --role={VIEWER_ROLE}")
            out.append(Source(s.name, s.label or f"{project}: {dataset}/{store} (read-only)", store=s.store,
                              what=f"DICOM store {store} of project {project}",
                              access=f"ask the store's owners{who} to run: {grant}"))
        else:
            root = s.dicomweb or ""   # the model requires one of store, dicomweb, idc, public
            host = urlsplit(root).hostname or root
            out.append(Source(s.name, s.label or f"{host} (read-only)", dicomweb=s.dicomweb,
                              what=f"the DICOMweb root at {host} (not a Google store: access is not checked)"))
    return out


def wants_releases(bp: Blueprint) -> bool:
    return any(s.idc == "latest" for s in bp.viewer_sources)


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


def pin(bp: Blueprint, target: Any) -> Any:
    """`bp` with `idc: latest` replaced by the release IDC publishes now (a copy; `bp` as it is when
    nothing says latest)."""
    if not wants_releases(bp):
        return bp
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
        where = s.store or s.dicomweb
        changes = [f"read-only OHIF data source '{s.name}' (\"{s.label}\"): {s.what}; nothing is written to it"]
        draft.add(Step(f"source:{s.name}", KIND, where, NOOP, changes, []))  # type: ignore[arg-type]  # mypy baseline (issue 20)
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
