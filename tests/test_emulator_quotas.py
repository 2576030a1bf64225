"""Google's request quotas in the emulator: who pays, what a 429 looks like through the real client
libraries, the table file, and the time scale. No timing asserts: a large --time-scale makes the
buckets refill so slowly that they do not refill during a test; the refill arithmetic is checked
on a fake clock."""
from __future__ import annotations

import json

import pytest
from google.api_core import exceptions as core
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.oauth2.credentials import Credentials
from googleapiclient.errors import HttpError

from emulator_helpers import ACCOUNT, HEALTHCARE, create_project, discovery_client, healthcare
from provision.emulator import quotas as q
from provision.emulator.world import Options, World

FROZEN = 10000.0   # --time-scale: a minute lasts a week, so nothing refills during a test
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"


def projects_client(url: str, quota_project: str | None = None):
    from google.cloud import resourcemanager_v3

    # Credentials that carry a quota project make the library send X-Goog-User-Project (their
    # token is not an emulator principal: without --enforce-iam the caller is the owner).
    creds = Credentials(token="no-principal", quota_project_id=quota_project) if quota_project else AnonymousCredentials()
    return resourcemanager_v3.ProjectsClient(credentials=creds, transport="rest",
                                             client_options=ClientOptions(api_endpoint=url))


def table(tmp_path, data: dict, name: str = "quotas.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def body(exc: HttpError) -> dict:
    return json.loads(exc.content)["error"]


def detail(details: list[dict], kind: str) -> dict | None:
    return next((d for d in details if d.get("@type") == kind), None)


def test_create_project_costs_ten_writes_of_the_callers_quota_project(emulator_factory):
    from google.cloud import resourcemanager_v3

    emu = emulator_factory(quotas="realistic", time_scale=FROZEN)
    client = projects_client(emu.url)
    client.create_project(project=resourcemanager_v3.Project(project_id="quota-one"), retry=None).result(timeout=10)
    with pytest.raises(core.TooManyRequests) as caught:      # 10 writes a second, and a create costs 10
        client.create_project(project=resourcemanager_v3.Project(project_id="quota-two"), retry=None)
    exc = caught.value
    assert exc.reason == "RATE_LIMIT_EXCEEDED" and exc.domain == "googleapis.com"
    assert exc.metadata == {
        "service": "cloudresourcemanager.googleapis.com", "consumer": f"projects/{q.DEFAULT_CONSUMER}",
        "quota_metric": "cloudresourcemanager.googleapis.com/write_requests",
        "quota_limit": "WriteRequestsPerMinutePerProject", "quota_limit_value": "600", "quota_location": "global"}
    assert exc.message.endswith("Quota exceeded for quota metric 'Write requests' and limit 'Write requests per minute' "
                           "of service 'cloudresourcemanager.googleapis.com' for consumer "
                           f"'project_number:{q.DEFAULT_CONSUMER}'.")
    assert detail(exc.details, "type.googleapis.com/google.rpc.Help")["links"][0]["url"].startswith("https://")
    assert detail(exc.details, RETRY_INFO) is None           # Resource Manager's real 429 has none
    # Reads are another quota; the refused create cost nothing and made nothing.
    assert client.get_project(name="projects/quota-one").project_id == "quota-one"
    with pytest.raises(core.Forbidden):
        client.get_project(name="projects/quota-two")
    # A quota project named by the client library (X-Goog-User-Project) pays instead: its own budget.
    payer = projects_client(emu.url, quota_project="quota-one")
    payer.create_project(project=resourcemanager_v3.Project(project_id="quota-two"), retry=None).result(timeout=10)
    with pytest.raises(core.TooManyRequests) as again:
        payer.create_project(project=resourcemanager_v3.Project(project_id="quota-three"), retry=None)
    number = client.get_project(name="projects/quota-one").name.split("/")[1]
    assert again.value.metadata["consumer"] == f"projects/{number}"


def test_v3_search_allows_four_a_second(emulator_factory):
    emu = emulator_factory(quotas="realistic", time_scale=FROZEN)
    client = projects_client(emu.url)
    for _ in range(4):
        list(client.search_projects(query="", retry=None))
    with pytest.raises(core.TooManyRequests) as caught:
        list(client.search_projects(query="", retry=None))
    assert caught.value.metadata["quota_metric"] == "cloudresourcemanager.googleapis.com/search_requests"
    assert caught.value.metadata["quota_limit_value"] == "240"


def test_service_usage_writes_sixty_a_minute_batch_enable_counts_five(emulator_factory, tmp_path):
    emu = emulator_factory(quotas=table(tmp_path, {"crm.write": None}), time_scale=FROZEN)
    create_project(emu.url, "quota-su", enable=())
    su = discovery_client(emu.url, "serviceusage", "v1")
    for _ in range(12):                                       # 12 x 5 = 60
        su.services().batchEnable(parent="projects/quota-su", body={"serviceIds": [HEALTHCARE]}).execute()
    with pytest.raises(HttpError) as caught:
        su.services().batchEnable(parent="projects/quota-su", body={"serviceIds": [HEALTHCARE]}).execute()
    err = body(caught.value)
    assert caught.value.resp.status == 429 and err["status"] == "RESOURCE_EXHAUSTED"
    info = detail(err["details"], ERROR_INFO)
    assert info["reason"] == "RATE_LIMIT_EXCEEDED"
    assert info["metadata"]["quota_metric"] == "serviceusage.googleapis.com/mutate_requests"
    assert info["metadata"]["quota_limit"] == "MutateRequestsPerMinutePerProject"
    assert info["metadata"]["quota_limit_value"] == "60"
    assert "'Mutate requests per minute'" in err["message"]
    # Client-based: the project in the path does not pay, whichever project it is.
    create_project(emu.url, "quota-su-2", enable=())
    with pytest.raises(HttpError) as other:
        su.services().enable(name=f"projects/quota-su-2/services/{HEALTHCARE}").execute()
    assert other.value.resp.status == 429
    # Reads have their own budget (240 a minute).
    assert su.services().get(name=f"projects/quota-su/services/{HEALTHCARE}").execute()["state"] == "ENABLED"


def test_a_table_file_overrides_limits_and_turns_on_retry_info(emulator_factory, tmp_path):
    path = table(tmp_path, {"crm.write": None, "serviceusage.read": {"limit": 3, "retry_info": True}})
    emu = emulator_factory(quotas=path, time_scale=FROZEN)
    create_project(emu.url, "quota-read", enable=())
    su = discovery_client(emu.url, "serviceusage", "v1")
    for _ in range(3):
        su.services().get(name=f"projects/quota-read/services/{HEALTHCARE}").execute()
    with pytest.raises(HttpError) as caught:
        su.services().get(name=f"projects/quota-read/services/{HEALTHCARE}").execute()
    err = body(caught.value)
    assert detail(err["details"], ERROR_INFO)["metadata"]["quota_limit_value"] == "3"
    retry = detail(err["details"], RETRY_INFO)
    # One unit refills in 60 s / 3 x time scale: the delay the answer asks for.
    assert retry["retryDelay"].endswith("s") and float(retry["retryDelay"][:-1]) == pytest.approx(20 * FROZEN, rel=1e-3)


def test_healthcare_quota_is_per_project_and_region(emulator_factory, tmp_path):
    path = table(tmp_path, {"crm.write": None, "serviceusage.write": None, "serviceusage.read": None,
                            "healthcare.requests": {"limit": 2, "retry_info": True}})
    emu = emulator_factory(quotas=path, time_scale=FROZEN)
    number = create_project(emu.url, "quota-hc-a")
    create_project(emu.url, "quota-hc-b")
    hc = healthcare(emu.url)

    def list_datasets(project: str, location: str) -> dict:
        return hc.projects().locations().datasets().list(parent=f"projects/{project}/locations/{location}").execute()

    list_datasets("quota-hc-a", "us-central1")
    list_datasets("quota-hc-a", "us-central1")
    with pytest.raises(HttpError) as caught:
        list_datasets("quota-hc-a", "us-central1")
    err = body(caught.value)
    metadata = detail(err["details"], ERROR_INFO)["metadata"]
    assert metadata["consumer"] == f"projects/{number}" and metadata["quota_location"] == "us-central1"
    assert metadata["quota_limit"] == "RequestsPerMinutePerProjectPerRegion"
    assert detail(err["details"], RETRY_INFO) is not None
    # Another region of the same project, and another project, have their own buckets; the
    # X-Goog-User-Project header changes nothing for a resource-based API.
    list_datasets("quota-hc-a", "europe-west4")
    list_datasets("quota-hc-b", "us-central1")
    from googleapiclient import discovery

    paying_b = discovery.build("healthcare", "v1", credentials=Credentials(token="x", quota_project_id="quota-hc-b"),
                               client_options={"api_endpoint": emu.url}, cache_discovery=False)
    with pytest.raises(HttpError) as still:
        paying_b.projects().locations().datasets().list(parent="projects/quota-hc-a/locations/us-central1").execute()
    assert still.value.resp.status == 429


def test_quotas_follow_latency_unless_told(tmp_path):
    def on(**kw) -> bool:
        world = World(Options(port=0, **kw))
        try:
            return world.quotas.enabled
        finally:
            world.close()

    assert not on()
    assert on(latency="realistic")
    assert not on(latency="realistic", quotas="none")
    assert on(quotas="realistic")
    assert not on(latency="realistic", time_scale=0.0)      # no time at all: nothing to limit
    with pytest.raises(ValueError, match="unknown quotas"):
        on(quotas=table(tmp_path, {"crm.writes": 5}))
    with pytest.raises(ValueError, match="unknown fields"):
        on(quotas=table(tmp_path, {"crm.write": {"rate": 5}}))


def test_time_scale_compresses_the_window():
    clock = [0.0]
    quotas = q.Quotas(q.REALISTIC, time_scale=0.5, clock=lambda: clock[0])
    for _ in range(12):                                       # the whole bucket: 60 units
        assert quotas.charge("serviceusage.write", 5, "p") is None
    # 60 per minute at x0.5 is 2 units a second: 5 units are 2.5 s away.
    assert quotas.charge("serviceusage.write", 5, "p") == pytest.approx(2.5)
    clock[0] = 2.5
    assert quotas.charge("serviceusage.write", 5, "p") is None
    assert quotas.charge("serviceusage.write", 1, "other-consumer") is None   # each consumer has its own
    quotas.reset()
    assert quotas.charge("serviceusage.write", 60, "p") is None


def test_reset_refills_every_bucket(emulator_factory):
    import requests

    from emulator_helpers import CONTROL

    emu = emulator_factory(quotas="realistic", time_scale=FROZEN)
    client = projects_client(emu.url)
    for _ in range(4):
        list(client.search_projects(query="", retry=None))
    with pytest.raises(core.TooManyRequests):
        list(client.search_projects(query="", retry=None))
    assert requests.post(f"{emu.url}/_emulator/reset", headers=CONTROL, timeout=10).ok
    list(client.search_projects(query="", retry=None))
    assert ACCOUNT  # the seeded account is still there after a reset (used by create_project)
