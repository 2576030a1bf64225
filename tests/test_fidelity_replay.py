"""Replay the recorded real exchanges with Resource Manager (v1/v3), Service Usage and Cloud
Billing (shared/fidelity/gcp-recorded/*.http.log) against the emulator, and compare what can
be compared across runs: the status code and the JSON shape of each answer: keys and nesting,
each scalar's type as the method's discovery schema types it (an int64 is a string of digits,
a timestamp an RFC 3339 string, bytes base64, an enum one of its values), enum values
themselves, `@type` values and the error `status`. Timestamps, numbers and etags differ per run
and are not compared. Every 2xx answer must also meet the discovery document's response schema
for its method, strictly (`discovery.problems(..., strict=True)`).

Placeholders are filled per file: `${uniqueId}` with a fresh short token, `${projectId}`
with a project made (and linked to billing) before the replay, `${projectNumber}` and
`${operationID}` from the emulator's previous answers, `${billingAccountID}` with the seeded
account, `${folderID}` / `${organizationID}` with fixed IDs; a policy etag sent back is the
last one the emulator answered (the logs normalise etags to one placeholder value). The
recordings come from Config Connector's test harness, which calls Google as a service account:
the replay sends that identity too (`RECORDED_CALLER`).

Two things the recordings show are normalised away on both sides, each for the reason given in
NORMALISED (evidence that Google's answer differs from the recorded text there).

Figures (7 files, 91 exchanges): 89 match. The 2 that do not are listed in KNOWN_DIFFERENCES
with the reason. The tests fail if a listed exchange starts matching (stale entry) or any other
exchange stops matching. storage-bucket-crud.http.log is replayed by
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

# Who the recorded calls came from: Config Connector's harness authenticates as a service account.
RECORDED_CALLER = "serviceAccount:cnrm-tests@kcc-recordings.iam.gserviceaccount.com"

# (file, exchange index) -> why the emulator's answer differs from the recording.
MOCKGCP_V1 = ("the v1 operations.get of a project created under an organization is recorded with v3 shapes "
              "(CreateProjectMetadata with no field, a v3 Project with parent 'organizations/organizations/N') where "
              "the same call for a project under a folder is recorded with the v1 ProjectCreationStatus and v1 Project. "
              "Both oddities are what Config Connector's own mock produced, not Google: mockgcp's projectsv1.go built "
              "the v3 parent as `type + \"s/\" + id` (the request's id was already 'organizations/N') and its "
              "/v1/operations/{name} route served the stored v3 operation (GoogleCloudPlatform/k8s-config-connector, "
              "mockgcp/mockresourcemanager/projectsv1.go and service.go). A real v1 facade has no reason to answer by "
              "parent type, so the emulator answers v1 shapes whatever the parent.")
KNOWN_DIFFERENCES: dict[tuple[str, int], str] = {
    ("project-iam-partialpolicy.http.log", 2): MOCKGCP_V1,
    ("project-iam-partialpolicy-conditions.http.log", 2): MOCKGCP_V1,
}

# Recorded text that is normalised on both sides before comparing, and why.
NORMALISED = {
    "Any(google.protobuf.Empty).value":
        "an Any holding google.protobuf.Empty is recorded as {@type, value: {}}, Go protojson's rendering "
        "(golang/protobuf#759, #1707); the C++, Java and Python printers write {@type} alone "
        "(protocolbuffers/protobuf#5390, #17099), Google's front end is not Go, and the Python parser of the REST "
        "clients refuses the recorded form (protocolbuffers/protobuf#24445), so the emulator writes {@type}.",
    "GoogleApiServiceusageV1Service.config":
        "services.get/list answers carry `config` {name, title, documentation.summary, quota, authentication, "
        "usage.requirements, monitoring} on Google: `gcloud services list --format=json` output of the real API "
        "quoted in public repositories shows it, and gcloud prints its NAME and TITLE columns from it; the "
        "recordings have none (Config Connector's mock never writes it). The emulator writes it; the comparison "
        "ignores it when the recording has none.",
}

HOST_DOCS = {"cloudresourcemanager.googleapis.com": "cloudresourcemanager",
             "serviceusage.googleapis.com": "serviceusage", "cloudbilling.googleapis.com": "cloudbilling"}


TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def normalise(value, recorded=None):
    """NORMALISED, applied to one answer (`recorded`: the recording's answer at the same place)."""
    if isinstance(value, list):
        rec = recorded if isinstance(recorded, list) else []
        return [normalise(v, rec[0] if rec else None) for v in value]
    if not isinstance(value, dict):
        return value
    out = dict(value)
    if out.get("@type") == "type.googleapis.com/google.protobuf.Empty" and out.get("value") == {}:
        del out["value"]
    rec = recorded if isinstance(recorded, dict) else {}
    if re.match(r"^projects/[^/]+/services/[^/]+$", str(out.get("name", ""))) and "config" not in rec:
        out.pop("config", None)
    return {k: normalise(v, rec.get(k)) for k, v in out.items()}


def scalar(value, schema: dict | None) -> str:
    """A scalar's type as the discovery schema types it; enum values are the value itself."""
    schema = schema or {}
    if "enum" in schema:
        return f"enum {value!r}"
    fmt = schema.get("format")
    if isinstance(value, str) and fmt in ("int64", "uint64"):
        return "int64" if value.lstrip("-").isdigit() else "str (not int64 digits)"
    if isinstance(value, str) and fmt == "google-datetime":
        return "timestamp" if TIMESTAMP.match(value) else "str (not a timestamp)"
    if isinstance(value, str) and fmt == "byte":
        return "bytes"
    return type(value).__name__


def shape(value, schema: dict | None, schemas: dict, doc: str, key: str = "", parent: str = ""):
    """What is compared: keys and nesting, scalar types per the discovery schema, enum values,
    `@type` values and the error `status`."""
    if schema and "$ref" in schema:
        schema = schemas.get(schema["$ref"])
    schema = schema or {}
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        if props is None and "@type" in value:
            found = discovery.any_schema(doc, value["@type"])
            if found:
                schemas, schema = found
                props, extra = schema.get("properties"), None
        out = {}
        for k, v in value.items():
            sub = (props or {}).get(k) if props is not None else extra
            out[k] = shape(v, sub, schemas, doc, k, key)
        return out
    if isinstance(value, list):
        item = schema.get("items") if schema.get("type") == "array" else None
        return sorted({json.dumps(shape(v, item, schemas, doc, "", key), sort_keys=True) for v in value})
    if key == "@type" or (key == "status" and parent == "error"):
        return value
    return scalar(value, schema)


# ----- discovery schemas for the answers -------------------------------------------------------
def _path_regex(flat_path: str) -> re.Pattern:
    parts = re.split(r"(\{\+?[^}]+\})", flat_path)
    rx = "".join((".+" if p.startswith("{+") else "[^/:]+") if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(f"^/{rx}$")


def response_schema(host: str, method: str, path: str) -> tuple[str, str | None]:
    """(discovery document, response schema or None) of the method a recorded request called."""
    api = HOST_DOCS[host]
    version = path.split("/")[1]
    doc = f"{api}.{version}"
    stack = [discovery.document(doc)]
    while stack:
        res = stack.pop()
        for m in res.get("methods", {}).values():
            if m["httpMethod"] == method and _path_regex(m.get("flatPath", m["path"])).match(path):
                ref = (m.get("response") or {}).get("$ref")
                return doc, ref
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
        return requests.request(ex.method, url, json=body, headers={"Authorization": f"Bearer emulator:{RECORDED_CALLER}"})

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
        doc, ref = response_schema(host, ex.method, urlsplit(r.url).path)
        schemas = discovery.document(doc)["schemas"]
        schema = {"$ref": ref} if ref and 200 <= ex.status < 300 else None
        problems = []
        if r.status_code != ex.status:
            problems.append(f"status {r.status_code} != recorded {ex.status}")
        else:
            ours = shape(normalise(answer, expected), schema, schemas, doc)
            theirs = shape(normalise(expected), schema, schemas, doc)
            if ours != theirs:
                problems.append(f"shape differs:\n  recorded {json.dumps(theirs, sort_keys=True)}\n"
                                f"  emulator {json.dumps(ours, sort_keys=True)}")
        if 200 <= r.status_code < 300 and ref:
            found = discovery.problems(doc, ref, answer, strict=True)
            assert not found, f"{log_name} #{ex.index} {ex.method} {ex.url}: answer breaks {doc} {ref}: {found}"
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


def test_the_comparison_sees_scalar_types_enum_values_and_the_strict_schema():
    """The replay would catch a number where Google writes an int64 string, a value outside an
    enum, a state that differs, and a field its message does not have inside an operation's Any."""
    doc = "cloudresourcemanager.v1"
    schemas = discovery.document(doc)["schemas"]
    project = {"projectNumber": "123", "lifecycleState": "ACTIVE", "createTime": "2024-04-01T12:34:56.123456Z"}

    def seen(value):
        return shape(value, {"$ref": "Project"}, schemas, doc)

    assert seen(project) == seen({**project, "projectNumber": "987654321012"})
    assert seen(project) != seen({**project, "projectNumber": 123})
    assert seen(project) != seen({**project, "lifecycleState": "DELETE_REQUESTED"})
    assert seen(project) != seen({**project, "createTime": "yesterday"})
    assert discovery.problems(doc, "Project", {**project, "projectNumber": 123}, strict=True)
    assert not discovery.problems(doc, "Project", {**project, "projectNumber": 123})     # a request may
    assert discovery.problems(doc, "Project", {**project, "lifecycleState": "GONE"})
    op = {"name": "operations/cp.1", "done": True,
          "response": {"@type": "type.googleapis.com/google.cloud.resourcemanager.v3.Project", "projectId": "p",
                       "lifecycleState": "ACTIVE"}}
    found = discovery.problems(doc, "Operation", op, strict=True)
    assert found and "lifecycleState" in found[0][1]                  # a v1 field in a v3 Project
    assert normalise({"@type": "type.googleapis.com/google.protobuf.Empty", "value": {}}) == \
        {"@type": "type.googleapis.com/google.protobuf.Empty"}
