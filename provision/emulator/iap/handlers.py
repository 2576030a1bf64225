"""IAP v1 routes: getIamPolicy, setIamPolicy and testIamPermissions on Cloud Run `iap_web` resources;
IAP's public keys at `www.gstatic.com/iap/verify/public_key-jwk`; `POST /_emulator/iap/assertion`.

Permissions: `iap.webServices.getIamPolicy` / `setIamPolicy` (a choice: Google's permission names for
Cloud Run IAP resources were not read), checked against the resource's own policy, the Cloud Run
service's and the project's.
"""
from __future__ import annotations

from provision.emulator import iam
from provision.emulator.errors import invalid_argument
from provision.emulator.http import Ctx, Router

router = Router()
API = "iap"
DOC = "iap.v1"
RES = "/v1/projects/<id:project>/iap_web/<id:kind>/services/<id:service>"
PUBLIC = {"api": API, "url_credential": True}   # IAP's public keys need no token


def _resolve(ctx: Ctx, permission: str, project: str, kind: str, service: str) -> str:
    backend = ctx.world.iap
    record, name, run_name = backend.resolve(project, kind, service, permission)
    policies = [backend.policy(name), ctx.world.run.policy(run_name), *ctx.world.crm.policy_chain(record["projectId"])]
    ctx.require(permission, name, policies)
    return name


@router.route("POST", RES + ":getIamPolicy", api=API, discovery=(DOC, "iap.getIamPolicy"))
def get_policy(ctx: Ctx, project: str, kind: str, service: str):
    name = _resolve(ctx, "iap.webServices.getIamPolicy", project, kind, service)
    options = ctx.json().get("options") or {}
    return iam.view(ctx.world.iap.policy(name), options.get("requestedPolicyVersion"))


@router.route("POST", RES + ":setIamPolicy", api=API, discovery=(DOC, "iap.setIamPolicy"))
def set_policy(ctx: Ctx, project: str, kind: str, service: str):
    name = _resolve(ctx, "iap.webServices.setIamPolicy", project, kind, service)
    body = ctx.json()
    if not isinstance(body.get("policy"), dict):
        raise invalid_argument("Request contains an invalid argument.", [("policy", "policy must be set")])
    return ctx.world.iap.set_policy(name, body["policy"])


@router.route("POST", RES + ":testIamPermissions", api=API, discovery=(DOC, "iap.testIamPermissions"))
def test_permissions(ctx: Ctx, project: str, kind: str, service: str):
    backend = ctx.world.iap
    record, name, run_name = backend.resolve(project, kind, service, "iap.webServices.getIamPolicy")
    policies = [backend.policy(name), ctx.world.run.policy(run_name), *ctx.world.crm.policy_chain(record["projectId"])]
    held = [p for p in (ctx.json().get("permissions") or []) if ctx.allows(p, policies)]
    return {"permissions": held} if held else {}


@router.route("GET", "/iap/verify/public_key-jwk", **PUBLIC)
def public_keys(ctx: Ctx):
    """IAP's public keys, at www.gstatic.com's path."""
    return ctx.world.iap.jwks()


@router.route("POST", "/_emulator/iap/assertion", api="emulator")
def mint_assertion(ctx: Ctx):
    """What IAP adds to a request it lets through: `{"email", "audience"}` -> `{"assertion"}`."""
    body = ctx.json(validate=False)
    email, audience = (body or {}).get("email"), (body or {}).get("audience")
    if not isinstance(email, str) or "@" not in email or not isinstance(audience, str) or not audience:
        raise invalid_argument('Body must be {"email": "user@domain", "audience": "/projects/N/locations/R/services/S"}.')
    return {"assertion": ctx.world.iap.assertion(email, audience)}
