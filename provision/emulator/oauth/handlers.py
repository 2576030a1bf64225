"""Routes of Google's sign-in, at Google's own paths, on the emulator's one port:

| Google host                      | path                                  | what                         |
|----------------------------------|---------------------------------------|------------------------------|
| accounts.google.com              | /.well-known/openid-configuration     | OpenID discovery             |
| accounts.google.com              | /o/oauth2/v2/auth, /o/oauth2/auth     | authorization (auto-consent) |
| oauth2.googleapis.com            | /token (also /o/oauth2/token)         | refresh, JWT-bearer, code    |
| oauth2.googleapis.com            | /revoke (also /o/oauth2/revoke)       | revocation                   |
| www.googleapis.com               | /oauth2/v3/certs                      | JWKS of the ID-token key     |
| openidconnect.googleapis.com     | /v1/userinfo (also /oauth2/v3/userinfo)| the signed-in user          |
| www.googleapis.com               | /oauth2/v3/tokeninfo                  | what a token is              |
| iamcredentials.googleapis.com    | /v1/projects/-/serviceAccounts/E:generateAccessToken | impersonation |

A browser reaches them for Google's hosts by request routing; google-auth reaches /token through
the `token_uri` of its credentials file and generateAccessToken through the impersonated
credentials' IAM endpoint. The endpoints need no token (they are how one gets a token), so under
--enforce-iam they are served like the resumable-upload session URIs (`url_credential`).

The authorization endpoint signs in the browser's account (`PUT /_emulator/oauth/account`)
without a page, after checking what Google checks before it shows any page: the client exists
(else "Error 401: invalid_client"), the redirect URI is one registered for it ("Error 400:
redirect_uri_mismatch"), the scopes are known ("Error 400: invalid_scope"), a `nonce` comes with
an implicit `id_token` ("Error 400: invalid_request"). Those are HTML error pages, as Google
shows them (no redirect). `prompt=none` without a signed-in account redirects with
`error=login_required`. Success redirects to the redirect URI: tokens in the fragment for
`token`/`id_token` response types, `?code=` for `code` (PKCE S256/plain checked at /token).
At the local door (`accounts.google.com.localhost`, provision/emulator/door.py) a person's browser
gets an account chooser instead of the auto-consent (`_chooser`).
"""
from __future__ import annotations

import base64
import hashlib
import html
import secrets
import time
from typing import Any, TypedDict
from urllib.parse import urlencode, urlsplit

from werkzeug.wrappers import Response

from provision.emulator import door, iam
from provision.emulator.errors import ApiError, error_info, invalid_argument
from provision.emulator.http import Ctx, Router, json_response
from provision.emulator.oauth.state import (
    GCLOUD_CLIENT_ID,
    GCLOUD_CLIENT_PROJECT,
    GCLOUD_CLIENT_SECRET,
    KNOWN_SCOPES,
    MAX_SA_LIFETIME_S,
    SCOPE_ALIASES,
    digest,
    expand_scopes,
    profile_claims,
    subject,
)

router = Router()
API = "oauth2"
IAMCREDENTIALS = "iamcredentials"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


class _RouteOptions(TypedDict):
    """The keywords Router.route takes that every token endpoint shares."""

    api: str
    url_credential: bool


PUBLIC: _RouteOptions = {"api": API, "url_credential": True}  # no token needed to get a token


def _route(methods, paths: list[str] | str, **kw):
    """`router.route` for several paths (Google's current path and its older aliases)."""
    paths = [paths] if isinstance(paths, str) else paths

    def wrap(fn):
        for path in paths:
            router.route(methods, path, **kw)(fn)
        return fn

    return wrap


# ---------------------------------------------------------------------- helpers

def _oauth_error(error: str, description: str, status: int = 400) -> Response:
    """The token/revoke endpoints' error body (RFC 6749 §5.2, as Google answers it)."""
    return json_response({"error": error, "error_description": description}, status)


def _error_page(status: int, error: str, text: str) -> Response:
    body = (f"<!doctype html><html lang=en><meta charset=utf-8><title>Error {status} ({html.escape(error)})</title>"
            f"<h1>Access blocked: Authorization Error</h1><p id=error-code>Error {status}: {html.escape(error)}</p>"
            f"<p id=error-text>{html.escape(text)}</p></html>")
    return Response(body, status=status, content_type="text/html; charset=utf-8")


def _form(ctx: Ctx) -> dict:
    """Form fields of a POST (x-www-form-urlencoded) merged over the query string."""
    out = {k: v for k, v in ctx.request.args.items()}
    out.update({k: v for k, v in ctx.request.form.items()})
    return out


def _basic_client(ctx: Ctx) -> tuple[str | None, str | None]:
    auth = ctx.request.authorization
    if auth is not None and auth.type == "basic":
        return auth.username, auth.password
    return None, None


def _token_answer(ctx: Ctx, *, member: str, client_id: str, client_project: str, scopes: list[str],
                  grant: str | None = None, nonce: str | None = None, refresh_token: str | None = None) -> dict:
    oauth = ctx.world.oauth
    token, info = oauth.issue(member=member, client_id=client_id, client_project=client_project, scopes=scopes,
                              grant=grant)
    answer = {"access_token": token, "expires_in": int(info["exp"] - info["iat"]),
              "scope": " ".join(info["scopes"]), "token_type": "Bearer"}
    if "openid" in scopes and member.startswith("user:"):
        answer["id_token"] = oauth.id_token(email=member.split(":", 1)[1], client_id=client_id, nonce=nonce,
                                            access_token=token, scopes=scopes)
    if refresh_token:
        answer["refresh_token"] = refresh_token
    return answer


# ---------------------------------------------------------------------- discovery and keys

@router.route("GET", "/.well-known/openid-configuration", **PUBLIC)
def openid_configuration(ctx: Ctx):
    return ctx.world.oauth.discovery()


@router.route("GET", "/oauth2/v3/certs", **PUBLIC)
def certs(ctx: Ctx):
    return ctx.world.oauth.jwks()


# ---------------------------------------------------------------------- authorization

@_route("GET", ["/o/oauth2/v2/auth", "/o/oauth2/auth"], **PUBLIC)
def authorize(ctx: Ctx):
    oauth = ctx.world.oauth
    q = ctx.request.args
    client_id = q.get("client_id", "")
    client = oauth.client(client_id) if client_id else None
    if client is None:
        return _error_page(401, "invalid_client", "The OAuth client was not found." if client_id
                           else "Missing required parameter: client_id")
    redirect_uri = q.get("redirect_uri", "")
    if not redirect_uri:
        return _error_page(400, "invalid_request", "Missing required parameter: redirect_uri")
    if redirect_uri not in client["redirect_uris"]:
        return _error_page(400, "redirect_uri_mismatch",
                           f"You can't sign in to this app because it doesn't comply with Google's OAuth 2.0 policy. "
                           f"If you're the app developer, register the redirect URI in the Google Cloud Console. "
                           f"Request details: redirect_uri={redirect_uri}")
    scope = q.get("scope", "")
    if not scope.strip():
        return _error_page(400, "invalid_request", "Missing required parameter: scope")
    bad = [s for s in expand_scopes(scope) if s not in KNOWN_SCOPES]
    if bad:
        return _error_page(400, "invalid_scope", f"Some requested scopes were invalid. {{invalid={bad}}}")
    response_type = set(q.get("response_type", "").split())
    if not response_type or not response_type <= {"code", "token", "id_token"}:
        return _redirect(redirect_uri, {"error": "unsupported_response_type", "state": q.get("state")}, fragment=False)
    implicit = bool(response_type & {"token", "id_token"})
    if "id_token" in response_type and implicit and not q.get("nonce"):
        return _error_page(400, "invalid_request", "Missing required parameter: nonce")
    hinted = q.get("login_hint") if "@" in q.get("login_hint", "") else None
    if hinted is None and q.get("prompt") != "none" and ctx.request.environ.get(door.DOOR_KEY):
        return _chooser(q, oauth.account())
    email = hinted or oauth.account()
    if email is None:
        if q.get("prompt") == "none":
            return _redirect(redirect_uri, {"error": "login_required", "state": q.get("state")}, fragment=implicit)
        return _error_page(401, "login_required", "No Google account is signed in to the emulator's browser "
                           "session (PUT /_emulator/oauth/account).")
    member = f"user:{email}"
    scopes = scope.split()
    params: dict = {"state": q.get("state")}
    grant = secrets.token_hex(8)
    if "code" in response_type:
        code = "4/emu-" + secrets.token_urlsafe(32)
        ctx.world.docs.put("oauth-code", digest(code), {
            "member": member, "client_id": client_id, "client_project": client["project"], "scopes": scopes,
            "redirect_uri": redirect_uri, "nonce": q.get("nonce"), "challenge": q.get("code_challenge"),
            "method": q.get("code_challenge_method") or "plain", "exp": ctx.world.clock() + 600, "grant": grant})
        params["code"] = code
    if "token" in response_type:
        token, info = oauth.issue(member=member, client_id=client_id, client_project=client["project"],
                                  scopes=scopes, grant=grant)
        params.update(access_token=token, token_type="Bearer", expires_in=int(info["exp"] - info["iat"]))
    else:
        token = None
    if "id_token" in response_type:
        params["id_token"] = oauth.id_token(email=email, client_id=client_id, nonce=q.get("nonce"),
                                            access_token=token, scopes=scopes)
    params.update(scope=" ".join(expand_scopes(scopes)), authuser="0", prompt=q.get("prompt") or "consent")
    return _redirect(redirect_uri, params, fragment=implicit)


def _chooser(query, signed_in: str | None) -> Response:
    """Google's "Choose an account" page, at the local door (a person's own browser, emulator/door.py):
    the browser's account (PUT /_emulator/oauth/account) or any other address, no password. Each
    choice asks this endpoint again with `login_hint`, which signs that account in. Our choice:
    Google shows the chooser when it cannot tell the account; here a person always picks, so any
    account (a member or not) can be tried; programmatic flows keep the auto-consent above."""
    kept = "".join(f'<input type=hidden name="{html.escape(k)}" value="{html.escape(v)}">'
                   for k, v in query.items(multi=True) if k != "login_hint")
    current = (f'<form method=get><h2>Choose an account</h2>{kept}<button id=account name=login_hint '
               f'value="{html.escape(signed_in)}">{html.escape(signed_in)}</button></form>') if signed_in else ""
    body = ("<!doctype html><html lang=en><meta charset=utf-8><title>Sign in - Google Accounts (emulated)</title>"
            "<h1>Sign in with Google</h1><p>The provision emulator's Google sign-in: no password is asked.</p>"
            f"{current}<form method=get><h2>Use another account</h2>{kept}<label>Email "
            "<input id=identifier type=email name=login_hint required autocomplete=off></label> "
            "<button id=next>Next</button></form></html>")
    return Response(body, status=200, content_type="text/html; charset=utf-8", headers={"Cache-Control": "no-store"})


def _redirect(uri: str, params: dict, *, fragment: bool) -> Response:
    # No Cross-Origin-Resource-Policy: no evidence shows Google's authorization redirect carrying one (its
    # accounts pages refuse framing: X-Frame-Options, angular-oauth2-oidc#364). A viewer page under COEP
    # therefore cannot renew in a hidden iframe (provision/hosted/middleware.py).
    query = urlencode({k: v for k, v in params.items() if v is not None})
    sep = "#" if fragment else ("&" if "?" in uri else "?")
    return Response(b"", status=302, headers={"Location": f"{uri}{sep}{query}", "Cache-Control": "no-store"})


# ---------------------------------------------------------------------- token endpoint

@_route("POST", ["/token", "/o/oauth2/token"], **PUBLIC)
def token(ctx: Ctx):
    oauth = ctx.world.oauth
    form = _form(ctx)
    grant_type = form.get("grant_type", "")
    if grant_type == JWT_BEARER:
        claims = oauth.verify_service_account_jwt(form.get("assertion", ""), audience_path="/token")
        if claims is None or claims.get("invalid"):
            return _oauth_error("invalid_grant", "Invalid JWT Signature.")
        if claims.get("exp", 0) < ctx.world.clock():
            return _oauth_error("invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes) and "
                                                 "in a reasonable timeframe. Check your iat and exp values in the "
                                                 "JWT claim.")
        scopes = str(claims.get("scope") or "").split()
        if not scopes:
            return _oauth_error("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
        email = claims["email"]
        return _token_answer(ctx, member=f"serviceAccount:{email}", client_id=subject(email),
                             client_project=email.split("@", 1)[1].split(".", 1)[0], scopes=scopes)
    basic_id, basic_secret = _basic_client(ctx)
    client_id = form.get("client_id") or basic_id or ""
    client_secret = form.get("client_secret") or basic_secret
    client = oauth.client(client_id) if client_id else None
    if client is None:
        return _oauth_error("invalid_client", "The OAuth client was not found.", 401)
    if client.get("client_secret") and client_secret != client["client_secret"]:
        return _oauth_error("invalid_client", "Unauthorized", 401)
    if grant_type == "refresh_token":
        record = oauth.refresh_record(form.get("refresh_token", ""))
        if record is None or record["client_id"] != client_id:
            return _oauth_error("invalid_grant", "Token has been expired or revoked.")
        scopes = form.get("scope", "").split() or record["scopes"]
        if not set(expand_scopes(scopes)) <= set(record["scopes"]):
            return _oauth_error("invalid_scope", "Bad Request")
        return _token_answer(ctx, member=record["member"], client_id=client_id, client_project=record["client_project"],
                             scopes=scopes, grant=record["grant"])
    if grant_type == "authorization_code":
        key = digest(form.get("code", ""))
        code = ctx.world.docs.get("oauth-code", key)
        if code is None or code["exp"] < ctx.world.clock() or code["client_id"] != client_id:
            return _oauth_error("invalid_grant", "Malformed auth code.")
        ctx.world.docs.delete("oauth-code", key)  # a code is good once
        if form.get("redirect_uri") != code["redirect_uri"]:
            return _oauth_error("redirect_uri_mismatch", "Bad Request")
        if code.get("challenge"):
            verifier = form.get("code_verifier", "")
            made = (base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
                    if code["method"] == "S256" else verifier)
            if made != code["challenge"]:
                return _oauth_error("invalid_grant", "Invalid code verifier.")
        return _token_answer(ctx, member=code["member"], client_id=client_id, client_project=code["client_project"],
                             scopes=code["scopes"], grant=code["grant"], nonce=code.get("nonce"))
    return _oauth_error("unsupported_grant_type", f"Invalid grant_type: {grant_type}")


@_route(["GET", "POST"], ["/revoke", "/o/oauth2/revoke"], **PUBLIC)
def revoke(ctx: Ctx):
    value = _form(ctx).get("token", "")
    if not value or not ctx.world.oauth.revoke(value):
        return _oauth_error("invalid_token", "Token expired or revoked")
    return {}


# ---------------------------------------------------------------------- who is signed in

def _bearer_info(ctx: Ctx) -> dict | None:
    info = ctx.world.oauth.bearer(ctx.request.headers.get("Authorization", ""))
    return info if info and info.get("member", "").startswith("user:") else None


@_route(["GET", "POST"], ["/v1/userinfo", "/oauth2/v3/userinfo"], **PUBLIC)
def userinfo(ctx: Ctx):
    info = _bearer_info(ctx)
    if info is None:
        return json_response({"error": "invalid_request", "error_description": "Invalid Credentials"}, 401,
                             headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'})
    email = info["member"].split(":", 1)[1]
    out: dict[str, Any] = {"sub": subject(email)}
    if SCOPE_ALIASES["profile"] in info["scopes"]:
        out.update(profile_claims(email))
    if SCOPE_ALIASES["email"] in info["scopes"]:
        out.update(email=email, email_verified=True)
    return out


@router.route(["GET", "POST"], "/oauth2/v3/tokeninfo", **PUBLIC)
def tokeninfo(ctx: Ctx):
    value = _form(ctx).get("access_token", "")
    info = ctx.world.oauth.token_record(value) if value else None
    if info is None or not ctx.world.oauth.live(info):
        return _oauth_error("invalid_token", "Invalid Value")
    member = info["member"]
    out = {"azp": info["client_id"], "aud": info["client_id"], "scope": " ".join(info["scopes"]),
           "exp": str(int(info["exp"])), "expires_in": str(int(info["exp"] - ctx.world.clock())),
           "access_type": "online"}
    if member.startswith("user:"):
        out.update(sub=subject(member.split(":", 1)[1]), email=member.split(":", 1)[1], email_verified="true")
    else:
        out["email"] = member.split(":", 1)[1]
    return out


# ---------------------------------------------------------------------- IAM Credentials

@router.route("POST", "/v1/projects/<id:project>/serviceAccounts/<id:account>:generateAccessToken",
              api=IAMCREDENTIALS, discovery=("iamcredentials.v1", "iamcredentials.projects.serviceAccounts.generateAccessToken"))
def generate_access_token(ctx: Ctx, project: str, account: str):
    """Impersonation: a token for `account`, to a caller holding iam.serviceAccounts.getAccessToken on it
    (roles/iam.serviceAccountTokenCreator on the account itself, or on its project)."""
    oauth = ctx.world.oauth
    body = ctx.json()
    scopes = body.get("scope") or []
    if not scopes:
        raise invalid_argument("Scope required.")
    lifetime = str(body.get("lifetime") or f"{MAX_SA_LIFETIME_S}s")
    try:
        seconds = int(float(lifetime.rstrip("s")))
    except ValueError:
        raise invalid_argument(f"Invalid value at 'lifetime' ({lifetime}).") from None
    if not 0 < seconds <= MAX_SA_LIFETIME_S:
        raise invalid_argument(f"The lifetime requested is not valid. Max lifetime is {MAX_SA_LIFETIME_S}s.")
    if project != "-":
        raise invalid_argument("The project must be '-' (the wildcard); the account is found by its email.")
    sa = oauth.service_account(account)
    if sa is None:
        raise ApiError("NOT_FOUND", f"Not found; Gaia id not found for email {account}")
    sa_project = account.split("@", 1)[1].split(".", 1)[0]
    policies = [sa["policy"]]
    if ctx.world.crm.lookup(sa_project) is not None:
        policies += ctx.world.crm.policy_chain(sa_project)
    permission = "iam.serviceAccounts.getAccessToken"
    if not ctx.allows(permission, policies):
        raise ApiError("PERMISSION_DENIED", f"Permission '{permission}' denied on resource (or it may not exist).",
                       [error_info("IAM_PERMISSION_DENIED", "iam.googleapis.com", {"permission": permission})])
    token, info = oauth.issue(member=f"serviceAccount:{account}", client_id=subject(account),
                              client_project=sa_project, scopes=list(scopes), lifetime=seconds)
    expire = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(info["exp"]))
    return {"accessToken": token, "expireTime": expire}


# ---------------------------------------------------------------------- control (the console, gcloud)

@router.route("PUT", "/_emulator/oauth/clients/<path:client_id>", api="emulator")
def put_client(ctx: Ctx, client_id: str):
    """The console's OAuth web client: `{"project", "redirect_uris": [...], "javascript_origins": [...]}`."""
    body = ctx.json(validate=False)
    for uri in body.get("redirect_uris") or []:
        parts = urlsplit(str(uri))
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
            raise invalid_argument(f"Invalid redirect URI {uri!r}: an absolute http(s) URI without a fragment.")
    return ctx.world.oauth.put_client(client_id, body)


@router.route("PUT", "/_emulator/oauth/account", api="emulator")
def put_account(ctx: Ctx):
    """Who is signed in to Google in the browser: `{"email": "ana@example.com"}`, or `{"email": null}`."""
    email = ctx.json(validate=False).get("email")
    if email is not None and (not isinstance(email, str) or "@" not in email):
        raise invalid_argument("email must be an address (ana@example.com) or null (signed out).")
    ctx.world.oauth.set_account(email)
    return {"email": email}


@router.route("PUT", "/_emulator/oauth/settings", api="emulator")
def put_settings(ctx: Ctx):
    """`{"token_lifetime_s": N}`: the expires_in of the access tokens issued from now on (Google: 3599)."""
    seconds = ctx.json(validate=False).get("token_lifetime_s")
    if not isinstance(seconds, int) or not 1 <= seconds <= 86400:
        raise invalid_argument("token_lifetime_s must be a number of seconds from 1 to 86400.")
    ctx.world.oauth.set_lifetime(seconds)
    return {"token_lifetime_s": seconds}


@router.route("PUT", "/_emulator/oauth/service-accounts/<id:email>", api="emulator")
def put_service_account(ctx: Ctx, email: str):
    """A service account and, optionally, its own IAM policy: `{"bindings": [...]}`."""
    if not email.endswith(".iam.gserviceaccount.com") or "@" not in email:
        raise invalid_argument("A service account email is NAME@PROJECT.iam.gserviceaccount.com.")
    body = ctx.json(validate=False)
    doc = ctx.world.oauth.put_service_account(email, body.get("bindings") if "bindings" in body else None)
    return {"email": email, "policy": iam.view(doc["policy"], 3)}


@router.route("POST", "/_emulator/oauth/adc", api="emulator")
def make_adc(ctx: Ctx):
    """Credentials files whose token_uri is this emulator:
    `{"type": "authorized_user", "email": "ana@example.com", "quota_project_id"?: "P"}` (what
    `gcloud auth application-default login` writes, for gcloud's OAuth client), or
    `{"type": "service_account", "email": "sa@P.iam.gserviceaccount.com"}` (a new key)."""
    body = ctx.json(validate=False)
    base = ctx.request.host_url.rstrip("/")
    email = str(body.get("email") or "")
    if "@" not in email:
        raise invalid_argument("email is required (a user's or a service account's address).")
    if body.get("type") == "service_account":
        if not email.endswith(".iam.gserviceaccount.com"):
            raise invalid_argument("A service account email is NAME@PROJECT.iam.gserviceaccount.com.")
        return ctx.world.oauth.new_key(email, base)
    if body.get("type") != "authorized_user":
        raise invalid_argument("type must be authorized_user or service_account.")
    scopes = body.get("scopes") or ["openid", "https://www.googleapis.com/auth/userinfo.email",
                                    "https://www.googleapis.com/auth/cloud-platform",
                                    "https://www.googleapis.com/auth/sqlservice.login"]
    refresh = ctx.world.oauth.issue_refresh(member=f"user:{email}", client_id=GCLOUD_CLIENT_ID,
                                            client_project=GCLOUD_CLIENT_PROJECT,
                                            scopes=[s for s in scopes if s in KNOWN_SCOPES or s == "openid"])
    out = {"account": "", "client_id": GCLOUD_CLIENT_ID, "client_secret": GCLOUD_CLIENT_SECRET,
           "refresh_token": refresh, "token_uri": f"{base}/token", "type": "authorized_user",
           "universe_domain": "googleapis.com"}
    if body.get("quota_project_id"):
        out["quota_project_id"] = str(body["quota_project_id"])
    return out
