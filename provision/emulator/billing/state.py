"""Cloud Billing's backend: billing accounts and which account each project is linked to.
No HTTP here.

Records in `world.docs`:
- ("billing_account", "XXXXXX-XXXXXX-XXXXXX"): {name, displayName, open, masterBillingAccount,
  currencyCode, parent?}. `012345-6789AB-CDEF01` ("Emulator Billing Account", open) is seeded
  at start and after every reset; more come from PUT /_emulator/billing-accounts/<id>;
- ("billing_info", projectId): {"billingAccountName"};
- ("policy", "billingAccounts/<id>"): the account's IAM policy. The seeded account's policy
  makes `user:emulator-owner@example.com` a billing user, so the anonymous owner can link it
  under --enforce-iam too; other principals need a policy seeded via /_emulator/policies/.

Linking rules (our reading of Google's behaviour, where the docs say nothing):
- an account that does not exist answers like one the caller may not see: 403 PERMISSION_DENIED
  "The caller does not have permission" (Google does not reveal which accounts exist);
- a closed account: 400 FAILED_PRECONDITION "Precondition check failed." (what Google answers
  for accounts that cannot take new projects, e.g. closed or trial-limited ones).
"""
from __future__ import annotations

import re
from typing import Any

from provision.emulator import iam
from provision.emulator.state_base import ApiBackend
from provision.emulator.common import ANONYMOUS_OWNER
from provision.emulator.errors import failed_precondition, invalid_argument, permission_denied

ATTACH_AS = "billing"

DEFAULT_ACCOUNT = "012345-6789AB-CDEF01"
DEFAULT_ACCOUNT_NAME = "Emulator Billing Account"
# The organization the seeded account belongs to (billing accounts under an organization
# carry `parent`, as in the recorded billing-account list).
DEFAULT_ORGANIZATION = "organizations/123456789012"
ACCOUNT_ID_RE = re.compile(r"^[0-9A-F]{6}-[0-9A-F]{6}-[0-9A-F]{6}$")


class Billing(ApiBackend):
    """Cross-API interface: `linked_account(project_id)`."""

    def seeds(self) -> list[tuple[str, str, dict]]:
        """The seeded account (module docstring), and its policy making the anonymous owner a billing user."""
        policy = iam.replace(iam.empty_policy(), {"bindings": [
            {"role": "roles/billing.user", "members": [ANONYMOUS_OWNER]}]})
        return [("billing_account", DEFAULT_ACCOUNT, _account_doc(DEFAULT_ACCOUNT, DEFAULT_ACCOUNT_NAME, True,
                                                                  DEFAULT_ORGANIZATION, "USD")),
                ("policy", f"billingAccounts/{DEFAULT_ACCOUNT}", policy)]

    # ----- the interface other APIs call -------------------------------------------------
    def linked_account(self, project_id: str) -> str | None:
        """"billingAccounts/<id>" when the project is linked to an open account, else None."""
        info = self.billing_info(project_id)
        return info["billingAccountName"] if info["billingEnabled"] else None

    # ----- accounts ----------------------------------------------------------------------
    def put_account(self, account_id: str, *, display_name: str, open_: bool = True, parent: str | None = None,
                    currency: str = "USD") -> dict:
        """Create or replace a billing account (the emulator's control endpoint)."""
        if not ACCOUNT_ID_RE.match(account_id):
            raise invalid_argument(f"Invalid billing account id {account_id!r}: use XXXXXX-XXXXXX-XXXXXX "
                                   "(upper-case hexadecimal).")
        doc = _account_doc(account_id, display_name, open_, parent, currency)
        self.docs.put("billing_account", account_id, doc)
        return dict(doc)

    def account(self, account_id: str) -> dict | None:
        return self.docs.get("billing_account", _account_id(account_id))

    def accounts(self) -> list[dict]:
        return [doc for _, doc in self.docs.list("billing_account")]

    def account_policy(self, account_id: str) -> dict:
        return self.docs.get("policy", f"billingAccounts/{_account_id(account_id)}") or iam.empty_policy()

    def set_account_policy(self, account_id: str, policy: dict) -> dict:
        """setIamPolicy on the account: etag-checked, members `type:value` (allUsers and
        allAuthenticatedUsers are refused: a billing account is never public)."""
        for binding in policy.get("bindings") or []:
            for member in (binding or {}).get("members") or []:
                kind, sep, value = str(member).partition(":")
                if not sep or not value:
                    raise invalid_argument('Policy members must be of the form "<type>:<value>".')
        key = f"billingAccounts/{_account_id(account_id)}"
        with self.world.db.transaction():
            updated = iam.replace(self.account_policy(account_id), policy)
            self.docs.put("policy", key, updated)
        return iam.view(updated, 3)

    def projects_of(self, account_id: str) -> list[dict]:
        """ProjectBillingInfo of every project linked to the account."""
        name = f"billingAccounts/{_account_id(account_id)}"
        return [self.billing_info(key) for key, doc in self.docs.list("billing_info")
                if doc.get("billingAccountName") == name]

    # ----- project links -----------------------------------------------------------------
    def billing_info(self, project_id: str) -> dict:
        """The ProjectBillingInfo wire view (no account: empty name, billingEnabled false)."""
        name = (self.docs.get("billing_info", project_id) or {}).get("billingAccountName", "")
        account = self.account(name) if name else None
        return {"name": f"projects/{project_id}/billingInfo", "projectId": project_id,
                "billingAccountName": name, "billingEnabled": bool(account and account.get("open"))}

    def link(self, project_id: str, account_name: str | None) -> dict:
        """Link the project to `billingAccounts/<id>`, or unlink it when the name is empty."""
        if not account_name:
            self.docs.delete("billing_info", project_id)
            return self.billing_info(project_id)
        if not account_name.startswith("billingAccounts/") or not ACCOUNT_ID_RE.match(_account_id(account_name)):
            raise invalid_argument("Request contains an invalid argument.", [
                ("billing_account_name", "must be of the form billingAccounts/XXXXXX-XXXXXX-XXXXXX")])
        account = self.account(account_name)
        if account is None:
            raise permission_denied()
        if not account.get("open"):
            raise failed_precondition("Precondition check failed.")
        self.docs.put("billing_info", project_id, {"billingAccountName": account["name"]})
        return self.billing_info(project_id)


def _account_doc(account_id: str, display_name: str, open_: bool, parent: str | None, currency: str) -> dict:
    doc: dict[str, Any] = {"name": f"billingAccounts/{account_id}", "open": bool(open_),
                           "displayName": display_name, "masterBillingAccount": "", "currencyCode": currency}
    if parent:
        doc["parent"] = parent
    return doc


def _account_id(name: str) -> str:
    return name[len("billingAccounts/"):] if name.startswith("billingAccounts/") else name


Backend = Billing
