"""README's role list, proven under --enforce-iam: a caller holding exactly the project roles README
names applies a blueprint end to end (bucket upload, import, grants, the ownership record) on a
project someone else made; without any one of them, preflight names that role and nothing changes.
(The viewer's roles are proven in the browser: tests/test_browser_google.py.)"""
from __future__ import annotations

import re

import pytest
import requests
from google.api_core.client_options import ClientOptions

from emulator_helpers import ACCOUNT, CONTROL, credentials, discovery_client
from provision.checks import preflight
from provision.running import lifecycle
from provision.gcp.target import Target
from test_apply_support import BILLING, ORG, blueprint_dict, is_write, load, records, write_dicom

OWNER = "user:ana@example.com"
CALLER = "user:dev@example.com"
# README, "Using real Google Cloud": the roles on an existing project (a creator owns its project).
README_PROJECT_ROLES = {
    "roles/serviceusage.serviceUsageAdmin": "Service Usage Admin",
    "roles/resourcemanager.projectIamAdmin": "Project IAM Admin",
    "roles/healthcare.datasetAdmin": "Healthcare Dataset Administrator",
    "roles/storage.admin": "Storage Admin",
}
PID = "ohif-roles-team"


def test_readme_roles_are_enough_and_each_is_needed(emulator_factory, tmp_path):
    readme = (__import__("pathlib").Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("## Using real Google Cloud", 1)[1].split("###", 1)[0]
    for role, title in README_PROJECT_ROLES.items():
        assert title in section or role in section, f"README no longer names {title}"
    record = tmp_path / "record.jsonl"
    emu = emulator_factory(enforce_iam=True, record=record)
    for resource, role in ((ORG, "roles/resourcemanager.projectCreator"), (f"billingAccounts/{BILLING}", "roles/billing.user")):
        requests.put(f"{emu.url}/_emulator/policies/{resource}", json={"bindings": [{"role": role, "members": [OWNER]}]},
                     headers=CONTROL, timeout=10).raise_for_status()
    # ana makes the project (name and labels as the blueprint says) and links billing; dev does the rest
    from google.cloud import resourcemanager_v3

    crm = resourcemanager_v3.ProjectsClient(credentials=credentials(OWNER), transport="rest",
                                            client_options=ClientOptions(api_endpoint=emu.url))
    crm.create_project(project=resourcemanager_v3.Project(project_id=PID, parent=ORG, display_name="Provision Test",
                                                          labels={"team": "a"})).result(30)
    discovery_client(emu.url, "cloudbilling", "v1", OWNER).projects().updateBillingInfo(
        name=f"projects/{PID}", body={"billingAccountName": ACCOUNT}).execute()
    data = tmp_path / "data"
    write_dicom(data)
    bp = load(tmp_path, blueprint_dict(PID, data))
    target = Target(emulator=emu.url, token=f"emulator:{CALLER}")

    def grant(roles) -> None:
        policy = crm.get_iam_policy(request={"resource": f"projects/{PID}"})
        keep = [b for b in policy.bindings if CALLER not in b.members]
        del policy.bindings[:]
        policy.bindings.extend(keep)
        for role in roles:
            policy.bindings.add(role=role, members=[CALLER])
        crm.set_iam_policy(request={"resource": f"projects/{PID}", "policy": policy})

    for missing, title in README_PROJECT_ROLES.items():
        grant([r for r in README_PROJECT_ROLES if r != missing])
        start = len(records(record))
        with pytest.raises(preflight.PreflightError) as info:
            lifecycle.plan(bp, target)
        message = str(info.value)
        named = set(re.findall(r"\((roles/[\w.]+)\) on projects/", message))
        assert named == {missing}, (missing, message)
        assert f"{title} ({missing})" in message
        assert not [r for r in records(record)[start:] if is_write(r)], "preflight changed something"
    grant(README_PROJECT_ROLES)
    result = lifecycle.apply(bp, target)
    assert result.ok, result.error
    assert any(s.id.startswith("import") and s.status == "done" for s in result.steps)
    store = f"projects/{PID}/locations/us-central1/datasets/imaging/dicomStores/primary"
    studies = requests.get(f"{emu.url}/v1/{store}/dicomWeb/studies",
                           headers={"Authorization": f"Bearer emulator:{OWNER}"}, timeout=10).json()
    assert len(studies) == 2
    assert not lifecycle.plan(bp, target).has_changes   # and the second run is reads only
