"""Locked-down buckets: what every bucket provision creates has, and how a blueprint opts out.

Uniform bucket-level access (`iamConfiguration.uniformBucketLevelAccess.enabled`: access through
IAM only, so no object ACL can grant what the bucket's policy does not show) and public access
prevention (`iamConfiguration.publicAccessPrevention: enforced`: allUsers/allAuthenticatedUsers
are refused). Below the kinds: the bucket kind and the record use it.

A blueprint value left unset means "the default": on for a bucket provision creates (or created
earlier: the record names it), reported but not changed on a bucket it adopted. A value written
in the blueprint is applied either way, and a weakening one is flagged in the plan.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ENFORCED = "enforced"
WHY_UNIFORM = "object ACLs could grant access to patient images that the bucket's IAM policy does not show"
WHY_PUBLIC = "a grant to allUsers or allAuthenticatedUsers would make patient images public"


def lock_down(bucket: Any, uniform: bool = True, prevention: str = ENFORCED) -> None:
    """Set the two settings on a google-cloud-storage Bucket before create or patch."""
    bucket.iam_configuration.uniform_bucket_level_access_enabled = uniform
    bucket.iam_configuration.public_access_prevention = prevention


def locked_down(bucket: Any) -> bool:
    """Whether a bucket read back has both."""
    cfg = bucket.iam_configuration
    return bool(cfg.uniform_bucket_level_access_enabled) and cfg.public_access_prevention == ENFORCED


@dataclass(frozen=True)
class Wanted:
    """What the blueprint asks of a bucket's two settings, and whether it wrote them."""

    uniform: bool
    prevention: str
    explicit_uniform: bool
    explicit_prevention: bool


def wanted(spec: Any) -> Wanted:
    """The settings a blueprint `bucket:` asks for (defaults: both on)."""
    u, p = getattr(spec, "uniform_access", None), getattr(spec, "public_access_prevention", None)
    return Wanted(True if u is None else bool(u), p or ENFORCED, u is not None, p is not None)


def opt_out_notes(name: str, want: Wanted) -> list[str]:
    """The plan's flags for a blueprint that weakens a bucket's defaults."""
    out = []
    if not want.uniform:
        out.append(f"safety: gs://{name} without uniform bucket-level access (bucket.uniform_access: false): "
                   f"{WHY_UNIFORM}")
    if want.prevention != ENFORCED:
        out.append(f"safety: gs://{name} without public access prevention (bucket.public_access_prevention: "
                   f"{want.prevention}): {WHY_PUBLIC}")
    return out


def differences(found_uniform: bool | None, found_prevention: str, want: Wanted, *, all_: bool) -> list[tuple[str, Any, Any]]:
    """(field, before, after) for each setting that differs; `all_`: the defaults count too (a bucket
    provision made), else only what the blueprint wrote (an adopted bucket)."""
    out: list[tuple[str, Any, Any]] = []
    if found_uniform is not None and bool(found_uniform) != want.uniform and (all_ or want.explicit_uniform):
        out.append(("uniform_access", bool(found_uniform), want.uniform))
    if found_prevention and found_prevention != want.prevention and (all_ or want.explicit_prevention):
        out.append(("public_access_prevention", found_prevention, want.prevention))
    return out


def reported(found_uniform: bool | None, found_prevention: str, want: Wanted, ours: bool) -> list[str]:
    """What an existing bucket lacks that provision leaves alone (drift): the defaults on a bucket it
    did not make, unless the blueprint wrote the setting (then it is changed, not reported)."""
    out = []
    if not (ours or want.explicit_uniform) and found_uniform is False:
        out.append(f"uniform bucket-level access is off: {WHY_UNIFORM}")
    if not (ours or want.explicit_prevention) and found_prevention and found_prevention != ENFORCED:
        out.append(f"public access prevention is {found_prevention}, not enforced: {WHY_PUBLIC}")
    return out
