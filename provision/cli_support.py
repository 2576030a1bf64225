"""What the `provision` commands share and that is no argument handling (provision/cli.py is the commands).

- Group: an expected failure becomes one clear message and its exit code, never a traceback (with
  --json, also one JSON document on stdout); Command: help as people write it.
- finish: a run's result printed (the JSON envelope, or text and a fleet's summary table) and its
  exit code; interrupted: the same after Ctrl-C (exit 130).
- live_progress, confirm_or_refuse, parse_duration: progress on stderr, the confirmation prompt,
  `--wait-lock`'s durations; target_of, load_fleet, load_one: the target and blueprints a command names.

It imports only Typer and the light modules the commands' help needs (`provision --help` loads no
Google library: tests/test_cli_docs.py).
"""
from __future__ import annotations

import contextvars
import json
import re
import sys
from pathlib import Path
from typing import Any, NoReturn

import typer
from typer.core import TyperCommand, TyperGroup

from provision.errors import BlueprintError, ProvisionError, UsageError
from provision.gcp.target import Target
from provision.redact import redact

# click's UsageError (bad options or arguments). Typer exports it only as the base of its public
# BadParameter, whether it bundles click (typer >= 0.2x) or depends on it; found at run time, so
# typed Any (its class is whichever click typer carries).
ParseError: Any = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
# The run's root context, for what the commands share with the group: -v, and the progress that
# Ctrl-C asks what finished (a ContextVar: Typer offers no public way to reach the current context).
ROOT: contextvars.ContextVar = contextvars.ContextVar("provision_root")


class Group(TyperGroup):
    """Expected failures become one clear message and their exit code, never a traceback; with
    --json, also one JSON document on stdout (provision/running/output.py)."""

    def parse_args(self, ctx, args):
        ctx.meta["argv"] = list(args)   # the command line as given, before click consumes it
        return super().parse_args(ctx, args)

    def invoke(self, ctx):
        raw = ctx.meta.get("argv", [])
        command = next((a for a in raw if not a.startswith("-")), "")
        json_mode = "--json" in raw
        ROOT.set(ctx)

        try:
            return super().invoke(ctx)
        except BlueprintError as exc:
            for problem in exc.problems:  # FILE:LINE:COL: ... one per line, for editors and CI
                typer.echo(problem, err=True)
            fail_json(json_mode, command, 2, "invalid_blueprint",
                       f"{len(exc.problems)} problem(s) in the blueprint(s)", exc.problems)
            raise typer.Exit(exc.exit_code) from None
        except ParseError as exc:
            if not json_mode:
                raise
            exc.show()
            fail_json(True, command, 2, "usage", exc.format_message())
            raise typer.Exit(2) from None
        except ProvisionError as exc:
            typer.echo(f"error: {redact(str(exc))}", err=True)
            fail_json(json_mode, command, exc.exit_code, "usage" if exc.exit_code == 2 else "runtime",
                       redact(str(exc)))
            raise typer.Exit(exc.exit_code) from None
        except (KeyboardInterrupt, typer.Abort):  # Ctrl-C, also at a confirmation prompt
            progress = ctx.meta.get("progress")
            typer.echo(progress.interrupted() if progress is not None else "interrupted", err=True)
            fail_json(json_mode, command, 130, "interrupted", "interrupted (Ctrl-C); nothing more was started")
            raise typer.Exit(130) from None


class Command(TyperCommand):
    """Help as people write it: `BLUEPRINT...`, not Typer's type tags (`<list[Path]>`) nor
    `{BLUEPRINT...}...`. Typer offers no public switch for either, so the text it renders is
    edited through click's public get_help / get_usage."""

    def get_help(self, ctx):
        return _plain_help(super().get_help(ctx))

    def get_usage(self, ctx):
        return _plain_help(super().get_usage(ctx))


# `<list[Path]>`, `<int>`, `<Path>`: a tag after a metavar. Replaced by as many spaces, so the
# help column stays where Typer aligned it.
_TYPE_TAG = re.compile(r" <(?:list\[)?[A-Za-z_]+\]?>")
# `{BLUEPRINT...}...` / `{BLUEPRINT}`: a required argument in the usage line.
_REQUIRED = re.compile(r"\{([A-Z][A-Za-z_.|]*)\}(\.\.\.)?")


def _plain_help(text: str) -> str:
    text = re.sub(r"[ \t]+$", "", _TYPE_TAG.sub(lambda m: " " * len(m.group(0)), text), flags=re.M)
    return _REQUIRED.sub(lambda m: m.group(1) if m.group(1).endswith("...") or "..." in m.group(1)
                         else m.group(1) + (m.group(2) or ""), text)


def fail_json(json_mode: bool, command: str, code: int, kind: str, message: str, problems: list[str] | None = None) -> None:
    """The one --json document of a run that ended in an error before it had results."""
    if not json_mode:
        return
    from provision.running import output   # pydantic's models: only a --json run pays for them

    if command in output.COMMANDS:
        print_json(output.envelope(command, [], code, output.error(kind, message, problems)))


def print_json(doc: dict) -> None:
    typer.echo(json.dumps(doc, indent=2, sort_keys=True, default=str))


def parse_duration(text: str | None) -> float:
    """Seconds in `30s`, `10m`, `1h`, `500ms` or a bare number of seconds (0 when not given)."""
    if not text:
        return 0.0
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", text)
    if not m:
        raise UsageError(f"--wait-lock {text!r}: give a duration such as 30s, 10m or 1h")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2) or "s"]


def live_progress():
    """Progress on stderr (a live view on a terminal, one line per event elsewhere); stdout stays clean for --json.
    Registered so that Ctrl-C can say what finished and what was in flight."""
    from provision.running.progress import Progress

    ctx = ROOT.get(None)
    meta = ctx.meta if ctx is not None else {}
    progress = Progress(verbose=bool(meta.get("verbose")))
    meta["progress"] = progress
    return progress


def finish(command: str, json_out: bool, outcomes: list, payload, text, code: int | None = None,
            detailed: bool = False, changed=lambda value: False, summary=None) -> None:
    """Print the run's result (the JSON envelope, or each blueprint's text, errors, and for a
    fleet one summary table) and exit with its code: 1 if any blueprint failed (2 if every failure was a
    blueprint refused at plan), else 3 with
    --detailed-exitcode and changes, else 0. `summary(outcome)` is its table cell."""
    if code is None:
        failed = {getattr(o, "code", 1) for o in outcomes if not o.ok}
        # 2 when every failure is a blueprint refused at plan (nothing was changed anywhere), else 1.
        code = (2 if failed == {2} else 1) if failed else (
            3 if detailed and any(changed(o.value) for o in outcomes) else 0)
    if json_out:
        from provision.running import output

        results = [output.result(str(o.item.path), o.item.project, ok=o.ok, err=o.error,
                                 **(payload(o) if o.value is not None or o.ok else {})) for o in outcomes]
        print_json(output.envelope(command, results, code))
    else:
        for o in outcomes:
            shown = text(o) if o.value is not None else ""
            if shown:
                typer.echo(shown)
        if len(outcomes) > 1:
            from provision.running.fleet import summary_table

            typer.echo(summary_table(outcomes, summary or (lambda o: "")))
    for o in outcomes:
        if not o.ok:
            typer.echo(f"error: {_naming_the_file(o)}", err=True)
    if code:
        raise typer.Exit(code)


def _naming_the_file(o) -> str:
    """A blueprint's error, naming its file once (a plan error may name it already, with its line)."""
    error = o.error or ""
    source = getattr(o.item.bp, "source", None)
    if error.startswith((str(o.item.path), str(source))):
        return error
    return f"{o.item.path}: {error}"


def confirm_or_refuse(question: str, *, type_to_confirm: str | None = None) -> None:
    """Ask on a terminal (y/N, or typing `type_to_confirm` back); refuse (exit 2, nothing changed)
    when no one can answer."""
    if not sys.stdin.isatty():
        raise UsageError(f"{question} needs confirmation: run again with --yes (no terminal to ask on)")
    if type_to_confirm is None:
        if not typer.confirm(question, default=False, err=True):
            raise typer.Exit(1)
        return
    answer = typer.prompt(f"{question}\nType {type_to_confirm} to confirm", default="", show_default=False, err=True)
    if answer.strip() != type_to_confirm:
        typer.echo("not confirmed: nothing was changed", err=True)
        raise typer.Exit(1)


def interrupted(command: str, json_out: bool, outcomes: list, payload, message: str) -> NoReturn:
    """Ctrl-C during a run: say what finished and what to do, and with --json keep every blueprint's
    result (its steps: finished, in flight, skipped) in the one document; exit 130."""
    typer.echo(message, err=True)
    if json_out:
        from provision.running import output

        results = [output.result(str(o.item.path), o.item.project, ok=False, err=o.error or "interrupted",
                                 **(payload(o) if o.value is not None else {})) for o in outcomes]
        print_json(output.envelope(command, results, 130, output.error(
            "interrupted", "interrupted (Ctrl-C); nothing more was started")))
    raise typer.Exit(130)


def target_of(emulator: str | None, impersonate: str | None, quota_project: str | None = None):
    """Google Cloud, or the emulator named by --emulator / the environment."""
    return Target.from_env(emulator=emulator, impersonate=impersonate, quota_project=quota_project)


def load_fleet(blueprints: list[Path], shard: str | None):
    """The blueprints of the run (of its CI shard, said on stderr)."""
    from provision.running import fleet

    return fleet.load(blueprints, shard, on_shard=lambda message: typer.echo(message, err=True))


def load_one(path: Path, emulator: str | None, impersonate: str | None):
    """The blueprint and the target."""
    from provision.blueprint.load import load_blueprint

    return load_blueprint(path), target_of(emulator, impersonate)
