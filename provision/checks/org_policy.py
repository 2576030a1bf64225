"""The organization policies a blueprint would break, read before any write.

Reads the effective policy of the constraints below that could refuse what the blueprint asks for (the
two bucket constraints only when the blueprint turns that protection off) with Org Policy v2
`getEffectivePolicy` on the project (when it exists) or on its parent (a new project inherits the
parent's), and refuses:
- `gcp.resourceLocations`: the dataset, a bucket provision creates, the ownership record's bucket and
  the hosted viewer's region, each outside the allowed locations (value groups such as
  `in:eu-locations` expanded by checks/location_groups.py);
- `iam.allowedPolicyMemberDomains`: a member of any grant outside the allowed customers. The policy
  lists Workspace customer IDs; Resource Manager's `organizations:search` (`directoryCustomerId:ID`)
  names each customer's organization, whose display name is its primary domain. A customer plan cannot
  resolve (its organization is hidden from the caller) leaves members unchecked, with a note;
- `storage.uniformBucketLevelAccess`, `storage.publicAccessPrevention`: a blueprint that turns either
  off (`bucket.uniform_access: false`, `bucket.public_access_prevention: inherited`) where it is enforced.
Without permission to read a policy (orgpolicy.policy.get, in roles/orgpolicy.policyViewer), a plan
note says what was not checked; that is never a failure. A parent's policies are read once for the
blueprints of a run (provision/gcp/shared.py); a project's own, once by its blueprint.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from provision.checks import location_groups
from provision.gcp.context import Ctx
from provision.gcp.errors import is_service_disabled, is_status, parse
from provision.gcp.shared import shared_reads

if TYPE_CHECKING:  # for annotations only: no import at run time
    from provision.blueprint.models import Blueprint

CONSTRAINTS = ("gcp.resourceLocations", "iam.allowedPolicyMemberDomains", "storage.uniformBucketLevelAccess",
               "storage.publicAccessPrevention")
VIEWER_ROLE = "roles/orgpolicy.policyViewer"
BUCKET_FLAGS = {"storage.uniformBucketLevelAccess": "uniform_access",     # constraint -> the bucket key it guards
                "storage.publicAccessPrevention": "public_access_prevention"}


def read(ctx: Ctx, resource: str, constraints: tuple[str, ...] = CONSTRAINTS) -> dict[str, dict[str, Any]] | str:
    """Effective rules by constraint (of `constraints`) on `resource` (`projects/P`, `folders/N`,
    `organizations/N`), or why they could not be read (a note's words). A constraint the service does not
    know is left out."""
    kind = resource.split("/", 1)[0]

    def one(constraint: str) -> dict[str, Any] | str | None:
        def get() -> dict[str, Any] | str | None:
            policies = getattr(ctx.target.orgpolicy(), kind)().policies()   # a client per thread (httplib2)
            try:
                policy: dict[str, Any] = policies.getEffectivePolicy(
                    name=f"{resource}/policies/{constraint}").execute(num_retries=0)
                return policy
            except Exception as exc:  # noqa: BLE001
                if is_status(exc, 403) and is_service_disabled(exc):
                    ge = parse(exc)
                    return (f"the Org Policy API (orgpolicy.googleapis.com) is not enabled where your calls are "
                            f"billed ({ge.message if ge else exc}); enable it there, or set a quota project where it is")
                if is_status(exc, 403):
                    return (f"you may not read them on {resource} (orgpolicy.policy.get, in {VIEWER_ROLE} on the "
                            "organization or folder)")
                if is_status(exc, 400, 404):
                    return None
                raise
        if kind == "projects":
            return ctx.call(get)
        # A parent's policies are the same for every blueprint under it: asked once per run.
        return shared_reads(ctx.target).get(("orgpolicy.getEffectivePolicy", resource, constraint),
                                            lambda: ctx.call(get))

    found = ctx.parallel([(lambda c=c: one(c)) for c in constraints])  # type: ignore[misc]  # a lambda with a bound default (mypy cannot infer it)
    why = next((f for f in found if isinstance(f, str)), None)
    if why:
        return why
    return {c: _rule(f) for c, f in zip(constraints, found, strict=True) if isinstance(f, dict)}   # None: unknown


def _rule(policy: dict[str, Any]) -> dict[str, Any]:
    """The unconditional rule of an effective policy (Google merges them into one); {} when none."""
    rules = [r for r in (policy.get("spec") or {}).get("rules") or [] if not r.get("condition")]
    return rules[0] if rules else {}


def allows(rule: dict[str, Any], match: Callable[[str], bool]) -> bool:
    """Whether an effective list rule lets a value through (`match(policy_value)` says a value covers it)."""
    if rule.get("denyAll"):
        return False
    values = rule.get("values") or {}
    if any(match(v) for v in values.get("deniedValues") or []):
        return False
    allowed = values.get("allowedValues")
    return bool(rule.get("allowAll") or not allowed or any(match(v) for v in allowed))


def problems(ctx: Ctx, bp: Blueprint, live: Any) -> tuple[list[str], list[str]]:
    """(problems, notes) for the blueprint against the effective policies where it will live."""
    resource = f"projects/{bp.project.id}" if live.project is not None else bp.project.parent
    if not resource:
        return [], []   # a new project without a parent: no organization, no policy
    constraints = relevant(bp)
    rules = read(ctx, resource, constraints)
    if isinstance(rules, str):
        return [], [f"organization policies not checked: {rules}; apply may still be refused by "
                    f"{', '.join(constraints[:-1])} or {constraints[-1]}"]
    out: list[str] = []
    notes: list[str] = []
    out += _locations(bp, live, rules.get("gcp.resourceLocations") or {}, resource)
    found, said = _members(ctx, bp, rules.get("iam.allowedPolicyMemberDomains") or {}, resource)
    out += found
    notes += said
    out += _bucket_flags(bp, live, rules, resource)
    return out, notes


def relevant(bp: Blueprint) -> tuple[str, ...]:
    """The constraints that could refuse this blueprint: a bucket constraint only refuses turning its
    protection off (provision's defaults turn both on), so it is read only when the blueprint does that."""
    weakened = _weakened(bp)
    return tuple(c for c in CONSTRAINTS if c not in BUCKET_FLAGS or weakened.get(BUCKET_FLAGS[c]))


def _locations(bp: Blueprint, live: Any, rule: dict[str, Any], resource: str) -> list[str]:
    if not rule or rule.get("allowAll"):
        return []
    out = []
    allowed = ((rule.get("values") or {}).get("allowedValues")) or []
    valid = f"allowed: {', '.join(allowed)}" if allowed else "no location is allowed"
    for path, location, what in _located(bp, live):
        if not allows(rule, lambda v, loc=location: location_groups.matches(v, loc)):  # type: ignore[misc]  # a lambda with a bound default (mypy cannot infer it)
            subject = what if what.startswith("the ownership record") else \
                f"{'.'.join(str(p) for p in path)}: {location} ({what})"
            out.append(f"{bp.where(*path)}: {subject} is outside the locations the organization policy "
                       f"gcp.resourceLocations allows on {resource}; {valid} (value groups as of "
                       f"{location_groups.AS_OF})")
    return out


def _located(bp: Blueprint, live: Any) -> list[tuple[tuple[Any, ...], str, str]]:
    """(blueprint path, location, what) of everything provision would create in a location."""
    out: list[tuple[tuple[Any, ...], str, str]] = [(("dataset", "location"), bp.dataset.location, "the Healthcare dataset")]
    bucket = live.bucket
    if bp.bucket and bp.bucket.create and not (bucket is not None and getattr(bucket, "exists", False)):
        out.append((("bucket", "location"), bp.bucket.location, "the DICOM bucket"))
    store = live.read.get("record")
    # The record as read (the plan's view, live.record, holds what the plan adopts too): empty, its bucket
    # is made by the first write.
    if getattr(store, "location", None) and getattr(getattr(store, "current", None), "empty", True):
        ours = bp.bucket and store.location.upper() == bp.bucket.location.upper()
        path = ("bucket", "location") if ours else ("dataset", "location")
        what = (f"the ownership record's bucket gs://{store.bucket} (to be created in {store.location}"
                + (", as the DICOM bucket)" if ours else ", provision's default without a bucket)"))
        out.append((path, store.location, what))
    hosting = getattr(bp.viewer, "hosting", None)
    region = getattr(hosting, "region", None) if hosting is not None else None
    if region:
        out.append((("viewer", "hosting", "region"), region, "the hosted viewer"))
    return out


def _grants(bp: Blueprint) -> list[tuple[tuple[Any, ...], str]]:
    """(blueprint path, member) of every member the blueprint grants anything to."""
    out: list[tuple[tuple[Any, ...], str]] = [(("iam", i, "member"), g.member) for i, g in enumerate(bp.iam)]
    for s, store in enumerate(bp.dicom_stores):
        out += [(("dicom_stores", s, "iam", i, "member"), g.member) for i, g in enumerate(store.iam)]
    hosting = getattr(bp.viewer, "hosting", None)
    for i, member in enumerate(getattr(hosting, "members", None) or []):
        out.append((("viewer", "hosting", "members", i), member))
    return out


def _members(ctx: Ctx, bp: Blueprint, rule: dict[str, Any], resource: str) -> tuple[list[str], list[str]]:
    allowed = ((rule.get("values") or {}).get("allowedValues")) or []
    if not rule or rule.get("allowAll") or not allowed:
        return [], []
    public = []
    hosting = getattr(bp.viewer, "hosting", None)
    if hosting is not None and hosting.access == "google-sign-in":   # its service's invoker is allUsers
        public.append(f"{bp.where('viewer', 'hosting', 'access')}: google-sign-in makes the viewer's Cloud Run "
                      "service public (roles/run.invoker for allUsers), which the organization policy "
                      f"iam.allowedPolicyMemberDomains on {resource} refuses; use access: iap (members of your "
                      "organization, no public grant), or ask an administrator for an exception on this project")
    customers = [v.removeprefix("is:") for v in allowed if not v.startswith(("under:", "principalSet:"))]
    domains = _customer_domains(ctx, customers)
    unknown = [c for c in customers if c not in domains]
    if unknown:
        return public, [f"iam.allowedPolicyMemberDomains on {resource} allows customer(s) {', '.join(unknown)}, whose "
                    "organization you cannot see (resourcemanager.organizations.get): members were not checked"]
    known = sorted({d for ds in domains.values() for d in ds})
    out, notes = public, []
    for path, member in _grants(bp):
        verdict = _member_domain(bp, member)
        if verdict is None or verdict in known:
            continue
        if verdict == "?":
            notes.append(f"{member}: not checked against iam.allowedPolicyMemberDomains (a service account of "
                         "another project)")
            continue
        out.append(f"{bp.where(*path)}: {member} is outside the customers the organization policy "
                   f"iam.allowedPolicyMemberDomains allows on {resource} ({', '.join(customers)}: "
                   f"{', '.join(known)}); grant a member of {' or '.join(known)} (a secondary domain of one of "
                   "these customers cannot be seen by plan)")
    return out, notes


def _member_domain(bp: Blueprint, member: str) -> str | None:
    """The domain a member belongs to; None when it needs no check, "?" when plan cannot tell."""
    kind, _, email = member.partition(":")
    if kind == "domain":
        return email.lower()
    if kind == "serviceAccount":
        host = email.partition("@")[2]
        if host.startswith("gcp-sa-") or (host.endswith(".gserviceaccount.com") and host.startswith(bp.project.id + ".")):
            return None   # Google's service agents; the blueprint project's own service accounts
        return "?"
    return email.rpartition("@")[2].lower() if "@" in email else None


def _customer_domains(ctx: Ctx, customers: list[str]) -> dict[str, list[str]]:
    """Customer ID -> its primary domain (its organization's display name), for those plan can see."""
    client = ctx.target.organizations()

    def one(customer: str) -> list[str]:
        try:
            found = ctx.call(lambda: list(client.search_organizations(
                request={"query": f"directoryCustomerId:{customer}"}, retry=None)))
        except Exception as exc:  # noqa: BLE001
            if is_status(exc, 403, 404, 501):
                return []
            raise
        return [o.display_name.lower() for o in found if o.display_name]

    return {c: d for c, d in zip(customers, ctx.parallel([(lambda c=c: one(c)) for c in customers]), strict=True) if d}  # type: ignore[misc]  # a lambda with a bound default (mypy cannot infer it)


def _bucket_flags(bp: Blueprint, live: Any, rules: dict[str, Any], resource: str) -> list[str]:
    """A blueprint that turns off what the organization enforces on buckets."""
    if not bp.bucket:
        return []
    out = []
    weakened = _weakened(bp)
    for constraint, key in BUCKET_FLAGS.items():
        if (rules.get(constraint) or {}).get("enforce") and weakened[key]:
            value = getattr(bp.bucket, key)
            out.append(f"{bp.where('bucket', key)}: bucket.{key}: {str(value).lower()}, but the organization policy "
                       f"{constraint} is enforced on {resource}; remove the key (provision's default turns it on)")
    return out


def _weakened(bp: Blueprint) -> dict[str, bool]:
    """Which of the bucket's protections the blueprint turns off (bucket key -> off)."""
    if not bp.bucket:
        return {}
    return {"uniform_access": bp.bucket.uniform_access is False,
            "public_access_prevention": bp.bucket.public_access_prevention == "inherited"}
