"""One reading of every error the client libraries raise, and one clear message for the user.

`parse(exc)` turns a googleapiclient `HttpError`, an api_core `GoogleAPICallError` (which is
also what google-cloud-storage raises), a finished operation's error, or a network failure
into a `GoogleError` (HTTP status, canonical status, message, ErrorInfo reason and metadata).
`to_provision_error` wraps it as a `StepError` that names the step, the resource, Google's
message, the reason and the fix. Nothing here ever looks at request headers, and every text
taken from a server or an exception goes through `provision.redact.redact` (a parsed message,
a StepError's message), so an access token cannot leak into a message. Google's libraries are
imported where they are used (provision/gcp/__init__.py says why).
"""
# Long module (issue 20): one reading of every client-library error and its words; the predicates read it.
from __future__ import annotations

import http.client
import importlib
import json
import re
import socket
from dataclasses import dataclass, field
from typing import Any

from provision.errors import ProvisionError
from provision.redact import redact

# google.rpc.Code numbers and names (an operation's error carries the number).
RPC_CODES = {
    0: "OK", 1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED", 5: "NOT_FOUND",
    6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED", 9: "FAILED_PRECONDITION",
    10: "ABORTED", 11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED", 13: "INTERNAL", 14: "UNAVAILABLE",
    15: "DATA_LOSS", 16: "UNAUTHENTICATED",
}
HTTP_DEFAULT_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                       412: "FAILED_PRECONDITION", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
                       501: "UNIMPLEMENTED", 502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}

# Permission prefix -> the predefined role to ask for (what the fix names).
ROLE_FOR_PERMISSION = (
    ("iam.serviceAccounts.getAccessToken", "roles/iam.serviceAccountTokenCreator", "Service Account Token Creator"),
    ("resourcemanager.projects.create", "roles/resourcemanager.projectCreator", "Project Creator"),
    ("resourcemanager.projects.setIamPolicy", "roles/resourcemanager.projectIamAdmin", "Project IAM Admin"),
    ("resourcemanager.projects.getIamPolicy", "roles/resourcemanager.projectIamAdmin", "Project IAM Admin"),
    ("resourcemanager.projects.createBillingAssignment", "roles/billing.projectManager", "Project Billing Manager"),
    ("resourcemanager.projects.get", "roles/resourcemanager.projectIamAdmin", "Project IAM Admin"),
    ("billing.", "roles/billing.user", "Billing Account User"),
    ("serviceusage.", "roles/serviceusage.serviceUsageAdmin", "Service Usage Admin"),
    ("healthcare.", "roles/healthcare.datasetAdmin", "Healthcare Dataset Administrator"),
    ("storage.", "roles/storage.admin", "Storage Admin"),
    # it reads every log, Data Access audit entries (private logs) included: what `provision audit` needs
    ("logging.", "roles/logging.privateLogViewer", "Private Logs Viewer"),
    # what deploying the hosted viewer needs (viewer.hosting)
    ("run.", "roles/run.admin", "Cloud Run Admin"),
    ("iap.", "roles/iap.admin", "IAP Policy Admin"),
    ("iam.serviceAccounts.actAs", "roles/iam.serviceAccountUser", "Service Account User"),
    ("iam.serviceAccounts.", "roles/iam.serviceAccountAdmin", "Service Account Admin"),
    ("artifactregistry.", "roles/artifactregistry.admin", "Artifact Registry Administrator"),
    ("cloudbuild.builds.", "roles/cloudbuild.builds.editor", "Cloud Build Editor"),
)


def role_for(permission: str) -> tuple[str, str]:
    """(role, title) of the predefined role that grants `permission`."""
    for prefix, role, title in ROLE_FOR_PERMISSION:
        if permission.startswith(prefix):
            return role, title
    return "roles/owner", "Owner"


@dataclass
class GoogleError:
    """What an error says, whichever library raised it."""

    http_status: int | None = None        # 403; None for a finished operation's error or a network failure
    status: str | None = None             # canonical: PERMISSION_DENIED, ABORTED, ...
    message: str = ""
    reason: str | None = None             # ErrorInfo.reason (or Storage's errors[].reason)
    domain: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    details: list[dict[str, Any]] = field(default_factory=list)
    rpc_code: int | None = None           # for operation errors
    network: bool = False                 # connection reset, timeout, refused
    unreachable: str | None = None        # "connection refused" / "name resolution failed": nobody answers there
    host: str | None = None               # the host a network error names, when it does

    @property
    def code_text(self) -> str:
        bits = [str(self.http_status)] if self.http_status else []
        if self.status:
            bits.append(self.status)
        return " ".join(bits) or "error"

    def help_links(self) -> list[str]:
        out = []
        for d in self.details:
            for link in d.get("links", []) or []:
                if link.get("url"):
                    out.append(link["url"])
        return out


class OperationFailed(Exception):
    """A long-running operation finished with `error` (google.rpc.Status)."""

    def __init__(self, name: str, error: dict[str, Any], metadata: dict[str, Any] | None = None):
        self.name = name
        self.error = error or {}
        self.metadata = metadata or {}
        self.code = int(self.error.get("code", 2) or 2)
        super().__init__(self.error.get("message") or f"operation {name} failed")


class RawHttpError(Exception):
    """A non-2xx answer to a raw AuthorizedSession call (DICOMweb)."""

    def __init__(self, status: int, body: str, url: str = ""):
        self.status = status
        self.body = body
        self.url = url
        super().__init__(f"HTTP {status} from {url}")


def raise_for_status(response: Any) -> None:
    """Raise RawHttpError for a requests Response that is not 2xx."""
    if response.status_code >= 400:
        raise RawHttpError(response.status_code, response.text[:4000], response.url.split("?")[0])


class OperationTimeout(Exception):
    def __init__(self, name: str, seconds: float):
        self.name = name
        self.seconds = seconds
        super().__init__(f"operation {name} did not finish within {seconds:.0f} s")


class StepError(ProvisionError):
    """A step failed: names the step, the resource, Google's message, the reason and the fix."""

    def __init__(self, step: str, resource: str | None, message: str, *, google: GoogleError | None = None,
                 fix: str | None = None, action: str | None = None):
        self.step = step
        self.resource = resource
        self.google = google
        self.fix = fix
        self.detail = message = redact(message)  # it may quote a server or an exception, whoever built it
        self.action = action
        head = f"step {step!r}"
        if resource:
            head += f" ({action + ' ' if action else ''}{resource})"
        text = f"{head} failed: {message}"
        if google and google.reason and google.reason not in message:
            text += f" [reason: {google.reason}]"
        if fix:
            text += f"\n  fix: {fix}"
        super().__init__(text)


# ---------------------------------------------------------------------------- parsing
def _from_body(ge: GoogleError, body: Any) -> None:
    if not isinstance(body, dict):
        return
    err = body.get("error", body)
    if not isinstance(err, dict):
        if isinstance(err, str):
            ge.message = ge.message or err
        return
    ge.message = err.get("message") or ge.message
    if isinstance(err.get("status"), str):
        ge.status = err["status"]
    if isinstance(err.get("code"), int) and ge.http_status is None:
        ge.http_status = err["code"]
    details = err.get("details") or []
    if isinstance(details, list):
        ge.details = [d for d in details if isinstance(d, dict)]
    for d in ge.details:
        if str(d.get("@type", "")).endswith("google.rpc.ErrorInfo"):
            ge.reason = d.get("reason") or ge.reason
            ge.domain = d.get("domain") or ge.domain
            ge.metadata = dict(d.get("metadata") or {})
            break
    if not ge.reason:
        errors = err.get("errors") or []
        if errors and isinstance(errors[0], dict):
            ge.reason = errors[0].get("reason") or None


def parse(exc: BaseException) -> GoogleError | None:
    """Read any client-library error; None when `exc` is not an API or network error. The message
    is redacted: a server (or a proxy) may echo the request's URL or headers back."""
    ge = _parse(exc)
    if ge is not None:
        ge.message = redact(ge.message)
    return ge


# Long on purpose (issue 20): one branch per kind of client-library or network error, read top to bottom like a table.
def _parse(exc: BaseException) -> GoogleError | None:
    if isinstance(exc, OperationFailed):
        ge = GoogleError(rpc_code=exc.code, status=RPC_CODES.get(exc.code, "UNKNOWN"))
        _from_body(ge, {"error": exc.error})
        ge.http_status = None
        return ge
    if isinstance(exc, RawHttpError):
        ge = GoogleError(http_status=exc.status)
        try:
            _from_body(ge, json.loads(exc.body))
        except ValueError:
            ge.message = exc.body.strip()[:300]
        ge.http_status = exc.status
        ge.status = ge.status or HTTP_DEFAULT_STATUS.get(exc.status)
        ge.message = ge.message or f"HTTP {exc.status}"
        return ge
    try:
        from googleapiclient.errors import HttpError
    except ImportError:  # pragma: no cover
        HttpError = ()
    if HttpError and isinstance(exc, HttpError):
        ge = GoogleError(http_status=int(exc.resp.status))
        try:
            _from_body(ge, json.loads(exc.content.decode("utf-8", "replace") if isinstance(exc.content, bytes) else exc.content))
        except (ValueError, AttributeError):
            ge.message = str(getattr(exc, "reason", "") or "")
        ge.http_status = int(exc.resp.status)
        ge.status = ge.status or HTTP_DEFAULT_STATUS.get(ge.http_status)
        ge.message = ge.message or str(getattr(exc, "reason", "") or f"HTTP {ge.http_status}")
        return ge
    from google.api_core import exceptions as core

    if isinstance(exc, core.GoogleAPICallError):
        ge = GoogleError(http_status=exc.code if isinstance(exc.code, int) else None, message=exc.message or "")
        response = getattr(exc, "response", None)
        body = None
        if response is not None:
            try:
                body = response.json()
            except Exception:
                body = None
        if body is not None:
            _from_body(ge, body)
        else:
            errors = getattr(exc, "errors", None) or []
            if errors and isinstance(errors[0], dict):
                ge.reason = errors[0].get("reason")
        if getattr(exc, "reason", None):
            ge.reason = ge.reason or exc.reason
            ge.domain = ge.domain or exc.domain
            ge.metadata = ge.metadata or dict(exc.metadata or {})
        if isinstance(exc.code, int):
            ge.http_status = exc.code
        ge.status = ge.status or HTTP_DEFAULT_STATUS.get(ge.http_status or 0)
        if not ge.message:
            ge.message = str(exc)
        return ge
    refused = _refresh_error(exc)
    if refused is not None:
        return refused
    if _is_network(exc):
        text = _chain_text(exc)
        return GoogleError(network=True, message=f"{type(exc).__name__}: {exc}",
                           unreachable=_unreachable(exc, text), host=_re1(r"host='([^']+)'", text))
    return None


def _refresh_error(exc: BaseException) -> GoogleError | None:
    """google-auth's RefreshError: the token endpoint's OAuth error (`invalid_grant`, ...) or, for
    impersonation, IAM Credentials' google.rpc.Status, which it carries as a JSON string."""
    try:
        from google.auth.exceptions import RefreshError
    except ImportError:  # pragma: no cover
        return None
    if not isinstance(exc, RefreshError):
        return None
    for arg in exc.args[1:]:
        body = arg
        if isinstance(arg, (str, bytes)):
            try:
                body = json.loads(arg)
            except ValueError:
                continue
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            ge = GoogleError()
            _from_body(ge, body)
            ge.http_status = ge.http_status or body["error"].get("code")
            return ge
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            detail = body.get("error_description") or ""
            return GoogleError(http_status=401, status="UNAUTHENTICATED", reason=body["error"],
                               message=f"the token endpoint refused the credentials: {body['error']}"
                                       + (f" ({detail})" if detail else ""))
    return GoogleError(http_status=401, status="UNAUTHENTICATED",
                       message=f"the credentials could not be refreshed: {exc.args[0] if exc.args else exc}")


_REFUSED = ("connection refused", "errno 111", "errno 61", "winerror 10061")
_NO_NAME = ("name or service not known", "nodename nor servname", "temporary failure in name resolution",
            "failed to resolve", "getaddrinfo failed", "no address associated with hostname")


def _chain_text(exc: BaseException) -> str:
    """The messages of an exception and of those it wraps (urllib3 wraps the socket error)."""
    out, seen = [], set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        out.append(str(cur))
        for arg in getattr(cur, "args", ()) or ():
            if isinstance(arg, BaseException):
                out.append(str(arg))
        cur = cur.__cause__ or cur.__context__
    return " | ".join(out)


def _unreachable(exc: BaseException, text: str) -> str | None:
    """'connection refused' or 'name resolution failed' when nothing answers at the address."""
    cur: BaseException | None = exc
    while cur is not None:
        if isinstance(cur, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cur, socket.gaierror):
            return "name resolution failed"
        cur = cur.__cause__ or cur.__context__
    low = text.lower()
    if any(k in low for k in _REFUSED):
        return "connection refused"
    if any(k in low for k in _NO_NAME):
        return "name resolution failed"
    return None


def is_service_disabled(exc_or_error: BaseException | GoogleError | None) -> bool:
    """403 SERVICE_DISABLED (or its older forms): the API is not enabled on the project. Not the
    quota-project refusal, which Google also marks SERVICE_DISABLED (`is_quota_project_missing`)."""
    ge = exc_or_error if isinstance(exc_or_error, GoogleError) or exc_or_error is None else parse(exc_or_error)
    if ge is None or is_quota_project_missing(ge):
        return False
    return ge.reason in ("SERVICE_DISABLED", "accessNotConfigured") or "has not been used in project" in (ge.message or "")


QUOTA_PROJECT_FIX = ("set a quota project for your user credentials: `gcloud auth application-default "
                     "set-quota-project PROJECT` (writes quota_project_id into the ADC file), or run with "
                     "--quota-project PROJECT (or GOOGLE_CLOUD_QUOTA_PROJECT=PROJECT); PROJECT is one where you "
                     "hold serviceusage.services.use (Service Usage Consumer){example}")


def is_quota_project_missing(exc_or_error: BaseException | GoogleError | None) -> bool:
    """Google's 403 to user credentials of gcloud's own OAuth client without a quota project: "Your
    application is authenticating by using local Application Default Credentials. The X API
    requires a quota project, which is not set by default." (ErrorInfo SERVICE_DISABLED with
    consumer projects/764086051850, gcloud's project, not the user's)."""
    ge = exc_or_error if isinstance(exc_or_error, GoogleError) or exc_or_error is None else parse(exc_or_error)
    return ge is not None and "requires a quota project" in (ge.message or "")


def quota_project_fix(project: str | None = None) -> str:
    return QUOTA_PROJECT_FIX.format(example=f", e.g. {project}" if project else "")


# What a client library raises when no answer came back, by module (each checked only if installed).
_NETWORK_ERRORS = (
    ("requests.exceptions", ("ConnectionError", "Timeout", "ChunkedEncodingError")),
    ("google.auth.exceptions", ("TransportError",)),
    ("httplib2", ("HttpLib2Error",)),
    ("google.api_core.exceptions", ("RetryError",)),
)


def _is_network(exc: BaseException) -> bool:
    if isinstance(exc, (ConnectionError, TimeoutError, socket.timeout, http.client.HTTPException)):
        return True
    for module_name, class_names in _NETWORK_ERRORS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # pragma: no cover
            continue
        if isinstance(exc, tuple(getattr(module, name) for name in class_names)):
            return True
    return False




# ---------------------------------------------------------------------------- fixes
def fix_for(ge: GoogleError, *, project: str | None = None) -> str | None:
    """What the user should do about an error, when we can tell."""
    msg = ge.message or ""
    if is_quota_project_missing(ge):
        return quota_project_fix(project)
    if ge.reason == "USER_PROJECT_DENIED":
        quota = (ge.metadata.get("consumer") or "").removeprefix("projects/") or "the quota project"
        return (f"you may not use {quota} as the quota project: ask for Service Usage Consumer "
                f"(roles/serviceusage.serviceUsageConsumer) on it, or name another with --quota-project")
    if is_service_disabled(ge):
        svc = ge.metadata.get("service") or _re1(r"apis/api/([\w.-]+)/", msg) or "the API"
        return (f"enable {svc} (list it under `apis:` in the blueprint and apply again); if it was just "
                "enabled, wait a few minutes for it to propagate and retry")
    if ge.reason == "UREQ_PROJECT_BILLING_NOT_FOUND" or re.search(r"[Bb]illing (account )?.*(not found|disabled|must be enabled)", msg):
        return ("link a billing account to the project: set `project.billing_account` in the blueprint "
                "(you need Billing Account User on it), then apply again")
    if ge.status == "PERMISSION_DENIED" or ge.http_status == 403:
        perm = _re1(r"[Pp]ermission '([\w.]+)'", msg) or _re1(r"([a-z]+\.[a-zA-Z]+\.[a-zA-Z]+) (?:permission|access)", msg)
        if perm:
            role, title = role_for(perm)
            where = (" on the service account you impersonate" if perm.startswith("iam.serviceAccounts.")
                     else f" on project {project}" if project else "")
            return f"ask an administrator for {title} ({role}){where}: it grants {perm}"
        return "check that your account has the roles this step needs (see `provision plan`, which lists missing permissions)"
    if ge.status == "UNAUTHENTICATED" or ge.http_status == 401:
        return "refresh your credentials: `gcloud auth application-default login`"
    if ge.network:
        return "check the network and the endpoint; the call is safe to retry with `provision apply`"
    if ge.status == "RESOURCE_EXHAUSTED" or ge.http_status == 429:
        return "a quota was exceeded; wait and apply again, or ask for a quota increase"
    return None


def _re1(pattern: str, text: str) -> str | None:
    m = re.search(pattern, text)
    return m.group(1) if m else None


EMULATOR_TOKEN_FIX = "the emulator enforces IAM: set PROVISION_EMULATOR_TOKEN=emulator:user:NAME@DOMAIN"


def _anonymous_refused(exc: BaseException) -> bool:
    """google-auth refusing to refresh anonymous credentials: the server answered 401 to a call without a token."""
    try:
        from google.auth import exceptions as auth_exc
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, auth_exc.InvalidOperation) and "anonymous credentials" in str(exc).lower()


def emulator_command(url: str) -> str:
    """The `provision emulator` command line that listens at `url` (`--port 9` for :9; the
    defaults, 127.0.0.1:8765, need no flag)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    flags = []
    if parts.hostname and parts.hostname not in ("127.0.0.1", "localhost"):
        flags.append(f"--host {parts.hostname}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if port and port != 8765:
        flags.append(f"--port {port}")
    return " ".join(["provision emulator", *flags])


def unreachable_error(ge: GoogleError, step: str, resource: str | None, *, target: Any = None,
                      action: str | None = None) -> StepError:
    emulator = getattr(target, "emulator", None)
    where = emulator or ge.host or "Google Cloud"
    if emulator:
        fix = f"is the emulator running? start it with `{emulator_command(emulator)}` (it then listens at {emulator})"
    else:
        fix = "check the network (and any proxy or DNS settings); the call is safe to retry"
    return StepError(step, resource, f"cannot reach {where}: {ge.unreachable}", google=ge, fix=fix, action=action)


def to_provision_error(exc: BaseException, step: str, resource: str | None = None, *,
                       action: str | None = None, project: str | None = None, fix: str | None = None,
                       target: Any = None, attempts: bool = False) -> ProvisionError:
    """Any exception raised by a step as one clear ProvisionError. `target` (optional) tailors the
    advice for an emulator (a missing token, an emulator that is not running); `attempts` adds how
    many tries the retry policy made, except for an unreachable endpoint (said once, plainly)."""
    err = _to_provision_error(exc, step, resource, action=action, project=project, fix=fix, target=target)
    tries = getattr(exc, "provision_attempts", None)
    google = getattr(err, "google", None)
    if attempts and tries and "attempt" not in str(err) and not (google is not None and google.unreachable):
        err.args = (f"{err} (gave up after {tries} attempts)",)
    return err


def _to_provision_error(exc: BaseException, step: str, resource: str | None, *, action: str | None,
                        project: str | None, fix: str | None, target: Any) -> ProvisionError:
    if isinstance(exc, ProvisionError):
        return exc
    emulator = getattr(target, "emulator", None)
    if _anonymous_refused(exc):
        return StepError(step, resource, "401 UNAUTHENTICATED: the call was made without credentials",
                         action=action, fix=EMULATOR_TOKEN_FIX if emulator else
                         "refresh your credentials: `gcloud auth application-default login`")
    if isinstance(exc, OperationTimeout):
        return StepError(step, resource, str(exc), action=action,
                         fix=fix or "the operation is still running on Google's side; run `provision apply` again later to resume")
    ge = parse(exc)
    if ge is None:
        return StepError(step, resource, f"{type(exc).__name__}: {exc}", action=action, fix=fix)
    if ge.network and ge.unreachable:
        return unreachable_error(ge, step, resource, target=target, action=action)
    text = f"{ge.code_text}: {ge.message}" if not ge.network else ge.message  # parse() redacted it
    if isinstance(exc, OperationFailed):
        text = f"operation {exc.name} failed with {ge.status} (code {exc.code}): {ge.message}"
    if emulator and ge.http_status == 401 and not getattr(target, "token", None):
        fix = fix or EMULATOR_TOKEN_FIX
    return StepError(step, resource, text, google=ge, fix=fix or fix_for(ge, project=project), action=action)


def is_status(exc: BaseException, *statuses: int | str) -> bool:
    """Whether `exc` is an API error with one of these HTTP codes or canonical statuses."""
    ge = parse(exc)
    if ge is None or ge.network:
        return False
    return any(s == ge.http_status or s == ge.status for s in statuses)


def is_not_found(exc: BaseException) -> bool:
    return is_status(exc, 404)


def is_already_exists(exc: BaseException) -> bool:
    """409 ALREADY_EXISTS (409 alone for Storage, which has no canonical status); not ABORTED."""
    ge = parse(exc)
    if ge is None or ge.http_status != 409:
        return False
    return ge.status in (None, "ALREADY_EXISTS") or ge.reason in ("conflict", "alreadyExists") or "already exists" in ge.message.lower()


def is_absent(exc: BaseException) -> bool:
    """404, or the 403 Google answers for a resource that may not exist ("... denied on resource
    '…' (or it may not exist)"): Healthcare and Resource Manager hide absence behind 403."""
    ge = parse(exc)
    if ge is None or ge.network:
        return False
    if ge.http_status == 404:
        return "not initialized" not in ge.message.lower()
    return ge.http_status == 403 and "or it may not exist" in ge.message and ge.reason != "SERVICE_DISABLED"
