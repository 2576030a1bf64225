"""What every part of the Cloud Storage backend shares: its error envelope, the way it writes
times and etags, page tokens, and JSON merge-patch. No state, no HTTP."""
from __future__ import annotations

import base64
import json
from datetime import datetime, timezone

from provision.emulator.errors import ApiError

PAGE_MAX = 1000              # objects.list / buckets.list page size ceiling (as Google's)


def gcs_error(http_status: int, message: str, reason: str | None = None) -> ApiError:
    """An error in Cloud Storage's own envelope (`errors[].reason`)."""
    status = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 409: "ALREADY_EXISTS",
              412: "FAILED_PRECONDITION", 416: "OUT_OF_RANGE"}.get(http_status, "INVALID_ARGUMENT")
    return ApiError(status, message, http_status=http_status, gcs_reason=reason)


def bucket_not_found() -> ApiError:
    """The 404 for a bucket that does not exist."""
    return gcs_error(404, "The specified bucket does not exist.", "notFound")


def upload_gone() -> ApiError:
    """A resumable session that no longer exists (cancelled, failed, or the world was reset)."""
    return gcs_error(404, "No such upload session.", "notFound")


def object_not_found(bucket: str, name: str) -> ApiError:
    """The 404 for an object that does not exist (or not at the generation asked for)."""
    return gcs_error(404, f"No such object: {bucket}/{name}", "notFound")


def precondition_failed() -> ApiError:
    """The 412 for an ifGeneration*/ifMetageneration* condition that does not hold."""
    return gcs_error(412, "At least one of the pre-conditions you specified did not hold.", "conditionNotMet")


def rfc3339(t: float) -> str:
    """`2024-04-01T12:34:56.123Z`, as Cloud Storage writes times."""
    dt = datetime.fromtimestamp(t, timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def proto_etag(*fields: int) -> str:
    """Cloud Storage's etags are base64 protobuf: field 1 = generation (or metageneration), field 2 = ..."""
    raw = b"".join(bytes([(i + 1) << 3]) + _varint(v) for i, v in enumerate(fields))
    return base64.b64encode(raw).decode()


def b64(raw: bytes) -> str:
    """Standard base64 as text (how md5Hash and crc32c travel)."""
    return base64.b64encode(raw).decode()


def encode_token(cursor: str) -> str:
    """A list page token carrying the name the next page starts after."""
    return base64.urlsafe_b64encode(json.dumps({"after": cursor}).encode()).decode()


def decode_token(token: str) -> str:
    """The cursor inside a page token from `encode_token`; a token we did not write is a 400."""
    try:
        return json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))["after"]
    except (ValueError, KeyError, TypeError):
        raise gcs_error(400, "Invalid page token.", "invalid") from None


def merge_patch(current: dict, patch: dict) -> dict:
    """JSON merge-patch as the JSON API applies PATCH to maps (labels, metadata): null deletes."""
    out = dict(current)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_patch(out[key], value)
        else:
            out[key] = value
    return out
