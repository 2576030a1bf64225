"""Resource Manager keeps a project's `auditConfigs` as Google does, through the real gapic client
(REST transport): written only when setIamPolicy's updateMask names them, kept when a client
rewrites bindings with the default mask (`bindings,etag`), and part of the etag."""
from __future__ import annotations

import pytest
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import resourcemanager_v3
from google.iam.v1 import iam_policy_pb2, policy_pb2
from google.protobuf import field_mask_pb2, json_format

PROJECT = "audit-cfg-1"
HEALTHCARE_ALL = {"service": "healthcare.googleapis.com", "auditLogConfigs": [
    {"logType": "DATA_READ"}, {"logType": "DATA_WRITE"}, {"logType": "ADMIN_READ"}]}
OTHERS = {"service": "bigquery.googleapis.com", "auditLogConfigs": [
    {"logType": "DATA_READ", "exemptedMembers": ["user:batch@example.com"]}]}


@pytest.fixture
def crm(emulator):
    client = resourcemanager_v3.ProjectsClient(credentials=AnonymousCredentials(), transport="rest",
                                               client_options=ClientOptions(api_endpoint=emulator.url))
    client.create_project(project=resourcemanager_v3.Project(project_id=PROJECT, display_name="Audit configs"))
    return client


def read(crm) -> dict:
    return json_format.MessageToDict(crm.get_iam_policy(request={"resource": f"projects/{PROJECT}"}))


def write(crm, policy: dict, mask: list[str] | None) -> dict:
    pb = json_format.ParseDict(policy, policy_pb2.Policy())
    req = iam_policy_pb2.SetIamPolicyRequest(resource=f"projects/{PROJECT}", policy=pb)
    if mask is not None:
        req.update_mask.CopyFrom(field_mask_pb2.FieldMask(paths=mask))
    return json_format.MessageToDict(crm.set_iam_policy(request=req))


def test_audit_configs_are_written_only_with_the_mask_and_kept_by_binding_writes(crm):
    before = read(crm)
    assert "auditConfigs" not in before
    ignored = write(crm, dict(before, auditConfigs=[OTHERS]), None)       # default mask: bindings,etag
    assert "auditConfigs" not in ignored and "auditConfigs" not in read(crm)

    written = write(crm, dict(read(crm), auditConfigs=[OTHERS, HEALTHCARE_ALL]),
                    ["bindings", "etag", "audit_configs"])
    assert written["auditConfigs"] == [OTHERS, HEALTHCARE_ALL]
    assert written["etag"] != ignored["etag"]                              # the etag covers them

    current = read(crm)
    current["bindings"].append({"role": "roles/viewer", "members": ["user:ana@example.com"]})
    rebound = write(crm, {k: v for k, v in current.items() if k != "auditConfigs"}, None)
    assert rebound["auditConfigs"] == [OTHERS, HEALTHCARE_ALL]             # kept without the mask
    assert {"role": "roles/viewer", "members": ["user:ana@example.com"]} in rebound["bindings"]


def test_a_stale_etag_is_a_conflict_for_audit_configs_too(crm):
    old = read(crm)
    write(crm, dict(old, auditConfigs=[HEALTHCARE_ALL]), ["audit_configs"])
    with pytest.raises(gexc.Conflict):
        write(crm, dict(old, auditConfigs=[]), ["audit_configs", "etag"])
    assert read(crm)["auditConfigs"] == [HEALTHCARE_ALL]


def test_unknown_log_types_and_mask_paths_are_refused(crm):
    with pytest.raises(gexc.BadRequest):
        write(crm, dict(read(crm), auditConfigs=[{"service": "x.googleapis.com",
                                                  "auditLogConfigs": [{"logType": "LOG_TYPE_UNSPECIFIED"}]}]),
              ["audit_configs"])
    with pytest.raises(gexc.BadRequest):
        write(crm, read(crm), ["owners"])
