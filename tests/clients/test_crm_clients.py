"""google-cloud-resource-manager and google-cloud-billing, unmodified, over their REST transport
against the emulator, pointed at it the way their documentation says: `transport="rest"` and
`client_options={"api_endpoint": "http://127.0.0.1:PORT"}` (the scheme in the endpoint keeps
plain HTTP). Resource Manager: create under a folder, search (id, labels, parent, state, name),
delete, undelete. Billing: link a project, the billing account's IAM policy (get, set with the
etag, a stale etag refused, testIamPermissions).
"""
from __future__ import annotations

import pytest
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import billing_v1, resourcemanager_v3
from google.iam.v1 import iam_policy_pb2, policy_pb2

ACCOUNT = "billingAccounts/012345-6789AB-CDEF01"     # seeded by the emulator
FOLDER = "folders/424242424242"


def rest(cls, emu):
    return cls(credentials=AnonymousCredentials(), transport="rest",
               client_options=ClientOptions(api_endpoint=emu.url))


def make(client, project_id: str, **fields) -> resourcemanager_v3.Project:
    return client.create_project(project=resourcemanager_v3.Project(project_id=project_id, **fields)).result(timeout=30)


def ids(projects) -> list[str]:
    return sorted(p.project_id for p in projects)


def test_create_search_delete_undelete(emulator):
    crm = rest(resourcemanager_v3.ProjectsClient, emulator)
    made = make(crm, "search-alpha", display_name="Alpha Team", parent=FOLDER, labels={"env": "prod", "team": "a"})
    assert made.parent == FOLDER and made.state == resourcemanager_v3.Project.State.ACTIVE
    make(crm, "search-beta", display_name="Beta", labels={"env": "dev"})
    make(crm, "search-gamma", display_name="Gamma", parent=FOLDER)

    assert ids(crm.search_projects(query="id:search-beta")) == ["search-beta"]
    assert ids(crm.search_projects(query="labels.env:prod")) == ["search-alpha"]
    assert ids(crm.search_projects(query="labels.env:*")) == ["search-alpha", "search-beta"]
    assert ids(crm.search_projects(query=f"parent:{FOLDER}")) == ["search-alpha", "search-gamma"]
    assert ids(crm.search_projects(query="parent.type:folder parent.id:424242424242")) == \
        ["search-alpha", "search-gamma"]
    assert ids(crm.search_projects(query="name:alpha*")) == ["search-alpha"]          # case-insensitive
    assert ids(crm.search_projects(query="displayName:Gamma labels.env:dev")) == \
        ["search-beta", "search-gamma"]                                                 # fields are OR-ed
    assert ids(crm.search_projects(query="labels.env:prod AND labels.team:b")) == []
    assert ids(crm.search_projects()) == ["search-alpha", "search-beta", "search-gamma"]
    pages = crm.search_projects(request={"query": "id:search-*", "page_size": 2}).pages
    assert [len(page.projects) for page in pages] == [2, 1]

    crm.delete_project(name="projects/search-beta").result(timeout=30)
    assert crm.get_project(name="projects/search-beta").state == resourcemanager_v3.Project.State.DELETE_REQUESTED
    assert ids(crm.search_projects(query="state:DELETE_REQUESTED")) == ["search-beta"]
    assert ids(crm.search_projects(query="state:ACTIVE")) == ["search-alpha", "search-gamma"]
    with pytest.raises(gexc.Conflict):            # the ID stays taken while the project is being deleted
        make(crm, "search-beta")

    back = crm.undelete_project(name="projects/search-beta").result(timeout=30)
    assert back.project_id == "search-beta" and back.state == resourcemanager_v3.Project.State.ACTIVE
    assert crm.get_project(name="projects/search-beta").state == resourcemanager_v3.Project.State.ACTIVE
    with pytest.raises(gexc.BadRequest) as active:  # only a project being deleted can be undeleted
        crm.undelete_project(name="projects/search-beta").result(timeout=30)
    assert active.value.response.json()["error"]["status"] == "FAILED_PRECONDITION"
    with pytest.raises(gexc.Forbidden):           # a project that does not exist: 403, never 404
        crm.undelete_project(name="projects/search-nowhere")


def test_v1_undelete_answers_empty(emulator):
    from googleapiclient import discovery

    crm = rest(resourcemanager_v3.ProjectsClient, emulator)
    make(crm, "undelete-v1")
    v1 = discovery.build("cloudresourcemanager", "v1", credentials=AnonymousCredentials(),
                         client_options={"api_endpoint": emulator.url}, cache_discovery=False)
    assert v1.projects().delete(projectId="undelete-v1").execute() == {}
    assert v1.projects().get(projectId="undelete-v1").execute()["lifecycleState"] == "DELETE_REQUESTED"
    assert v1.projects().undelete(projectId="undelete-v1", body={}).execute() == {}
    assert v1.projects().get(projectId="undelete-v1").execute()["lifecycleState"] == "ACTIVE"


def test_search_under_enforced_iam_shows_only_what_the_caller_may_get(emulator_factory):
    from google.oauth2.credentials import Credentials

    emu = emulator_factory(enforce_iam=True)
    ana = resourcemanager_v3.ProjectsClient(credentials=Credentials(token="emulator:user:ana@example.com"),
                                            transport="rest", client_options=ClientOptions(api_endpoint=emu.url))
    bob = resourcemanager_v3.ProjectsClient(credentials=Credentials(token="emulator:user:bob@example.com"),
                                            transport="rest", client_options=ClientOptions(api_endpoint=emu.url))
    make(ana, "ana-only")
    make(bob, "bob-only")
    assert ids(ana.search_projects()) == ["ana-only"] and ids(bob.search_projects(query="id:ana-only")) == []


def test_billing_link_and_account_iam(emulator):
    crm = rest(resourcemanager_v3.ProjectsClient, emulator)
    make(crm, "billing-iam-1")
    billing = rest(billing_v1.CloudBillingClient, emulator)
    assert [a.name for a in billing.list_billing_accounts()] == [ACCOUNT]
    info = billing.update_project_billing_info(name="projects/billing-iam-1",
                                               project_billing_info={"billing_account_name": ACCOUNT})
    assert info.billing_enabled and info.billing_account_name == ACCOUNT
    assert billing.get_project_billing_info(name="projects/billing-iam-1").billing_enabled

    policy = billing.get_iam_policy(request={"resource": ACCOUNT, "options": {"requested_policy_version": 3}})
    assert [(b.role, list(b.members)) for b in policy.bindings] == \
        [("roles/billing.user", ["user:emulator-owner@example.com"])]
    policy.bindings.add(role="roles/billing.viewer", members=["group:finance@example.com"])
    updated = billing.set_iam_policy(request={"resource": ACCOUNT, "policy": policy})
    assert updated.etag != policy.etag
    assert {b.role for b in billing.get_iam_policy(resource=ACCOUNT).bindings} == \
        {"roles/billing.user", "roles/billing.viewer"}
    stale = policy_pb2.Policy(bindings=[policy_pb2.Binding(role="roles/billing.admin", members=["user:x@example.com"])],
                              etag=policy.etag)
    with pytest.raises(gexc.Conflict) as conflict:             # 409 ABORTED, as for project policies
        billing.set_iam_policy(request={"resource": ACCOUNT, "policy": stale})
    assert conflict.value.response.json()["error"]["status"] == "ABORTED"
    held = billing.test_iam_permissions(request=iam_policy_pb2.TestIamPermissionsRequest(
        resource=ACCOUNT, permissions=["billing.resourceAssociations.create", "billing.accounts.close"]))
    assert list(held.permissions) == ["billing.resourceAssociations.create", "billing.accounts.close"]
    with pytest.raises(gexc.Forbidden):                        # an account that does not exist
        billing.get_iam_policy(resource="billingAccounts/000000-000000-000000")


def test_billing_account_iam_is_enforced(emulator_factory):
    from google.oauth2.credentials import Credentials

    emu = emulator_factory(enforce_iam=True)

    def as_(member):
        return billing_v1.CloudBillingClient(credentials=Credentials(token=f"emulator:{member}"), transport="rest",
                                             client_options=ClientOptions(api_endpoint=emu.url))

    owner, eve = as_("user:emulator-owner@example.com"), as_("user:eve@example.com")
    with pytest.raises(gexc.Forbidden):          # a billing user may link projects, not read the policy
        owner.get_iam_policy(resource=ACCOUNT)
    with pytest.raises(gexc.Forbidden):
        eve.get_iam_policy(resource=ACCOUNT)
    asked = ["billing.resourceAssociations.create"]
    assert list(owner.test_iam_permissions(resource=ACCOUNT, permissions=asked).permissions) == asked
    assert list(eve.test_iam_permissions(resource=ACCOUNT, permissions=asked).permissions) == []
