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
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable
from urllib.parse import quote, urlsplit

import requests
from PIL import Image, UnidentifiedImageError

from provision.checks.answers import _Failed, _http_failure, frame_problem, http_problem, ohif_patient_name
from provision.gcp.errors import RawHttpError
from provision.gcp.retry import RetryPolicy, network, transient_http
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
    as_member: str = ""   # the principal the checks ran as (`smoke --as`), named in the summary

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

    def summary(self, brief: bool = False) -> str:
        """One line per check, then the first failure's detail: for humans. `brief`: a smoke that
        passed in one line (what apply prints; `provision smoke` shows every check)."""
        lines = []
        for c in self.checks:
            mark = "skip" if c.skipped else ("ok" if c.ok else "FAIL")
            lines.append(f"  {mark:4} {c.name:16} {c.ms:8.1f} ms  {c.detail}")
        who = f" as {self.as_member}" if self.as_member else ""
        head = f"DICOMweb smoke {'passed' if self.ok else 'FAILED'} for {self.root}{who} ({self.total_ms} ms)"
        if brief and self.ok:
            return f"{head}: {len(self.checks)} checks"
        return "\n".join([head, *lines])

    def __str__(self) -> str:
        return self.summary()


# ------------------------------------------------------------------------- helpers


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
        "patient_name_ohif": ohif_patient_name(pn),
    }


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
        raise _Failed(f"study list: GET {qido} found {plural(len(found), 'study')}, "
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
    return f"{plural(len(found), 'study')} (at least {p.min_studies} required)", f"GET {qido}", resp.status_code


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
    p.learnt["image"] = chosen
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
                                    p.learnt.get("expect_bytes") or 0, p.learnt.get("image"))
    if problem:
        raise _Failed(problem, resp.status_code)
    return detail, f"GET {url}", resp.status_code


def check_rendered(p: Probe) -> CheckResult:
    """The same instance as `image/jpeg`, which must decode."""
    st, se, sop = p.learnt["study"], p.learnt["series"], p.learnt["instance"]
    url = f"{p.root}/studies/{st}/series/{se}/instances/{sop}/rendered"
    resp = p.get_200(url, "image/jpeg", "rendered image")

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
    by default; `provision.running.smoke.run_blueprint_smoke` gives the target's `timing.smoke_retry_s`);
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


