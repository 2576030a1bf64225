"""Importing DICOM files from Cloud Storage into a store, once.

`POST …/dicomStores/S:import {gcsSource{uri}}` starts a dataset-level operation; its counters
(success / failure / pending) are reported as they move. Files that fail are named from Cloud
Logging (`entries:list` for the import's error entries, when the caller may read them; otherwise the
logs link says where to look). More failures than `import.max_failures` (default 0) fail the
step with the counts, the names and the link; fewer pass with a note naming them. Then QIDO
`/studies` (raw AuthorizedSession GET, `Accept: application/dicom+json`) must count at least
`smoke.min_studies` studies.

Idempotence: after a successful import the store gets the label `provision-import` = a short
hash of the URI and the matched objects (names and checksums). When the label matches the
objects that match now, there is nothing to do and no write is made.
"""
from __future__ import annotations

from collections.abc import Callable
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from provision.errors import ProvisionError, UsageError
from provision.gcp.context import Ctx
from provision.gcp.errors import OperationFailed, StepError, is_status, parse, to_provision_error
from provision.gcp.retry import NotYet
from provision.resources import bucket_reads
from provision.resources.base import Draft, Live, Reads
from provision.resources.bucket_access import ask_owner, check_foreign
from provision.resources.healthcare_names import desired_stores
from provision.resources.import_errors import counts_text, failure_report, import_errors
from provision.resources.import_sources import Source, parse_uri
from provision.resources.steps import CREATE, NOOP, Options, Step
from provision.resources.store_calls import count_studies, set_label
from provision.resources.store_calls import read as read_store
from provision.resources.upload_files import to_upload
from provision.words import plural

if TYPE_CHECKING:  # for annotations only: no import at run time
    from provision.blueprint.models import Blueprint

LABEL = "provision-import"


def require_match(ctx: Ctx, store_name: str, uri: str, objects: dict[str, dict[str, Any]] | None) -> None:
    """Refuse to start an import that would match nothing (None: not listable, so let the import say)."""
    if objects is not None and not objects:
        raise StepError(ctx.step, store_name, f"the import URI {uri} matches no object; check the bucket, the prefix "
                                              "and the ** pattern", action="import")


def fingerprint(uri: str, objects: dict[str, dict[str, Any]] | None) -> str:
    """A short, label-safe hash of the URI and the matched objects' names and checksums."""
    h = hashlib.sha256(uri.encode())
    if objects is None:
        h.update(b"\0unlisted")
    else:
        for name in sorted(objects):
            o = objects[name]
            h.update(f"\0{name}\0{o.get('crc32c') or o.get('md5') or o.get('generation')}".encode())
    return h.hexdigest()[:16]


def _counter(op: dict[str, Any]) -> dict[str, int]:
    c = (op.get("metadata") or {}).get("counter") or {}
    return {k: int(c.get(k) or 0) for k in ("success", "failure", "pending")}


def run(ctx: Ctx, store_name: str, uri: str, *, min_studies: int, fingerprint_value: str,
        access_fix: str | None = None, max_failures: int = 0) -> int:
    """Import, verify the counters and the study count, then mark the store. Returns the study count.

    Up to `max_failures` files may fail (they are named in a note); more fail the step, naming them."""
    stores = ctx.target.healthcare().projects().locations().datasets().dicomStores()
    last: dict[str, Any] = {}

    def on_poll(op: dict[str, Any]) -> None:
        c = _counter(op)
        last.update(op)
        total = c["success"] + c["failure"] + c["pending"]
        ctx.progress(f"importing {uri}: {counts_text(c)}", c["success"] + c["failure"], total or None)

    def attempt() -> dict[str, Any]:
        op = stores.import_(name=store_name, body={"gcsSource": {"uri": uri}}).execute(num_retries=0)
        return ctx.wait_healthcare(op, on_poll=on_poll)

    ctx.progress(f"importing {uri}")
    failed_op: OperationFailed | None = None
    try:
        done = ctx.call(attempt)
    except OperationFailed as exc:
        meta = exc.metadata or last.get("metadata") or {}
        c = _counter({"metadata": meta})
        if not c["failure"] or _access_problem(str(exc)):
            # The operation failed as a whole (not file by file): Google's message says why.
            logs = meta.get("logsUrl")
            msg = f"import of {uri} failed: {exc} ({counts_text(c)})"
            if logs:
                msg += f"; logs: {logs}"
            raise StepError(ctx.step, store_name, msg, google=parse(exc), fix=access_fix if _access_problem(str(exc)) else
                            "look at the logs link for the files that failed, fix them, and apply again",
                            action="import") from None
        failed_op, done = exc, {"name": exc.name, "metadata": meta}
    except Exception as exc:  # noqa: BLE001
        err = to_provision_error(exc, ctx.step, store_name, action="import")
        ge = parse(exc)
        if access_fix and ge and _access_problem(ge.message):
            raise StepError(ctx.step, store_name, f"import of {uri} failed: {ge.code_text}: {ge.message}", google=ge,
                            fix=access_fix, action="import") from None
        raise err from None
    c = _counter(done)
    if c["failure"]:
        _failed_files(ctx, store_name, uri, done, c, failed_op, max_failures)
    ctx.progress(f"{counts_text(c)}; counting studies")
    count = verify_studies(ctx, store_name, min_studies)
    set_label(ctx, store_name, LABEL, fingerprint_value)
    return count


def _failed_files(ctx: Ctx, store_name: str, uri: str, done: dict[str, Any], c: dict[str, int],
                  failed_op: OperationFailed | None, max_failures: int) -> None:
    """An import that finished with files failed: up to `max_failures` are named in a note, more fail the step."""
    meta = done.get("metadata") or {}
    errors = import_errors(ctx, done.get("name") or "", created=meta.get("createTime"), expected=c["failure"])
    report = failure_report(uri, c, errors, meta.get("logsUrl"))
    if c["failure"] > max_failures:
        bucket = parse_uri(uri).bucket
        allow = (f"raise import.max_failures (now {max_failures}) to {c['failure']} to accept them"
                 if c["success"] else "")
        raise StepError(ctx.step, store_name, f"import of {uri} finished with failures: {report}",
                        google=parse(failed_op) if failed_op else None,
                        fix=f"replace or delete these objects in gs://{bucket} (they are not DICOM, or clash with "
                            "stored instances); deleting a local file does not delete the object already "
                            "uploaded: `gcloud storage rm gs://…`" + (f"; or {allow}" if allow else "")
                            + "; then apply again", action="import")
    ctx.note(f"import of {uri}: {c['failure']} file(s) failed and were left out (import.max_failures: "
             f"{max_failures}): {report}")


def _access_problem(message: str) -> bool:
    m = message.lower()
    return "permission" in m or "storage" in m and "denied" in m or "forbidden" in m


def verify_studies(ctx: Ctx, store_name: str, min_studies: int) -> int:
    """Wait (briefly, with backoff) until the store shows at least `min_studies` studies."""
    seen = {"n": 0}

    def check() -> int:
        n = count_studies(ctx, store_name)
        seen["n"] = n
        if n < min_studies:
            raise NotYet(f"the store shows {n} of at least {plural(min_studies, 'study')}")
        return n

    try:
        return ctx.call(check, within=ctx.target.settle_s)
    except NotYet:
        raise StepError(ctx.step, store_name,
                        f"after the import the store holds {plural(seen['n'], 'study')}; smoke.min_studies asks for at least {min_studies}",
                        fix="check that the import URI matches your DICOM files (`**` crosses folders), or lower "
                            "smoke.min_studies", action="verify") from None


# ---------------------------------------------------------------------------- kind
KIND = "dicom-import"
MISSING, FORBIDDEN, BILLING = "missing", "forbidden", "billing"
USAGE_ROLE = "roles/serviceusage.serviceUsageConsumer"


@dataclass
class Listing:
    """What plan learned of an import's source bucket: the matching objects (or MISSING, FORBIDDEN,
    BILLING: you may not bill the blueprint's project; None: not listed, see `deferred`), and whether
    the bucket is Requester Pays, with the project provision named as its billing project."""

    found: dict[str, dict[str, Any]] | str | None
    requester_pays: bool = False
    user_project: str | None = None
    deferred: bool = False   # Requester Pays, and the project to bill does not exist yet


def _requester_pays(ctx: Ctx, bucket: str) -> bool | None:
    """The bucket's metadata: `billing.requesterPays`. A Requester Pays bucket of someone else answers
    a metadata read without a billing project with Cloud Storage's 400 (googleapis/python-storage#479:
    it "can not detect if bucket is requester-pays without using a user project"), which says as
    much. None when the metadata is hidden (403: a public bucket grants objects, not buckets.get)."""
    client = ctx.target.storage()
    try:
        b = ctx.call(lambda: client.get_bucket(bucket, retry=None))
    except Exception as exc:  # noqa: BLE001
        if bucket_reads.is_requester_pays(exc):
            return True
        if is_status(exc, 403, 404):
            return None
        raise
    return bool(b.requester_pays)


def _covered_by_upload(bp: Blueprint, src: Source) -> bool:
    """The URI reads the blueprint's own bucket under the upload's prefix: the upload kind's
    listing (`remote`) already holds every object it can match."""
    b = bp.bucket
    up = b.upload if b else None
    return bool(b and up and src.bucket == b.name and src.prefix.startswith(up.prefix or ""))


def _listing(ctx: Ctx, src: Source, billing_project: str | None, rp: bool | None = None) -> Listing:
    """The matching objects, or MISSING / FORBIDDEN / BILLING when the bucket cannot be listed.

    A Requester Pays bucket (`rp`, known from its metadata; or told by the listing's own 400) is
    listed with `userProject` = `billing_project` (the blueprint's project; None while it does not
    exist: the listing then waits for apply, `deferred`)."""
    user_project = billing_project if rp else None
    if rp and not billing_project:
        return Listing(None, True, deferred=True)
    try:
        try:
            objs = bucket_reads.list_objects(ctx, src.bucket, src.prefix, user_project=user_project)
        except Exception as exc:  # noqa: BLE001
            if rp or not bucket_reads.is_requester_pays(exc):
                raise
            rp = True
            if not billing_project:
                return Listing(None, True, deferred=True)
            user_project = billing_project
            objs = bucket_reads.list_objects(ctx, src.bucket, src.prefix, user_project=user_project)
    except Exception as exc:  # noqa: BLE001
        if is_status(exc, 404):
            return Listing(MISSING, bool(rp), user_project)
        if is_status(exc, 403):
            billing = user_project and "serviceusage.services.use" in str(exc)
            return Listing(BILLING if billing else FORBIDDEN, bool(rp), user_project)
        raise
    rx = src.regex()
    return Listing({n: o for n, o in objs.items() if rx.match(n)}, bool(rp), user_project)


def _list_or_why(ctx: Ctx, src: Source, billing_project: str | None = None) -> Listing:
    """What plan learns of an import's source: Requester Pays first from the bucket's metadata
    (hidden metadata leaves it to the listing's 400), then the listing."""
    return _listing(ctx, src, billing_project, _requester_pays(ctx, src.bucket))


def matched_objects(ctx: Ctx, src: Source, billing_project: str | None = None) -> dict[str, dict[str, Any]] | None:
    """Objects the URI matches now (name -> checksums), or None when we may not list the bucket.
    A Requester Pays bucket is listed again with `billing_project` as its userProject."""
    found = _listing(ctx, src, billing_project).found
    return found if isinstance(found, dict) else None


def reads(bp: Blueprint, live: Live, phase: int) -> Reads:
    out: Reads = {}
    if live.opts.destroy:
        return out
    own = bp.bucket.name if bp.bucket else None
    if phase == 2:
        for s in bp.dicom_stores:
            if not s.import_:
                continue
            src = parse_uri(s.import_.uri)
            if src.bucket == own and not (live.own_bucket.exists and live.own_bucket.accessible):
                continue   # still to be created (or refused by the bucket kind)
            if _covered_by_upload(bp, src):
                continue   # the upload kind's listing covers it
            payer = bp.project.id if live.project is not None else None
            out[f"import_objects:{s.id}"] = lambda ctx, src=src, payer=payer: _list_or_why(ctx, src, payer)  # type: ignore[misc]  # a lambda with a bound default (mypy cannot infer it)
    if phase == 3:
        for s, name in zip(bp.dicom_stores, desired_stores(bp), strict=True):
            st = live.store(name)
            if s.import_ and st is not None and st.labels.get(LABEL):
                out[f"studies:{name}"] = lambda ctx, n=name: count_studies(ctx, n, stop_at=bp.smoke.min_studies)  # type: ignore[misc]  # a lambda with a bound default (mypy cannot infer it)
    return out


def _objects(bp: Blueprint, live: Live, s: Any) -> dict[str, dict[str, Any]] | str | None:
    """What the URI matches now: objects, MISSING, FORBIDDEN, or None (the bucket is still to be created)."""
    src = parse_uri(s.import_.uri)
    if bp.bucket and src.bucket == bp.bucket.name:
        if not live.own_bucket.exists or live.bucket_replace:
            return None
        if _covered_by_upload(bp, src):
            rx = src.regex()
            return {n: o for n, o in live.remote.items() if rx.match(n)}
    found = live.get(f"import_objects:{s.id}")
    return found.found if isinstance(found, Listing) else found


def diff(bp: Blueprint, live: Live, opts: Options, draft: Draft) -> None:
    if opts.destroy:
        return
    unknown = set(opts.reimport) - {s.id for s in bp.dicom_stores if s.import_}
    if unknown:
        valid = ", ".join(s.id for s in bp.dicom_stores if s.import_) or "none"
        raise UsageError(f"--reimport {', '.join(sorted(unknown))}: no such store with an import in the blueprint "
                         f"(stores with an import: {valid})")
    pending = to_upload(live)
    own = bp.bucket.name if bp.bucket else None
    for s, name in zip(bp.dicom_stores, desired_stores(bp), strict=True):
        if not s.import_:
            continue
        uri = s.import_.uri
        src = parse_uri(uri)
        objects = _objects(bp, live, s)
        _refuse_unreadable(bp, s.id, src, uri, objects)
        listing = live.get(f"import_objects:{s.id}")
        matched = objects if isinstance(objects, dict) else None   # its strings (MISSING, ...) raised above
        billed = _billing_note(bp, src, listing, matched)
        if billed:
            draft.note(billed)
        rx = src.regex()
        coming = [f for f in pending if f.name and rx.match(f.name)] if src.bucket == own else []
        state = live.store(name)
        fp = fingerprint(uri, matched)
        done = state is not None and state.labels.get(LABEL) == fp and not coming
        why = ""
        if done and s.id in opts.reimport:
            done, why = False, " (--reimport)"
        elif done and live.has(f"studies:{name}"):
            n = live.get(f"studies:{name}", 0)
            if n < bp.smoke.min_studies:
                done = False
                why = (f" again: the store holds {plural(n, 'study')}, smoke.min_studies asks for "
                       f"{bp.smoke.min_studies}")
        deferred = isinstance(listing, Listing) and listing.deferred
        if not done and not coming and not objects and not deferred:
            nothing = _why_nothing(bp, live, src, uri)
            if nothing:
                raise ProvisionError(f"import:{s.id}: {nothing}")
        grant_bucket = src.bucket == own and bucket_reads.is_ours(bp, live)
        deps = [f"store:{s.id}", "service-agent"]
        if src.bucket == own:
            deps += ["upload", "bucket-iam" if grant_bucket else "bucket"]
        if deferred:
            now = f" (objects counted at apply: the bucket is Requester Pays, and project {bp.project.id}, which pays " \
                  "for the listing, does not exist yet)"
        elif objects is None:   # the blueprint's own bucket, still to be created (another is listed, or deferred)
            now = " (after the upload)" if bp.bucket and bp.bucket.upload else " (the bucket does not exist yet)"
        else:
            now = f" ({len(coming) or len(objects)} object(s) match{' after the upload' if coming else ' now'})"
        if isinstance(listing, Listing) and listing.requester_pays:
            now += f"; Requester Pays: reads billed to project {bp.project.id}"
        draft.add(Step(f"import:{s.id}", KIND, name, NOOP if done else CREATE, [] if done else [f"import {uri}{why}{now}"],
                       deps, None if done else _run(bp, s, name, grant_bucket, force=bool(why))))


def _refuse_unreadable(bp: Blueprint, store_id: str, src: Source, uri: str, objects: Any) -> None:
    """The plan stops when the import's source bucket is missing, cannot be listed, or may not be billed to the project."""
    if objects == MISSING:
        raise ProvisionError(f"import:{store_id}: the import source bucket gs://{src.bucket} does not exist; "
                             "fix dicom_stores[].import.uri, or create the bucket")
    if objects == FORBIDDEN:
        raise ProvisionError(f"import:{store_id}: you cannot list gs://{src.bucket} (403), so provision cannot check "
                             f"that {uri} matches files; ask its owner for roles/storage.objectViewer for "
                             "yourself (and for the project's Healthcare service agent)")
    if objects == BILLING:
        raise ProvisionError(f"import:{store_id}: gs://{src.bucket} is Requester Pays, and you may not bill project "
                             f"{bp.project.id} for reading it (Cloud Storage answered 403: serviceusage.services.use);"
                             f" ask for {USAGE_ROLE} on project {bp.project.id}, then plan again")


def _billing_note(bp: Blueprint, src: Source, listing: Any, objects: dict[str, dict[str, Any]] | None) -> str:
    """What a Requester Pays source costs, and whom: said in the plan, before anything is read."""
    if not isinstance(listing, Listing) or not listing.requester_pays:
        return ""
    pid = bp.project.id
    if objects:
        size = sum(int(o.get("size") or 0) for o in objects.values())
        what = f"the import reads the {len(objects)} matching object(s) ({_bytes(size)})"
    else:
        what = "the import reads the matching objects"
    return (f"gs://{src.bucket} is Requester Pays (billing.requesterPays): project {pid} is billed for reading it. "
            f"provision lists it with userProject={pid} (you need serviceusage.services.use there, e.g. {USAGE_ROLE}); "
            f"{what}, and the Healthcare import bills those reads to the store's project, {pid} (the import request "
            "takes no userProject: the project's Healthcare service agent reads the bucket). Billed: Cloud Storage "
            "operations (one list call per 1,000 objects, one read per object) and network egress when the bucket's "
            f"location differs from the dataset's ({bp.dataset.location}); storing the bucket stays with its owner.")


def _bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _why_nothing(bp: Blueprint, live: Live, src: Source, uri: str) -> str:
    """Why an import would match no object ("" when it will, after the upload)."""
    local = live.local
    if bp.bucket and src.bucket == bp.bucket.name and bp.bucket.upload:
        rx = src.regex()
        if any(f.name and rx.match(f.name) for f in local):
            return ""
        sample = ", ".join(f.name for f in local[:3]) or "no file at all"
        return (f"{uri} matches none of the {len(local)} file(s) the upload puts in the bucket ({sample}); fix the "
                "pattern (`**` crosses folders; the match is case-sensitive) or the upload prefix")
    if bp.bucket and src.bucket == bp.bucket.name and not live.own_bucket.exists:
        return (f"{uri} names the new bucket gs://{src.bucket}, which nothing uploads into: add bucket.upload "
                "(a local folder of DICOM files), or point import.uri at a bucket that holds them")
    return (f"{uri} matches no object in gs://{src.bucket} now; check the bucket, the prefix and the ** pattern "
            "(`gcloud storage ls` shows what is there)")


def _run(bp: Blueprint, s: Any, sname: str, own: bool, *, force: bool) -> Callable[[Ctx], Any]:
    uri = s.import_.uri
    src = parse_uri(uri)
    min_studies = bp.smoke.min_studies

    def run_import(ctx: Ctx) -> str:
        objs = matched_objects(ctx, src, billing_project=bp.project.id)
        fp = fingerprint(uri, objs)
        st = read_store(ctx, sname)
        if not force and st is not None and st.labels.get(LABEL) == fp:
            return "already imported (label matches the objects)"
        require_match(ctx, sname, uri, objs)
        agent = ctx.facts.agent or ""
        fix = None
        if not own:
            fix = ask_owner(src.bucket, agent)
            if agent and check_foreign(ctx, src.bucket, agent) is False:
                ctx.note(f"the service agent has no read access to gs://{src.bucket}; the import will likely fail")
        n = run(ctx, sname, uri, min_studies=min_studies, fingerprint_value=fp, access_fix=fix,
                max_failures=s.import_.max_failures)
        return f"{plural(n, 'study')} in the store"

    return run_import
