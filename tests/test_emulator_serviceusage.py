"""Service Usage in the emulator, driven over real HTTP by the real discovery clients
(serviceusage v1 and v1beta1, cloudbilling v1), plus the interface other emulated APIs call
(`world.serviceusage.require_enabled`, `ensure_agent`...)."""
from __future__ import annotations

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
from provision.emulator.errors import ApiError
from provision.emulator.latency import REALISTIC

SU = "serviceusage.v1"
ACCOUNT = "billingAccounts/012345-6789AB-CDEF01"
HEALTHCARE = "healthcare.googleapis.com"
DEFAULTS = {"bigquery.googleapis.com", "bigquerystorage.googleapis.com", "cloudapis.googleapis.com",
            "cloudtrace.googleapis.com", "datastore.googleapis.com", "logging.googleapis.com",
            "monitoring.googleapis.com", "servicemanagement.googleapis.com", "serviceusage.googleapis.com",
            "sql-component.googleapis.com", "storage-api.googleapis.com", "storage-component.googleapis.com",
            "storage.googleapis.com"}


def assert_schema(doc: str, ref: str, body: dict) -> dict:
    found = discovery.problems(doc, ref, body)
    assert not found, f"{ref} does not match {doc}: {found}\n{json.dumps(body, indent=1)}"
    return body


def build(emu, name: str, version: str, token: str | None = None):
    creds = Credentials(token=f"emulator:{token}") if token else AnonymousCredentials()
    return gdiscovery.build(name, version, credentials=creds, client_options={"api_endpoint": emu.url},
                            cache_discovery=False)


def new_project(emu, project_id: str, *, billing: bool = False, token: str | None = None) -> str:
    """Create a project with the v3 client; link the seeded billing account if asked. Its number."""
    creds = Credentials(token=f"emulator:{token}") if token else AnonymousCredentials()
    client = resourcemanager_v3.ProjectsClient(credentials=creds, transport="rest",
                                               client_options=ClientOptions(api_endpoint=emu.url))
    project = client.create_project(project=resourcemanager_v3.Project(project_id=project_id)).result(timeout=30)
    if billing:
        build(emu, "cloudbilling", "v1", token).projects().updateBillingInfo(
            name=f"projects/{project_id}", body={"billingAccountName": ACCOUNT}).execute()
    return project.name.split("/")[1]


def latency_file(tmp_path, **seconds) -> str:
    """A latency table: every known step instant except the ones given (a FILE overrides `realistic`)."""
    table = tmp_path / "latency.json"
    table.write_text(json.dumps({**{key: 0 for key in REALISTIC}, **seconds}))
    return str(table)


def error(exc: HttpError) -> dict:
    return json.loads(exc.content)["error"]


def wait_done(su, name: str, timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        op = su.operations().get(name=name).execute()
        if op.get("done"):
            return op
        assert time.monotonic() < deadline, f"operation {name} not done after {timeout}s"
        time.sleep(0.05)


def enabled(su, project: str) -> set[str]:
    names, token = set(), None
    while True:
        page = su.services().list(parent=f"projects/{project}", filter="state:ENABLED", pageSize=200,
                                  pageToken=token).execute()
        names |= {s["name"].rsplit("/", 1)[1] for s in page.get("services", [])}
        token = page.get("nextPageToken")
        if not token:
            return names


# ----- listing and reading -------------------------------------------------------------------
def test_new_project_has_default_services_enabled(emulator):
    number = new_project(emulator, "su-defaults")
    su = build(emulator, "serviceusage", "v1")
    assert DEFAULTS <= enabled(su, "su-defaults")
    assert HEALTHCARE not in enabled(su, number)
    seen, token = [], None                                       # paging: 5 at a time
    while True:
        page = assert_schema(SU, "ListServicesResponse", su.services().list(
            parent=f"projects/{number}", filter="state:ENABLED", pageSize=5, pageToken=token).execute())
        assert len(page["services"]) <= 5
        seen += [s["name"] for s in page["services"]]
        token = page.get("nextPageToken")
        if not token:
            break
    assert len(seen) == len(set(seen)) == len(enabled(su, number))
    disabled = {s["name"].rsplit("/", 1)[1] for s in su.services().list(
        parent=f"projects/{number}", filter="state:DISABLED", pageSize=200).execute()["services"]}
    assert HEALTHCARE in disabled and not disabled & DEFAULTS


def test_list_page_size_limit_and_filter_syntax(emulator):
    new_project(emulator, "su-limits")
    su = build(emulator, "serviceusage", "v1")
    with pytest.raises(HttpError) as big:
        su.services().list(parent="projects/su-limits", pageSize=201).execute()
    assert big.value.status_code == 400
    with pytest.raises(HttpError) as bad:
        su.services().list(parent="projects/su-limits", filter="name:foo").execute()
    assert bad.value.status_code == 400
    assert len(su.services().list(parent="projects/su-limits").execute()["services"]) == 50   # default page


def test_get_service_shapes(emulator):
    number = new_project(emulator, "su-get")
    su = build(emulator, "serviceusage", "v1")
    untouched = assert_schema(SU, "GoogleApiServiceusageV1Service",
                              su.services().get(name=f"projects/su-get/services/{HEALTHCARE}").execute())
    config = untouched.pop("config")      # what `gcloud services list` prints its NAME and TITLE from
    assert untouched == {"name": f"projects/{number}/services/{HEALTHCARE}", "state": "DISABLED"}
    assert (config["name"], config["title"]) == (HEALTHCARE, "Cloud Healthcare API")
    assert config["usage"]["requirements"] == ["serviceusage.googleapis.com/tos/cloud",
                                               "serviceusage.googleapis.com/billing-enabled"]
    default = su.services().get(name=f"projects/{number}/services/logging.googleapis.com").execute()
    assert default.pop("config")["documentation"] == {"summary": "Writes log entries and manages your Cloud Logging "
                                                                 "configuration."}
    assert default == {"name": f"projects/{number}/services/logging.googleapis.com",
                       "parent": f"projects/{number}", "state": "ENABLED"}


def test_unknown_service_and_missing_project_are_403(emulator):
    new_project(emulator, "su-unknown")
    su = build(emulator, "serviceusage", "v1")
    with pytest.raises(HttpError) as unknown:
        su.services().enable(name="projects/su-unknown/services/nope.googleapis.com", body={}).execute()
    err = error(unknown.value)
    assert (err["code"], err["status"]) == (403, "PERMISSION_DENIED")
    assert err["message"] == "Not found or permission denied for service(s): nope.googleapis.com."
    assert err["details"][0]["reason"] == "SERVICE_CONFIG_NOT_FOUND_OR_PERMISSION_DENIED"
    with pytest.raises(HttpError) as missing:
        su.services().get(name=f"projects/no-such-project/services/{HEALTHCARE}").execute()
    assert missing.value.status_code == 403
    assert error(missing.value)["details"][0]["reason"] == "AUTH_PERMISSION_DENIED"


# ----- enabling ------------------------------------------------------------------------------
def test_enabling_healthcare_needs_a_billing_account(emulator):
    number = new_project(emulator, "su-billing")
    su = build(emulator, "serviceusage", "v1")
    with pytest.raises(HttpError) as refused:
        su.services().enable(name=f"projects/su-billing/services/{HEALTHCARE}", body={}).execute()
    err = error(refused.value)
    assert (err["code"], err["status"]) == (400, "FAILED_PRECONDITION")
    assert err["message"] == (f"Billing account for project '{number}' is not found. Billing must be enabled for "
                              f"activation of service(s) '{HEALTHCARE}' to proceed.")
    precondition, info = err["details"]
    assert precondition["@type"] == "type.googleapis.com/google.rpc.PreconditionFailure"
    assert precondition["violations"] == [{"type": "googleapis.com/billing-enabled",
                                           "subject": f"?error_code=390001&project={number}&services={HEALTHCARE}"}]
    assert info["reason"] == "UREQ_PROJECT_BILLING_NOT_FOUND"
    assert info["domain"] == "serviceusage.googleapis.com/billing-enabled"
    assert info["metadata"] == {"project": number, "services": HEALTHCARE}
    with pytest.raises(HttpError):                             # batchEnable is atomic: pubsub not enabled either
        su.services().batchEnable(parent=f"projects/{number}",
                                  body={"serviceIds": ["pubsub.googleapis.com", HEALTHCARE]}).execute()
    assert "pubsub.googleapis.com" not in enabled(su, number)


def test_enable_operation_then_noop_when_already_enabled(emulator):
    number = new_project(emulator, "su-enable", billing=True)
    su = build(emulator, "serviceusage", "v1")
    started = su.services().enable(name=f"projects/su-enable/services/{HEALTHCARE}", body={}).execute()
    assert set(started) == {"name"}
    assert re.fullmatch(rf"operations/acf\.p2-{number}-[0-9a-f-]{{36}}", started["name"])
    op = assert_schema(SU, "Operation", wait_done(su, started["name"]))
    assert set(op) == {"name", "metadata", "done", "response"}
    assert op["metadata"] == {"@type": "type.googleapis.com/google.protobuf.Empty"}   # no Go-style "value"
    assert op["response"] == {"@type": "type.googleapis.com/google.api.serviceusage.v1.EnableServiceResponse",
                              "service": {"name": f"projects/{number}/services/{HEALTHCARE}",
                                          "parent": f"projects/{number}", "state": "ENABLED"}}
    assert HEALTHCARE in enabled(su, number)
    again = su.services().enable(name=f"projects/{number}/services/{HEALTHCARE}", body={}).execute()
    assert again["name"] == "operations/noop.DONE_OPERATION" and again["done"] is True
    assert again["response"]["service"]["state"] == "ENABLED"
    with pytest.raises(HttpError) as poll:                     # the noop is not an operation one can poll
        su.operations().get(name="operations/noop.DONE_OPERATION").execute()
    assert poll.value.status_code == 404


def test_batch_enable(emulator):
    number = new_project(emulator, "su-batch", billing=True)
    su = build(emulator, "serviceusage", "v1")
    ids = ["pubsub.googleapis.com", "compute.googleapis.com", "storage.googleapis.com"]
    started = su.services().batchEnable(parent=f"projects/{number}", body={"serviceIds": ids}).execute()
    op = assert_schema(SU, "Operation", wait_done(su, started["name"]))
    assert op["metadata"]["@type"] == "type.googleapis.com/google.api.serviceusage.v1.OperationMetadata"
    assert op["response"]["@type"] == "type.googleapis.com/google.api.serviceusage.v1.BatchEnableServicesResponse"
    assert [s["name"].rsplit("/", 1)[1] for s in op["response"]["services"]] == ids
    assert set(ids) <= enabled(su, number)
    with pytest.raises(HttpError) as too_many:
        su.services().batchEnable(parent=f"projects/{number}",
                                  body={"serviceIds": [f"s{i}.googleapis.com" for i in range(21)]}).execute()
    assert too_many.value.status_code == 400
    noop = su.services().batchEnable(parent=f"projects/{number}", body={"serviceIds": ids[:2]}).execute()
    assert noop["name"] == "operations/noop.DONE_OPERATION"


def test_disable(emulator):
    number = new_project(emulator, "su-disable", billing=True)
    su = build(emulator, "serviceusage", "v1")
    wait_done(su, su.services().enable(name=f"projects/{number}/services/pubsub.googleapis.com", body={}).execute()["name"])
    started = su.services().disable(name=f"projects/{number}/services/pubsub.googleapis.com", body={}).execute()
    assert set(started) == {"name", "metadata"}
    op = wait_done(su, started["name"])
    assert op["response"]["@type"] == "type.googleapis.com/google.api.serviceusage.v1.DisableServiceResponse"
    assert "pubsub.googleapis.com" not in enabled(su, number)
    with pytest.raises(HttpError) as unknown_field:
        su.services().disable(name=f"projects/{number}/services/pubsub.googleapis.com",
                              body={"force": True}).execute()
    assert unknown_field.value.status_code == 400


# ----- SERVICE_DISABLED and propagation ------------------------------------------------------
def service_disabled_error(emu, project_id: str, service: str) -> ApiError | None:
    record = emu.world.crm.lookup(project_id)
    try:
        emu.world.serviceusage.require_enabled(record, service)
    except ApiError as exc:
        return exc
    return None


def as_client_exception(emu, exc: ApiError) -> gexc.GoogleAPICallError:
    """Render the error as the emulator answers it and let api_core parse it, as a client would."""
    response = requests.models.Response()
    response.status_code = exc.http_status
    response._content = json.dumps(exc.body()).encode()
    response.request = requests.Request("GET", f"{emu.url}/v1/projects/x/locations").prepare()
    return gexc.from_http_response(response)


def test_service_disabled_error_shape(emulator):
    number = new_project(emulator, "su-disabled")
    exc = service_disabled_error(emulator, "su-disabled", HEALTHCARE)
    assert exc is not None and exc.http_status == 403 and exc.status == "PERMISSION_DENIED"
    url = f"https://console.developers.google.com/apis/api/{HEALTHCARE}/overview?project={number}"
    assert exc.message == (f"Cloud Healthcare API has not been used in project {number} before or it is disabled. "
                           f"Enable it by visiting {url} then retry. If you enabled this API recently, wait a few "
                           "minutes for the action to propagate to our systems and retry.")
    parsed = as_client_exception(emulator, exc)
    assert isinstance(parsed, gexc.Forbidden)
    assert (parsed.reason, parsed.domain) == ("SERVICE_DISABLED", "googleapis.com")
    assert parsed.metadata["consumer"] == f"projects/{number}" and parsed.metadata["service"] == HEALTHCARE
    help_links = [d for d in exc.details if d["@type"] == "type.googleapis.com/google.rpc.Help"][0]["links"]
    assert help_links == [{"description": "Google developers console API activation", "url": url}]
    assert service_disabled_error(emulator, "su-disabled", "logging.googleapis.com") is None   # a default


def test_enablement_waits_for_operation_and_propagation(emulator_factory, tmp_path):
    emu = emulator_factory(latency=latency_file(tmp_path, **{"op:serviceusage.enable": 0.3,
                                                             "propagation:serviceusage.enable": 0.4}))
    number = new_project(emu, "su-slow", billing=True)
    su = build(emu, "serviceusage", "v1")
    started_at = time.monotonic()
    started = su.services().enable(name=f"projects/{number}/services/{HEALTHCARE}", body={}).execute()
    assert su.services().get(name=f"projects/{number}/services/{HEALTHCARE}").execute()["state"] == "DISABLED"
    assert HEALTHCARE not in enabled(su, number)
    with pytest.raises(HttpError) as busy:                     # a second activation while one runs
        su.services().enable(name=f"projects/{number}/services/{HEALTHCARE}", body={}).execute()
    assert error(busy.value)["status"] == "FAILED_PRECONDITION"
    assert "Another activation or deactivation is in progress" in error(busy.value)["message"]
    assert service_disabled_error(emu, "su-slow", HEALTHCARE) is not None
    wait_done(su, started["name"])
    assert time.monotonic() - started_at >= 0.3
    assert su.services().get(name=f"projects/{number}/services/{HEALTHCARE}").execute()["state"] == "ENABLED"
    if time.monotonic() - started_at < 0.6:                    # enabled, but not yet propagated
        still = service_disabled_error(emu, "su-slow", HEALTHCARE)
        assert still is not None and still.details[0]["reason"] == "SERVICE_DISABLED"
        assert not emu.world.serviceusage.is_enabled(number, HEALTHCARE)
    # Propagated once 0.3 + 0.4 s have passed on the emulator's clock; a loaded machine may answer
    # a little later than ours, so wait for it under a deadline rather than a fixed sleep.
    deadline = started_at + 5.0
    while service_disabled_error(emu, "su-slow", HEALTHCARE) is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert service_disabled_error(emu, "su-slow", HEALTHCARE) is None
    assert time.monotonic() - started_at >= 0.7
    assert emu.world.serviceusage.is_enabled(number, HEALTHCARE)


def test_propagation_window_with_realistic_latency_scaled(emulator_factory):
    emu = emulator_factory(latency="realistic", time_scale=0.01)   # enable 0.2 s, then 0.3 s propagation
    number = new_project(emu, "su-realistic", billing=True)
    su = build(emu, "serviceusage", "v1")
    wait_done(su, su.services().enable(name=f"projects/{number}/services/{HEALTHCARE}", body={}).execute()["name"])
    exc = service_disabled_error(emu, "su-realistic", HEALTHCARE)
    assert exc is not None and exc.details[0]["reason"] == "SERVICE_DISABLED"
    deadline = time.monotonic() + 3
    while not emu.world.serviceusage.is_enabled(number, HEALTHCARE):
        assert time.monotonic() < deadline
        time.sleep(0.05)


# ----- the service agent ---------------------------------------------------------------------
def grant_agent(emu, project_id: str, number: str):
    crm = build(emu, "cloudresourcemanager", "v1")
    policy = crm.projects().getIamPolicy(resource=project_id, body={}).execute()
    policy["bindings"].append({"role": "roles/healthcare.serviceAgent",
                               "members": [f"serviceAccount:service-{number}@gcp-sa-healthcare.iam.gserviceaccount.com"]})
    return crm.projects().setIamPolicy(resource=project_id, body={"policy": policy}).execute()


def test_service_agent_does_not_exist_until_generated(emulator):
    number = new_project(emulator, "su-agent", billing=True)
    su, beta = build(emulator, "serviceusage", "v1"), build(emulator, "serviceusage", "v1beta1")
    email = f"service-{number}@gcp-sa-healthcare.iam.gserviceaccount.com"
    with pytest.raises(HttpError) as missing:
        grant_agent(emulator, "su-agent", number)
    err = error(missing.value)
    assert (err["code"], err["status"]) == (400, "INVALID_ARGUMENT")
    assert err["message"] == f"Service account {email} does not exist."
    with pytest.raises(HttpError) as not_enabled:              # the API must be enabled first
        beta.services().generateServiceIdentity(parent=f"projects/{number}/services/{HEALTHCARE}").execute()
    assert error(not_enabled.value)["status"] == "FAILED_PRECONDITION"
    wait_done(su, su.services().enable(name=f"projects/{number}/services/{HEALTHCARE}", body={}).execute()["name"])
    started = beta.services().generateServiceIdentity(parent=f"projects/{number}/services/{HEALTHCARE}").execute()
    op = beta.operations().get(name=started["name"]).execute()
    assert_schema("serviceusage.v1beta1", "Operation", op)
    assert op["done"] is True
    assert op["response"]["@type"] == "type.googleapis.com/google.api.serviceusage.v1beta1.ServiceIdentity"
    assert op["response"]["email"] == email and re.fullmatch(r"\d{21}", op["response"]["uniqueId"])
    assert_schema("serviceusage.v1beta1", "ServiceIdentity", {k: v for k, v in op["response"].items() if k != "@type"})
    policy = grant_agent(emulator, "su-agent", number)
    assert any(b["role"] == "roles/healthcare.serviceAgent" for b in policy["bindings"])


def test_ensure_agent_is_the_cross_api_way_to_create_it(emulator):
    number = new_project(emulator, "su-ensure")
    backend = emulator.world.serviceusage
    assert not backend.agent_exists(number, HEALTHCARE)
    email = backend.ensure_agent(number, HEALTHCARE)
    assert email == f"service-{number}@gcp-sa-healthcare.iam.gserviceaccount.com"
    assert backend.ensure_agent(number, HEALTHCARE) == email and backend.agent_exists(number, HEALTHCARE)
    assert backend.parse_agent_email(email) == (number, HEALTHCARE)
    grant_agent(emulator, "su-ensure", number)


# ----- IAM, faults, persistence --------------------------------------------------------------
def test_enforce_iam_on_service_usage(emulator_factory):
    emu = emulator_factory(enforce_iam=True)
    requests.put(f"{emu.url}/_emulator/policies/organizations/1", json={"bindings": [
        {"role": "roles/resourcemanager.projectCreator", "members": ["user:ana@example.com"]}]}, headers=CONTROL)
    creds = Credentials(token="emulator:user:ana@example.com")
    client = resourcemanager_v3.ProjectsClient(credentials=creds, transport="rest",
                                               client_options=ClientOptions(api_endpoint=emu.url))
    client.create_project(project=resourcemanager_v3.Project(project_id="su-iam", parent="organizations/1")).result(timeout=30)
    ana, bob = build(emu, "serviceusage", "v1", "user:ana@example.com"), build(emu, "serviceusage", "v1", "user:bob@example.com")
    assert ana.services().get(name="projects/su-iam/services/pubsub.googleapis.com").execute()["state"] == "DISABLED"
    with pytest.raises(HttpError) as denied:
        bob.services().enable(name="projects/su-iam/services/pubsub.googleapis.com", body={}).execute()
    err = error(denied.value)
    assert err["code"] == 403 and err["message"] == "Permission denied to enable service [pubsub.googleapis.com]"
    assert err["details"][0]["metadata"] == {"permission": "serviceusage.services.enable"}
    started = ana.services().enable(name="projects/su-iam/services/pubsub.googleapis.com", body={}).execute()["name"]
    with pytest.raises(HttpError) as denied:  # an operation is as private as its project
        bob.operations().get(name=started).execute()
    assert error(denied.value)["code"] == 403
    assert requests.get(f"{emu.url}/v1/{started}").status_code == 401
    wait_done(ana, started)


def test_enabled_services_persist_and_failed_operations_change_nothing(emulator_factory, tmp_path):
    first = emulator_factory(data_dir=tmp_path)
    number = new_project(first, "su-persist", billing=True)
    su = build(first, "serviceusage", "v1")
    wait_done(su, su.services().enable(name=f"projects/{number}/services/pubsub.googleapis.com", body={}).execute()["name"])
    first.stop()
    second = emulator_factory(data_dir=tmp_path, faults="operation=1.0")
    su = build(second, "serviceusage", "v1")
    assert "pubsub.googleapis.com" in enabled(su, number)
    started = su.services().enable(name=f"projects/{number}/services/{HEALTHCARE}", body={}).execute()
    op = su.operations().get(name=started["name"]).execute()
    assert op["done"] is True and op["error"]["code"] == 13 and "response" not in op
    assert HEALTHCARE not in enabled(su, number)
