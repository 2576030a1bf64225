"""The OHIF config: valid JavaScript of google.js's form, stable bytes, both targets, no secret."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from provision.ohif import config as ohif_config
from provision.ohif.config import config_warnings, oauth_checklist, render_config, write_config

GOLDEN = Path(__file__).parent / "golden"
EMULATOR = "http://127.0.0.1:8765"
CLIENT_ID = "123456789012-abc123def456.apps.googleusercontent.com"
NODE = shutil.which("node")

# Keys of OHIF 3.13.2's platform/app/public/config/google.js (also checked against the copy
# shipped in the cached viewer when it is there, see test_keys_match_shipped_google_js).
GOOGLE_JS_TOP = [
    "routerBasename", "enableGoogleCloudAdapter", "showWarningMessageForCrossOrigin", "showCPUFallbackMessage",
    "showLoadingIndicator", "strictZSpacingForVolumeViewport", "oidc", "extensions", "modes", "showStudyList",
    "defaultDataSourceName", "dataSources",
]  # fmt: skip
GOOGLE_JS_OIDC = [
    "authority", "client_id", "redirect_uri", "response_type", "scope", "post_logout_redirect_uri", "revoke_uri",
    "automaticSilentRenew", "revokeAccessTokenOnSignout",
]  # fmt: skip
GOOGLE_JS_DICOMWEB = [
    "friendlyName", "name", "wadoUriRoot", "qidoRoot", "wadoRoot", "qidoSupportsIncludeField", "imageRendering",
    "thumbnailRendering", "enableStudyLazyLoad", "supportsFuzzyMatching", "supportsWildcard", "dicomUploadEnabled",
    "omitQuotationForMultipartRequest", "configurationAPI",
]  # fmt: skip  (google.js also has thumbnailRequestStrategy, which only matters for 'rendered' thumbnails)


def fixed_blueprint(client_id: str | None = CLIENT_ID) -> SimpleNamespace:
    """A fixed blueprint object (the attributes the config reads), independent of the loader."""
    return SimpleNamespace(
        project=SimpleNamespace(id="ohif-golden-team"),
        dataset=SimpleNamespace(id="imaging", location="us-central1"),
        dicom_stores=[SimpleNamespace(id="primary"), SimpleNamespace(id="teaching.v2")],
        viewer=SimpleNamespace(origin="https://viewer.example.com", oauth_client_id=client_id),
    )


def node_eval(path: Path) -> dict:
    """Evaluate a config file in Node with a `window` stub and return window.config."""
    if NODE is None:
        pytest.skip("LOUD SKIP: node is not installed; the config cannot be evaluated as JavaScript")
    script = (
        "const fs=require('fs'),vm=require('vm');const window={};"
        "vm.runInNewContext(fs.readFileSync(process.argv[1],'utf8'),{window},{filename:process.argv[1]});"
        "process.stdout.write(JSON.stringify(window.config));"
    )
    done = subprocess.run([NODE, "-e", script, str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("target,emulator_url", [("google", None), ("emulator", EMULATOR)])
def test_golden(target, emulator_url):
    text = render_config(fixed_blueprint(), emulator_url=emulator_url)
    golden = GOLDEN / f"{target}.js"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text(), f"config for {target} changed; if intended, rerun with UPDATE_GOLDEN=1"


@pytest.mark.parametrize("emulator_url", [None, EMULATOR])
def test_evaluates_in_node_to_the_same_object(tmp_path, emulator_url):
    bp = fixed_blueprint()
    path = write_config(bp, tmp_path / "app-config.js", emulator_url=emulator_url)
    got = node_eval(path)
    assert got == json.loads(json.dumps(ohif_config.config_dict(bp, emulator_url=emulator_url)))


def test_google_target_has_google_js_keys_and_values(tmp_path):
    got = node_eval(write_config(fixed_blueprint(), tmp_path / "g.js"))
    assert list(got) == GOOGLE_JS_TOP
    assert got["routerBasename"] == "/"
    assert got["extensions"] == [] and got["modes"] == [] and got["showStudyList"] is True
    (oidc,) = got["oidc"]
    assert list(oidc) == GOOGLE_JS_OIDC
    assert oidc["authority"] == "https://accounts.google.com"
    assert oidc["client_id"] == CLIENT_ID
    assert oidc["redirect_uri"] == "/callback"
    assert oidc["response_type"] == "id_token token"
    assert oidc["scope"] == (
        "email profile openid https://www.googleapis.com/auth/cloudplatformprojects.readonly "
        "https://www.googleapis.com/auth/cloud-healthcare"
    )
    assert oidc["revokeAccessTokenOnSignout"] is True and oidc["automaticSilentRenew"] is True
    assert got["defaultDataSourceName"] == "primary"
    assert [s["sourceName"] for s in got["dataSources"]] == ["primary", "teaching.v2"]
    root = "https://healthcare.googleapis.com/v1/projects/ohif-golden-team/locations/us-central1/datasets/imaging/dicomStores/{}/dicomWeb"
    for ds, store in zip(got["dataSources"], ["primary", "teaching.v2"], strict=True):
        assert ds["namespace"] == "@ohif/extension-default.dataSourcesModule.dicomweb"
        c = ds["configuration"]
        assert set(GOOGLE_JS_DICOMWEB) <= set(c)
        assert c["qidoRoot"] == c["wadoRoot"] == c["wadoUriRoot"] == root.format(store)
        assert c["qidoSupportsIncludeField"] is True
        assert c["imageRendering"] == "wadors" and c["thumbnailRendering"] == "wadors"
        assert c["enableStudyLazyLoad"] is True and c["supportsFuzzyMatching"] is True
        assert c["supportsWildcard"] is False and c["omitQuotationForMultipartRequest"] is True
        assert c["dicomUploadEnabled"] is True and c["bulkDataURI"] == {"enabled": True}
        assert c["configurationAPI"] == "ohif.dataSourceConfigurationAPI.google"


def test_emulator_target(tmp_path):
    got = node_eval(write_config(fixed_blueprint(), tmp_path / "e.js", emulator_url=EMULATOR + "/"))
    assert "oidc" not in got
    assert list(got) == [k for k in GOOGLE_JS_TOP if k != "oidc"]
    for ds in got["dataSources"]:
        c = ds["configuration"]
        assert c["qidoRoot"].startswith(EMULATOR + "/v1/projects/ohif-golden-team/locations/us-central1/datasets/imaging/dicomStores/")
        assert c["qidoRoot"] == c["wadoRoot"] == c["wadoUriRoot"] and c["qidoRoot"].endswith("/dicomWeb")
        # OHIF's Google configuration API calls hard-coded googleapis.com hosts: not offline.
        assert "configurationAPI" not in c
    assert "googleapis.com" not in (tmp_path / "e.js").read_text().replace("https://www.googleapis.com/auth", "")


def test_keys_match_shipped_google_js(tmp_path):
    """When the viewer is in the cache, its own google.js has exactly the keys we expect."""
    from provision.ohif.fetch import viewer_dir

    shipped = viewer_dir() / "dist" / "google.js"
    if not shipped.is_file():
        pytest.skip(f"LOUD SKIP: the OHIF viewer is not in the cache ({shipped}); run `python -m provision.ohif.fetch`")
    real = node_eval(shipped)
    assert list(real) == GOOGLE_JS_TOP
    assert list(real["oidc"][0]) == GOOGLE_JS_OIDC
    keys = list(real["dataSources"][0]["configuration"])
    assert [k for k in keys if k != "thumbnailRequestStrategy"] == GOOGLE_JS_DICOMWEB


def test_missing_client_id_omits_oidc_and_warns(tmp_path):
    bp = fixed_blueprint(client_id=None)
    got = node_eval(write_config(bp, tmp_path / "g.js"))
    assert "oidc" not in got
    assert "configurationAPI" in got["dataSources"][0]["configuration"]
    (warning,) = config_warnings(bp)
    assert "oauth_client_id" in warning
    assert config_warnings(bp, emulator_url=EMULATOR) == []
    assert config_warnings(fixed_blueprint()) == []
    assert "WARNING: viewer.oauth_client_id is missing" in oauth_checklist(bp)


def test_stable_bytes():
    a = render_config(fixed_blueprint())
    b = render_config(fixed_blueprint())
    assert a == b and a.endswith("};\n") and "\r" not in a
    # Nothing that depends on time, the machine or the working directory.
    assert str(Path.cwd()) not in a and str(Path.home()) not in a
    assert not re.search(r"20\d\d-\d\d-\d\d", a)


def test_json_format_is_the_data_sources():
    bp = fixed_blueprint()
    got = json.loads(render_config(bp, fmt="json"))
    assert [s["sourceName"] for s in got] == ["primary", "teaching.v2"]
    assert got == ohif_config.data_sources(bp)
    assert render_config(bp, fmt="json") == render_config(bp, fmt="json")
    with pytest.raises(ValueError):
        render_config(bp, fmt="yaml")


TOKENISH = [
    re.compile(r"ya29\.[0-9A-Za-z_-]+"),  # Google OAuth access tokens
    re.compile(r"eyJ[0-9A-Za-z_-]{10,}\.[0-9A-Za-z_-]+"),  # JWTs (ID tokens)
    re.compile(r"GOCSPX-[0-9A-Za-z_-]+"),  # OAuth client secrets
    re.compile(r"AIza[0-9A-Za-z_-]{35}"),  # API keys
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"(?i)(client_secret|access_token|refresh_token|private_key)\s*[:=]"),
    re.compile(r"(?i)bearer\s+[0-9a-z]"),
]


@pytest.mark.parametrize("emulator_url", [None, EMULATOR])
def test_no_token_like_strings(emulator_url):
    text = render_config(fixed_blueprint(), emulator_url=emulator_url) + render_config(
        fixed_blueprint(), emulator_url=emulator_url, fmt="json"
    )
    for pattern in TOKENISH:
        assert not pattern.search(text), pattern.pattern


def test_strings_are_escaped(tmp_path):
    bp = fixed_blueprint()
    bp.project.id = "it's\\odd</script>\n"  # never valid, but the writer must still emit valid JS
    got = node_eval(write_config(bp, tmp_path / "x.js"))
    root = got["dataSources"][0]["configuration"]["qidoRoot"]
    assert "/projects/it's\\odd</script>\n/locations/" in root


def test_write_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "out" / "google.js"
    write_config(fixed_blueprint(), target)
    first = target.read_bytes()
    assert first == render_config(fixed_blueprint()).encode()
    assert oct(target.stat().st_mode & 0o777) == "0o644"

    # A failure while writing leaves the old file intact and no temp file behind.
    real_fsync = os.fsync

    def boom(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        write_config(fixed_blueprint(client_id=None), target)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert target.read_bytes() == first
    assert sorted(p.name for p in target.parent.iterdir()) == ["google.js"]

    # Readers never see a partial file while writers race.
    seen: set[bytes] = set()
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            seen.add(target.read_bytes())

    t = threading.Thread(target=reader)
    t.start()
    for i in range(30):
        write_config(fixed_blueprint(client_id=None if i % 2 else CLIENT_ID), target)
    stop.set()
    t.join()
    assert seen <= {first, render_config(fixed_blueprint(client_id=None)).encode()}


def test_oauth_checklist_content():
    text = oauth_checklist(fixed_blueprint())
    assert "https://console.cloud.google.com/apis/credentials/consent?project=ohif-golden-team" in text
    assert "https://console.cloud.google.com/apis/credentials/oauthclient?project=ohif-golden-team" in text
    assert "https://viewer.example.com\n" in text  # the JavaScript origin, exactly, no trailing slash
    assert "https://viewer.example.com/callback" in text
    assert "https://viewer.example.com/silent-refresh.html" in text
    for scope in ohif_config.GOOGLE_SCOPES:
        assert f"       {scope}\n" in text
    assert "Web application" in text
    assert CLIENT_ID in text and "WARNING" not in text


def test_real_blueprint_model_renders_like_the_fixed_one(tmp_path):
    from provision.blueprint.models import Blueprint

    bp = Blueprint.model_validate(
        {
            "version": 1,
            "project": {"id": "ohif-golden-team"},
            "dataset": {"id": "imaging", "location": "us-central1"},
            "dicom_stores": [{"id": "primary"}, {"id": "teaching.v2"}],
            "viewer": {"origin": "https://viewer.example.com", "oauth_client_id": CLIENT_ID},
        }
    )
    assert render_config(bp) == render_config(fixed_blueprint())
    assert render_config(bp, emulator_url=EMULATOR) == render_config(fixed_blueprint(), emulator_url=EMULATOR)


def test_token_mode_without_oidc(tmp_path):
    text = render_config(fixed_blueprint(), oidc=False)
    assert "?token= URL parameter" in text
    path = tmp_path / "t.js"
    path.write_text(text)
    got = node_eval(path)
    assert "oidc" not in got and got["dataSources"] == node_eval(write_config(fixed_blueprint(), tmp_path / "g.js"))["dataSources"]
