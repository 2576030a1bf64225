"""IAP v1's backend: the IAM policy of each `iap_web` resource of a Cloud Run service. No HTTP here.

Resource names: `projects/PROJECT_NUMBER/iap_web/cloud_run-REGION/services/SERVICE` (hosting.md, from
Google's IAP-on-Cloud-Run page; a project ID in place of the number is accepted and stored under the
number). Choices where evidence is missing: the Cloud Run service must exist (else 404 NOT_FOUND,
naming it); `iap.googleapis.com` must be enabled (SERVICE_DISABLED otherwise, as for every API).
Only cloud_run resources are served; the sign-in and 403 of IAP in front of a running service are
not (services do not run yet). IAP's signing keys are: an ES256 key (kept in --data-dir), its JWK set
at Google's path (`www.gstatic.com/iap/verify/public_key-jwk`), and the assertions it signs
(`assertion`), which the control endpoint `POST /_emulator/iap/assertion` hands out for tests.
"""
from __future__ import annotations

import hashlib
import re
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provision.emulator import iam
from provision.emulator.errors import invalid_argument, not_found, permission_denied

if TYPE_CHECKING:
    from provision.emulator.world import World

ATTACH_AS = "iap"
SERVICE = "iap.googleapis.com"
KIND_RE = re.compile(r"^cloud_run-([a-z]+(?:-[a-z]+)+[0-9]{1,2})$")
ISSUER = "https://cloud.google.com/iap"
ASSERTION_LIFETIME_S = 600   # IAP's assertions are short-lived; 10 minutes is a choice


class Backend:
    def __init__(self, world: "World"):
        self.world = world
        self.docs = world.docs
        self._lock = threading.Lock()
        self._signing: Any = None
        data_dir = world.options.data_dir
        self._key_file = Path(data_dir) / "iap-signing-key.pem" if data_dir else None

    def signing_key(self) -> tuple[Any, str]:
        """IAP's ES256 key (kept in --data-dir when there is one) and its kid."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        with self._lock:
            if self._signing is None:
                if self._key_file is not None and self._key_file.exists():
                    key = serialization.load_pem_private_key(self._key_file.read_bytes(), password=None)
                else:
                    key = ec.generate_private_key(ec.SECP256R1())
                    if self._key_file is not None:
                        self._key_file.write_bytes(key.private_bytes(
                            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()))
                        self._key_file.chmod(0o600)
                pub = key.public_key().public_bytes(serialization.Encoding.DER,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo)
                self._signing = (key, hashlib.sha256(pub).hexdigest()[:6])
            return self._signing

    def jwks(self) -> dict:
        """The public keys as IAP publishes them (kty EC, crv P-256, alg ES256, kid, use sig)."""
        import jwt

        key, kid = self.signing_key()
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
        return {"keys": [{**jwk, "alg": "ES256", "kid": kid, "use": "sig"}]}

    def assertion(self, email: str, audience: str) -> str:
        """A signed `x-goog-iap-jwt-assertion` for a user, for the service `audience`."""
        import jwt

        key, kid = self.signing_key()
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": audience, "iat": now, "exp": now + ASSERTION_LIFETIME_S,
                  "sub": "accounts.google.com:" + str(int(hashlib.sha256(email.encode()).hexdigest()[:15], 16)),
                  "email": email, "hd": email.rsplit("@", 1)[-1]}
        return jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid})

    def reset(self) -> None:
        """Nothing is seeded."""

    def resolve(self, project: str, kind: str, service: str, permission: str) -> tuple[dict, str, str]:
        """(project record, canonical IAP resource name, Cloud Run service name); raises Google's errors."""
        asked = f"projects/{project}/iap_web/{kind}/services/{service}"
        record = self.world.crm.lookup(project)
        if record is None or record.get("state", "ACTIVE") != "ACTIVE":
            raise permission_denied(f"Permission '{permission}' denied on resource '{asked}' (or it may not exist).")
        self.world.serviceusage.require_enabled(record, SERVICE)
        match = KIND_RE.fullmatch(kind)
        if not match:
            raise invalid_argument(f"Invalid IAP resource '{asked}': this emulator serves cloud_run-REGION only.")
        run_name = f"projects/{record['projectId']}/locations/{match.group(1)}/services/{service}"
        if self.world.run.get(run_name) is None:
            raise not_found(f"Cloud Run service '{run_name}' was not found.")
        return record, f"projects/{record['number']}/iap_web/{kind}/services/{service}", run_name

    def policy(self, name: str) -> dict:
        return self.docs.get("policy", name) or iam.empty_policy()

    def set_policy(self, name: str, policy: dict) -> dict:
        with self.world.db.transaction():
            updated = iam.replace(self.policy(name), policy)
            self.docs.put("policy", name, updated)
        return iam.view(updated, 3)
