"""What a blueprint's viewer source names: a Healthcare store path or a plain DICOMweb root, with
what it is and how to get read access (the public datasets' names resolved to their real stores).

Pure functions of the blueprint (and, for `idc: latest`, of the IDC releases the viewer-source kind
lists): the OHIF config, the smoke and the viewer-source kind all read sources through here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from provision.errors import ProvisionError

VIEWER_ROLE = "roles/healthcare.dicomViewer"

IDC_DATASET = "projects/nci-idc-data/locations/us-central1/datasets/idc"
IDC_STORE_RE = re.compile(r"/dicomStores/idc-store-v([0-9]+)$")
IDC_DOCS = "https://learn.canceridc.dev/data/organization-of-data"
IDC_PROXY = ("https://proxy.imaging.datacommons.cancer.gov/current/"
             "viewer-only-no-downloads-see-tinyurl-dot-com-slash-3j3d9jyp/dicomWeb")
NIH_STORE = "projects/chc-nih-chest-xray/locations/us-central1/datasets/nih-chest-xray/dicomStores/nih-chest-xray"
NIH_PAGE = "https://cloud.google.com/healthcare-api/docs/resources/public-datasets/nih-chest"

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


def resolve(bp: Any, releases: list[int] | None = None, member: str = "MEMBER") -> list[Source]:
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
                              store=idc_store(release), what=what,
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
            host = urlsplit(s.dicomweb).hostname or s.dicomweb
            out.append(Source(s.name, s.label or f"{host} (read-only)", dicomweb=s.dicomweb,
                              what=f"the DICOMweb root at {host} (not a Google store: access is not checked)"))
    return out


def wants_releases(bp: Any) -> bool:
    return any(s.idc == "latest" for s in bp.viewer_sources)
