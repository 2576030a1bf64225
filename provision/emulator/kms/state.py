"""Cloud KMS's backend, the part a CMEK dataset touches: key rings, crypto keys and their IAM policies.
No HTTP here; no key material either (nothing is encrypted: a key's use is only checked, by who holds
`cloudkms.cryptoKeyVersions.useToEncrypt` on it).

Records in `world.docs`:
- ("kms_keyring", "projects/P/locations/L/keyRings/R"): {name, createTime} (P as the project ID);
- ("kms_key", ".../keyRings/R/cryptoKeys/K"): the CryptoKey as answered;
- ("policy", a key ring's or key's name): its IAM policy.

Choices where no capture shows Google's answer: a missing key ring or key is 404 NOT_FOUND naming it
(the client libraries' samples show that wording); the key's project must exist, and the KMS API is not
required to be enabled on it (the emulator does not play SERVICE_DISABLED for KMS).
"""
from __future__ import annotations

import re

from provision.emulator import iam
from provision.emulator.state_base import ApiBackend
from provision.emulator.common import timestamp
from provision.emulator.errors import already_exists, invalid_argument, not_found


ATTACH_AS = "kms"
ID_RE = re.compile(r"^[a-zA-Z0-9_-]{1,63}$")
PURPOSES = ("ENCRYPT_DECRYPT", "ASYMMETRIC_SIGN", "ASYMMETRIC_DECRYPT", "RAW_ENCRYPT_DECRYPT", "MAC")
USE_TO_ENCRYPT = "cloudkms.cryptoKeyVersions.useToEncrypt"


class Kms(ApiBackend):
    """Cross-API interface: `key(name)`, `may_encrypt(name, member)`."""

    # ----- the interface other APIs call ----------------------------------------------------------
    def key(self, name: str) -> dict | None:
        return self.docs.get("kms_key", self.canonical(name))

    def canonical(self, name: str) -> str:
        """A key ring's or key's name with the project as its ID (a number in the name is looked up)."""
        parts = name.split("/")
        if len(parts) > 1 and parts[0] == "projects":
            record = self.world.crm.lookup(parts[1])
            if record is not None:
                parts[1] = record["projectId"]
        return "/".join(parts)

    def policies(self, name: str) -> list[dict]:
        """The policies that grant on a key (or key ring): its own, its ring's, its project's chain."""
        name = self.canonical(name)
        ring = name.split("/cryptoKeys/")[0]
        out = [self.docs.get("policy", name), self.docs.get("policy", ring) if ring != name else None]
        project = name.split("/")[1]
        out += list(self.world.crm.policy_chain(project)) if self.world.crm.lookup(project) else []
        return [p for p in out if p]

    def may_encrypt(self, name: str, member: str) -> bool:
        """Whether `member` may encrypt with the key (a service agent's grant, checked by Healthcare)."""
        return any(member in iam.members_with(p, USE_TO_ENCRYPT) for p in self.policies(name))

    # ----- key rings and keys ----------------------------------------------------------------------
    def create_ring(self, parent: str, ring_id: str | None) -> dict:
        if not ring_id or not ID_RE.match(ring_id):
            raise invalid_argument("KeyRing id must match [a-zA-Z0-9_-]{1,63}.", [("key_ring_id", "invalid")])
        name = f"{self.canonical(parent)}/keyRings/{ring_id}"
        with self.world.db.transaction():
            if self.docs.get("kms_keyring", name) is not None:
                raise already_exists(f"KeyRing {name} already exists.")
            doc = {"name": name, "createTime": timestamp(self.world.clock())}
            self.docs.put("kms_keyring", name, doc)
        return doc

    def ring(self, name: str) -> dict:
        doc = self.docs.get("kms_keyring", self.canonical(name))
        if doc is None:
            raise not_found(f"KeyRing {name} not found.")
        return doc

    def rings(self, parent: str) -> list[dict]:
        return [doc for _, doc in self.docs.list("kms_keyring", self.canonical(parent) + "/keyRings/")]

    def create_key(self, ring: str, key_id: str | None, body: dict) -> dict:
        if not key_id or not ID_RE.match(key_id):
            raise invalid_argument("CryptoKey id must match [a-zA-Z0-9_-]{1,63}.", [("crypto_key_id", "invalid")])
        purpose = body.get("purpose") or ""
        if purpose not in PURPOSES:
            raise invalid_argument("The request must specify a valid purpose.", [("crypto_key.purpose", "required")])
        ring_doc = self.ring(ring)
        name = f"{ring_doc['name']}/cryptoKeys/{key_id}"
        now = self.world.clock()
        with self.world.db.transaction():
            if self.docs.get("kms_key", name) is not None:
                raise already_exists(f"CryptoKey {name} already exists.")
            doc = {"name": name, "purpose": purpose, "createTime": timestamp(now),
                   "versionTemplate": {"protectionLevel": "SOFTWARE",
                                       "algorithm": "GOOGLE_SYMMETRIC_ENCRYPTION" if purpose == "ENCRYPT_DECRYPT"
                                       else (body.get("versionTemplate") or {}).get("algorithm", "")},
                   "destroyScheduledDuration": "2592000s"}
            if purpose == "ENCRYPT_DECRYPT":
                doc["primary"] = {"name": f"{name}/cryptoKeyVersions/1", "state": "ENABLED",
                                  "createTime": timestamp(now), "protectionLevel": "SOFTWARE",
                                  "algorithm": "GOOGLE_SYMMETRIC_ENCRYPTION", "generateTime": timestamp(now)}
            if body.get("labels"):
                doc["labels"] = body["labels"]
            self.docs.put("kms_key", name, doc)
        return doc

    def get_key(self, name: str) -> dict:
        doc = self.key(name)
        if doc is None:
            raise not_found(f"CryptoKey {name} not found.")
        return doc

    def keys(self, ring: str) -> list[dict]:
        return [doc for _, doc in self.docs.list("kms_key", self.ring(ring)["name"] + "/cryptoKeys/")]

    # ----- IAM -------------------------------------------------------------------------------------
    def get_policy(self, name: str, version: int | None) -> dict:
        return iam.view(self.docs.get("policy", self.canonical(name)) or iam.empty_policy(), version)

    def set_policy(self, name: str, policy: dict) -> dict:
        key = self.canonical(name)
        with self.world.db.transaction():
            current = self.docs.get("policy", key) or iam.empty_policy()
            added = {m for b in policy.get("bindings") or [] for m in b.get("members") or []} - \
                {m for b in current.get("bindings") or [] for m in b.get("members") or []}
            orgpolicy = getattr(self.world, "orgpolicy", None)
            if orgpolicy is not None and added:
                orgpolicy.check_members(key.split("/")[1], sorted(added))
            updated = iam.replace(current, policy)
            self.docs.put("policy", key, updated)
        return iam.view(updated, 3)


Backend = Kms
