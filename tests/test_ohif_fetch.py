"""Fetching the viewer: npm pack once into the cache, safe unpacking, clear errors."""
from __future__ import annotations

import io
import os
import stat
import tarfile
import time
from pathlib import Path

import pytest

from provision.errors import ProvisionError
from provision.ohif import fetch

VERSION = "0.0.0-test"  # no pinned integrity: the fake tarballs are accepted


def make_tgz(path: Path, members: dict[str, bytes | None], *, symlinks: dict[str, str] | None = None) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)


GOOD = {
    "package/package.json": b'{"name":"@ohif/app"}',
    "package/dist": None,
    "package/dist/index.html": b"<html>",
    "package/dist/app.bundle.js": b"x",
    "package/dist/sub/a.wasm": b"\0asm",
    "package/README.md": b"readme",
}


@pytest.fixture
def fake_npm(tmp_path, monkeypatch):
    """An `npm` on PATH that writes a prepared tarball into --pack-destination and counts its calls."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    source = tmp_path / "source.tgz"
    make_tgz(source, GOOD)
    calls = tmp_path / "calls"
    script = bindir / "npm"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {calls}\n'
        'if [ -n "$FAKE_NPM_FAIL" ]; then echo "$FAKE_NPM_FAIL" >&2; exit 1; fi\n'
        'dest=""; prev=""\n'
        'for a in "$@"; do [ "$prev" = "--pack-destination" ] && dest="$a"; prev="$a"; done\n'
        f'cp {source} "$dest/ohif-app-{VERSION}.tgz"\n'
        "echo '[]'\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    monkeypatch.setenv("PROVISION_CACHE", str(tmp_path / "cache"))
    return type("FakeNpm", (), {"calls": calls, "source": source})


def ncalls(fake) -> int:
    return len(fake.calls.read_text().splitlines()) if fake.calls.exists() else 0


def test_fetch_once_then_cached(fake_npm, tmp_path):
    dist = fetch.ensure_viewer(VERSION)
    assert dist == tmp_path / "cache" / "ohif" / VERSION / "dist"
    assert (dist / "index.html").read_bytes() == b"<html>"
    assert (dist / "sub" / "a.wasm").read_bytes() == b"\0asm"
    assert not (dist / "package.json").exists() and not (dist.parent / "README.md").exists()
    assert ncalls(fake_npm) == 1
    assert f"pack @ohif/app@{VERSION} --pack-destination" in fake_npm.calls.read_text()

    start = time.perf_counter()
    assert fetch.ensure_viewer(VERSION) == dist
    assert time.perf_counter() - start < 0.05
    assert ncalls(fake_npm) == 1
    # No staging directory is left behind.
    assert sorted(p.name for p in dist.parent.iterdir()) == ["dist", f"ohif-app-{VERSION}.tgz"]


def test_interrupted_unpack_is_finished_next_time(fake_npm):
    dist = fetch.ensure_viewer(VERSION)
    (dist / fetch._COMPLETE).unlink()  # as if killed before the marker: the tarball is reused, no npm
    (dist / "index.html").unlink()
    assert fetch.ensure_viewer(VERSION) == dist
    assert (dist / "index.html").is_file() and ncalls(fake_npm) == 1


def test_npm_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("PROVISION_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ProvisionError, match="npm is not installed"):
        fetch.ensure_viewer(VERSION)


def test_offline(fake_npm, monkeypatch):
    monkeypatch.setenv("FAKE_NPM_FAIL", "npm error code ENOTFOUND\nnpm error network request to https://registry.npmjs.org failed")
    with pytest.raises(ProvisionError, match="not reachable .offline") as err:
        fetch.ensure_viewer(VERSION)
    assert "ENOTFOUND" in str(err.value)


def test_pinned_integrity_is_checked(fake_npm, monkeypatch):
    monkeypatch.setitem(fetch.INTEGRITY, VERSION, "sha512-AAAA")
    with pytest.raises(ProvisionError, match="does not match its published integrity"):
        fetch.ensure_viewer(VERSION)
    assert not (fetch.viewer_dir(VERSION) / f"ohif-app-{VERSION}.tgz").exists()


@pytest.mark.parametrize("evil", ["package/dist/../../../escape.txt", "/abs/escape.txt"])
def test_unsafe_members_are_refused(fake_npm, tmp_path, evil):
    make_tgz(fake_npm.source, {**GOOD, evil: b"pwned"})
    with pytest.raises(ProvisionError, match="escapes the package"):
        fetch.ensure_viewer(VERSION)
    assert not list(tmp_path.rglob("escape.txt"))
    assert not (fetch.viewer_dir(VERSION) / "dist").exists()


def test_links_are_not_unpacked(fake_npm):
    make_tgz(fake_npm.source, GOOD, symlinks={"package/dist/passwd": "/etc/passwd"})
    dist = fetch.ensure_viewer(VERSION)
    assert not os.path.lexists(dist / "passwd")


def test_not_a_viewer(fake_npm):
    make_tgz(fake_npm.source, {"package/package.json": b"{}"})
    with pytest.raises(ProvisionError, match="not an OHIF viewer build"):
        fetch.ensure_viewer(VERSION)


def test_main_prints_the_path(fake_npm, capsys):
    assert fetch.main([VERSION]) == 0
    assert capsys.readouterr().out.strip() == str(fetch.viewer_dir(VERSION) / "dist")


def test_main_error_exit(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("PROVISION_CACHE", str(tmp_path / "cache"))
    assert fetch.main([VERSION]) == 1
    assert "npm is not installed" in capsys.readouterr().err
