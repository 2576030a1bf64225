"""Helpers for tests that need a ready Healthcare environment in the emulator, built the way a
user builds it: through the real client libraries (resourcemanager v3 REST, cloudbilling v1,
serviceusage v1, healthcare v1 discovery, google-cloud-storage).

    env = ready_store(emulator)            # project + billing + APIs + dataset + store
    env.hc                                 # healthcare v1 discovery client
    env.dicomweb                           # dicomweb_client.DICOMwebClient on the store
    env.upload(bucket, {name: bytes})      # objects through google-cloud-storage
    requests.post(f"{url}/_emulator/reset", headers=CONTROL)   # control endpoints need the header
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.oauth2.credentials import Credentials

from provision.emulator.http import CONTROL_HEADER

ACCOUNT = "billingAccounts/012345-6789AB-CDEF01"
CONTROL = {CONTROL_HEADER: "1"}  # what every call to /_emulator/* must carry (a web page cannot)
HEALTHCARE = "healthcare.googleapis.com"
LOCATION = "us-central1"


def credentials(member: str | None = None):
    """Anonymous (the owner, without --enforce-iam), or the bearer token `emulator:MEMBER`."""
    return Credentials(token=f"emulator:{member}") if member else AnonymousCredentials()


def discovery_client(url: str, api: str, version: str, member: str | None = None):
    from googleapiclient import discovery

    return discovery.build(api, version, credentials=credentials(member), client_options={"api_endpoint": url},
                           cache_discovery=False)


def healthcare(url: str, member: str | None = None):
    return discovery_client(url, "healthcare", "v1", member)


def wait_for(what: str, happened, timeout: float = 10.0) -> None:
    """Wait until `happened()` is true (the event a test means), failing after `timeout` seconds
    with `what` did not happen."""
    deadline = time.monotonic() + timeout
    while not happened():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {timeout}s")
        time.sleep(0.01)


def wait_operation(hc, name: str, timeout: float = 30.0) -> dict:
    """Poll a Healthcare dataset operation until done."""
    deadline = time.time() + timeout
    while True:
        op = hc.projects().locations().datasets().operations().get(name=name).execute()
        if op.get("done"):
            return op
        if time.time() > deadline:
            raise TimeoutError(f"operation {name} not done after {timeout}s: {op}")
        time.sleep(0.05)


def create_project(url: str, project_id: str, *, billing: bool = True, enable: tuple[str, ...] = (HEALTHCARE,),
                   member: str | None = None, parent: str | None = None) -> str:
    """Create a project (v3 LRO), link the seeded billing account, enable APIs; returns its number."""
    from google.cloud import resourcemanager_v3

    client = resourcemanager_v3.ProjectsClient(credentials=credentials(member), transport="rest",
                                               client_options=ClientOptions(api_endpoint=url))
    project = client.create_project(project=resourcemanager_v3.Project(project_id=project_id, parent=parent or "")
                                    ).result(timeout=30)
    if billing:
        discovery_client(url, "cloudbilling", "v1", member).projects().updateBillingInfo(
            name=f"projects/{project_id}", body={"billingAccountName": ACCOUNT}).execute()
    if enable:
        su = discovery_client(url, "serviceusage", "v1", member)
        op = su.services().batchEnable(parent=f"projects/{project_id}", body={"serviceIds": list(enable)}).execute()
        deadline = time.time() + 30
        while not op.get("done"):
            if time.time() > deadline:
                raise TimeoutError(f"enable did not finish: {op}")
            time.sleep(0.05)
            op = su.operations().get(name=op["name"]).execute()
    return project.name.split("/")[1]


@dataclass
class Env:
    url: str
    project: str
    number: str
    location: str
    dataset_id: str
    store_id: str
    member: str | None = None
    _clients: dict[str, Any] = field(default_factory=dict)

    @property
    def dataset(self) -> str:
        return f"projects/{self.project}/locations/{self.location}/datasets/{self.dataset_id}"

    @property
    def store(self) -> str:
        return f"{self.dataset}/dicomStores/{self.store_id}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/v1/{self.store}/dicomWeb"

    @property
    def agent(self) -> str:
        return f"service-{self.number}@gcp-sa-healthcare.iam.gserviceaccount.com"

    @property
    def hc(self):
        if "hc" not in self._clients:
            self._clients["hc"] = healthcare(self.url, self.member)
        return self._clients["hc"]

    @property
    def stores(self):
        return self.hc.projects().locations().datasets().dicomStores()

    @property
    def dicomweb(self):
        return self.dicomweb_for(self.member)

    def dicomweb_for(self, member: str | None):
        from dicomweb_client import DICOMwebClient

        headers = {"Authorization": f"Bearer emulator:{member}"} if member else None
        return DICOMwebClient(url=self.dicomweb_url, headers=headers)

    def gcs(self):
        from google.cloud import storage

        return storage.Client(project=self.project, credentials=credentials(self.member),
                              client_options={"api_endpoint": self.url})

    def bucket(self, name: str, *, grant_agent: bool = True):
        """Create a bucket; by default grant the Healthcare service agent objectViewer on it."""
        bucket = self.gcs().create_bucket(name)
        if grant_agent:
            policy = bucket.get_iam_policy(requested_policy_version=3)
            policy.bindings.append({"role": "roles/storage.objectViewer", "members": {f"serviceAccount:{self.agent}"}})
            bucket.set_iam_policy(policy)
        return bucket

    def upload(self, bucket, objects: dict[str, bytes]) -> None:
        for name, data in objects.items():
            bucket.blob(name).upload_from_string(data, content_type="application/dicom")

    def import_(self, uri: str, timeout: float = 60.0) -> dict:
        op = self.stores.import_(name=self.store, body={"gcsSource": {"uri": uri}}).execute()
        return wait_operation(self.hc, op["name"], timeout)


def ready_store(emulator, project: str = "hc-proj-1", dataset: str = "ds1", store: str = "store1",
                location: str = LOCATION, member: str | None = None, parent: str | None = None) -> Env:
    """A project with billing and Healthcare enabled, a dataset (its create operation done) and a DICOM store."""
    number = create_project(emulator.url, project, member=member, parent=parent)
    env = Env(emulator.url, project, number, location, dataset, store, member)
    datasets = env.hc.projects().locations().datasets()
    op = datasets.create(parent=f"projects/{project}/locations/{location}", datasetId=dataset, body={}).execute()
    wait_operation(env.hc, op["name"])
    datasets.dicomStores().create(parent=env.dataset, dicomStoreId=store, body={}).execute()
    return env
