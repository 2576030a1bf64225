"""Cloud Billing in the emulator, driven over real HTTP by the real cloudbilling v1 discovery client."""
from __future__ import annotations

import json

import pytest
import requests
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import resourcemanager_v3
from google.oauth2.credentials import Credentials
from googleapiclient import discovery as gdiscovery
from googleapiclient.errors import HttpError

from emulator_helpers import CONTROL
from provision.emulator import discovery

DOC = "cloudbilling.v1"
SEEDED = "012345-6789AB-CDEF01"
SEEDED_NAME = f"billingAccounts/{SEEDED}"


def assert_schema(ref: str, body: dict) -> dict:
    found = discovery.problems(DOC, ref, body)
    assert not found, f"{ref} does not match {DOC}: {found}\n{json.dumps(body, indent=1)}"
    return body


def billing(emu, token: str | None = None):
    creds = Credentials(token=f"emulator:{token}") if token else AnonymousCredentials()
    return gdiscovery.build("cloudbilling", "v1", credentials=creds, client_options={"api_endpoint": emu.url},
                            cache_discovery=False)


def new_project(emu, project_id: str, token: str | None = None, parent: str = "") -> None:
    creds = Credentials(token=f"emulator:{token}") if token else AnonymousCredentials()
    client = resourcemanager_v3.ProjectsClient(credentials=creds, transport="rest",
                                               client_options=ClientOptions(api_endpoint=emu.url))
    client.create_project(project=resourcemanager_v3.Project(project_id=project_id, parent=parent)).result(timeout=30)


def error(exc: HttpError) -> dict:
    return json.loads(exc.content)["error"]


def add_account(emu, account_id: str, name: str, open_: bool = True) -> requests.Response:
    return requests.put(f"{emu.url}/_emulator/billing-accounts/{account_id}", json={"displayName": name, "open": open_}, headers=CONTROL)


def test_seeded_account_is_listed_and_readable(emulator):
    client = billing(emulator)
    listed = assert_schema("ListBillingAccountsResponse", client.billingAccounts().list(pageSize=100).execute())
    assert listed["nextPageToken"] == ""
    (account,) = listed["billingAccounts"]
    assert account["name"] == SEEDED_NAME and account["open"] is True
    assert account["displayName"] == "Emulator Billing Account"
    assert set(account) == {"name", "open", "displayName", "masterBillingAccount", "currencyCode", "parent"}
    assert assert_schema("BillingAccount", client.billingAccounts().get(name=SEEDED_NAME).execute()) == account
    with pytest.raises(HttpError) as missing:
        client.billingAccounts().get(name="billingAccounts/AAAAAA-BBBBBB-CCCCCC").execute()
    assert missing.value.status_code == 403


def test_control_route_adds_accounts_and_reset_keeps_the_seeded_one(emulator):
    assert add_account(emulator, "ABCDEF-012345-6789AB", "Second account").status_code == 200
    assert add_account(emulator, "not-an-id", "Bad").status_code == 400
    names = [a["name"] for a in billing(emulator).billingAccounts().list().execute()["billingAccounts"]]
    assert names == [SEEDED_NAME, "billingAccounts/ABCDEF-012345-6789AB"]
    requests.post(f"{emulator.url}/_emulator/reset", headers=CONTROL)
    names = [a["name"] for a in billing(emulator).billingAccounts().list().execute()["billingAccounts"]]
    assert names == [SEEDED_NAME]


def test_list_pages(emulator):
    for i in range(3):
        add_account(emulator, f"00000{i}-000000-000000", f"Account {i}")
    client = billing(emulator)
    first = client.billingAccounts().list(pageSize=2).execute()
    assert len(first["billingAccounts"]) == 2 and first["nextPageToken"]
    rest = client.billingAccounts().list(pageSize=2, pageToken=first["nextPageToken"]).execute()
    assert len(rest["billingAccounts"]) == 2 and rest["nextPageToken"] == ""


def test_link_and_unlink_a_project(emulator):
    new_project(emulator, "bill-link")
    client = billing(emulator)
    info = assert_schema("ProjectBillingInfo", client.projects().getBillingInfo(name="projects/bill-link").execute())
    assert info == {"name": "projects/bill-link/billingInfo", "projectId": "bill-link",
                    "billingAccountName": "", "billingEnabled": False}
    assert emulator.world.billing.linked_account("bill-link") is None
    linked = client.projects().updateBillingInfo(name="projects/bill-link",
                                                 body={"billingAccountName": SEEDED_NAME}).execute()
    assert assert_schema("ProjectBillingInfo", linked) == {**info, "billingAccountName": SEEDED_NAME, "billingEnabled": True}
    assert client.projects().getBillingInfo(name="projects/bill-link").execute() == linked
    assert emulator.world.billing.linked_account("bill-link") == SEEDED_NAME
    projects = client.billingAccounts().projects().list(name=SEEDED_NAME).execute()
    assert projects["projectBillingInfo"] == [linked]
    unlinked = client.projects().updateBillingInfo(name="projects/bill-link", body={"billingAccountName": ""}).execute()
    assert unlinked == info and emulator.world.billing.linked_account("bill-link") is None


def test_linking_to_unknown_closed_or_malformed_accounts_fails(emulator):
    new_project(emulator, "bill-bad")
    client = billing(emulator)
    assert add_account(emulator, "0C105E-D00000-000000", "Closed account", open_=False).status_code == 200
    cases = {"billingAccounts/AAAAAA-BBBBBB-CCCCCC": (403, "PERMISSION_DENIED"),
             "billingAccounts/0C105E-D00000-000000": (400, "FAILED_PRECONDITION"),
             "accounts/whatever": (400, "INVALID_ARGUMENT")}
    for name, (code, status) in cases.items():
        with pytest.raises(HttpError) as failed:
            client.projects().updateBillingInfo(name="projects/bill-bad", body={"billingAccountName": name}).execute()
        assert (failed.value.status_code, error(failed.value)["status"]) == (code, status), name
    assert client.projects().getBillingInfo(name="projects/bill-bad").execute()["billingEnabled"] is False


def test_closing_an_account_disables_billing_of_its_projects(emulator):
    new_project(emulator, "bill-closing")
    add_account(emulator, "0A0A0A-0B0B0B-0C0C0C", "Soon closed")
    client = billing(emulator)
    client.projects().updateBillingInfo(name="projects/bill-closing",
                                        body={"billingAccountName": "billingAccounts/0A0A0A-0B0B0B-0C0C0C"}).execute()
    add_account(emulator, "0A0A0A-0B0B0B-0C0C0C", "Soon closed", open_=False)
    info = client.projects().getBillingInfo(name="projects/bill-closing").execute()
    assert info["billingAccountName"] == "billingAccounts/0A0A0A-0B0B0B-0C0C0C" and info["billingEnabled"] is False
    assert emulator.world.billing.linked_account("bill-closing") is None


def test_missing_project_and_unknown_body_field(emulator):
    client = billing(emulator)
    with pytest.raises(HttpError) as missing:
        client.projects().getBillingInfo(name="projects/no-such-project").execute()
    assert missing.value.status_code == 403
    new_project(emulator, "bill-strict")
    r = requests.put(f"{emulator.url}/v1/projects/bill-strict/billingInfo", json={"billingAccount": SEEDED_NAME})
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_test_iam_permissions_on_accounts(emulator_factory):
    asked = ["billing.resourceAssociations.create", "billing.accounts.get"]
    open_emu = emulator_factory()
    got = billing(open_emu).billingAccounts().testIamPermissions(resource=SEEDED_NAME, body={"permissions": asked}).execute()
    assert assert_schema("TestIamPermissionsResponse", got) == {"permissions": asked}
    strict = emulator_factory(enforce_iam=True)
    owner = billing(strict, "user:emulator-owner@example.com")
    assert owner.billingAccounts().testIamPermissions(resource=SEEDED_NAME, body={"permissions": asked}).execute() == {
        "permissions": asked}
    stranger = billing(strict, "user:bob@example.com")
    assert stranger.billingAccounts().testIamPermissions(resource=SEEDED_NAME, body={"permissions": asked}).execute() == {}
    assert stranger.billingAccounts().list().execute()["billingAccounts"] == []


def test_enforce_iam_linking_needs_rights_on_project_and_account(emulator_factory):
    emu = emulator_factory(enforce_iam=True)
    requests.put(f"{emu.url}/_emulator/policies/organizations/9", json={"bindings": [
        {"role": "roles/resourcemanager.projectCreator", "members": ["user:ana@example.com"]}]}, headers=CONTROL)
    new_project(emu, "bill-enforced", "user:ana@example.com", "organizations/9")
    ana = billing(emu, "user:ana@example.com")
    body = {"billingAccountName": SEEDED_NAME}
    with pytest.raises(HttpError) as denied:           # owner of the project, not a user of the account
        ana.projects().updateBillingInfo(name="projects/bill-enforced", body=body).execute()
    assert denied.value.status_code == 403
    requests.put(f"{emu.url}/_emulator/policies/billingAccounts/{SEEDED}", json={"bindings": [
        {"role": "roles/billing.user", "members": ["user:ana@example.com"]}]}, headers=CONTROL)
    assert ana.projects().updateBillingInfo(name="projects/bill-enforced", body=body).execute()["billingEnabled"]
    with pytest.raises(HttpError) as stranger:         # no rights on the project
        billing(emu, "user:bob@example.com").projects().getBillingInfo(name="projects/bill-enforced").execute()
    assert stranger.value.status_code == 403


def test_link_survives_restart(emulator_factory, tmp_path):
    first = emulator_factory(data_dir=tmp_path)
    new_project(first, "bill-persist")
    billing(first).projects().updateBillingInfo(name="projects/bill-persist",
                                                body={"billingAccountName": SEEDED_NAME}).execute()
    first.stop()
    second = emulator_factory(data_dir=tmp_path)
    assert billing(second).projects().getBillingInfo(name="projects/bill-persist").execute()["billingEnabled"] is True
    assert len(billing(second).billingAccounts().list().execute()["billingAccounts"]) == 1
