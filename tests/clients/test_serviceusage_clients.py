"""google-cloud-service-usage, unmodified, over its REST transport against the emulator
(`transport="rest"`, `client_options={"api_endpoint": "http://127.0.0.1:PORT"}`): enable, disable,
batch enable, get and list, and each service's `config` (name, title, summary), which is where
`gcloud services list` takes its NAME and TITLE columns from.
"""
from __future__ import annotations

import pytest
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import service_usage_v1

from emulator_helpers import create_project

HEALTHCARE = "healthcare.googleapis.com"


def client(emu) -> service_usage_v1.ServiceUsageClient:
    return service_usage_v1.ServiceUsageClient(credentials=AnonymousCredentials(), transport="rest",
                                               client_options=ClientOptions(api_endpoint=emu.url))


def test_enable_disable_list_with_config(emulator):
    number = create_project(emulator.url, "su-client-1", enable=())
    su = client(emulator)
    parent = "projects/su-client-1"

    before = su.get_service(request={"name": f"{parent}/services/{HEALTHCARE}"})
    assert before.state == service_usage_v1.State.DISABLED
    assert (before.config.name, before.config.title) == (HEALTHCARE, "Cloud Healthcare API")
    assert before.config.documentation.summary == "Manage, store, and access healthcare data in Google Cloud Platform."
    assert "serviceusage.googleapis.com/billing-enabled" in before.config.usage.requirements

    done = su.enable_service(request={"name": f"{parent}/services/{HEALTHCARE}"}).result(timeout=30)
    assert done.service.name == f"projects/{number}/services/{HEALTHCARE}"
    assert done.service.state == service_usage_v1.State.ENABLED
    enabled = {s.config.name: s.config.title for s in su.list_services(request={"parent": parent,
                                                                                 "filter": "state:ENABLED"})}
    assert enabled[HEALTHCARE] == "Cloud Healthcare API" and enabled["storage.googleapis.com"] == "Cloud Storage API"
    assert all(title for title in enabled.values())

    batch = su.batch_enable_services(request={"parent": parent, "service_ids": [
        "pubsub.googleapis.com", "cloudresourcemanager.googleapis.com"]}).result(timeout=30)
    assert sorted(s.config.name or s.name.rsplit("/", 1)[1] for s in batch.services) == \
        ["cloudresourcemanager.googleapis.com", "pubsub.googleapis.com"]
    got = su.batch_get_services(request={"parent": parent, "names": [f"{parent}/services/pubsub.googleapis.com"]})
    assert [(s.config.title, s.state) for s in got.services] == [("Cloud Pub/Sub API", service_usage_v1.State.ENABLED)]

    off = su.disable_service(request={"name": f"{parent}/services/pubsub.googleapis.com"}).result(timeout=30)
    assert off.service.state == service_usage_v1.State.DISABLED
    disabled = {s.config.name for s in su.list_services(request={"parent": parent, "filter": "state:DISABLED"})}
    assert "pubsub.googleapis.com" in disabled and HEALTHCARE not in disabled
    pages = su.list_services(request={"parent": parent, "page_size": 10}).pages
    assert all(len(page.services) <= 10 for page in pages)


def test_refusals_arrive_as_the_client_maps_them(emulator):
    create_project(emulator.url, "su-client-2", billing=False, enable=())
    su = client(emulator)
    with pytest.raises(gexc.BadRequest) as no_billing:    # 400 FAILED_PRECONDITION: Healthcare needs billing
        su.enable_service(request={"name": f"projects/su-client-2/services/{HEALTHCARE}"})
    assert no_billing.value.reason == "UREQ_PROJECT_BILLING_NOT_FOUND"
    with pytest.raises(gexc.Forbidden):
        su.get_service(request={"name": "projects/su-client-2/services/no-such-api.googleapis.com"})
    with pytest.raises(gexc.Forbidden):
        su.list_services(request={"parent": "projects/su-nowhere"}).pages.__next__()
