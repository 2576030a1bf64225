"""Kind `dicom-store-iam`: grants on each DICOM store (least privilege).

Adds the blueprint's pairs (recorded first), revokes recorded pairs the blueprint no longer names
(also on a store it no longer names but that is kept), forgets grants of stores that are gone,
and reports foreign data-access grants (dicomEditor behind provision's back) as drift.
Reads `store_policy:<name>`.
"""
from __future__ import annotations

from typing import Any

from provision.resources import dicom_store, iam
from provision.resources.base import Draft, Live, Reads
from provision.resources.steps import CREATE, DELETE, KEEP, NOOP, UPDATE, Options, Step

KIND = "dicom-store-iam"


def reads(bp: Any, live: Live, phase: int) -> Reads:
    if live.project is None:
        return {}
    if phase == 2:
        return {f"store_policy:{n}": (lambda ctx, n=n: dicom_store.read_iam(ctx, n)) for n in dicom_store.desired_names(bp)}
    if phase == 3:
        granted = live.record.granted_resources()
        return {f"store_policy:{n}": (lambda ctx, n=n: dicom_store.read_iam(ctx, n))
                for n in dicom_store._old(bp, live) if n in granted and not live.has(f"store_policy:{n}")}
    return {}


def diff(bp: Any, live: Live, opts: Options, draft: Draft) -> None:
    if not opts.destroy:
        for s, name in zip(bp.dicom_stores, dicom_store.desired_names(bp)):
            exists = live.get(f"store:{name}") is not None
            desired = iam.pairs_of(s.iam)
            d = iam.diff_grants(live.get(f"store_policy:{name}") if exists else None, desired,
                                live.record.pairs_on(name))
            if not (desired or d.changing or d.foreign):
                continue
            action = NOOP if not d.changing else (CREATE if not exists else UPDATE if d.add else DELETE)
            draft.add(Step(f"store-iam:{s.id}", KIND, name, action, d.describe(), [f"store:{s.id}", "record"],
                           _run(name, d) if d.changing else None, drift=d.drift(), fields=d.fields(),
                           claims=[("grant", name, r, m) for r, m in d.add]))
    from provision.resources import dataset

    replaced = None if opts.destroy else dataset.replaced(bp, live)
    granted = live.record.granted_resources()
    if opts.destroy:
        for s, name in zip(bp.dicom_stores, dicom_store.desired_names(bp)):
            for line in iam.left_alone(live.get(f"store_policy:{name}"), iam.pairs_of(s.iam),
                                       live.record.pairs_on(name), f"DICOM store {s.id}"):
                draft.note(line)
    for name in dicom_store._old(bp, live):
        if name not in granted:
            continue
        what = dicom_store.fate(live, name, opts, dicom_store.reimported(bp, name, replaced)) if live.record.owns(dicom_store.KIND, name) else KEEP
        if what == "delete":
            continue   # its grants go with it
        pairs = sorted(live.record.pairs_on(name))
        policy = live.get(f"store_policy:{name}")
        d = iam.diff_grants(policy, [], pairs)
        if policy is None:   # the store is gone: only the record changes
            d.remove, d.forget = [], pairs
        draft.add(Step(dicom_store.step_id(bp, name, "store-iam"), KIND, name, DELETE, d.describe(), ["record"],
                       _run(name, d), forgets=d.forgets))


def _run(name: str, d: iam.GrantDiff):
    return lambda ctx: iam.apply_diff(ctx, iam.dicom_store_io(ctx, name), d)
