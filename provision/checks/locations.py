"""Is the blueprint's Healthcare location one Google offers? Asked of the target where the caller can,
else answered from a list shipped with provision, and always before any write.

The target's own list (`projects.locations.list`, read by the dataset kind as `healthcare_locations`)
decides when the project exists with the Healthcare API on. A project that does not exist yet (or
whose Healthcare API is still off) has no list to read: the list below, copied from Google's page
on the date it names, decides then, and the plan says which list it used. A region Google added
after that date is refused for a new project until provision ships a newer list; the message says
so, and a project that exists with Healthcare enabled is always checked against the target itself.
"""
from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # for annotations only: no import at run time
    from provision.blueprint.models import Blueprint

# Google's Cloud Healthcare locations page, crawled 2026-04-08 (reference/google-evidence.md §4.3):
# 27 regions, then the multi-regions us and eu.
SHIPPED_AS_OF = "2026-04-08"
SHIPPED_SOURCE = "https://cloud.google.com/healthcare-api/docs/regions"
SHIPPED = ("northamerica-northeast1", "northamerica-northeast2", "us-central1", "us-east1", "us-east4", "us-west1",
           "us-west2", "us-west3", "southamerica-east1", "asia-east1", "asia-east2", "asia-northeast1",
           "asia-northeast2", "asia-northeast3", "asia-south1", "asia-southeast1", "asia-southeast2",
           "australia-southeast1", "australia-southeast2", "europe-north1", "europe-west2", "europe-west3",
           "europe-west4", "europe-west6", "me-west1", "me-central1", "me-central2", "us", "eu")


def nearest(location: str, offered: list[str] | tuple[str, ...], n: int = 4) -> list[str]:
    """The offered locations closest to `location`: the best match and those about as close (a typo
    names one, europe-west1 names its European neighbours)."""
    scored = sorted((-difflib.SequenceMatcher(None, location, o).ratio(), o) for o in offered)
    best = -scored[0][0] if scored else 0.0
    return [o for r, o in scored[:n] if -r >= 0.6 and -r >= best - 0.05]


def which_list(bp: Blueprint, target_list: list[str] | None) -> tuple[list[str], str]:
    """(the locations to check against, which list that is, in words)."""
    if target_list:
        return list(target_list), f"projects.locations.list of project {bp.project.id}"
    return list(SHIPPED), (f"provision's list of Cloud Healthcare locations, as of {SHIPPED_AS_OF} from "
                           f"{SHIPPED_SOURCE}: project {bp.project.id} cannot be asked until it exists with the "
                           "Healthcare API on")


def problems(bp: Blueprint, target_list: list[str] | None) -> tuple[list[str], list[str]]:
    """(problems, notes): a problem when the dataset's location is not offered; a note saying which
    list decided when it was provision's own."""
    offered, origin = which_list(bp, target_list)
    location = bp.dataset.location
    notes = [] if target_list else [f"dataset.location {location} checked against {origin}"]
    if location in offered:
        return [], notes
    near = nearest(location, offered)
    hint = f"; did you mean {' or '.join(near)}? Valid" if near else "; valid"
    late = "" if target_list else (" If Google added it after that date, create the project and enable "
                                   "healthcare.googleapis.com first: plan then asks the target.")
    return [f"{bp.where('dataset', 'location')}: dataset.location: {location} is not a Cloud Healthcare location "
            f"of project {bp.project.id}{hint} locations ({len(offered)}): {', '.join(sorted(offered))}. Checked "
            f"against {origin}.{late}"], notes
