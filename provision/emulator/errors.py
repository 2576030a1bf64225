"""Google-shaped errors. Handlers raise ApiError; the server renders the wire envelope.

Most APIs answer a `google.rpc.Status` envelope (`code`, `message`, `status`, `details`);
Cloud Storage's JSON API answers its older `errors[]` envelope. Both come from one object.
"""
from __future__ import annotations

from typing import Any

ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
PRECONDITION_FAILURE = "type.googleapis.com/google.rpc.PreconditionFailure"
HELP = "type.googleapis.com/google.rpc.Help"

# Canonical code name -> (HTTP status, numeric google.rpc.Code)
CODES = {
    "OK": (200, 0),
    "CANCELLED": (499, 1),
    "UNKNOWN": (500, 2),
    "INVALID_ARGUMENT": (400, 3),
    "DEADLINE_EXCEEDED": (504, 4),
    "NOT_FOUND": (404, 5),
    "ALREADY_EXISTS": (409, 6),
    "PERMISSION_DENIED": (403, 7),
    "RESOURCE_EXHAUSTED": (429, 8),
    "FAILED_PRECONDITION": (400, 9),
    "ABORTED": (409, 10),
    "OUT_OF_RANGE": (400, 11),
    "UNIMPLEMENTED": (501, 12),
    "INTERNAL": (500, 13),
    "UNAVAILABLE": (503, 14),
    "DATA_LOSS": (500, 15),
    "UNAUTHENTICATED": (401, 16),
}
# What Cloud Storage puts in errors[].reason for each HTTP status.
GCS_REASONS = {400: "invalid", 401: "required", 403: "forbidden", 404: "notFound", 409: "conflict",
               412: "conditionNotMet", 429: "rateLimitExceeded", 500: "backendError", 503: "backendError"}


class ApiError(Exception):
    """An error answered the way Google answers it."""

    def __init__(self, status: str, message: str, details: list[dict] | None = None, *,
                 http_status: int | None = None, gcs_reason: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details or []
        self.http_status = http_status or CODES[status][0]
        self.gcs_reason = gcs_reason

    @property
    def rpc_code(self) -> int:
        """The numeric google.rpc.Code, as carried by a failed long-running operation."""
        return CODES[self.status][1]

    def rpc_status(self) -> dict[str, Any]:
        """The google.rpc.Status object (as in an operation's `error`)."""
        out: dict[str, Any] = {"code": self.rpc_code, "message": self.message}
        if self.details:
            out["details"] = self.details
        return out

    def body(self, style: str = "rpc") -> dict[str, Any]:
        """The JSON error body: `rpc` (google.rpc.Status envelope) or `gcs` (Storage JSON API)."""
        if style == "gcs":
            reason = self.gcs_reason or GCS_REASONS.get(self.http_status, "invalid")
            return {"error": {"code": self.http_status, "message": self.message,
                              "errors": [{"message": self.message, "domain": "global", "reason": reason}]}}
        err: dict[str, Any] = {"code": self.http_status, "message": self.message, "status": self.status}
        if self.details:
            err["details"] = self.details
        return {"error": err}


def error_info(reason: str, domain: str, metadata: dict[str, str] | None = None) -> dict:
    """A google.rpc.ErrorInfo detail."""
    out: dict[str, Any] = {"@type": ERROR_INFO, "reason": reason, "domain": domain}
    if metadata:
        out["metadata"] = metadata
    return out


def bad_request(violations: list[tuple[str, str]]) -> dict:
    """A google.rpc.BadRequest detail with field violations."""
    return {"@type": BAD_REQUEST, "fieldViolations": [{"field": f, "description": d} if f else {"description": d}
                                                      for f, d in violations]}


def invalid_argument(message: str, violations: list[tuple[str, str]] | None = None) -> ApiError:
    return ApiError("INVALID_ARGUMENT", message, [bad_request(violations)] if violations else None)


def permission_denied(message: str = "The caller does not have permission", details: list[dict] | None = None) -> ApiError:
    return ApiError("PERMISSION_DENIED", message, details)


def not_found(message: str) -> ApiError:
    return ApiError("NOT_FOUND", message)


def already_exists(message: str = "Requested entity already exists") -> ApiError:
    return ApiError("ALREADY_EXISTS", message)


def failed_precondition(message: str, details: list[dict] | None = None) -> ApiError:
    return ApiError("FAILED_PRECONDITION", message, details)


def aborted(message: str) -> ApiError:
    return ApiError("ABORTED", message)


def unauthenticated() -> ApiError:
    return ApiError(
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
        "or other valid authentication credential.",
        [error_info("ACCESS_TOKEN_TYPE_UNSUPPORTED", "googleapis.com")],
    )
