"""The provisioner's copy of the location value groups of `constraints/gcp.resourceLocations`
(`in:eu-locations`, `in:us-central1-locations`).

Compiled 2026-12-08 from Google's "Restricting resource locations" page
(https://cloud.google.com/resource-manager/docs/organization-policy/defining-locations) and its list of
regions: a continent or jurisdiction group holds its regions (each with its zones) and the multi- and
dual-regions inside it; `in:REGION-locations` holds the region and its zones. The page's own table was not
retrievable here: the members below follow its rules and Google's region list of that date (a choice,
written down). EU groups hold regions in EU member states only (not London europe-west2, not Zurich
europe-west6); europe groups hold both.

The emulator has its own table (provision/emulator/orgpolicy/groups.py): it plays Google and shares
nothing with the provisioner, so the two are kept apart on purpose; tests hold them to one answer.
"""
from __future__ import annotations

import re

AS_OF = "2026-12-08"
SOURCE = "https://cloud.google.com/resource-manager/docs/organization-policy/defining-locations"

_US = ("us-central1", "us-east1", "us-east4", "us-east5", "us-south1", "us-west1", "us-west2", "us-west3", "us-west4")
_EU = ("europe-central2", "europe-north1", "europe-north2", "europe-southwest1", "europe-west1", "europe-west3",
       "europe-west4", "europe-west8", "europe-west9", "europe-west10", "europe-west12")
_CANADA = ("northamerica-northeast1", "northamerica-northeast2")
_ASIA = ("asia-east1", "asia-east2", "asia-northeast1", "asia-northeast2", "asia-northeast3", "asia-south1",
         "asia-south2", "asia-southeast1", "asia-southeast2")
_ME = ("me-central1", "me-central2", "me-west1")

# group -> its regions (zones included) and its multi- and dual-regions (lower case, as policies write them).
GROUPS: dict[str, tuple[str, ...]] = {
    "us-locations": _US + ("us", "nam4"),
    "eu-locations": _EU + ("eu", "eur4"),
    "europe-locations": _EU + ("europe-west2", "europe-west6", "eu", "eur4"),
    "northamerica-locations": _US + _CANADA + ("northamerica-south1", "us", "nam4"),
    "canada-locations": _CANADA,
    "southamerica-locations": ("southamerica-east1", "southamerica-west1"),
    "asia-locations": _ASIA + ("asia", "asia1"),
    "australia-locations": ("australia-southeast1", "australia-southeast2"),
    "middleeast-locations": _ME,
    "africa-locations": ("africa-south1",),
}
_REGION = re.compile(r"^[a-z]+(-[a-z]+)+[0-9]+$")


def _zone_of(location: str, region: str) -> bool:
    return location.startswith(region + "-") and len(location) == len(region) + 2


def matches(value: str, location: str) -> bool:
    """Whether a policy value (`us-central1`, `is:us-central1`, `in:eu-locations`, `in:us-east1-locations`)
    covers `location` (any case: Cloud Storage writes `US`, `EUROPE-WEST4`)."""
    loc = location.lower()
    value = value.strip().lower()
    if value.startswith("is:"):
        return loc == value[3:]
    if not value.startswith("in:"):
        return loc == value
    group = value[3:]
    members = GROUPS.get(group)
    if members is None:
        region = group.removesuffix("-locations")
        return bool(_REGION.match(region)) and (loc == region or _zone_of(loc, region))
    return any(loc == m or (_REGION.match(m) and _zone_of(loc, m)) for m in members)


def known(value: str) -> bool:
    """Whether a value names a location or group this table knows (`in:` groups must exist)."""
    value = value.strip().lower()
    if not value.startswith("in:"):
        return True
    group = value[3:]
    return group in GROUPS or bool(_REGION.match(group.removesuffix("-locations")))
