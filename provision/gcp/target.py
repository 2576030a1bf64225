"""Where API calls go: real Google Cloud (Application Default Credentials) or an emulator URL.

A `Target` builds the real client libraries, pointed at the right endpoint with the right
credentials, and caches them: discovery clients per thread (httplib2 is not thread-safe),
the Resource Manager and Storage clients once per target (they ride on `requests`).
The provisioner reaches an emulator exactly as it reaches Google: only the endpoints differ.
Google libraries are imported inside the methods, so importing this module costs nothing
(provision/gcp/__init__.py says why).

Credentials are the same on both: Application Default Credentials (an `authorized_user` file
from `gcloud auth application-default login`, a `service_account` key, or what
`GOOGLE_APPLICATION_CREDENTIALS` names), optionally impersonating a service account
(`--impersonate-service-account`), optionally with a quota project (`--quota-project`, else the
credentials' own `quota_project_id` or `$GOOGLE_CLOUD_QUOTA_PROJECT`), which google-auth sends as
`x-goog-user-project`. Against an emulator every Google endpoint is the emulator's URL, the
token endpoint (oauth2.googleapis.com/token) and IAM Credentials (generateAccessToken) too, so
google-auth refreshes and impersonates for real there. What differs is only where credentials
come from when none are named: against an emulator ADC are used only when
`GOOGLE_APPLICATION_CREDENTIALS` names a file (never gcloud's well-known file of a real
login); otherwise `$PROVISION_EMULATOR_TOKEN` (`emulator:MEMBER`) or no credentials at all.

Timing: `Target.timing` is the target's timing profile: Google's figures (poll intervals,
backoff, how long a finished import may take to show in search, how long log entries take to
arrive, how long an operation may answer 404) multiplied by a time scale,
`$PROVISION_TIME_SCALE` (1 on Google Cloud; 0.02 by default against an emulator, the scale
at which `provision emulator --latency realistic --time-scale 0.02` plays Google's latencies).
"""
from __future__ import annotations

import json
import os
import threading
import weakref
from dataclasses import dataclass, field, fields, replace
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from provision.errors import ProvisionError, UsageError
from provision.gcp import shared_discovery

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
ENV_HOST = "PROVISION_EMULATOR_HOST"
ENV_TOKEN = "PROVISION_EMULATOR_TOKEN"
ENV_TIME_SCALE = "PROVISION_TIME_SCALE"
ENV_CREDENTIALS = "GOOGLE_APPLICATION_CREDENTIALS"
ENV_QUOTA_PROJECT = "GOOGLE_CLOUD_QUOTA_PROJECT"
EMULATOR_TIME_SCALE = 0.02  # the default scale of Google's timing profile against an emulator

# Discovery APIs and their public roots (used for raw calls and for links in messages).
GOOGLE_ROOTS = {
    "healthcare": "https://healthcare.googleapis.com",
    "serviceusage": "https://serviceusage.googleapis.com",
    "cloudbilling": "https://cloudbilling.googleapis.com",
    "cloudresourcemanager": "https://cloudresourcemanager.googleapis.com",
    "storage": "https://storage.googleapis.com",
    "logging": "https://logging.googleapis.com",
    "orgpolicy": "https://orgpolicy.googleapis.com",
    "cloudkms": "https://cloudkms.googleapis.com",
    "iam": "https://iam.googleapis.com",
    "run": "https://run.googleapis.com",
    "iap": "https://iap.googleapis.com",
    "artifactregistry": "https://artifactregistry.googleapis.com",
    "cloudbuild": "https://cloudbuild.googleapis.com",
}


@dataclass(frozen=True)
class Timing:
    """A target's timing profile, in seconds: Google's figures (`Timing()`), or them scaled."""

    first_poll: float = 1.0      # first interval between polls of a long-running operation
    max_poll: float = 15.0       # the largest one
    first_backoff: float = 1.0   # first retry delay
    max_backoff: float = 30.0    # the largest one (Terraform: 30 s)
    unreachable_s: float = 30.0  # how long a refused connection or unresolved name is retried
    logs_lag_s: float = 30.0     # how long an operation's error entries may take to show in Cloud Logging
    settle_s: float = 120.0      # how long search may lag behind a finished import
    gone_s: float = 300.0        # how long an operation may answer 404 before it is taken as gone
    smoke_retry_s: float = 60.0  # how long a smoke GET is retried (429, 5xx, resets)
    scale: float = 1.0

    # A refused connection is the local network or a local process (an emulator restarting),
    # whose pace no time scale changes: never retried for less than this.
    UNREACHABLE_FLOOR_S = 5.0

    def scaled(self, factor: float) -> "Timing":
        """Every figure multiplied by `factor` (the emulator's --time-scale)."""
        if not factor > 0:
            raise UsageError(f"${ENV_TIME_SCALE} must be a positive number, e.g. 0.02 (got {factor!r})")
        out = {f.name: getattr(self, f.name) * factor for f in fields(self) if f.name != "scale"}
        out["unreachable_s"] = max(self.UNREACHABLE_FLOOR_S, out["unreachable_s"])
        return replace(self, **out, scale=self.scale * factor)


GOOGLE_TIMING = Timing()


def check_emulator_url(raw: str) -> str:
    """The emulator URL, normalised; UsageError unless it is http(s)://HOST[:PORT]."""
    url = raw.strip().rstrip("/")
    example = "e.g. http://127.0.0.1:8765"
    if "://" not in url:
        raise UsageError(f"emulator URL {raw!r} needs a scheme: http://{url or '127.0.0.1:8765'}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"emulator URL {raw!r} is not a valid URL ({exc}); {example}") from None
    if parts.scheme not in ("http", "https"):
        raise UsageError(f"emulator URL {raw!r} must use http or https, not {parts.scheme or 'nothing'}; {example}")
    if not parts.hostname:
        raise UsageError(f"emulator URL {raw!r} names no host; {example}")
    if port == 0:
        raise UsageError(f"emulator URL {raw!r} has port 0; {example}")
    if parts.query or parts.fragment:
        raise UsageError(f"emulator URL {raw!r} must not have a query or fragment; {example}")
    return url


@dataclass(eq=False)
class Target:
    """Real Google Cloud (`emulator=None`) or an emulator at `emulator` (e.g. http://127.0.0.1:8765).

    `token` is an emulator principal's bearer token (`emulator:user:ana@example.com`), used when
    no credentials file is named; it is never shown (`repr=False`). `credentials_file`: the ADC
    file to use against an emulator (on Google, google.auth.default() finds it itself).
    `quota_project`: sent as x-goog-user-project. `timing`: the target's timing profile
    (default: Google's, scaled by `time_scale`, module docstring).
    """

    emulator: str | None = None
    impersonate: str | None = None
    token: str | None = field(default=None, repr=False)
    quota_project: str | None = None
    credentials_file: str | None = None
    time_scale: float | None = None
    timing: Timing = field(default=GOOGLE_TIMING)
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False)
    _local: threading.local = field(default_factory=threading.local, init=False, repr=False)
    _cache: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.emulator is not None:
            self.emulator = check_emulator_url(self.emulator)
        if self.timing is GOOGLE_TIMING:
            scale = self.time_scale if self.time_scale is not None else (EMULATOR_TIME_SCALE if self.emulator else 1.0)
            self.timing = GOOGLE_TIMING.scaled(scale) if scale != 1.0 else GOOGLE_TIMING

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_env(cls, emulator: str | None = None, impersonate: str | None = None,
                 env: Mapping[str, str] | None = None, quota_project: str | None = None) -> "Target":
        """The CLI's target: `emulator` (a URL) or $PROVISION_EMULATOR_HOST, else Google Cloud."""
        env = os.environ if env is None else env
        url = emulator or env.get(ENV_HOST) or None
        token = env.get(ENV_TOKEN) or None
        if url and token and not token.startswith("emulator:"):
            raise UsageError(f"${ENV_TOKEN} must look like emulator:user:NAME@DOMAIN (an emulator principal)")
        scale = env.get(ENV_TIME_SCALE) or None
        try:
            time_scale = float(scale) if scale is not None else None
        except ValueError:
            raise UsageError(f"${ENV_TIME_SCALE} must be a number, e.g. 0.02 (got {scale!r})") from None
        return cls(emulator=url, impersonate=impersonate, token=token if url else None,
                   quota_project=quota_project or env.get(ENV_QUOTA_PROJECT) or None,
                   credentials_file=env.get(ENV_CREDENTIALS) or None, time_scale=time_scale)

    @property
    def is_emulator(self) -> bool:
        return self.emulator is not None

    @property
    def label(self) -> str:
        return f"emulator {self.emulator}" if self.emulator else "Google Cloud"

    # The timing profile's figures, by their old names (resources read them from the target).
    @property
    def first_poll(self) -> float:
        return self.timing.first_poll

    @property
    def max_poll(self) -> float:
        return self.timing.max_poll

    @property
    def first_backoff(self) -> float:
        return self.timing.first_backoff

    @property
    def max_backoff(self) -> float:
        return self.timing.max_backoff

    @property
    def unreachable_s(self) -> float:
        return self.timing.unreachable_s

    @property
    def logs_lag_s(self) -> float:
        return self.timing.logs_lag_s

    @property
    def settle_s(self) -> float:
        return self.timing.settle_s

    def root(self, api: str) -> str:
        """Base URL of an API (no trailing slash, no version)."""
        return self.emulator if self.emulator else GOOGLE_ROOTS[api]

    def token_uri(self) -> str | None:
        """Where google-auth gets tokens: the emulator's token endpoint (None: the credentials' own)."""
        return f"{self.emulator}/token" if self.emulator else None

    def iam_endpoint(self, account: str) -> str | None:
        """IAM Credentials generateAccessToken for `account` on an emulator (None: Google's)."""
        return f"{self.emulator}/v1/projects/-/serviceAccounts/{account}:generateAccessToken" if self.emulator else None

    # ------------------------------------------------------------------ credentials
    def credentials(self) -> Any:
        with self._lock:
            creds = self._cache.get("creds")
            if creds is None:
                creds = self._cache["creds"] = self._make_credentials()
            return creds

    def _make_credentials(self) -> Any:
        creds = self._base_credentials()
        if self.impersonate:
            from google.auth import impersonated_credentials

            creds = impersonated_credentials.Credentials(
                source_credentials=creds, target_principal=self.impersonate,
                target_scopes=[CLOUD_PLATFORM], lifetime=3600, iam_endpoint_override=self.iam_endpoint(self.impersonate))
        if self.quota_project and hasattr(creds, "with_quota_project"):
            creds = creds.with_quota_project(self.quota_project)
        return creds

    def _base_credentials(self) -> Any:
        """The caller's own credentials (before impersonation and the quota project)."""
        # At an emulator without a token, the named credentials file (None elsewhere).
        emulator_file = self.credentials_file if self.emulator and not self.token else None
        if self.emulator and not emulator_file:
            if self.token:
                from google.oauth2.credentials import Credentials

                return Credentials(token=self.token)
            from google.auth.credentials import AnonymousCredentials

            if self.impersonate:
                raise UsageError("impersonating a service account needs credentials to impersonate it with: set "
                                 f"{ENV_CREDENTIALS} to a credentials file for the emulator (POST /_emulator/oauth/adc "
                                 f"makes one) or ${ENV_TOKEN}")
            return AnonymousCredentials()
        import google.auth
        from google.auth import exceptions as auth_exceptions

        try:
            if emulator_file:
                creds = _credentials_from_file(emulator_file)
            else:
                creds, _project = google.auth.default(scopes=[CLOUD_PLATFORM])
        except auth_exceptions.DefaultCredentialsError as exc:
            if self.emulator:
                raise ProvisionError(f"{ENV_CREDENTIALS}={self.credentials_file}: {exc}") from None
            raise ProvisionError(
                "no Google Cloud credentials found; run `gcloud auth application-default login` "
                "(or set GOOGLE_APPLICATION_CREDENTIALS), or point provision at an emulator with "
                f"--emulator URL / ${ENV_HOST}") from None
        if self.emulator and hasattr(creds, "with_token_uri"):
            creds = creds.with_token_uri(self.token_uri())  # oauth2.googleapis.com/token is the emulator's too
        return creds

    # ------------------------------------------------------------------ clients
    def discovery(self, api: str, version: str) -> Any:
        """A googleapiclient resource for `api` `version`, built once per target and shared by every
        thread (provision/gcp/shared_discovery.py: each request goes out on its thread's own http)."""
        return self._shared(("discovery", api, version), lambda: shared_discovery.build(
            api, version, self.credentials(), self._thread_http, self.emulator))

    def _thread_http(self) -> Any:
        """The calling thread's authorized httplib2 connection (httplib2 is not thread-safe)."""
        slot = self._local.__dict__.get("http")
        if slot is None:
            slot = self._local.__dict__["http"] = _Private(shared_discovery.authorized_http(self.credentials()))
        return slot.pool

    def healthcare(self) -> Any:
        return self.discovery("healthcare", "v1")

    def serviceusage(self, version: str = "v1") -> Any:
        return self.discovery("serviceusage", version)

    def billing(self) -> Any:
        return self.discovery("cloudbilling", "v1")

    def logging(self) -> Any:
        """Cloud Logging v2 (`entries:list`), from the discovery document bundled with the client."""
        return self.discovery("logging", "v2")

    def orgpolicy(self) -> Any:
        """Org Policy v2 (effective policies), from the discovery document bundled with the client."""
        return self.discovery("orgpolicy", "v2")

    def kms(self) -> Any:
        """Cloud KMS v1 (the CMEK key and its IAM policy), from the bundled discovery document."""
        return self.discovery("cloudkms", "v1")

    def iam_admin(self) -> Any:
        """IAM v1 (projects.serviceAccounts: the hosted viewer's identity), from the bundled discovery document."""
        return self.discovery("iam", "v1")

    def run(self) -> Any:
        """Cloud Run Admin v2 (services, builds:submit, operations), from the bundled discovery document."""
        return self.discovery("run", "v2")

    def iap(self) -> Any:
        """IAP v1 (IAM on iap_web resources), from the bundled discovery document."""
        return self.discovery("iap", "v1")

    def artifactregistry(self) -> Any:
        """Artifact Registry v1 (repositories), from the bundled discovery document."""
        return self.discovery("artifactregistry", "v1")

    def cloudbuild(self) -> Any:
        """Cloud Build v1 (the operations builds:submit starts), from the bundled discovery document."""
        return self.discovery("cloudbuild", "v1")

    def projects(self) -> Any:
        """resourcemanager_v3.ProjectsClient over REST."""
        return self._shared("projects", self._make_projects)

    def folders(self) -> Any:
        return self._shared("folders", lambda: self._make_crm("FoldersClient"))

    def organizations(self) -> Any:
        return self._shared("organizations", lambda: self._make_crm("OrganizationsClient"))

    def _make_projects(self) -> Any:
        return self._make_crm("ProjectsClient")

    def _make_crm(self, cls_name: str) -> Any:
        from google.api_core.client_options import ClientOptions
        from google.cloud import resourcemanager_v3

        cls = getattr(resourcemanager_v3, cls_name)
        opts = ClientOptions(api_endpoint=self.emulator) if self.emulator else None
        return cls(credentials=self.credentials(), transport="rest", client_options=opts)

    def storage(self, project: str | None = None) -> Any:
        """google.cloud.storage.Client (one per project name; the project only matters for create/list)."""
        return self._shared(("storage", project), lambda: self._make_storage(project))

    def _make_storage(self, project: str | None) -> Any:
        import google.cloud.storage as storage

        opts = {"api_endpoint": self.emulator} if self.emulator else None
        return storage.Client(project=project or "_", credentials=self.credentials(), client_options=opts)

    def session(self) -> Any:
        """An AuthorizedSession for raw calls (DICOMweb QIDO), private to the calling thread."""
        slot = self._local.__dict__.get("session")
        if slot is None:
            from google.auth.transport.requests import AuthorizedSession

            slot = self._local.__dict__["session"] = _Private(AuthorizedSession(self.credentials()))
        return slot.pool

    def _shared(self, key: Any, make: Callable[[], Any]) -> Any:
        with self._lock:
            if key not in self._cache:
                self._cache[key] = make()
            return self._cache[key]


def _credentials_from_file(path: str) -> Any:
    """The ADC file named for an emulator: a user's `authorized_user` file or a `service_account`
    key, loaded by their own google-auth classes (the generic loader warns about files of unknown
    origin); any other type goes through google-auth's loader."""
    from google.auth import exceptions as auth_exceptions

    try:
        with open(path, encoding="utf-8") as fh:
            info = json.load(fh)
    except (OSError, ValueError) as exc:
        raise auth_exceptions.DefaultCredentialsError(f"cannot read the credentials file: {exc}") from None
    kind = info.get("type") if isinstance(info, dict) else None
    if kind == "authorized_user":
        from google.oauth2.credentials import Credentials

        return Credentials.from_authorized_user_info(info, scopes=[CLOUD_PLATFORM])
    if kind == "service_account":
        from google.oauth2 import service_account

        return service_account.Credentials.from_service_account_info(info, scopes=[CLOUD_PLATFORM])
    import google.auth

    return google.auth.load_credentials_from_file(path, scopes=[CLOUD_PLATFORM])[0]




class _Private:
    """A connection pool of one thread's own, in that thread's slot of a target: closed when the slot
    goes (the thread ended, or the target did), not left to the garbage collector, which warns of each
    unclosed socket."""

    __slots__ = ("pool", "__weakref__")

    def __init__(self, pool: Any):
        self.pool = pool
        weakref.finalize(self, pool.close)
