"""Importing DICOM files from Cloud Storage into a store, once.

`POST …/dicomStores/S:import {gcsSource{uri}}` starts a dataset-level operation; its counters
(success / failure / pending) are reported as they move. Any failure fails the step with the
counts, Google's message and the logs link. Then QIDO `/studies` (raw AuthorizedSession GET,
`Accept: application/dicom+json`) must count at least `smoke.min_studies` studies.

Idempotence: after a successful import the store gets the label `provision-import` = a short
hash of the URI and the matched objects (names and checksums). When the label matches the
objects that match now, there is nothing to do and no write is made.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from provision.gcp.context import Ctx
from provision.gcp.errors import OperationFailed, StepError, parse, raise_for_status, to_provision_error
from provision.gcp.retry import NotYet
from provision.resources import bucket as bucket_mod
from provision.resources import dicom_store

LABEL = "provision-import"
QIDO_PAGE = 1000
QIDO_PAGES = 1000


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


def matched_objects(ctx: Ctx, src: Source) -> dict[str, dict] | None:
    """Objects the URI matches now (name -> checksums), or None when we may not list the bucket."""
    from provision.gcp.errors import is_status

    try:
        objs = bucket_mod.list_objects(ctx, src.bucket, src.prefix)
    except Exception as exc:  # noqa: BLE001
        if is_status(exc, 403, 404):
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


def run(ctx: Ctx, store_name: str, uri: str, *, min_studies: int, fingerprint_value: str,
        access_fix: str | None = None) -> int:
    """Import, verify the counters and the study count, then mark the store. Returns the study count."""
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
    try:
        done = ctx.call(attempt)
    except OperationFailed as exc:
        meta = exc.metadata or last.get("metadata") or {}
        c = _counter({"metadata": meta})
        logs = meta.get("logsUrl")
        msg = f"import of {uri} failed: {exc} ({_counts_text(c)})"
        if logs:
            msg += f"; logs: {logs}"
        raise StepError(ctx.step, store_name, msg, google=parse(exc), fix=access_fix if _access_problem(str(exc)) else
                        "look at the logs link for the files that failed, fix them, and apply again",
                        action="import") from None
    except Exception as exc:  # noqa: BLE001
        err = to_provision_error(exc, ctx.step, store_name, action="import")
        ge = parse(exc)
        if access_fix and ge and _access_problem(ge.message):
            raise StepError(ctx.step, store_name, f"import of {uri} failed: {ge.code_text}: {ge.message}", google=ge,
                            fix=access_fix, action="import") from None
        raise err from None
    c = _counter(done)
    if c["failure"]:
        logs = (done.get("metadata") or {}).get("logsUrl")
        raise StepError(ctx.step, store_name, f"import of {uri} finished with failures: {_counts_text(c)}"
                        + (f"; logs: {logs}" if logs else ""),
                        fix="look at the logs link for the files that failed (not DICOM? duplicates with other "
                            "bytes?), fix them, and apply again", action="import")
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
            raise NotYet(f"the store shows {n} of at least {min_studies} studies")
        return n

    try:
        return ctx.call(check, within=ctx.target.settle_s)
    except NotYet:
        raise StepError(ctx.step, store_name,
                        f"after the import the store holds {seen['n']} studies; smoke.min_studies asks for at least {min_studies}",
                        fix="check that the import URI matches your DICOM files (`**` crosses folders), or lower "
                            "smoke.min_studies", action="verify") from None
