"""Non-authoritative IAM: add (or remove) exactly the (role, member) pairs provision owns.

One read-modify-write for the kinds of policy we touch (project, bucket, DICOM store, KMS key):
read with requestedPolicyVersion 3, change only unconditional bindings of the named roles,
write with the etag just read (and version 3, so conditional bindings survive), retry the
whole cycle on a conflict (409 ABORTED, Storage 412), then re-read until our own change is
visible, as Terraform does. Bindings we do not name are never touched.

Policies travel as plain dicts in the REST shape: {version, etag, bindings[{role, members, condition}]}.
Google's libraries are imported where they are used (provision/gcp/__init__.py says why).
"""
from __future__ import annotations

import copy
import hashlib
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, cast

from provision.gcp import quota
from provision.gcp.context import Ctx
from provision.gcp.retry import NotYet
from provision.resources.steps import field_change
from provision.words import plural

Pair = tuple[str, str]  # (role, member)


@dataclass
class PolicyIO:
    """How to read and write one resource's policy through its real client."""

    resource: str
    read: Callable[[], dict[str, Any]]
    write: Callable[[dict[str, Any]], dict[str, Any]]
    quota: str | None = None   # the quota metric a write charges, when known (gcp/quota.py)


def pairs_of(grants: Iterable[Any]) -> list[Pair]:
    """Blueprint grants (member + roles) as sorted unique (role, member) pairs."""
    out = {(role, g.member) for g in grants for role in g.roles}
    return sorted(out)


def unconditional(policy: dict[str, Any]) -> set[Pair]:
    out: set[Pair] = set()
    for b in policy.get("bindings") or []:
        if b.get("condition"):
            continue
        for m in b.get("members") or []:
            out.add((b["role"], m))
    return out


def missing(policy: dict[str, Any] | None, pairs: Iterable[Pair]) -> list[Pair]:
    have = unconditional(policy or {})
    return [p for p in pairs if p not in have]


def present(policy: dict[str, Any] | None, pairs: Iterable[Pair]) -> list[Pair]:
    have = unconditional(policy or {})
    return [p for p in pairs if p in have]


def with_added(policy: dict[str, Any], pairs: Iterable[Pair]) -> dict[str, Any]:
    """A copy of `policy` with the pairs added to unconditional bindings (others untouched)."""
    new = copy.deepcopy(policy)
    bindings = new.setdefault("bindings", [])
    for role, member in pairs:
        slot = next((b for b in bindings if b.get("role") == role and not b.get("condition")), None)
        if slot is None:
            slot = {"role": role, "members": []}
            bindings.append(slot)
        members = list(slot.get("members") or [])
        if member not in members:
            members.append(member)
        slot["members"] = sorted(members)
    new["version"] = 3
    return new


def with_removed(policy: dict[str, Any], pairs: Iterable[Pair]) -> dict[str, Any]:
    """A copy of `policy` without the pairs (from unconditional bindings only); empty bindings dropped."""
    drop = set(pairs)
    new = copy.deepcopy(policy)
    kept = []
    for b in new.get("bindings") or []:
        if not b.get("condition"):
            b["members"] = [m for m in b.get("members") or [] if (b["role"], m) not in drop]
            if not b["members"]:
                continue
        kept.append(b)
    new["bindings"] = kept
    new["version"] = 3
    return new


def read(ctx: Ctx, io: PolicyIO) -> dict[str, Any]:
    return ctx.call(io.read)


def add(ctx: Ctx, io: PolicyIO, pairs: Iterable[Pair], *, current: dict[str, Any] | None = None) -> list[Pair]:
    """Add the pairs that are missing; returns those this call added (visible on return).
    `current`: the policy the caller has just read (its etag guards the first write; a conflict
    reads it again), so it is not read twice."""
    return _rmw(ctx, io, list(pairs), adding=True, current=current)


def remove(ctx: Ctx, io: PolicyIO, pairs: Iterable[Pair]) -> list[Pair]:
    """Remove exactly these pairs where present; returns those removed."""
    return _rmw(ctx, io, list(pairs), adding=False)


def _rmw(ctx: Ctx, io: PolicyIO, pairs: list[Pair], *, adding: bool, current: dict[str, Any] | None = None) -> list[Pair]:
    if not pairs:
        return []
    fresh = [current] if current is not None else []   # the caller's read serves the first cycle only

    def cycle() -> list[Pair]:
        current = fresh.pop() if fresh else io.read()
        todo = missing(current, pairs) if adding else present(current, pairs)
        if not todo:
            return []
        new = with_added(current, todo) if adding else with_removed(current, todo)
        new["etag"] = current.get("etag")
        io.write(new)
        return todo

    changed = ctx.call(cycle, quota=io.quota)
    if changed:
        _until_visible(ctx, io, pairs, adding)
    return changed


def _until_visible(ctx: Ctx, io: PolicyIO, pairs: list[Pair], adding: bool) -> None:
    """Re-read until our own change shows (IAM is eventually consistent)."""

    def check() -> None:
        policy = io.read()
        left = missing(policy, pairs) if adding else present(policy, pairs)
        if left:
            role, member = left[0]
            raise NotYet(f"IAM change on {io.resource} not visible yet ({member} {role})")

    ctx.call(check)


# ---------------------------------------------------------------------------- what provision added
# The record (provision/resources/record.py) names every pair provision added: the entry is written before
# the grant, and dropped after the revocation. A pair that was there before provision is never
# recorded, so it is never revoked.

def grant_recorded(ctx: Ctx, io: PolicyIO, pairs: Iterable[Pair]) -> list[Pair]:
    """Add the pairs absent now, recording them first (an interrupted run still knows, next time,
    that provision added them). Returns the pairs added."""
    current = ctx.call(io.read)
    todo = missing(current, list(pairs))
    if not todo:
        return []
    ctx.facts.record.add_grants(ctx, io.resource, todo)
    return add(ctx, io, todo, current=current)


def apply_diff(ctx: Ctx, io: PolicyIO, d: "GrantDiff", *, agent: bool = False) -> str:
    """Carry out a GrantDiff on one policy: grant what is missing (recorded first; `agent`: to the
    Healthcare service agent, known only at run time), revoke what provision added and the
    blueprint dropped, and forget in the record what is already gone."""
    add = [(role, ctx.facts.known_agent()) for role, _ in d.add] if agent else d.add
    added = grant_recorded(ctx, io, add) if add else []
    removed = remove(ctx, io, d.remove) if d.remove else []
    if d.remove or d.forget:
        ctx.facts.record.drop_grants(ctx, io.resource, d.remove + d.forget)
    return summary(added, removed)


@dataclass
class GrantDiff:
    """One policy against the blueprint and the record."""

    add: list[Pair]        # named by the blueprint, absent
    remove: list[Pair]     # provision added them, the blueprint no longer names them, present
    forget: list[Pair]     # recorded, no longer named, already gone: only the record changes
    foreign: list[Pair]    # access to data that neither the blueprint nor provision gave (drift)

    @property
    def changing(self) -> bool:
        return bool(self.add or self.remove or self.forget)

    @property
    def forgets(self) -> int:
        """Record entries forgotten when that is all that changes (else 0: see Step.forgets)."""
        return 0 if self.add or self.remove else len(self.forget)

    def describe(self) -> list[str]:
        return (describe(self.add) + describe(self.remove, "-")
                + [f"- {m} {r} (already gone: forget it in the record)" for r, m in self.forget])

    def drift(self) -> list[str]:
        return [f"{m} has {r}: not in the blueprint and not granted by provision (left alone)"
                for r, m in self.foreign]

    def fields(self) -> list[dict[str, Any]]:
        """The bindings that change, for --json: {"field": "binding", "before", "after"}."""
        return ([field_change("binding", None, {"role": r, "member": m}) for r, m in self.add]
                + [field_change("binding", {"role": r, "member": m}, None) for r, m in self.remove + self.forget])


def left_alone(policy: dict[str, Any] | None, named: Iterable[Pair], recorded: Iterable[Pair], where: str) -> list[str]:
    """Destroy's words for pairs the blueprint names that are there but were not granted by provision."""
    rec = set(recorded)
    return [f"{where}: {m} {r} was not granted by provision: left alone" for r, m in present(policy, named)
            if (r, m) not in rec]


# Roles that give access to images or data: extra holders of these are drift worth reporting.
DATA_ROLES = re.compile(r"^roles/(healthcare\.(admin|dataset\w*|dicom\w*)|storage\.(admin|object\w*|legacyObject\w*)"
                        r"|owner|editor|viewer)$")
# Who holds such roles by construction (the project's own convenience members on buckets).
STRUCTURAL_MEMBERS = ("projectOwner:", "projectEditor:", "projectViewer:")


def diff_grants(policy: dict[str, Any] | None, desired: Iterable[Pair], recorded: Iterable[Pair], *,
                ignore_roles: Iterable[str] = (), ignore_members: Iterable[str] = ()) -> GrantDiff:
    """What to add, revoke and forget on one policy, and which foreign data-access grants it holds."""
    have = unconditional(policy or {})
    want = set(desired)
    gone = sorted(set(recorded) - want)
    skip_roles, skip_members = set(ignore_roles), set(ignore_members)
    foreign = sorted(p for p in have if p not in want and p not in set(recorded) and DATA_ROLES.match(p[0])
                     and p[0] not in skip_roles and p[1] not in skip_members
                     and not p[1].startswith(STRUCTURAL_MEMBERS))
    return GrantDiff([p for p in sorted(want) if p not in have], [p for p in gone if p in have],
                     [p for p in gone if p not in have], foreign)


# ---------------------------------------------------------------------------- legacy marks
# Before the record, a pair apply added was marked with a label on the resource holding the
# policy: `provision-iam-<10 hex of sha256(member|role)>` = `added`. The next apply adopts the
# marked pairs into the record and removes the labels (resources/ownership.py).
MARK_PREFIX = "provision-iam-"
MARK_VALUE = "added"


@dataclass
class LabelsIO:
    """How to read and patch one resource's labels (`patch`: key -> value, or None to remove)."""

    resource: str
    read: Callable[[], dict[str, Any]]
    patch: Callable[[dict[str, Any]], None]


def mark_key(pair: Pair) -> str:
    role, member = pair
    return MARK_PREFIX + hashlib.sha256(f"{member}|{role}".encode()).hexdigest()[:10]


def marked(labels: dict[str, Any] | None, policy: dict[str, Any] | None) -> list[Pair]:
    """The pairs of the policy whose legacy mark is on the resource."""
    labels = labels or {}
    return sorted(p for p in unconditional(policy or {}) if labels.get(mark_key(p)) == MARK_VALUE)


def marks(labels: dict[str, Any] | None) -> list[str]:
    """The legacy mark labels on a resource."""
    return sorted(k for k in (labels or {}) if k.startswith(MARK_PREFIX))


def summary(added: list[Pair], removed: list[Pair]) -> str:
    """What a grant step did, in words."""
    parts = ([f"granted {plural(len(added), 'role')}"] if added else []) + ([f"revoked {len(removed)}"] if removed else [])
    return ", ".join(parts) or "nothing left to change"


def describe(pairs: Iterable[Pair], sign: str = "+") -> list[str]:
    return [f"{sign} {member} {role}" for role, member in pairs]


# ---------------------------------------------------------------------------- adapters
def project_io(ctx: Ctx, project_id: str, mask: tuple[str, ...] = ()) -> PolicyIO:
    """Resource Manager v3 projects getIamPolicy / setIamPolicy (protobuf through the gapic client).
    `mask`: the updateMask paths (proto names, e.g. audit_configs) of the write; none: Google's
    default `bindings,etag`, which leaves the policy's auditConfigs as they are."""
    from google.iam.v1 import iam_policy_pb2, options_pb2, policy_pb2
    from google.protobuf import field_mask_pb2, json_format

    client = ctx.target.projects()
    resource = f"projects/{project_id}"

    def read_policy() -> dict[str, Any]:
        req = iam_policy_pb2.GetIamPolicyRequest(resource=resource, options=options_pb2.GetPolicyOptions(requested_policy_version=3))
        pb = client.get_iam_policy(request=req, retry=None)
        return json_format.MessageToDict(pb)

    def write_policy(policy: dict[str, Any]) -> dict[str, Any]:
        # auditConfigs only when the mask names them: without it Google ignores them anyway, and a
        # grant's write would otherwise carry back another step's audit configs it read.
        fields = ("version", "etag", "bindings") + (("auditConfigs",) if "audit_configs" in mask else ())
        body = {k: v for k, v in policy.items() if k in fields}
        pb = json_format.ParseDict(body, policy_pb2.Policy(), ignore_unknown_fields=True)
        req = iam_policy_pb2.SetIamPolicyRequest(resource=resource, policy=pb)
        if mask:
            req.update_mask.CopyFrom(field_mask_pb2.FieldMask(paths=list(mask)))
        return json_format.MessageToDict(client.set_iam_policy(request=req, retry=None))

    return PolicyIO(resource, read_policy, write_policy, quota.CRM_WRITES)


def bucket_io(ctx: Ctx, bucket_name: str) -> PolicyIO:
    """Cloud Storage bucket IAM through google-cloud-storage (412 on a stale etag)."""
    from google.api_core.iam import Policy

    client = ctx.target.storage()
    bucket = client.bucket(bucket_name)

    def read_policy() -> dict[str, Any]:
        policy = bucket.get_iam_policy(requested_policy_version=3, retry=None)
        out = policy.to_api_repr()
        out["bindings"] = [dict(b, members=sorted(b.get("members") or [])) for b in out.get("bindings", [])]
        return cast("dict[str, Any]", out)

    def write_policy(policy: dict[str, Any]) -> dict[str, Any]:
        p = Policy.from_api_repr(copy.deepcopy({k: v for k, v in policy.items() if k in ("version", "etag", "bindings")}))
        return cast("dict[str, Any]", bucket.set_iam_policy(p, retry=None).to_api_repr())

    return PolicyIO(f"gs://{bucket_name}", read_policy, write_policy)


def dicom_store_io(ctx: Ctx, store_name: str) -> PolicyIO:
    """Healthcare dicomStores getIamPolicy (GET) / setIamPolicy through the discovery client."""

    def stores() -> Any:
        return ctx.target.healthcare().projects().locations().datasets().dicomStores()

    def read_policy() -> dict[str, Any]:
        return cast("dict[str, Any]", stores().getIamPolicy(resource=store_name, options_requestedPolicyVersion=3).execute(num_retries=0))

    def write_policy(policy: dict[str, Any]) -> dict[str, Any]:
        body = {k: v for k, v in policy.items() if k in ("version", "etag", "bindings", "auditConfigs")}
        return cast("dict[str, Any]", stores().setIamPolicy(resource=store_name, body={"policy": body}).execute(num_retries=0))

    return PolicyIO(store_name, read_policy, write_policy)


def kms_key_io(ctx: Ctx, key_name: str) -> PolicyIO:
    """Cloud KMS cryptoKeys getIamPolicy (a GET) / setIamPolicy through the discovery client."""

    def keys() -> Any:
        return ctx.target.kms().projects().locations().keyRings().cryptoKeys()

    def read_policy() -> dict[str, Any]:
        return cast("dict[str, Any]", keys().getIamPolicy(resource=key_name, options_requestedPolicyVersion=3).execute(num_retries=0))

    def write_policy(policy: dict[str, Any]) -> dict[str, Any]:
        body = {k: v for k, v in policy.items() if k in ("version", "etag", "bindings")}
        return cast("dict[str, Any]", keys().setIamPolicy(resource=key_name, body={"policy": body}).execute(num_retries=0))

    return PolicyIO(key_name, read_policy, write_policy)


# ---------------------------------------------------------------------------- label adapters
def project_labels(ctx: Ctx, project_id: str) -> LabelsIO:
    """Project labels (Resource Manager v3 updateProject, mask `labels`; others kept)."""

    def read_labels() -> dict[str, Any]:
        pb = ctx.target.projects().get_project(name=f"projects/{project_id}", retry=None)
        return dict(pb.labels)

    def patch(changes: dict[str, Any]) -> None:
        from google.cloud import resourcemanager_v3
        from google.protobuf import field_mask_pb2

        client = ctx.target.projects()
        pb = client.get_project(name=f"projects/{project_id}", retry=None)
        labels = {k: v for k, v in dict(pb.labels).items() if changes.get(k, v) is not None}
        labels.update({k: v for k, v in changes.items() if v is not None})
        op = client.update_project(project=resourcemanager_v3.Project(name=pb.name, labels=labels),
                                   update_mask=field_mask_pb2.FieldMask(paths=["labels"]), retry=None)
        ctx.wait_crm(op)

    return LabelsIO(f"projects/{project_id}", read_labels, patch)


def bucket_labels(ctx: Ctx, bucket_name: str) -> LabelsIO:
    """Bucket labels (Storage JSON API PATCH: a null value removes a label)."""

    def read_labels() -> dict[str, Any]:
        return dict(ctx.target.storage().get_bucket(bucket_name, retry=None).labels or {})

    def patch(changes: dict[str, Any]) -> None:
        bucket = ctx.target.storage().get_bucket(bucket_name, retry=None)
        labels = dict(bucket.labels or {})
        for k, v in changes.items():
            if v is None:
                labels.pop(k, None)
            else:
                labels[k] = v
        bucket.labels = labels
        bucket.patch(retry=None)

    return LabelsIO(f"gs://{bucket_name}", read_labels, patch)


def dicom_store_labels(ctx: Ctx, store_name: str) -> LabelsIO:
    """DICOM store labels (Healthcare PATCH updateMask=labels, the whole map)."""

    def stores() -> Any:
        return ctx.target.healthcare().projects().locations().datasets().dicomStores()

    def read_labels() -> dict[str, Any]:
        return dict(stores().get(name=store_name).execute(num_retries=0).get("labels") or {})

    def patch(changes: dict[str, Any]) -> None:
        with ctx.resource_lock(store_name):  # the import step writes this store's labels too
            labels = read_labels()
            for k, v in changes.items():
                if v is None:
                    labels.pop(k, None)
                else:
                    labels[k] = v
            stores().patch(name=store_name, updateMask="labels", body={"labels": labels}).execute(num_retries=0)

    return LabelsIO(store_name, read_labels, patch)
