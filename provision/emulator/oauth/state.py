"""Google's sign-in as the emulator plays it: OAuth clients, the signed-in account, issued tokens,
service-account keys and the key that signs ID tokens. No HTTP here.

What it stands in for, and how (none of it is a public Google API, so the emulator's control
endpoints, `/_emulator/oauth/*`, play the console and gcloud):
- `PUT /_emulator/oauth/clients/<client_id>`: the console's "OAuth client ID, Web application"
  step (project, authorized redirect URIs and JavaScript origins);
- `PUT /_emulator/oauth/account`: who is signed in to Google in the browser (the authorization
  endpoint signs that account in without a page: auto-consent). By default the emulator's
  anonymous owner, `emulator-owner@example.com`; `{"email": null}` signs the browser out;
- `POST /_emulator/oauth/adc`: `gcloud auth application-default login` (an `authorized_user`
  file for gcloud's own OAuth client) or `gcloud iam service-accounts keys create` (a
  `service_account` key file); both name the emulator as `token_uri`;
- `PUT /_emulator/oauth/service-accounts/<email>`: a service account and its own IAM policy
  (who may impersonate it: roles/iam.serviceAccountTokenCreator).

Tokens look like Google's (`ya29.…` access tokens, `1//…` refresh tokens, RS256 ID tokens) and
are kept only as SHA-256 hashes, so the state dump and `--data-dir` hold no credential. An
access token is its principal: `user:EMAIL` or `serviceAccount:EMAIL` under --enforce-iam.

Rules modelled (each with its evidence or, where there is none, our choice):
- a token expired or revoked answers 401 UNAUTHENTICATED (ACCESS_TOKEN_EXPIRED), with or without
  --enforce-iam (a token the emulator never issued is left to --enforce-iam, as before);
- revoking a token (access or refresh) revokes its whole grant, as Google's /revoke does;
- an API refuses a token without one of its scopes: 403 ACCESS_TOKEN_SCOPE_INSUFFICIENT
  "Request had insufficient authentication scopes." (`SCOPES` below: Google's documented
  scopes per API);
- the quota project: a user token issued to gcloud's OAuth client (project 764086051850, which
  is Google's, not the user's) without `x-goog-user-project` is refused by the APIs that
  need a quota project with Google's 403 "Your application is authenticating by using local
  Application Default Credentials. The X API requires a quota project, which is not set by
  default." (ErrorInfo SERVICE_DISABLED, consumer projects/764086051850; seen in public
  reports for serviceusage, billingbudgets, documentai and others). Here: Service Usage only
  (`QUOTA_PROJECT_APIS`), the one the provisioner calls that reports name; Resource Manager,
  Storage and Healthcare accept such tokens. A quota project named in `x-goog-user-project`
  must exist and, under --enforce-iam, the caller needs serviceusage.services.use on it, or
  403 USER_PROJECT_DENIED "Caller does not have required permission to use project P.".
"""
from __future__ import annotations

import base64
import hashlib
import secrets
import threading
from pathlib import Path
from typing import Any

from provision.emulator import iam
from provision.emulator.state_base import ApiBackend
from provision.emulator.common import ANONYMOUS_OWNER
from provision.emulator.errors import ApiError, error_info
from provision.emulator.keys import persisted_key, public_der
from provision.emulator.lazy import LazyModule
from provision.emulator.worldview import WorldView

# PyJWT and cryptography cost ~10 MiB of resident memory: imported on the first token or key.
jwt = LazyModule("jwt")
serialization = LazyModule("cryptography.hazmat.primitives.serialization")
rsa = LazyModule("cryptography.hazmat.primitives.asymmetric.rsa")

ATTACH_AS = "oauth"

ISSUER = "https://accounts.google.com"
GOOGLE_ENDPOINTS = {
    "authorization_endpoint": "https://accounts.google.com/o/oauth2/v2/auth",
    "device_authorization_endpoint": "https://oauth2.googleapis.com/device/code",
    "token_endpoint": "https://oauth2.googleapis.com/token",
    "userinfo_endpoint": "https://openidconnect.googleapis.com/v1/userinfo",
    "revocation_endpoint": "https://oauth2.googleapis.com/revoke",
    "jwks_uri": "https://www.googleapis.com/oauth2/v3/certs",
}
# gcloud's own OAuth client (`gcloud auth application-default login`): a desktop client of
# Google's project 764086051850, which is why its user tokens need a quota project.
GCLOUD_CLIENT_ID = "764086051850-6qr4p6gpi6hn506pt8ejuq83di341hur.apps.googleusercontent.com"
GCLOUD_CLIENT_PROJECT = "764086051850"
GCLOUD_CLIENT_SECRET = "emulator-gcloud-client-secret"  # the emulator's stand-in, not gcloud's
DEFAULT_LIFETIME_S = 3599  # what Google's token endpoint answers as expires_in
MAX_SA_LIFETIME_S = 3600   # generateAccessToken's default maximum (12 h needs an org policy)

AUTH = "https://www.googleapis.com/auth/"
CLOUD_PLATFORM = AUTH + "cloud-platform"
SCOPE_ALIASES = {"email": AUTH + "userinfo.email", "profile": AUTH + "userinfo.profile"}
# API -> (scopes that allow any call, scopes that allow reads only). Google's per-API scope lists.
SCOPES: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "healthcare": (frozenset({CLOUD_PLATFORM, AUTH + "cloud-healthcare"}), frozenset()),
    "cloudresourcemanager": (frozenset({CLOUD_PLATFORM, AUTH + "cloudplatformprojects"}),
                             frozenset({AUTH + "cloud-platform.read-only", AUTH + "cloudplatformprojects.readonly"})),
    "serviceusage": (frozenset({CLOUD_PLATFORM, AUTH + "service.management"}),
                     frozenset({AUTH + "cloud-platform.read-only"})),
    "cloudbilling": (frozenset({CLOUD_PLATFORM, AUTH + "cloud-billing"}),
                     frozenset({AUTH + "cloud-platform.read-only", AUTH + "cloud-billing.readonly"})),
    "storage": (frozenset({CLOUD_PLATFORM, AUTH + "devstorage.full_control", AUTH + "devstorage.read_write"}),
                frozenset({AUTH + "cloud-platform.read-only", AUTH + "devstorage.read_only"})),
    "logging": (frozenset({CLOUD_PLATFORM, AUTH + "logging.admin"}),
                frozenset({AUTH + "cloud-platform.read-only", AUTH + "logging.read"})),
    "iamcredentials": (frozenset({CLOUD_PLATFORM, AUTH + "iam"}), frozenset()),
    # The scopes of orgpolicy.v2.json and cloudkms.v1.json.
    "orgpolicy": (frozenset({CLOUD_PLATFORM}), frozenset()),
    "cloudkms": (frozenset({CLOUD_PLATFORM, AUTH + "cloudkms"}), frozenset()),
    "iam": (frozenset({CLOUD_PLATFORM, AUTH + "iam"}), frozenset({AUTH + "cloud-platform.read-only"})),
    "run": (frozenset({CLOUD_PLATFORM}), frozenset({AUTH + "cloud-platform.read-only", AUTH + "run.readonly"})),
    "iap": (frozenset({CLOUD_PLATFORM}), frozenset()),
    # The scopes of cloudbuild.v1.json and artifactregistry.v1.json.
    "cloudbuild": (frozenset({CLOUD_PLATFORM}), frozenset()),
    "artifactregistry": (frozenset({CLOUD_PLATFORM}), frozenset({AUTH + "cloud-platform.read-only"})),
}
KNOWN_SCOPES = frozenset({"openid", *SCOPE_ALIASES.values(), *(s for a, r in SCOPES.values() for s in a | r)})
QUOTA_PROJECT_APIS = frozenset({"serviceusage"})
SERVICE_HOSTS = {"serviceusage": "serviceusage.googleapis.com", "cloudbilling": "cloudbilling.googleapis.com"}


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def subject(email: str) -> str:
    """A stable 21-digit Google account ID (`sub`) for an email."""
    return str(int(hashlib.sha256(email.lower().encode()).hexdigest(), 16))[:21]


def expand_scopes(scopes: list[str] | str) -> list[str]:
    """`email` -> `.../auth/userinfo.email` and so on, as Google reports granted scopes."""
    items = scopes.split() if isinstance(scopes, str) else list(scopes)
    return [SCOPE_ALIASES.get(s, s) for s in items]


def unauthenticated_expired() -> ApiError:
    return ApiError("UNAUTHENTICATED",
                    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
                    "other valid authentication credential. See "
                    "https://developers.google.com/identity/sign-in/web/devconsole-project.",
                    [error_info("ACCESS_TOKEN_EXPIRED", "googleapis.com")])


class OAuth(ApiBackend):
    """Clients, the browser's account, tokens and keys (module docstring)."""

    def __init__(self, world: WorldView):
        super().__init__(world)
        self._lock = threading.Lock()
        # (private key, kid), made on first use; a reset keeps it (everything else is in world.docs)
        self._signing: Any = None
        data_dir = world.options.data_dir
        self._key_file = Path(data_dir) / "oauth-signing-key.pem" if data_dir else None

    # ----------------------------------------------------------------- keys
    def signing_key(self) -> tuple[Any, str]:
        """The RSA key that signs ID tokens (kept in --data-dir when there is one), and its kid."""
        with self._lock:
            if self._signing is None:
                key = persisted_key(self._key_file, lambda: rsa.generate_private_key(public_exponent=65537,
                                                                                     key_size=2048))
                pub = public_der(key)
                self._signing = (key, hashlib.sha1(pub).hexdigest())
            return self._signing

    def jwks(self) -> dict:
        key, kid = self.signing_key()
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
        jwk.pop("key_ops", None)  # Google's keys carry kty, n, e, alg, use, kid
        return {"keys": [{**jwk, "alg": "RS256", "use": "sig", "kid": kid}]}

    def discovery(self) -> dict:
        """Google's OpenID configuration (accounts.google.com/.well-known/openid-configuration)."""
        return {
            "issuer": ISSUER,
            **GOOGLE_ENDPOINTS,
            "response_types_supported": ["code", "token", "id_token", "code token", "code id_token",
                                         "token id_token", "code token id_token", "none"],
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "claims_supported": ["aud", "email", "email_verified", "exp", "family_name", "given_name", "iat", "iss",
                                 "name", "picture", "sub"],
            "code_challenge_methods_supported": ["plain", "S256"],
            "grant_types_supported": ["authorization_code", "refresh_token",
                                      "urn:ietf:params:oauth:grant-type:device_code",
                                      "urn:ietf:params:oauth:grant-type:jwt-bearer"],
        }

    # ----------------------------------------------------------------- clients and the account
    def put_client(self, client_id: str, body: dict) -> dict:
        doc = {"client_id": client_id, "project": str(body.get("project") or ""),
               "redirect_uris": [str(u) for u in body.get("redirect_uris") or []],
               "javascript_origins": [str(u).rstrip("/") for u in body.get("javascript_origins") or []],
               "client_secret": body.get("client_secret") or None}
        return self.docs.put("oauth-client", client_id, doc)

    def client(self, client_id: str) -> dict | None:
        if client_id == GCLOUD_CLIENT_ID:
            return {"client_id": client_id, "project": GCLOUD_CLIENT_PROJECT, "redirect_uris": ["http://localhost"],
                    "javascript_origins": [], "client_secret": GCLOUD_CLIENT_SECRET, "desktop": True}
        return self.docs.get("oauth-client", client_id)

    def account(self) -> str | None:
        """The email of the account signed in to Google in the browser (None: signed out)."""
        doc = self.docs.get("oauth-account", "browser")
        return ANONYMOUS_OWNER.split(":", 1)[1] if doc is None else doc.get("email")

    def set_account(self, email: str | None) -> None:
        self.docs.put("oauth-account", "browser", {"email": email})

    def lifetime(self) -> int:
        doc = self.docs.get("oauth-settings", "tokens") or {}
        return int(doc.get("token_lifetime_s") or DEFAULT_LIFETIME_S)

    def set_lifetime(self, seconds: int) -> None:
        self.docs.put("oauth-settings", "tokens", {"token_lifetime_s": int(seconds)})

    # ----------------------------------------------------------------- service accounts
    def put_service_account(self, email: str, bindings: list[dict] | None) -> dict:
        current = self.docs.get("service-account", email) or {"email": email, "policy": iam.empty_policy()}
        if bindings is not None:
            current["policy"] = iam.replace(current["policy"], {"bindings": bindings, "version": 1})
        return self.docs.put("service-account", email, current)

    def service_account(self, email: str) -> dict | None:
        return self.docs.get("service-account", email)

    def new_key(self, email: str, base: str) -> dict:
        """A service-account key file (JSON), as `gcloud iam service-accounts keys create` writes it."""
        self.put_service_account(email, None)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        kid = secrets.token_hex(20)
        public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        self.docs.put("service-account-key", kid, {"email": email, "public_key": public})
        project = email.split("@", 1)[1].split(".", 1)[0] if "@" in email else ""
        return {
            "type": "service_account",
            "project_id": project,
            "private_key_id": kid,
            "private_key": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()).decode(),
            "client_email": email,
            "client_id": subject(email),
            "auth_uri": f"{base}/o/oauth2/auth",
            "token_uri": f"{base}/token",
            "auth_provider_x509_cert_url": f"{base}/oauth2/v1/certs",
            "client_x509_cert_url": f"{base}/robot/v1/metadata/x509/{email}",
            "universe_domain": "googleapis.com",
        }

    def verify_service_account_jwt(self, token: str, *, audience_path: str | None) -> dict | None:
        """The claims of a JWT signed by a service-account key this emulator made, or None when it
        is not one of ours. `audience_path`: the token endpoint's path the `aud` must end with (a
        JWT-bearer grant); None for a self-signed JWT sent to an API as its bearer token."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None
        doc = self.docs.get("service-account-key", str(header.get("kid") or ""))
        if doc is None:
            return None
        try:
            claims = jwt.decode(token, doc["public_key"], algorithms=["RS256"], options={"verify_aud": False},
                                leeway=60)
        except jwt.PyJWTError:
            return {"invalid": True}
        if claims.get("iss") != doc["email"]:
            return {"invalid": True}
        aud = str(claims.get("aud") or "")
        if audience_path is not None and not aud.rstrip("/").endswith(audience_path):
            return {"invalid": True}
        return {**claims, "email": doc["email"]}

    # ----------------------------------------------------------------- tokens
    def issue(self, *, member: str, client_id: str, client_project: str, scopes: list[str], grant: str | None = None,
              lifetime: int | None = None) -> tuple[str, dict]:
        """A new access token (returned once, stored as its hash) and its record."""
        token = "ya29.emu-" + secrets.token_urlsafe(48)
        now = self.world.clock()
        info = {"member": member, "client_id": client_id, "client_project": client_project,
                "scopes": sorted(set(expand_scopes(scopes))), "iat": now,
                "exp": now + (lifetime or self.lifetime()), "grant": grant or secrets.token_hex(8), "revoked": False}
        self.docs.put("oauth-token", digest(token), info)
        return token, info

    def issue_refresh(self, *, member: str, client_id: str, scopes: list[str], client_project: str) -> str:
        token = "1//emu-" + secrets.token_urlsafe(48)
        self.docs.put("oauth-refresh", digest(token), {"member": member, "client_id": client_id,
                                                       "client_project": client_project,
                                                       "scopes": sorted(set(expand_scopes(scopes))),
                                                       "grant": secrets.token_hex(8), "revoked": False})
        return token

    def refresh_record(self, token: str) -> dict | None:
        doc = self.docs.get("oauth-refresh", digest(token))
        if doc is None or doc.get("revoked") or self._grant_revoked(doc["grant"]):
            return None
        return doc

    def token_record(self, token: str) -> dict | None:
        """The record of an access token this emulator issued (None: not one of ours)."""
        return self.docs.get("oauth-token", digest(token))

    def live(self, info: dict) -> bool:
        return not info.get("revoked") and not self._grant_revoked(info["grant"]) and info["exp"] > self.world.clock()

    def redeem_code(self, code: str, client_id: str, redirect_uri: str) -> dict | None:
        """Use an authorization code once (as /token does for a client): its grant (member, scopes)
        when it is live and was issued to `client_id` for `redirect_uri`, else None."""
        key = digest(code)
        with self.world.db.transaction():
            doc = self.docs.get("oauth-code", key)
            self.docs.delete("oauth-code", key)
        if doc is None or doc["exp"] < self.world.clock() or doc["client_id"] != client_id \
                or doc["redirect_uri"] != redirect_uri:
            return None
        return doc

    def revoke(self, token: str) -> bool:
        """Revoke an access or refresh token and its whole grant; False when it is unknown or dead."""
        for kind in ("oauth-token", "oauth-refresh"):
            doc = self.docs.get(kind, digest(token))
            if doc is not None:
                if doc.get("revoked") or self._grant_revoked(doc["grant"]) or \
                        (kind == "oauth-token" and doc["exp"] <= self.world.clock()):
                    return False
                self.docs.put("oauth-revoked-grant", doc["grant"], {"revoked": True})
                return True
        return False

    def _grant_revoked(self, grant: str) -> bool:
        return self.docs.get("oauth-revoked-grant", grant) is not None

    def id_token(self, *, email: str, client_id: str, nonce: str | None, access_token: str | None,
                 scopes: list[str]) -> str:
        key, kid = self.signing_key()
        now = int(self.world.clock())
        claims: dict[str, Any] = {"iss": ISSUER, "azp": client_id, "aud": client_id, "sub": subject(email),
                                  "iat": now, "exp": now + 3600}
        expanded = expand_scopes(scopes)
        if SCOPE_ALIASES["email"] in expanded:
            claims.update(email=email, email_verified=True)
        if access_token:
            half = hashlib.sha256(access_token.encode()).digest()[:16]
            claims["at_hash"] = base64.urlsafe_b64encode(half).rstrip(b"=").decode()
        if nonce:
            claims["nonce"] = nonce
        if SCOPE_ALIASES["profile"] in expanded:
            claims.update(profile_claims(email))
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})

    # ----------------------------------------------------------------- who is calling
    def principal(self, authorization: str) -> str | None:
        """The member an `Authorization: Bearer` token stands for; None when it is not a token this
        emulator issued (then --enforce-iam decides). A dead token of ours raises 401."""
        info = self.bearer(authorization)
        return info["member"] if info else None

    def bearer(self, authorization: str) -> dict | None:
        if not authorization.lower().startswith("bearer "):
            return None
        token = authorization[7:].strip()
        if token.count(".") == 2 and token.startswith("eyJ"):
            claims = self.verify_service_account_jwt(token, audience_path=None)
            if claims is None:
                return None
            if claims.get("invalid"):
                raise unauthenticated_expired()
            scopes = str(claims.get("scope") or "").split() or [CLOUD_PLATFORM]
            email = claims["email"]
            return {"member": f"serviceAccount:{email}", "scopes": scopes, "client_project": _sa_project(email),
                    "client_id": subject(email)}
        info = self.token_record(token)
        if info is None:
            return None
        if not self.live(info):
            raise unauthenticated_expired()
        return info

    def check_call(self, api: str, method: str, headers: Any, info: dict | None, principal: str | None) -> None:
        """Scopes and the quota project of a call to `api` (module docstring); raises ApiError."""
        quota = headers.get("x-goog-user-project")
        if info is not None and api in SCOPES:
            full, read = SCOPES[api]
            granted = set(info.get("scopes") or ())
            if not (granted & full or (method in ("GET", "HEAD") and granted & read)):
                raise ApiError("PERMISSION_DENIED", "Request had insufficient authentication scopes.",
                               [error_info("ACCESS_TOKEN_SCOPE_INSUFFICIENT", "googleapis.com",
                                           {"service": f"{api}.googleapis.com"})],
                               gcs_reason="insufficientPermissions")
        if quota:
            self._check_quota_project(api, quota, principal)
            return
        if info is not None and api in QUOTA_PROJECT_APIS and info.get("client_project") == GCLOUD_CLIENT_PROJECT \
                and str(info.get("member", "")).startswith("user:"):
            service = SERVICE_HOSTS.get(api, f"{api}.googleapis.com")
            raise ApiError(
                "PERMISSION_DENIED",
                "Your application is authenticating by using local Application Default Credentials. The "
                f"{service} API requires a quota project, which is not set by default. To learn how to set your "
                "quota project, see https://cloud.google.com/docs/authentication/adc-troubleshooting/user-creds .",
                [error_info("SERVICE_DISABLED", "googleapis.com",
                            {"consumer": f"projects/{GCLOUD_CLIENT_PROJECT}", "service": service})])

    def _check_quota_project(self, api: str, project: str, principal: str | None) -> None:
        record = self.world.crm.lookup(project)
        allowed = record is not None and (not self.world.options.enforce_iam or iam.allowed(
            principal or "", "serviceusage.services.use", self.world.crm.policy_chain(record["projectId"])))
        if not allowed:
            service = SERVICE_HOSTS.get(api, f"{api}.googleapis.com")
            raise ApiError(
                "PERMISSION_DENIED",
                f"Caller does not have required permission to use project {project}. Grant the caller the "
                "roles/serviceusage.serviceUsageConsumer role, or a custom role with the serviceusage.services.use "
                f"permission, by visiting https://console.developers.google.com/iam-admin/iam/project?project={project} "
                "and then retry. Propagation of the new permission may take a few minutes.",
                [error_info("USER_PROJECT_DENIED", "googleapis.com",
                            {"consumer": f"projects/{project}", "service": service})])


def profile_claims(email: str) -> dict:
    local = email.split("@", 1)[0]
    given = local.split(".")[0].capitalize()
    return {"name": local.replace(".", " ").title(), "given_name": given,
            "family_name": local.split(".")[-1].capitalize() if "." in local else "",
            "picture": "https://lh3.googleusercontent.com/a/default-user=s96-c"}


def _sa_project(email: str) -> str:
    domain = email.split("@", 1)[-1]
    return domain.split(".", 1)[0] if domain.endswith(".iam.gserviceaccount.com") else ""


Backend = OAuth
