"""The Healthcare service agent's read access to the import bucket.

Kind `bucket-iam`. On the blueprint's own bucket (in this project), provision grants
`roles/storage.objectViewer` to the agent when a store imports from it (additive RMW, 412
conflicts retried). On a foreign bucket it grants nothing: it checks what it can (the bucket's
policy, if we may read it) and, when the agent lacks access, says exactly what to ask the
bucket's owner. Grants the record names on buckets the blueprint no longer uses are revoked.
Reads `bucket_policy` (own bucket), `foreign_access:<bucket>`, `bucket_policy:<bucket>` (recorded).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from provision.gcp.context import Ctx
from provision.resources import iam
from provision.resources.base import Draft, Key, Live, Reads
from provision.resources.bucket_access import VIEWER, agent_can_read, ask_owner, check_foreign, read_if_there
from provision.resources.bucket_reads import is_ours
from provision.resources.healthcare_names import agent_member
from provision.resources.import_sources import source_buckets
from provision.resources.steps import CREATE, DELETE, NOOP, UPDATE, Options, Step

if TYPE_CHECKING:  # for annotations only: no import at run time
    from provision.blueprint.models import Blueprint

KIND = "bucket-iam"


def read(ctx: Ctx, bucket: str) -> dict[str, Any]:
    return iam.read(ctx, iam.bucket_io(ctx, bucket))


# ---------------------------------------------------------------------------- kind
def _recorded_buckets(live: Live) -> list[str]:
    return sorted(r[len("gs://"):] for r in live.record.granted_resources() if r.startswith("gs://"))


def reads(bp: Blueprint, live: Live, phase: int) -> Reads:
    out: Reads = {}
    number = live.project_number
    own = bp.bucket.name if bp.bucket else None
    if phase == 2:
        if own and is_ours(bp, live) and live.own_bucket.exists:
            out[Key.BUCKET_POLICY] = lambda ctx: read(ctx, own)
        if number:
            member = agent_member(number)
            for b in source_buckets(bp):
                if b != own or not is_ours(bp, live):
                    out[f"foreign_access:{b}"] = lambda ctx, b=b: check_foreign(ctx, b, member)  # type: ignore[misc]  # a lambda with a bound default (mypy cannot infer it)
    if phase == 3:
        for b in _recorded_buckets(live):
            if b != own:
                out[f"bucket_policy:{b}"] = lambda ctx, b=b: read_if_there(ctx, b)  # type: ignore[misc]  # a lambda with a bound default (mypy cannot infer it)
    return out


def diff(bp: Blueprint, live: Live, opts: Options, draft: Draft) -> None:
    agent = draft.facts.agent
    own = bp.bucket.name if bp.bucket else None
    if not opts.destroy and own is not None and is_ours(bp, live) and own in source_buckets(bp):
        _own(bp, live, draft, own, agent)
    for b in _recorded_buckets(live):
        if b == own and not opts.destroy:
            continue
        pairs = sorted(live.record.pairs_on(f"gs://{b}"))
        policy = live.bucket_policy if b == own else live.get(f"bucket_policy:{b}")
        d = iam.diff_grants(policy, [], pairs)
        why = "the bucket is gone" if policy is None else None
        changes = d.describe() if policy is not None else [f"- {m} {r} (bucket gone or hidden: forget it)" for r, m in pairs]
        draft.add(Step(f"{KIND}:{b}" if b != own else KIND, KIND, f"gs://{b}", DELETE, changes, ["record"],
                       _revoke(b, d, gone=why is not None), forgets=len(pairs) if why else d.forgets))
    if opts.destroy:
        return
    for b, access in sorted((k.split(":", 1)[1], v) for k, v in live.read.items() if k.startswith("foreign_access:")):
        member = agent or "the Healthcare service agent"
        if access is False:
            draft.note(f"the Healthcare service agent cannot read gs://{b} (not this blueprint's bucket); "
                       + ask_owner(b, member))
        elif access is None:
            draft.note(f"gs://{b} is not this blueprint's bucket and its policy is not readable: the import "
                       f"needs {member} to hold {VIEWER} on it (nothing to ask for when the bucket is public, "
                       "readable by allUsers, as public datasets' buckets are)")
    if live.project is None:
        # A new project: its agent's email is known only once the project exists (its number).
        future = agent_member("<PROJECT_NUMBER>")
        for b in source_buckets(bp):
            if b != own or not is_ours(bp, live):
                draft.note(f"gs://{b} is not this blueprint's bucket: the new project's Healthcare service agent "
                           f"({future.split(':', 1)[1]}, known once the project exists) will need "
                           f"{VIEWER} on it for the import (nothing to ask for when the bucket is public, readable "
                           "by allUsers, as public datasets' buckets are); " + ask_owner(b, future))


def _own(bp: Blueprint, live: Live, draft: Draft, bucket: str, agent: str | None) -> None:
    state = live.bucket
    fresh = state is None or not state.exists or live.bucket_replace
    policy = None if fresh else live.bucket_policy
    d = iam.diff_grants(policy, [(VIEWER, agent)] if agent else [], live.record.pairs_on(f"gs://{bucket}"),
                        ignore_members=[agent] if agent else [])
    if fresh or not draft.facts.agent_exists:
        d.add = [(VIEWER, agent or "the Healthcare service agent")]   # its email is known once the project is
    elif agent_can_read(policy, agent):
        d.add = []   # it reads through another role, or allUsers
    action = NOOP if not d.changing else (CREATE if fresh else UPDATE)
    run = (lambda ctx: iam.apply_diff(ctx, iam.bucket_io(ctx, bucket), d, agent=True)) if d.changing else None
    claims = [("grant", f"gs://{bucket}", r, m) for r, m in d.add if m == agent]   # the agent is known
    draft.add(Step(KIND, KIND, f"gs://{bucket}", action, d.describe(), ["bucket", "service-agent", "record"], run,
                   drift=d.drift(), fields=d.fields(), claims=claims))


def _revoke(bucket: str, d: iam.GrantDiff, *, gone: bool) -> Callable[[Ctx], Any]:
    """Revoke provision's grants on a bucket the blueprint no longer imports from (a gone bucket's
    policy reads as empty: its grants are only forgotten)."""
    def run(ctx: Ctx) -> str:
        done = iam.apply_diff(ctx, iam.bucket_io(ctx, bucket), d)
        return "forgotten (the bucket is gone)" if gone else done
    return run
