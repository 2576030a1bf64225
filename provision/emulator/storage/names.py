"""Cloud Storage's naming rules for buckets and objects.

Object names are only SQLite keys; no name ever becomes a file path, so a name such as
`../../etc/passwd` touches nothing outside the blob directory."""
from __future__ import annotations

import re
from typing import Any

from provision.emulator.errors import ApiError
from provision.emulator.storage.common import gcs_error

MAX_OBJECT_NAME_BYTES = 1024


def bucket_name_problem(name: Any) -> str | None:
    """Why `name` is not a valid bucket name (Cloud Storage's naming rules), or None."""
    if not isinstance(name, str) or not name:
        return "Required"
    invalid = f"Invalid bucket name: '{name}'"
    if not 3 <= len(name) <= 222 or not re.fullmatch(r"[a-z0-9][a-z0-9._-]*[a-z0-9]", name):
        return invalid
    parts = name.split(".")
    if any(not p or len(p) > 63 for p in parts) or ("." not in name and len(name) > 63):
        return invalid
    if re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", name):
        return invalid  # IP-address form
    if name.startswith("goog") or "google" in name or "g00gle" in name:
        return invalid
    return None


def object_name_problem(name: Any) -> ApiError | None:
    """The 400 Cloud Storage answers for an unusable object name, or None."""
    if not isinstance(name, str) or name == "":
        return gcs_error(400, "Required", "required")
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > MAX_OBJECT_NAME_BYTES:
        shown = name[:64]
        return gcs_error(400, f"The maximum object length is {MAX_OBJECT_NAME_BYTES} characters, but got a name "
                              f"with {size} characters: ''{shown}...''", "invalid")
    if name in (".", "..") or "\r" in name or "\n" in name or name.startswith(".well-known/acme-challenge/"):
        return gcs_error(400, "The specified object name is not valid.", "invalid")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return gcs_error(400, "The specified object name is not valid.", "invalid")
    return None


def checked_object_name(name: Any) -> str:
    """`name`, when it is a usable object name; else raises the 400 `object_name_problem` gives."""
    err = object_name_problem(name)
    if err:
        raise err
    return name   # a str: object_name_problem refuses anything else
