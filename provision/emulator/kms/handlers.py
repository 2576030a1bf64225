"""Cloud KMS v1 routes: key rings (create, get, list), crypto keys (create, get, list) and their IAM
policies (getIamPolicy is a GET in KMS, setIamPolicy a POST). A caller without the permission, on a
resource that may or may not exist, gets 403 as on Google; under no --enforce-iam every caller may.
Permissions as Google names them: cloudkms.keyRings.{create,get,list,getIamPolicy,setIamPolicy},
cloudkms.cryptoKeys.{create,get,list,getIamPolicy,setIamPolicy}.
"""
from __future__ import annotations

from provision.emulator.errors import invalid_argument, permission_denied
from provision.emulator.http import Ctx, Router

router = Router()
API = "cloudkms"
V1 = "cloudkms.v1"
LOC = "/v1/projects/<id:project>/locations/<id:location>"
RING = LOC + "/keyRings/<id:ring>"
KEY = RING + "/cryptoKeys/<id:key>"


def _allowed(ctx: Ctx, permission: str, name: str) -> str:
    """`name` with the project as its ID, once the caller may act on it (403 otherwise)."""
    kms = ctx.world.kms
    project = name.split("/")[1]
    if ctx.world.crm.lookup(project) is None or not ctx.allows(permission, kms.policies(name)):
        raise permission_denied(f"Permission '{permission}' denied on resource '{name}' (or it may not exist).")
    return kms.canonical(name)


def _version(ctx: Ctx) -> int | None:
    raw = ctx.query.get("options.requestedPolicyVersion")
    try:
        return int(raw) if raw not in (None, "") else None
    except ValueError:
        raise invalid_argument(f"Invalid value for options.requestedPolicyVersion: {raw!r}") from None


@router.route("POST", LOC + "/keyRings", api=API, discovery=(V1, "cloudkms.projects.locations.keyRings.create"))
def create_ring(ctx: Ctx, project: str, location: str):
    parent = _allowed(ctx, "cloudkms.keyRings.create", f"projects/{project}/locations/{location}")
    ctx.json()
    return ctx.world.kms.create_ring(parent, ctx.query.get("keyRingId"))


@router.route("GET", LOC + "/keyRings", api=API, discovery=(V1, "cloudkms.projects.locations.keyRings.list"))
def list_rings(ctx: Ctx, project: str, location: str):
    parent = _allowed(ctx, "cloudkms.keyRings.list", f"projects/{project}/locations/{location}")
    rings = ctx.world.kms.rings(parent)
    return {"keyRings": rings, "totalSize": len(rings)} if rings else {}


@router.route("GET", RING, api=API, discovery=(V1, "cloudkms.projects.locations.keyRings.get"))
def get_ring(ctx: Ctx, project: str, location: str, ring: str):
    return ctx.world.kms.ring(_allowed(ctx, "cloudkms.keyRings.get", f"projects/{project}/locations/{location}/keyRings/{ring}"))


@router.route("POST", RING + "/cryptoKeys", api=API,
              discovery=(V1, "cloudkms.projects.locations.keyRings.cryptoKeys.create"))
def create_key(ctx: Ctx, project: str, location: str, ring: str):
    name = _allowed(ctx, "cloudkms.cryptoKeys.create", f"projects/{project}/locations/{location}/keyRings/{ring}")
    return ctx.world.kms.create_key(name, ctx.query.get("cryptoKeyId"), ctx.json())


@router.route("GET", RING + "/cryptoKeys", api=API,
              discovery=(V1, "cloudkms.projects.locations.keyRings.cryptoKeys.list"))
def list_keys(ctx: Ctx, project: str, location: str, ring: str):
    name = _allowed(ctx, "cloudkms.cryptoKeys.list", f"projects/{project}/locations/{location}/keyRings/{ring}")
    keys = ctx.world.kms.keys(name)
    return {"cryptoKeys": keys, "totalSize": len(keys)} if keys else {}


@router.route("GET", KEY, api=API, discovery=(V1, "cloudkms.projects.locations.keyRings.cryptoKeys.get"))
def get_key(ctx: Ctx, project: str, location: str, ring: str, key: str):
    name = f"projects/{project}/locations/{location}/keyRings/{ring}/cryptoKeys/{key}"
    return ctx.world.kms.get_key(_allowed(ctx, "cloudkms.cryptoKeys.get", name))


def _iam_routes(kind: str, rule: str, method: str) -> None:
    """getIamPolicy / testIamPermissions / setIamPolicy of a key ring or a key (same shapes, their own
    permissions)."""
    @router.route("GET", rule + ":getIamPolicy", api=API, discovery=(V1, f"{method}.getIamPolicy"))
    def get_policy(ctx: Ctx, **parts):
        name = _name(parts)
        return ctx.world.kms.get_policy(_allowed(ctx, f"cloudkms.{kind}.getIamPolicy", name), _version(ctx))

    @router.route("POST", rule + ":testIamPermissions", api=API, discovery=(V1, f"{method}.testIamPermissions"))
    def test_permissions(ctx: Ctx, **parts):
        name = _name(parts)
        if ctx.world.crm.lookup(name.split("/")[1]) is None:
            raise permission_denied(f"Permission denied on resource '{name}' (or it may not exist).")
        asked = list(ctx.json().get("permissions") or [])
        policies = ctx.world.kms.policies(name)
        held = [p for p in asked if ctx.allows(p, policies)]
        return {"permissions": held} if held else {}

    @router.route("POST", rule + ":setIamPolicy", api=API, discovery=(V1, f"{method}.setIamPolicy"))
    def set_policy(ctx: Ctx, **parts):
        name = _allowed(ctx, f"cloudkms.{kind}.setIamPolicy", _name(parts))
        body = ctx.json()
        if not isinstance(body.get("policy"), dict):
            raise invalid_argument("Request contains an invalid argument.", [("policy", "policy must be set")])
        return ctx.world.kms.set_policy(name, body["policy"])


def _name(parts: dict) -> str:
    name = f"projects/{parts['project']}/locations/{parts['location']}/keyRings/{parts['ring']}"
    return name + (f"/cryptoKeys/{parts['key']}" if "key" in parts else "")


_iam_routes("keyRings", RING, "cloudkms.projects.locations.keyRings")
_iam_routes("cryptoKeys", KEY, "cloudkms.projects.locations.keyRings.cryptoKeys")
