"""The CMEK key of `dataset.kms_key`, checked before any write: in the dataset's location (Healthcare
accepts only a key "in the same location as this Dataset", healthcare.v1 discovery), existing, readable
by the caller (cloudkms.cryptoKeys.get, in roles/cloudkms.viewer), a symmetric ENCRYPT_DECRYPT key
whose primary version is enabled, and on which the caller may grant (testIamPermissions:
cloudkms.cryptoKeys.getIamPolicy and setIamPolicy), since apply grants the Healthcare service agent its
use of the key (resources/kms_key_iam.py) before it creates the dataset."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from provision.gcp.context import Ctx
from provision.gcp.errors import is_service_disabled, is_status

if TYPE_CHECKING:  # for annotations only: no import at run time
    from provision.blueprint.models import Blueprint


KeyProblem = Literal["absent", "forbidden", "disabled"]   # what read() says instead of a key


def read(ctx: Ctx, name: str) -> dict[str, Any] | KeyProblem:
    """The CryptoKey, or "absent" / "forbidden" / "disabled" (the KMS API is off in the key's project)."""
    keys = ctx.target.kms().projects().locations().keyRings().cryptoKeys()

    def get() -> dict[str, Any] | KeyProblem:
        try:
            key: dict[str, Any] = keys.get(name=name).execute(num_retries=0)
            return key
        except Exception as exc:  # noqa: BLE001
            if is_status(exc, 404):
                return "absent"
            if is_status(exc, 403) and is_service_disabled(exc):
                return "disabled"
            if is_status(exc, 403):
                return "forbidden"
            raise

    return ctx.call(get)


def problems(ctx: Ctx, bp: Blueprint, live: Any) -> tuple[list[str], list[str]]:
    """(problems, notes) for the blueprint's CMEK key; nothing when it names none."""
    name = getattr(bp.dataset, "kms_key", None)
    if not name:
        return [], []
    at = f"{bp.where('dataset', 'kms_key')}: dataset.kms_key"
    parts = name.split("/")
    location = bp.dataset.location
    if parts[3] != location:
        parts[3] = location
        return [f"{at}: the key is in {name.split('/')[3]}, the dataset in {location}; Cloud Healthcare uses only a "
                f"key in the dataset's location: create one there, e.g. {'/'.join(parts)}"], []
    key = read(ctx, name)
    if key == "absent":
        return [f"{at}: {name} does not exist; create it (gcloud kms keys create {parts[-1]} --keyring "
                f"{parts[5]} --location {location} --purpose encryption --project {parts[1]}) or name another"], []
    if key == "disabled":
        return [f"{at}: the Cloud KMS API (cloudkms.googleapis.com) is not enabled in project {parts[1]}, which holds "
                "the key; enable it there"], []
    if key == "forbidden":
        return [f"{at}: you cannot read {name} (it may not exist); ask for Cloud KMS Viewer (roles/cloudkms.viewer) "
                "on it, or its key ring"], []
    if key.get("purpose") != "ENCRYPT_DECRYPT":
        return [f"{at}: {name} is a {key.get('purpose') or 'key of unknown purpose'} key; CMEK needs a symmetric "
                "ENCRYPT_DECRYPT key"], []
    state = (key.get("primary") or {}).get("state")
    if state != "ENABLED":
        return [f"{at}: the primary version of {name} is {state or 'missing'}; enable it (a disabled key disables "
                "the dataset)"], []
    missing = [p for p in GRANT_PERMISSIONS if p not in held(ctx, name)]
    if missing:
        return [f"{at}: you may not grant the Healthcare service agent its use of {name} ({', '.join(missing)}); ask "
                "for Cloud KMS Admin (roles/cloudkms.admin) on the key, or have its owner grant the agent "
                "roles/cloudkms.cryptoKeyEncrypterDecrypter"], []
    return [], []


GRANT_PERMISSIONS = ("cloudkms.cryptoKeys.getIamPolicy", "cloudkms.cryptoKeys.setIamPolicy")


def held(ctx: Ctx, name: str) -> set[str]:
    """Which of GRANT_PERMISSIONS the caller holds on the key (testIamPermissions)."""
    keys = ctx.target.kms().projects().locations().keyRings().cryptoKeys()
    req = keys.testIamPermissions(resource=name, body={"permissions": list(GRANT_PERMISSIONS)})
    return set(ctx.execute(req).get("permissions") or [])
