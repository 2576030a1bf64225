"""Blueprint loading, Google's naming rules, and the `validate` / `schema` / `init` commands.

The corpus `tests/blueprints/invalid/*.yaml` holds one broken blueprint per file. Line 1
of each file is its expectation:

    # expect: LINE:COL | phrase | another phrase

`provision validate FILE` must exit 2 and print `FILE:LINE:COL:` plus every phrase
(case-insensitive), and never a traceback. The header is line 1, so the blueprint itself
starts on line 2.
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from provision import cli
from provision.blueprint import naming as bp
from provision.blueprint.load import json_schema, load_blueprint
from provision.blueprint.models import Blueprint
from provision.blueprint.starter import starter_blueprint
from provision.errors import BlueprintError

ROOT = Path(__file__).resolve().parent.parent
CORPUS = sorted((ROOT / "tests" / "blueprints" / "invalid").glob("*.yaml"))
DEMO_PACKAGED = ROOT / "provision" / "blueprints" / "demo.yaml"
EXAMPLE = ROOT / "blueprints" / "example-gcp.yaml"
PROVISION = Path(sys.executable).parent / "provision"

MINIMAL = """\
version: 1
project: {id: ohif-team-a}
dataset: {id: imaging, location: us-central1}
dicom_stores:
  - id: primary
"""


def run_provision(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run the CLI app in Typer's CliRunner; stdout and stderr are captured together."""
    result = CliRunner().invoke(cli.app, list(args), env=env)
    return result.exit_code, result.output


def expectation(path: Path) -> tuple[str, list[str]]:
    head = path.read_bytes().split(b"\n", 1)[0].decode("utf-8")
    assert head.startswith("# expect:"), f"{path.name}: line 1 must be '# expect: LINE:COL | phrase ...'"
    pos, *phrases = [part.strip() for part in head.removeprefix("# expect:").split("|")]
    return pos, phrases


def write(tmp_path: Path, text: str, name: str = "blueprint.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems_of(path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(BlueprintError) as info:
        load_blueprint(path, env=env if env is not None else {})
    return info.value.problems


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """The packaged demo blueprint where `provision demo` writes it: a copy beside demo-data/, which
    the demo fills before validating (here left empty)."""
    from provision.demo.run import write_demo_blueprint

    path = write_demo_blueprint(tmp_path_factory.mktemp("demo"))
    (path.parent / "demo-data").mkdir()
    return path


@pytest.fixture(scope="module")
def demo_data_dir(demo) -> Path:
    return demo.parent / "demo-data"


# ----------------------------------------------------------------------------- corpus


def test_corpus_is_large_and_every_file_has_an_expectation():
    assert len(CORPUS) >= 45
    for path in CORPUS:
        pos, phrases = expectation(path)
        line, col = pos.split(":")
        assert int(line) >= 1 and int(col) >= 1 and phrases, path.name


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_invalid_blueprint_is_refused_with_position_and_reason(path: Path, monkeypatch):
    monkeypatch.delenv("PROVISION_TEST_SURELY_UNSET_VAR", raising=False)
    pos, phrases = expectation(path)
    code, out = run_provision("validate", str(path))
    assert code == 2, out
    assert f"{path}:{pos}:" in out, out
    for phrase in phrases:
        assert phrase.lower() in out.lower(), f"{phrase!r} not in:\n{out}"
    assert "Traceback" not in out


@pytest.mark.skipif(not PROVISION.exists(), reason="console script not installed in this environment")
@pytest.mark.parametrize("name", ["alias-bomb", "binary", "unknown-key-nested", "role-basic"])
def test_console_script_refuses_invalid_blueprint(name: str):
    path = ROOT / "tests" / "blueprints" / "invalid" / f"{name}.yaml"
    pos, phrases = expectation(path)
    proc = subprocess.run([str(PROVISION), "validate", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert f"{path}:{pos}:" in proc.stderr
    assert all(p.lower() in proc.stderr.lower() for p in phrases)
    assert "Traceback" not in proc.stderr + proc.stdout


def test_validation_makes_no_network_call(monkeypatch, demo):
    def refuse(*args, **kwargs):
        raise AssertionError("validation tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for path in CORPUS:
        with pytest.raises(BlueprintError):
            load_blueprint(path, env={})
    for path in (demo, EXAMPLE):
        load_blueprint(path, env={})
    code, out = run_provision("validate", str(EXAMPLE))
    assert code == 0, out


# ------------------------------------------------------------------- valid blueprints


def test_demo_blueprint_validates(demo, demo_data_dir):
    b = load_blueprint(demo, env={})
    assert b.project.id == "ohif-demo"
    assert b.project.display_name == "OHIF Demo"
    assert b.project.billing_account == "012345-6789AB-CDEF01"
    assert b.apis == ["healthcare.googleapis.com", "cloudresourcemanager.googleapis.com"]
    assert b.bucket is not None and b.bucket.upload is not None
    assert b.bucket.upload.from_ == demo_data_dir
    assert b.dicom_stores[0].import_ is not None
    assert b.dicom_stores[0].import_.uri == "gs://ohif-demo-dicom/dicom/**.dcm"
    assert b.dicom_stores[0].iam[0].roles == ["roles/healthcare.dicomViewer"]
    assert b.viewer.oauth_client_id is None
    assert b.viewer.config_out == demo.parent / "google.js"
    assert b.smoke.min_studies == 2
    assert b.source == demo


def test_example_gcp_blueprint_validates():
    b = load_blueprint(EXAMPLE, env={})
    assert len(b.dicom_stores) == 2
    assert b.viewer.origin.startswith("https://")
    assert b.viewer.oauth_client_id and b.viewer.oauth_client_id.endswith(".apps.googleusercontent.com")
    # The second store imports from a bucket other than the blueprint's own: allowed.
    assert b.bucket is not None
    assert not b.dicom_stores[1].import_.uri.startswith(f"gs://{b.bucket.name}/")


def test_validate_command_reports_success(demo):
    code, out = run_provision("validate", str(demo))
    assert code == 0, out
    assert "valid" in out and "ohif-demo" in out


def test_init_writes_a_starter_that_validates(tmp_path):
    target = tmp_path / "team" / "blueprint.yaml"
    code, out = run_provision("init", str(target))
    assert code == 0, out
    b = load_blueprint(target, env={})
    assert b.project.id
    text = target.read_text()
    assert text == starter_blueprint()
    assert text.count("#") > 10  # commented
    code, out = run_provision("init", str(target))
    assert code == 2 and "--force" in out


def test_init_to_stdout_is_the_starter():
    code, out = run_provision("init")
    assert code == 0
    assert out == starter_blueprint()


def test_schema_command_prints_json_schema():
    code, out = run_provision("schema")
    assert code == 0
    schema = json.loads(out)
    assert set(schema["properties"]) == {
        "version", "project", "apis", "allow_basic_roles", "iam", "bucket", "audit_logs",
        "dataset", "dicom_stores", "viewer_sources", "viewer", "smoke",
    }  # fmt: skip
    assert {"version", "project", "dataset", "dicom_stores"} <= set(schema["required"])
    assert schema["additionalProperties"] is False
    defs = schema["$defs"]
    assert "from" in defs["Upload"]["properties"] and "from_" not in defs["Upload"]["properties"]
    assert "import" in defs["DicomStore"]["properties"]
    assert "source" not in schema["properties"] and '"_source"' not in json.dumps(schema)   # Blueprint.source is no key
    location = defs["Dataset"]["properties"]["location"]
    assert "enum" not in location and location["pattern"] == "^(us|eu|[a-z][a-z0-9]*(-[a-z0-9]+)+)$"
    assert schema == json.loads(json.dumps(json_schema()))


def test_viewer_sources_are_read_and_normalised(tmp_path):
    bp = load_blueprint(write(tmp_path, MINIMAL + """\
viewer_sources:
  - {name: idc, idc: latest}
  - {name: idc23, idc: 23}
  - {name: nih, public: nih-chest-xray, label: NIH (read-only)}
  - name: teamb
    store: projects/team-b-imaging/locations/us-central1/datasets/imaging/dicomStores/primary
    contact: imaging-admins@team-b.example.com
  - {name: pacs, dicomweb: "https://pacs.example.org/dicomWeb/"}
"""), env={})
    got = [(s.name, s.idc, s.public, s.store, s.dicomweb) for s in bp.viewer_sources]
    assert got == [("idc", "latest", None, None, None), ("idc23", "v23", None, None, None),
                   ("nih", None, "nih-chest-xray", None, None),
                   ("teamb", None, None, "projects/team-b-imaging/locations/us-central1/datasets/imaging/dicomStores/primary",
                    None),
                   ("pacs", None, None, None, "https://pacs.example.org/dicomWeb")]
    assert load_blueprint(write(tmp_path, MINIMAL, "plain.yaml"), env={}).viewer_sources == []
    defs = json_schema()["$defs"]["ViewerSource"]["properties"]
    assert defs["public"]["enum"] == ["nih-chest-xray", "idc-proxy"] and "pattern" in defs["store"]


# ------------------------------------------------------------------ loading behaviour


def test_env_expansion(tmp_path):
    path = write(
        tmp_path,
        """\
version: 1
project:
  id: ${PROJECT}
  billing_account: ${BILLING}
  labels: {owner: "team-${TEAM}"}
dataset: {id: imaging, location: us-central1}
dicom_stores:
  - id: primary
    import: {uri: "gs://${BUCKET}/dicom/**.dcm"}
viewer:
  config_out: "out/$${NOT_A_VAR}.js"
smoke: {min_studies: "${MIN}"}
""",
    )
    env = {"PROJECT": "ohif-team-b", "BILLING": "billingAccounts/ABCDEF-012345-6789AB", "TEAM": "b", "BUCKET": "shared-dicom", "MIN": "3"}
    b = load_blueprint(path, env=env)
    assert b.project.id == "ohif-team-b"
    assert b.project.billing_account == "ABCDEF-012345-6789AB"
    assert b.project.labels == {"owner": "team-b"}
    assert b.dicom_stores[0].import_.uri == "gs://shared-dicom/dicom/**.dcm"
    assert b.viewer.config_out == tmp_path / "out" / "${NOT_A_VAR}.js"
    assert b.smoke.min_studies == 3


def test_env_defaults_to_os_environ(tmp_path, monkeypatch):
    monkeypatch.setenv("PROVISION_TEST_PROJECT", "ohif-from-env")
    path = write(tmp_path, MINIMAL.replace("ohif-team-a", '"${PROVISION_TEST_PROJECT}"'))
    assert load_blueprint(path).project.id == "ohif-from-env"


def test_unquoted_reference_in_flow_mapping_gets_a_quoting_hint(tmp_path):
    (problem,) = problems_of(write(tmp_path, MINIMAL.replace("ohif-team-a", "${PROJECT}")))
    assert "YAML syntax error" in problem and 'quote a value that holds ${...}' in problem


def test_every_unset_variable_is_named_at_its_position(tmp_path):
    path = write(tmp_path, MINIMAL.replace("ohif-team-a", '"${A}-${B}"'))
    problems = problems_of(path)
    assert problems == [
        f"{path}:2:16: environment variable A is not set (referenced as ${{A}}); set it, or write $${{A}} for a literal ${{A}}",
        f"{path}:2:21: environment variable B is not set (referenced as ${{B}}); set it, or write $${{B}} for a literal ${{B}}",
    ]  # and no second complaint that "${A}-${B}" is not a valid project ID


def test_paths_resolve_relative_to_the_blueprint_file(tmp_path, monkeypatch):
    (tmp_path / "team" / "data").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    path = write(
        tmp_path / "team",
        MINIMAL + "bucket:\n  name: ohif-team-a-dicom\n  upload: {from: ./data, prefix: dicom/}\nviewer: {config_out: ../out/google.js}\n",
    )
    b = load_blueprint(Path("../team/blueprint.yaml"), env={})
    assert b.bucket.upload.from_ == tmp_path / "team" / "data"
    assert b.viewer.config_out == tmp_path / "out" / "google.js"
    assert b.source == path
    assert b.source.is_absolute() and b.viewer.config_out.is_absolute()


def test_default_config_out_is_next_to_the_blueprint(tmp_path):
    b = load_blueprint(write(tmp_path, MINIMAL), env={})
    assert b.viewer.config_out == tmp_path / "out" / f"{b.project.id}.js"   # one per project: a fleet never collides
    assert b.viewer.origin == "http://localhost:3000"
    assert b.project.display_name is None  # absent: the id only when creating the project
    assert b.bucket is None and b.iam == [] and b.allow_basic_roles is False
    assert b.smoke.min_studies == 1 and b.smoke.browser is False
    assert b.dataset.time_zone == "UTC"


def test_errors_from_several_places_come_out_together_sorted(tmp_path):
    path = write(
        tmp_path,
        """\
version: 1
project: {id: Bad_Project}
dataset: {id: imaging, location: Mars}
dicom_stores:
  - id: primary
    improt: {uri: "gs://x/y"}
  - id: primary
viewer: {origin: "ftp://x"}
smoke: {min_studies: -1}
""",
    )
    problems = problems_of(path)
    positions = [p.split(": ", 1)[0].removeprefix(f"{path}:") for p in problems]
    assert positions == ["2:15", "3:34", "6:5", "7:9", "8:18", "9:22"], problems
    with pytest.raises(BlueprintError) as info:
        load_blueprint(path, env={})
    assert str(info.value) == "\n".join(problems)
    assert info.value.exit_code == 2


def test_round_trip_through_model_dump(tmp_path):
    # Compare dumps: model equality also compares the private `source`, which differs.
    original = load_blueprint(EXAMPLE, env={})
    rebuilt = Blueprint.model_validate(original.model_dump(by_alias=True))
    assert rebuilt.model_dump() == original.model_dump()
    dumped = yaml.safe_dump(original.model_dump(mode="json", by_alias=True), sort_keys=False)
    assert "import:" in dumped and "import_" not in dumped
    again = load_blueprint(write(tmp_path, dumped, "again.yaml"), env={})
    assert again.model_dump() == original.model_dump()
    assert again.source == tmp_path / "again.yaml"


def test_round_trip_keeps_upload_from(tmp_path, demo):
    original = load_blueprint(demo, env={})
    dumped = yaml.safe_dump(original.model_dump(mode="json", by_alias=True))
    assert "from:" in dumped
    assert load_blueprint(write(tmp_path, dumped), env={}).model_dump() == original.model_dump()


def test_source_is_not_a_key_and_not_dumped():
    b = load_blueprint(EXAMPLE, env={})
    assert "source" not in b.model_dump() and "_source" not in b.model_dump()
    assert b.model_copy().source == b.source
    built = Blueprint.model_validate(yaml.safe_load(MINIMAL))
    assert built.source is None


def test_python_construction_applies_whole_blueprint_rules():
    data = yaml.safe_load(MINIMAL)
    data["dicom_stores"].append({"id": "primary"})
    with pytest.raises(Exception, match="used twice"):
        Blueprint.model_validate(data)
    data = yaml.safe_load(MINIMAL) | {"iam": [{"member": "group:a@example.com", "roles": ["roles/owner"]}]}
    with pytest.raises(Exception, match="basic role"):
        Blueprint.model_validate(data)
    assert Blueprint.model_validate(data | {"allow_basic_roles": True}).allow_basic_roles


def test_basic_roles_allowed_when_opted_in(tmp_path):
    path = write(tmp_path, MINIMAL + "allow_basic_roles: true\niam:\n  - member: user:ana@example.com\n    roles: [roles/editor]\n")
    assert load_blueprint(path, env={}).iam[0].roles == ["roles/editor"]


def test_normalisations(tmp_path):
    path = write(
        tmp_path,
        MINIMAL.replace("{id: ohif-team-a}", "{id: ohif-team-a, billing_account: billingAccounts/012345-6789AB-CDEF01}")
        + "viewer: {origin: 'https://viewer.example.com/'}\n",
    )
    b = load_blueprint(path, env={})
    assert b.project.billing_account == "012345-6789AB-CDEF01"
    assert b.viewer.origin == "https://viewer.example.com"


def test_control_characters_in_values_are_escaped_in_messages(tmp_path):
    path = write(tmp_path, MINIMAL.replace("ohif-team-a", '"ohif\\u202eteam"'))
    (problem,) = problems_of(path)
    assert "\u202e" not in problem and "\\u202e" in problem


# -------------------------------------------------------------------- hostile input


def test_alias_bomb_is_refused_at_the_first_anchor(tmp_path):
    # ~50 levels of 10x fan-out would be 10**50 nodes if anything expanded it.
    lines = ["version: 1", 'l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 50)]
    path = write(tmp_path, "\n".join(lines) + "\n")
    problems = problems_of(path)
    assert problems == [
        f"{path}:2:5: YAML anchor '&l0' is not allowed; blueprints refuse anchors and aliases "
        "(they can expand exponentially); write the value out in full"
    ]


def test_alias_without_anchor_is_refused(tmp_path):
    (problem,) = problems_of(write(tmp_path, "version: 1\nproject: *p\n"))
    assert ":2:10:" in problem or "YAML" in problem


def test_file_over_one_mebibyte_is_refused_without_reading_it(tmp_path):
    sparse = tmp_path / "huge.yaml"
    with sparse.open("wb") as fh:
        fh.truncate(64 * 1024**3)  # 64 GiB, sparse: reading it would never finish
    assert problems_of(sparse) == [f"{sparse}:1:1: the file is 65536.0 MiB; a blueprint must be at most 1 MiB"]

    just_over = tmp_path / "just-over.yaml"
    body = MINIMAL.encode()
    just_over.write_bytes(body + b"#" * (bp_max() + 1 - len(body)))
    (problem,) = problems_of(just_over)
    assert problem.startswith(f"{just_over}:1:1:") and "at most 1 MiB" in problem


def test_file_of_exactly_one_mebibyte_is_read(tmp_path):
    path = tmp_path / "big.yaml"
    body = MINIMAL.encode() + b"# padding\n"
    path.write_bytes(body + b"#" * (bp_max() - len(body) - 1) + b"\n")
    assert path.stat().st_size == bp_max()
    assert load_blueprint(path, env={}).project.id == "ohif-team-a"


def bp_max() -> int:
    from provision.blueprint.yamlpos import MAX_BYTES

    return MAX_BYTES


@pytest.mark.parametrize(
    ("make", "phrase"),
    [
        (lambda d: d / "missing.yaml", "no such file"),
        (lambda d: d, "no blueprint (*.yaml, *.yml) in this directory"),   # a directory is a fleet: empty here
    ],
    ids=["missing", "directory"],
)
def test_unreadable_paths(tmp_path, make, phrase):
    target = make(tmp_path)
    code, out = run_provision("validate", str(target))
    assert code == 2 and phrase in out and "Traceback" not in out
    assert f"{target}: " in out


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_device_is_refused():
    (problem,) = problems_of(Path("/dev/zero"))
    assert "not a regular file" in problem


def test_duplicate_keys_anywhere(tmp_path):
    path = write(tmp_path, MINIMAL + "viewer:\n  origin: http://a:1\n  origin: http://b:2\n")
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}:8:3: duplicate key 'origin' (first at line 7, column 3)")


# ---------------------------------------------------------------------- naming rules


def _ok(check, value):
    return check(value)


def _bad(check, value) -> str:
    with pytest.raises(bp._Invalid) as info:
        check(value)
    return str(info.value)


@pytest.mark.parametrize("value", ["ohif-team-a", "abcdef", "a" * 30, "a1-2-3-4", "team-a-123456"])
def test_project_id_valid(value):
    assert _ok(bp.check_project_id, value) == value


@pytest.mark.parametrize(
    ("value", "why"),
    [("abcde", "5 characters"), ("a" * 31, "31 characters"), ("Ohif-team", "uppercase"), ("1ohif-team", "starts with"),
     ("ohif_team", "contains '_'"), ("ohif-team-", "hyphen"), ("nullable-team", "'null'"), ("undefined-x", "'undefined'")],
)  # fmt: skip
def test_project_id_invalid(value, why):
    assert why.lower() in _bad(bp.check_project_id, value).lower()


@pytest.mark.parametrize("value", ["my-bucket", "a.b.c", "abc", "a" * 63, ".".join(["a" * 63] * 3), "under_score", "1bucket"])
def test_bucket_name_valid(value):
    assert bp.bucket_name_problem(value) is None


@pytest.mark.parametrize(
    "value",
    ["ab", "a" * 64, "-abc", "abc_", "ABC", "a..b", "a" * 64 + ".com", "10.0.0.1", "goog-x", "googl", "x-google-y",
     "my-go0gle", "my-g00gle", "buck et", "bücket", ".".join(["a" * 60] * 4)],
)  # fmt: skip
def test_bucket_name_invalid(value):
    assert bp.bucket_name_problem(value)


@pytest.mark.parametrize(
    "uri",
    ["gs://b-1/x.dcm", "gs://bkt/dir/**.dcm", "gs://bkt/**", "gs://bkt/a*/b?/*.dcm", "gs://bkt/dir/**", "gs://bkt/a/b/c/**.DCM"],
)
def test_import_uri_valid(uri):
    assert bp.check_import_uri(uri) == uri


@pytest.mark.parametrize(
    ("uri", "why"),
    [("gs://bkt/**/x.dcm", "last path segment"), ("gs://bkt/a*/**.dcm", "another wildcard"), ("gs://bkt/a?/**", "another wildcard"),
     ("gs://bkt/**a**", "only once"), ("gs://bkt/***", "another wildcard"), ("s3://bkt/x", "not a Cloud Storage URI"),
     ("gs://bkt", "names no objects"), ("gs://bkt/", "names no objects"), ("gs://BKT/x", "bucket name")],
)  # fmt: skip
def test_import_uri_invalid(uri, why):
    assert why.lower() in _bad(bp.check_import_uri, uri).lower()


@pytest.mark.parametrize("origin", ["http://localhost:3000", "https://viewer.example.com", "http://127.0.0.1:8080", "http://[::1]:3000"])
def test_origin_valid(origin):
    assert bp.check_origin(origin) == origin


@pytest.mark.parametrize(
    "origin",
    ["localhost:3000", "http://", "https://x.com/app", "https://x.com?q", "https://x.com#f", "https://u:p@x.com", "ws://x.com",
     "http://x.com:99999", "http://x.com:0", "http://[::1"],
)  # fmt: skip
def test_origin_invalid(origin):
    assert "not a valid origin" in _bad(bp.check_origin, origin)


@pytest.mark.parametrize(
    "member",
    ["user:ana@example.com", "group:radiology@example.com", "serviceAccount:sa@p-123.iam.gserviceaccount.com", "domain:example.com"],
)
def test_member_valid(member):
    assert bp.check_member(member) == member


@pytest.mark.parametrize(
    ("member", "why"),
    [("allUsers", "anyone on the internet"), ("allAuthenticatedUsers", "Google account"), ("ana@example.com", "no principal type"),
     ("group:radiology", "not an email"), ("domain:ex ample.com", "not a domain"), ("serviceaccount:a@b.co", "did you mean 'serviceAccount:")],
)  # fmt: skip
def test_member_invalid(member, why):
    assert why.lower() in _bad(bp.check_member, member).lower()


@pytest.mark.parametrize(
    "role", ["roles/healthcare.dicomViewer", "projects/ohif-team-a/roles/reader_1", "organizations/123/roles/custom.role", "roles/owner"]
)
def test_role_valid(role):
    assert bp.check_role(role) == role


@pytest.mark.parametrize("role", ["dicomViewer", "roles/", "roles/a b", "projects/x/roles/r", "organizations/abc/roles/r", "folders/1/roles/r"])
def test_role_invalid(role):
    assert "not an IAM role" in _bad(bp.check_role, role)


def test_labels_allow_international_lowercase_letters():
    assert bp.check_label_key("équipe") == "équipe"
    assert bp.check_label_value("radiologie_über-1") == "radiologie_über-1"
    assert bp.check_label_value("") == ""
    assert "label value" in _bad(bp.check_label_value, "Über")
    assert "label key" in _bad(bp.check_label_key, "a" * 64)
    assert "label key" in _bad(bp.check_label_key, "-a")


def test_healthcare_location_is_checked_for_form_only():
    """No list of locations in the code (it would go stale): any lowercase region-like name or a
    multi-region passes; plan checks the name against the target's projects.locations.list."""
    assert not hasattr(bp, "HEALTHCARE_LOCATIONS")
    for loc in ("us", "eu", "us-central1", "europe-west4", "me-central2", "europe-west12", "africa-south1",
                "us-centrall", "europe-west1"):
        assert bp.check_healthcare_location(loc) == loc
    assert "did you mean 'us-central1'" in _bad(bp.check_healthcare_location, "US-CENTRAL1")
    assert "did you mean 'us'" in _bad(bp.check_healthcare_location, "US")
    assert "did you mean 'us-east1'" in _bad(bp.check_healthcare_location, "us east1")
    assert "that is a zone; a dataset lives in a region); did you mean 'us-central1'" in \
        _bad(bp.check_healthcare_location, "us-central1-a")
    for bad in ("asia", "us-", "-us", "us--east1", "us.central1", "", "a-" + "b" * 62):
        assert "multi-region (us or eu)" in _bad(bp.check_healthcare_location, bad), bad


def test_typo_in_location_passes_validation(tmp_path):
    path = write(tmp_path, MINIMAL.replace("us-central1", "us-centrall"))
    assert load_blueprint(path, env={}).dataset.location == "us-centrall"
    code, out = run_provision("validate", str(path))
    assert code == 0, out


def test_time_zones():
    assert bp.check_time_zone("UTC") == "UTC"
    if bp._time_zones():
        assert bp.check_time_zone("America/New_York") == "America/New_York"
        assert "did you mean 'America/New_York'" in _bad(bp.check_time_zone, "America/NewYork")


def test_api_names():
    assert bp.check_api("healthcare.googleapis.com")
    assert bp.check_api("iam-credentials.googleapis.com")
    assert "did you mean 'storage.googleapis.com'" in _bad(bp.check_api, "storage").lower()
    assert "not a Google API" in _bad(bp.check_api, "https://healthcare.googleapis.com")


def test_oauth_client_ids():
    assert bp.check_oauth_client_id("1234-abc.apps.googleusercontent.com")
    for bad in ("abc.apps.googleusercontent.com", "1234-ABC.apps.googleusercontent.com", "1234-abc.apps.example.com"):
        assert "OAuth client ID" in _bad(bp.check_oauth_client_id, bad)


# ------------------------------------------------------------------------- hygiene


def test_importing_blueprint_is_light():
    code = (
        "import sys, provision.blueprint.load; "
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "('google', 'googleapiclient', 'requests', 'numpy', 'pydicom', 'rich', 'typer', 'werkzeug')]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"


def test_example_files_are_in_the_repository():
    for path in (DEMO_PACKAGED, EXAMPLE):
        assert path.read_text().startswith("#"), "example blueprints start with an explanatory comment"
