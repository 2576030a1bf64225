"""Cloud Run Admin v2 wire shapes: the Service as get/list answer it (the caller's spec with
Google's defaults filled in, and the output-only fields), its URLs and its conditions. No state
here.

URLs: `uri` is the deterministic `https://SERVICE-PROJECT_NUMBER.REGION.run.app`
(run/docs/triggering/https-request); `urls` also lists the hash-based
`https://SERVICE-HASH-CODE.a.run.app` where the region's short code is known (the hash is ours,
ten letters from the project number). Google's own `uri` is the hash-based one: read `uri` back,
never build it.
"""
from __future__ import annotations

import copy
import hashlib
from typing import Any

SERVICE_TYPE = "type.googleapis.com/google.cloud.run.v2.Service"
# Region -> the code in hash-based run.app URLs, as seen in public service URLs.
REGION_CODES = {"us-central1": "uc", "us-east1": "ue", "us-east4": "uk", "us-west1": "uw",
                "europe-west1": "ew", "europe-west2": "nw", "europe-west3": "ey", "europe-west4": "ez",
                "asia-northeast1": "an", "asia-east1": "de", "australia-southeast1": "ts"}
OUTPUT_FIELDS = ("uid", "generation", "createTime", "updateTime", "deleteTime", "expireTime", "creator",
                 "lastModifier", "observedGeneration", "terminalCondition", "conditions", "latestReadyRevision",
                 "latestCreatedRevision", "trafficStatuses", "uri", "urls", "reconciling", "etag",
                 "satisfiesPzs", "threatDetectionEnabled")


def hosts(name: str, number: str, region: str) -> list[str]:
    """The run.app host names a service answers on: deterministic first."""
    out = [f"{name}-{number}.{region}.run.app"]
    code = REGION_CODES.get(region)
    if code:
        digest = hashlib.sha256(f"{number}".encode()).digest()
        tail = "".join("abcdefghijklmnopqrstuvwxyz"[b % 26] for b in digest[:10])
        out.append(f"{name}-{tail}-{code}.a.run.app")
    return out


def default_account(number: str) -> str:
    """The Compute Engine default service account, a revision's identity when none is named."""
    return f"{number}-compute@developer.gserviceaccount.com"


def with_defaults(spec: dict, number: str) -> dict:
    """The spec as Google echoes it: ingress, launch stage, template identity, concurrency,
    timeout, container port and traffic filled in when the caller left them out."""
    out = copy.deepcopy(spec)
    out.setdefault("ingress", "INGRESS_TRAFFIC_ALL")
    out.setdefault("launchStage", "GA")
    template = out.setdefault("template", {})
    template.setdefault("serviceAccount", default_account(number))
    template.setdefault("maxInstanceRequestConcurrency", 80)
    template.setdefault("timeout", "300s")
    for container in template.get("containers") or []:
        container.setdefault("ports", [{"name": "http1", "containerPort": 8080}])
    out.setdefault("traffic", [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}])
    return out


def condition(kind: str, state: str, when: str, message: str | None = None, **extra: Any) -> dict:
    out: dict[str, Any] = {"type": kind, "state": state}
    if message:
        out["message"] = message
    out["lastTransitionTime"] = when
    out.update(extra)
    return out


def service_view(rec: dict) -> dict:
    """The GoogleCloudRunV2Service of a record (state.py keeps the record)."""
    name = f"projects/{rec['projectId']}/locations/{rec['region']}/services/{rec['name']}"
    out: dict[str, Any] = {"name": name, "uid": rec["uid"], "generation": str(rec["generation"])}
    spec = with_defaults(rec["spec"], rec["number"])
    out.update({k: v for k, v in spec.items() if k not in ("name", "template", "traffic")})
    out.update(createTime=rec["createTime"], updateTime=rec["updateTime"], creator=rec["creator"],
               lastModifier=rec["lastModifier"])
    if rec.get("deleteTime"):
        out["deleteTime"] = rec["deleteTime"]
    out["template"] = spec["template"]
    out["traffic"] = spec["traffic"]
    when = rec["updateTime"]
    status = rec["status"]
    if status == "READY":
        out["observedGeneration"] = str(rec["generation"])
        out["terminalCondition"] = condition("Ready", "CONDITION_SUCCEEDED", when)
        out["conditions"] = [condition("RoutesReady", "CONDITION_SUCCEEDED", when),
                             condition("ConfigurationsReady", "CONDITION_SUCCEEDED", when)]
    elif status == "FAILED":
        out["observedGeneration"] = str(rec["generation"])
        out["terminalCondition"] = condition("Ready", "CONDITION_FAILED", when, rec.get("message"))
        out["conditions"] = [condition("ConfigurationsReady", "CONDITION_FAILED", when, rec.get("message"),
                                       revisionReason="HEALTH_CHECK_CONTAINER_ERROR")]
    else:
        out["terminalCondition"] = condition("Ready", "CONDITION_RECONCILING", when)
        out["reconciling"] = True
    if rec.get("latestReadyRevision"):
        out["latestReadyRevision"] = _revision_name(rec, rec["latestReadyRevision"])
        out["trafficStatuses"] = [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}]
    if rec.get("latestCreatedRevision"):
        out["latestCreatedRevision"] = _revision_name(rec, rec["latestCreatedRevision"])
    urls = [f"https://{h}" for h in hosts(rec["name"], rec["number"], rec["region"])]
    out["uri"] = urls[0]
    out["urls"] = urls
    out["etag"] = rec["etag"]
    return out


def _revision_name(rec: dict, revision: str) -> str:
    return f"projects/{rec['projectId']}/locations/{rec['region']}/services/{rec['name']}/revisions/{revision}"
