"""The package as users get it: the wheel and the sdist build, the wheel installs into a fresh
virtual environment outside the checkout, and the installed `provision` works from an empty
directory (`--version`, `init` + `validate`, `demo`), reading nothing from the checkout.

The new environment is made without pip and sees the test environment's site-packages
through a path file, so the dependencies are not downloaded again (seconds, not minutes).
Only plain path entries are added: the path files of that site-packages (among them the
editable install of this checkout) are not run, so `provision` can only come from the wheel,
and the test asserts that it does.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import tarfile
import time
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(240)


def _pyproject_version() -> str:
    text = (ROOT / "provision" / "__init__.py").read_text()
    return re.search(r'^__version__ = "([^"]+)"', text, re.M).group(1)


def _run(args: list, *, cwd: Path, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, args))} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> dict[str, Path]:
    """The sdist and the wheel, the wheel built from the unpacked sdist (so the sdist is complete).
    No isolation: the build backend comes from the test extra, so no download at each run."""
    out = tmp_path_factory.mktemp("dist")
    started = time.monotonic()
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ROOT], cwd=out, timeout=180)
    print(f"\nbuilt the sdist and the wheel in {time.monotonic() - started:.1f}s")
    wheels, sdists = sorted(out.glob("*.whl")), sorted(out.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in out.iterdir())
    return {"wheel": wheels[0], "sdist": sdists[0]}


@pytest.fixture(scope="module")
def installed(dists, tmp_path_factory) -> dict:
    """A fresh virtual environment with the wheel installed; its python, its bin, and an environment
    for running it that cannot see the checkout."""
    started = time.monotonic()
    home = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=False, clear=True).create(home)
    python = home / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=home).stdout.strip())
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_provision_test_deps.pth").write_text("\n".join(sorted(ours)) + "\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PROVISION_EMULATOR_HOST", "VIRTUAL_ENV")}
    env.update(PATH=f"{home / 'bin'}{os.pathsep}{env.get('PATH', '')}", PYTHONNOUSERSITE="1", NO_COLOR="1")
    _run([python, "-m", "pip", "install", "--no-deps", "--no-index", "--disable-pip-version-check", "-q",
          dists["wheel"]], cwd=home, env=env)
    print(f"installed the wheel into a fresh environment in {time.monotonic() - started:.1f}s")
    return {"python": python, "bin": home / "bin", "site": site, "env": env}


def test_the_wheel_holds_the_package_and_its_data_only(dists):
    names = zipfile.ZipFile(dists["wheel"]).namelist()
    tops = {n.split("/", 1)[0] for n in names}
    assert tops == {"provision", f"{dists['wheel'].name.split('-')[0]}-{_pyproject_version()}.dist-info"}, tops
    assert "provision/blueprints/demo.yaml" in names
    assert "provision/py.typed" in names
    meta = zipfile.ZipFile(dists["wheel"]).read(
        next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    for field in ("Requires-Python: >=3.11", "License-Expression: Apache-2.0", "Classifier: "):
        assert field in meta, f"METADATA lacks {field!r}"


def test_the_sdist_holds_what_a_rebuild_and_its_tests_need(dists):
    with tarfile.open(dists["sdist"]) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for needed in ("pyproject.toml", "README.md", "CHANGELOG.md", "LICENSE", "provision/blueprints/demo.yaml",
                   "tests/conftest.py", "Makefile"):
        assert needed in names, f"the sdist lacks {needed}"


def test_installed_provision_comes_from_the_wheel(installed, tmp_path):
    where = _run([installed["python"], "-c", "import provision; print(provision.__file__)"],
                 cwd=tmp_path, env=installed["env"]).stdout.strip()
    assert Path(where).is_relative_to(installed["site"]), where


def test_version_from_the_console_script_and_python_m(installed, tmp_path):
    version = _pyproject_version()
    out = _run([installed["bin"] / "provision", "--version"], cwd=tmp_path, env=installed["env"]).stdout
    assert out.strip() == f"provision {version}"
    out = _run([installed["python"], "-m", "provision", "--version"], cwd=tmp_path, env=installed["env"]).stdout
    assert out.strip() == f"provision {version}"


def test_init_then_validate_in_an_empty_directory(installed, tmp_path):
    provision = installed["bin"] / "provision"
    _run([provision, "init", "team.yaml"], cwd=tmp_path, env=installed["env"])
    out = _run([provision, "validate", "team.yaml"], cwd=tmp_path, env=installed["env"]).stdout
    assert "team.yaml: valid" in out


@pytest.mark.slow
def test_demo_from_an_empty_directory(installed, tmp_path):
    """`provision demo` writes into ./out of where it runs (and names it); `--out` puts it elsewhere."""
    provision, env = installed["bin"] / "provision", installed["env"]
    started = time.monotonic()
    proc = _run([provision, "demo"], cwd=tmp_path, env=env)
    print(f"installed `provision demo` ran in {time.monotonic() - started:.1f}s")
    out = tmp_path / "out"
    assert "DICOMweb smoke passed" in proc.stdout, proc.stdout
    assert str(out) in proc.stdout, "the demo names the folder it wrote"
    assert (out / "demo.yaml").is_file() and (out / "google.js").is_file()
    assert len(list((out / "demo-data").rglob("*.dcm"))) == 88
    assert "Traceback" not in proc.stderr
    # The written blueprint is a usable one: it validates where it is.
    _run([provision, "validate", out / "demo.yaml"], cwd=tmp_path, env=env)

    elsewhere = tmp_path / "elsewhere"
    proc = _run([provision, "demo", "--out", elsewhere], cwd=tmp_path, env=env)
    assert str(elsewhere) in proc.stdout and (elsewhere / "google.js").is_file()
