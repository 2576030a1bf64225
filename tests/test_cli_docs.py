"""Every CLI command is documented in the README and answers --help (sqlite-utils' habit)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from provision.cli import app

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
COMMANDS = sorted(c.name or c.callback.__name__ for c in app.registered_commands)


def test_commands_are_the_designed_ones():
    assert set(COMMANDS) == {"validate", "plan", "apply", "status", "destroy", "config", "smoke", "audit",
                             "viewer", "emulator", "demo", "init", "schema", "unlock"}


@pytest.mark.parametrize("command", COMMANDS)
def test_command_documented_in_readme(command):
    assert re.search(rf"`provision {command}`", README), f"README does not document `provision {command}`"


@pytest.mark.parametrize("command", COMMANDS)
def test_command_has_help(command):
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_readme_shows_the_two_commands():
    assert "make demo" in README and "make test" in README


def _loaded_after(statement: str, matching: str) -> str:
    """The modules `m` for which `matching` holds that a fresh interpreter has loaded after `statement`."""
    code = f"import sys; {statement}; print(','.join(m for m in sys.modules if {matching}))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_help_does_not_import_google_libraries():
    # `provision --help` must stay fast: the Google client libraries load only in commands that call them.
    out = _loaded_after("from provision.cli import app",
                        "m.startswith(('google', 'googleapiclient', 'pydicom', 'numpy', 'werkzeug'))")
    assert out == "", f"imported at startup: {out}"


def test_apply_without_smoke_does_not_import_the_smoke():
    # A fleet's `apply --no-smoke` starts sooner without the smoke's DICOM, image and browser machinery.
    out = _loaded_after("import provision.cli, provision.cli_support, provision.running.flow, provision.running.fleet",
                        "m.split('.')[0] in ('werkzeug', 'uvicorn', 'starlette', 'PIL', 'pydicom', 'numpy') "
                        "or m.startswith(('provision.running.smoke', 'provision.checks.dicomweb'))")
    assert out == "", f"imported before any blueprint is applied: {out}"


def _examples() -> list[str]:
    """Every `provision ...` command line the README shows (code spans and code blocks)."""
    found, fenced, prose = [], False, []
    for line in README.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        command = line.strip().lstrip("$ ").split("  #")[0].strip()
        if fenced and command.startswith("provision "):
            found.append(command)
        elif not fenced:
            prose.append(line)
    found += [m for m in re.findall(r"`(provision [^`]+)`", "\n".join(prose)) if re.match(r"provision (-|[a-z]+\b)", m)]
    return sorted(set(found))


@pytest.mark.parametrize("example", _examples())
def test_every_readme_example_parses(example):
    """Each example names a real command and real options with valid values (the parser accepts it)."""
    import shlex

    import typer

    words = shlex.split(example)[1:]
    cut = next((i for i, w in enumerate(words) if w in ("|", ">", "&&", ";", "2>", "&")), len(words))
    words = words[:cut]
    group = typer.main.get_command(app)
    try:
        if words[0].startswith("-"):
            group.make_context("provision", list(words))
            return
        assert words[0] in COMMANDS, example
        command = group.get_command(None, words[0])
        args = words[1:]
        needs_one = any(p.param_type_name == "argument" and p.required for p in command.params)
        if needs_one and not [a for a in args if not a.startswith("-")]:
            args = [*args, "x.yaml"]
        command.make_context(words[0], args)
    except typer.Exit:
        pass   # --help, --version
