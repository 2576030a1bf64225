"""`/_emulator/` control endpoints: health, reset, state dump, blob disk use and garbage collection,
and seeding what a test needs
(policies on organizations, folders and billing accounts, which no public API of ours creates).

These are the tests' control plane, not a Google API: no token and no IAM check, even under
--enforce-iam; they skip fault injection and are left out of --record. They are for local
tools, never for web pages (provision.emulator.http enforces it before any route runs): every
call needs the header `X-Emulator-Control` (e.g. `X-Emulator-Control: 1`), which a page can
only send after a CORS preflight, and preflights here are refused (403, no CORS headers);
their answers never carry CORS headers; a request marked as coming from a page (`Origin`,
`Sec-Fetch-Site`) is refused; and the Host check stops DNS-rebinding pages. Any local process
that can reach the port can still reset the world or read every resource: keep the emulator
on 127.0.0.1 (the default).
"""
from __future__ import annotations

from provision.emulator import iam
from provision.emulator.resourcemanager import audit
from provision.emulator.errors import invalid_argument
from provision.emulator.http import Ctx, Router

router = Router()
API = "emulator"


@router.route("GET", "/_emulator/health", api=API)
def health(ctx: Ctx):
    return {"status": "ok", "enforceIam": ctx.world.options.enforce_iam,
            "publicDatasets": ctx.world.options.public_datasets}


@router.route("POST", "/_emulator/reset", api=API)
def reset(ctx: Ctx):
    ctx.world.reset()
    return {"status": "reset"}


@router.route("GET", "/_emulator/state", api=API)
def state(ctx: Ctx):
    return ctx.world.dump()


@router.route("GET", "/_emulator/blobs", api=API)
def blobs(ctx: Ctx):
    """The blob store's disk use: `{"files": N, "bytes": B, "gcRuns": R}` (bytes nothing refers to
    are swept in the background soon after a delete; see provision.emulator.store.BlobStore)."""
    return {**ctx.world.blobs.usage(), "gcRuns": ctx.world.gc_runs}


@router.route("POST", "/_emulator/gc", api=API)
def gc(ctx: Ctx):
    """Sweep unreferenced blobs now; answers what was freed and what is left."""
    freed = ctx.world.collect_garbage()
    return {"freed": freed, **ctx.world.blobs.usage()}


@router.route("PUT", "/_emulator/policies/<path:resource>", api=API)
def put_policy(ctx: Ctx, resource: str):
    """Set the IAM policy of an organization, folder or billing account: `{"bindings": [...],
    "auditConfigs": [...]}`; or of a
    Healthcare dataset or DICOM store of a public-dataset stand-in (what its owner grants on request,
    e.g. access to the NIH Chest X-ray store), which no caller could set through the API."""
    if not resource.startswith(("organizations/", "folders/", "billingAccounts/")) and not _stand_in(ctx, resource):
        raise invalid_argument("Only organizations/N, folders/N and billingAccounts/X policies, and those of the "
                               "public-dataset stand-ins' datasets and stores, are seeded here.")
    body = ctx.json(validate=False)
    policy = iam.replace(ctx.world.docs.get("policy", resource) or iam.empty_policy(), {"bindings": body.get("bindings", []), "version": 3})
    # an organization's or folder's auditConfigs (Data Access logs for every project under it)
    policy = audit.with_configs(policy, audit.validate(body.get("auditConfigs")))
    ctx.world.docs.put("policy", resource, policy)
    return policy


def _stand_in(ctx: Ctx, resource: str) -> bool:
    """A dataset or DICOM store of a stand-in project (provision/emulator/publicdata.py)."""
    parts = resource.split("/")
    if len(parts) not in (6, 8) or parts[0::2] != ["projects", "locations", "datasets", "dicomStores"][:len(parts) // 2]:
        return False
    record = ctx.world.crm.lookup(parts[1])
    return bool(record and record.get("standIn"))
