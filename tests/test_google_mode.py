"""The provisioner in Google mode against the emulator: the credentials a user has on Google
(an `authorized_user` ADC file from `gcloud auth application-default login`, a service-account
key, impersonation through IAM Credentials) drive apply, status and destroy, with google-auth
refreshing and impersonating for real against the emulator's token endpoint and
generateAccessToken (--enforce-iam: every call is checked as the principal the token stands for).
The quota-project trap of user credentials is refused by preflight with the exact fix, and
`--quota-project` / the file's `quota_project_id` get past it."""
from __future__ import annotations

import json
import os

import requests
from typer.testing import CliRunner

from emulator_helpers import CONTROL, create_project
from provision.running import lifecycle
from provision.cli import app
from provision.gcp.target import Target
from test_apply_support import BILLING, ORG, blueprint_dict, load, records

ANA = "user:ana@example.com"
HOME = "gm-home"                                   # ana's own project: her quota project
DEPLOYER = "deployer@gm-ops.iam.gserviceaccount.com"    # of another project, where ana holds nothing


# A person who creates a project owns it; a service account does not (its projects start with an
# empty policy), so it holds README's project roles on the organization instead.
PROJECT_ROLES = ("roles/serviceusage.serviceUsageAdmin", "roles/resourcemanager.projectIamAdmin", "roles/billing.projectManager",
                 "roles/healthcare.datasetAdmin", "roles/storage.admin")


def seed(emu, *members: str) -> None:
    """Project Creator on the organization and Billing Account User, as README's role list says;
    service accounts also get the project roles there."""
    accounts = [m for m in members if m.startswith("serviceAccount:")]
    org = [{"role": "roles/resourcemanager.projectCreator", "members": list(members)}]
    org += [{"role": role, "members": accounts} for role in PROJECT_ROLES if accounts]
    for resource, bindings in ((ORG, org), (f"billingAccounts/{BILLING}",
                                            [{"role": "roles/billing.user", "members": list(members)}])):
        requests.put(f"{emu.url}/_emulator/policies/{resource}", json={"bindings": bindings},
                     headers=CONTROL, timeout=10).raise_for_status()


def adc_file(emu, tmp_path, name: str, **body) -> str:
    resp = requests.post(f"{emu.url}/_emulator/oauth/adc", json=body, headers=CONTROL, timeout=10)
    resp.raise_for_status()
    path = tmp_path / name
    path.write_text(json.dumps(resp.json()))
    return str(path)


def small_blueprint(tmp_path, pid: str):
    """Project, billing, APIs, a project grant, a bucket, a dataset and a store with a grant (no data)."""
    data = blueprint_dict(pid, None, smoke={"min_studies": 0},
                          dicom_stores=[{"id": "primary", "iam": [{"member": "group:radiology@example.com",
                                                                   "roles": ["roles/healthcare.dicomViewer"]}]}])
    return load(tmp_path, data, f"{pid}.yaml")


def cli(*args: str, env: dict) -> object:
    base = {k: v for k, v in os.environ.items() if k not in ("PROVISION_EMULATOR_TOKEN", "GOOGLE_CLOUD_QUOTA_PROJECT")}
    return CliRunner().invoke(app, list(args), env={**base, **env, "PROVISION_EMULATOR_TOKEN": ""})


def principals(record) -> set[str]:
    return {r["principal"] for r in records(record) if r["api"] not in ("oauth2", "cors")}


def test_authorized_user_adc_quota_project_trap_then_apply_status_destroy(emulator_factory, tmp_path):
    record = tmp_path / "record.jsonl"
    emu = emulator_factory(enforce_iam=True, record=record)
    seed(emu, ANA)
    create_project(emu.url, HOME, member=ANA, parent=ORG, enable=())
    bp_path = tmp_path / "gm-user.yaml"
    small_blueprint(tmp_path, "gm-user")
    env = {"PROVISION_EMULATOR_HOST": emu.url,
           "GOOGLE_APPLICATION_CREDENTIALS": adc_file(emu, tmp_path, "ana.json", type="authorized_user",
                                                      email="ana@example.com")}
    start = len(records(record))
    # the trap: gcloud's user ADC without a quota project; preflight names it and the exact fix, changes nothing
    refused = cli("plan", str(bp_path), env=env)
    assert refused.exit_code == 1, refused.output
    assert "requires a quota project, which is not set by default" in refused.output
    assert "gcloud auth application-default set-quota-project PROJECT" in refused.output
    assert "--quota-project PROJECT" in refused.output and "Traceback" not in refused.output
    assert all(r["method"] == "GET" or r["api"] == "oauth2" or r["path"].endswith(":testIamPermissions")
               for r in records(record)[start:])
    # --quota-project: x-goog-user-project on every call; google-auth refreshes ana's token at the emulator
    applied = cli("apply", str(bp_path), "--yes", "--no-smoke", "--quota-project", HOME, env=env)
    assert applied.exit_code == 0, applied.output
    assert cli("status", str(bp_path), "--quota-project", HOME, env=env).exit_code == 0
    # the file's own quota_project_id (`gcloud auth application-default set-quota-project`) needs no flag
    env["GOOGLE_APPLICATION_CREDENTIALS"] = adc_file(emu, tmp_path, "ana-q.json", type="authorized_user",
                                                     email="ana@example.com", quota_project_id=HOME)
    planned = cli("plan", str(bp_path), env=env)
    assert planned.exit_code == 0 and "no changes" in planned.output.lower(), planned.output
    destroyed = cli("destroy", str(bp_path), "--yes", env=env)
    assert destroyed.exit_code == 0, destroyed.output
    recs = records(record)[start:]
    assert principals(record) >= {ANA} and "anonymous" not in {r["principal"] for r in recs if r["api"] not in ("oauth2", "cors")}
    assert any(r["path"] == "/token" and r["status"] == 200 for r in recs)   # refresh_token grants, for real
    assert any(r["method"] == "DELETE" and "/dicomStores/primary" in r["path"] and r["status"] == 200 for r in recs)


def test_service_account_key_and_impersonation(emulator_factory, tmp_path):
    record = tmp_path / "record.jsonl"
    emu = emulator_factory(enforce_iam=True, record=record)
    seed(emu, ANA, f"serviceAccount:{DEPLOYER}")
    create_project(emu.url, HOME, member=ANA, parent=ORG, enable=())
    # a service-account key file: JWT-bearer grants and self-signed JWTs, both signed by the key
    key = adc_file(emu, tmp_path, "deployer.json", type="service_account", email=DEPLOYER)
    target = Target.from_env(env={"PROVISION_EMULATOR_HOST": emu.url, "GOOGLE_APPLICATION_CREDENTIALS": key})
    bp = small_blueprint(tmp_path, "gm-sa-key")
    result = lifecycle.apply(bp, target)
    assert result.ok and result.changed, result.error
    assert lifecycle.status(bp, target).to_json()
    assert not lifecycle.plan(bp, target).has_changes
    lifecycle.destroy(bp, target)
    assert principals(record) == {f"serviceAccount:{DEPLOYER}", ANA}  # ANA: the setup above only
    # impersonation: ana's ADC acting as deployer, refused until she holds Token Creator on it
    start = len(records(record))
    user = adc_file(emu, tmp_path, "ana.json", type="authorized_user", email="ana@example.com", quota_project_id=HOME)
    env = {"PROVISION_EMULATOR_HOST": emu.url, "GOOGLE_APPLICATION_CREDENTIALS": user}
    bp2 = small_blueprint(tmp_path, "gm-imp")
    requests.put(f"{emu.url}/_emulator/oauth/service-accounts/{DEPLOYER}", json={"bindings": []}, headers=CONTROL,
                 timeout=10).raise_for_status()
    refused = cli("plan", str(tmp_path / "gm-imp.yaml"), "--impersonate-service-account", DEPLOYER, env=env)
    assert refused.exit_code == 1
    assert "iam.serviceAccounts.getAccessToken" in refused.output and "Traceback" not in refused.output
    assert "roles/iam.serviceAccountTokenCreator" in refused.output
    requests.put(f"{emu.url}/_emulator/oauth/service-accounts/{DEPLOYER}", json={"bindings": [
        {"role": "roles/iam.serviceAccountTokenCreator", "members": [ANA]}]}, headers=CONTROL, timeout=10).raise_for_status()
    acting = Target.from_env(impersonate=DEPLOYER, env=env)
    assert lifecycle.apply(bp2, acting).ok
    recs = records(record)[start:]
    assert any(r["path"].endswith(f"{DEPLOYER}:generateAccessToken") and r["principal"] == ANA and r["status"] == 200
               for r in recs)
    api_calls = {r["principal"] for r in recs if r["api"] not in ("oauth2", "iamcredentials", "cors")}
    assert api_calls == {f"serviceAccount:{DEPLOYER}"}
