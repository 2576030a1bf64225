"""What the viewer's pages must show, in the browser smoke (provision/checks/browser.py).

The study list (`/`, `?datasources=` for another data source) must send OHIF's study query, and
show every expected study's patient name as OHIF writes it ("Phantom, CT"); a missing study is
named, with what the store returned. The viewer (`/viewer?StudyInstanceUIDs=...`) must fetch a
frame the DICOMweb smoke would accept (answers.py judges both) and draw it: a viewport canvas
with enough gray levels and non-black pixels, read in the page and again from a screenshot.
"""
from __future__ import annotations

import io
import re
import time
from typing import Any, Iterable, Mapping
from urllib.parse import quote

from PIL import Image

from provision.checks.answers import frame_problem, http_problem, ohif_patient_name
from provision.checks.browser_session import Abort, Session
from provision.errors import ProvisionError
from provision.words import plural

# Called by OHIF's Google configuration API on the study list (hard-coded hosts: OHIF's
# extensions/default/src/DataSourceConfigurationAPI/GoogleCloudDataSourceConfigurationAPI.ts).
GOOGLE_CONFIG_API = "https://cloudresourcemanager.googleapis.com/v1/**"

# Read in the page: copy the largest viewport canvas into a scratch 2D canvas (never
# touching the viewport canvas' own context) and count gray levels and non-black pixels.
CANVAS_STATS_JS = """
() => {
  const canvases = [...document.querySelectorAll('canvas.cornerstone-canvas, .cornerstone-viewport-element canvas')]
    .filter(c => c.width > 0 && c.height > 0 && c.offsetParent !== null);
  if (!canvases.length) return null;
  const c = canvases.reduce((a, b) => (a.width * a.height >= b.width * b.height ? a : b));
  const w = Math.min(c.width, 512), h = Math.min(c.height, 512);
  const scratch = document.createElement('canvas');
  scratch.width = w; scratch.height = h;
  const ctx = scratch.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(c, 0, 0, w, h);
  const d = ctx.getImageData(0, 0, w, h).data;
  const levels = new Set();
  let nonBlack = 0;
  for (let i = 0; i < d.length; i += 4) {
    const g = (d[i] * 3 + d[i + 1] * 6 + d[i + 2]) / 10 | 0;
    levels.add(g);
    if (g > 16) nonBlack++;
  }
  return { width: c.width, height: c.height, levels: levels.size, nonBlack: nonBlack / (w * h),
           canvases: canvases.length };
}
"""
# Cornerstone dispatches CORNERSTONE_IMAGE_RENDERED (not bubbling) on the viewport element after
# each render; a capturing listener on the document sees it. A canvas still blank this long after
# the first render is blank for good, so a black study fails in seconds, not at the deadline.
RENDER_PROBE_JS = """
document.addEventListener('CORNERSTONE_IMAGE_RENDERED', () => {
  window.__provisionRenders = (window.__provisionRenders || 0) + 1;
  window.__provisionFirstRender = window.__provisionFirstRender || performance.now();
}, true);
"""
SETTLE_MS = 1500
MIN_LEVELS = 16  # a drawn phantom or patient image has dozens; a blank or text-only canvas has few
MIN_NON_BLACK = 0.05


def expected_studies(studies: Iterable[Any]) -> list[dict[str, str]]:
    """[{"patient_name" as OHIF shows it, "study_uid"}] of `studies` (mappings or objects with those fields)."""
    out = []
    for s in studies:
        get = s.get if isinstance(s, Mapping) else lambda k, d=None, s=s: getattr(s, k, d)
        name = get("patient_name_ohif") or get("patient_name") or ""
        if "^" in name:
            name = ohif_patient_name(name)
        out.append({"patient_name": name, "study_uid": get("study_uid") or ""})
    if not out:
        raise ValueError("expected_studies is empty: name at least one study the list must show")
    return out


def dicomweb_roots(config_js: str) -> list[str]:
    """Every qidoRoot in the viewer's config."""
    return sorted(set(re.findall(r"qidoRoot:\s*'([^']+)'", config_js)))


def source_root(config_js: str, name: str) -> str:
    """The qidoRoot of the data source `name` in `config_js` (the first root after its sourceName)."""
    m = re.search(rf"sourceName:\s*'{re.escape(name)}'.*?qidoRoot:\s*'([^']+)'", config_js, re.DOTALL)
    if not m:
        raise ProvisionError(f"cannot run the browser smoke of data source {name!r}: the config has no such data source")
    return m.group(1)


def _pn_from_qido(study: dict[str, Any]) -> str:
    value = ((study.get("00100010") or {}).get("Value") or [None])[0]
    if isinstance(value, dict):
        value = value.get("Alphabetic", "")
    return ohif_patient_name(value or "")


def _image_stats(png: bytes) -> dict[str, Any]:
    with Image.open(io.BytesIO(png)) as img:
        gray = img.convert("L")
        hist = gray.histogram()
        total = gray.width * gray.height
    return {
        "levels": sum(1 for n in hist if n),
        "nonBlack": round(sum(hist[17:]) / total, 4) if total else 0.0,
        "size": [gray.width, gray.height],
    }


def _is_study_query(url: str, roots: list[str]) -> bool:
    return any(url.split("?")[0] == f"{r}/studies" for r in roots)


# ---- the study list

def study_list(s: Session, expected: list[dict[str, str]]) -> None:
    """Open the study list; record which expected studies it shows, and why any is missing."""
    t = time.perf_counter()
    _give_the_list_the_token(s)
    names_returned = _study_query(s, t)
    want = [e["patient_name"] for e in expected]
    # Wait for the expected studies the store did return (those the list must show); one it
    # did not return will never appear, so it is not waited for.
    showable = [w for w in want if w in names_returned]
    try:
        s.page.wait_for_function(
            "want => { const text = document.body ? document.body.innerText : ''; "
            "return want.every(w => text.includes(w)); }",
            arg=showable,
            timeout=s.timeout_ms,
        )
    except s.Timeout:
        pass
    text = s.page.evaluate("() => document.body ? document.body.innerText : ''")
    s.report.studies_shown = [w for w in want if w in text]
    s.report.timings["study_list"] = round(time.perf_counter() - t, 2)
    s.screenshot("study-list.png")
    missing = [e for e in expected if e["patient_name"] not in text]
    for e in missing:
        where = ("the store's study query did not return it" if e["patient_name"] not in names_returned
                 else "the store returned it but the list does not show it")
        s.report.problems.append(
            f"study list: study of {e['patient_name']!r} ({e['study_uid'] or 'no UID given'}) is missing: {where}; "
            f"the store returned {plural(len(names_returned), 'study')} ({', '.join(map(repr, names_returned)) or 'none'})"
        )
    s.inject_token = False
    for pattern in s.token_routes:
        s.page.unroute(pattern)
    s.token_routes = []
    if len(missing) == len(expected):
        raise Abort("no expected study is shown")


def _give_the_list_the_token(s: Session) -> None:
    """With a token, give the study list's DICOMweb requests the header (only the viewer route takes ?token=)."""
    if s.token and s.google_via:
        s.inject_token = True  # the Google route adds it (browser.py's docstring)
    elif s.token:
        def add_token(route: Any) -> None:
            route.continue_(headers={**route.request.headers, "authorization": f"Bearer {s.token}"})

        s.token_routes = [f"{r}/**" for r in s.page_roots] + ([] if s.offline else [GOOGLE_CONFIG_API])
        for pattern in s.token_routes:
            s.page.route(pattern, add_token)


def _study_query(s: Session, t: float) -> list[str]:
    """Open the study list and catch OHIF's study query; the patient names it returned."""
    query = f"?datasources={quote(s.data_source, safe='')}" if s.data_source else ""
    request, response = s.open_and_catch(
        f"{s.base}/{query}", lambda r: _is_study_query(r.url, s.page_roots),
        f"study list{query}: the viewer sent no study query to "
        f"{', '.join(s.page_roots) or '(no qidoRoot in the config)'} "
        "(the app did not start, or the config's data source is wrong)",
    )
    s.report.timings["study_query"] = round(time.perf_counter() - t, 2)
    if response is None:
        raise s.fail(
            f"study list: GET {request.url} failed in the browser ({request.failure}): the DICOMweb server is not "
            "reachable from the viewer, or its CORS answer does not allow the viewer's origin"
        )
    status = response.status
    if status not in (200, 204):
        try:
            body = response.body()
        except s.Error:
            body = b""
        raise s.fail(s.secret_free(http_problem("GET", response.url, status, body, "study list")))
    try:
        returned = response.json() if status == 200 else []
    except (s.Error, ValueError):
        returned = []
    return [_pn_from_qido(study) for study in returned if isinstance(study, dict)]


# ---- the viewer

def viewer(s: Session, study_uid: str) -> None:
    """Open the study in the viewer; its first frame must be a good answer and its viewport must show an image."""
    path = f"/viewer/{quote(s.data_source, safe='')}" if s.data_source else "/viewer"
    url = f"{s.base}{path}?StudyInstanceUIDs={quote(study_uid, safe='')}"
    s.report.viewer_url = url
    if s.token:
        url += f"&token={quote(s.token, safe='')}"
    t = time.perf_counter()
    request, response = s.open_and_catch(
        url, lambda r: "/frames/" in r.url and any(r.url.startswith(root) for root in s.page_roots),
        f"viewer: no frame was requested after opening study {study_uid}",
    )
    s.report.timings["first_frame"] = round(time.perf_counter() - t, 2)
    if response is None:
        raise s.fail(f"viewer: the first frame request failed in the browser ({request.failure})")
    _judge_first_frame(s, response)
    stats = _drawn_canvas(s)
    s.report.timings["image_drawn"] = round(time.perf_counter() - t, 2)
    try:   # SharedArrayBuffer for OHIF's MPR (the hosted viewer's isolation headers)
        s.report.cross_origin_isolated = bool(s.page.evaluate("() => self.crossOriginIsolated"))
    except s.Error:
        pass
    s.report.canvas = {"page": stats}
    s.screenshot("viewer.png")
    if not stats:
        raise s.fail(f"viewer: no viewport canvas appeared for study {study_uid}")
    png = s.screenshot("viewport.png", s.page.locator("canvas.cornerstone-canvas").first)
    shot = _image_stats(png) if png else {}
    if shot:
        s.report.canvas["screenshot"] = shot
    blank_in_page = stats["levels"] < MIN_LEVELS or stats["nonBlack"] < MIN_NON_BLACK
    blank_on_screen = bool(shot) and (shot["levels"] < MIN_LEVELS or shot["nonBlack"] < MIN_NON_BLACK)
    if blank_in_page or blank_on_screen:
        raise s.fail(
            f"viewer: the viewport canvas is blank for study {study_uid} "
            f"(in page: {stats['levels']} gray levels, {stats['nonBlack']:.1%} non-black"
            + (f"; screenshot: {shot['levels']} levels, {shot['nonBlack']:.1%} non-black" if shot else "")
            + f"; needs {MIN_LEVELS} levels and {MIN_NON_BLACK:.0%})"
        )


def _judge_first_frame(s: Session, response: Any) -> None:
    """The first frame's answer, judged as the DICOMweb smoke judges its own frames/1 answer."""
    if response.status != 200:
        s.report.problems.append(f"viewer: the first frame request answered {response.status}")
        return
    try:
        problem, _ = frame_problem(response.url, response.headers.get("content-type", ""), response.body())
    except s.Error:
        problem = None
    if problem:
        s.report.problems.append(f"viewer: {s.secret_free(problem)}")


def _drawn_canvas(s: Session) -> Any:
    """The viewport canvas' stats once it shows an image, or as it stands when it settled blank or
    the deadline passed (None: no canvas)."""
    try:
        handle = s.page.wait_for_function(
            f"() => {{ const s = ({CANVAS_STATS_JS})(); if (!s) return false; "
            f"if (s.levels >= {MIN_LEVELS} && s.nonBlack >= {MIN_NON_BLACK}) return s; "
            f"const first = window.__provisionFirstRender; "
            f"return first && performance.now() - first > {SETTLE_MS} ? s : false; }}",
            timeout=s.timeout_ms,
            polling=100,
        )
        return handle.json_value()
    except s.Timeout:
        return s.page.evaluate(CANVAS_STATS_JS)
