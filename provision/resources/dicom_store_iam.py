"""Kind `dicom-store-iam`: grants on each DICOM store (least privilege).

Adds the blueprint's pairs (recorded first), revokes recorded pairs the blueprint no longer names
(also on a store it no longer names but that is kept), forgets grants of stores that are gone,
and reports foreign data-access grants (dicomEditor behind provision's back) as drift.
With the hosted viewer deployed, the viewer's service account is one more desired pair on every
store (roles/healthcare.dicomViewer): granted after the account exists, revoked like any recorded
pair once the blueprint no longer deploys the viewer. Reads `store_policy:<name>`.
"""
from __future__ import annotations
from provision.gcp.context import Ctx
from collections.abc import Callable

from typing import TYPE_CHECKING, Any

from provision.resources import iam
from provision.resources.base import Draft, Key, Live, Reads
from provision.resources.healthcare_names import DICOM_STORE, desired_stores, store_step_id
from provision.resources.healthcare_removals import fate, old_stores, reimported, replaced_dataset
from provision.resources.hosting_names import VIEWER_ROLE, account_member, behind_iap
from provision.resources.steps import CREATE, DELETE, KEEP, NOOP, UPDATE, Options, Step
from provision.resources.store_calls import read_iam

if TYPE_CHECKING:  # for annotations only: no import at run time
    from provision.blueprint.models import Blueprint

KIND = "dicom-store-iam"


def reads(bp: Blueprint, live: Live, phase: int) -> Reads:
    if live.project is None:
        return {}
    if phase == 2:
        return {Key.store_policy(n): (lambda ctx, n=n: read_iam(ctx, n)) for n in desired_stores(bp)}  # type: ignore[misc]  # a lambda with a bound default (mypy cannot infer it)
    if phase == 3:
        granted = live.record.granted_resources()
        return {Key.store_policy(n): (lambda ctx, n=n: read_iam(ctx, n))  # type: ignore[misc]  # a lambda with a bound default (mypy cannot infer it)
                for n in old_stores(bp, live) if n in granted and not live.has(Key.store_policy(n))}
    return {}


def diff(bp: Blueprint, live: Live, opts: Options, draft: Draft) -> None:
    if not opts.destroy:
        for s, name in zip(bp.dicom_stores, desired_stores(bp), strict=True):
            exists = live.store(name) is not None
            desired = sorted(set(iam.pairs_of(s.iam)) | set(_viewer_pairs(bp)))
            d = iam.diff_grants(live.store_policy(name) if exists else None, desired,
                                live.record.pairs_on(name))
            if not (desired or d.changing or d.foreign):
                continue
            action = NOOP if not d.changing else (CREATE if not exists else UPDATE if d.add else DELETE)
            draft.add(Step(f"store-iam:{s.id}", KIND, name, action, d.describe(),
                           [f"store:{s.id}", "record", "viewer-account"],
                           _run(name, d) if d.changing else None, drift=d.drift(), fields=d.fields(),
                           claims=[("grant", name, r, m) for r, m in d.add]))
    replaced = None if opts.destroy else replaced_dataset(bp, live)
    granted = live.record.granted_resources()
    if opts.destroy:
        for s, name in zip(bp.dicom_stores, desired_stores(bp), strict=True):
            for line in iam.left_alone(live.store_policy(name), iam.pairs_of(s.iam),
                                       live.record.pairs_on(name), f"DICOM store {s.id}"):
                draft.note(line)
    for name in old_stores(bp, live):
        if name not in granted:
            continue
        what = fate(live, name, opts, reimported(bp, name, replaced)) if live.record.owns(DICOM_STORE, name) else KEEP
        if what == "delete":
            continue   # its grants go with it
        pairs = sorted(live.record.pairs_on(name))
        policy = live.store_policy(name)
        d = iam.diff_grants(policy, [], pairs)
        if policy is None:   # the store is gone: only the record changes
            d.remove, d.forget = [], pairs
        draft.add(Step(store_step_id(bp, name, "store-iam"), KIND, name, DELETE, d.describe(), ["record"],
                       _run(name, d), forgets=d.forgets))


def _viewer_pairs(bp: Blueprint) -> list[iam.Pair]:
    """The hosted viewer's service account reads every store of the blueprint, and only those, when it
    proxies them (access: iap; with google-sign-in each user's own token reads them)."""
    return [(VIEWER_ROLE, account_member(bp))] if behind_iap(bp) else []


def _run(name: str, d: iam.GrantDiff) -> Callable[[Ctx], Any]:
    return lambda ctx: iam.apply_diff(ctx, iam.dicom_store_io(ctx, name), d)
