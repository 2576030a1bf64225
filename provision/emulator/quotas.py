"""Google's request quotas, so a fleet of blueprints meets the limits it meets on Google Cloud.

On by default with `--latency realistic` (`--quotas none|realistic|FILE` says otherwise), and
scaled with `--time-scale` like every latency: a quota of 60 writes per minute lets 60 writes
through per `60 * time_scale` seconds. A FILE (JSON or YAML) overrides entries of the table:
`{"serviceusage.write": {"limit": 30}, "healthcare.requests": 600, "crm.read": null}` (a number
is the limit, null turns that quota off; the fields are those of `Quota`).

What the table holds (reference/google-evidence.md §4.4, with the source of each figure):
- Resource Manager (https://cloud.google.com/resource-manager/docs/limits): writes 10 per
  second and 600 per minute, and "a CreateProject operation costs 10 writes"; v3 search 4 per
  second (240 per minute); v1 projects.list 4 per second. Reads: a real 429 of 2024-07 names
  `cloudresourcemanager.googleapis.com/read_requests`, `ReadRequestsPerMinutePerProject`,
  value 2400 (quoted in a GitHub issue of GoogleCloudPlatform/marketing-analytics-jumpstart,
  #163); we use that rather than the older page's 10 per second.
- Service Usage (https://cloud.google.com/service-usage/docs/quotas): write calls (enable,
  disable, batchEnable; we count generateServiceIdentity too) 60 per minute, "a batchEnable
  call counts as 5 write calls"; read calls 240 per minute.
- Cloud Healthcare: per project and per region; the default figures are not published (they
  are only shown on a project's Quotas page), so ours are placeholders that no single apply or
  OHIF session reaches: set them with a FILE to study a limit.
- Cloud Billing, Cloud Storage and Cloud Logging have no entry: nothing the provisioner or OHIF
  does comes near their limits.

A quota is a token bucket: it holds at most `burst` units (default: `limit`), refills at `limit`
units per `window_s` seconds, and a request is let through only when its whole cost is there
(a refused request costs nothing, as on Google). Which project pays (the quota project,
https://cloud.google.com/docs/quotas/quota-project):
- Cloud Healthcare is a resource-based API: the project (and the region) in the request's path
  pays, whatever the caller asks for.
- Resource Manager and Service Usage are client-based: the project named by the request header
  `X-Goog-User-Project` pays (the client libraries send it when the credentials carry a quota
  project); else a caller that is a service account pays from its own project
  (`...@PROJECT.iam.gserviceaccount.com`); else every other caller (anonymous, a user) shares
  one default quota project, as users without a quota project share the gcloud CLI's project on
  Google: that real 429 names consumer `projects/764086051850` for a read about another project.
  So a fleet run by one identity shares one Resource Manager and one Service Usage budget, which
  is what limits a fleet on Google. The project in the path never pays for these two APIs.

An exhausted quota answers 429 RESOURCE_EXHAUSTED as Google does: Google's message, an ErrorInfo
(reason RATE_LIMIT_EXCEEDED, domain googleapis.com, metadata service, consumer, quota_metric,
quota_limit, quota_limit_value, quota_location) and a Help link. The real 429s quoted for
Resource Manager and other Google Cloud APIs carry no RetryInfo (Google's quota controller gives
no retry time: GoogleCloudPlatform/esp-v2 #498), so ours carry one only for a quota whose entry
says `retry_info: true` (services such as the Gemini API do send one); its `retryDelay` is the
time until the bucket holds the request's cost.
"""
from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable

import yaml

from provision.emulator.errors import ApiError, HELP, error_info

RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
HELP_URL = "https://cloud.google.com/docs/quota#requesting_higher_quota"
# The quota project of callers that name none and are not a service account (module docstring).
DEFAULT_CONSUMER = "764086051850"
USER_PROJECT_HEADER = "X-Goog-User-Project"


@dataclass(frozen=True)
class Quota:
    """One quota limit: a metric, its limit per window, and who pays for it."""

    service: str                 # serviceusage.googleapis.com
    metric: str                  # serviceusage.googleapis.com/mutate_requests
    metric_name: str             # 'Mutate requests' (as Google's message names it)
    limit_id: str                # MutateRequestsPerMinutePerProject (ErrorInfo quota_limit)
    limit_name: str              # 'Mutate requests per minute'
    limit: float                 # units per window
    window_s: float = 60.0
    burst: float | None = None   # the bucket's size; default: `limit`
    per_region: bool = False     # resource-based: charged to the path's project and region
    retry_info: bool = False     # answer a google.rpc.RetryInfo with the 429

    @property
    def capacity(self) -> float:
        return float(self.burst if self.burst is not None else self.limit)


def _q(service: str, metric: str, metric_name: str, window: str, limit: float, **kw: Any) -> Quota:
    per = {"second": 1.0, "minute": 60.0}[window]
    region = kw.get("per_region", False)
    limit_id = (re.sub(r"[^A-Za-z]", "", metric_name.title()) + f"Per{window.title()}PerProject"
                + ("PerRegion" if region else ""))
    return Quota(f"{service}.googleapis.com", f"{service}.googleapis.com/{metric}", metric_name, limit_id,
                 f"{metric_name} per {window}" + (" per region" if region else ""), limit, per, **kw)


REALISTIC: dict[str, Quota] = {
    # Resource Manager: 10 writes per second (and 600 per minute: the same bucket, 10 deep).
    "crm.write": _q("cloudresourcemanager", "write_requests", "Write requests", "minute", 600, burst=10),
    "crm.read": _q("cloudresourcemanager", "read_requests", "Read requests", "minute", 2400),
    "crm.search": _q("cloudresourcemanager", "search_requests", "Search requests", "minute", 240, burst=4),
    "crm.list": _q("cloudresourcemanager", "list_requests", "List requests", "minute", 240, burst=4),
    # Service Usage
    "serviceusage.write": _q("serviceusage", "mutate_requests", "Mutate requests", "minute", 60),
    "serviceusage.read": _q("serviceusage", "read_requests", "Read requests", "minute", 240),
    # Cloud Healthcare, per project and region (placeholders: Google does not publish them)
    "healthcare.requests": _q("healthcare", "requests", "Requests", "minute", 6000, per_region=True),
    "healthcare.dicomweb": _q("healthcare", "dicomweb_requests", "DICOMweb requests", "minute", 6000,
                              per_region=True),
}

_CRM_COSTS = {"create": 10}   # "A CreateProject operation costs 10 writes"
_SU_COSTS = {"batchEnable": 5}  # "A batchEnable call counts as 5 write calls"
_READ_ONLY_VERBS = (":getIamPolicy", ":testIamPermissions")
_PROJECT_IN_PATH = re.compile(r"^/v1(?:beta1)?/projects/([^/:]+)(?:/locations/([^/:]+))?")


def classify(api: str, method: str, path: str) -> tuple[str, float] | None:
    """The quota a request is charged to, and its cost; None for a request no quota covers."""
    if api == "cloudresourcemanager":
        if method == "GET":
            if path.startswith("/v3/projects:search"):
                return "crm.search", 1
            if path.rstrip("/") == "/v1/projects":
                return "crm.list", 1
            return "crm.read", 1
        if path.endswith(_READ_ONLY_VERBS):
            return "crm.read", 1
        if method == "POST" and path.rstrip("/") in ("/v1/projects", "/v3/projects"):
            return "crm.write", _CRM_COSTS["create"]
        return "crm.write", 1
    if api == "serviceusage":
        if method == "GET":
            return "serviceusage.read", 1
        return "serviceusage.write", _SU_COSTS["batchEnable"] if path.endswith(":batchEnable") else 1
    if api == "healthcare":
        return ("healthcare.dicomweb" if "/dicomWeb/" in path or path.endswith("/dicomWeb") else
                "healthcare.requests"), 1
    return None


class Quotas:
    """The table in force and one token bucket per (quota, consumer[, region])."""

    def __init__(self, table: dict[str, Quota], time_scale: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.table = dict(table)
        self.time_scale = time_scale
        self.clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[tuple, list[float]] = {}   # key -> [tokens, last refill time]

    @property
    def enabled(self) -> bool:
        return bool(self.table) and self.time_scale > 0

    @classmethod
    def from_option(cls, option: str | None, latency: str | None = None, time_scale: float = 1.0) -> "Quotas":
        """Build from `--quotas none|realistic|FILE`; unset follows `--latency` (on for realistic)."""
        if option is None or option == "auto":
            option = "realistic" if latency == "realistic" else "none"
        if option == "none":
            return cls({}, time_scale)
        if option == "realistic":
            return cls(REALISTIC, time_scale)
        path = Path(option)
        if not path.is_file():
            raise ValueError(f"--quotas {option!r}: not 'none', 'realistic' or an existing JSON/YAML file")
        text = path.read_text()
        if option.endswith((".yaml", ".yml")):
            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"{option}: a quota table is a mapping of quota names to limits")
        unknown = sorted(set(data) - set(REALISTIC))
        if unknown:
            raise ValueError(f"{option}: unknown quotas {unknown}; valid names: {sorted(REALISTIC)}")
        table = dict(REALISTIC)
        allowed = {f.name for f in fields(Quota)}
        for name, value in data.items():
            if value is None or value is False:
                table.pop(name)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                table[name] = replace(REALISTIC[name], limit=float(value))
            elif isinstance(value, dict):
                bad = sorted(set(value) - allowed)
                if bad:
                    raise ValueError(f"{option}: {name}: unknown fields {bad}; valid fields: {sorted(allowed)}")
                table[name] = replace(REALISTIC[name], **value)
            else:
                raise ValueError(f"{option}: {name}: give a limit (number), null, or a mapping of fields")
            q = table.get(name)
            if q is not None and (q.limit <= 0 or q.window_s <= 0 or q.capacity <= 0):
                raise ValueError(f"{option}: {name}: limit, window_s and burst must be positive")
        return cls(table, time_scale)

    # ------------------------------------------------------------------ charging
    def charge(self, name: str, cost: float, consumer: str, location: str = "global") -> float | None:
        """Take `cost` units from the bucket of (`name`, `consumer`, `location`): None when they
        were there (the request goes on), else the seconds until they will be (a 429)."""
        quota = self.table.get(name)
        if quota is None or self.time_scale <= 0:
            return None
        rate = quota.limit / (quota.window_s * self.time_scale)     # units per second
        capacity = quota.capacity
        cost = min(cost, capacity)   # a request dearer than the whole bucket still gets through when it is full
        key = (name, consumer, location if quota.per_region else "global")
        with self._lock:
            now = self.clock()
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = [capacity, now]
            bucket[0] = min(capacity, bucket[0] + (now - bucket[1]) * rate)
            bucket[1] = now
            if bucket[0] >= cost:
                bucket[0] -= cost
                return None
            return (cost - bucket[0]) / rate

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()

    def dump(self) -> dict:
        with self._lock:
            return {"/".join(k): round(v[0], 3) for k, v in self._buckets.items()}


def consumer_for(api: str, path: str, headers: Any, principal: str | None) -> tuple[str, str]:
    """(quota project ID or number, location) of a request (module docstring)."""
    found = _PROJECT_IN_PATH.match(path)
    if api == "healthcare":
        if found:
            return found.group(1), found.group(2) or "global"
        return DEFAULT_CONSUMER, "global"
    user_project = (headers.get(USER_PROJECT_HEADER) or "").strip()
    if user_project:
        return user_project.removeprefix("projects/"), "global"
    if principal and principal.startswith("serviceAccount:"):
        m = re.match(r"^[^@]+@([a-z][a-z0-9-]{4,28}[a-z0-9])\.iam\.gserviceaccount\.com$",
                     principal.split(":", 1)[1])
        if m:
            return m.group(1), "global"
    return DEFAULT_CONSUMER, "global"


def _duration(seconds: float) -> str:
    """A google.protobuf.Duration in JSON: `12s`, `0.250s`."""
    text = f"{max(seconds, 0.001):.3f}".rstrip("0").rstrip(".")
    return f"{text}s"


def exhausted(quota: Quota, consumer_number: str, location: str, retry_after: float | None) -> ApiError:
    """Google's 429 for an exhausted quota (module docstring)."""
    consumer = f"projects/{consumer_number}"
    metadata = {"service": quota.service, "consumer": consumer, "quota_metric": quota.metric,
                "quota_limit": quota.limit_id, "quota_limit_value": f"{quota.limit:g}",
                "quota_location": location if quota.per_region else "global"}
    message = (f"Quota exceeded for quota metric '{quota.metric_name}' and limit '{quota.limit_name}' of service "
               f"'{quota.service}' for consumer 'project_number:{consumer_number}'.")
    details: list[dict] = [error_info("RATE_LIMIT_EXCEEDED", "googleapis.com", metadata),
                           {"@type": HELP, "links": [{"description": "Request a higher quota limit.",
                                                      "url": HELP_URL}]}]
    if quota.retry_info and retry_after is not None:
        details.append({"@type": RETRY_INFO, "retryDelay": _duration(retry_after)})
    return ApiError("RESOURCE_EXHAUSTED", message, details, http_status=429)


def check(quotas: Quotas, api: str, method: str, path: str, headers: Any, principal: str | None,
          number_of: Callable[[str], str | None] = lambda ident: None) -> ApiError | None:
    """Charge one request: None when it may go on, else the 429 to answer. `number_of` turns a
    project ID into its number for the answer (Google names the consumer by number)."""
    if not quotas.enabled:
        return None
    found = classify(api, method, path)
    if found is None or found[0] not in quotas.table:
        return None
    name, cost = found
    consumer, location = consumer_for(api, path, headers, principal)
    wait = quotas.charge(name, cost, consumer, location)
    if wait is None:
        return None
    number = consumer if consumer.isdigit() else (number_of(consumer) or consumer)
    return exhausted(quotas.table[name], number, location, wait)
