"""Datasets and DICOM stores: create, list, update and delete, and the IAM policies on both.

As Google does: the Healthcare service agent comes into being with the project's first dataset,
and a dataset is "not initialized" until its create operation has finished."""
from __future__ import annotations


from provision.emulator import iam
from provision.emulator.errors import ApiError, already_exists, error_info, invalid_argument
from provision.emulator.healthcare import cmek
from provision.emulator.operations import injected_failure
from provision.emulator.healthcare.common import (
    SERVICE,
    DATASET,
    STORE,
    POLICY,
    METADATA_TYPE,
    DATASET_TYPE,
    CREATE_DATASET,
    timestamp,
    ID_RULE,
    valid_id,
    denied,
)
from provision.emulator.healthcare.common import _mask_paths, _check_labels, _label_filter
from provision.emulator.healthcare.backend import HealthcareCore


class Datasets(HealthcareCore):
    """Datasets, DICOM stores and their IAM policies."""

    def create_dataset(self, project: dict, location: str, dataset_id: str | None, body: dict) -> dict:
        if not dataset_id:
            raise invalid_argument("datasetId is required.", [("dataset_id", "required")])
        if not valid_id(dataset_id):
            raise invalid_argument(f"Invalid dataset ID {dataset_id!r}: {ID_RULE}.", [("dataset_id", "invalid")])
        self.check_location(location)
        orgpolicy = getattr(self.world, "orgpolicy", None)
        refusal = orgpolicy.location_refusal(project, location, "a dataset") if orgpolicy else None
        if refusal is not None:
            raise refusal
        cmek.check(self.world, project, location, body)
        name = f"projects/{project['projectId']}/locations/{location}/datasets/{dataset_id}"
        now = self.world.clock()
        metadata = {"@type": METADATA_TYPE, "apiMethodName": CREATE_DATASET, "createTime": timestamp(now)}
        seconds = self.world.latency.seconds("op:healthcare.datasets.create")
        with self.world.db.transaction():
            if self.dataset_record(name) is not None:
                raise already_exists(f"already exists: dataset {name}")
            op_name = self._op_name(name)
            metadata["logsUrl"] = self._logs_url(project["projectId"], op_name.rsplit("/", 1)[1], log=None)
            done_meta = {**metadata, "endTime": timestamp(now + seconds)}
            if self.world.faults.draw_operation():
                return self.world.operations.start(op_name, metadata, seconds=seconds, error=injected_failure(),
                                                   done_metadata=done_meta)
            view = {"name": name, "timeZone": body.get("timeZone") or "UTC"}
            if body.get("encryptionSpec"):
                view["encryptionSpec"] = body["encryptionSpec"]
            self.docs.put(DATASET, name, {"view": view, "createdAt": now, "readyAt": now + seconds,
                                          "projectNumber": str(project["number"])})
            # The first dataset creates the service agent, and Google grants an agent it creates
            # itself its default role (agents made by generateServiceIdentity get none).
            number = str(project["number"])
            if not self.world.serviceusage.agent_exists(number, SERVICE):
                email = self.world.serviceusage.ensure_agent(number, SERVICE)
                self.world.crm.add_binding(project["projectId"], "roles/healthcare.serviceAgent",
                                           f"serviceAccount:{email}")
            return self.world.operations.start(op_name, metadata, seconds=seconds,
                                               response={"@type": DATASET_TYPE, **view}, done_metadata=done_meta)

    def list_datasets(self, project_id: str, location: str) -> list[dict]:
        prefix = f"projects/{project_id}/locations/{location}/datasets/"
        return [r["view"] for k, r in self.docs.list(DATASET, prefix) if "/" not in k[len(prefix):]]

    def patch_dataset(self, name: str, body: dict, mask: str | None) -> dict:
        paths = _mask_paths(mask)
        for p in paths:
            if p != "timeZone" and p != "time_zone":
                raise invalid_argument(f"Invalid update mask path {p!r}: only timeZone can be updated.")
        with self.world.db.transaction():   # read-check-write: a concurrent delete is never undone
            record = self.dataset_record(name)
            if record is None:
                raise denied("healthcare.datasets.update", name)
            if paths:
                record["view"]["timeZone"] = body.get("timeZone") or "UTC"
            self.docs.put(DATASET, name, record)
        return record["view"]

    def delete_dataset(self, name: str) -> None:
        with self.world.db.transaction():
            for store_name, _ in self.docs.list(STORE, name + "/dicomStores/"):
                self.docs.delete(STORE, store_name)
                self.docs.delete(POLICY, store_name)
            self.docs.delete(DATASET, name)
            self.docs.delete(POLICY, name)
            self.index.drop_stores_under(name + "/dicomStores/")

    def create_store(self, dataset: str, store_id: str | None, body: dict) -> dict:
        if not store_id:
            raise invalid_argument("dicomStoreId is required.", [("dicom_store_id", "required")])
        if not valid_id(store_id):
            raise invalid_argument(f"Invalid DICOM store ID {store_id!r}: {ID_RULE}.", [("dicom_store_id", "invalid")])
        _check_labels(body.get("labels"))
        name = f"{dataset}/dicomStores/{store_id}"
        self.world.latency.sleep("sync:healthcare.dicomStores.create")
        with self.world.db.transaction():
            if self.store_record(name) is not None:
                raise already_exists(f"already exists: DICOM store {name}")
            view = {"name": name, **{k: v for k, v in body.items() if k != "name" and v not in (None, {}, [])}}
            sid = self.index.add_store(name)   # the only place an index row is made
            self.docs.put(STORE, name, {"view": view, "sid": sid})
        return view

    def list_stores(self, dataset: str, filter_expr: str | None = None) -> list[dict]:
        prefix = dataset + "/dicomStores/"
        views = [r["view"] for k, r in self.docs.list(STORE, prefix)]
        if filter_expr:
            views = [v for v in views if _label_filter(filter_expr)(v)]
        return views

    def patch_store(self, name: str, body: dict, mask: str | None) -> dict:
        allowed = {"labels", "notificationConfig", "notificationConfigs", "streamConfigs"}
        tops = []
        for p in _mask_paths(mask):
            top = p.split(".")[0]
            top = {"notification_config": "notificationConfig", "notification_configs": "notificationConfigs",
                   "stream_configs": "streamConfigs"}.get(top, top)
            if top not in allowed:
                raise invalid_argument(f"Invalid update mask path {p!r}: updatable fields are {', '.join(sorted(allowed))}.")
            if top == "labels":
                _check_labels(body.get("labels"))
            tops.append(top)
        with self.world.db.transaction():   # read-check-write: a concurrent delete is never undone
            record = self.store_record(name)
            if record is None:
                raise denied("healthcare.dicomStores.update", name)
            view = record["view"]
            for top in tops:
                if body.get(top) in (None, {}, []):
                    view.pop(top, None)
                else:
                    view[top] = body[top]
            self.docs.put(STORE, name, record)
        return view

    def delete_store(self, name: str) -> None:
        with self.world.db.transaction():
            self.docs.delete(STORE, name)
            self.docs.delete(POLICY, name)
            self.index.drop_store(name)

    # ---- IAM ----------------------------------------------------------------------------------
    def get_policy(self, resource: str, requested_version: int | None) -> dict:
        return iam.view(self.policy(resource) or iam.empty_policy(), requested_version)

    def set_policy(self, resource: str, body: dict) -> dict:
        policy = body.get("policy")
        if not isinstance(policy, dict):
            raise invalid_argument("policy is required.", [("policy", "required")])
        for b in policy.get("bindings") or []:
            role = b.get("role") or ""
            if not (role.startswith("roles/") or "/roles/" in role):
                raise invalid_argument(f"Role {role!r} is not a valid role name.")
            for m in b.get("members") or []:
                self._check_member(m)
        self.world.latency.sleep("sync:healthcare.setIamPolicy")
        with self.world.db.transaction():
            current = self.policy(resource) or iam.empty_policy()
            added = {m for b in policy.get("bindings") or [] for m in b.get("members") or []} - \
                {m for b in current.get("bindings") or [] for m in b.get("members") or []}
            if added and getattr(self.world, "orgpolicy", None) is not None:
                self.world.orgpolicy.check_members(resource.split("/")[1], sorted(added))
            new = iam.replace(current, policy)
            self.docs.put(POLICY, resource, new)
        return iam.view(new, 3)

    def _check_member(self, member: str) -> None:
        if member in ("allUsers", "allAuthenticatedUsers"):
            return
        kind, sep, who = member.partition(":")
        if not sep or not who or kind not in ("user", "serviceAccount", "group", "domain", "principal", "principalSet",
                                              "deleted", "projectOwner", "projectEditor", "projectViewer"):
            raise invalid_argument(f"Invalid member {member!r} in the policy.")
        if kind == "serviceAccount":
            usage = getattr(self.world, "serviceusage", None)
            parsed = usage.parse_agent_email(who) if usage is not None else None
            if parsed and usage is not None and not usage.agent_exists(*parsed):
                raise ApiError("INVALID_ARGUMENT", f"Service account {who} does not exist.",
                               [error_info("INVALID_IAM_POLICY", "healthcare.googleapis.com", {"member": member})])

    def test_permissions(self, principal: str | None, permissions: list[str], policies: list[dict | None]) -> dict:
        if not isinstance(permissions, list):
            raise invalid_argument("permissions must be a list.")
        held = []
        for p in permissions:
            if not isinstance(p, str) or "." not in p or "*" in p:
                raise invalid_argument(f"Permission {p!r} is not valid.")
            if not p.startswith("healthcare."):
                raise invalid_argument(f"Permission {p} is not valid for this resource.")
            if not self.world.options.enforce_iam or iam.allowed(principal or "", p, [x for x in policies if x]):
                held.append(p)
        return {"permissions": held} if held else {}
