"""Cloud Logging v2 `entries:list` over HTTP (POST https://logging.googleapis.com/v2/entries:list).

Each `projects/P` in resourceNames (plus the deprecated projectIds) must exist and the caller
must hold `logging.logEntries.list` on it (roles/logging.viewer, roles/viewer and up); as
elsewhere in the emulator, a missing project and a denial look the same (403). Logging is one
of the services a new project has enabled by default, so SERVICE_DISABLED only follows a
disable. Other resource kinds (folders, organizations, billing accounts, log views) are not
served (501).
"""
from __future__ import annotations

from provision.emulator.common import page
from provision.emulator.errors import invalid_argument, permission_denied
from provision.emulator.http import Ctx, Router
from provision.emulator.logging.state import MAX_RESOURCES, PAGE_DEFAULT, PAGE_MAX, SERVICE, Logging

router = Router()
API = "logging"
DOC = "logging.v2"
PERMISSION = "logging.logEntries.list"


def _projects(ctx: Ctx, body: dict) -> list[str]:
    names = list(body.get("resourceNames") or []) + [f"projects/{p}" for p in body.get("projectIds") or []]
    if not names:
        raise invalid_argument("resourceNames is required: name at least one parent, e.g. projects/PROJECT_ID.",
                               [("resource_names", "required")])
    if len(names) > MAX_RESOURCES:
        raise invalid_argument(f"At most {MAX_RESOURCES} resourceNames may be given, not {len(names)}.",
                               [("resource_names", f"at most {MAX_RESOURCES}")])
    crm, usage = ctx.world.crm, ctx.world.serviceusage
    out = []
    for name in names:
        parts = str(name).split("/")
        if len(parts) != 2 or parts[0] != "projects" or not parts[1]:
            raise Logging.unsupported(str(name))
        record = crm.lookup(parts[1])
        if record is None or record.get("state", "ACTIVE") != "ACTIVE":
            raise permission_denied(f"Permission '{PERMISSION}' denied on resource '{name}' (or it may not exist).")
        usage.require_enabled(record, SERVICE)
        ctx.require(PERMISSION, name, crm.policy_chain(record["projectId"]))
        out.append(record["projectId"])   # a project number lists the same entries as its ID
    return out


# Data Access audit entries are private logs: "to view the data_access log stream ... you need the
# Private Logs Viewer role (roles/logging.privateLogViewer)" (Cloud docs, enable-audit-logs). A
# caller without it gets the other entries; leaving the private ones out, rather than a 403, is
# our choice (the Logs Explorer shows them absent; no capture of the API's answer was found).
PRIVATE = "logging.privateLogEntries.list"
PRIVATE_LOGS = ("cloudaudit.googleapis.com%2Fdata_access", "cloudaudit.googleapis.com%2Faccess_transparency")


def _private(entry: dict) -> bool:
    return entry.get("logName", "").rsplit("/", 1)[-1] in PRIVATE_LOGS


@router.route("POST", "/v2/entries:list", api=API, discovery=(DOC, "logging.entries.list"))
def list_entries(ctx: Ctx):
    body = ctx.json()
    size = body.get("pageSize")
    if size is not None and int(size) < 0:
        raise invalid_argument("pageSize must not be negative.", [("page_size", "must not be negative")])
    projects = _projects(ctx, body)
    found = ctx.world.logging.entries(projects, body.get("filter"), body.get("orderBy"))
    hidden = {p for p in projects if not ctx.allows(PRIVATE, ctx.world.crm.policy_chain(p))}
    if hidden:
        found = [e for e in found if not _private(e) or e["logName"].split("/")[1] not in hidden]
    chunk, token = page({"pageSize": size, "pageToken": body.get("pageToken")}, found,
                        default_size=PAGE_DEFAULT, max_size=PAGE_MAX)
    out: dict = {"entries": chunk} if chunk else {}
    if token:
        out["nextPageToken"] = token
    return out
