"""Refused before any write: what Google would refuse halfway through apply, found at plan.

Runs after plan has read live state and built the steps, before the plan is shown or run. Each check returns problems (each
`FILE:LINE:COL: what is wrong; what would be valid`) and notes; any problem refuses the plan with
PlanRefused (exit 2, nothing changed). What is checked:
- the dataset's Healthcare location (checks/locations.py), also for a project that does not exist;
- the effective organization policies the blueprint would break (checks/org_policy.py), when the
  plan writes anything;
- a CMEK key that is missing, unreadable or in another location (checks/kms.py).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from provision.checks import kms, locations, org_policy
from provision.errors import PlanRefused
from provision.gcp.context import Ctx

if TYPE_CHECKING:  # for annotations only: no import at run time
    from provision.blueprint.models import Blueprint


def refuse(ctx: Ctx, bp: Blueprint, live: Any, *, read_policies: bool = True, writes: bool = True) -> list[str]:
    """Notes for the plan; raises PlanRefused listing every problem found. `read_policies`: also read
    organization policies and the KMS key (plan and apply do; status reports what is, not what would fail).
    `writes`: whether the plan changes anything; a plan that writes nothing cannot break a policy, so
    no organization policy is read for it (a no-op re-apply's reads are its resources')."""
    # The dataset exists where the blueprint says: its location is one Google offers, nothing to check.
    problems, notes = ([], []) if live.dataset is not None else \
        locations.problems(bp, live.get("healthcare_locations"))
    if read_policies:
        checks = (org_policy.problems, kms.problems) if writes else (kms.problems,)
        for check in checks:
            found, said = check(ctx, bp, live)
            problems += found
            notes += said
    if problems:
        raise PlanRefused(problems)
    return notes
