"""IAP's backend: the IAM policies of `iap_web` resources, the key that signs assertions, and
the sign-in sessions of IAP in front of Cloud Run services (`iapEnabled`). No HTTP routing here.

Resources (iap.v1.json getIamPolicy/setIamPolicy `v1/{+resource}`), each inheriting from the one
above it and from the project's own policy: `projects/N/iap_web`,
`projects/N/iap_web/cloud_run-REGION`, `projects/N/iap_web/cloud_run-REGION/services/SERVICE`.
Who may pass: `iap.webServiceVersions.accessViaIAP` (roles/iap.httpsResourceAccessor); basic
roles never grant it ("Owner ... only allows modifying policies, not accessing the app",
iap/docs/managing-access).

Sign-in (iap/docs/faq: "After successful authentication with the identity provider, a request is
made to the https://iap.googleapis.com domain to complete authentication before an IAP cookie
is issued and you're redirected to the application"):
1. no IAP cookie: 302 to `accounts.google.com/o/oauth2/v2/auth` for IAP's Google-managed OAuth
   client (registered here, `MANAGED_CLIENT`), `redirect_uri` IAP's own
   `iap.googleapis.com/v1/oauth/clientIds/CLIENT:handleRedirect`; an XHR
   (`X-Requested-With: XMLHttpRequest`) gets 401 instead. The emulator's authorization endpoint
   signs in the browser's account (`PUT /_emulator/oauth/account`), or shows its error page
   when none is signed in;
2. handleRedirect redeems the code and sends the browser to the service's
   `/_gcp_iap/authenticate?ticket=…` (our path), which sets the cookie
   `__Host-GCP_IAP_AUTH_TOKEN_<hex>` (Secure, HttpOnly, Path=/) and returns to the page first asked;
3. with the cookie: a non-member gets IAP's 403 page; a member's request goes on with
   `x-goog-iap-jwt-assertion` (ES256; iss `https://cloud.google.com/iap`, aud
   `/projects/NUMBER/locations/REGION/services/SERVICE`, sub, email, iat, exp; keys at
   `www.gstatic.com/iap/verify/public_key-jwk`), `X-Goog-Authenticated-User-Email:
   accounts.google.com:EMAIL`, `X-Goog-Authenticated-User-Id: accounts.google.com:ID`, and
   `X-Serverless-Authorization: Bearer <ID token of IAP's service agent>` (IAP calls Cloud Run
   as `service-N@gcp-sa-iap.iam.gserviceaccount.com`, which needs roles/run.invoker).
Programmatic access: `Authorization: Bearer emulator:MEMBER` stands for a signed-in MEMBER.
Special URLs: `?gcp-iap-mode=IDENTITY` (who is signed in, for any signed-in account) and
`?gcp-iap-mode=CLEAR_LOGIN_COOKIE` (iap/docs/special-urls-howto).
Sessions last SESSION_S (our choice: one hour); an assertion lives ASSERTION_S (ten minutes).
"""
from __future__ import annotations

import hashlib
import html
import json
import secrets
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from werkzeug.wrappers import Request, Response

from provision.emulator import iam
from provision.emulator.state_base import ApiBackend
from provision.emulator.common import agent_email
from provision.emulator.oauth.state import ISSUER as GOOGLE, subject
from provision.emulator.worldview import WorldView as World
from provision.emulator.keys import persisted_key, public_der


ATTACH_AS = "iap"
SERVICE = "iap.googleapis.com"
ISSUER = "https://cloud.google.com/iap"
MANAGED_CLIENT = "iap-managed-client.apps.googleusercontent.com"
HANDLE_REDIRECT = f"https://iap.googleapis.com/v1/oauth/clientIds/{MANAGED_CLIENT}:handleRedirect"
COOKIE_PREFIX = "__Host-GCP_IAP_AUTH_TOKEN_"
AUTH_PATH = "/_gcp_iap/authenticate"
ACCESS = "iap.webServiceVersions.accessViaIAP"
SESSION_S = 3600
ASSERTION_S = 600
STEP_S = 600   # a sign-in state or ticket is good this long
GENERATED = {"X-Goog-IAP-Generated-Response": "true"}


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class Iap(ApiBackend):
    """Cross-API interface: `gate(service record, request, host)`, `agent_email(number)`, `jwks()`."""

    def __init__(self, world: World):
        super().__init__(world)
        self._lock = threading.Lock()
        self._key: Any = None
        self._agent_tokens: dict[str, tuple[str, int]] = {}   # audience -> (ID token, exp)
        data_dir = world.options.data_dir
        self._key_file = Path(data_dir) / "iap-signing-key.pem" if data_dir else None
        self._register_client()

    def _register_client(self) -> None:
        self.world.oauth.put_client(MANAGED_CLIENT, {"project": "", "redirect_uris": [HANDLE_REDIRECT]})

    def reset(self) -> None:
        super().reset()
        self._agent_tokens.clear()
        self._register_client()

    # ------------------------------------------------------------------ keys
    def signing_key(self) -> tuple[Any, str]:
        """The P-256 key that signs assertions (kept in --data-dir when there is one), and its kid."""
        from cryptography.hazmat.primitives.asymmetric import ec

        with self._lock:
            if self._key is None:
                key = persisted_key(self._key_file, lambda: ec.generate_private_key(ec.SECP256R1()))
                pub = public_der(key)
                self._key = (key, hashlib.sha256(pub).hexdigest()[:6])
            return self._key

    def jwks(self) -> dict:
        """IAP's public keys as `www.gstatic.com/iap/verify/public_key-jwk` lists them."""
        import jwt

        key, kid = self.signing_key()
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
        return {"keys": [{"alg": "ES256", "crv": "P-256", "kid": kid, "kty": "EC", "use": "sig",
                          "x": jwk["x"], "y": jwk["y"]}]}

    def public_pem(self) -> dict:
        """The same keys as `www.gstatic.com/iap/verify/public_key` (kid -> PEM)."""
        from cryptography.hazmat.primitives import serialization

        key, kid = self.signing_key()
        return {kid: key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode()}

    def assertion(self, email: str, audience: str) -> str:
        import jwt

        key, kid = self.signing_key()
        now = int(self.world.clock())
        claims = {"aud": audience, "email": email, "exp": now + ASSERTION_S, "iat": now, "iss": ISSUER,
                  "sub": f"accounts.google.com:{subject(email)}", "identity_source": "GOOGLE"}
        return jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid})

    # ------------------------------------------------------------------ policies
    def policy(self, resource: str) -> dict:
        return self.docs.get("iap-policy", resource) or iam.empty_policy()

    def set_policy(self, resource: str, body: dict) -> dict:
        with self.world.db.transaction():
            updated = iam.replace(self.policy(resource), body)
            self.docs.put("iap-policy", resource, updated)
        return updated

    def policy_chain(self, number: str, region: str, service: str | None, project_id: str) -> list[dict]:
        base = f"projects/{number}/iap_web"
        chain = [self.policy(base), self.policy(f"{base}/cloud_run-{region}")]
        if service:
            chain.insert(0, self.policy(f"{base}/cloud_run-{region}/services/{service}"))
        return [*chain, *self.world.crm.policy_chain(project_id)]

    @staticmethod
    def agent_email(number: str) -> str:
        return agent_email(str(number), SERVICE)

    # ------------------------------------------------------------------ the gate
    def gate(self, rec: dict, request: Request, host: str) -> Response | dict[str, str]:
        """IAP in front of a Cloud Run service: a Response (redirect, 401, 403, special URL) or the
        headers a member's request goes on with."""
        if request.path == AUTH_PATH:
            return self._authenticate(request, host)
        mode = request.args.get("gcp-iap-mode", "")
        if mode == "CLEAR_LOGIN_COOKIE":
            out = Response(b"", status=302, headers={"Location": "/", **GENERATED})
            for name in request.cookies:
                if name.startswith(COOKIE_PREFIX):
                    out.headers.add("Set-Cookie", f"{name}=; Path=/; Secure; HttpOnly; Max-Age=0")
            return out
        email = self._signed_in(request, host)
        if email is None:
            return self._sign_in(request, host)
        if mode == "IDENTITY":
            return Response(json.dumps({"email": f"accounts.google.com:{email}",
                                        "sub": f"accounts.google.com:{subject(email)}"}),
                            content_type="application/json", headers=GENERATED)
        if not self._member(email, rec):
            return _forbidden(email)
        return self._headers(email, rec)

    def _member(self, email: str, rec: dict) -> bool:
        kind = "serviceAccount" if email.endswith("gserviceaccount.com") else "user"
        candidates = {f"{kind}:{email}", f"domain:{email.rsplit('@', 1)[-1]}", "allAuthenticatedUsers", "allUsers"}
        chain = self.policy_chain(rec["number"], rec["region"], rec["name"], rec["projectId"])
        return any(iam.members_with(p, ACCESS) & candidates for p in chain)

    def _headers(self, email: str, rec: dict) -> dict[str, str]:
        audience = f"/projects/{rec['number']}/locations/{rec['region']}/services/{rec['name']}"
        return {"x-goog-iap-jwt-assertion": self.assertion(email, audience),
                "X-Goog-Authenticated-User-Email": f"accounts.google.com:{email}",
                "X-Goog-Authenticated-User-Id": f"accounts.google.com:{subject(email)}",
                "X-Serverless-Authorization": f"Bearer {self._agent_token(rec)}"}

    def _agent_token(self, rec: dict) -> str:
        """An ID token of IAP's service agent for the service's URL (how IAP calls Cloud Run), reused
        until ten minutes before it expires: an RS256 signature per request would cost a
        millisecond of the emulator's CPU on every proxied request."""
        import jwt

        audience = f"https://{rec['name']}-{rec['number']}.{rec['region']}.run.app"
        now = int(self.world.clock())
        cached = self._agent_tokens.get(audience)
        if cached is not None and cached[1] - now > 600:
            return cached[0]
        key, kid = self.world.oauth.signing_key()
        email = self.agent_email(rec["number"])
        claims = {"iss": GOOGLE, "aud": audience, "azp": subject(email), "sub": subject(email), "email": email,
                  "email_verified": True, "iat": now, "exp": now + 3600}
        token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})
        self._agent_tokens[audience] = (token, now + 3600)
        return token

    def _signed_in(self, request: Request, host: str) -> str | None:
        auth = request.headers.get("Authorization", "")
        if auth.lower().startswith("bearer emulator:"):
            member = auth[len("bearer emulator:"):].strip()
            return member.split(":", 1)[-1] if ":" in member else member
        for name, value in request.cookies.items():
            if name.startswith(COOKIE_PREFIX):
                doc = self.docs.get("iap-session", _digest(value))
                if doc and doc["host"] == host and doc["exp"] > self.world.clock():
                    return doc["email"]
        return None

    def _sign_in(self, request: Request, host: str) -> Response:
        if request.headers.get("X-Requested-With", "").lower() == "xmlhttprequest":
            return Response("Unauthorized", status=401, content_type="text/html", headers=GENERATED)
        state = secrets.token_urlsafe(24)
        self.docs.put("iap-state", _digest(state), {"host": host, "path": request.full_path.rstrip("?"),
                                                    "exp": self.world.clock() + STEP_S})
        query = urlencode({"client_id": MANAGED_CLIENT, "response_type": "code", "scope": "openid email",
                           "redirect_uri": HANDLE_REDIRECT, "state": state})
        return Response(b"", status=302, headers={"Location": f"https://accounts.google.com/o/oauth2/v2/auth?{query}",
                                                  "Cache-Control": "no-store", **GENERATED})

    def handle_redirect(self, code: str, state: str) -> str | None:
        """iap.googleapis.com's handleRedirect: the URL on the service that sets the cookie, or None
        (an unknown or used state or code)."""
        with self.world.db.transaction():
            doc = self.docs.get("iap-state", _digest(state))
            self.docs.delete("iap-state", _digest(state))
        if doc is None or doc["exp"] < self.world.clock():
            return None
        grant = self.world.oauth.redeem_code(code, MANAGED_CLIENT, HANDLE_REDIRECT)
        if grant is None or not str(grant.get("member", "")).startswith("user:"):
            return None
        ticket = secrets.token_urlsafe(24)
        self.docs.put("iap-ticket", _digest(ticket), {"email": grant["member"].split(":", 1)[1], "host": doc["host"],
                                                      "path": doc["path"], "exp": self.world.clock() + STEP_S})
        return f"https://{doc['host']}{AUTH_PATH}?{urlencode({'ticket': ticket})}"

    def _authenticate(self, request: Request, host: str) -> Response:
        ticket = request.args.get("ticket", "")
        with self.world.db.transaction():
            doc = self.docs.get("iap-ticket", _digest(ticket))
            self.docs.delete("iap-ticket", _digest(ticket))
        if doc is None or doc["host"] != host or doc["exp"] < self.world.clock():
            return Response("Invalid IAP credentials: the sign-in link is not valid any more.", status=401,
                            content_type="text/html", headers=GENERATED)
        session = secrets.token_urlsafe(32)
        self.docs.put("iap-session", _digest(session), {"email": doc["email"], "host": host,
                                                        "exp": self.world.clock() + SESSION_S})
        out = Response(b"", status=302, headers={"Location": doc["path"] or "/", **GENERATED})
        out.headers.add("Set-Cookie", f"{COOKIE_PREFIX}{secrets.token_hex(8)}={session}; Path=/; Secure; HttpOnly; "
                                      f"SameSite=Lax; Max-Age={SESSION_S}")
        return out


def _forbidden(email: str) -> Response:
    """IAP's 403 page for a signed-in account without access."""
    body = ("<!DOCTYPE html><html lang=en><meta charset=utf-8><title>Error 403 (Forbidden)</title>"
            "<h1>403. That's an error.</h1><p>You don't have access to this page. You are signed in as "
            f"<b>{html.escape(email)}</b>, which has not been granted access through Identity-Aware Proxy "
            "(roles/iap.httpsResourceAccessor). <a href=\"?gcp-iap-mode=CLEAR_LOGIN_COOKIE\">Sign in with a "
            "different account</a>.</p></html>")
    return Response(body, status=403, content_type="text/html; charset=utf-8", headers=GENERATED)


Backend = Iap
