"""The hosted viewer's source archive (provision.ohif.hosted_source): reproducible, and runnable as is."""
from __future__ import annotations

import ast
import io
import json
import os
import subprocess
import sys
import tarfile

import httpx

from hosted_helpers import AUD, IapKeys
from provision.ohif import hosted_source
from provision.ohif.hosted_source import build_source

CONFIG = "window.config = { dataSources: [] };\n"


def fake_dist(root, *, touch: int = 0):
    (root / "sub").mkdir(parents=True)
    for name, data in (("index.html", b"<html>viewer</html>"), ("app.bundle.0123456789abcdef.js", b"x" * 5000),
                       ("sub/z.css", b"a{}"), ("sub/a.wasm", b"\0asm")):
        (root / name).write_bytes(data)
        os.utime(root / name, (1_700_000_000 + touch, 1_700_000_000 + touch))
    (root / ".provision-complete").write_text("{}")
    return root


def test_same_inputs_same_sha256_whatever_the_machine_did(tmp_path):
    a = build_source(tmp_path / "out-a", config_js=CONFIG, dist=fake_dist(tmp_path / "a"))
    os.umask(0o077)   # another umask, other mtimes, files made in another order
    try:
        b = build_source(tmp_path / "out-b", config_js=CONFIG, dist=fake_dist(tmp_path / "b", touch=999))
    finally:
        os.umask(0o022)
    assert a.sha256 == b.sha256 and a.path.read_bytes() == b.path.read_bytes()
    assert a.path.name == f"hosted-source-{a.sha256[:16]}.tar.gz"
    other = build_source(tmp_path / "out-c", config_js=CONFIG.replace("[]", "[1]"), dist=tmp_path / "a")
    assert other.sha256 != a.sha256    # another blueprint's config, another artifact


def test_archive_layout(tmp_path):
    art = build_source(tmp_path / "out", config_js=CONFIG, dist=fake_dist(tmp_path / "d"))
    with tarfile.open(art.path) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert names == sorted(names)
        assert {"Procfile", "requirements.txt", "app-config.js", "hosted-source.json", "hosted/app.py",
                "hosted/__main__.py", "ohif/index.html", "ohif/sub/a.wasm"} <= set(names)
        assert "ohif/.provision-complete" not in names and not any("__pycache__" in n for n in names)
        assert {(m.uid, m.gid, m.uname, m.gname, m.mtime, m.mode) for m in members} == {(0, 0, "", "", 315532800, 0o644)}
        assert tar.extractfile("Procfile").read() == b"web: python -m hosted\n"
        assert b"starlette==" in tar.extractfile("requirements.txt").read()
        # The app in the archive imports nothing of provision.
        for m in members:
            if m.name.startswith("hosted/"):
                tree = ast.parse(tar.extractfile(m).read())
                absolute = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0}
                absolute |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
                assert not {name for name in absolute if name and name.split(".")[0] == "provision"}, m.name


def test_the_archive_runs_on_its_own(tmp_path):
    """Unpacked anywhere, `python -m hosted` serves the viewer from its own files (no provision on the path)."""
    art = build_source(tmp_path / "out", config_js=CONFIG, dist=fake_dist(tmp_path / "d"))
    root = tmp_path / "unpacked"
    with tarfile.open(art.path) as tar:
        tar.extractall(root, filter="data")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with IapKeys() as iap:
        env = {"PATH": os.environ["PATH"], "PORT": str(port), "HOSTED_IAP_AUDIENCE": AUD, "HOSTED_LOG_LEVEL": "info",
               "HOSTED_IAP_JWKS_URL": iap.url, "HOSTED_UPSTREAM_AUTH": "none", "PYTHONDONTWRITEBYTECODE": "1"}
        # provision made unimportable: the archive must run on what it holds and what requirements.txt names.
        runner = "import sys, runpy; sys.modules['provision'] = None; runpy.run_module('hosted', run_name='__main__')"
        proc = subprocess.Popen([sys.executable, "-c", runner], cwd=root, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            started = []
            for line in proc.stderr:   # uvicorn says when it listens (or the process ends)
                started.append(line.decode())
                if b"Uvicorn running on" in line:
                    break
            assert proc.poll() is None, "".join(started)
            resp = httpx.get(f"http://127.0.0.1:{port}/viewer", headers=iap.header(), timeout=10)
            assert resp.status_code == 200 and resp.text == "<html>viewer</html>"
        finally:
            proc.terminate()
            out, _ = proc.communicate(timeout=15)
    line = io.StringIO(out.decode()).readline()
    assert '"status":200' in line and '"user":"ana@example.com"' in line


def test_the_tests_run_what_would_be_deployed():
    """Every pin of provision/hosted/requirements.txt is the version installed here."""
    from importlib.metadata import version

    from provision.ohif.hosted_source import APP_DIR

    pins = [line.split("==") for line in (APP_DIR / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert {"starlette", "uvicorn", "httpx", "google-auth", "pyjwt", "cryptography"} <= {n for n, _ in pins}
    assert {name: version(name) for name, _ in pins} == dict(pins)


def _tar_as_tarfile_writes_it(entries):
    """The reference: what `tarfile` itself writes for these entries (GNU format, stream mode)."""
    from provision.ohif.hosted_source import _info

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w|", format=tarfile.GNU_FORMAT) as tar:
        for name, content in entries:
            data = content if isinstance(content, bytes) else content.read_bytes()
            tar.addfile(_info(name, len(data)), io.BytesIO(data))
    return buf.getvalue()


def test_one_gzip_member_of_the_tar_tarfile_would_write(tmp_path):
    """The viewer's part is compressed apart and spliced in, yet the archive is one gzip member (a
    streaming reader, which stops after the first member, sees every entry) holding tarfile's bytes."""
    import gzip
    import zlib

    from provision.ohif.fetch import PINNED
    from provision.ohif.hosted_source import source_files

    dist = fake_dist(tmp_path / "d")
    (dist / "sub" / ("long-" + "n" * 120 + ".js")).write_bytes(os.urandom(70_000))   # a GNU long name, incompressible
    art = build_source(tmp_path / "out", config_js=CONFIG, dist=dist)
    raw = art.path.read_bytes()
    assert gzip.decompress(raw) == _tar_as_tarfile_writes_it(source_files(config_js=CONFIG, dist=dist, ohif_version=PINNED))
    d = zlib.decompressobj(wbits=31)
    d.decompress(raw)
    assert d.eof and d.unused_data == b""      # exactly one member, nothing after it
    with tarfile.open(art.path, mode="r|gz") as tar:
        streamed = [m.name for m in tar]
    assert streamed[-1] == "requirements.txt" and any(n.startswith("ohif/sub/long-") for n in streamed)


def test_the_viewer_files_are_compressed_once_for_every_config(tmp_path):
    dist = fake_dist(tmp_path / "d")
    out = tmp_path / "out"
    a = build_source(out, config_js=CONFIG, dist=dist)
    part = next(out.glob("viewer-part-*"))
    inode = part.stat().st_ino   # written atomically (a new file renamed over): was it rewritten?
    b = build_source(out, config_js=CONFIG.replace("[]", "[1]"), dist=dist)
    assert [p.name for p in out.glob("viewer-part-*")] == [part.name] and part.stat().st_ino == inode
    with tarfile.open(a.path) as ta, tarfile.open(b.path) as tb:
        assert ta.extractfile("ohif/index.html").read() == tb.extractfile("ohif/index.html").read()
        assert tb.extractfile("app-config.js").read() == CONFIG.replace("[]", "[1]").encode()
    os.utime(dist / "index.html", (1, 1))   # the dist changed (a new OHIF, a repaired file): compressed again
    build_source(out, config_js=CONFIG, dist=dist)
    assert len(list(out.glob("viewer-part-*"))) == 2


def test_the_cache_keeps_the_most_recently_used_archives_and_no_more(tmp_path):
    dist, out = fake_dist(tmp_path / "d"), tmp_path / "out"
    built = []
    for i in range(hosted_source.KEEP_ARCHIVES + 3):
        art = build_source(out, config_js=CONFIG.replace("[]", f"[{i}]"), dist=dist)
        (out / f"inputs-{i}.json").write_text(json.dumps({"file": art.path.name}))   # the index hosted_archive keeps
        built.append(art.path)
    for i, path in enumerate(built):
        os.utime(path, (1_000_000 + i, 1_000_000 + i))   # built long ago, in this order
    os.utime(built[0], (2_000_000, 2_000_000))   # the first one was used again since: recently used
    new = build_source(out, config_js=CONFIG.replace("[]", "[new]"), dist=dist)
    left = set(out.glob("hosted-source-*.tar.gz"))
    assert len(left) == hosted_source.KEEP_ARCHIVES
    assert new.path in left and built[0] in left and built[-1] in left
    assert built[1] not in left and built[2] not in left   # the least recently used went
    memos = {json.loads(m.read_text())["file"] for m in out.glob("inputs-*.json")}
    assert memos == {p.name for p in left if p != new.path}   # no index entry names a removed archive
    assert tarfile.open(new.path).extractfile("app-config.js").read() == CONFIG.replace("[]", "[new]").encode()


def test_the_cache_never_removes_an_archive_built_within_the_grace_period(tmp_path):
    dist, out = fake_dist(tmp_path / "d"), tmp_path / "out"
    arts = [build_source(out, config_js=CONFIG.replace("[]", f"[{i}]"), dist=dist)
            for i in range(hosted_source.KEEP_ARCHIVES + 2)]   # a fleet's plan: all of them still to upload
    assert all(a.path.is_file() for a in arts)
    hosted_source.prune(out, grace_s=0)
    assert len(list(out.glob("hosted-source-*.tar.gz"))) == hosted_source.KEEP_ARCHIVES


def test_crc32_combine_is_zlibs():
    import random
    import zlib

    from provision.ohif.deflate_parts import crc32_combine

    rng = random.Random(7)
    for n in (0, 1, 3, 512, 4099, 70_001):
        a, b = rng.randbytes(rng.randrange(0, 3000)), rng.randbytes(n)
        assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)
