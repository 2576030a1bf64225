"""Stand-ins for the public datasets teams add to their viewer, at their real names, with access
rules like Google's (on by default; `provision emulator --no-public-datasets` leaves them out).

What Google hosts, and what stands in for it here (a few small generated studies each, not the
real images):

- NCI Imaging Data Commons: one DICOM store per IDC release,
  `projects/nci-idc-data/locations/us-central1/datasets/idc/dicomStores/idc-store-v<N>`, readable
  by any signed-in Google account (IDC's documentation: "needs any signed-in Google account and
  the cloud-healthcare scope"; Google's public-datasets page lists IDC). Two releases stand in,
  v23 (2 studies) and v24 (3: v23's and one new), so "latest" has something to choose. Here:
  `allAuthenticatedUsers` holds roles/healthcare.dicomViewer on the dataset, which also lets a
  signed-in caller list the releases (dicomStores.list): whether Google grants the list too is
  not in any text we found; if it does not, plan says so and asks for a pinned release.
- NIH Chest X-ray: the DICOM store `projects/chc-nih-chest-xray/locations/us-central1/datasets/
  nih-chest-xray/dicomStores/nih-chest-xray` ("To request access to the NIH chest x-ray DICOM
  store ...": no public grant; a test grants a member through /_emulator/policies/) and the
  DICOM files in the **Requester Pays** bucket `gs://gcs-public-data--healthcare-nih-chest-xray`
  under `dicom/` (Google's NIH dataset page: "The Cloud Storage bucket uses the Requester Pays
  model"). The bucket is readable by allUsers (a public-data bucket; every request still names a
  billing project, see storage/requests.py). Google does not publish which project holds the
  bucket; it stands in `chc-nih-chest-xray` (which, per the same page, holds the BigQuery copy).

The projects belong to nobody a test is (the owner is `user:public-data-owner@example.com`, not
the anonymous owner), are hidden from projects.list/search (no one holds projects.get on them),
and take no project number from the counter that numbers created projects. The records are
written straight into the backends' state, never through HTTP: seeding is not in --record.
With --data-dir they are written once; after a reset they come back.
"""
from __future__ import annotations

import functools
import hashlib
import io
import uuid
from dataclasses import dataclass

from provision.emulator import iam
from provision.emulator.common import timestamp
from provision.emulator.healthcare.common import DATASET, STORE
from provision.emulator.healthcare.dicomfile import Parsed, parse_buffer
from provision.emulator.world import World

ATTACH_AS = "publicdata"
OWNER = "user:public-data-owner@example.com"
HEALTHCARE = "healthcare.googleapis.com"
LOCATION = "us-central1"

IDC_PROJECT, IDC_NUMBER, IDC_DATASET = "nci-idc-data", "907540366142", "idc"
IDC_RELEASES = (23, 24)
NIH_PROJECT, NIH_NUMBER, NIH_DATASET, NIH_STORE = ("chc-nih-chest-xray", "904181331517", "nih-chest-xray",
                                                   "nih-chest-xray")
NIH_BUCKET = "gcs-public-data--healthcare-nih-chest-xray"

CREATED = 1577836800.0   # 2020-01-01: a fixed time, so the records are the same on every start
_UID_NAMESPACE = uuid.UUID("7b1f9a52-3a0e-4c55-9e8e-0d3c2f1b6a10")


@dataclass(frozen=True)
class _Study:
    key: str
    patient: str           # DICOM PN
    patient_id: str
    date: str
    description: str
    modality: str          # CT (3 slices) or DX (1 image)


# What each stand-in holds. IDC's studies are CT (IDC is mostly radiology collections of TCIA);
# NIH's are chest radiographs (DX).
IDC_STUDIES = (
    _Study("idc-lung-1", "IDC^Lung^One", "IDC-LUNG-1", "20200314", "IDC stand-in: chest CT", "CT"),
    _Study("idc-lung-2", "IDC^Lung^Two", "IDC-LUNG-2", "20210606", "IDC stand-in: chest CT", "CT"),
    _Study("idc-kidney-3", "IDC^Kidney^Three", "IDC-KID-3", "20240909", "IDC stand-in: abdomen CT (v24)", "CT"),
)
IDC_RELEASE_STUDIES = {23: IDC_STUDIES[:2], 24: IDC_STUDIES}
NIH_STUDIES = (
    _Study("nih-00000001", "NIH^CXR^00000001", "00000001", "20170101", "NIH stand-in: chest X-ray PA", "DX"),
    _Study("nih-00000002", "NIH^CXR^00000002", "00000002", "20170102", "NIH stand-in: chest X-ray PA", "DX"),
)


def _uid(*parts: object) -> str:
    return "2.25." + str(uuid.uuid5(_UID_NAMESPACE, "/".join(map(str, parts))).int)


@functools.cache
def _parsed(study: _Study) -> tuple[Parsed, ...]:
    """Each file of `_files(study)` as the index keeps it, cached for the process too: every emulator
    seeds the same stand-ins (tests start hundreds), and parsing them was most of an emulator's start."""
    return tuple(parse_buffer(data) for _, data in _files(study))


@functools.cache
def _files(study: _Study) -> tuple[tuple[str, bytes], ...]:
    """(file name, Part-10 bytes) of one study: deterministic, cached for the process."""
    # numpy and pydicom cost a third of a second and ~12 MiB at start (lazy.py): imported only
    # when the stand-ins are seeded, which `--no-public-datasets` skips.
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.filewriter import dcmwrite
    from pydicom.uid import UID, ExplicitVRLittleEndian

    slices, size = (3, 32) if study.modality == "CT" else (1, 48)
    sop_class = "1.2.840.10008.5.1.4.1.1.2" if study.modality == "CT" else "1.2.840.10008.5.1.4.1.1.1.1"
    study_uid, series_uid = _uid(study.key), _uid(study.key, "series")
    seed = int(hashlib.sha256(study.key.encode()).hexdigest()[:8], 16)
    yy, xx = np.mgrid[0:size, 0:size]
    out = []
    for n in range(1, slices + 1):
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.SOPClassUID, ds.SOPInstanceUID = sop_class, _uid(study.key, "instance", n)
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = study.patient, study.patient_id, "", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = study.date
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = "101500"
        ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "1", f"ACC-{study.patient_id}", ""
        ds.StudyDescription, ds.SeriesDescription = study.description, f"{study.modality} stand-in series"
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = study.modality, 1, n
        ds.Manufacturer = "provision emulator (public dataset stand-in)"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL" if study.modality == "CT" else "OTHER"]
        ds.ImageComments = "Synthetic stand-in for a public dataset; not a patient."
        ds.PatientOrientation = ""
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0, 0, float(n)]
        ds.PixelSpacing = [1.0, 1.0]
        ds.SliceThickness = 1.0
        ds.FrameOfReferenceUID = _uid(study.key, "frame")
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows = ds.Columns = size
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.WindowCenter, ds.WindowWidth = 2048, 4096
        disc = ((xx - size / 2) ** 2 + (yy - size / 2) ** 2) < (size / 3 + n) ** 2
        pixels = (xx * 64 + yy * 16 + seed % 512 + disc * 1500) % 4096
        ds.PixelData = pixels.astype("<u2").tobytes()
        ds["PixelData"].VR = "OW"
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = UID("2.25.123456789012345678901234567890")
        ds.file_meta, ds.preamble = meta, b"\0" * 128
        buf = io.BytesIO()
        dcmwrite(buf, ds, enforce_file_format=True)
        out.append((f"{study.patient_id}_{n:03d}.dcm", buf.getvalue()))
    return tuple(out)


class Backend:
    """`world.publicdata`: seeds the stand-ins after every other backend is attached (and again
    after each reset, being attached last)."""

    def __init__(self, world: World):
        self.world = world
        self.enabled = getattr(world.options, "public_datasets", True)
        if self.enabled:
            self.seed()

    def reset(self) -> None:
        if self.enabled:
            self.seed()

    def dump(self) -> dict:
        """The stand-ins, for GET /_emulator/state (the other APIs' parts of the dump leave them out)."""
        if not self.enabled:
            return {}
        summary = self.world.healthcare.index.summary()
        return {"publicDatasets": {
            "dicomStores": {name: n for name, n in summary.items() if name in self.world.stand_ins},
            "buckets": sorted(n for n in self.world.stand_ins if "/" not in n)}}

    def seed(self) -> None:
        self.world.stand_ins.update([NIH_BUCKET, f"projects/{NIH_PROJECT}/locations/{LOCATION}/datasets/{NIH_DATASET}"
                                                 f"/dicomStores/{NIH_STORE}"]
                                    + [f"projects/{IDC_PROJECT}/locations/{LOCATION}/datasets/{IDC_DATASET}/"
                                       f"dicomStores/idc-store-v{n}" for n in IDC_RELEASES])
        docs = self.world.docs
        if docs.get("project", IDC_PROJECT) is not None:
            return   # already there (a --data-dir kept them)
        with self.world.db.transaction():
            idc = self._project(IDC_PROJECT, IDC_NUMBER, "NCI IDC Data")
            nih = self._project(NIH_PROJECT, NIH_NUMBER, "NIH Chest X-ray")
        idc_ds = self._dataset(idc, IDC_DATASET)
        self._grant(idc_ds, "roles/healthcare.dicomViewer", "allAuthenticatedUsers")
        for release in IDC_RELEASES:
            self._store(idc_ds, f"idc-store-v{release}", IDC_RELEASE_STUDIES[release])
        nih_ds = self._dataset(nih, NIH_DATASET)
        self._store(nih_ds, NIH_STORE, NIH_STUDIES)
        self._bucket(nih)

    # ------------------------------------------------------------------ pieces
    def _grant(self, resource: str, role: str, member: str) -> None:
        docs = self.world.docs
        current = docs.get("policy", resource) or iam.empty_policy()
        docs.put("policy", resource, iam.replace(current, {"bindings": current.get("bindings", []) + [
            {"role": role, "members": [member]}]}))

    def _project(self, project_id: str, number: str, display: str) -> dict:
        now = timestamp(CREATED)
        record = {"projectId": project_id, "number": number, "name": f"projects/{number}", "displayName": display,
                  "state": "ACTIVE", "parent": "", "labels": {}, "createTime": now, "updateTime": now,
                  "deleteTime": "", "etag": iam.make_etag([project_id]), "defaultServices": True,
                  "standIn": True}   # hidden from projects.list/search (resourcemanager/handlers.py)
        docs = self.world.docs
        docs.put("project", project_id, record)
        docs.put("project_number", number, {"projectId": project_id})
        docs.put("policy", f"projects/{project_id}",
                 iam.replace(iam.empty_policy(), {"bindings": [{"role": "roles/owner", "members": [OWNER]}]}))
        docs.put("service", f"{number}/{HEALTHCARE}", {"state": "ENABLED", "done_at": 0.0, "usable_at": 0.0})
        return record

    def _dataset(self, project: dict, dataset_id: str) -> str:
        name = f"projects/{project['projectId']}/locations/{LOCATION}/datasets/{dataset_id}"
        self.world.docs.put(DATASET, name, {"view": {"name": name, "timeZone": "UTC"}, "createdAt": 0.0,
                                            "readyAt": 0.0, "projectNumber": project["number"]})
        return name

    def _store(self, dataset: str, store_id: str, studies: tuple[_Study, ...]) -> None:
        hc = self.world.healthcare
        name = f"{dataset}/dicomStores/{store_id}"
        with self.world.db.transaction():
            sid = hc.index.add_store(name)
            self.world.docs.put(STORE, name, {"view": {"name": name}, "sid": sid})
        hc.index.ingest(sid, [(parsed, self.world.blobs.put(data), len(data)) for study in studies
                              for (_, data), parsed in zip(_files(study), _parsed(study), strict=True)])

    def _bucket(self, project: dict) -> None:
        storage = self.world.storage
        storage.create_bucket({"projectId": project["projectId"], "projectNumber": project["number"]},
                              {"name": NIH_BUCKET, "location": "US", "billing": {"requesterPays": True},
                               "iamConfiguration": {"uniformBucketLevelAccess": {"enabled": True}}})
        policy = storage.policy(NIH_BUCKET)
        storage.buckets.put_policy(NIH_BUCKET, iam.replace(policy, {"bindings": policy["bindings"] + [
            {"role": "roles/storage.objectViewer", "members": ["allUsers"]}]}, storage=True))
        for study in NIH_STUDIES:
            for file_name, data in _files(study):
                storage.put_object(NIH_BUCKET, f"dicom/{file_name}", data, "application/dicom")
