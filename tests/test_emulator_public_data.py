"""The emulator's stand-ins for the public datasets, at their real names, with Google's access rules
(IDC's releases readable by any signed-in identity, the NIH Chest X-ray store by grant), and Cloud
Storage's Requester Pays: a request without a billing project answers 400. Real client libraries
over real HTTP."""
from __future__ import annotations

import pytest
import requests
from google.api_core import exceptions as gexc
from google.cloud import storage
from googleapiclient.errors import HttpError

from emulator_helpers import CONTROL, create_project, credentials, healthcare
from test_apply_support import BILLING, ORG

IDC = "projects/nci-idc-data/locations/us-central1/datasets/idc"
NIH = "projects/chc-nih-chest-xray/locations/us-central1/datasets/nih-chest-xray/dicomStores/nih-chest-xray"
NIH_BUCKET = "gcs-public-data--healthcare-nih-chest-xray"
OWNER = "user:owner@example.com"
ANA = "user:ana@example.com"


def gcs(url: str, member: str | None = None, project: str = "_") -> storage.Client:
    return storage.Client(project=project, credentials=credentials(member), client_options={"api_endpoint": url})


def seed_policy(emu, resource: str, bindings: list[dict]) -> None:
    r = requests.put(f"{emu.url}/_emulator/policies/{resource}", json={"bindings": bindings}, timeout=10,
                     headers=CONTROL)
    assert r.status_code == 200, r.text


@pytest.fixture
def iam_emulator(emulator_factory):
    """--enforce-iam; OWNER may create projects under the organization and use the billing account."""
    emu = emulator_factory(enforce_iam=True)
    seed_policy(emu, ORG, [{"role": "roles/resourcemanager.projectCreator", "members": [OWNER]}])
    seed_policy(emu, f"billingAccounts/{BILLING}", [{"role": "roles/billing.user", "members": [OWNER]}])
    return emu


def test_idc_releases_and_nih_store_stand_in_at_their_real_names(emulator_factory):
    emu = emulator_factory(enforce_iam=True)
    anyone = healthcare(emu.url, "user:someone@example.org")
    stores = anyone.projects().locations().datasets().dicomStores().list(parent=IDC).execute()
    assert [s["name"].rsplit("/", 1)[1] for s in stores["dicomStores"]] == ["idc-store-v23", "idc-store-v24"]
    counts = {}
    for release in ("v23", "v24"):
        r = requests.get(f"{emu.url}/v1/{IDC}/dicomStores/idc-store-{release}/dicomWeb/studies",
                         headers={"Authorization": "Bearer emulator:user:someone@example.org"}, timeout=10)
        assert r.status_code == 200, r.text
        counts[release] = len(r.json())
    assert counts == {"v23": 2, "v24": 3}
    # IDC needs a signed-in identity; the NIH store needs a grant.
    assert requests.get(f"{emu.url}/v1/{IDC}/dicomStores/idc-store-v24/dicomWeb/studies", timeout=10).status_code == 401
    with pytest.raises(HttpError) as denied:
        anyone.projects().locations().datasets().dicomStores().get(name=NIH).execute()
    assert denied.value.resp.status == 403
    seed_policy(emu, NIH, [{"role": "roles/healthcare.dicomViewer", "members": ["user:someone@example.org"]}])
    assert anyone.projects().locations().datasets().dicomStores().get(name=NIH).execute()["name"] == NIH
    # Google's projects are nobody's here: not listed, and nothing in them can be changed.
    assert "nci-idc-data" not in requests.get(f"{emu.url}/v1/projects", timeout=10,
                                              headers={"Authorization": "Bearer emulator:" + OWNER}).text
    with pytest.raises(HttpError) as refused:
        anyone.projects().locations().datasets().dicomStores().delete(name=f"{IDC}/dicomStores/idc-store-v23").execute()
    assert refused.value.resp.status == 403


def test_stand_ins_come_back_after_a_reset_and_can_be_turned_off(emulator_factory):
    emu = emulator_factory()
    assert requests.post(f"{emu.url}/_emulator/reset", headers=CONTROL, timeout=10).status_code == 200
    state = requests.get(f"{emu.url}/_emulator/state", headers=CONTROL, timeout=10).json()
    assert state["storage"]["buckets"] == {} and state["healthcare"]["dicomStores"] == {}   # what clients made
    assert state["publicDatasets"]["buckets"] == [NIH_BUCKET]
    assert state["publicDatasets"]["dicomStores"][f"{IDC}/dicomStores/idc-store-v24"]["studies"] == 3
    off = emulator_factory(public_datasets=False)
    assert requests.get(f"{off.url}/_emulator/health", headers=CONTROL, timeout=10).json()["publicDatasets"] is False
    r = requests.get(f"{off.url}/v1/{IDC}/dicomStores", timeout=10)
    assert r.status_code == 403 and "nci-idc-data" in r.json()["error"]["message"]


def test_emulator_command_turns_the_stand_ins_off():
    from typer.testing import CliRunner

    from provision import cli

    out = CliRunner().invoke(cli.app, ["emulator", "--help"], env={"COLUMNS": "200"}).output
    assert "--no-public-datasets" in out


# ------------------------------------------------------------------ Requester Pays, as Cloud Storage answers


def test_requester_pays_bucket_needs_a_billing_project(iam_emulator):
    emu = iam_emulator
    create_project(emu.url, "ohif-payer", member=OWNER, parent=ORG, billing=False, enable=())
    client = gcs(emu.url, OWNER)
    with pytest.raises(gexc.BadRequest) as missing:
        list(client.list_blobs(NIH_BUCKET, prefix="dicom/"))
    assert missing.value.code == 400
    assert "requester pays bucket but no user project provided" in str(missing.value)
    with pytest.raises(gexc.BadRequest):   # the metadata too
        client.get_bucket(NIH_BUCKET)
    names = [b.name for b in client.list_blobs(client.bucket(NIH_BUCKET, user_project="ohif-payer"), prefix="dicom/")]
    assert len(names) == 2 and all(n.endswith(".dcm") for n in names)
    # A public bucket grants reading objects, not its metadata (storage.buckets.get): provision then learns
    # Requester Pays from the listing's 400. Its owners see billing.requesterPays.
    with pytest.raises(gexc.Forbidden, match="storage.buckets.get"):
        client.get_bucket(client.bucket(NIH_BUCKET, user_project="ohif-payer"))
    owner = gcs(emu.url, "user:public-data-owner@example.com")
    assert owner.get_bucket(NIH_BUCKET).requester_pays is True    # the bucket's owner needs no billing project
    with pytest.raises(gexc.BadRequest, match="User project specified in the request is invalid"):
        list(client.list_blobs(client.bucket(NIH_BUCKET, user_project="no-such-project"), prefix="dicom/"))
    # Ana may read the bucket (allUsers) but not bill the owner's project.
    with pytest.raises(gexc.Forbidden, match="serviceusage.services.use"):
        list(gcs(emu.url, ANA).list_blobs(gcs(emu.url, ANA).bucket(NIH_BUCKET, user_project="ohif-payer")))
