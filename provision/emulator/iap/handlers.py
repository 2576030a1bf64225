"""IAP routes: IAM on `iap_web` resources (iap.v1.json `iap.getIamPolicy|setIamPolicy|
testIamPermissions`, `POST /v1/{+resource}:verb`), IAP's sign-in redirect target
(`iap.googleapis.com/v1/oauth/clientIds/C:handleRedirect`), and IAP's public keys at Google's
paths (`www.gstatic.com/iap/verify/public_key-jwk` and `/public_key`).

IAM calls need iap.googleapis.com enabled (SERVICE_DISABLED otherwise) and, under --enforce-iam,
`iap.web.*` permissions on the resource (roles/iap.admin; the project's owner). The project in
the name may be its ID or number; the resource is kept under the number, as Google names it.
Only Cloud Run resources are modelled: another type (`compute`, `appengine-...`) is a 400, and a
service's resource needs the Cloud Run service to exist (404 otherwise; our choice).
"""
from __future__ import annotations

from werkzeug.wrappers import Response

from provision.emulator import iam
from provision.emulator.errors import ApiError, invalid_argument, not_found, permission_denied
from provision.emulator.http import Ctx, Router
from provision.emulator.iap.state import SERVICE

router = Router()
API = "iap"
DOC = "iap.v1"
VERBS = {"getIamPolicy": "iap.getIamPolicy", "setIamPolicy": "iap.setIamPolicy",
         "testIamPermissions": "iap.testIamPermissions"}


def _resource(ctx: Ctx, project: str, kind: str | None, service: str | None) -> tuple[str, list[dict]]:
    """(resource name, policy chain) after the project, API and resource checks."""
    record = ctx.world.crm.lookup(project)
    if record is None:
        raise permission_denied()
    ctx.world.serviceusage.require_enabled(record, SERVICE)
    region = None
    if kind is not None:
        if not kind.startswith("cloud_run-"):
            raise invalid_argument(f"Resource type '{kind}' is not supported by this emulator (only cloud_run-REGION).")
        region = kind[len("cloud_run-"):]
    if service is not None:
        key = f"{record['projectId']}/{region}/{service}"
        if ctx.world.docs.get("run-service", key) is None:
            raise not_found(f"The Cloud Run service '{service}' in region '{region}' does not exist.")
    base = f"projects/{record['number']}/iap_web"
    name = base + (f"/{kind}" if kind else "") + (f"/services/{service}" if service else "")
    iap_ = ctx.world.iap
    chain = [iap_.policy(r) for r in dict.fromkeys([name, f"{base}/{kind}" if kind else base, base])]
    return name, [*chain, *ctx.world.crm.policy_chain(record["projectId"])]


def _iam(ctx: Ctx, verb: str, project: str, kind: str | None = None, service: str | None = None):
    name, chain = _resource(ctx, project, kind, service)
    body = ctx.json()
    level = "webServices" if service else ("webTypes" if kind else "web")
    if verb == "testIamPermissions":
        asked = [str(p) for p in body.get("permissions") or []]
        held = [p for p in asked if ctx.allows(p, chain)]
        return {"permissions": held} if held else {}
    permission = f"iap.{level}.{verb}"
    if not ctx.allows(permission, chain):
        raise ApiError("PERMISSION_DENIED", f"The caller does not have permission ({permission} on {name}).")
    if verb == "getIamPolicy":
        requested = (body.get("options") or {}).get("requestedPolicyVersion")
        return iam.view(ctx.world.iap.policy(name), requested)
    return iam.view(ctx.world.iap.set_policy(name, body.get("policy") or {}), 3)


def _register(path: str, **names) -> None:
    for verb, method_id in VERBS.items():
        def handler(ctx: Ctx, _verb=verb, **args):
            return _iam(ctx, _verb, **args)

        handler.__name__ = handler.__qualname__ = f"{verb}_{path.count('/')}"
        router.route("POST", f"{path}:{verb}", api=API, discovery=(DOC, method_id))(handler)


_register("/v1/projects/<id:project>/iap_web")
_register("/v1/projects/<id:project>/iap_web/<id:kind>")
_register("/v1/projects/<id:project>/iap_web/<id:kind>/services/<id:service>")


@router.route("GET", "/v1/oauth/clientIds/<id:client>:handleRedirect", api=API, url_credential=True)
def handle_redirect(ctx: Ctx, client: str):
    """Where Google's sign-in sends the browser back to IAP; on to the service, which sets the cookie."""
    target = ctx.world.iap.handle_redirect(ctx.query.get("code", ""), ctx.query.get("state", ""))
    if target is None:
        return Response("<!doctype html><title>Error</title><p>IAP could not complete the sign-in: the sign-in "
                        "request is unknown or was already used. Open the application again.", status=400,
                        content_type="text/html; charset=utf-8")
    return Response(b"", status=302, headers={"Location": target, "Cache-Control": "no-store"})


@router.route("GET", "/iap/verify/public_key-jwk", api=API, url_credential=True)
def public_key_jwk(ctx: Ctx):
    return ctx.world.iap.jwks()


@router.route("GET", "/iap/verify/public_key", api=API, url_credential=True)
def public_key(ctx: Ctx):
    return ctx.world.iap.public_pem()


@router.route("POST", "/_emulator/iap/assertion", api="emulator")
def mint_assertion(ctx: Ctx):
    """What IAP adds to a request it lets through, for tests of a service without the sign-in walk:
    `{"email", "audience"}` -> `{"assertion"}` (a control endpoint: the custom header is required)."""
    body = ctx.json(validate=False)
    email, audience = (body or {}).get("email"), (body or {}).get("audience")
    if not isinstance(email, str) or "@" not in email or not isinstance(audience, str) or not audience:
        raise invalid_argument('Body must be {"email": "user@domain", "audience": "/projects/N/locations/R/services/S"}.')
    return {"assertion": ctx.world.iap.assertion(email, audience)}
