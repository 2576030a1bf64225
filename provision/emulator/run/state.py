"""Cloud Run Admin v2's backend: services, their IAM policies. No HTTP here.

What this slice does: services are created, read, listed, updated and deleted through long-running
operations, with the output fields a client reads back (`uri`, `urls`, `terminalCondition`,
`conditions`, `latestReadyRevision`, `generation`, `etag`...), and each service has its own IAM
policy. A deployed service does not run yet (the hosted viewer's archive is not started, and there
is no IAP in front): `uri` answers nothing.

Choices where evidence is missing (written here, said in the notes):
- the operation's metadata is the Service as submitted (`@type type.googleapis.com/google.cloud.run.v2.Service`)
  and its response the Service as it ended up, which is what client libraries unpack for v2;
- URLs: `https://SERVICE-PROJECT_NUMBER.REGION.run.app` (the documented deterministic form) and
  a hash form `https://SERVICE-HASH-REGIONCODE.a.run.app` (run/docs/triggering/https-request);
  `uri` is the hash form, as gcloud prints it;
- a service becomes Ready at once (its first revision `SERVICE-00001-xyz` serves 100 % of traffic).
"""
from __future__ import annotations

import hashlib
import re
import uuid
from typing import TYPE_CHECKING

from provision.emulator import iam
from provision.emulator.common import timestamp
from provision.emulator.errors import already_exists, invalid_argument, permission_denied

if TYPE_CHECKING:
    from provision.emulator.world import World

ATTACH_AS = "run"
SERVICE = "run.googleapis.com"
KIND = "run_service"
SERVICE_TYPE = "type.googleapis.com/google.cloud.run.v2.Service"
# Cloud Run service IDs: lowercase letters, digits and hyphens, a letter first, no hyphen last, at most
# 49 characters (run/docs/deploying; run.v2.json only says "must be unique within the project").
SERVICE_ID_RE = re.compile(r"^[a-z]([a-z0-9-]{0,47}[a-z0-9])?$")
REGION_RE = re.compile(r"^[a-z]+(-[a-z]+)+[0-9]{1,2}$")
OUTPUT_ONLY = ("uid", "generation", "createTime", "updateTime", "deleteTime", "creator", "lastModifier",
               "observedGeneration", "terminalCondition", "conditions", "latestReadyRevision",
               "latestCreatedRevision", "trafficStatuses", "uri", "urls", "reconciling", "etag")


def _region_code(region: str) -> str:
    """A short code per region for the hash URL (Google's codes are not published: derived here)."""
    return hashlib.sha256(region.encode()).hexdigest()[:2]


class Backend:
    """Services by full name `projects/P/locations/R/services/S` (P the project ID)."""

    def __init__(self, world: "World"):
        self.world = world
        self.docs = world.docs

    def reset(self) -> None:
        """Nothing is seeded."""

    def project(self, project: str, permission: str, resource: str) -> dict:
        """The project for a Cloud Run call: 403 when missing, SERVICE_DISABLED until run is enabled."""
        record = self.world.crm.lookup(project)
        if record is None or record.get("state", "ACTIVE") != "ACTIVE":
            raise permission_denied(f"Permission '{permission}' denied on resource '{resource}' (or it may not exist).")
        self.world.serviceusage.require_enabled(record, SERVICE)
        return record

    def policies(self, project_id: str, name: str | None = None) -> list[dict | None]:
        own = [self.docs.get("policy", name)] if name else []
        return own + list(self.world.crm.policy_chain(project_id))

    def get(self, name: str) -> dict | None:
        record = self.docs.get(KIND, name)
        return record["view"] if record else None

    def list(self, parent: str) -> list[dict]:
        return [r["view"] for _, r in self.docs.list(KIND, parent + "/services/")]

    def _view(self, project: dict, name: str, body: dict, *, previous: dict | None, caller: str) -> dict:
        """The Service as Google would show it once reconciled."""
        now = timestamp(self.world.clock())
        location, service_id = name.split("/")[3], name.rsplit("/", 1)[1]
        generation = int((previous or {}).get("generation", "0")) + 1
        revision = f"{name}/revisions/{service_id}-{generation:05d}-" + hashlib.sha256(
            f"{name}{generation}".encode()).hexdigest()[:3]
        number = str(project["number"])
        digest = hashlib.sha256(f"{number}/{name}".encode()).hexdigest()[:10]
        urls = [f"https://{service_id}-{number}.{location}.run.app",
                f"https://{service_id}-{digest}-{_region_code(location)}.a.run.app"]
        view = {k: v for k, v in body.items() if k not in OUTPUT_ONLY and k != "name"}
        view.setdefault("ingress", "INGRESS_TRAFFIC_ALL")
        view.setdefault("launchStage", "GA")
        view.setdefault("traffic", [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}])
        ready = {"type": "Ready", "state": "CONDITION_SUCCEEDED", "lastTransitionTime": now}
        view.update({
            "name": name, "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, name + (previous or {}).get("createTime", now))),
            "generation": str(generation), "createTime": (previous or {}).get("createTime", now), "updateTime": now,
            "creator": (previous or {}).get("creator", caller), "lastModifier": caller,
            "observedGeneration": str(generation), "terminalCondition": ready,
            "conditions": [{"type": t, "state": "CONDITION_SUCCEEDED", "lastTransitionTime": now}
                           for t in ("RoutesReady", "ConfigurationsReady")],
            "latestReadyRevision": revision, "latestCreatedRevision": revision,
            "trafficStatuses": [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}],
            "uri": urls[1], "urls": urls,
        })
        view["etag"] = '"' + iam.make_etag([name, generation, now]) + '"'
        return view

    def _operation(self, project: dict, location: str, metadata: dict, response: dict, key: str) -> dict:
        op = f"projects/{project['projectId']}/locations/{location}/operations/{uuid.uuid4()}"
        return self.world.operations.start(
            op, {"@type": SERVICE_TYPE, **metadata}, seconds=self.world.latency.seconds(key),
            response={"@type": SERVICE_TYPE, **response}, project=project["projectId"])

    def create(self, project: dict, location: str, service_id: str | None, body: dict, caller: str,
               validate_only: bool = False) -> dict:
        """Start creating a service (checked; with `validate_only` nothing is written but the operation)."""
        if not service_id or not SERVICE_ID_RE.fullmatch(service_id):
            raise invalid_argument(f"service_id {service_id!r} must use only lowercase letters, digits and hyphens, "
                                   "start with a letter, not end with a hyphen, and be at most 49 characters.",
                                   [("service_id", "invalid")])
        if not REGION_RE.fullmatch(location):
            raise invalid_argument(f"Location {location!r} is not a Cloud Run region.", [("parent", "invalid")])
        name = f"projects/{project['projectId']}/locations/{location}/services/{service_id}"
        with self.world.db.transaction():
            if self.docs.get(KIND, name) is not None:
                raise already_exists(f"Resource '{service_id}' already exists.")
            view = self._view(project, name, body, previous=None, caller=caller)
            if not validate_only:
                self.docs.put(KIND, name, {"view": view})
                self.docs.put("policy", name, iam.empty_policy())
            return self._operation(project, location, {**view, "reconciling": True}, view, "op:run.services.create")

    def update(self, project: dict, name: str, body: dict, caller: str) -> dict:
        with self.world.db.transaction():
            previous = self.get(name)
            view = self._view(project, name, body, previous=previous, caller=caller)
            self.docs.put(KIND, name, {"view": view})
            return self._operation(project, name.split("/")[3], {**view, "reconciling": True}, view,
                                   "op:run.services.update")

    def delete(self, project: dict, name: str) -> dict:
        with self.world.db.transaction():
            view = dict(self.get(name) or {})
            self.docs.delete(KIND, name)
            self.docs.delete("policy", name)
            view["deleteTime"] = timestamp(self.world.clock())
            return self._operation(project, name.split("/")[3], view, view, "op:run.services.delete")

    def policy(self, name: str) -> dict:
        return self.docs.get("policy", name) or iam.empty_policy()

    def set_policy(self, name: str, policy: dict) -> dict:
        with self.world.db.transaction():
            updated = iam.replace(self.policy(name), policy)
            self.docs.put("policy", name, updated)
        return iam.view(updated, 3)
