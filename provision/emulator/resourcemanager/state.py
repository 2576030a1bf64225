"""Resource Manager's backend: projects, their IAM policies, and project-creation operations.
No HTTP here: handlers turn requests into these calls and return what they give back.

Records live in `world.docs`:
- ("project", projectId): the internal record (see `ResourceManager.lookup`);
- ("project_number", number): {"projectId"} so a project can be found by number;
- ("policy", "projects/<projectId>"): the project's IAM policy (organizations, folders and
  billing accounts keep theirs under the same kind, seeded through /_emulator/policies/);
- ("counter", "crm.*"): counters that make project numbers and operation names deterministic.

Wire shapes follow the recorded exchanges in shared/fidelity/gcp-recorded: v3 `Project`
carries only the fields the installed gapic proto knows (LRO polling parses strictly); v1
`Project` is {projectId, name (display name), projectNumber, lifecycleState, parent{type,id},
labels, createTime}; empty maps and false booleans are left out, as proto3 JSON does.
"""
from __future__ import annotations

import builtins
import copy
import hashlib
import re
from datetime import datetime, timezone
from typing import Any

from provision.emulator import iam
from provision.emulator.resourcemanager import audit
from provision.emulator.resourcemanager.filters import parse_filter, parse_search, term_matches
from provision.emulator.common import ANONYMOUS_OWNER, timestamp
from provision.emulator.errors import (ApiError, already_exists, bad_request, failed_precondition,
                                       permission_denied)
from provision.emulator.operations import injected_failure
from provision.emulator.worldview import WorldView

ATTACH_AS = "crm"

# Deleted projects stay readable (DELETE_REQUESTED) for this long, then are purged: reads
# answer 403 like a project that never existed, while the ID stays taken forever.
PURGE_AFTER_SECONDS = 30 * 24 * 3600

V3_PROJECT = "type.googleapis.com/google.cloud.resourcemanager.v3.Project"
V3_CREATE_METADATA = "type.googleapis.com/google.cloud.resourcemanager.v3.CreateProjectMetadata"
V3_DELETE_METADATA = "type.googleapis.com/google.cloud.resourcemanager.v3.DeleteProjectMetadata"
V3_UPDATE_METADATA = "type.googleapis.com/google.cloud.resourcemanager.v3.UpdateProjectMetadata"
V3_UNDELETE_METADATA = "type.googleapis.com/google.cloud.resourcemanager.v3.UndeleteProjectMetadata"
V1_PROJECT = "type.googleapis.com/google.cloudresourcemanager.v1.Project"
V1_CREATE_STATUS = "type.googleapis.com/google.cloudresourcemanager.v1.ProjectCreationStatus"
PROJECT_IAM_POLICY_ERROR = "type.googleapis.com/google.cloudresourcemanager.v1.ProjectIamPolicyError"

PROJECT_ID_RE = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
RESTRICTED_ID_WORDS = ("google", "null", "undefined", "ssl")
DISPLAY_NAME_RE = re.compile(r"""^[A-Za-z0-9'"! -]{4,30}$""")
LABEL_KEY_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE_RE = re.compile(r"^[a-z0-9_-]{0,63}$")
PARENT_RE = re.compile(r"^(organizations|folders)/[0-9]{1,20}$")
MEMBER_TYPES = ("user", "serviceAccount", "group", "domain", "principal", "principalSet", "deleted")
PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")


def invalid(field: str, issue: str) -> ApiError:
    return ApiError("INVALID_ARGUMENT", f"field [{field}] has issue [{issue}]", [bad_request([(field, issue)])])


class ResourceManager:
    """Projects and their policies. Cross-API interface: `lookup`, `policy`, `policy_chain`."""

    def __init__(self, world: WorldView):
        self.world = world
        self.docs = world.docs

    # ----- the interface other APIs call -------------------------------------------------
    def lookup(self, id_or_number: str) -> dict | None:
        """The internal record of a project by ID or number, or None if there is none (or it
        was deleted and purged). Keys: projectId, number (str), name ("projects/<number>"),
        displayName, state (ACTIVE | DELETE_REQUESTED), parent ("folders/N",
        "organizations/N" or ""), labels, createTime, updateTime, deleteTime, etag,
        defaultServices (False for a project a service account made under a parent; absent
        in records written before it existed, meaning True)."""
        record = self._record(id_or_number)
        if record is None or self._purged(record):
            return None
        return record

    def policy(self, project_id: str) -> dict:
        """The project's IAM policy as stored ({version, bindings, etag})."""
        record = self._record(project_id)
        key = f"projects/{record['projectId']}" if record else f"projects/{project_id}"
        return self.docs.get("policy", key) or iam.empty_policy()

    def policy_chain(self, project_id: str) -> list[dict]:
        """The policies that grant access to the project: its own, then its parent's (if any)."""
        chain = [self.policy(project_id)]
        record = self._record(project_id)
        parent = self.docs.get("policy", record["parent"]) if record and record.get("parent") else None
        if parent:
            chain.append(parent)
        return chain

    def parent_policy(self, parent: str) -> dict | None:
        """An organization's or folder's seeded policy (None when nothing was seeded)."""
        return self.docs.get("policy", parent) if parent else None

    # ----- projects --------------------------------------------------------------------
    def create(self, *, project_id: str | None, display_name: str | None, parent: str | None,
               labels: dict | None, creator: str | None) -> dict:
        """Start creating a project; returns the operation's wire view (v3 shapes).

        The project exists (gettable) from the start; the operation reports done once
        `op:crm.projects.create` has passed. A taken ID (even by a deleted project) is a 409."""
        project_id = self._validate(project_id, display_name, labels)
        parent = parent or ""
        if parent and not PARENT_RE.match(parent):
            raise invalid("parent", "parent must be of the form organizations/{id} or folders/{id}")
        with self.world.db.transaction():
            if self.docs.get("project", project_id) is not None:
                raise already_exists()
            op_name = f"operations/cp.{self._digits('cp', self.docs.next_counter('crm.operation'), 19)}"
            seconds = self.world.latency.seconds("op:crm.projects.create")
            now = self.world.clock()
            if self.world.faults.draw_operation():
                failing = {"@type": V3_CREATE_METADATA, "createTime": timestamp(now)}
                return self.world.operations.start(op_name, failing, seconds=seconds, error=injected_failure(),
                                                   project=project_id, caller=creator)
            number = self._project_number(self.docs.next_counter("crm.project"))
            record: dict[str, Any] = {
                "projectId": project_id, "number": number, "name": f"projects/{number}",
                "displayName": display_name or "", "state": "ACTIVE", "parent": parent,
                "labels": dict(labels or {}), "createTime": timestamp(now), "updateTime": timestamp(now),
                "deleteTime": "", "etag": iam.make_etag([project_id, now]),
            }
            # Who creates the project shapes what it starts with. Made by a person (a user, or the
            # anonymous caller standing for one): its creator is its owner and Google's default
            # services are on, as Google documents for projects created in the console or with
            # gcloud. Made by a service account under a folder or organization (automation, the
            # only way a service account can create one): the recorded exchanges show such a
            # project's first policy empty ({etag} alone) and cloudapis.googleapis.com enabled by
            # a real operation, i.e. not on by default; so no owner binding and no default
            # services (access comes through the folder's or organization's policy).
            automated = bool(parent) and (creator or "").startswith("serviceAccount:")
            record["defaultServices"] = not automated
            self.docs.put("project", project_id, record)
            self.docs.put("project_number", number, {"projectId": project_id})
            if automated:
                policy = iam.never_set_policy()
            else:
                owner = creator or ANONYMOUS_OWNER
                policy = iam.replace(iam.empty_policy(), {"bindings": [{"role": "roles/owner", "members": [owner]}]})
            self.docs.put("policy", f"projects/{project_id}", policy)
            metadata: dict[str, Any] = {"@type": V3_CREATE_METADATA, "createTime": timestamp(now), "gettable": True}
            done = {**metadata, "ready": True}
            return self.world.operations.start(op_name, metadata, seconds=seconds, response=self._v3_any(record),
                                               done_metadata=done, project=project_id, caller=creator)

    def update(self, id_or_number: str, *, display_name: str | None = None, labels: dict | None = None) -> dict:
        """Change a project's display name and/or labels (None leaves a field as it is)."""
        with self.world.db.transaction():  # read, check and write as one step: a delete cannot slip in between
            record = self.require(id_or_number)
            self._validate(record["projectId"], display_name, labels)
            if display_name is not None:
                record["displayName"] = display_name
            if labels is not None:
                record["labels"] = dict(labels)
            now = self.world.clock()
            record["updateTime"] = timestamp(now)
            record["etag"] = iam.make_etag([record["projectId"], now, record["labels"], record["displayName"]])
            self.docs.put("project", record["projectId"], record)
        return record

    def update_operation(self, id_or_number: str, **changes) -> dict:
        """v3 updateProject: the change applies now; the operation reports it."""
        record = self.update(id_or_number, **changes)
        name = f"operations/up.{self._digits('up', self.docs.next_counter('crm.operation'), 19)}"
        return self.world.operations.start(name, {"@type": V3_UPDATE_METADATA}, response=self._v3_any(record),
                                           project=record["projectId"])

    def delete(self, id_or_number: str, *, operation: bool = True) -> dict:
        """Mark a project DELETE_REQUESTED. With `operation`, returns the (v3) operation's wire
        view; an injected operation failure leaves the project as it was."""
        with self.world.db.transaction():  # read, check and write as one step
            record = self.require(id_or_number)
            if record["state"] != "ACTIVE":
                raise failed_precondition("The project is not in the ACTIVE state and cannot be deleted.")
            op_name = f"operations/dp.{self._digits('dp', self.docs.next_counter('crm.operation'), 19)}"
            seconds = self.world.latency.seconds("op:crm.projects.delete")
            if operation and self.world.faults.draw_operation():
                return self.world.operations.start(op_name, {"@type": V3_DELETE_METADATA}, seconds=seconds,
                                                   error=injected_failure(), project=record["projectId"])
            now = self.world.clock()
            record.update(state="DELETE_REQUESTED", deleteTime=timestamp(now), updateTime=timestamp(now),
                          etag=iam.make_etag([record["projectId"], now, "deleted"]))
            self.docs.put("project", record["projectId"], record)
            if not operation:
                return {}
            return self.world.operations.start(op_name, {"@type": V3_DELETE_METADATA}, seconds=seconds,
                                               response=self._v3_any(record), project=record["projectId"])

    def undelete(self, id_or_number: str, *, operation: bool = True) -> dict:
        """Bring a DELETE_REQUESTED project back to ACTIVE (until it is purged). With `operation`,
        returns the (v3) operation's wire view: UndeleteProjectMetadata, the Project as response.
        Undeleting a project that is not DELETE_REQUESTED is a 400 FAILED_PRECONDITION (our
        choice: Google documents the state rule, not the error)."""
        with self.world.db.transaction():
            record = self.require(id_or_number)
            if record["state"] != "DELETE_REQUESTED":
                raise failed_precondition("The project is not in the DELETE_REQUESTED state and cannot be undeleted.")
            now = self.world.clock()
            record.update(state="ACTIVE", deleteTime="", updateTime=timestamp(now),
                          etag=iam.make_etag([record["projectId"], now, "undeleted"]))
            self.docs.put("project", record["projectId"], record)
            if not operation:
                return {}
            # Operation names for undelete are not in any public text we found: `ud.` + digits,
            # like the create (`cp.`) and delete (`dp.`) names Google uses.
            op_name = f"operations/ud.{self._digits('ud', self.docs.next_counter('crm.operation'), 19)}"
            return self.world.operations.start(op_name, {"@type": V3_UNDELETE_METADATA},
                                               response=self._v3_any(record), project=record["projectId"])

    def search(self, query: str | None) -> list[dict]:
        """v3 projects.search: every (unpurged) project, in any state, matching the query. The
        discovery document: terms are case-insensitive `field:value` (`value*` a prefix) over
        displayName|name, parent (`folders/123`, `organizations/*`), parent.type, parent.id,
        id|projectId, state|lifecycleState, labels (a label's key or value), labels.KEY; "if
        multiple fields are included in the query, then it will return results that match any of
        the fields". An explicit AND joins the terms around it (our reading)."""
        groups = parse_search(query or "")
        out = []
        for _, record in self.docs.list("project"):
            if self._purged(record):
                continue
            if not groups or any(all(_term_matches(record, k, v) for k, v in group) for group in groups):
                out.append(record)
        return out

    def require(self, id_or_number: str) -> dict:
        """The project, or Google's 403 for a project that does not exist (never a 404)."""
        record = self.lookup(id_or_number)
        if record is None:
            raise permission_denied()
        return record

    def list(self, *, filter_: str | None = None, parent: str | None = None) -> list[dict]:
        """Every (unpurged) project matching a v1-style filter, ordered by projectId."""
        terms = parse_filter(filter_ or "")
        out = []
        for _, record in self.docs.list("project"):
            if self._purged(record):
                continue
            if parent is not None and record.get("parent") != parent:
                continue
            if all(_term_matches(record, key, value) for key, value in terms):
                out.append(record)
        return out

    # ----- IAM ---------------------------------------------------------------------------
    def get_iam_policy(self, id_or_number: str, requested_version: int | None) -> dict:
        record = self.require(id_or_number)
        policy = self.policy(record["projectId"])
        return audit.with_view(iam.view(policy, requested_version), policy)

    def set_iam_policy(self, id_or_number: str, policy: dict, update_mask: str | None = None) -> dict:
        """Replace the project's policy (read-modify-write with etag), enforcing the project rules:
        no allUsers/allAuthenticatedUsers, owners who are users must be invited, service agents
        must exist before they are granted anything. `update_mask` names the fields written
        (default `bindings,etag`): auditConfigs change only when it names them."""
        record = self.require(id_or_number)
        key = f"projects/{record['projectId']}"
        with self.world.db.transaction():
            current = self.policy(record["projectId"])
            mask = audit.update_mask(update_mask)
            new = dict(policy)
            if "bindings" not in mask:
                new["bindings"] = current.get("bindings", [])
                new["version"] = current.get("version", 1)
            self._check_members(current, new.get("bindings") or [])
            added = {m for b in new.get("bindings") or [] for m in b.get("members") or []} - \
                {m for b in current.get("bindings") or [] for m in b.get("members") or []}
            if added and getattr(self.world, "orgpolicy", None) is not None:
                self.world.orgpolicy.check_members(record["projectId"], sorted(added))
            configs = audit.validate(new.get("auditConfigs")) if "auditConfigs" in mask else \
                current.get("auditConfigs", [])
            updated = audit.with_configs(iam.replace(current, new), configs)
            self.docs.put("policy", key, updated)
        return audit.with_view(iam.view(updated, 3), updated)

    def add_binding(self, project_id: str, role: str, member: str) -> None:
        """Grant `role` to `member` on the project, as Google does itself (a service agent's default
        role): no etag, no member rules, a new etag."""
        key = f"projects/{project_id}"
        with self.world.db.transaction():
            current = self.policy(project_id)
            bindings = [*current.get("bindings", []), {"role": role, "members": [member]}]
            updated = iam.replace(current, {"bindings": bindings, "version": current.get("version", 1)})
            self.docs.put("policy", key, audit.with_configs(updated, current.get("auditConfigs", [])))

    def held_permissions(self, id_or_number: str, principal: str | None, permissions: builtins.list[str]) -> builtins.list[str]:
        """testIamPermissions: the asked permissions the caller holds on the project."""
        record = self.require(id_or_number)
        if not self.world.options.enforce_iam:
            return list(permissions)
        chain = self.policy_chain(record["projectId"])
        return [p for p in permissions if iam.allowed(principal or "", p, chain)]

    def held_on_parent(self, parent: str, principal: str | None, permissions: builtins.list[str]) -> builtins.list[str]:
        """testIamPermissions on a folder or organization (policies seeded via /_emulator/policies)."""
        if not self.world.options.enforce_iam:
            return list(permissions)
        policy = self.world.docs.get("policy", parent)
        return [p for p in permissions if policy and iam.allowed(principal or "", p, [policy])]

    def _check_members(self, current: dict, bindings: builtins.list[dict]) -> None:
        existing = {(b.get("role"), m) for b in current.get("bindings", []) for m in b.get("members", [])}
        owners_to_invite = []
        for binding in bindings:
            role = binding.get("role", "")
            for member in binding.get("members", []) or []:
                if member in PUBLIC_MEMBERS:
                    raise ApiError("INVALID_ARGUMENT", "Request contains an invalid argument.")
                kind, sep, value = member.partition(":")
                if not sep or not value or kind not in MEMBER_TYPES:
                    raise ApiError("INVALID_ARGUMENT", 'Policy members must be of the form "<type>:<value>".')
                if (role, member) in existing:
                    continue
                if role == "roles/owner" and kind == "user":
                    owners_to_invite.append(member)
                if kind == "serviceAccount":
                    self._check_service_agent(value)
        if owners_to_invite:
            raise ApiError("INVALID_ARGUMENT", "Request contains an invalid argument.", [
                {"@type": PROJECT_IAM_POLICY_ERROR, "type": "SOLO_MUST_INVITE_OWNERS", "member": m,
                 "role": "roles/owner"} for m in owners_to_invite])

    def _check_service_agent(self, email: str) -> None:
        su = getattr(self.world, "serviceusage", None)
        if su is None:
            return
        parsed = su.parse_agent_email(email)
        if parsed and not su.agent_exists(*parsed):
            raise ApiError("INVALID_ARGUMENT", f"Service account {email} does not exist.")

    # ----- wire shapes -------------------------------------------------------------------
    def v3(self, record: dict) -> dict:
        """The v3 Project: only fields the installed gapic proto knows."""
        out: dict[str, Any] = {"name": record["name"]}
        if record.get("parent"):
            out["parent"] = record["parent"]
        out["projectId"] = record["projectId"]
        out["state"] = record["state"]
        if record.get("displayName"):
            out["displayName"] = record["displayName"]
        out["createTime"] = record["createTime"]
        out["updateTime"] = record["updateTime"]
        if record.get("deleteTime"):
            out["deleteTime"] = record["deleteTime"]
        out["etag"] = record["etag"]
        if record.get("labels"):
            out["labels"] = dict(record["labels"])
        return out

    def _v3_any(self, record: dict) -> dict:
        """The v3 Project as an operation's `response` (an Any: `@type` first)."""
        return {"@type": V3_PROJECT, **self.v3(record)}

    def v1(self, record: dict) -> dict:
        return v1_from_v3(self.v3(record))

    def op_v1(self, op: dict) -> dict:
        """A project operation as the v1 API shows it (ProjectCreationStatus, v1 Project)."""
        out = copy.deepcopy(op)
        meta = out.get("metadata") or {}
        if meta.get("@type") == V3_CREATE_METADATA:
            status: dict[str, Any] = {"@type": V1_CREATE_STATUS}
            for flag in ("gettable", "ready"):
                if meta.get(flag):
                    status[flag] = True
            out["metadata"] = status
        if (out.get("response") or {}).get("@type") == V3_PROJECT:
            out["response"] = {"@type": V1_PROJECT, **v1_from_v3(out["response"])}
        return out

    # ----- internals ---------------------------------------------------------------------
    def _record(self, id_or_number: str) -> dict | None:
        key = str(id_or_number or "")
        if key.startswith("projects/"):
            key = key[len("projects/"):]
        if key.isdigit():
            index = self.docs.get("project_number", key)
            if index is None:
                return None
            key = index["projectId"]
        return self.docs.get("project", key) if key else None

    def _purged(self, record: dict) -> bool:
        if record.get("state") != "DELETE_REQUESTED" or not record.get("deleteTime"):
            return False
        deleted = datetime.strptime(record["deleteTime"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
        return self.world.clock() - deleted.timestamp() > PURGE_AFTER_SECONDS

    def _validate(self, project_id: str | None, display_name: str | None, labels: dict | None) -> str:
        """The project ID, once it, the display name and the labels are valid; else INVALID_ARGUMENT."""
        if not project_id:
            raise invalid("project_id", "project_id must be set")
        if not PROJECT_ID_RE.match(project_id):
            raise invalid("project_id", "project_id must be 6 to 30 lowercase letters, digits or hyphens, "
                                        "start with a letter and not end with a hyphen")
        if any(word in project_id for word in RESTRICTED_ID_WORDS):
            raise invalid("project_id", "project_id contains a restricted word")
        if display_name and not DISPLAY_NAME_RE.match(display_name):
            raise invalid("display_name", "display_name must be 4 to 30 letters, digits, hyphens, quotes, "
                                          "spaces or exclamation points")
        labels = labels or {}
        if len(labels) > 64:
            raise invalid("labels", "a project has at most 64 labels")
        for k, v in labels.items():
            if not LABEL_KEY_RE.match(k) or not isinstance(v, str) or not LABEL_VALUE_RE.match(v):
                raise invalid("labels", f"invalid label {k}={v!r}")
        return project_id

    @staticmethod
    def _project_number(n: int) -> str:
        """12 digits, deterministic from the counter, spread out like real project numbers."""
        return str(100000000000 + (n * 48271 + 3571) % 899999999999)

    @staticmethod
    def _digits(salt: str, n: int, width: int) -> str:
        h = int(hashlib.sha256(f"{salt}:{n}".encode()).hexdigest(), 16)
        return str(10 ** (width - 1) + h % (9 * 10 ** (width - 1)))


Backend = ResourceManager


def v1_from_v3(p: dict) -> dict:
    """Translate a v3 Project dict to the v1 form."""
    out: dict[str, Any] = {"projectNumber": p["name"].split("/", 1)[1], "projectId": p["projectId"],
                           "lifecycleState": p["state"]}
    if p.get("displayName"):
        out["name"] = p["displayName"]
    if p.get("labels"):
        out["labels"] = dict(p["labels"])
    out["createTime"] = p["createTime"]
    if p.get("parent"):
        kind, _, ident = p["parent"].partition("/")
        out["parent"] = {"type": {"organizations": "organization", "folders": "folder"}[kind], "id": ident}
    return out


def parent_from_v1(parent: dict | None) -> str:
    """{"type": "folder", "id": "123"} -> "folders/123" (an id already carrying the prefix is accepted)."""
    if not parent:
        return ""
    kind = {"organization": "organizations", "folder": "folders"}.get(parent.get("type", ""))
    if kind is None:
        raise invalid("parent.type", "parent type must be organization or folder")
    ident = str(parent.get("id", ""))
    if ident.startswith(f"{kind}/"):
        ident = ident[len(kind) + 1:]
    return f"{kind}/{ident}"


def _term_matches(record: dict, key: str, value: str) -> bool:
    """Whether the project `record` matches one `key:value` term of a list filter or search query."""
    view = v1_from_v3({"name": record["name"], "projectId": record["projectId"], "state": record["state"],
                       "displayName": record.get("displayName"), "labels": record.get("labels"),
                       "createTime": record["createTime"], "parent": record.get("parent")})
    return term_matches(view, record.get("parent", ""), key, value)
