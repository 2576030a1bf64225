"""The `provision` command line: each command is a few lines over the library.

The commands import the library (and through it Google's client libraries, the blueprint models,
the emulator) inside their functions, so that `provision --help` loads none of them and stays fast
(tests/test_cli_docs.py::test_help_does_not_import_google_libraries); that is why the imports
below the module's top are there.
"""
from __future__ import annotations

import contextvars
import json
import re
import sys
import threading
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperCommand, TyperGroup

from provision import __version__
from provision.errors import BlueprintError, ProvisionError, UsageError
from provision.gcp.target import Target
from provision.redact import redact
from provision.running import output

EPILOG = """\b
Exit codes:
  0    success
  1    failure at run time: an API error, a failed import or smoke check,
       a saved plan the live state moved away from
  2    invalid blueprint or usage
  3    with --detailed-exitcode: plan has changes to make,
       status found drift
  130  interrupted

\b
Environment:
  PROVISION_EMULATOR_HOST   the emulator to call instead of Google Cloud
                            (same as --emulator URL)
  PROVISION_EMULATOR_TOKEN  the emulator principal to act as, e.g.
                            emulator:user:ana@example.com (--enforce-iam)
  PROVISION_CACHE           where the OHIF viewer package is cached
                            (default ~/.cache/provision)
  GOOGLE_APPLICATION_CREDENTIALS  credentials for Google Cloud (ADC)
"""


# click's UsageError (bad options or arguments). Typer exports it only as the base of its public
# BadParameter, whether it bundles click (typer >= 0.2x) or depends on it.
ParseError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
# The run's root context, for what the commands share with the group: -v, and the progress that
# Ctrl-C asks what finished (a ContextVar: Typer offers no public way to reach the current context).
_ROOT: contextvars.ContextVar = contextvars.ContextVar("provision_root")


class _Group(TyperGroup):
    """Expected failures become one clear message and their exit code, never a traceback; with
    --json, also one JSON document on stdout (provision/running/output.py)."""

    def parse_args(self, ctx, args):
        ctx.meta["argv"] = list(args)   # the command line as given, before click consumes it
        return super().parse_args(ctx, args)

    def invoke(self, ctx):
        raw = ctx.meta.get("argv", [])
        command = next((a for a in raw if not a.startswith("-")), "")
        json_mode = "--json" in raw
        _ROOT.set(ctx)

        try:
            return super().invoke(ctx)
        except BlueprintError as exc:
            for problem in exc.problems:  # FILE:LINE:COL: ... one per line, for editors and CI
                typer.echo(problem, err=True)
            _fail_json(json_mode, command, 2, "invalid_blueprint",
                       f"{len(exc.problems)} problem(s) in the blueprint(s)", exc.problems)
            raise typer.Exit(exc.exit_code) from None
        except ParseError as exc:
            if not json_mode:
                raise
            exc.show()
            _fail_json(True, command, 2, "usage", exc.format_message())
            raise typer.Exit(2) from None
        except ProvisionError as exc:
            typer.echo(f"error: {redact(str(exc))}", err=True)
            _fail_json(json_mode, command, exc.exit_code, "usage" if exc.exit_code == 2 else "runtime",
                       redact(str(exc)))
            raise typer.Exit(exc.exit_code) from None
        except (KeyboardInterrupt, typer.Abort):  # Ctrl-C, also at a confirmation prompt
            progress = ctx.meta.get("progress")
            typer.echo(progress.interrupted() if progress is not None else "interrupted", err=True)
            _fail_json(json_mode, command, 130, "interrupted", "interrupted (Ctrl-C); nothing more was started")
            raise typer.Exit(130) from None


class _Command(TyperCommand):
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


def _fail_json(json_mode: bool, command: str, code: int, kind: str, message: str, problems: list[str] | None = None) -> None:
    """The one --json document of a run that ended in an error before it had results."""
    if json_mode and command in output.COMMANDS:
        _print_json(output.envelope(command, [], code, output.error(kind, message, problems)))


def _print_json(doc: dict) -> None:
    typer.echo(json.dumps(doc, indent=2, sort_keys=True, default=str))


app = typer.Typer(
    cls=_Group,
    name="provision",
    help="Turn one YAML blueprint into a working OHIF viewer on Google Cloud Healthcare.",
    epilog=EPILOG,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"max_content_width": 100},
)

def _version(value: bool) -> None:
    if value:
        typer.echo(f"provision {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show every retry and its reason as it "
                                          "happens (by default: one summary per step).")] = False,
) -> None:
    """Turn one YAML blueprint into a working OHIF viewer on Google Cloud Healthcare."""
    ctx.meta["verbose"] = ctx.meta.get("verbose") or verbose


def _verbose_here(ctx: typer.Context, value: bool) -> None:
    """`-v` after the command (`provision apply x.yaml -v`) means what it means before it."""
    if value:
        ctx.find_root().meta["verbose"] = True


VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", expose_value=False, callback=_verbose_here,
                                          help="Show every retry and upload counter as it happens.")]


BlueprintsArg = Annotated[list[Path], typer.Argument(metavar="BLUEPRINT...", show_default=False,
                                                      help="Blueprint files, or directories of them (*.yaml).")]
BlueprintArg = Annotated[Path, typer.Argument(metavar="BLUEPRINT", help="The blueprint YAML file.", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout (progress goes to stderr), "
                                                      "success or failure; `provision schema --output` describes it.")]
DetailedOpt = Annotated[bool, typer.Option("--detailed-exitcode", help="Exit 3 when there are changes or drift "
                                                                       "(0 in sync, 1 error, 2 usage).")]
ShardOpt = Annotated[Optional[str], typer.Option("--shard", metavar="I/N", help="Only the blueprints of CI job I "
                                                 "of N (a stable split: N jobs cover them all, once).")]
WaitLockOpt = Annotated[Optional[str], typer.Option("--wait-lock", metavar="DURATION", help=(
    "When another run holds the project's lock, wait up to this long (30s, 10m, 1h) for it, then plan again; "
    "by default stop at once, naming who holds it. `provision unlock` breaks a dead run's lock."))]
EmulatorOpt = Annotated[
    Optional[str],
    typer.Option("--emulator", metavar="URL", envvar="PROVISION_EMULATOR_HOST",
                 help="Send every API call to this emulator instead of Google Cloud."),
]
ImpersonateOpt = Annotated[
    Optional[str],
    typer.Option("--impersonate-service-account", metavar="EMAIL", help="Act as this service account (through IAM "
                 "Credentials generateAccessToken; you need Service Account Token Creator on it)."),
]
QuotaProjectOpt = Annotated[
    Optional[str],
    typer.Option("--quota-project", envvar="GOOGLE_CLOUD_QUOTA_PROJECT", metavar="PROJECT",
                 help="Bill quota to this project (sent as x-goog-user-project); needed with user credentials "
                      "that name none (default: the credentials' quota_project_id)."),
]


def _duration(text: str | None) -> float:
    """Seconds in `30s`, `10m`, `1h`, `500ms` or a bare number of seconds (0 when not given)."""
    import re

    if not text:
        return 0.0
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", text)
    if not m:
        raise UsageError(f"--wait-lock {text!r}: give a duration such as 30s, 10m or 1h")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2) or "s"]


def _target(emulator: str | None, impersonate: str | None, quota_project: str | None = None):
    """Google Cloud, or the emulator named by --emulator / the environment."""
    return Target.from_env(emulator=emulator, impersonate=impersonate, quota_project=quota_project)


def _fleet(blueprints: list[Path], shard: str | None):
    """The blueprints of the run (of its CI shard, said on stderr)."""
    from provision.running import fleet

    return fleet.load(blueprints, shard, on_shard=lambda message: typer.echo(message, err=True))


def _load(path: Path, emulator: str | None, impersonate: str | None):
    """The blueprint and the target."""
    from provision.blueprint.load import load_blueprint

    return load_blueprint(path), _target(emulator, impersonate)


def _progress():
    """Progress on stderr (a live view on a terminal, one line per event elsewhere); stdout stays clean for --json.
    Registered so that Ctrl-C can say what finished and what was in flight."""
    from provision.running.progress import Progress

    ctx = _ROOT.get(None)
    meta = ctx.meta if ctx is not None else {}
    progress = Progress(verbose=bool(meta.get("verbose")))
    meta["progress"] = progress
    return progress


def _finish(command: str, json_out: bool, outcomes: list, payload, text, code: int | None = None,
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
        results = [output.result(str(o.item.path), o.item.project, ok=o.ok, err=o.error,
                                 **(payload(o) if o.value is not None or o.ok else {})) for o in outcomes]
        _print_json(output.envelope(command, results, code))
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


def _confirm_or_refuse(question: str, *, type_to_confirm: str | None = None) -> None:
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


@app.command(cls=_Command)
def validate(blueprints: BlueprintsArg, json_out: JsonOpt = False, verbose: VerboseOpt = False) -> None:
    """Check blueprints (schema, Google's naming rules); no API call."""
    from provision.running import fleet

    outcomes = [fleet.Outcome(it, it.bp) for it in fleet.load(blueprints)]
    _finish("validate", json_out, outcomes,
            lambda o: {"validate": {"valid": True, "dicom_stores": len(o.value.dicom_stores)}},
            lambda o: f"{o.item.path}: valid (project {o.item.project}, {len(o.value.dicom_stores)} "
                      f"DICOM store{'' if len(o.value.dicom_stores) == 1 else 's'})")


@app.command(cls=_Command)
def schema(
    output_schema: Annotated[bool, typer.Option("--output", help="The JSON Schema of the --json output instead.")] = False,
) -> None:
    """Print the blueprint's JSON Schema (for editors), or the output's."""
    from provision.blueprint.load import json_schema

    _print_json(output.schema() if output_schema else json_schema())


@app.command(cls=_Command)
def init(
    path: Annotated[Optional[Path], typer.Argument(metavar="PATH", help="Where to write the starter blueprint "
                                                   "(default: stdout).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented starter blueprint that validates."""
    from provision.blueprint.starter import starter_blueprint

    text = starter_blueprint()
    if path is None:
        typer.echo(text, nl=False)
        return
    if path.exists() and not force:
        raise UsageError(f"{path} already exists; pass --force to overwrite it, or choose another path.")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    typer.echo(f"wrote {path}; edit it, then run: provision validate {path}")


@app.command(cls=_Command)
def plan(
    blueprints: BlueprintsArg,
    json_out: JsonOpt = False,
    detailed: DetailedOpt = False,
    out: Annotated[Optional[Path], typer.Option("--out", metavar="PLAN.json", help="Save the plan: `apply PLAN.json` "
                                                "applies exactly it, or refuses if the live state moved.")] = None,
    delete_data: Annotated[bool, typer.Option("--delete-data", help="Plan as apply --delete-data would.")] = False,
    replace: Annotated[bool, typer.Option("--replace", help="Plan as apply --replace would.")] = False,
    reimport: Annotated[Optional[list[str]], typer.Option("--reimport", metavar="STORE",
                                                          help="Plan as apply --reimport STORE would.")] = None,
    shard: ShardOpt = None,
    emulator: EmulatorOpt = None,
    impersonate: ImpersonateOpt = None,
    quota_project: QuotaProjectOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Show what apply would change; changes nothing."""
    from provision.planning import saved
    from provision.running import fleet, lifecycle

    opts = lifecycle.Options(delete_data=delete_data, replace=replace, reimport=frozenset(reimport or ()))
    items, target = _fleet(blueprints, shard), _target(emulator, impersonate, quota_project)
    with _progress() as progress:
        outcomes = fleet.each(items, lambda it: lifecycle.plan(it.bp, target, listener=progress, opts=opts))
    if out is not None and all(o.ok for o in outcomes):
        saved.save(out, [(o.item.path, o.value) for o in outcomes], target.label, opts)
        typer.echo(f"saved the plan to {out}; apply it with: provision apply {out}", err=True)
    _finish("plan", json_out, outcomes, lambda o: {"plan": o.value.to_json()}, lambda o: o.value.render(),
            detailed=detailed, changed=lambda p: p.has_changes, summary=lambda o: o.value.summary())


@app.command(cls=_Command)
def apply(
    blueprints: Annotated[list[Path], typer.Argument(metavar="BLUEPRINT...|PLAN.json", show_default=False, help=(
        "Blueprint files, directories of them, or one plan saved by `plan --out`."))],
    yes: Annotated[bool, typer.Option("--yes", help="Apply without asking for confirmation.")] = False,
    json_out: JsonOpt = False,
    no_smoke: Annotated[bool, typer.Option("--no-smoke", help="Skip the smoke check at the end.")] = False,
    parallel: Annotated[int, typer.Option("--parallel", metavar="N", min=0, help=(
        "Blueprints applied at once; 0 (the default): all of them, up to 32 (the quota governor paces "
        "their calls to each Google quota)."))] = 0,
    delete_data: Annotated[bool, typer.Option("--delete-data", help="Also delete what provision made that the "
                                              "blueprint dropped and that holds data (stores with studies, "
                                              "buckets with objects).")] = False,
    replace: Annotated[bool, typer.Option("--replace", help="Carry out -/+ replace steps (a dataset or bucket "
                                          "whose location changed: deleted and made again, data included).")] = False,
    reimport: Annotated[Optional[list[str]], typer.Option("--reimport", metavar="STORE",
                                                          help="Run this store's import again (repeatable).")] = None,
    shard: ShardOpt = None,
    wait_lock: WaitLockOpt = None,
    emulator: EmulatorOpt = None,
    impersonate: ImpersonateOpt = None,
    quota_project: QuotaProjectOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Make the environment match the blueprint, then check it works.

    Within what provision made: what it made and the blueprint dropped is removed; what it
    did not make is never touched."""
    from provision.planning import saved
    from provision.running import fleet, flow, lifecycle

    import dataclasses

    target, wait_s = _target(emulator, impersonate, quota_project), _duration(wait_lock)
    if len(blueprints) == 1 and saved.is_saved_plan(blueprints[0]):
        items, plans, opts = _saved(blueprints[0], target, shard)
        yes = True   # reviewed when it was saved
        parallel = parallel or min(len(items), fleet.AUTO_PARALLEL)
    else:
        opts = lifecycle.Options(delete_data=delete_data, replace=replace, reimport=frozenset(reimport or ()))
        items = _fleet(blueprints, shard)
        parallel = parallel or min(len(items), fleet.AUTO_PARALLEL)
        with _progress() as progress:
            plans = fleet.each(items, lambda it: lifecycle.plan(it.bp, target, listener=progress, opts=opts),
                              parallel)
    opts = dataclasses.replace(opts, wait_lock_s=wait_s)
    good = [o for o in plans if o.ok]
    for o in good:
        if o.value.replacements and not opts.replace:
            typer.echo(o.value.render(), err=True)
        lifecycle.refuse_replacements(o.value, opts)
    changing = [o.value for o in good if o.value.has_changes]
    if changing and not yes:
        for p in changing:
            typer.echo(p.render(), err=True)
        _confirm_or_refuse("apply these changes?")
    stopped = None
    try:
        with _progress() as progress:
            applied = flow.apply_many([o.item.bp for o in good], target, progress, plans=[o.value for o in good],
                                      parallel=parallel, run_smoke=not no_smoke, opts=opts)
    except flow.Interrupted as stop:   # what each blueprint finished, had in flight, never started
        applied, stopped = stop.outcomes, progress.interrupted()
    done = {id(o.item.bp): a for o, a in zip(good, applied, strict=True)}
    outcomes = [fleet.Outcome(o.item, done[id(o.item.bp)], done[id(o.item.bp)].error) if o.ok else o for o in plans]

    def payload(o) -> dict:
        if not isinstance(o.value, flow.Outcome):
            return {"apply": None}
        doc = o.value.to_json()
        return {"apply": doc["apply"], "config_path": doc["config"], "smoke": doc["smoke"], "notes": doc["notes"],
                **({"oauth_checklist": doc["oauth_checklist"]} if "oauth_checklist" in doc else {})}

    def summary(o) -> str:
        a = o.value.apply if isinstance(o.value, flow.Outcome) else None
        return f"{a.summary} in {a.elapsed:.1f}s" if a is not None else ""

    if stopped is not None:
        _interrupted("apply", json_out, outcomes, payload, stopped)
    _finish("apply", json_out, outcomes, payload,
            lambda o: o.value.render() if isinstance(o.value, flow.Outcome) else "", summary=summary)


def _interrupted(command: str, json_out: bool, outcomes: list, payload, message: str) -> None:
    """Ctrl-C during a run: say what finished and what to do, and with --json keep every blueprint's
    result (its steps: finished, in flight, skipped) in the one document; exit 130."""
    from provision.running import output

    typer.echo(message, err=True)
    if json_out:
        results = [output.result(str(o.item.path), o.item.project, ok=False, err=o.error or "interrupted",
                                 **(payload(o) if o.value is not None else {})) for o in outcomes]
        _print_json(output.envelope(command, results, 130, output.error(
            "interrupted", "interrupted (Ctrl-C); nothing more was started")))
    raise typer.Exit(130)


def _saved(path: Path, target, shard: str | None):
    """The blueprints of a saved plan, each planned again now and refused (PlanMoved) unless the
    new plan is the saved one, and the options it was made with."""
    from provision.planning import saved
    from provision.running import fleet, lifecycle

    doc = saved.load(path)
    items = _fleet([Path(e["blueprint"]) for e in doc["plans"]], shard)
    by_path = {str(Path(e["blueprint"])): e for e in doc["plans"]}
    opts = saved.options(doc)

    def check(it):
        entry = by_path[str(it.path)]
        saved.check_inputs(entry, target.label, doc["target"])
        fresh = lifecycle.plan(it.bp, target, opts=opts)
        moved = saved.differences(entry["plan"], fresh)
        if moved:
            raise saved.PlanMoved("the live state moved since the plan was saved; nothing was changed:\n  "
                                       + "\n  ".join(moved) + "\nplan again, review, and apply the new plan")
        return fresh

    with _progress():
        return items, fleet.each(items, check), opts


@app.command(cls=_Command)
def status(
    blueprints: BlueprintsArg,
    json_out: JsonOpt = False,
    detailed: DetailedOpt = False,
    shard: ShardOpt = None,
    emulator: EmulatorOpt = None,
    impersonate: ImpersonateOpt = None,
    quota_project: QuotaProjectOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Live state versus the blueprint: missing, drift, extra, kept."""
    from provision.running import fleet, lifecycle

    items, target = _fleet(blueprints, shard), _target(emulator, impersonate, quota_project)
    outcomes = fleet.each(items, lambda it: lifecycle.status(it.bp, target))
    _finish("status", json_out, outcomes, lambda o: {"status": o.value.to_json()}, lambda o: o.value.render(),
            detailed=detailed, changed=lambda r: not r.in_sync, summary=lambda o: o.value.headline())


@app.command(cls=_Command)
def destroy(
    blueprints: BlueprintsArg,
    yes: Annotated[bool, typer.Option("--yes", help="Destroy without asking for confirmation.")] = False,
    json_out: JsonOpt = False,
    delete_data: Annotated[bool, typer.Option("--delete-data", help="Also delete stores with studies and buckets "
                                              "with objects that provision made.")] = False,
    delete_project: Annotated[bool, typer.Option("--delete-project", help="Also delete the project (if provision "
                                                 "created it).")] = False,
    wait_lock: WaitLockOpt = None,
    emulator: EmulatorOpt = None,
    impersonate: ImpersonateOpt = None,
    quota_project: QuotaProjectOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Delete what provision made for the blueprints (data kept unless asked).

    Its ownership record says what it made; data and the project are kept unless asked."""
    from provision.running import fleet, lifecycle

    items, target = fleet.load(blueprints), _target(emulator, impersonate, quota_project)

    def destroy_plan(it):
        try:
            return lifecycle.destroy_plan(it.bp, target, delete_data=delete_data, delete_project=delete_project)
        except lifecycle.NeedsFlag as exc:
            raise ProvisionError(_flags(str(exc))) from None

    plans = fleet.each(items, destroy_plan)
    for o in plans:
        if o.ok:
            typer.echo(lifecycle.render_destroy_plan(o.item.project, o.value), err=True)
    todo = [o for o in plans if o.ok and o.value.steps]
    if todo and not yes:
        data = [o.item.project for o in todo if o.value.deletes_data]
        question = f"destroy {sum(len(o.value.steps) for o in todo)} resource(s) of {', '.join(o.item.project for o in todo)}?"
        _confirm_or_refuse(question, type_to_confirm=", ".join(data) if data else None)
    with _progress() as progress:
        outcomes = [fleet.each([o.item], lambda it, o=o: lifecycle.destroy(it.bp, target, listener=progress,  # type: ignore[misc]  # a lambda with a bound default (mypy cannot infer it)
                                                                             plan_=o.value,
                                                                             wait_lock_s=_duration(wait_lock)))[0]
                    if o.ok else o
                    for o in plans]
    _finish("destroy", json_out, outcomes, lambda o: {"destroy": o.value.to_json()}, lambda o: o.value.render())


def _flags(text: str) -> str:
    """The library names destroy's options; users know them as flags."""
    return text.replace("delete_data", "--delete-data").replace("delete_project", "--delete-project")


@app.command(cls=_Command)
def unlock(
    blueprints: BlueprintsArg,
    emulator: EmulatorOpt = None,
    impersonate: ImpersonateOpt = None,
    quota_project: QuotaProjectOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Break the lock a dead apply or destroy left on the blueprints' projects.

    Only when no run holds it any more: a live run that loses its lock goes on unguarded."""
    from provision.resources.lock import describe
    from provision.running import fleet
    from provision.running import lifecycle

    items, target = fleet.load(blueprints), _target(emulator, impersonate, quota_project)
    for it in items:
        holder = lifecycle.unlock(it.bp, target)
        typer.echo(f"{it.project}: no lock (no run holds it)" if holder is None else
                   f"{it.project}: broke the lock held by {describe(holder)}")


@app.command(cls=_Command)
def config(
    blueprints: BlueprintsArg,
    out: Annotated[Optional[Path], typer.Option("--out", metavar="PATH|-", help="Write here instead of "
                                                "viewer.config_out (`-`: standard output).")] = None,
    fmt: Annotated[str, typer.Option("--format", metavar="js|json", help="js (window.config for OHIF) or json "
                                     "(the same, as JSON; written next to viewer.config_out as .json).")] = "js",
    emulator: EmulatorOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Write the OHIF viewer configuration for the blueprints' stores."""
    from provision.ohif import config as ohif_config
    from provision.running import fleet, flow

    if fmt not in ("js", "json"):
        raise UsageError(f"--format {fmt!r}: use js (window.config) or json")
    items, target = fleet.load(blueprints), _target(emulator, None)
    if out is not None and len(items) > 1 and str(out) != "-":
        raise UsageError("--out names one file: give one blueprint, or leave --out out to write each blueprint's "
                         "viewer.config_out")
    for it in items:
        if str(out) == "-":
            typer.echo(ohif_config.render_config(flow.pinned(it.bp, target), emulator_url=target.emulator,
                                                 fmt=fmt), nl=False)
            continue
        path = flow.write_config(it.bp, target, out, fmt)
        typer.echo(f"wrote {path}", err=True)
        if not target.is_emulator:
            typer.echo(ohif_config.oauth_checklist(it.bp), err=True)
        for warning in ohif_config.config_warnings(it.bp, emulator_url=target.emulator):
            typer.echo(f"warning: {warning}", err=True)


@app.command(cls=_Command)
def smoke(
    blueprints: BlueprintsArg,
    browser: Annotated[bool, typer.Option("--browser", help="Also drive the real OHIF viewer in headless Chromium.")] = False,
    as_member: Annotated[Optional[str], typer.Option("--as", metavar="MEMBER", help=(
        "Check as this principal, as the viewer's users will be: on the emulator user:EMAIL (its "
        "emulator:MEMBER token), on Google Cloud serviceAccount:EMAIL (impersonated).")) ] = None,
    json_out: JsonOpt = False,
    emulator: EmulatorOpt = None,
    impersonate: ImpersonateOpt = None,
    quota_project: QuotaProjectOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Prove the viewer works: DICOMweb as OHIF uses it, or the real viewer."""
    from provision.running import fleet, flow

    items, target = fleet.load(blueprints), _target(emulator, impersonate, quota_project)
    if as_member:
        from provision.running.smoke import refuse_unchecked_identity

        target = flow.target_as(target, as_member)
        refuse_unchecked_identity(items[0].bp, target, as_member)
    outcomes = fleet.each(items, lambda it: flow.smoke(it.bp, target, browser=browser or None, as_member=as_member))
    outcomes = [fleet.Outcome(o.item, o.value, o.error or (None if o.value.ok else "smoke check failed"))
                for o in outcomes]
    _finish("smoke", json_out, outcomes, lambda o: {"smoke": o.value.to_dict()}, lambda o: o.value.summary())


@app.command(cls=_Command)
def audit(
    blueprints: BlueprintsArg,
    since: Annotated[str, typer.Option("--since", metavar="DURATION", help="How far back: 30m, 12h, 7d, 2w.")] = "7d",
    json_out: JsonOpt = False,
    emulator: EmulatorOpt = None,
    impersonate: ImpersonateOpt = None,
    quota_project: QuotaProjectOpt = None,
) -> None:
    """Who read or changed what: the Data Access audit entries of the blueprints' projects."""
    from provision.running import audit as audit_mod
    from provision.running import fleet

    window = audit_mod.parse_since(since)
    items, target = fleet.load(blueprints), _target(emulator, impersonate, quota_project)
    outcomes = fleet.each(items, lambda it: audit_mod.audit(it.bp, target, window))
    _finish("audit", json_out, outcomes, lambda o: {"audit": o.value.to_json()}, lambda o: o.value.render(),
            summary=lambda o: f"{o.value.entries} entries")


@app.command(cls=_Command)
def viewer(
    blueprint: BlueprintArg,
    port: Annotated[int, typer.Option("--port", metavar="PORT", help="Port to serve the viewer on.")] = 3000,
    emulator: EmulatorOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Serve the real OHIF viewer with the blueprint's configuration."""
    from provision.ohif.config import render_config
    from provision.ohif.serve import serve_viewer
    from provision.running import flow

    from provision.ohif.fetch import ensure_viewer

    bp, target = _load(blueprint, emulator, None)
    dist = ensure_viewer(on_fetch=lambda message: typer.echo(f"{message} ...", err=True))
    server = serve_viewer(render_config(flow.pinned(bp, target), emulator_url=target.emulator), port=port, dist=dist)
    typer.echo(f"OHIF viewer on {server.url} (Ctrl-C to stop)", err=True)
    try:
        threading.Event().wait()
    finally:
        server.stop()


@app.command(cls=_Command)
def emulator(
    host: Annotated[str, typer.Option("--host", metavar="ADDR", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", metavar="PORT", help="Port to listen on.")] = 8765,
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", metavar="DIR", help="Keep state here across restarts (default: in memory).")] = None,
    record: Annotated[Optional[Path], typer.Option("--record", metavar="FILE", help="Append one JSON line per request to this file.")] = None,
    latency: Annotated[str, typer.Option("--latency", metavar="none|realistic|FILE", help="none, realistic, or a JSON/YAML latency table file.")] = "none",
    time_scale: Annotated[float, typer.Option("--time-scale", metavar="F", min=0.0, help="Multiply every latency (and quota window) by this factor.")] = 1.0,
    quotas: Annotated[Optional[str], typer.Option("--quotas", metavar="none|realistic|FILE", help="Google's request quotas: none, realistic, or a JSON/YAML table file (default: on with --latency realistic).")] = None,
    faults: Annotated[Optional[str], typer.Option("--faults", metavar="SPEC", help="Inject faults, e.g. '429=0.1,503=0.05,reset=0.02,operation=0.1'.")] = None,
    seed: Annotated[int, typer.Option("--seed", metavar="N", help="Seed for reproducible faults.")] = 0,
    enforce_iam: Annotated[bool, typer.Option("--enforce-iam", help="Check every call against IAM; bearer tokens 'emulator:MEMBER'.")] = False,
    public_datasets: Annotated[bool, typer.Option("--public-datasets/--no-public-datasets", help=(
        "Serve stand-ins for the public datasets at their real names (NCI IDC releases, the NIH Chest X-ray "
        "store and its Requester Pays bucket).")) ] = True,
    allow_host: Annotated[Optional[list[str]], typer.Option("--allow-host", metavar="NAME", help="Also serve requests whose Host is this name (repeatable); loopback names and the bound address always are.")] = None,
) -> None:
    """Run the local emulator of the Google APIs provision and OHIF use."""
    from provision.emulator.server import EmulatorServer
    from provision.emulator.world import Options
    for name in allow_host or ():
        if not name.strip() or any(c in name for c in "/ \t@?#"):
            raise UsageError(f"--allow-host {name!r} is not a host name; e.g. --allow-host emulator.local")
    opts = Options(host=host, port=port, data_dir=data_dir, record=record, latency=latency,
                   time_scale=time_scale, quotas=quotas, faults=faults, seed=seed, enforce_iam=enforce_iam,
                   allow_hosts=tuple(allow_host or ()), public_datasets=public_datasets)
    try:
        server = EmulatorServer(opts)
    except (ValueError, FileNotFoundError) as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        import errno

        if exc.errno == errno.EADDRINUSE:
            raise ProvisionError(f"port {port} on {host} is in use by another program (another emulator?): stop "
                                 f"it, or choose another port, e.g. `provision emulator --port {port + 1}` "
                                 f"(then PROVISION_EMULATOR_HOST=http://{host}:{port + 1})") from None
        raise ProvisionError(f"cannot listen on {host}:{port}: {exc.strerror}; choose another --port") from None
    typer.echo(f"emulator listening on {server.url} (state: {data_dir or 'in memory'})", err=True)
    typer.echo(f"  export PROVISION_EMULATOR_HOST={server.url}", err=True)
    server.serve_forever()


@app.command(cls=_Command)
def demo(
    browser: Annotated[bool, typer.Option("--browser", help="Also drive the real OHIF viewer at the end.")] = False,
    out: Annotated[Path, typer.Option("--out", metavar="DIR", help="Folder for the demo's blueprint, studies, OHIF config and screenshots "
                                                    "(files of the same names are overwritten).")] = Path("out"),
    emulator: EmulatorOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """The whole flow offline, on an embedded emulator with synthetic studies."""
    from provision.demo.run import run_demo

    with _progress() as progress:
        result = run_demo(out_dir=out, emulator_url=emulator, browser=browser, listener=progress)
    typer.echo(result.render())


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
