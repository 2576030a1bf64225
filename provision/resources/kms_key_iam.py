"""The Healthcare service agent's use of the dataset's CMEK key (`dataset.kms_key`).

Kind `kms-key-iam`: before the dataset is created, grant the agent
`roles/cloudkms.cryptoKeyEncrypterDecrypter` on the key (additive read-modify-write; the grant recorded
first, owned in the record like any grant). A grant the record names on a key the blueprint no longer
uses is revoked. Reads `kms_key_policy` (the blueprint's key; None when it cannot be read, which
checks/kms.py has refused already) and `kms_key_policy:<key>` (recorded keys no longer named).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from provision.gcp.context import Ctx
from provision.gcp.errors import is_status
from provision.resources import iam
from provision.resources.base import Draft, Live, Reads
from provision.resources.steps import CREATE, DELETE, KEEP, NOOP, UPDATE, Options, Step

if TYPE_CHECKING:  # for annotations only: no import at run time
    from provision.blueprint.models import Blueprint

KIND = "kms-key-iam"
ROLE = "roles/cloudkms.cryptoKeyEncrypterDecrypter"


def read_if_there(ctx: Ctx, key: str) -> dict[str, Any] | None:
    """The key's policy, None when the key is gone or hidden from us."""
    try:
        return ctx.call(iam.kms_key_io(ctx, key).read)
    except Exception as exc:  # noqa: BLE001
        if is_status(exc, 403, 404):
            return None
        raise


def _recorded_keys(live: Live) -> list[str]:
    return sorted(r for r in live.record.granted_resources() if "/cryptoKeys/" in r)


def reads(bp: Blueprint, live: Live, phase: int) -> Reads:
    key = getattr(bp.dataset, "kms_key", None)
    if phase == 2 and key and not live.opts.destroy:
        return {"kms_key_policy": lambda ctx: read_if_there(ctx, key)}
    if phase == 3:
        return {f"kms_key_policy:{k}": (lambda ctx, k=k: read_if_there(ctx, k))  # type: ignore[misc]  # a lambda with a bound default (mypy cannot infer it)
                for k in _recorded_keys(live) if k != key or live.opts.destroy}
    return {}


def diff(bp: Blueprint, live: Live, opts: Options, draft: Draft) -> None:
    key = None if opts.destroy else getattr(bp.dataset, "kms_key", None)
    agent = draft.facts.agent
    if key:
        known = agent if draft.facts.agent_exists else None   # the agent's member, once it exists
        policy = live.get("kms_key_policy") if known else None
        d = iam.diff_grants(policy, [(ROLE, known)] if known else [], live.record.pairs_on(key),
                            ignore_members=[agent] if agent else [])
        if not known:
            d.add = [(ROLE, agent or "the Healthcare service agent")]   # its email is known once it exists
        action = NOOP if not d.changing else (UPDATE if policy is not None else CREATE)
        run = (lambda ctx: iam.apply_diff(ctx, iam.kms_key_io(ctx, key), d, agent=True)) if d.changing else None
        draft.add(Step(KIND, KIND, key, action, d.describe(), ["service-agent", "record"], run, drift=d.drift(),
                       fields=d.fields(), claims=[("grant", key, r, m) for r, m in d.add if m == agent]))


def finish(bp: Blueprint, live: Live, opts: Options, draft: Draft) -> None:
    """Revoke grants on keys the blueprint no longer names, once no dataset of ours needs them: after the
    dataset is replaced or deleted, never while a kept dataset may still be encrypted with the key."""
    key = None if opts.destroy else getattr(bp.dataset, "kms_key", None)
    kept = [s for s in draft.steps if s.kind == "dataset" and s.action == KEEP]
    for old in _recorded_keys(live):
        if old == key:
            continue
        sid = f"{KIND}:{old.rsplit('/', 1)[-1]}"
        if kept:
            draft.keep(sid, KIND, old, "kept: the dataset provision kept may still be encrypted with this key")
            continue
        pairs = sorted(live.record.pairs_on(old))
        policy = live.get(f"kms_key_policy:{old}")
        d = iam.diff_grants(policy, [], pairs)
        changes = d.describe() if policy is not None else [f"- {m} {r} (key gone or hidden: forget it)" for r, m in pairs]
        deps = [s.id for s in draft.steps if s.kind == "dataset" and s.changing] + ["record"]
        draft.add(Step(sid, KIND, old, DELETE, changes, deps,
                       lambda ctx, old=old, d=d: iam.apply_diff(ctx, iam.kms_key_io(ctx, old), d)))  # type: ignore[misc]  # a lambda with a bound default (mypy cannot infer it)
