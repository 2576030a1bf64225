"""A dataset created with `encryptionSpec.kmsKeyName` (CMEK): the key must exist, be in the dataset's
location (healthcare.v1 discovery: "Only the key in the same location as this Dataset is allowed to be
used for encryption") and the project's Healthcare service agent must hold
`cloudkms.cryptoKeyVersions.useToEncrypt` on it (roles/cloudkms.cryptoKeyEncrypterDecrypter;
reference/hosting.md §7). No capture shows Google's refusals: 400 INVALID_ARGUMENT for a missing key or
one in another location, 400 FAILED_PRECONDITION for an agent without the grant (choices)."""
from __future__ import annotations

import re
from typing import Any

from provision.emulator.common import agent_email
from provision.emulator.errors import failed_precondition, invalid_argument

KEY_RE = re.compile(r"^projects/[^/]+/locations/([^/]+)/keyRings/[^/]+/cryptoKeys/[^/]+$")


def check(world: Any, project: dict, location: str, body: dict) -> None:
    """Refuse a dataset whose CMEK key cannot be used for it."""
    key = (body.get("encryptionSpec") or {}).get("kmsKeyName")
    if not key:
        return
    m = KEY_RE.match(str(key))
    if not m:
        raise invalid_argument(f"Invalid kmsKeyName {key!r}: expected projects/{{project}}/locations/{{location}}/"
                               "keyRings/{keyRing}/cryptoKeys/{key}.", [("dataset.encryption_spec.kms_key_name", "invalid")])
    kms = getattr(world, "kms", None)
    if kms is None or kms.key(key) is None:
        raise invalid_argument(f"CMEK key {key} was not found.", [("dataset.encryption_spec.kms_key_name", "not found")])
    if m.group(1) != location:
        raise invalid_argument(f"CMEK key {key} is in location {m.group(1)}: only a key in the same location as the "
                               f"dataset ({location}) may be used.", [("dataset.encryption_spec.kms_key_name",
                                                                       "location mismatch")])
    agent = agent_email(str(project["number"]), "healthcare.googleapis.com")
    if not kms.may_encrypt(key, f"serviceAccount:{agent}"):
        raise failed_precondition(f"The Cloud Healthcare Service Agent {agent} does not have permission "
                                  f"cloudkms.cryptoKeyVersions.useToEncrypt on CMEK key {key}; grant it "
                                  "roles/cloudkms.cryptoKeyEncrypterDecrypter on the key.")
