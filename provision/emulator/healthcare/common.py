"""What the Healthcare backend's parts share: the service and record names, the locations Google
offers, the operation type URLs, timestamps, the ID rule, the 403 Google answers for a missing or
forbidden resource, and list paging."""
from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from typing import Any, Callable

from provision.emulator.errors import ApiError, error_info, invalid_argument

SERVICE = "healthcare.googleapis.com"
DATASET = "healthcare.dataset"
STORE = "healthcare.dicomStore"
POLICY = "policy"

# What projects.locations.list answers: Google's list (reference/google-evidence.md §4.3, the
# locations page crawled 2026-04-08): 27 regions, then the multi-regions us and eu. Each entry is a
# Location with only name and locationId: the discovery document also declares displayName, labels and
# metadata, but no capture shows Healthcare filling them, and JSON leaves out empty fields.
LOCATIONS = ("northamerica-northeast1", "northamerica-northeast2", "us-central1", "us-east1", "us-east4", "us-west1",
             "us-west2", "us-west3", "southamerica-east1", "asia-east1", "asia-east2", "asia-northeast1",
             "asia-northeast2", "asia-northeast3", "asia-south1", "asia-southeast1", "asia-southeast2",
             "australia-southeast1", "australia-southeast2", "europe-north1", "europe-west2", "europe-west3",
             "europe-west4", "europe-west6", "me-west1", "me-central1", "me-central2", "us", "eu")

METADATA_TYPE = "type.googleapis.com/google.cloud.healthcare.v1.OperationMetadata"
DATASET_TYPE = "type.googleapis.com/google.cloud.healthcare.v1.dataset.Dataset"
IMPORT_RESPONSE_TYPE = "type.googleapis.com/google.cloud.healthcare.v1.dicom.ImportDicomDataResponse"
EXPORT_RESPONSE_TYPE = "type.googleapis.com/google.cloud.healthcare.v1.dicom.ExportDicomDataResponse"
EMPTY_TYPE = "type.googleapis.com/google.protobuf.Empty"
CREATE_DATASET = "google.cloud.healthcare.v1.dataset.DatasetService.CreateDataset"
IMPORT_METHOD = "google.cloud.healthcare.v1.dicom.DicomService.ImportDicomData"
EXPORT_METHOD = "google.cloud.healthcare.v1.dicom.DicomService.ExportDicomData"
DELETE_STUDY = "google.cloud.healthcare.v1.dicomweb.DicomWebService.DeleteStudy"
DELETE_SERIES = "google.cloud.healthcare.v1.dicomweb.DicomWebService.DeleteSeries"
PAGE_DEFAULT, PAGE_MAX = 100, 1000


def timestamp(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


ID_RULE = ("use 1-256 letters, numbers, underscores, hyphens and periods, with at least one character that is "
           "not a period ('.', '..' and other all-period IDs are not allowed)")


def valid_id(value: str | None) -> bool:
    """Dataset and DICOM store IDs: 1-256 of letters, digits, '_', '-' and '.' (Unicode letters
    allowed), not only periods ('.' and '..' could never be addressed in a URL path)."""
    if not value:
        return False
    return len(value) <= 256 and all(ch.isalnum() or ch in "_-." for ch in value) and value.strip(".") != ""


def page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode().rstrip("=")


def page_offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        return int(json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))["o"])
    except (ValueError, KeyError, TypeError):
        raise invalid_argument("Invalid page token.") from None


def page_size(raw: str | None, default: int = PAGE_DEFAULT, cap: int = PAGE_MAX) -> int:
    if raw in (None, ""):
        return default
    try:
        n = int(raw)
    except ValueError:
        raise invalid_argument(f"Invalid value for pageSize: {raw!r}") from None
    if n < 0:
        raise invalid_argument("pageSize must not be negative")
    return min(n or default, cap)


def paginate(items: list, key: str, size: int, token: str | None) -> dict:
    start = page_offset(token)
    out: dict[str, Any] = {key: items[start:start + size]} if items[start:start + size] else {}
    if start + size < len(items):
        out["nextPageToken"] = page_token(start + size)
    return out


def denied(permission: str, resource: str) -> ApiError:
    """403 for a resource that is missing or not allowed: Google does not tell the two apart."""
    return ApiError("PERMISSION_DENIED", f"Permission '{permission}' denied on resource '{resource}' (or it may not exist).",
                    [error_info("IAM_PERMISSION_DENIED", "iam.googleapis.com",
                                {"permission": permission, "resource": resource})])


def _mask_paths(mask: str | None) -> list[str]:
    if not mask:
        raise invalid_argument("updateMask is required.", [("update_mask", "required")])
    return [p.strip() for p in mask.split(",") if p.strip()]


def _check_labels(labels: Any) -> None:
    if labels is None:
        return
    if not isinstance(labels, dict) or len(labels) > 64:
        raise invalid_argument("labels must be a map of at most 64 entries.")
    for k, v in labels.items():
        if not (1 <= len(k) <= 63 and k[0].isalpha() and k[0].islower()
                and all(c.islower() or c.isdigit() or c in "_-" for c in k)):
            raise invalid_argument(f"Invalid label key {k!r}: 1-63 lower-case letters, digits, '_' or '-', "
                                   "starting with a letter.")
        if not isinstance(v, str) or len(v) > 63 or not all(c.islower() or c.isdigit() or c in "_-" for c in v):
            raise invalid_argument(f"Invalid label value {v!r} for key {k!r}.")


def _label_filter(expr: str):
    """`labels.KEY=VALUE` (and `labels.KEY:*`), joined with AND: the filters dicomStores.list documents."""
    terms = [t.strip() for t in expr.replace(" and ", " AND ").split(" AND ") if t.strip()]
    checks: list[Callable[[dict], bool]] = []
    for t in terms:
        if t.startswith("labels.") and "=" in t:
            k, _, v = t[7:].partition("=")
            k, v = k.strip(), v.strip().strip('"')
            checks.append(lambda view, k=k, v=v: view.get("labels", {}).get(k) == v)  # type: ignore[misc]  # a lambda with a bound default (mypy cannot infer it)
        elif t.startswith("labels.") and t.endswith(":*"):
            key = t[7:-2].strip()
            checks.append(lambda view, k=key: k in view.get("labels", {}))  # type: ignore[misc]  # a lambda with a bound default (mypy cannot infer it)
        else:
            raise invalid_argument(f"Unsupported filter {expr!r}: use labels.KEY=VALUE.")
    return lambda view: all(c(view) for c in checks)
