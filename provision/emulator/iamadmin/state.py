"""IAM's service accounts (iam.googleapis.com v1 `projects.serviceAccounts`): create, get, list,
delete. No HTTP here.

Records: ("service-account", EMAIL), the same kind the emulator's OAuth side keeps (its own IAM
policy, who may impersonate it; `PUT /_emulator/oauth/service-accounts/E` writes it too), so an
account made through this API can be impersonated (generateAccessToken), named as a Cloud Run
service's identity, and granted roles. This backend adds projectId, uniqueId, displayName,
description and the etag.

Wire shapes and errors (iam.v1.json `ServiceAccount`; messages as Google answers them in public
reports): an account ID is 6-30 characters `[a-z]([-a-z0-9]*[a-z0-9])`; a taken one is 409
ALREADY_EXISTS "Service account ID already exists within project"; a missing one 404 NOT_FOUND
"Unknown service account". `-` as the project finds an account by its email anywhere.
"""
from __future__ import annotations

import base64
import hashlib
import re

from provision.emulator import iam
from provision.emulator.state_base import ApiBackend
from provision.emulator.common import timestamp
from provision.emulator.errors import already_exists, invalid_argument, not_found


ATTACH_AS = "iamadmin"
SERVICE = "iam.googleapis.com"
KIND = "service-account"
ACCOUNT_ID_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])$")


def unique_id(email: str) -> str:
    """A stable 21-digit numeric ID for an account (Google's uniqueId and oauth2ClientId)."""
    return str(100000000000000000000 + int(hashlib.sha256(email.encode()).hexdigest(), 16) % 10 ** 20)


class IamAdmin(ApiBackend):
    """Cross-API interface: `exists(email)`, `project_of(email)`."""

    def exists(self, email: str) -> bool:
        """Whether a service account with this email exists (made here, by the OAuth control endpoint,
        or a key file); Google-managed service agents are Service Usage's."""
        return self.docs.get(KIND, email.removeprefix("serviceAccount:")) is not None

    def create(self, project: dict, account_id: str, account: dict) -> dict:
        if not ACCOUNT_ID_RE.match(account_id or "") or not 6 <= len(account_id) <= 30:
            raise invalid_argument(f"Invalid form of account ID {account_id}. Should be [Regex [a-z]([-a-z0-9]*"
                                   "[a-z0-9]) with 6-30 characters].", [("account_id", "invalid account ID")])
        email = f"{account_id}@{project['projectId']}.iam.gserviceaccount.com"
        with self.world.db.transaction():
            current = self.docs.get(KIND, email)
            if current is not None and current.get("projectId"):
                raise already_exists(f"Service account {account_id} already exists within project "
                                     f"projects/{project['projectId']}.")
            doc = dict(current or {"email": email, "policy": iam.empty_policy()})
            doc.update(projectId=project["projectId"], uniqueId=unique_id(email),
                       displayName=str(account.get("displayName") or ""),
                       description=str(account.get("description") or ""),
                       createTime=timestamp(self.world.clock()))
            self.docs.put(KIND, email, doc)
        return self.view(doc)

    def find(self, project: str, account: str) -> dict:
        """The account by email or unique ID (in `project`, or anywhere for `-`); 404 otherwise."""
        doc = self.docs.get(KIND, account) if "@" in account else next(
            (d for _, d in self.docs.list(KIND) if d.get("uniqueId") == account), None)
        if doc is None or (project != "-" and doc.get("projectId") and project not in (doc["projectId"],
                                                                                       self._number(doc))):
            raise not_found("Unknown service account")
        return doc

    def list(self, project: dict) -> list[dict]:
        return [self.view(d) for _, d in self.docs.list(KIND) if d.get("projectId") == project["projectId"]]

    def set_policy(self, email: str, policy: dict) -> dict:
        """Replace the account's own IAM policy (read-modify-write with its etag)."""
        with self.world.db.transaction():
            doc = self.docs.get(KIND, email)
            if doc is None:
                raise not_found("Unknown service account")
            doc["policy"] = iam.replace(doc.get("policy") or iam.empty_policy(), policy)
            self.docs.put(KIND, email, doc)
        return doc["policy"]

    def delete(self, email: str) -> None:
        if not self.docs.delete(KIND, email):
            raise not_found("Unknown service account")

    def view(self, doc: dict) -> dict:
        email = doc["email"]
        project = doc.get("projectId") or email.split("@", 1)[1].split(".", 1)[0]
        uid = doc.get("uniqueId") or unique_id(email)
        out = {"name": f"projects/{project}/serviceAccounts/{email}", "projectId": project, "uniqueId": uid,
               "email": email, "etag": base64.b64encode(hashlib.sha256(email.encode()).digest()[:8]).decode(),
               "oauth2ClientId": uid}
        for key in ("displayName", "description"):
            if doc.get(key):
                out[key] = doc[key]
        return out

    def _number(self, doc: dict) -> str | None:
        record = self.world.crm.lookup(doc["projectId"])
        return record["number"] if record else None


Backend = IamAdmin
