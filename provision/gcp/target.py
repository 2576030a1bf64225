"""Where API calls go: real Google Cloud (Application Default Credentials) or an emulator URL.

A `Target` builds the real client libraries, pointed at the right endpoint with the right
credentials, and caches them: discovery clients per thread (httplib2 is not thread-safe),
the Resource Manager and Storage clients once per target (they ride on `requests`).
The provisioner reaches an emulator exactly as it reaches Google: only the endpoint and the
credentials differ. Google libraries are imported inside the methods, so importing this
module costs nothing.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any

from provision.errors import UsageError

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
ENV_HOST = "PROVISION_EMULATOR_HOST"
ENV_TOKEN = "PROVISION_EMULATOR_TOKEN"

# Discovery APIs and their public roots (used for raw calls and for links in messages).
GOOGLE_ROOTS = {
    "healthcare": "https://healthcare.googleapis.com",
    "serviceusage": "https://serviceusage.googleapis.com",
    "cloudbilling": "https://cloudbilling.googleapis.com",
    "cloudresourcemanager": "https://cloudresourcemanager.googleapis.com",
    "storage": "https://storage.googleapis.com",
    "logging": "https://logging.googleapis.com",
}


def check_emulator_url(raw: str) -> str:
    """The emulator URL, normalised; UsageError unless it is http(s)://HOST[:PORT]."""
    from urllib.parse import urlsplit

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

    `token` is the emulator principal's bearer token (`emulator:user:ana@example.com`), used
    when an emulator runs with --enforce-iam; it is never shown (`repr=False`).
    """

    emulator: str | None = None
    impersonate: str | None = None
    token: str | None = field(default=None, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False)
    _local: threading.local = field(default_factory=threading.local, init=False, repr=False)
    _cache: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.emulator is not None:
            self.emulator = check_emulator_url(self.emulator)
            if self.impersonate:
                raise UsageError("impersonating a service account applies to Google Cloud only, not to an emulator")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_env(cls, emulator: str | None = None, impersonate: str | None = None,
                 env: dict | None = None) -> "Target":
        """The CLI's target: `emulator` (a URL) or $PROVISION_EMULATOR_HOST, else Google Cloud."""
        env = os.environ if env is None else env
        url = emulator or env.get(ENV_HOST) or None
        token = env.get(ENV_TOKEN) or None
        if url and token and not token.startswith("emulator:"):
            raise UsageError(f"${ENV_TOKEN} must look like emulator:user:NAME@DOMAIN (an emulator principal)")
        return cls(emulator=url, impersonate=impersonate, token=token if url else None)

    @property
    def is_emulator(self) -> bool:
        return self.emulator is not None

    @property
    def label(self) -> str:
        return f"emulator {self.emulator}" if self.emulator else "Google Cloud"

    # Timing scales: the emulator answers in milliseconds, Google in seconds. Both grow.
    @property
    def first_poll(self) -> float:
        return 0.02 if self.is_emulator else 1.0

    @property
    def max_poll(self) -> float:
        return 2.0 if self.is_emulator else 15.0

    @property
    def first_backoff(self) -> float:
        return 0.05 if self.is_emulator else 1.0

    @property
    def max_backoff(self) -> float:
        return 2.0 if self.is_emulator else 30.0

    @property
    def unreachable_s(self) -> float:
        """How long a refused connection or an unresolved name is retried before it is final."""
        return 5.0 if self.is_emulator else 30.0

    @property
    def logs_lag_s(self) -> float:
        """How long an operation's error entries may take to show in Cloud Logging after it ends
        (ingestion is usually seconds on Google; the emulator writes them before it ends)."""
        return 2.0 if self.is_emulator else 30.0

    @property
    def settle_s(self) -> float:
        """How long search results may lag behind a finished import (DICOMweb is eventually consistent)."""
        return 10.0 if self.is_emulator else 120.0

    def root(self, api: str) -> str:
        """Base URL of an API (no trailing slash, no version)."""
        return self.emulator if self.emulator else GOOGLE_ROOTS[api]

    # ------------------------------------------------------------------ credentials
    def credentials(self) -> Any:
        with self._lock:
            creds = self._cache.get("creds")
            if creds is None:
                creds = self._cache["creds"] = self._make_credentials()
            return creds

    def _make_credentials(self) -> Any:
        if self.is_emulator:
            if self.token:
                from google.oauth2.credentials import Credentials

                return Credentials(token=self.token)
            from google.auth.credentials import AnonymousCredentials

            return AnonymousCredentials()
        import google.auth
        from google.auth import exceptions as auth_exceptions

        from provision.errors import ProvisionError

        try:
            creds, _project = google.auth.default(scopes=[CLOUD_PLATFORM])
        except auth_exceptions.DefaultCredentialsError:
            raise ProvisionError(
                "no Google Cloud credentials found; run `gcloud auth application-default login` "
                "(or set GOOGLE_APPLICATION_CREDENTIALS), or point provision at an emulator with "
                f"--emulator URL / ${ENV_HOST}") from None
        if self.impersonate:
            from google.auth import impersonated_credentials

            creds = impersonated_credentials.Credentials(
                source_credentials=creds, target_principal=self.impersonate,
                target_scopes=[CLOUD_PLATFORM], lifetime=3600)
        return creds

    # ------------------------------------------------------------------ clients
    def discovery(self, api: str, version: str) -> Any:
        """A googleapiclient resource for `api` `version`, private to the calling thread."""
        cache = self._local.__dict__.setdefault("services", {})
        key = (api, version)
        svc = cache.get(key)
        if svc is None:
            import logging

            from googleapiclient import discovery

            # googleapiclient logs every 403/429 as a WARNING; we report errors ourselves.
            logging.getLogger("googleapiclient.http").setLevel(logging.ERROR)

            opts = {"api_endpoint": self.emulator} if self.emulator else None
            svc = discovery.build(api, version, credentials=self.credentials(), client_options=opts,
                                  cache_discovery=False, static_discovery=True)
            cache[key] = svc
        return svc

    def healthcare(self) -> Any:
        return self.discovery("healthcare", "v1")

    def serviceusage(self, version: str = "v1") -> Any:
        return self.discovery("serviceusage", version)

    def billing(self) -> Any:
        return self.discovery("cloudbilling", "v1")

    def logging(self) -> Any:
        """Cloud Logging v2 (`entries:list`), from the discovery document bundled with the client."""
        return self.discovery("logging", "v2")

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
        from google.cloud import storage

        opts = {"api_endpoint": self.emulator} if self.emulator else None
        return storage.Client(project=project or "_", credentials=self.credentials(), client_options=opts)

    def session(self) -> Any:
        """An AuthorizedSession for raw calls (DICOMweb QIDO), private to the calling thread."""
        sess = self._local.__dict__.get("session")
        if sess is None:
            from google.auth.transport.requests import AuthorizedSession

            sess = self._local.__dict__["session"] = AuthorizedSession(self.credentials())
        return sess

    def _shared(self, key: Any, make) -> Any:
        with self._lock:
            if key not in self._cache:
                self._cache[key] = make()
            return self._cache[key]
