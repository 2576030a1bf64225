"""Org Policy v2's backend: policies on organizations, folders and projects, the effective policy
along the resource hierarchy, and the refusals other APIs answer when a call breaks one. No HTTP here.

Records in `world.docs`:
- ("orgpolicy", "<kind>/<id>/policies/<constraint>"): a Policy as written (projects keyed by ID);
- ("folder", "folders/N"): {"parent"} (PUT /_emulator/folders/N), the folder's place in the hierarchy;
- ("customer", "C0..."): {"domains", "organization"} (PUT /_emulator/customers/C0...), a Workspace or
  Cloud Identity customer. `iam.allowedPolicyMemberDomains` lists customer IDs, not domains: the emulator
  maps a customer to the domains of its members through this table (Google's own mapping is its directory,
  which no API the provisioner calls shows). Seeded: customer `C0emul8r1`, domain example.com, organization
  organizations/123456789012 (the seeded billing account's), so `example.com` members pass.

Effective policy (our reading of Google's documented rules): walk from the organization down to the
resource; a policy with `reset` restores the default; one with `inheritFromParent` (list constraints) adds
its allowed and denied values to what it inherits; any other replaces it. Conditional rules are kept in
the stored policy but never match (tags are not emulated). With no policy anywhere the answer is the
constraint's default: `allowAll` for a list constraint, `enforce: false` for a boolean one (a choice: no
capture shows Google's answer for an unset constraint).
"""
from __future__ import annotations

import builtins
from datetime import datetime, timezone
from typing import Any

from provision.emulator import iam
from provision.emulator.state_base import ApiBackend
from provision.emulator.common import parse_agent_email
from provision.emulator.errors import ApiError, already_exists, invalid_argument, not_found, permission_denied
from provision.emulator.orgpolicy import groups


ATTACH_AS = "orgpolicy"
LIST = "list"
BOOLEAN = "boolean"
# The constraints the emulator knows (and enforces), by kind.
CONSTRAINTS = {"gcp.resourceLocations": LIST, "iam.allowedPolicyMemberDomains": LIST,
               "storage.uniformBucketLevelAccess": BOOLEAN, "storage.publicAccessPrevention": BOOLEAN}
SEEDED_CUSTOMER = "C0emul8r1"
SEEDED_ORGANIZATION = "organizations/123456789012"
PRECONDITION_FAILURE = "type.googleapis.com/google.rpc.PreconditionFailure"
LOCATIONS_HELP = "https://cloud.google.com/resource-manager/docs/organization-policy/defining-locations"


class OrgPolicy(ApiBackend):
    """Cross-API interface: `location_refusal`, `enforced`, `check_members`."""

    def seeds(self) -> list[tuple[str, str, dict]]:
        """The seeded customer (module docstring), so `example.com` members pass."""
        return [("customer", SEEDED_CUSTOMER, {"domains": ["example.com"], "organization": SEEDED_ORGANIZATION})]

    # ----- the hierarchy ----------------------------------------------------------------------
    def resource(self, kind: str, ident: str) -> tuple[str, str]:
        """(storage key, wire name) of `kind/ident`; a project by ID or number (403 when unknown)."""
        if kind != "projects":
            return f"{kind}/{ident}", f"{kind}/{ident}"
        record = self.world.crm.lookup(ident)
        if record is None:
            raise permission_denied(f"Permission denied on resource 'projects/{ident}' (or it may not exist).")
        return f"projects/{record['projectId']}", f"projects/{record['number']}"

    def ancestry(self, key: str) -> list[str]:
        """`key` and its ancestors, leaf first: projects/P, folders/..., organizations/N."""
        out = [key]
        node = key
        for _ in range(12):   # Google nests folders at most 10 deep
            if node.startswith("projects/"):
                record = self.world.crm.lookup(node.split("/", 1)[1])
                parent = (record or {}).get("parent") or ""
            elif node.startswith("folders/"):
                parent = (self.docs.get("folder", node) or {}).get("parent") or ""
            else:
                parent = ""
            if not parent:
                break
            out.append(parent)
            node = parent
        return out

    def put_folder(self, folder: str, parent: str) -> dict:
        if not parent.startswith(("folders/", "organizations/")):
            raise invalid_argument("parent must be folders/N or organizations/N")
        self.docs.put("folder", folder, {"parent": parent})
        return {"name": folder, "parent": parent}

    def put_customer(self, customer: str, domains: list[str], organization: str | None) -> dict:
        doc = {"domains": sorted({d.lower() for d in domains}), "organization": organization or ""}
        self.docs.put("customer", customer, doc)
        return {"customer": customer, **doc}

    def organizations(self) -> list[dict]:
        """The v3 Organization of every customer that names one (its display name: the first domain)."""
        out = []
        for cid, doc in self.docs.list("customer"):
            if doc.get("organization"):
                out.append({"name": doc["organization"], "displayName": (doc.get("domains") or [""])[0],
                            "directoryCustomerId": cid, "state": "ACTIVE", "etag": iam.make_etag([cid, doc])})
        return out

    # ----- policies -----------------------------------------------------------------------------
    def create(self, key: str, wire: str, body: dict) -> dict:
        constraint = self._constraint_of(key, wire, body.get("name"))
        with self.world.db.transaction():
            if self.docs.get("orgpolicy", f"{key}/policies/{constraint}") is not None:
                raise already_exists(f"Policy already exists for constraint constraints/{constraint} on {wire}.")
            return self._write(key, wire, constraint, body)

    def patch(self, key: str, wire: str, constraint: str, body: dict) -> dict:
        self._constraint_of(key, wire, body.get("name") or f"{wire}/policies/{constraint}")
        with self.world.db.transaction():
            if self.docs.get("orgpolicy", f"{key}/policies/{constraint}") is None:
                raise not_found(f"Policy for constraint constraints/{constraint} was not found on {wire}.")
            return self._write(key, wire, constraint, body)

    def get(self, key: str, wire: str, constraint: str) -> dict:
        doc = self.docs.get("orgpolicy", f"{key}/policies/{constraint}")
        if doc is None:
            raise not_found(f"Policy for constraint constraints/{constraint} was not found on {wire}.")
        return self._view(doc, wire, constraint)

    def delete(self, key: str, wire: str, constraint: str) -> None:
        with self.world.db.transaction():
            if self.docs.get("orgpolicy", f"{key}/policies/{constraint}") is None:
                raise not_found(f"Policy for constraint constraints/{constraint} was not found on {wire}.")
            self.docs.delete("orgpolicy", f"{key}/policies/{constraint}")

    def list(self, key: str, wire: str) -> list[dict]:
        prefix = f"{key}/policies/"
        return [self._view(doc, wire, name[len(prefix):]) for name, doc in self.docs.list("orgpolicy", prefix)]

    def _constraint_of(self, key: str, wire: str, name: Any) -> str:
        if not isinstance(name, str) or "/policies/" not in name:
            raise invalid_argument("Policy name is required: {parent}/policies/{constraint}.",
                                   [("policy.name", "required")])
        owner, _, constraint = name.partition("/policies/")
        if owner not in (key, wire) and self.resource(*owner.split("/", 1))[0] != key:
            raise invalid_argument(f"Policy name {name!r} does not belong to {wire}.", [("policy.name", "invalid")])
        if constraint not in CONSTRAINTS:
            raise invalid_argument(f"Constraint constraints/{constraint} does not exist (or the emulator does not "
                                   f"know it; it knows {', '.join(sorted(CONSTRAINTS))}).",
                                   [("policy.name", "unknown constraint")])
        return constraint

    def _write(self, key: str, wire: str, constraint: str, body: dict) -> dict:
        spec = dict(body.get("spec") or {})
        _check_spec(constraint, spec)
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        spec["updateTime"] = now
        spec["etag"] = iam.make_etag([key, constraint, spec.get("rules"), now])
        doc = {"spec": spec}
        if body.get("dryRunSpec"):
            doc["dryRunSpec"] = body["dryRunSpec"]
        self.docs.put("orgpolicy", f"{key}/policies/{constraint}", doc)
        return self._view(doc, wire, constraint)

    @staticmethod
    def _view(doc: dict, wire: str, constraint: str) -> dict:
        return {"name": f"{wire}/policies/{constraint}", **{k: v for k, v in doc.items() if v}}

    # ----- effective policy ---------------------------------------------------------------------
    def effective_spec(self, key: str, constraint: str) -> dict:
        """The effective spec of `constraint` on `key` (module docstring: the rules of inheritance)."""
        kind = CONSTRAINTS[constraint]
        state: dict | None = None
        for node in reversed(self.ancestry(key)):
            doc = self.docs.get("orgpolicy", f"{node}/policies/{constraint}")
            spec = (doc or {}).get("spec")
            if not spec:
                continue
            if spec.get("reset"):
                state = None
                continue
            own = _fold(spec.get("rules") or [], kind)
            state = _merge(state, own) if spec.get("inheritFromParent") and kind == LIST else own
        return {"rules": [_render(state, kind)]}

    def effective(self, key: str, wire: str, constraint: str) -> dict:
        if constraint not in CONSTRAINTS:
            raise invalid_argument(f"Constraint constraints/{constraint} does not exist.")
        return {"name": f"{wire}/policies/{constraint}", "spec": self.effective_spec(key, constraint)}

    # ----- enforcement (the interface other APIs call) --------------------------------------------
    def allows_location(self, project_id: str, location: str) -> bool:
        rule = self.effective_spec(f"projects/{project_id}", "gcp.resourceLocations")["rules"][0]
        return _list_allows(rule, lambda v: groups.matches(v, location))

    def location_refusal(self, project: dict, location: str, what: str) -> ApiError | None:
        """Google's refusal of creating `what` ("a dataset") in `location`, as Secret Manager words it
        (firebase-tools#6454: 400 FAILED_PRECONDITION with a PreconditionFailure; no Healthcare capture
        exists, so that wording is our choice); None when the policy allows it."""
        if self.allows_location(project["projectId"], location):
            return None
        subject = f"orgpolicy:projects/{project.get('number') or project.get('projectNumber')}"
        message = (f"Constraint constraints/gcp.resourceLocations violated for [{subject}] attempting to create "
                   f"{what} in [{location}]. For more information, see {LOCATIONS_HELP}.")
        return ApiError("FAILED_PRECONDITION", message, [{"@type": PRECONDITION_FAILURE, "violations": [
            {"type": "constraints/gcp.resourceLocations", "subject": subject, "description": message}]}])

    def enforced(self, project_id: str, constraint: str) -> bool:
        """Whether a boolean constraint is enforced on the project."""
        return bool(self.effective_spec(f"projects/{project_id}", constraint)["rules"][0].get("enforce"))

    def check_members(self, project_id: str, members: builtins.list[str]) -> None:
        """400 FAILED_PRECONDITION when a member is outside the customers `iam.allowedPolicyMemberDomains`
        allows (the wording of terraform-example-foundation#1257 and azure-docs#117449)."""
        rule = self.effective_spec(f"projects/{project_id}", "iam.allowedPolicyMemberDomains")["rules"][0]
        if rule.get("allowAll"):
            return
        outside = [m for m in members if not _list_allows(rule, lambda v, m=m: self._member_in(m, v))]
        if not outside:
            return
        subject = f"orgpolicy:projects/{project_id}"
        raise ApiError("FAILED_PRECONDITION", "One or more users named in the policy do not belong to a permitted "
                       "customer.", [{"@type": PRECONDITION_FAILURE, "violations": [
                           {"type": "constraints/iam.allowedPolicyMemberDomains", "subject": subject,
                            "description": f"User {m.partition(':')[2] or m} is not in permitted organization."}
                           for m in outside]}])

    def _member_in(self, member: str, value: str) -> bool:
        """Whether `member` belongs to the customer a policy value names (`C0...` or `is:C0...`)."""
        customer = self.docs.get("customer", value.removeprefix("is:")) or {}
        kind, _, email = member.partition(":")
        if kind in ("principal", "principalSet", "deleted") or member.startswith("projectOwner"):
            return True
        if kind == "serviceAccount":
            if parse_agent_email(email):   # Google's own service agents: not a customer's (a choice)
                return True
            project = email.partition("@")[2].split(".", 1)[0]
            return bool(customer.get("organization")) and customer["organization"] in self.ancestry(f"projects/{project}")
        domain = email.rpartition("@")[2].lower() if kind != "domain" else email.lower()
        return domain in customer.get("domains", [])


def _check_spec(constraint: str, spec: dict) -> None:
    kind = CONSTRAINTS[constraint]
    for i, rule in enumerate(spec.get("rules") or []):
        where = f"policy.spec.rules[{i}]"
        if kind == BOOLEAN and ("values" in rule or "allowAll" in rule or "denyAll" in rule):
            raise invalid_argument(f"Boolean constraint constraints/{constraint} takes enforce, not values.",
                                   [(where, "enforce only")])
        if kind == LIST and "enforce" in rule:
            raise invalid_argument(f"List constraint constraints/{constraint} takes values, allowAll or denyAll, "
                                   "not enforce.", [(where, "no enforce")])
        for value in ((rule.get("values") or {}).get("allowedValues") or []) + \
                ((rule.get("values") or {}).get("deniedValues") or []):
            if constraint == "gcp.resourceLocations" and not groups.known(value):
                raise invalid_argument(f"The policy contains invalid list value(s): [{value}].", [(where, value)])
    if kind == BOOLEAN and spec.get("inheritFromParent"):
        raise invalid_argument("inheritFromParent is only for list constraints.", [("policy.spec", "inheritFromParent")])


def _fold(rules: list[dict], kind: str) -> dict:
    """The unconditional rules of one policy as {all, allowed, denied} (list) or {enforce} (boolean)."""
    state: dict = {"all": None, "allowed": set(), "denied": set(), "enforce": False}
    for rule in rules:
        if rule.get("condition"):
            continue
        if kind == BOOLEAN:
            state["enforce"] = bool(rule.get("enforce"))
            continue
        if rule.get("denyAll"):
            state["all"] = "deny"
        elif rule.get("allowAll") and state["all"] != "deny":
            state["all"] = "allow"
        values = rule.get("values") or {}
        state["allowed"] |= set(values.get("allowedValues") or [])
        state["denied"] |= set(values.get("deniedValues") or [])
    return state


def _merge(parent: dict | None, own: dict) -> dict:
    if parent is None:
        return own
    return {"all": "deny" if "deny" in (parent["all"], own["all"]) else (own["all"] or parent["all"]),
            "allowed": parent["allowed"] | own["allowed"], "denied": parent["denied"] | own["denied"],
            "enforce": own["enforce"]}


def _render(state: dict | None, kind: str) -> dict:
    if kind == BOOLEAN:
        return {"enforce": bool(state and state["enforce"])}
    if state is None or (state["all"] == "allow" and not state["denied"]):
        return {"allowAll": True}
    if state["all"] == "deny":
        return {"denyAll": True}
    values: dict = {}
    if state["allowed"] and state["all"] != "allow":
        values["allowedValues"] = sorted(state["allowed"])
    if state["denied"]:
        values["deniedValues"] = sorted(state["denied"])
    return {"values": values} if values else {"allowAll": True}


def _list_allows(rule: dict, match) -> bool:
    """Whether one effective list rule lets a value through (`match(policy_value)` tells a hit)."""
    if rule.get("denyAll"):
        return False
    values = rule.get("values") or {}
    if any(match(v) for v in values.get("deniedValues") or []):
        return False
    allowed = values.get("allowedValues")
    return True if rule.get("allowAll") or not allowed else any(match(v) for v in allowed)


Backend = OrgPolicy
