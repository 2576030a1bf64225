"""Resource Manager in the emulator, driven over real HTTP by the real, unchanged clients:
google-cloud-resource-manager's v3 ProjectsClient (REST) and the discovery client for v1."""
from __future__ import annotations

import base64
import json
import re
import time

import pytest
import requests
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import resourcemanager_v3
from google.oauth2.credentials import Credentials
from googleapiclient import discovery as gdiscovery
from googleapiclient.errors import HttpError

from emulator_helpers import CONTROL
from provision.emulator import discovery
from provision.emulator.latency import REALISTIC

V1, V3 = "cloudresourcemanager.v1", "cloudresourcemanager.v3"
V3_PROJECT_FIELDS = {"name", "parent", "projectId", "state", "displayName", "createTime", "updateTime",
                     "deleteTime", "etag", "labels"}


def assert_schema(doc: str, ref: str, body: dict) -> dict:
    """The body meets the discovery document's response schema (no unknown field, right types)."""
    found = discovery.problems(doc, ref, body)
    assert not found, f"{ref} does not match {doc}: {found}\n{json.dumps(body, indent=1)}"
    return body


def v3_client(emu, token: str | None = None) -> resourcemanager_v3.ProjectsClient:
    creds = Credentials(token=f"emulator:{token}") if token else AnonymousCredentials()
    return resourcemanager_v3.ProjectsClient(credentials=creds, transport="rest",
                                             client_options=ClientOptions(api_endpoint=emu.url))


def v1_client(emu, token: str | None = None):
    creds = Credentials(token=f"emulator:{token}") if token else AnonymousCredentials()
    return gdiscovery.build("cloudresourcemanager", "v1", credentials=creds,
                            client_options={"api_endpoint": emu.url}, cache_discovery=False)


def create(client, project_id: str, parent: str = "", **fields) -> resourcemanager_v3.Project:
    project = resourcemanager_v3.Project(project_id=project_id, parent=parent, **fields)
    return client.create_project(project=project).result(timeout=30)


def error_status(exc) -> str:
    return exc.response.json()["error"]["status"]


# ----- create / get / delete -----------------------------------------------------------------
def test_create_then_get_by_id_and_number(emulator):
    client = v3_client(emulator)
    made = create(client, "demo-alpha", "folders/42", display_name="Demo Alpha", labels={"env": "test"})
    assert re.fullmatch(r"projects/\d{12}", made.name)
    assert (made.project_id, made.parent, made.display_name) == ("demo-alpha", "folders/42", "Demo Alpha")
    assert made.state == resourcemanager_v3.Project.State.ACTIVE and dict(made.labels) == {"env": "test"}
    by_number = client.get_project(name=made.name)
    by_id = client.get_project(name="projects/demo-alpha")
    assert by_number.project_id == by_id.project_id == "demo-alpha"
    assert [p.project_id for p in client.list_projects(parent="folders/42")] == ["demo-alpha"]
    assert list(client.list_projects(parent="folders/43")) == []
    raw = requests.get(f"{emulator.url}/v3/projects/demo-alpha").json()
    assert set(raw) <= V3_PROJECT_FIELDS
    assert_schema(V3, "Project", raw)
    base64.b64decode(raw["etag"], validate=True)


def test_create_operation_wire_shape(emulator):
    started = requests.post(f"{emulator.url}/v3/projects", json={"projectId": "demo-shape", "displayName": "Shape"})
    assert started.status_code == 200
    op = started.json()
    assert set(op) == {"name", "metadata"}          # never done on the create call itself
    assert re.fullmatch(r"operations/cp\.\d+", op["name"])
    assert op["metadata"]["@type"] == "type.googleapis.com/google.cloud.resourcemanager.v3.CreateProjectMetadata"
    polled = requests.get(f"{emulator.url}/v3/{op['name']}").json()
    assert set(polled) == {"name", "metadata", "done", "response"}
    assert polled["metadata"]["ready"] is True and polled["metadata"]["gettable"] is True
    assert polled["response"]["@type"] == "type.googleapis.com/google.cloud.resourcemanager.v3.Project"
    assert set(polled["response"]) - {"@type"} <= V3_PROJECT_FIELDS
    assert_schema(V3, "Operation", polled)


def test_missing_project_is_403_not_404(emulator):
    client = v3_client(emulator)
    with pytest.raises(gexc.Forbidden):
        client.get_project(name="projects/no-such-project")
    for path in ("/v3/projects/no-such-project", "/v1/projects/no-such-project", "/v3/projects/123456789012"):
        r = requests.get(emulator.url + path)
        assert r.status_code == 403
        assert r.json() == {"error": {"code": 403, "message": "The caller does not have permission",
                                      "status": "PERMISSION_DENIED"}}


def test_duplicate_id_is_409_even_after_delete(emulator):
    client = v3_client(emulator)
    create(client, "demo-twice")
    with pytest.raises(gexc.Conflict) as first:
        client.create_project(project=resourcemanager_v3.Project(project_id="demo-twice"))
    assert error_status(first.value) == "ALREADY_EXISTS"
    assert first.value.response.json()["error"]["message"] == "Requested entity already exists"
    deleted = client.delete_project(name="projects/demo-twice").result(timeout=30)
    assert deleted.state == resourcemanager_v3.Project.State.DELETE_REQUESTED
    assert client.get_project(name="projects/demo-twice").state == resourcemanager_v3.Project.State.DELETE_REQUESTED
    with pytest.raises(gexc.Conflict):
        client.create_project(project=resourcemanager_v3.Project(project_id="demo-twice"))


def test_deleted_project_is_purged_after_30_days(emulator):
    client = v3_client(emulator)
    create(client, "demo-purged")
    client.delete_project(name="projects/demo-purged").result(timeout=30)
    assert client.get_project(name="projects/demo-purged").state.name == "DELETE_REQUESTED"
    real_clock = emulator.world.clock
    emulator.world.clock = lambda: real_clock() + 31 * 24 * 3600     # the emulator's own clock, 31 days on
    with pytest.raises(gexc.Forbidden):
        client.get_project(name="projects/demo-purged")
    assert emulator.world.crm.lookup("demo-purged") is None
    with pytest.raises(gexc.Conflict):                              # the ID is never free again
        client.create_project(project=resourcemanager_v3.Project(project_id="demo-purged"))


def test_invalid_project_id_is_400(emulator):
    for bad in ("Upper-Case", "short", "ends-with-", "has-google-in-it", "9starts-with-digit"):
        r = requests.post(f"{emulator.url}/v3/projects", json={"projectId": bad})
        assert r.status_code == 400, bad
        assert r.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_unknown_field_in_create_body_is_400(emulator):
    r = requests.post(f"{emulator.url}/v3/projects", json={"projectId": "demo-unknown", "colour": "blue"})
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert "colour" in r.json()["error"]["message"]


def test_v3_patch_updates_labels(emulator):
    client = v3_client(emulator)
    create(client, "demo-patch")
    project = resourcemanager_v3.Project(name="projects/demo-patch", labels={"team": "imaging"})
    updated = client.update_project(project=project, update_mask={"paths": ["labels"]}).result(timeout=30)
    assert dict(updated.labels) == {"team": "imaging"}


# ----- IAM -----------------------------------------------------------------------------------
def test_new_project_policy_makes_creator_owner(emulator):
    client = v3_client(emulator)
    create(client, "demo-owner")
    policy = client.get_iam_policy(request={"resource": "projects/demo-owner", "options": {"requested_policy_version": 3}})
    assert [(b.role, list(b.members)) for b in policy.bindings] == [("roles/owner", ["user:emulator-owner@example.com"])]


def test_iam_read_modify_write_with_etag_round_trip(emulator):
    client = v3_client(emulator)
    create(client, "demo-iam")
    resource = "projects/demo-iam"
    policy = client.get_iam_policy(request={"resource": resource, "options": {"requested_policy_version": 3}})
    raw = requests.post(f"{emulator.url}/v3/{resource}:getIamPolicy", json={"options": {"requestedPolicyVersion": 3}}).json()
    assert base64.b64encode(policy.etag).decode() == raw["etag"]   # canonical base64 round-trips unchanged
    assert_schema(V3, "Policy", raw)
    policy.bindings.add(role="roles/viewer", members=["user:viewer@example.com"])
    written = client.set_iam_policy(request={"resource": resource, "policy": policy})
    assert written.etag != policy.etag
    again = client.get_iam_policy(request={"resource": resource, "options": {"requested_policy_version": 3}})
    assert {(b.role, tuple(b.members)) for b in again.bindings} == {
        ("roles/owner", ("user:emulator-owner@example.com",)), ("roles/viewer", ("user:viewer@example.com",))}
    with pytest.raises(gexc.Conflict) as stale:             # the old etag again: a concurrent change
        client.set_iam_policy(request={"resource": resource, "policy": policy})
    assert error_status(stale.value) == "ABORTED"
    assert "concurrent policy changes" in stale.value.message


def test_conditional_bindings_survive_with_version_3(emulator):
    client = v3_client(emulator)
    create(client, "demo-cond")
    resource = "projects/demo-cond"
    policy = client.get_iam_policy(request={"resource": resource, "options": {"requested_policy_version": 3}})
    policy.version = 3
    policy.bindings.add(role="roles/viewer", members=["user:temp@example.com"],
                        condition={"title": "until-2030", "expression": 'request.time < timestamp("2030-01-01T00:00:00Z")'})
    client.set_iam_policy(request={"resource": resource, "policy": policy})
    read = client.get_iam_policy(request={"resource": resource, "options": {"requested_policy_version": 3}})
    assert read.version == 3
    conditional = [b for b in read.bindings if b.condition.title]
    assert len(conditional) == 1 and conditional[0].condition.title == "until-2030"
    read.bindings.add(role="roles/browser", members=["user:x@example.com"])   # write back with v3: kept
    client.set_iam_policy(request={"resource": resource, "policy": read})
    after = client.get_iam_policy(request={"resource": resource, "options": {"requested_policy_version": 3}})
    assert any(b.condition.title == "until-2030" for b in after.bindings)
    r = requests.post(f"{emulator.url}/v3/{resource}:getIamPolicy", json={"options": {"requestedPolicyVersion": 1}})
    assert r.status_code == 400                                # v1 readers cannot see conditions


def test_owner_to_user_needs_invitation_and_public_members_refused(emulator):
    client = v3_client(emulator)
    create(client, "demo-rules")
    resource = "projects/demo-rules"
    policy = client.get_iam_policy(request={"resource": resource})
    policy.bindings.add(role="roles/owner", members=["user:new-owner@example.com"])
    with pytest.raises(gexc.BadRequest) as owner:
        client.set_iam_policy(request={"resource": resource, "policy": policy})
    detail = owner.value.response.json()["error"]["details"][0]
    assert detail["type"] == "SOLO_MUST_INVITE_OWNERS" and detail["member"] == "user:new-owner@example.com"
    for member in ("allUsers", "allAuthenticatedUsers"):
        policy = client.get_iam_policy(request={"resource": resource})
        policy.bindings.add(role="roles/viewer", members=[member])
        with pytest.raises(gexc.BadRequest):
            client.set_iam_policy(request={"resource": resource, "policy": policy})
    policy = client.get_iam_policy(request={"resource": resource})   # the existing owner may stay
    policy.bindings.add(role="roles/owner", members=["serviceAccount:robot@demo-rules.iam.gserviceaccount.com"])
    client.set_iam_policy(request={"resource": resource, "policy": policy})


def test_test_iam_permissions_without_enforcement_grants_everything(emulator):
    client = v3_client(emulator)
    create(client, "demo-tip")
    asked = ["resourcemanager.projects.get", "resourcemanager.projects.delete"]
    got = client.test_iam_permissions(request={"resource": "projects/demo-tip", "permissions": asked})
    assert list(got.permissions) == asked
    v1 = v1_client(emulator).projects().testIamPermissions(resource="demo-tip", body={"permissions": asked}).execute()
    assert assert_schema(V1, "TestIamPermissionsResponse", v1)["permissions"] == asked


# ----- v1 (what OHIF calls) ------------------------------------------------------------------
def test_v1_create_poll_get_list_update_delete(emulator):
    crm = v1_client(emulator)
    started = crm.projects().create(body={"projectId": "demo-v1-one", "name": "Demo V1",
                                          "parent": {"type": "folder", "id": "77"}}).execute()
    assert set(started) == {"name"}
    op = crm.operations().get(name=started["name"]).execute()
    assert_schema(V1, "Operation", op)
    assert op["metadata"]["@type"] == "type.googleapis.com/google.cloudresourcemanager.v1.ProjectCreationStatus"
    assert op["response"]["@type"] == "type.googleapis.com/google.cloudresourcemanager.v1.Project"
    project = assert_schema(V1, "Project", crm.projects().get(projectId="demo-v1-one").execute())
    assert project["parent"] == {"type": "folder", "id": "77"} and project["lifecycleState"] == "ACTIVE"
    assert re.fullmatch(r"\d{12}", project["projectNumber"]) and project["name"] == "Demo V1"
    project["labels"] = {"env": "dev"}
    project["name"] = "Demo V1 renamed"
    updated = assert_schema(V1, "Project", crm.projects().update(projectId="demo-v1-one", body=project).execute())
    assert updated["labels"] == {"env": "dev"} and updated["name"] == "Demo V1 renamed"
    assert crm.projects().delete(projectId="demo-v1-one").execute() == {}
    assert crm.projects().get(projectId="demo-v1-one").execute()["lifecycleState"] == "DELETE_REQUESTED"


def test_v1_list_pages_and_filters(emulator):
    crm = v1_client(emulator)
    client = v3_client(emulator)
    for i in range(5):
        create(client, f"demo-list-{i}", labels={"parity": "even" if i % 2 == 0 else "odd"})
    seen, token = [], None
    while True:
        page = assert_schema(V1, "ListProjectsResponse",
                             crm.projects().list(pageSize=2, pageToken=token).execute())
        assert len(page["projects"]) <= 2
        seen += [p["projectId"] for p in page["projects"]]
        token = page.get("nextPageToken")
        if not token:
            break
    assert seen == [f"demo-list-{i}" for i in range(5)]
    odd = crm.projects().list(filter="labels.parity:odd").execute()["projects"]
    assert [p["projectId"] for p in odd] == ["demo-list-1", "demo-list-3"]
    one = crm.projects().list(filter="id:demo-list-4 lifecycleState:ACTIVE").execute()["projects"]
    assert [p["projectId"] for p in one] == ["demo-list-4"]


def test_v1_list_answers_browser_cors(emulator):
    create(v3_client(emulator), "demo-cors")
    r = requests.get(f"{emulator.url}/v1/projects", headers={"Origin": "http://localhost:3000"})
    assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"


# ----- --enforce-iam -------------------------------------------------------------------------
def test_enforce_iam_allows_and_denies(emulator_factory):
    emu = emulator_factory(enforce_iam=True)
    seeded = requests.put(f"{emu.url}/_emulator/policies/organizations/555", json={"bindings": [
        {"role": "roles/resourcemanager.projectCreator", "members": ["user:ana@example.com"]}]}, headers=CONTROL)
    assert seeded.status_code == 200
    ana, bob = v3_client(emu, "user:ana@example.com"), v3_client(emu, "user:bob@example.com")
    made = create(ana, "demo-enforced", "organizations/555")
    assert made.parent == "organizations/555"
    with pytest.raises(gexc.Forbidden):                 # no projectCreator on the org
        create(bob, "demo-bobs", "organizations/555")
    with pytest.raises(gexc.Forbidden) as denied:       # same answer as a missing project
        bob.get_project(name="projects/demo-enforced")
    assert denied.value.response.json()["error"]["message"] == "The caller does not have permission"
    asked = ["resourcemanager.projects.get", "resourcemanager.projects.setIamPolicy"]
    assert list(ana.test_iam_permissions(request={"resource": "projects/demo-enforced", "permissions": asked}).permissions) == asked
    assert list(bob.test_iam_permissions(request={"resource": "projects/demo-enforced", "permissions": asked}).permissions) == []
    policy = ana.get_iam_policy(request={"resource": "projects/demo-enforced"})
    assert [(b.role, list(b.members)) for b in policy.bindings] == [("roles/owner", ["user:ana@example.com"])]
    policy.bindings.add(role="roles/viewer", members=["user:bob@example.com"])
    ana.set_iam_policy(request={"resource": "projects/demo-enforced", "policy": policy})
    assert bob.get_project(name="projects/demo-enforced").project_id == "demo-enforced"
    assert list(bob.test_iam_permissions(request={"resource": "projects/demo-enforced", "permissions": asked}).permissions) == [asked[0]]
    with pytest.raises(gexc.Forbidden):                 # viewer cannot change the policy
        bob.set_iam_policy(request={"resource": "projects/demo-enforced", "policy": policy})
    listed = v1_client(emu, "user:bob@example.com").projects().list().execute()
    assert [p["projectId"] for p in listed["projects"]] == ["demo-enforced"]
    anonymous = requests.get(f"{emu.url}/v3/projects/demo-enforced")
    assert anonymous.status_code == 401


def test_enforce_iam_service_account_needs_a_parent(emulator_factory):
    emu = emulator_factory(enforce_iam=True)
    robot = v3_client(emu, "serviceAccount:robot@ops.iam.gserviceaccount.com")
    with pytest.raises(gexc.Forbidden) as denied:
        create(robot, "demo-orphan")
    assert "cannot create projects without a parent" in denied.value.message


# ----- persistence, faults, latency ----------------------------------------------------------
def test_data_dir_keeps_projects_across_restart(emulator_factory, tmp_path):
    first = emulator_factory(data_dir=tmp_path)
    made = create(v3_client(first), "demo-persist", display_name="Persisted")
    first.stop()
    second = emulator_factory(data_dir=tmp_path)
    client = v3_client(second)
    again = client.get_project(name="projects/demo-persist")
    assert (again.name, again.display_name) == (made.name, "Persisted")
    other = create(client, "demo-persist-two")
    assert other.name != made.name                           # the number counter survived too
    with pytest.raises(gexc.Conflict):
        client.create_project(project=resourcemanager_v3.Project(project_id="demo-persist"))


def test_failed_create_operation_leaves_no_project(emulator_factory):
    emu = emulator_factory(faults="operation=1.0")
    client = v3_client(emu)
    operation = client.create_project(project=resourcemanager_v3.Project(project_id="demo-doomed"))
    with pytest.raises(gexc.GoogleAPICallError):
        operation.result(timeout=30)
    polled = requests.get(f"{emu.url}/v3/{operation.operation.name}").json()
    assert polled["done"] is True and polled["error"]["code"] == 13 and "response" not in polled
    with pytest.raises(gexc.Forbidden):
        client.get_project(name="projects/demo-doomed")


def test_create_operation_takes_its_time(emulator_factory, tmp_path):
    table = tmp_path / "latency.json"   # a FILE overrides the realistic table: zero the rest
    table.write_text(json.dumps({**{key: 0 for key in REALISTIC}, "op:crm.projects.create": 0.4}))
    emu = emulator_factory(latency=str(table))
    started = time.monotonic()
    op = requests.post(f"{emu.url}/v3/projects", json={"projectId": "demo-slow"}).json()
    pending = requests.get(f"{emu.url}/v3/{op['name']}").json()
    assert "done" not in pending and "response" not in pending
    assert pending["metadata"]["gettable"] is True and "ready" not in pending["metadata"]
    assert v3_client(emu).get_project(name="projects/demo-slow").project_id == "demo-slow"  # gettable at once
    while "done" not in (polled := requests.get(f"{emu.url}/v3/{op['name']}").json()):
        assert time.monotonic() - started < 5
        time.sleep(0.05)   # polling as a client does: the emulated 0.4 s is what is measured
    assert time.monotonic() - started >= 0.4 and polled["metadata"]["ready"] is True


def test_v1_discovery_errors_surface_as_http_errors(emulator):
    with pytest.raises(HttpError) as err:
        v1_client(emulator).projects().get(projectId="nothing-here").execute()
    assert err.value.status_code == 403


def test_operation_get_needs_permission_on_its_project(emulator_factory):
    emu = emulator_factory(enforce_iam=True)
    requests.put(f"{emu.url}/_emulator/policies/organizations/555", json={"bindings": [
        {"role": "roles/resourcemanager.projectCreator", "members": ["user:ana@example.com",
                                                                     "user:bob@example.com"]}]}, headers=CONTROL)
    ana, bob = ({"Authorization": f"Bearer emulator:user:{who}@example.com"} for who in ("ana", "bob"))
    started = requests.post(f"{emu.url}/v3/projects", json={"projectId": "op-guarded", "parent": "organizations/555"},
                            headers=ana).json()
    url = f"{emu.url}/v3/{started['name']}"
    assert requests.get(url, headers=ana).status_code == 200
    assert requests.get(url, headers=bob).status_code == 403
    assert requests.get(url).status_code == 401
    v1 = f"{emu.url}/v1/{started['name']}"
    assert requests.get(v1, headers=ana).status_code == 200 and requests.get(v1, headers=bob).status_code == 403
    deleted = requests.delete(f"{emu.url}/v3/projects/op-guarded", headers=ana).json()
    assert requests.get(f"{emu.url}/v3/{deleted['name']}", headers=ana).status_code == 200
    assert requests.get(f"{emu.url}/v3/{deleted['name']}", headers=bob).status_code == 403


def test_update_cannot_undo_a_concurrent_delete(emulator):
    import threading

    crm = emulator.world.crm
    create(v3_client(emulator), "race-project")
    real_validate = crm._validate
    inside, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def held_validate(*args, **kwargs):  # hold the update between reading the project and writing it
        inside.set()
        assert release.wait(10)
        return real_validate(*args, **kwargs)

    def run(call, *args, **kwargs):
        try:
            call(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    crm._validate = held_validate
    try:
        patch = threading.Thread(target=run, args=(crm.update, "race-project"), kwargs={"labels": {"a": "b"}})
        patch.start()
        assert inside.wait(10), "the update never read the project"
        deleting = threading.Thread(target=run, args=(crm.delete, "race-project"), kwargs={"operation": False})
        deleting.start()
        # What is tested is that the delete cannot slip in while the update holds what it read: it
        # must still be waiting a while later (a bounded wait is the only way to see "not yet").
        deleting.join(0.3)
        assert deleting.is_alive(), "the delete went through while the update held the project"
        release.set()
        patch.join(10)
        deleting.join(10)
    finally:
        release.set()
        crm._validate = real_validate
    assert not errors and not patch.is_alive() and not deleting.is_alive()
    assert crm.lookup("race-project")["state"] == "DELETE_REQUESTED"
    # and a second delete, even a concurrent one, finds it no longer ACTIVE
    r = requests.delete(f"{emulator.url}/v3/projects/race-project")
    assert r.status_code == 400 and r.json()["error"]["status"] == "FAILED_PRECONDITION"
