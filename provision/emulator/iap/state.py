"""IAP v1's backend: the IAM policy of each `iap_web` resource of a Cloud Run service. No HTTP here.

Resource names: `projects/PROJECT_NUMBER/iap_web/cloud_run-REGION/services/SERVICE` (hosting.md, from
Google's IAP-on-Cloud-Run page; a project ID in place of the number is accepted and stored under the
number). Choices where evidence is missing: the Cloud Run service must exist (else 404 NOT_FOUND,
naming it); `iap.googleapis.com` must be enabled (SERVICE_DISABLED otherwise, as for every API).
Only cloud_run resources are served; the sign-in, assertion and 403 of IAP in front of a running
service are not (services do not run yet).
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from provision.emulator import iam
from provision.emulator.errors import invalid_argument, not_found, permission_denied

if TYPE_CHECKING:
    from provision.emulator.world import World

ATTACH_AS = "iap"
SERVICE = "iap.googleapis.com"
KIND_RE = re.compile(r"^cloud_run-([a-z]+(?:-[a-z]+)+[0-9]{1,2})$")


class Backend:
    def __init__(self, world: "World"):
        self.world = world
        self.docs = world.docs

    def reset(self) -> None:
        """Nothing is seeded."""

    def resolve(self, project: str, kind: str, service: str, permission: str) -> tuple[dict, str, str]:
        """(project record, canonical IAP resource name, Cloud Run service name); raises Google's errors."""
        asked = f"projects/{project}/iap_web/{kind}/services/{service}"
        record = self.world.crm.lookup(project)
        if record is None or record.get("state", "ACTIVE") != "ACTIVE":
            raise permission_denied(f"Permission '{permission}' denied on resource '{asked}' (or it may not exist).")
        self.world.serviceusage.require_enabled(record, SERVICE)
        match = KIND_RE.fullmatch(kind)
        if not match:
            raise invalid_argument(f"Invalid IAP resource '{asked}': this emulator serves cloud_run-REGION only.")
        run_name = f"projects/{record['projectId']}/locations/{match.group(1)}/services/{service}"
        if self.world.run.get(run_name) is None:
            raise not_found(f"Cloud Run service '{run_name}' was not found.")
        return record, f"projects/{record['number']}/iap_web/{kind}/services/{service}", run_name

    def policy(self, name: str) -> dict:
        return self.docs.get("policy", name) or iam.empty_policy()

    def set_policy(self, name: str, policy: dict) -> dict:
        with self.world.db.transaction():
            updated = iam.replace(self.policy(name), policy)
            self.docs.put("policy", name, updated)
        return iam.view(updated, 3)
