"""What every Cloud Storage route module needs of a request: the discovery method of a route, the
backend, where the emulator is, integer and precondition parameters, the IAM check in Storage's
words, the bucket (with Requester Pays billing) and object a request names, and its project.
Route modules: `handlers` (buckets, bucket IAM), `object_routes`, `upload_routes`, `acl`."""
from __future__ import annotations

from typing import overload

from provision.emulator.common import ANONYMOUS_OWNER
from provision.emulator.http import Ctx
from provision.emulator.storage.common import (bucket_not_found, gcs_error,
                                               object_not_found)
from provision.emulator.storage.state import Backend

API = "storage"
CONDITIONS = ("ifGenerationMatch", "ifGenerationNotMatch", "ifMetagenerationMatch", "ifMetagenerationNotMatch")


def _doc(method: str) -> tuple[str, str]:
    return ("storage.v1", f"storage.{method}")


def _st(ctx: Ctx) -> Backend:
    return ctx.world.storage


def _base(ctx: Ctx) -> str:
    """Where this emulator is, as the client reached it (selfLink, mediaLink, session URIs)."""
    return ctx.request.host_url


@overload
def _int(ctx: Ctx, key: str) -> int | None: ...
@overload
def _int(ctx: Ctx, key: str, default: int) -> int: ...
def _int(ctx: Ctx, key: str, default: int | None = None) -> int | None:
    """The integer query parameter `key` (`default` when absent or empty); 400 when it is not one."""
    raw = ctx.query.get(key)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise gcs_error(400, f"Invalid argument: {key}={raw!r} is not an integer.", "invalid") from None


def _conditions(ctx: Ctx) -> dict[str, int]:
    return {k: _int(ctx, k, 0) for k in CONDITIONS if ctx.query.get(k) not in (None, "")}   # 0: never used, k is there


def _full(ctx: Ctx) -> bool:
    return ctx.query.get("projection") == "full"


def _require(ctx: Ctx, permission: str, *, bucket: str | None = None, project: dict | None = None) -> None:
    """Under --enforce-iam, a 403 in Storage's words unless the caller holds `permission`."""
    if not ctx.world.options.enforce_iam:
        return
    principal = ctx.principal or ""
    st = _st(ctx)
    if project is not None:
        ok, what = st.holds_on_project(principal, permission, project), "Google Cloud project"
    else:
        assert bucket is not None, "_require names the bucket or the project"
        ok = st.holds(principal, permission, bucket)
        what = "Google Cloud Storage object" if permission.startswith("storage.objects.") and \
            permission != "storage.objects.list" else "Google Cloud Storage bucket"
    if not ok:
        who = principal.partition(":")[2] or principal or "Anonymous caller"
        raise gcs_error(403, f"{who} does not have {permission} access to the {what}. Permission '{permission}' "
                             "denied on resource (or it may not exist).", "forbidden")


def _bucket(ctx: Ctx, name: str) -> dict:
    rec = _st(ctx).bucket(name)
    if rec is None:
        raise bucket_not_found()
    _billing_project(ctx, rec)
    return rec


# Requester Pays (cloud.google.com/storage/docs/requester-pays): once a bucket's billing.requesterPays
# is set, a request must name a billing project (`userProject`) in good standing on which the caller
# holds serviceusage.services.use, unless the caller may bill the bucket's own project
# (resourcemanager.projects.createBillingAssignment there, as its owners may; the audit log in
# theiagen/public_health_bioinformatics#449 shows that permission checked on such a request).
# Without one, Cloud Storage answers 400 `required` "Bucket is a requester pays bucket but no user
# project provided." (googleapis/google-cloud-python#4674, forseti-security#1300,
# renchap/shrine-google_cloud_storage#56); a billing project the caller may not use is a 403
# "... does not have serviceusage.services.use access to the Google Cloud project." (hail-is/hail#9096).
# A userProject naming no project: 400 "User project specified in the request is invalid." (the
# wording is from memory of Cloud Storage's answers, not from a capture).
# Requester Pays is billing, not IAM: it holds without --enforce-iam too, where the anonymous caller
# stands for the owner of the projects it creates (ANONYMOUS_OWNER), not of everyone's.
REQUESTER_PAYS_MISSING = "Bucket is a requester pays bucket but no user project provided."


def _billing_project(ctx: Ctx, rec: dict) -> None:
    st = _st(ctx)
    user_project = ctx.query.get("userProject")
    if user_project:
        project = st.project(user_project)
        if project is None:
            raise gcs_error(400, "User project specified in the request is invalid.", "invalid")
        if ctx.world.options.enforce_iam and not st.holds_on_project(ctx.principal or "", "serviceusage.services.use",
                                                                     project):
            who = (ctx.principal or "").partition(":")[2] or "Anonymous caller"
            raise gcs_error(403, f"{who} does not have serviceusage.services.use access to the Google Cloud project. "
                                 "Permission 'serviceusage.services.use' denied on resource (or it may not exist).",
                            "forbidden")
        return
    if not (rec.get("billing") or {}).get("requesterPays"):
        return
    payer = ctx.principal or ("" if ctx.world.options.enforce_iam else ANONYMOUS_OWNER)
    owner = {"projectId": rec["projectId"], "projectNumber": rec["projectNumber"]}
    if payer and st.holds_on_project(payer, "resourcemanager.projects.createBillingAssignment", owner):
        return
    raise gcs_error(400, REQUESTER_PAYS_MISSING, "required")


def _project(ctx: Ctx) -> dict:
    key = ctx.query.get("project")
    if not key:
        raise gcs_error(400, "Required parameter: project", "required")
    project = _st(ctx).project(key)
    if project is None:
        raise gcs_error(400, f"Unknown project id: {key}", "invalid")
    return project


def _object(ctx: Ctx, bucket: str, name: str) -> dict:
    obj = _st(ctx).get_object(bucket, name)
    generation = _int(ctx, "generation")
    if obj is None or (generation is not None and generation != obj["generation"]):
        raise object_not_found(bucket, name)
    return obj


def _require_write(ctx: Ctx, bucket: str, name: str) -> None:
    """objects.create, and objects.delete too when it replaces an existing object (as on Google)."""
    _require(ctx, "storage.objects.create", bucket=bucket)
    if ctx.world.options.enforce_iam and _st(ctx).get_object(bucket, name) is not None:
        _require(ctx, "storage.objects.delete", bucket=bucket)
