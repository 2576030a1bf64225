"""Replay the recorded real exchanges with Resource Manager (v1/v3), Service Usage and Cloud
Billing (shared/fidelity/gcp-recorded/*.http.log) against the emulator, and compare what can
be compared across runs: the status code and the JSON shape of each answer (keys, nesting,
JSON value kinds, `@type` values, the error `status`). Timestamps, numbers and etags differ
per run and are not compared. Every 2xx answer must also meet the discovery document's
response schema for its method.

Placeholders are filled per file: `${uniqueId}` with a fresh short token, `${projectId}`
with a project made (and linked to billing) before the replay, `${projectNumber}` and
`${operationID}` from the emulator's previous answers, `${billingAccountID}` with the seeded
account, `${folderID}` / `${organizationID}` with fixed IDs; a policy etag sent back is the
last one the emulator answered (the logs normalise etags to one placeholder value).

Figures (7 files, 91 exchanges): 83 match. The 8 that do not are listed in KNOWN_DIFFERENCES
with the reason: 2 because `cloudapis.googleapis.com` is a default service here (noop answer,
then nothing to poll), 2 because two recordings answer a v1 operations.get with v3 shapes where
the three others answer v1 shapes, 4 because a new project's first policy is recorded empty
while the emulator makes the creator its owner. The tests fail if a listed exchange starts
matching (stale entry) or any other exchange stops matching. storage-bucket-crud.http.log is replayed by
tests/test_fidelity_storage.py (OWNED_ELSEWHERE).
"""
from __future__ import annotations

import hashlib
import json
import re
from urllib.parse import urlsplit

import pytest
import requests
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import resourcemanager_v3

from provision.emulator import discovery
from conftest import SHARED  # tests/ is on sys.path (rootdir-relative test modules)
from recorded import Exchange, parse_log

LOG_DIR = SHARED / "fidelity" / "gcp-recorded"
OWNED_ELSEWHERE = {
    "storage-bucket-crud.http.log": "Cloud Storage JSON API, the storage engineer's: replayed by "
                                    "tests/test_fidelity_storage.py",
}
BILLING_ACCOUNT = "012345-6789AB-CDEF01"      # seeded by the emulator at start
FOLDER = "424242424242"
ORGANIZATION = "123456789012"

# (file, exchange index) -> why the emulator's answer differs from the recording.
KNOWN_DIFFERENCES: dict[tuple[str, int], str] = {
    ("resourcemanager-project-crud.http.log", 2):
        "cloudapis.googleapis.com is one of the services Google documents as enabled in every new project, so "
        "the emulator answers :enable with the synchronous operations/noop.DONE_OPERATION {name, done, response}; "
        "the recording shows a pending operation {name}, i.e. that project did not have it enabled yet.",
    ("resourcemanager-project-crud.http.log", 3):
        "Follows from exchange 2: the operation to poll is operations/noop.DONE_OPERATION, which cannot be "
        "polled (404 in the emulator, as reported for Google).",
    ("project-iam-partialpolicy.http.log", 2):
        "v1 operations.get on a project creation: this recording answers the v3 CreateProjectMetadata/Project "
        "(with a malformed parent 'organizations/organizations/N'), while the three other recordings of the same "
        "call answer v1 ProjectCreationStatus/v1 Project; the emulator follows the majority.",
    ("project-iam-partialpolicy-conditions.http.log", 2):
        "Same as project-iam-partialpolicy.http.log exchange 2 (v3 shapes on a v1 operations.get).",
    ("project-iam-partialpolicy.http.log", 7):
        "First getIamPolicy of a new project: recorded as {etag} alone (no bindings, no version); the emulator "
        "makes the creator the project's owner, as Google does for projects created by a user, so it answers "
        "{version, bindings, etag}.",
    ("project-iam-partialpolicy.http.log", 8): "Same as exchange 7 (second read before the first write).",
    ("project-iam-partialpolicy-conditions.http.log", 7): "Same as project-iam-partialpolicy.http.log exchange 7.",
    ("project-iam-partialpolicy-conditions.http.log", 8): "Same as project-iam-partialpolicy.http.log exchange 7.",
}

HOST_DOCS = {"cloudresourcemanager.googleapis.com": "cloudresourcemanager",
             "serviceusage.googleapis.com": "serviceusage", "cloudbilling.googleapis.com": "cloudbilling"}


def shape(value, key: str = "", parent: str = ""):
    """What is compared: keys and nesting, JSON kinds, `@type` values and the error `status`."""
    if isinstance(value, dict):
        return {k: shape(v, k, key) for k, v in value.items()}
    if isinstance(value, list):
        return sorted({json.dumps(shape(v, "", key), sort_keys=True) for v in value})
    if key == "@type" or (key == "status" and parent == "error"):
        return value
    return type(value).__name__


# ----- discovery schemas for the answers -------------------------------------------------------
def _path_regex(flat_path: str) -> re.Pattern:
    parts = re.split(r"(\{\+?[^}]+\})", flat_path)
    rx = "".join((".+" if p.startswith("{+") else "[^/:]+") if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(f"^/{rx}$")


def response_schema(host: str, method: str, path: str) -> tuple[str, str] | None:
    """(discovery document, response schema) of the method a recorded request called."""
    api = HOST_DOCS[host]
    version = path.split("/")[1]
    doc = f"{api}.{version}"
    stack = [discovery.document(doc)]
    while stack:
        res = stack.pop()
        for m in res.get("methods", {}).values():
            if m["httpMethod"] == method and _path_regex(m.get("flatPath", m["path"])).match(path):
                ref = (m.get("response") or {}).get("$ref")
                return (doc, ref) if ref else None
        stack.extend(res.get("resources", {}).values())
    raise AssertionError(f"no {doc} method for {method} {path}")


# ----- replay ---------------------------------------------------------------------------------
class Replayer:
    def __init__(self, emu, log_name: str):
        self.emu = emu
        token = hashlib.sha256(log_name.encode()).hexdigest()[:6]
        self.values = {"uniqueId": f"r{token}", "billingAccountID": BILLING_ACCOUNT, "folderID": FOLDER,
                       "organizationID": ORGANIZATION}
        self.etag: str | None = None
        project_id = f"fidelity-{token}"
        client = resourcemanager_v3.ProjectsClient(credentials=AnonymousCredentials(), transport="rest",
                                                   client_options=ClientOptions(api_endpoint=emu.url))
        made = client.create_project(project=resourcemanager_v3.Project(project_id=project_id)).result(timeout=30)
        requests.put(f"{emu.url}/v1/projects/{project_id}/billingInfo",
                     json={"billingAccountName": f"billingAccounts/{BILLING_ACCOUNT}"}).raise_for_status()
        self.values.update(projectId=project_id, projectNumber=made.name.split("/")[1])

    def fill(self, text: str, *, strict: bool = True) -> str:
        """Substitute placeholders (in recorded answers, whose values are not compared, leniently)."""
        def sub(m):
            assert m.group(1) in self.values or not strict, f"no value for placeholder {m.group(0)}"
            return self.values.get(m.group(1), m.group(1))
        return re.sub(r"\$\{(\w+)\}", sub, text)

    def send(self, ex: Exchange) -> requests.Response:
        parts = urlsplit(self.fill(ex.url))
        url = f"{self.emu.url}{parts.path}" + (f"?{parts.query}" if parts.query else "")
        body = json.loads(self.fill(ex.body)) if ex.body else None
        if isinstance(body, dict) and isinstance(body.get("policy"), dict) and "etag" in body["policy"] and self.etag:
            body["policy"]["etag"] = self.etag
        return requests.request(ex.method, url, json=body)

    def learn(self, answer: dict) -> None:
        name = answer.get("name", "")
        if name.startswith("operations/"):
            self.values["operationID"] = name[len("operations/"):]
        if "projectNumber" in answer:
            self.values["projectNumber"] = answer["projectNumber"]
        if "etag" in answer and ("bindings" in answer or "version" in answer or set(answer) == {"etag"}):
            self.etag = answer["etag"]


def replay(emu, log_name: str) -> tuple[list[int], dict[int, str]]:
    """(indexes of matching exchanges, {index: how it differs})."""
    player = Replayer(emu, log_name)
    matched, differ = [], {}
    for ex in parse_log((LOG_DIR / log_name).read_text()):
        host = urlsplit(ex.url).hostname
        r = player.send(ex)
        answer = r.json() if r.content else {}
        expected = json.loads(player.fill(ex.response, strict=False)) if ex.response else {}
        if isinstance(answer, dict):
            player.learn(answer)
        problems = []
        if r.status_code != ex.status:
            problems.append(f"status {r.status_code} != recorded {ex.status}")
        elif shape(answer) != shape(expected):
            problems.append(f"shape differs:\n  recorded {json.dumps(shape(expected), sort_keys=True)}\n"
                            f"  emulator {json.dumps(shape(answer), sort_keys=True)}")
        if 200 <= r.status_code < 300:
            schema = response_schema(host, ex.method, urlsplit(r.url).path)
            if schema:
                found = discovery.problems(*schema, answer)
                assert not found, f"{log_name} #{ex.index} {ex.method} {ex.url}: answer breaks {schema}: {found}"
        if problems:
            differ[ex.index] = f"{ex.method} {ex.url}: " + "; ".join(problems)
        else:
            matched.append(ex.index)
    return matched, differ


REPLAYED = sorted(p.name for p in LOG_DIR.glob("*.http.log") if p.name not in OWNED_ELSEWHERE)


def test_every_recording_is_replayed_or_owned_elsewhere():
    present = {p.name for p in LOG_DIR.glob("*.http.log")}
    assert present, f"no recordings in {LOG_DIR}"
    assert set(OWNED_ELSEWHERE) <= present
    for name in present - set(OWNED_ELSEWHERE):
        hosts = {urlsplit(ex.url).hostname for ex in parse_log((LOG_DIR / name).read_text())}
        assert hosts <= set(HOST_DOCS), f"{name} calls {hosts - set(HOST_DOCS)}, which this replay does not own"
    assert {f for f, _ in KNOWN_DIFFERENCES} <= set(REPLAYED)


@pytest.mark.parametrize("log_name", REPLAYED)
def test_recorded_exchanges_match(emulator, log_name):
    matched, differ = replay(emulator, log_name)
    known = {i: why for (f, i), why in KNOWN_DIFFERENCES.items() if f == log_name}
    unexpected = {i: d for i, d in differ.items() if i not in known}
    assert not unexpected, f"{log_name}: exchanges that differ from the recording:\n" + "\n".join(
        f"  #{i} {d}" for i, d in sorted(unexpected.items()))
    stale = sorted(set(known) - set(differ))
    assert not stale, f"{log_name}: KNOWN_DIFFERENCES entries {stale} match now; remove them"
    assert matched, f"{log_name}: nothing matched"


def test_figures_in_the_docstring_are_current(emulator_factory):
    """The module docstring states N of M; keep it true."""
    total = matched = 0
    for name in REPLAYED:
        ok, differ = replay(emulator_factory(), name)
        total += len(ok) + len(differ)
        matched += len(ok)
    assert f"({len(REPLAYED)} files, {total} exchanges): {matched} match" in " ".join(__doc__.split())
