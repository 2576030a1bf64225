"""Data Access audit entries for Healthcare and Storage calls, written when the owning project's IAM
policy turns that service and log type on (`auditConfigs`, provision/emulator/resourcemanager/audit.py).

Entries land in `projects/P/logs/cloudaudit.googleapis.com%2Fdata_access` through Cloud Logging's
backend (readable with `entries:list`), in the shape Google writes: `protoPayload` an AuditLog
(`@type` type.googleapis.com/google.cloud.audit.AuditLog) with serviceName, methodName,
resourceName, authenticationInfo.principalEmail, requestMetadata, status, and for DICOMweb a
`request` naming the store (`parent`) and the `dicomWebPath`, as Google's own image lifecycle tool
reads them (methodName `google.cloud.healthcare.v1.dicomweb.DicomWebService.RetrieveInstance`,
resourceName the store, request.dicomWebPath `studies/...`; GoogleCloudPlatform ILM logs_lib).
Log types follow the permission each method checks (cloud.google.com/healthcare-api/docs/how-tos/
audit-logging: DATA_READ, DATA_WRITE and ADMIN_READ methods write Data Access entries; ADMIN_WRITE
ones go to the Admin Activity log, not modelled). Our choices, where no capture was found: the
monitored resource types (healthcare_dicom_store, healthcare_dataset, gcs_bucket), Storage's
methodNames (the permission names, e.g. storage.objects.get), a resumable upload logged once when
it starts, and a failed call logged with its status. The principal is the caller (its token);
an anonymous caller (no --enforce-iam) is the emulator's anonymous owner.
"""
from __future__ import annotations

from typing import Any

from provision.emulator.common import ANONYMOUS_OWNER
from provision.emulator.resourcemanager.audit import enabled

LOG_ID = "cloudaudit.googleapis.com/data_access"
AUDIT_TYPE = "type.googleapis.com/google.cloud.audit.AuditLog"
HC = "google.cloud.healthcare.v1."
DICOMWEB = HC + "dicomweb.DicomWebService."
DATA_READ, DATA_WRITE, ADMIN_READ = "DATA_READ", "DATA_WRITE", "ADMIN_READ"
GRPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 409: 10, 412: 9, 416: 11, 429: 8, 500: 13, 501: 12, 503: 14}

# handler name -> (methodName, log type), per API. Handlers not named write no Data Access entry.
HEALTHCARE = {
    "search_studies": (DICOMWEB + "SearchForStudies", DATA_READ),
    "search_all_series": (DICOMWEB + "SearchForSeries", DATA_READ),
    "search_series": (DICOMWEB + "SearchForSeries", DATA_READ),
    "search_all_instances": (DICOMWEB + "SearchForInstances", DATA_READ),
    "search_study_instances": (DICOMWEB + "SearchForInstances", DATA_READ),
    "search_series_instances": (DICOMWEB + "SearchForInstances", DATA_READ),
    "study_metadata": (DICOMWEB + "RetrieveStudyMetadata", DATA_READ),
    "series_metadata": (DICOMWEB + "RetrieveSeriesMetadata", DATA_READ),
    "instance_metadata": (DICOMWEB + "RetrieveInstanceMetadata", DATA_READ),
    "retrieve_study": (DICOMWEB + "RetrieveStudy", DATA_READ),
    "retrieve_series": (DICOMWEB + "RetrieveSeries", DATA_READ),
    "retrieve_instance": (DICOMWEB + "RetrieveInstance", DATA_READ),
    "retrieve_frames": (DICOMWEB + "RetrieveFrames", DATA_READ),
    "retrieve_bulkdata": (DICOMWEB + "RetrieveBulkdata", DATA_READ),
    "rendered_instance": (DICOMWEB + "RetrieveRenderedInstance", DATA_READ),
    "rendered_frame": (DICOMWEB + "RetrieveRenderedFrames", DATA_READ),
    "store_instances": (DICOMWEB + "StoreInstances", DATA_WRITE),
    "store_study_instances": (DICOMWEB + "StoreInstances", DATA_WRITE),
    "delete_study": (DICOMWEB + "DeleteStudy", DATA_WRITE),
    "delete_series": (DICOMWEB + "DeleteSeries", DATA_WRITE),
    "delete_instance": (DICOMWEB + "DeleteInstance", DATA_WRITE),
    "get_dataset": (HC + "dataset.DatasetService.GetDataset", ADMIN_READ),
    "list_datasets": (HC + "dataset.DatasetService.ListDatasets", ADMIN_READ),
    "get_store": (HC + "dicom.DicomService.GetDicomStore", ADMIN_READ),
    "list_stores": (HC + "dicom.DicomService.ListDicomStores", ADMIN_READ),
    "get_dataset_policy": ("google.iam.v1.IAMPolicy.GetIamPolicy", ADMIN_READ),
    "get_store_policy": ("google.iam.v1.IAMPolicy.GetIamPolicy", ADMIN_READ),
    "import_dicom": (HC + "dicom.DicomService.ImportDicomData", DATA_WRITE),
    "export_dicom": (HC + "dicom.DicomService.ExportDicomData", DATA_READ),
}
STORAGE = {
    "objects_get": ("storage.objects.get", DATA_READ),
    "objects_download": ("storage.objects.get", DATA_READ),
    "objects_list": ("storage.objects.list", DATA_READ),
    "objects_upload": ("storage.objects.create", DATA_WRITE),
    "objects_copy": ("storage.objects.create", DATA_WRITE),
    "objects_rewrite": ("storage.objects.create", DATA_WRITE),
    "objects_compose": ("storage.objects.create", DATA_WRITE),
    "objects_patch": ("storage.objects.update", DATA_WRITE),
    "objects_delete": ("storage.objects.delete", DATA_WRITE),
    "buckets_get": ("storage.buckets.get", ADMIN_READ),
    "buckets_list": ("storage.buckets.list", ADMIN_READ),
    "buckets_get_iam": ("storage.getIamPermissions", ADMIN_READ),
}
SERVICES = {"healthcare": ("healthcare.googleapis.com", HEALTHCARE), "storage": ("storage.googleapis.com", STORAGE)}


def write(world: Any, api: str, handler: str, args: dict, request: Any, principal: str | None, status: int) -> None:
    """Write the Data Access entry of one call, if its project's policy turns it on."""
    entry = SERVICES.get(api)
    if entry is None:
        return
    service, table = entry
    method = table.get(handler)
    if method is None:
        return
    where = _healthcare(world, args, request) if api == "healthcare" else _storage(world, args, request)
    if where is None:
        return   # nothing to attribute it to (the project or bucket does not exist)
    project_id, resource_name, resource, extra = where
    if "request" in extra:   # the request message the method takes, as Google's entries name it
        extra["request"]["@type"] = f"type.googleapis.com/{HC}dicomweb.{method[0].rsplit('.', 1)[1]}Request"
    member = principal or ANONYMOUS_OWNER
    if not enabled(world.crm.policy_chain(project_id), service, method[1], member):
        return
    payload = {"@type": AUDIT_TYPE, "serviceName": service, "methodName": method[0], "resourceName": resource_name,
               "authenticationInfo": {"principalEmail": member.partition(":")[2] or member},
               "requestMetadata": {"callerIp": request.remote_addr or "",
                                   "callerSuppliedUserAgent": request.headers.get("User-Agent", "")},
               "status": {} if status < 400 else {"code": GRPC_CODES.get(status, 2), "message": str(status)},
               **extra}
    world.logging.write(project_id, LOG_ID, [{"protoPayload": payload, "resource": resource,
                                              "severity": "INFO" if status < 400 else "ERROR"}])


def _healthcare(world: Any, args: dict, request: Any) -> tuple | None:
    record = world.crm.lookup(args.get("project", ""))
    if record is None:
        return None
    pid, loc, ds = record["projectId"], args.get("location", ""), args.get("dataset", "")
    labels = {"project_id": pid, "location": loc, "dataset_id": ds}
    name = f"projects/{pid}/locations/{loc}/datasets/{ds}"
    if "store" not in args:
        return pid, name, {"type": "healthcare_dataset", "labels": labels}, {}
    name += f"/dicomStores/{args['store']}"
    resource = {"type": "healthcare_dicom_store", "labels": dict(labels, dicom_store_id=args["store"])}
    extra = {}
    if "/dicomWeb/" in request.path:
        path = request.path.split("/dicomWeb/", 1)[1]
        extra = {"request": {"parent": name, "dicomWebPath": path}}
    return pid, name, resource, extra


def _storage(world: Any, args: dict, request: Any) -> tuple | None:
    bucket = args.get("bucket")
    rec = world.storage.bucket(bucket) if bucket else None
    if rec is None:
        return None
    name = f"projects/_/buckets/{bucket}"
    obj = args.get("object") or request.args.get("name")
    if obj:
        name += f"/objects/{obj}"
    resource = {"type": "gcs_bucket", "labels": {"project_id": rec["projectId"], "bucket_name": bucket,
                                                 "location": rec["location"].lower()}}
    return rec["projectId"], name, resource, {}
