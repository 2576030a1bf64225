"""The emulator's Org Policy v2 and Cloud KMS, through google-api-python-client (discovery), and the
refusals other APIs answer when a call breaks an organization policy: Google's wording where an issue
shows it (provision/emulator/orgpolicy/state.py, storage/constraints.py)."""
from __future__ import annotations

import json

import pytest
import requests
from google.cloud import storage
from googleapiclient.errors import HttpError

from emulator_helpers import CONTROL, create_project, credentials, discovery_client, healthcare, wait_operation
from provision.checks import location_groups
from provision.emulator.orgpolicy import groups

ORG = "organizations/123456789012"


def orgpolicy(url: str, member: str | None = None):
    return discovery_client(url, "orgpolicy", "v2", member)


def kms(url: str, member: str | None = None):
    return discovery_client(url, "cloudkms", "v1", member)


def set_policy(url: str, parent: str, constraint: str, spec: dict) -> dict:
    kind = parent.split("/")[0]
    return getattr(orgpolicy(url), kind)().policies().create(
        parent=parent, body={"name": f"{parent}/policies/{constraint}", "spec": spec}).execute()


def effective(url: str, resource: str, constraint: str) -> dict:
    kind = resource.split("/")[0]
    return getattr(orgpolicy(url), kind)().policies().getEffectivePolicy(
        name=f"{resource}/policies/{constraint}").execute()


def error_of(exc: HttpError) -> dict:
    return json.loads(exc.content)["error"]


def test_policies_crud_and_an_unknown_field_is_googles_400(emulator):
    create_project(emulator.url, "ohif-op-crud")
    made = set_policy(emulator.url, "projects/ohif-op-crud", "storage.uniformBucketLevelAccess",
                      {"rules": [{"enforce": True}]})
    number = made["name"].split("/")[1]
    assert made["name"] == f"projects/{number}/policies/storage.uniformBucketLevelAccess" and number.isdigit()
    assert made["spec"]["rules"] == [{"enforce": True}] and made["spec"]["etag"]
    pol = orgpolicy(emulator.url).projects().policies()
    assert pol.get(name="projects/ohif-op-crud/policies/storage.uniformBucketLevelAccess").execute() == made
    assert [p["name"] for p in pol.list(parent="projects/ohif-op-crud").execute()["policies"]] == [made["name"]]
    with pytest.raises(HttpError) as again:
        set_policy(emulator.url, "projects/ohif-op-crud", "storage.uniformBucketLevelAccess", {"rules": [{"enforce": True}]})
    assert again.value.status_code == 409
    pol.delete(name="projects/ohif-op-crud/policies/storage.uniformBucketLevelAccess").execute()
    with pytest.raises(HttpError) as gone:
        pol.get(name="projects/ohif-op-crud/policies/storage.uniformBucketLevelAccess").execute()
    assert gone.value.status_code == 404
    r = requests.post(f"{emulator.url}/v2/projects/ohif-op-crud/policies", timeout=10, json={
        "name": "projects/ohif-op-crud/policies/gcp.resourceLocations", "spec": {"rulez": []}})
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT" and "rulez" in r.text


def test_effective_policy_inherits_merges_and_resets_down_the_hierarchy(emulator):
    folder = "folders/555"
    r = requests.put(f"{emulator.url}/_emulator/folders/555", json={"parent": ORG}, headers=CONTROL, timeout=10)
    assert r.status_code == 200
    create_project(emulator.url, "ohif-op-tree", parent=folder)
    create_project(emulator.url, "ohif-op-free")   # no parent: no organization's policy reaches it
    set_policy(emulator.url, ORG, "gcp.resourceLocations", {"rules": [{"values": {"allowedValues": ["in:eu-locations"]}}]})
    on_project = effective(emulator.url, "projects/ohif-op-tree", "gcp.resourceLocations")
    assert on_project["spec"]["rules"] == [{"values": {"allowedValues": ["in:eu-locations"]}}]
    assert effective(emulator.url, "projects/ohif-op-free", "gcp.resourceLocations")["spec"]["rules"] == [{"allowAll": True}]
    # The folder adds a value and inherits the organization's; the project then resets to the default.
    set_policy(emulator.url, folder, "gcp.resourceLocations",
               {"inheritFromParent": True, "rules": [{"values": {"allowedValues": ["us-east1"]}}]})
    merged = effective(emulator.url, "projects/ohif-op-tree", "gcp.resourceLocations")["spec"]["rules"]
    assert merged == [{"values": {"allowedValues": ["in:eu-locations", "us-east1"]}}]
    set_policy(emulator.url, "projects/ohif-op-tree", "gcp.resourceLocations", {"reset": True})
    assert effective(emulator.url, "projects/ohif-op-tree", "gcp.resourceLocations")["spec"]["rules"] == [{"allowAll": True}]
    assert effective(emulator.url, "projects/ohif-op-tree", "storage.publicAccessPrevention")["spec"]["rules"] == [
        {"enforce": False}]


def test_value_groups_and_both_tables_agree():
    cases = [("in:eu-locations", "europe-west4", True), ("in:eu-locations", "EUROPE-WEST1", True),
             ("in:eu-locations", "europe-west2", False), ("in:europe-locations", "europe-west2", True),
             ("in:eu-locations", "EU", True), ("in:eu-locations", "us", False), ("in:us-locations", "US", True),
             ("in:us-locations", "us-central1", True), ("in:us-locations", "us-central1-a", True),
             ("in:us-central1-locations", "us-central1-b", True), ("in:us-central1-locations", "us-east1", False),
             ("us-central1", "us-central1", True), ("is:us-central1", "us-central1-a", False)]
    for value, location, expected in cases:
        assert groups.matches(value, location) is expected, (value, location)
        assert location_groups.matches(value, location) is expected, (value, location)
    assert groups.GROUPS == location_groups.GROUPS and groups.AS_OF == location_groups.AS_OF


def test_a_location_outside_the_policy_is_refused_by_healthcare_and_storage(emulator):
    create_project(emulator.url, "ohif-op-eu", parent=ORG)
    set_policy(emulator.url, ORG, "gcp.resourceLocations", {"rules": [{"values": {"allowedValues": ["in:eu-locations"]}}]})
    datasets = healthcare(emulator.url).projects().locations().datasets()
    with pytest.raises(HttpError) as refused:
        datasets.create(parent="projects/ohif-op-eu/locations/us-central1", datasetId="d", body={}).execute()
    err = error_of(refused.value)
    assert refused.value.status_code == 400 and err["status"] == "FAILED_PRECONDITION"
    assert "Constraint constraints/gcp.resourceLocations violated for [orgpolicy:projects/" in err["message"]
    assert "[us-central1]" in err["message"]
    assert err["details"][0]["violations"][0]["type"] == "constraints/gcp.resourceLocations"
    op = datasets.create(parent="projects/ohif-op-eu/locations/europe-west4", datasetId="d", body={}).execute()
    assert "error" not in wait_operation(healthcare(emulator.url), op["name"])

    client = storage.Client(project="ohif-op-eu", credentials=credentials(), client_options={"api_endpoint": emulator.url})
    with pytest.raises(Exception) as bucket:
        client.create_bucket("ohif-op-eu-us", location="US")
    assert getattr(bucket.value, "code", None) == 412
    assert "'us' violates constraint 'constraints/gcp.resourceLocations'" in str(bucket.value)
    assert client.create_bucket("ohif-op-eu-eu", location="EU").location == "EU"


def test_uniform_access_and_member_domains_are_enforced(emulator):
    create_project(emulator.url, "ohif-op-iam", parent=ORG)
    set_policy(emulator.url, ORG, "storage.uniformBucketLevelAccess", {"rules": [{"enforce": True}]})
    set_policy(emulator.url, ORG, "iam.allowedPolicyMemberDomains", {"rules": [{"values": {"allowedValues": ["C0emul8r1"]}}]})
    client = storage.Client(project="ohif-op-iam", credentials=credentials(), client_options={"api_endpoint": emulator.url})
    with pytest.raises(Exception) as refused:
        client.create_bucket("ohif-op-iam-fine-grained")
    assert "Request violates constraint 'constraints/storage.uniformBucketLevelAccess'" in str(refused.value)
    bucket = client.bucket("ohif-op-iam-uniform")
    bucket.iam_configuration.uniform_bucket_level_access_enabled = True
    client.create_bucket(bucket)
    set_policy(emulator.url, "projects/ohif-op-iam", "storage.publicAccessPrevention", {"rules": [{"enforce": True}]})
    policy = bucket.get_iam_policy(requested_policy_version=3)
    policy.bindings.append({"role": "roles/storage.objectViewer", "members": {"allUsers"}})
    with pytest.raises(Exception) as public:
        bucket.set_iam_policy(policy)
    assert getattr(public.value, "code", None) == 412
    assert "Request violates constraint 'constraints/storage.publicAccessPrevention'" in str(public.value)

    crm = discovery_client(emulator.url, "cloudresourcemanager", "v3")
    policy = crm.projects().getIamPolicy(resource="projects/ohif-op-iam", body={}).execute()
    policy["bindings"] = policy.get("bindings", []) + [{"role": "roles/viewer", "members": ["user:eve@elsewhere.org"]}]
    with pytest.raises(HttpError) as outside:
        crm.projects().setIamPolicy(resource="projects/ohif-op-iam", body={"policy": policy}).execute()
    err = error_of(outside.value)
    assert outside.value.status_code == 400 and err["status"] == "FAILED_PRECONDITION"
    assert err["message"] == "One or more users named in the policy do not belong to a permitted customer."
    assert err["details"][0]["violations"][0]["description"] == "User eve@elsewhere.org is not in permitted organization."
    policy["bindings"][-1]["members"] = ["user:ana@example.com"]   # example.com is customer C0emul8r1's
    crm.projects().setIamPolicy(resource="projects/ohif-op-iam", body={"policy": policy}).execute()


def test_kms_key_rings_keys_and_their_policies(emulator):
    create_project(emulator.url, "ohif-op-keys")
    rings = kms(emulator.url).projects().locations().keyRings()
    ring = rings.create(parent="projects/ohif-op-keys/locations/us-central1", keyRingId="imaging", body={}).execute()
    assert ring["name"] == "projects/ohif-op-keys/locations/us-central1/keyRings/imaging"
    key = rings.cryptoKeys().create(parent=ring["name"], cryptoKeyId="dicom", body={"purpose": "ENCRYPT_DECRYPT"}).execute()
    assert key["primary"]["state"] == "ENABLED" and key["versionTemplate"]["algorithm"] == "GOOGLE_SYMMETRIC_ENCRYPTION"
    assert rings.cryptoKeys().get(name=key["name"]).execute() == key
    with pytest.raises(HttpError) as missing:
        rings.cryptoKeys().get(name=ring["name"] + "/cryptoKeys/nope").execute()
    assert missing.value.status_code == 404
    policy = rings.cryptoKeys().getIamPolicy(resource=key["name"]).execute()
    policy["bindings"] = [{"role": "roles/cloudkms.cryptoKeyEncrypterDecrypter", "members": ["user:ana@example.com"]}]
    got = rings.cryptoKeys().setIamPolicy(resource=key["name"], body={"policy": policy}).execute()
    assert got["bindings"] == policy["bindings"]
    with pytest.raises(HttpError) as stale:
        rings.cryptoKeys().setIamPolicy(resource=key["name"], body={"policy": policy}).execute()
    assert stale.value.status_code == 409


def test_a_cmek_dataset_needs_the_agents_grant_and_a_key_in_its_location(emulator):
    number = create_project(emulator.url, "ohif-op-cmek")
    rings = kms(emulator.url).projects().locations().keyRings()
    ring = rings.create(parent="projects/ohif-op-cmek/locations/us-central1", keyRingId="r", body={}).execute()
    key = rings.cryptoKeys().create(parent=ring["name"], cryptoKeyId="k", body={"purpose": "ENCRYPT_DECRYPT"}).execute()
    datasets = healthcare(emulator.url).projects().locations().datasets()
    body = {"encryptionSpec": {"kmsKeyName": key["name"]}}
    with pytest.raises(HttpError) as elsewhere:
        datasets.create(parent="projects/ohif-op-cmek/locations/europe-west4", datasetId="d", body=body).execute()
    assert elsewhere.value.status_code == 400 and "same location" in error_of(elsewhere.value)["message"]
    with pytest.raises(HttpError) as no_grant:
        datasets.create(parent="projects/ohif-op-cmek/locations/us-central1", datasetId="d", body=body).execute()
    assert no_grant.value.status_code == 400 and "cloudkms.cryptoKeyVersions.useToEncrypt" in error_of(no_grant.value)["message"]
    agent = f"serviceAccount:service-{number}@gcp-sa-healthcare.iam.gserviceaccount.com"
    policy = rings.cryptoKeys().getIamPolicy(resource=key["name"]).execute()
    policy["bindings"] = [{"role": "roles/cloudkms.cryptoKeyEncrypterDecrypter", "members": [agent]}]
    rings.cryptoKeys().setIamPolicy(resource=key["name"], body={"policy": policy}).execute()
    op = datasets.create(parent="projects/ohif-op-cmek/locations/us-central1", datasetId="d", body=body).execute()
    assert "error" not in wait_operation(healthcare(emulator.url), op["name"])
    got = datasets.get(name="projects/ohif-op-cmek/locations/us-central1/datasets/d").execute()
    assert got["encryptionSpec"] == {"kmsKeyName": key["name"]}


def test_answers_have_the_shapes_of_the_discovery_documents(emulator):
    """Every answer above, held to its method's response schema (strict proto3 JSON)."""
    from provision.emulator.discovery import response_problems

    create_project(emulator.url, "ohif-op-shape", parent=ORG)
    made = set_policy(emulator.url, ORG, "gcp.resourceLocations", {"rules": [{"values": {"allowedValues": ["in:eu-locations"]}}]})
    assert response_problems("orgpolicy", "POST", f"/v2/{ORG}/policies", made) == []
    eff = effective(emulator.url, "projects/ohif-op-shape", "gcp.resourceLocations")
    assert response_problems("orgpolicy", "GET", "/v2/projects/ohif-op-shape/policies/gcp.resourceLocations:getEffectivePolicy",
                             eff) == []
    rings = kms(emulator.url).projects().locations().keyRings()
    ring = rings.create(parent="projects/ohif-op-shape/locations/europe-west4", keyRingId="r", body={}).execute()
    key = rings.cryptoKeys().create(parent=ring["name"], cryptoKeyId="k", body={"purpose": "ENCRYPT_DECRYPT"}).execute()
    assert response_problems("cloudkms", "POST", f"/v1/{ring['name'].rsplit('/', 2)[0]}/keyRings", ring) == []
    assert response_problems("cloudkms", "GET", f"/v1/{key['name']}", key) == []
    assert response_problems("cloudkms", "GET", f"/v1/{key['name']}:getIamPolicy",
                             rings.cryptoKeys().getIamPolicy(resource=key["name"]).execute()) == []


def test_reset_forgets_added_customers_and_brings_the_seeded_one_back(emulator):
    """The seeded Workspace customer (example.com, the seeded organization) is there after a reset;
    one added through the control route is gone."""
    def organizations() -> list[str]:
        return sorted(o["directoryCustomerId"] for o in discovery_client(emulator.url, "cloudresourcemanager", "v3")
                      .organizations().search().execute().get("organizations", []))

    added = requests.put(f"{emulator.url}/_emulator/customers/C0other01", headers=CONTROL,
                         json={"domains": ["other.example"], "organization": "organizations/555"})
    assert added.status_code == 200, added.text
    assert organizations() == ["C0emul8r1", "C0other01"]
    requests.post(f"{emulator.url}/_emulator/reset", headers=CONTROL).raise_for_status()
    assert organizations() == ["C0emul8r1"]
