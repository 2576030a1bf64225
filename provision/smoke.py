"""DICOMweb smoke check: the requests the OHIF viewer makes, over plain authorized HTTP.

Each check is a small named function over a `Probe` (`check_studies`, `check_series`, ...,
listed in `CHECKS`); what an answer means is judged by functions the browser smoke uses too
(`http_problem`, `frame_problem`), so both say the same thing about the same answer.

    report = run_dicomweb_smoke(root, session=AuthorizedSession(creds), origin="http://localhost:3000", min_studies=1)
    report.ok, report.checks, report.to_json()

`root` is a store's DICOMweb root (`.../dicomStores/S/dicomWeb`). In the viewer's order:

1. `studies`: the study list's QIDO query, with OHIF 3.13's own parameters; the store must
   hold at least `min_studies` studies;
2. `series`: the series of one study (the study browser's query);
3. `series_metadata`: that series' metadata (lazy study loading);
4. `frame`: `frames/1` of one instance with the viewer's unquoted multipart Accept; the
   answer must be multipart/related with a non-empty part;
5. `rendered`: the instance as `image/jpeg`, which must decode;
6. `cors`: a preflight from the viewer's origin asking for `authorization` (as the
   browser sends before every authorized request), and the CORS header on a real answer.

Every request sends `Origin` as the browser does. Each check is timed; a failure names the
request, its status and the likely cause. No header value (and so no token) is ever put
into a report.
"""
from __future__ import annotations

import io
import json
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable
from urllib.parse import quote, urlsplit

import requests

from provision.words import plural

__all__ = [
    "CHECKS",
    "FRAME_ACCEPT",
    "STUDY_LIST_INCLUDEFIELD",
    "Check",
    "SmokeReport",
    "frame_problem",
    "http_problem",
    "run_dicomweb_smoke",
]

# OHIF 3.13's study list (extensions/default mapParams): limit 101, fuzzymatching from the
# data source's supportsFuzzyMatching (true in our config), and these four fields.
STUDY_LIST_INCLUDEFIELD = "00081030,00080060,00080090,00100030"
SERIES_INCLUDEFIELD = "0008103E,00080021"
FRAME_ACCEPT = "multipart/related; type=application/octet-stream; transfer-syntax=*"
DICOM_JSON = "application/dicom+json"
PAGE = 101
TIMEOUT_S = 60.0

CHECK_NAMES = ("studies", "series", "series_metadata", "frame", "rendered", "cors")


@dataclass
class Check:
    name: str
    ok: bool
    ms: float
    detail: str
    request: str = ""  # "GET https://..." (never headers)
    status: int | None = None
    skipped: bool = False


@dataclass
class SmokeReport:
    root: str
    origin: str
    min_studies: int
    checks: list[Check] = field(default_factory=list)
    studies_found: int | None = None
    # The studies the study-list query returned (UID, date, patient name as DICOM PN and as OHIF
    # shows it). Kept out of to_dict()/to_json(): patient names are PHI on a real store.
    studies: list[dict[str, str]] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        """Checks that ran and failed (not those skipped because an earlier one failed)."""
        return [c for c in self.checks if not c.ok and not c.skipped]

    @property
    def total_ms(self) -> float:
        return round(sum(c.ms for c in self.checks), 1)

    def browser_expectations(self, n: int = 3) -> list[dict[str, str]]:
        """Up to n studies the browser smoke should find in the study list: the most recent first,
        as OHIF sorts its list (so they are on its first page)."""
        ranked = sorted(self.studies, key=lambda s: (s.get("study_date", ""), s["study_uid"]), reverse=True)
        return ranked[:n]

    def check(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "root": self.root,
            "origin": self.origin,
            "min_studies": self.min_studies,
            "studies_found": self.studies_found,
            "total_ms": self.total_ms,
            "checks": [asdict(c) for c in self.checks],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def summary(self) -> str:
        """One line per check, then the first failure's detail: for humans."""
        lines = []
        for c in self.checks:
            mark = "skip" if c.skipped else ("ok" if c.ok else "FAIL")
            lines.append(f"  {mark:4} {c.name:16} {c.ms:8.1f} ms  {c.detail}")
        head = f"DICOMweb smoke {'passed' if self.ok else 'FAILED'} for {self.root} ({self.total_ms} ms)"
        return "\n".join([head, *lines])

    def __str__(self) -> str:
        return self.summary()


class _Failed(Exception):
    def __init__(self, detail: str, status: int | None = None):
        super().__init__(detail)
        self.detail = detail
        self.status = status


# ------------------------------------------------------------------------- helpers


def _google_message(resp: requests.Response) -> tuple[str, str]:
    """(message, reason) from a google.rpc.Status body, or a short text excerpt."""
    try:
        body = resp.json()
    except ValueError:
        text = (resp.text or "").strip().replace("\n", " ")
        return text[:300], ""
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return json.dumps(body)[:300], ""
    reason = ""
    for d in err.get("details") or []:
        if isinstance(d, dict) and d.get("reason"):
            reason = str(d["reason"])
            break
    return str(err.get("message", ""))[:500], reason


def _likely_cause(status: int, reason: str, message: str) -> str:
    if reason == "SERVICE_DISABLED" or "has not been used" in message or "is disabled" in message:
        return "the Cloud Healthcare API is not enabled on the project (apply enables it)"
    if status == 401:
        return "the credentials were refused: the access token is missing or expired (gcloud auth application-default login)"
    if status == 403:
        return (
            "the caller lacks roles/healthcare.dicomViewer on the store (or its dataset/project), or the store path "
            "is wrong: Google answers 403, not 404, for a store that does not exist"
        )
    if status == 404:
        return "wrong store path: check the project, location, dataset and store IDs"
    if status == 400:
        return "the server refused the request as the viewer sends it"
    if status == 406:
        return "the server cannot answer in the media type the viewer asks for"
    if status == 429:
        return "quota exceeded or rate limited: retry later"
    if status >= 500:
        return "the service failed or is unavailable: retry, and check the service status"
    return "unexpected answer"


def _http_failure(method: str, url: str, resp: requests.Response, what: str) -> _Failed:
    message, reason = _google_message(resp)
    cause = _likely_cause(resp.status_code, reason, message)
    said = f": {message}" if message else ""
    return _Failed(f"{what}: {method} {url} answered {resp.status_code}{said}. Likely cause: {cause}.", resp.status_code)


def _connection_failure(method: str, url: str, exc: Exception) -> _Failed:
    host = urlsplit(url).netloc
    if isinstance(exc, requests.Timeout):
        return _Failed(f"{method} {url} timed out after {TIMEOUT_S:.0f} s. Likely cause: {host} is overloaded or unreachable.")
    return _Failed(
        f"{method} {url} could not connect ({type(exc).__name__}). Likely cause: {host} is not reachable "
        "(emulator not running, wrong URL, or no network)."
    )


def _json_list(resp: requests.Response, url: str, what: str) -> list[dict[str, Any]]:
    if resp.status_code == 204 or not resp.content:
        return []
    try:
        data = resp.json()
    except ValueError:
        raise _Failed(f"{what}: GET {url} answered {resp.status_code} with a body that is not JSON "
                      f"(Content-Type {resp.headers.get('Content-Type')!r}).", resp.status_code) from None
    if not isinstance(data, list):
        raise _Failed(f"{what}: GET {url} answered JSON that is not a list of DICOM JSON objects.", resp.status_code)
    return data


def _value(obj: dict[str, Any], tag: str) -> Any:
    v = (obj.get(tag) or {}).get("Value") or [None]
    return v[0]


def _study_summary(study: dict[str, Any]) -> dict[str, str]:
    pn = _value(study, "00100010")
    pn = (pn.get("Alphabetic", "") if isinstance(pn, dict) else str(pn or ""))
    return {
        "study_uid": str(_value(study, "0020000D")),
        "study_date": str(_value(study, "00080020") or ""),
        "patient_name": pn,
        "patient_name_ohif": pn.replace("^", ", ", 1).replace("^", " ").strip(),
    }


def _multipart_parts(content_type: str, body: bytes) -> list[tuple[dict[str, str], bytes]]:
    """The parts of a multipart body (headers lower-cased), per RFC 2046."""
    m = re.search(r'boundary=(?:"([^"]+)"|([^;\s]+))', content_type, re.I)
    if not m:
        raise ValueError("no boundary in Content-Type")
    boundary = (m.group(1) or m.group(2)).encode()
    delimiter = b"--" + boundary
    chunks = body.split(delimiter)
    if len(chunks) < 3:
        raise ValueError("the body does not contain the boundary")
    parts = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break  # the close delimiter
        chunk = chunk[2:] if chunk.startswith(b"\r\n") else chunk
        head, sep, payload = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("a part has no header/body separator")
        if payload.endswith(b"\r\n"):
            payload = payload[:-2]
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            if ":" in line:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
        parts.append((headers, payload))
    return parts


# ------------------------------------------------------------- judgements (shared)
# What an answer means, whoever asked: the checks below and the browser smoke (which sees the
# viewer's own requests) judge the same answers with the same words.


def http_problem(method: str, url: str, status: int, body: bytes | str, what: str) -> str:
    """`what: METHOD URL answered STATUS: Google's message. Likely cause: ...`"""
    fake = requests.Response()
    fake.status_code = status
    fake._content = body.encode() if isinstance(body, str) else (body or b"")
    return _http_failure(method, url, fake, what).detail


def frame_problem(url: str, content_type: str, body: bytes, expect_bytes: int = 0) -> tuple[str | None, str]:
    """(problem or None, detail) for a frames/1 answer: multipart/related with a non-empty part, and as many
    uncompressed bytes as Rows x Columns x BitsAllocated/8 x SamplesPerPixel when `expect_bytes` is known."""
    if not content_type.lower().startswith("multipart/related"):
        return (f"frame retrieval: GET {url} answered Content-Type {content_type!r}, not multipart/related. "
                "Likely cause: the server ignores the viewer's multipart Accept.", "")
    try:
        parts = _multipart_parts(content_type, body)
    except ValueError as exc:
        return f"frame retrieval: GET {url}: the multipart body cannot be parsed ({exc}).", ""
    if not parts or not parts[0][1]:
        return f"frame retrieval: GET {url} returned {len(parts)} parts and no pixel bytes.", ""
    size = len(parts[0][1])
    ts = re.search(r"transfer-syntax=([0-9.]+)", content_type + ";" + parts[0][0].get("content-type", ""))
    if ts and ts.group(1) in ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2") and expect_bytes and size < expect_bytes:
        return f"frame retrieval: GET {url} returned {size} bytes of uncompressed pixels, expected {expect_bytes}.", ""
    syntax = f", transfer syntax {ts.group(1)}" if ts else ""
    return None, f"{len(parts)} part(s), {size} bytes{syntax}"


# --------------------------------------------------------------------------- checks


@dataclass
class Probe:
    """One store being checked: how to ask (an HTTP GET with the retry policy), and what the checks
    have learnt so far (the study, series and instance the next checks look at)."""

    root: str
    origin: str
    min_studies: int
    has_import: bool
    get: Callable[[str, str], requests.Response]
    report: SmokeReport
    timeout: float = TIMEOUT_S
    learnt: dict[str, Any] = field(default_factory=dict)
    request: str = ""                       # the request the running check names, for its report line
    retries: list[str] = field(default_factory=list)  # the retry reasons of the running check

    def get_200(self, url: str, accept: str, what: str) -> requests.Response:
        """GET `url` as the request the report names; any answer but 200 fails the `what` check."""
        self.request = f"GET {url}"
        resp = self.get(url, accept)
        if resp.status_code != 200:
            raise _http_failure("GET", url, resp, what)
        return resp


CheckResult = tuple[str, str, "int | None"]  # (detail, request, status)


def check_studies(p: Probe) -> CheckResult:
    """The study list's QIDO query, with OHIF 3.13's own parameters, paged; at least `min_studies`."""
    found: list[dict[str, Any]] = []
    offset = 0
    while True:
        url = (f"{p.root}/studies?limit={PAGE}&offset={offset}&fuzzymatching=true"
               f"&includefield={quote(STUDY_LIST_INCLUDEFIELD, safe='')}")
        p.request = f"GET {url}"
        resp = p.get(url, DICOM_JSON)
        if resp.status_code not in (200, 204):
            raise _http_failure("GET", url, resp, "study list")
        page = _json_list(resp, url, "study list")
        found += page
        p.learnt["cors_on_get"] = resp.headers.get("Access-Control-Allow-Origin")
        p.learnt["qido_url"] = url if offset == 0 else p.learnt.get("qido_url")
        if len(page) < PAGE or len(found) >= p.min_studies:
            break
        offset += len(page)
    qido = p.learnt["qido_url"]
    p.report.studies_found = len(found)
    p.report.studies = [_study_summary(s) for s in found if _value(s, "0020000D")]
    if len(found) < p.min_studies:
        if not p.has_import:
            cause = "the store holds fewer studies than expected (it has no import in the blueprint)"
        else:
            cause = ("nothing has been imported into the store (check the import step and its logs)" if not found
                     else "fewer studies were imported than smoke.min_studies expects")
        raise _Failed(f"study list: GET {qido} found {len(found)} studies, "
                      f"expected at least {p.min_studies}. Likely cause: {cause}.", resp.status_code)
    study = next((s for s in found if _value(s, "0020000D")), None)
    if study is None:
        if found:
            raise _Failed(f"study list: GET {qido} returned studies without StudyInstanceUID (0020000D).", resp.status_code)
        p.learnt["empty"] = True
        p.learnt["why_skip"] = ("the store holds no study (smoke.min_studies is 0)" if p.has_import
                                else "the store holds no study (it has no import)")
        return "0 studies (none required)", f"GET {qido}", resp.status_code
    p.learnt["study"] = _value(study, "0020000D")
    return f"{len(found)} studies (at least {p.min_studies} required)", f"GET {qido}", resp.status_code


def check_series(p: Probe) -> CheckResult:
    """The series of one study (the study browser's query)."""
    st = p.learnt["study"]
    url = f"{p.root}/studies/{st}/series?includefield={quote(SERIES_INCLUDEFIELD, safe='')}"
    resp = p.get_200(url, DICOM_JSON, "series of a study")
    found = [s for s in _json_list(resp, url, "series of a study") if _value(s, "0020000E")]
    if not found:
        raise _Failed(f"series of a study: GET {url} returned no series for study {st}, which the study list showed. "
                      "Likely cause: the store's index is inconsistent.", resp.status_code)
    p.learnt["series"] = _value(found[0], "0020000E")
    return f"{len(found)} series in study {st}", f"GET {url}", resp.status_code


def check_series_metadata(p: Probe) -> CheckResult:
    """That series' metadata (lazy study loading): instances with what the viewer needs to draw."""
    st, se = p.learnt["study"], p.learnt["series"]
    url = f"{p.root}/studies/{st}/series/{se}/metadata"
    resp = p.get_200(url, DICOM_JSON, "series metadata")
    instances = [i for i in _json_list(resp, url, "series metadata") if _value(i, "00080018")]
    if not instances:
        raise _Failed(f"series metadata: GET {url} returned no instance with a SOPInstanceUID.", resp.status_code)
    missing = [t for t in ("00280010", "00280011", "00280100", "00280004") if _value(instances[0], t) is None]
    if missing:
        raise _Failed(f"series metadata: GET {url}: the instances lack {', '.join(missing)} "
                      "(Rows, Columns, BitsAllocated, PhotometricInterpretation), which the viewer needs to draw.",
                      resp.status_code)
    instances.sort(key=lambda i: (_value(i, "00200013") or 0))
    chosen = instances[len(instances) // 2]
    p.learnt["instance"] = _value(chosen, "00080018")
    p.learnt["expect_bytes"] = expected_frame_bytes(chosen)
    return f"{len(instances)} instances, {len(resp.content)} bytes", f"GET {url}", resp.status_code


def expected_frame_bytes(instance: dict[str, Any]) -> int:
    """Rows x Columns x BitsAllocated/8 x SamplesPerPixel of an instance's DICOM JSON (0 when unknown)."""
    return ((_value(instance, "00280010") or 0) * (_value(instance, "00280011") or 0)
            * ((_value(instance, "00280100") or 0) // 8) * (_value(instance, "00280002") or 1))


def check_frame(p: Probe) -> CheckResult:
    """`frames/1` of one instance with the viewer's unquoted multipart Accept."""
    st, se, sop = p.learnt["study"], p.learnt["series"], p.learnt["instance"]
    url = f"{p.root}/studies/{st}/series/{se}/instances/{sop}/frames/1"
    resp = p.get_200(url, FRAME_ACCEPT, "frame retrieval")
    problem, detail = frame_problem(url, resp.headers.get("Content-Type", ""), resp.content,
                                    p.learnt.get("expect_bytes") or 0)
    if problem:
        raise _Failed(problem, resp.status_code)
    return detail, f"GET {url}", resp.status_code


def check_rendered(p: Probe) -> CheckResult:
    """The same instance as `image/jpeg`, which must decode."""
    st, se, sop = p.learnt["study"], p.learnt["series"], p.learnt["instance"]
    url = f"{p.root}/studies/{st}/series/{se}/instances/{sop}/rendered"
    resp = p.get_200(url, "image/jpeg", "rendered image")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(resp.content)) as img:
            img.load()
            fmt, size = img.format, img.size
    except (UnidentifiedImageError, OSError) as exc:
        raise _Failed(f"rendered image: GET {url} returned {len(resp.content)} bytes that do not decode as an image "
                      f"({exc}).", resp.status_code) from None
    if fmt != "JPEG":
        raise _Failed(f"rendered image: GET {url} returned {fmt}, not the JPEG the viewer asked for.", resp.status_code)
    return f"JPEG {size[0]}x{size[1]}, {len(resp.content)} bytes", f"GET {url}", resp.status_code


def check_cors(p: Probe) -> CheckResult:
    """The preflight the browser sends before an authorized request, and the CORS header on a real answer."""
    url = p.learnt.get("qido_url") or f"{p.root}/studies?limit={PAGE}&offset=0"
    origin = p.origin
    p.request = f"OPTIONS {url}"
    headers = {"Origin": origin, "Access-Control-Request-Method": "GET",
               "Access-Control-Request-Headers": "authorization"}
    try:  # a preflight carries no credentials: never the caller's authorized session
        resp = requests.options(url, headers=headers, timeout=p.timeout)
    except requests.RequestException as exc:
        raise _connection_failure("OPTIONS", url, exc) from None
    fix = f"Likely cause: the server does not allow the viewer's origin {origin} (CORS)."
    if not 200 <= resp.status_code < 300:
        raise _Failed(f"CORS preflight: OPTIONS {url} from {origin} answered {resp.status_code}. {fix}", resp.status_code)
    acao = resp.headers.get("Access-Control-Allow-Origin")
    if acao not in (origin, "*"):
        got = f"Access-Control-Allow-Origin {acao!r}" if acao else "no Access-Control-Allow-Origin"
        raise _Failed(f"CORS preflight: OPTIONS {url} from {origin} answered {resp.status_code} with {got}. {fix}",
                      resp.status_code)
    allowed = {h.strip().lower() for h in resp.headers.get("Access-Control-Allow-Headers", "").split(",")}
    if "authorization" not in allowed:  # '*' does not cover Authorization (Fetch standard)
        raise _Failed(f"CORS preflight: OPTIONS {url} does not allow the Authorization header "
                      f"(Access-Control-Allow-Headers {resp.headers.get('Access-Control-Allow-Headers')!r}). "
                      "Likely cause: the server's CORS configuration; the viewer sends its token in Authorization.",
                      resp.status_code)
    on_get = p.learnt.get("cors_on_get")
    if "cors_on_get" in p.learnt and on_get not in (origin, "*"):
        raise _Failed(f"CORS: GET {url} from {origin} answered without Access-Control-Allow-Origin (got {on_get!r}); "
                      f"the browser would hide the answer from the viewer. {fix}", resp.status_code)
    return f"preflight {resp.status_code}, Access-Control-Allow-Origin {acao}", f"OPTIONS {url}", resp.status_code


# (name, check, what it needs learnt first), in the viewer's order.
CHECKS: tuple[tuple[str, Callable[[Probe], CheckResult], str | None], ...] = (
    ("studies", check_studies, None),
    ("series", check_series, "study"),
    ("series_metadata", check_series_metadata, "series"),
    ("frame", check_frame, "instance"),
    ("rendered", check_rendered, "instance"),
    ("cors", check_cors, None),
)
assert tuple(name for name, _, _ in CHECKS) == CHECK_NAMES


def _run_check(p: Probe, name: str, check: Callable[[Probe], CheckResult], needs: str | None) -> Check:
    """One check, timed; skipped when what it needs was not learnt (an empty store, or an earlier failure)."""
    if needs and needs not in p.learnt:
        if p.learnt.get("empty"):
            return Check(name, ok=True, ms=0.0, detail=f"skipped: {p.learnt.get('why_skip', 'nothing to check')}",
                         skipped=True)
        return Check(name, ok=False, ms=0.0, detail=f"not run: {p.report.failures[-1].name} failed", skipped=True)
    start = time.perf_counter()
    p.retries.clear()
    p.request = ""
    try:
        detail, request, status = check(p)
        ok = True
    except _Failed as exc:
        detail, request, status, ok = exc.detail, p.request, exc.status, False
    if p.retries:
        detail += f" (after {plural(len(p.retries), 'retry')}: {p.retries[-1]})"
    return Check(name, ok=ok, ms=round((time.perf_counter() - start) * 1000, 1), detail=detail, request=request,
                 status=status)


def run_dicomweb_smoke(
    store_dicomweb_root: str,
    *,
    session: requests.Session | None = None,
    origin: str,
    min_studies: int = 1,
    timeout: float = TIMEOUT_S,
    retry_s: float = 0.0,
    has_import: bool = True,
) -> SmokeReport:
    """Run the viewer's DICOMweb requests (`CHECKS`) against one store; never raises for a failed check.

    Each GET goes through the project's retry policy for `retry_s` seconds (429, 5xx, resets; none
    by default; `run_blueprint_smoke` gives the target's `timing.smoke_retry_s`);
    the retries a check needed are said in its detail. `has_import`: the store is filled by an
    import (the hint for an empty store then points at it)."""
    root = store_dicomweb_root.rstrip("/")
    origin = origin.rstrip("/")
    report = SmokeReport(root=root, origin=origin, min_studies=min_studies)
    retries: list[str] = []
    get = _retrying_get(session or requests.Session(), origin, timeout, retry_s,
                        lambda attempt, delay, reason: retries.append(reason))
    probe = Probe(root=root, origin=origin, min_studies=min_studies, has_import=has_import, report=report,
                  timeout=timeout, get=get, retries=retries)
    for name, check, needs in CHECKS:
        report.checks.append(_run_check(probe, name, check, needs))
    return report


def _retrying_get(http: requests.Session, origin: str, timeout: float, retry_s: float,
                  on_retry: Callable[[int, float, str], None]) -> Callable[[str, str], requests.Response]:
    """A GET as the browser sends it (`Origin`), retried on 429, 5xx and resets for `retry_s` seconds."""
    from provision.gcp.errors import RawHttpError
    from provision.gcp.retry import RetryPolicy, network, transient_http

    policy = RetryPolicy(predicates=(transient_http, network), first=min(1.0, retry_s / 40), cap=max(0.05, retry_s / 6),
                         unreachable_s=min(5.0, retry_s))

    def get(url: str, accept: str) -> requests.Response:
        last: dict[str, requests.Response] = {}

        def once() -> requests.Response:
            resp = http.get(url, headers={"Accept": accept, "Origin": origin}, timeout=timeout)
            if resp.status_code in (429, 500, 502, 503, 504):
                last["resp"] = resp
                raise RawHttpError(resp.status_code, resp.text[:4000], url.split("?")[0])
            return resp

        try:
            return policy.run(once, deadline=time.monotonic() + retry_s, on_retry=on_retry)
        except RawHttpError:
            return last["resp"]  # still failing at the deadline: the check reports this answer
        except requests.RequestException as exc:
            raise _connection_failure("GET", url, exc) from None

    return get


# ------------------------------------------------------------------ whole blueprint


@dataclass
class BlueprintSmoke:
    """The smoke of a whole blueprint: DICOMweb per store and per viewer source (`source:NAME`),
    then (when asked) the browser on the default data source and on each viewer source.

    A browser smoke that was asked for and could not run (no study to look for, the DICOMweb
    smoke failed, no Chromium or Playwright, no viewer) is `browser_not_run` (a source's:
    `browser_sources_not_run[NAME]`), with the reason, and fails the smoke: a check nobody ran
    must never read as passed."""

    stores: dict[str, SmokeReport] = field(default_factory=dict)
    browser: Any = None  # provision.ohif.browser.BrowserReport, when run
    browser_not_run: str = ""
    browser_sources: dict[str, Any] = field(default_factory=dict)        # source name -> BrowserReport
    browser_sources_not_run: dict[str, str] = field(default_factory=dict)  # source name -> why

    @property
    def ok(self) -> bool:
        return (all(r.ok for r in self.stores.values()) and not self.browser_not_run
                and (self.browser is None or self.browser.ok)
                and not self.browser_sources_not_run and all(r.ok for r in self.browser_sources.values()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "dicomweb": {store: r.to_dict() for store, r in self.stores.items()},
            "browser": self.browser.to_dict() if self.browser is not None else None,
            **({"browser_not_run": self.browser_not_run} if self.browser_not_run else {}),
            **({"browser_sources": {n: r.to_dict() for n, r in self.browser_sources.items()}}
               if self.browser_sources else {}),
            **({"browser_sources_not_run": self.browser_sources_not_run} if self.browser_sources_not_run else {}),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def summary(self) -> str:
        parts = [r.summary() for r in self.stores.values()]
        if self.browser is not None:
            parts.append(self.browser.summary())
        elif self.browser_not_run:
            parts.append(f"browser smoke NOT RUN (asked for, so the smoke fails): {self.browser_not_run}")
        parts += [r.summary() for r in self.browser_sources.values()]
        parts += [f"browser smoke of data source {name} NOT RUN (asked for, so the smoke fails): {why}"
                  for name, why in self.browser_sources_not_run.items()]
        return "\n".join(parts)


def run_blueprint_smoke(
    bp: Any,
    *,
    session: requests.Session | None = None,
    emulator_url: str | None = None,
    browser: bool = False,
    token: str | None = None,
    out_dir: Any = "out/smoke",
    retry_s: float = 60.0,
) -> BlueprintSmoke:
    """`provision smoke`: the DICOMweb smoke on every store of `bp` and on every viewer source (at least
    one study each), then with `browser=True` the real viewer on the first store (the viewer's default
    data source) and on each viewer source (`?datasources=NAME`). Never raises for a check that
    failed or could not run: the report says which, and why. Viewer sources saying `idc: latest`
    must be pinned first (provision.pipeline.pinned).

    `session` carries the credentials (an AuthorizedSession for Google Cloud; None for an emulator
    without --enforce-iam); a viewer source that is a plain DICOMweb root gets none (the caller's
    Google token goes to Google only). `token` is the access token handed to the viewer with `?token=` (ADC's
    token on Google Cloud); it is used only inside the browser and never reported. `retry_s`: how
    long each GET is retried (the target's timing profile, `smoke_retry_s`).
    """
    from pathlib import Path

    from provision.errors import ProvisionError
    from provision.ohif.config import dicomweb_root, render_config, source_root
    from provision.resources.viewer_source import resolve

    result = BlueprintSmoke()
    for store in bp.dicom_stores:
        root = dicomweb_root(bp, store.id, emulator_url=emulator_url)
        has_import = bool(getattr(store, "import_", None))
        result.stores[store.id] = run_dicomweb_smoke(root, session=session, origin=bp.viewer.origin,
                                                     min_studies=bp.smoke.min_studies if has_import else 0,
                                                     retry_s=retry_s, has_import=has_import)
    sources = resolve(bp) if getattr(bp, "viewer_sources", None) else []
    for source in sources:
        report = run_dicomweb_smoke(source_root(source, emulator_url=emulator_url),
                                    session=session if source.store else requests.Session(),
                                    origin=bp.viewer.origin, min_studies=1, retry_s=retry_s)
        if source.store and any(c.status in (401, 403) for c in report.failures):
            for c in report.failures:
                c.detail += f" How to get access to source {source.name}: {source.access}."
        result.stores[f"source:{source.name}"] = report
    if not browser:
        return result
    first_id = bp.dicom_stores[0].id
    first = result.stores[first_id]
    expected = first.browser_expectations()
    if not first.ok:
        result.browser_not_run = f"the DICOMweb smoke of store {first_id} failed (above); fix that first"
    elif not expected:
        result.browser_not_run = (f"store {first_id} (the viewer's default data source) holds no study for the viewer "
                                  "to show; import studies into it, or leave out --browser (smoke.browser)")
    from provision.ohif.browser import run_browser_smoke

    if emulator_url:
        # What `provision config` writes for Google Cloud, unchanged; Google's hosts are routed to the
        # emulator, where the viewer signs in for real when the config has an oidc block.
        config_js = render_config(bp)
        route = {"google_via": emulator_url, "origin": bp.viewer.origin}
        token = None if getattr(bp.viewer, "oauth_client_id", None) else token
    else:  # on Google Cloud no one can sign in interactively: ADC's token through OHIF's ?token=
        config_js = render_config(bp, oidc=False)
        route = {}
    if not result.browser_not_run:
        try:
            result.browser = run_browser_smoke(config_js, expected_studies=expected, token=token, out_dir=Path(out_dir),
                                               **route)
        except ProvisionError as exc:  # no Chromium, no Playwright, no viewer: the check could not run
            result.browser_not_run = str(exc)
    # Each viewer source: its study list (?datasources=NAME) and one image, screenshots in out_dir/source-NAME.
    for source in sources:
        report = result.stores[f"source:{source.name}"]
        expected = report.browser_expectations()
        if not report.ok or not expected:
            result.browser_sources_not_run[source.name] = (
                f"the DICOMweb smoke of source {source.name} failed (above); fix that first")
            continue
        try:
            result.browser_sources[source.name] = run_browser_smoke(
                config_js, expected_studies=expected, token=token, out_dir=Path(out_dir) / f"source-{source.name}",
                data_source=source.name, **route)
        except ProvisionError as exc:
            result.browser_sources_not_run[source.name] = str(exc)
    return result
