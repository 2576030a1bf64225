"""What the reads of live state return, shared by the kinds that read them, the kinds that use
them, and base.Live, which holds them by name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ProjectState:
    project_id: str
    number: str
    display_name: str = ""
    parent: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    state: str = "ACTIVE"

    @property
    def name(self) -> str:
        return f"projects/{self.number}"


@dataclass
class BucketState:
    name: str
    exists: bool
    accessible: bool = True          # False: it exists but belongs to someone who did not share it (403)
    location: str = ""
    project_number: str = ""
    labels: dict[str, Any] = field(default_factory=dict)
    requester_pays: bool = False     # known only when Cloud Storage asked for a billing project
    uniform: bool | None = None      # uniform bucket-level access (None: not read)
    prevention: str = ""             # public access prevention: enforced | inherited ("" not read)


@dataclass
class DatasetState:
    name: str
    time_zone: str = ""
    kms_key: str = ""   # encryptionSpec.kmsKeyName (CMEK), "" for Google-managed encryption


@dataclass
class StoreState:
    name: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class LocalFile:
    path: Path
    name: str          # object name
    size: int
    crc32c: str        # base64, as Cloud Storage reports it
    md5: str
