"""Importing DICOM files from Cloud Storage into a store, once.

`POST …/dicomStores/S:import {gcsSource{uri}}` starts a dataset-level operation; its counters
(success / failure / pending) are reported as they move. Files that fail are named from Cloud
Logging (`entries:list` on the import's error log, when the caller may read it; otherwise the
logs link says where to look). More failures than `import.max_failures` (default 0) fail the
step with the counts, the names and the link; fewer pass with a note naming them. Then QIDO
`/studies` (raw AuthorizedSession GET, `Accept: application/dicom+json`) must count at least
`smoke.min_studies` studies.

Idempotence: after a successful import the store gets the label `provision-import` = a short
hash of the URI and the matched objects (names and checksums). When the label matches the
objects that match now, there is nothing to do and no write is made.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from provision.errors import ProvisionError
from provision.gcp.context import Ctx
from provision.gcp.errors import (RPC_CODES, OperationFailed, StepError, is_service_disabled, parse,
                                  raise_for_status, to_provision_error)
from provision.gcp.retry import Cancelled, NotYet
from provision.resources import bucket as bucket_mod
from provision.resources import dicom_store
from provision.resources.base import Draft, Live, Reads
from provision.resources.steps import CREATE, NOOP, Options, Step
from provision.words import plural

LABEL = "provision-import"
QIDO_PAGE = 1000
QIDO_PAGES = 1000
SHOW_FAILED = 10      # failed objects named in a message; the rest are counted ("and K more")
LOG_PAGE = 100        # entries read from Cloud Logging (one page) to find those names
# The Healthcare import error log. Its jsonPayload is an ImportDicomLogEntry {source, error}
# (googleapis google/cloud/healthcare/logging/dicom.proto; Google's logging how-to shows one:
# error {code: 3, message: "empty DICOM instance found"}, source "gs://…"). The log ID is not
# in any public text we found; it follows Healthcare's documented
# `healthcare.googleapis.com%2Fquery_accessible_data`. Should Google name it otherwise, the
# query finds nothing and the message falls back to the logs link.
IMPORT_ERRORS_LOG = "healthcare.googleapis.com%2Fimport_dicom_errors"
LOGS_ROLE = "roles/logging.viewer"


@dataclass
class Source:
    uri: str
    bucket: str
    glob: str

    @property
    def prefix(self) -> str:
        """The literal part of the object pattern, before any wildcard (used as the list prefix)."""
        m = re.search(r"[*?\[]", self.glob)
        return self.glob[: m.start()] if m else self.glob

    def regex(self) -> re.Pattern:
        out = []
        i = 0
        g = self.glob
        while i < len(g):
            if g.startswith("**", i):
                out.append(".*")
                i += 2
            elif g[i] == "*":
                out.append("[^/]*")
                i += 1
            elif g[i] == "?":
                out.append("[^/]")
                i += 1
            else:
                out.append(re.escape(g[i]))
                i += 1
        return re.compile("".join(out) + r"\Z")


def parse_uri(uri: str) -> Source:
    rest = uri.removeprefix("gs://")
    bucket, _, glob = rest.partition("/")
    return Source(uri, bucket, glob)


def matched_objects(ctx: Ctx, src: Source, billing_project: str | None = None) -> dict[str, dict] | None:
    """Objects the URI matches now (name -> checksums), or None when we may not list the bucket.
    A Requester Pays bucket is listed again with `billing_project` as its userProject."""
    from provision.gcp.errors import is_status

    try:
        try:
            objs = bucket_mod.list_objects(ctx, src.bucket, src.prefix)
        except Exception as exc:  # noqa: BLE001
            if not (billing_project and bucket_mod.is_requester_pays(exc)):
                raise
            objs = bucket_mod.list_objects(ctx, src.bucket, src.prefix, user_project=billing_project)
    except Exception as exc:  # noqa: BLE001
        if is_status(exc, 403, 404) or bucket_mod.is_requester_pays(exc):
            return None
        raise
    rx = src.regex()
    return {n: o for n, o in objs.items() if rx.match(n)}


def require_match(ctx: Ctx, store_name: str, uri: str, objects: dict[str, dict] | None) -> None:
    """Refuse to start an import that would match nothing (None: not listable, so let the import say)."""
    if objects is not None and not objects:
        raise StepError(ctx.step, store_name, f"the import URI {uri} matches no object; check the bucket, the prefix "
                                              "and the ** pattern", action="import")


def fingerprint(uri: str, objects: dict[str, dict] | None) -> str:
    """A short, label-safe hash of the URI and the matched objects' names and checksums."""
    h = hashlib.sha256(uri.encode())
    if objects is None:
        h.update(b"\0unlisted")
    else:
        for name in sorted(objects):
            o = objects[name]
            h.update(f"\0{name}\0{o.get('crc32c') or o.get('md5') or o.get('generation')}".encode())
    return h.hexdigest()[:16]


def _counter(op: dict) -> dict[str, int]:
    c = (op.get("metadata") or {}).get("counter") or {}
    return {k: int(c.get(k) or 0) for k in ("success", "failure", "pending")}


def _counts_text(c: dict[str, int]) -> str:
    return f"{c['success']} imported, {c['failure']} failed" + (f", {c['pending']} pending" if c.get("pending") else "")


# ---------------------------------------------------------------------------- naming failed objects
@dataclass
class ImportErrors:
    """What Cloud Logging says about an import's failed objects: (gs:// source, error) pairs, in
    name order, and `unavailable`, why they could not be read ("" when they were)."""

    failed: list[tuple[str, str]] = field(default_factory=list)
    unavailable: str = ""


def _log_filter(project: str, op_name: str, created: str | None) -> str:
    """The entries:list filter for one import's error entries.

    `operation.id:` (has) with the bare operation number matches whether Google puts the full
    operation name there (as its documented query_accessible_data entry does) or only the ID.
    The timestamp bound, a minute before the operation began, keeps the query fast, as the
    API's description advises."""
    terms = [f'logName="projects/{project}/logs/{IMPORT_ERRORS_LOG}"', f'operation.id:"{op_name.rsplit("/", 1)[-1]}"']
    since = _minus_a_minute(created)
    if since:
        terms.append(f'timestamp>="{since}"')
    return " AND ".join(terms)


def _minus_a_minute(stamp: str | None) -> str | None:
    """An RFC 3339 time (`Z` or an offset; nanoseconds allowed) a minute earlier, in UTC; None if unreadable."""
    m = re.match(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.\d+)?(Z|[+-]\d{2}:\d{2})?$", stamp or "")
    if not m:
        return None
    when = datetime.fromisoformat(m.group(1) + (m.group(2) or "Z").replace("Z", "+00:00"))
    return (when - timedelta(minutes=1)).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def import_errors(ctx: Ctx, op_name: str, *, created: str | None = None, expected: int = 1) -> ImportErrors:
    """The objects an import failed on, with their errors, from Cloud Logging
    (POST https://logging.googleapis.com/v2/entries:list). Entries may lag the operation's end:
    while none shows and `expected` > 0, it asks again for up to `target.logs_lag_s`. A caller
    who may not read the logs (403), a disabled Logging API, or any other failure gives an
    `unavailable` reason instead of an error: naming files is a courtesy, never the failure."""
    project = op_name.split("/")[1] if op_name.startswith("projects/") else ""
    body = {"resourceNames": [f"projects/{project}"], "filter": _log_filter(project, op_name, created),
            "orderBy": "timestamp asc", "pageSize": LOG_PAGE}

    def read() -> dict[str, str]:
        resp = ctx.target.logging().entries().list(body=body).execute(num_retries=0)
        found: dict[str, str] = {}
        for entry in resp.get("entries") or []:
            payload = entry.get("jsonPayload") or {}
            source = payload.get("source")
            if isinstance(source, str) and source:
                err = payload.get("error") or {}
                found.setdefault(source, str(err.get("message") or RPC_CODES.get(err.get("code"), "failed")))
        if not found and expected:
            raise NotYet("the import's error entries are not in Cloud Logging yet")
        return found

    try:
        found = ctx.call(read, within=ctx.target.logs_lag_s)
    except NotYet:
        return ImportErrors(unavailable="Cloud Logging shows no error entry for this import")
    except Cancelled:
        raise
    except Exception as exc:  # noqa: BLE001 - see the docstring
        ge = parse(exc)
        if ge is not None and is_service_disabled(ge):
            why = f"the Cloud Logging API is disabled in project {project}"
        elif ge is not None and ge.http_status == 403:
            why = f"you may not read project {project}'s logs (logging.logEntries.list; ask for {LOGS_ROLE})"
        else:
            why = f"reading Cloud Logging failed ({ge.code_text + ': ' + ge.message if ge else exc})"
        return ImportErrors(unavailable=why)
    return ImportErrors(sorted(found.items()))


def _failed_lines(errors: ImportErrors, failures: int) -> str:
    """The failed objects, one per line (at most SHOW_FAILED, then "and K more")."""
    shown = errors.failed[:SHOW_FAILED]
    lines = [f"\n    {source}: {message}" for source, message in shown]
    if failures > len(shown):
        lines.append(f"\n    ... and {failures - len(shown)} more")
    return "".join(lines)


def _failure_report(uri: str, c: dict[str, int], errors: ImportErrors, logs: str | None) -> str:
    text = _counts_text(c)
    if errors.failed:
        text += ":" + _failed_lines(errors, c["failure"])
    elif errors.unavailable:
        text += f"; the failed files are not named here: {errors.unavailable}"
    if logs:
        text += ("\n  logs: " if errors.failed else "; logs: ") + logs
    return text


def run(ctx: Ctx, store_name: str, uri: str, *, min_studies: int, fingerprint_value: str,
        access_fix: str | None = None, max_failures: int = 0) -> int:
    """Import, verify the counters and the study count, then mark the store. Returns the study count.

    Up to `max_failures` files may fail (they are named in a note); more fail the step, naming them."""
    stores = ctx.target.healthcare().projects().locations().datasets().dicomStores()
    last: dict = {}

    def on_poll(op: dict) -> None:
        c = _counter(op)
        last.update(op)
        total = c["success"] + c["failure"] + c["pending"]
        ctx.progress(f"importing {uri}: {_counts_text(c)}", c["success"] + c["failure"], total or None)

    def attempt() -> dict:
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
            msg = f"import of {uri} failed: {exc} ({_counts_text(c)})"
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
        meta = done.get("metadata") or {}
        errors = import_errors(ctx, done.get("name") or "", created=meta.get("createTime"), expected=c["failure"])
        report = _failure_report(uri, c, errors, meta.get("logsUrl"))
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
    ctx.progress(f"{_counts_text(c)}; counting studies")
    count = verify_studies(ctx, store_name, min_studies)
    dicom_store.set_label(ctx, store_name, LABEL, fingerprint_value)
    return count


def _access_problem(message: str) -> bool:
    m = message.lower()
    return "permission" in m or "storage" in m and "denied" in m or "forbidden" in m


def count_studies(ctx: Ctx, store_name: str, stop_at: int | None = None) -> int:
    """QIDO /studies, paged, as OHIF asks it (application/dicom+json)."""
    session = ctx.target.session()
    url = f"{ctx.target.root('healthcare')}/v1/{store_name}/dicomWeb/studies"

    def page(offset: int) -> int:
        r = session.get(url, params={"limit": QIDO_PAGE, "offset": offset, "includefield": "0020000D"},
                        headers={"Accept": "application/dicom+json"}, timeout=60)
        if r.status_code == 204:
            return 0
        raise_for_status(r)
        body = r.json() if r.content.strip() else []
        return len(body) if isinstance(body, list) else 0

    total = 0
    for i in range(QIDO_PAGES):
        n = ctx.call(lambda: page(i * QIDO_PAGE))
        total += n
        if n < QIDO_PAGE or (stop_at is not None and total >= stop_at):
            break
    return total


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

    found: dict[str, dict] | str | None
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
        if bucket_mod.is_requester_pays(exc):
            return True
        from provision.gcp.errors import is_status

        if is_status(exc, 403, 404):
            return None
        raise
    return bool(b.requester_pays)


def source_buckets(bp: Any) -> list[str]:
    """The buckets the blueprint's imports read, in order, once each."""
    return list(dict.fromkeys(parse_uri(s.import_.uri).bucket for s in bp.dicom_stores if s.import_))


def _covered_by_upload(bp: Any, src: Source) -> bool:
    """The URI reads the blueprint's own bucket under the upload's prefix: the upload kind's
    listing (`remote`) already holds every object it can match."""
    up = bp.bucket.upload if bp.bucket else None
    return bool(up and src.bucket == bp.bucket.name and src.prefix.startswith(up.prefix or ""))


def _list_or_why(ctx: Ctx, src: Source, billing_project: str | None = None) -> Listing:
    """The matching objects, or MISSING / FORBIDDEN / BILLING when the bucket cannot be listed.

    Requester Pays: detected from the bucket's metadata (or, when the metadata is hidden, from the
    listing's own 400), then listed with `userProject` = `billing_project` (the blueprint's
    project, None while it does not exist: the listing then waits for apply)."""
    from provision.gcp.errors import is_status

    rp = _requester_pays(ctx, src.bucket)
    user_project = billing_project if rp else None
    if rp and not billing_project:
        return Listing(None, True, deferred=True)
    try:
        try:
            objs = bucket_mod.list_objects(ctx, src.bucket, src.prefix, user_project=user_project)
        except Exception as exc:  # noqa: BLE001
            if rp or not bucket_mod.is_requester_pays(exc):
                raise
            rp = True
            if not billing_project:
                return Listing(None, True, deferred=True)
            user_project = billing_project
            objs = bucket_mod.list_objects(ctx, src.bucket, src.prefix, user_project=user_project)
    except Exception as exc:  # noqa: BLE001
        if is_status(exc, 404):
            return Listing(MISSING, bool(rp), user_project)
        if is_status(exc, 403):
            billing = user_project and "serviceusage.services.use" in str(exc)
            return Listing(BILLING if billing else FORBIDDEN, bool(rp), user_project)
        raise
    rx = src.regex()
    return Listing({n: o for n, o in objs.items() if rx.match(n)}, bool(rp), user_project)


def reads(bp: Any, live: Live, phase: int) -> Reads:
    out: Reads = {}
    if live.opts.destroy:
        return out
    own = bp.bucket.name if bp.bucket else None
    state = live.get("bucket")
    if phase == 2:
        for s in bp.dicom_stores:
            if not s.import_:
                continue
            src = parse_uri(s.import_.uri)
            if src.bucket == own and not (state.exists and state.accessible):
                continue   # still to be created (or refused by the bucket kind)
            if _covered_by_upload(bp, src):
                continue   # the upload kind's listing covers it
            payer = bp.project.id if live.project is not None else None
            out[f"import_objects:{s.id}"] = lambda ctx, src=src, payer=payer: _list_or_why(ctx, src, payer)
    if phase == 3:
        for s, name in zip(bp.dicom_stores, dicom_store.desired_names(bp)):
            st = live.get(f"store:{name}")
            if s.import_ and st is not None and st.labels.get(LABEL):
                out[f"studies:{name}"] = lambda ctx, n=name: count_studies(ctx, n, stop_at=bp.smoke.min_studies)
    return out


def _objects(bp: Any, live: Live, s: Any) -> dict[str, dict] | str | None:
    """What the URI matches now: objects, MISSING, FORBIDDEN, or None (the bucket is still to be created)."""
    src = parse_uri(s.import_.uri)
    if bp.bucket and src.bucket == bp.bucket.name:
        state = live.get("bucket")
        if not state.exists or live.get("bucket_replace", False):
            return None
        if _covered_by_upload(bp, src):
            rx = src.regex()
            return {n: o for n, o in live.get("remote", {}).items() if rx.match(n)}
    found = live.get(f"import_objects:{s.id}")
    return found.found if isinstance(found, Listing) else found


def diff(bp: Any, live: Live, opts: Options, draft: Draft) -> None:
    if opts.destroy:
        return
    from provision.resources import bucket as bucket_kind
    from provision.resources import upload

    unknown = set(opts.reimport) - {s.id for s in bp.dicom_stores if s.import_}
    if unknown:
        from provision.errors import UsageError

        valid = ", ".join(s.id for s in bp.dicom_stores if s.import_) or "none"
        raise UsageError(f"--reimport {', '.join(sorted(unknown))}: no such store with an import in the blueprint "
                         f"(stores with an import: {valid})")
    pending = upload.pending(live)
    own = bp.bucket.name if bp.bucket else None
    for s, name in zip(bp.dicom_stores, dicom_store.desired_names(bp)):
        if not s.import_:
            continue
        uri = s.import_.uri
        src = parse_uri(uri)
        objects = _objects(bp, live, s)
        if objects == MISSING:
            raise ProvisionError(f"import:{s.id}: the import source bucket gs://{src.bucket} does not exist; "
                                 "fix dicom_stores[].import.uri, or create the bucket")
        if objects == FORBIDDEN:
            raise ProvisionError(f"import:{s.id}: you cannot list gs://{src.bucket} (403), so provision cannot check "
                                 f"that {uri} matches files; ask its owner for roles/storage.objectViewer for "
                                 "yourself (and for the project's Healthcare service agent)")
        if objects == BILLING:
            raise ProvisionError(f"import:{s.id}: gs://{src.bucket} is Requester Pays, and you may not bill project "
                                 f"{bp.project.id} for reading it (Cloud Storage answered 403: serviceusage.services.use);"
                                 f" ask for {USAGE_ROLE} on project {bp.project.id}, then plan again")
        listing = live.get(f"import_objects:{s.id}")
        billed = _billing_note(bp, src, listing, objects if isinstance(objects, dict) else None)
        if billed:
            draft.note(billed)
        rx = src.regex()
        coming = [f for f in pending if f.name and rx.match(f.name)] if src.bucket == own else []
        state = live.get(f"store:{name}")
        fp = fingerprint(uri, objects if objects is not None else None)
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
        grant_bucket = src.bucket == own and bucket_kind.is_ours(bp, live)
        deps = [f"store:{s.id}", "service-agent"]
        if src.bucket == own:
            deps += ["upload", "bucket-iam" if grant_bucket else "bucket"]
        if deferred:
            now = f" (objects counted at apply: the bucket is Requester Pays, and project {bp.project.id}, which pays " \
                  "for the listing, does not exist yet)"
        elif objects is None:
            now = " (after the upload)" if bp.bucket.upload else " (the bucket does not exist yet)"
        else:
            now = f" ({len(coming) or len(objects)} object(s) match{' after the upload' if coming else ' now'})"
        if isinstance(listing, Listing) and listing.requester_pays:
            now += f"; Requester Pays: reads billed to project {bp.project.id}"
        draft.add(Step(f"import:{s.id}", KIND, name, NOOP if done else CREATE, [] if done else [f"import {uri}{why}{now}"],
                       deps, None if done else _run(bp, s, name, grant_bucket, force=bool(why))))


def _billing_note(bp: Any, src: Source, listing: Any, objects: dict[str, dict] | None) -> str:
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


def _bytes(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _why_nothing(bp: Any, live: Live, src: Source, uri: str) -> str:
    """Why an import would match no object ("" when it will, after the upload)."""
    local = live.get("local", [])
    if bp.bucket and src.bucket == bp.bucket.name and bp.bucket.upload:
        rx = src.regex()
        if any(f.name and rx.match(f.name) for f in local):
            return ""
        sample = ", ".join(f.name for f in local[:3]) or "no file at all"
        return (f"{uri} matches none of the {len(local)} file(s) the upload puts in the bucket ({sample}); fix the "
                "pattern (`**` crosses folders; the match is case-sensitive) or the upload prefix")
    if bp.bucket and src.bucket == bp.bucket.name and not live.get("bucket").exists:
        return (f"{uri} names the new bucket gs://{src.bucket}, which nothing uploads into: add bucket.upload "
                "(a local folder of DICOM files), or point import.uri at a bucket that holds them")
    return (f"{uri} matches no object in gs://{src.bucket} now; check the bucket, the prefix and the ** pattern "
            "(`gcloud storage ls` shows what is there)")


def _run(bp: Any, s: Any, sname: str, own: bool, *, force: bool):
    uri = s.import_.uri
    src = parse_uri(uri)
    min_studies = bp.smoke.min_studies

    def run_import(ctx: Ctx) -> str:
        from provision.resources import bucket_iam

        objs = matched_objects(ctx, src, billing_project=bp.project.id)
        fp = fingerprint(uri, objs)
        st = dicom_store.read(ctx, sname)
        if not force and st is not None and st.labels.get(LABEL) == fp:
            return "already imported (label matches the objects)"
        require_match(ctx, sname, uri, objs)
        agent = ctx.facts.get("agent", "")
        fix = None
        if not own:
            fix = bucket_iam.ask_owner(src.bucket, agent)
            if agent and bucket_iam.check_foreign(ctx, src.bucket, agent) is False:
                ctx.note(f"the service agent has no read access to gs://{src.bucket}; the import will likely fail")
        n = run(ctx, sname, uri, min_studies=min_studies, fingerprint_value=fp, access_fix=fix,
                max_failures=s.import_.max_failures)
        return f"{plural(n, 'study')} in the store"

    return run_import
