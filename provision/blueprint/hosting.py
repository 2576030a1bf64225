"""Rules of the `viewer.hosting` block (the hosted viewer on Cloud Run, DESIGN.md §5b).

The models are in provision.blueprint.models; the per-value rules and the rules that span values
are here, so the models module stays about models. Everything raises or returns the same kind of
message as the other rules: what is wrong, and what would be valid.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

from provision.blueprint.naming import HEALTHCARE_MULTI_REGIONS, _Invalid
from provision.blueprint.yamlpos import PathKey

__all__ = ["ACCESS_MODES", "DEFAULT_SERVICE", "PLATFORMS", "check_run_region", "check_service_name",
           "hosting_checks", "hosting_region"]

PLATFORMS = ("cloud-run",)
ACCESS_MODES = ("iap", "google-sign-in")
DEFAULT_SERVICE = "ohif-viewer"
# Cloud Run regions have the form of Compute regions (us-central1, europe-west4, northamerica-northeast1);
# which ones offer Cloud Run (and IAP on Cloud Run) is checked at plan time, like Healthcare locations.
RUN_REGION_RE = re.compile(r"^[a-z]+(-[a-z]+)+[0-9]{1,2}$")
# Cloud Run service names: lowercase letters, digits and hyphens, starting with a letter, not ending
# with a hyphen, at most 49 characters (Cloud Run's documented limit, from memory of its docs: not
# in run.v2.json, which only says "the name of the service"; a choice written down here).
_EXAMPLE_REGION = {"us": "us-central1", "eu": "europe-west4"}
SERVICE_RE = re.compile(r"^[a-z]([a-z0-9-]{0,47}[a-z0-9])?$")


def check_run_region(value: str) -> str:
    if not RUN_REGION_RE.fullmatch(value):
        raise _Invalid(f"'{value}' is not a Cloud Run region; write a region such as us-central1 or europe-west4 "
                       "(Cloud Run has no multi-regions)")
    return value


def check_service_name(value: str) -> str:
    if not SERVICE_RE.fullmatch(value):
        raise _Invalid(f"'{value}' is not a Cloud Run service name; use 1-49 lowercase letters, digits and hyphens, "
                       f"starting with a letter and not ending with a hyphen (e.g. {DEFAULT_SERVICE})")
    return value


def hosting_region(hosting: Mapping[str, Any], dataset: Mapping[str, Any]) -> str | None:
    """The region the viewer runs in: hosting.region, else the dataset's location when it is a region."""
    region = hosting.get("region")
    if isinstance(region, str):
        return region
    location = dataset.get("location")
    if isinstance(location, str) and location not in HEALTHCARE_MULTI_REGIONS:
        return location
    return None


def hosting_checks(data: Mapping[str, Any]) -> list[tuple[PathKey, str]]:
    """Rules spanning values of viewer.hosting and the rest (wrong types are reported elsewhere)."""
    viewer = data.get("viewer")
    hosting = viewer.get("hosting") if isinstance(viewer, dict) else None
    if not isinstance(hosting, dict):
        return []
    out: list[tuple[PathKey, str]] = []
    at: PathKey = ("viewer", "hosting")
    dataset: dict[str, Any] = data["dataset"] if isinstance(data.get("dataset"), dict) else {}
    if hosting.get("region") is None and hosting_region(hosting, dataset) is None:
        location = dataset.get("location")
        example = _EXAMPLE_REGION.get(str(location), "us-central1")
        out.append((at, f"needs a region: the dataset's location '{location}' is a multi-region, and Cloud Run runs "
                        f"in one region; add region: {example} (or another region inside '{location}', so the "
                        "images stay there)"))
    access, members = hosting.get("access", "iap"), hosting.get("members")
    if access == "iap" and not members:
        out.append((at, "names no members, so nobody could open the viewer behind IAP; add members: "
                        "[group:radiology@example.com] (users, groups or a domain:)"))
    if access == "google-sign-in" and members:
        # Nothing gates the static viewer (it holds no data): who sees studies is who holds a Healthcare role
        # of their own, the blueprint's store or project grants; a second list could only disagree with them.
        out.append((at + ("members",), "members are for access: iap; with google-sign-in each user's own Google "
                                       "token reaches the stores, so grant roles/healthcare.dicomViewer in "
                                       "dicom_stores[].iam instead"))
    if access == "google-sign-in" and isinstance(viewer, dict) and not viewer.get("oauth_client_id"):
        project = data.get("project")
        pid = project.get("id") if isinstance(project, dict) else None
        out.append((at + ("access",) if "access" in hosting else at,
                    "google-sign-in needs viewer.oauth_client_id, the OAuth web client users sign in with (no API "
                    "can create one): create it in the console (APIs & Services > Credentials > OAuth client ID, "
                    "type Web application"
                    + (f": https://console.cloud.google.com/apis/credentials/oauthclient?project={pid}" if pid else "")
                    + "), add viewer: oauth_client_id: NUMBER-ID.apps.googleusercontent.com; apply then prints the "
                    "service's exact origin and /callback redirect URI to add to it. Or use access: iap (no console "
                    "step)"))
    scaling = hosting.get("scaling")
    if isinstance(scaling, dict):
        low, high = scaling.get("min_instances"), scaling.get("max_instances")
        if isinstance(low, int) and isinstance(high, int) and not isinstance(low, bool) and low > high:
            out.append((at + ("scaling", "min_instances"), f"{low} is more than max_instances ({high}); "
                                                            "min_instances must be at most max_instances"))
    return out
