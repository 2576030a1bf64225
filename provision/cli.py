"""The `provision` command line: each command is a few lines over the library.

The commands import the library (and through it Google's client libraries, the blueprint models,
the emulator) inside their functions, so that `provision --help` loads none of them and stays fast
(tests/test_cli_docs.py::test_help_does_not_import_google_libraries); that is why the imports
below the module's top are there.

What the commands share is beside it: cli_options.py (the common arguments and options, the help's
epilog), cli_support.py (errors into messages and exit codes, printing a run's result, progress, the
confirmation prompt).
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from provision.cli_options import (EPILOG, BlueprintArg, BlueprintsArg, DetailedOpt, EmulatorOpt, ImpersonateOpt,
                                   JsonOpt, QuotaProjectOpt, ShardOpt, VerboseOpt, WaitLockOpt, print_version)
from provision.cli_support import (Command, Group, confirm_or_refuse, finish, interrupted, live_progress, load_fleet,
                                   load_one, parse_duration, print_json, target_of)
from provision.errors import ProvisionError, UsageError


app = typer.Typer(
    cls=Group,
    name="provision",
    help="Turn one YAML blueprint into a working OHIF viewer on Google Cloud Healthcare.",
    epilog=EPILOG,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"max_content_width": 100},
)

@app.callback()
def _main(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", callback=print_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show every retry and its reason as it "
                                          "happens (by default: one summary per step).")] = False,
) -> None:
    """Turn one YAML blueprint into a working OHIF viewer on Google Cloud Healthcare."""
    ctx.meta["verbose"] = ctx.meta.get("verbose") or verbose


@app.command(cls=Command)
def validate(blueprints: BlueprintsArg, json_out: JsonOpt = False, verbose: VerboseOpt = False) -> None:
    """Check blueprints (schema, Google's naming rules); no API call."""
    from provision.running import fleet

    outcomes = [fleet.Outcome(it, it.bp) for it in fleet.load(blueprints)]
    finish("validate", json_out, outcomes,
            lambda o: {"validate": {"valid": True, "dicom_stores": len(o.value.dicom_stores)}},
            lambda o: f"{o.item.path}: valid (project {o.item.project}, {len(o.value.dicom_stores)} "
                      f"DICOM store{'' if len(o.value.dicom_stores) == 1 else 's'})")


@app.command(cls=Command)
def schema(
    output_schema: Annotated[bool, typer.Option("--output", help="The JSON Schema of the --json output instead.")] = False,
) -> None:
    """Print the blueprint's JSON Schema (for editors), or the output's."""
    from provision.blueprint.load import json_schema

    from provision.running import output

    print_json(output.schema() if output_schema else json_schema())


@app.command(cls=Command)
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


@app.command(cls=Command)
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
    from provision.running import lifecycle

    opts = lifecycle.Options(delete_data=delete_data, replace=replace, reimport=frozenset(reimport or ()))
    items, target = load_fleet(blueprints, shard), target_of(emulator, impersonate, quota_project)
    outcomes = _plan_each(items, target, opts)
    if out is not None and all(o.ok for o in outcomes):
        saved.save(out, [(o.item.path, o.value) for o in outcomes], target.label, opts)
        typer.echo(f"saved the plan to {out}; apply it with: provision apply {out}", err=True)
    finish("plan", json_out, outcomes, lambda o: {"plan": o.value.to_json()}, lambda o: o.value.render(),
            detailed=detailed, changed=lambda p: p.has_changes, summary=lambda o: o.value.summary())


@app.command(cls=Command)
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

    target, wait_s = target_of(emulator, impersonate, quota_project), parse_duration(wait_lock)
    if len(blueprints) == 1 and saved.is_saved_plan(blueprints[0]):
        items, plans, opts = _saved(blueprints[0], target, shard)
        yes = True   # reviewed when it was saved
        parallel = parallel or min(len(items), fleet.AUTO_PARALLEL)
    else:
        opts = lifecycle.Options(delete_data=delete_data, replace=replace, reimport=frozenset(reimport or ()))
        items = load_fleet(blueprints, shard)
        parallel = parallel or min(len(items), fleet.AUTO_PARALLEL)
        plans = _plan_each(items, target, opts, parallel)
    opts = dataclasses.replace(opts, wait_lock_s=wait_s)
    _ask_before_applying([o.value for o in plans if o.ok], opts, yes)
    try:
        with live_progress() as progress:
            outcomes = flow.apply_planned(plans, target, progress, parallel=parallel, run_smoke=not no_smoke, opts=opts)
    except flow.Interrupted as stop:   # what each blueprint finished, had in flight, never started
        interrupted("apply", json_out, stop.outcomes, _apply_payload, progress.interrupted())
    finish("apply", json_out, outcomes, _apply_payload,
           lambda o: o.value.render() if isinstance(o.value, flow.Outcome) else "", summary=_apply_summary)


def _plan_each(items: list, target, opts, parallel: int = 4) -> list:
    """Each blueprint's plan, with progress on stderr."""
    from provision.running import fleet, lifecycle

    with live_progress() as progress:
        return fleet.each(items, lambda it: lifecycle.plan(it.bp, target, listener=progress, opts=opts), parallel)


def _ask_before_applying(plans: list, opts, yes: bool) -> None:
    """Refuse a plan's -/+ replace unless --replace (showing that plan); show the changes and ask,
    unless --yes."""
    from provision.running import lifecycle

    for p in plans:
        if p.replacements and not opts.replace:
            typer.echo(p.render(), err=True)
        lifecycle.refuse_replacements(p, opts)
    changing = [p for p in plans if p.has_changes]
    if changing and not yes:
        for p in changing:
            typer.echo(p.render(), err=True)
        confirm_or_refuse("apply these changes?")


def _apply_payload(o) -> dict:
    """A blueprint's apply result in the --json document."""
    from provision.running import flow

    if not isinstance(o.value, flow.Outcome):
        return {"apply": None}
    doc = o.value.to_json()
    return {"apply": doc["apply"], "config_path": doc["config"], "smoke": doc["smoke"], "notes": doc["notes"],
            **({"oauth_checklist": doc["oauth_checklist"]} if "oauth_checklist" in doc else {})}


def _apply_summary(o) -> str:
    """A blueprint's cell in a fleet's summary table."""
    from provision.running import flow

    a = o.value.apply if isinstance(o.value, flow.Outcome) else None
    return f"{a.summary} in {a.elapsed:.1f}s" if a is not None else ""


def _saved(path: Path, target, shard: str | None):
    """The blueprints of a saved plan, each planned again now and refused unless the new plan is the
    saved one (running/replan.py), and the options it was made with."""
    from provision.planning import saved
    from provision.running import replan

    doc = saved.load(path)
    items = load_fleet(replan.blueprint_paths(doc), shard)
    with live_progress():
        return items, replan.replan(doc, items, target), saved.options(doc)


@app.command(cls=Command)
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

    items, target = load_fleet(blueprints, shard), target_of(emulator, impersonate, quota_project)
    outcomes = fleet.each(items, lambda it: lifecycle.status(it.bp, target))
    finish("status", json_out, outcomes, lambda o: {"status": o.value.to_json()}, lambda o: o.value.render(),
            detailed=detailed, changed=lambda r: not r.in_sync, summary=lambda o: o.value.headline())


@app.command(cls=Command)
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

    items, target = fleet.load(blueprints), target_of(emulator, impersonate, quota_project)

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
        confirm_or_refuse(question, type_to_confirm=", ".join(data) if data else None)
    with live_progress() as progress:
        outcomes = [fleet.each([o.item], lambda it, o=o: lifecycle.destroy(it.bp, target, listener=progress,  # type: ignore[misc]  # a lambda with a bound default (mypy cannot infer it)
                                                                             plan_=o.value,
                                                                             wait_lock_s=parse_duration(wait_lock)))[0]
                    if o.ok else o
                    for o in plans]
    finish("destroy", json_out, outcomes, lambda o: {"destroy": o.value.to_json()}, lambda o: o.value.render())


def _flags(text: str) -> str:
    """The library names destroy's options; users know them as flags."""
    return text.replace("delete_data", "--delete-data").replace("delete_project", "--delete-project")


@app.command(cls=Command)
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

    items, target = fleet.load(blueprints), target_of(emulator, impersonate, quota_project)
    for it in items:
        holder = lifecycle.unlock(it.bp, target)
        typer.echo(f"{it.project}: no lock (no run holds it)" if holder is None else
                   f"{it.project}: broke the lock held by {describe(holder)}")


@app.command(cls=Command)
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
    kind: Literal["js", "json"] = "json" if fmt == "json" else "js"
    items, target = fleet.load(blueprints), target_of(emulator, None)
    if out is not None and len(items) > 1 and str(out) != "-":
        raise UsageError("--out names one file: give one blueprint, or leave --out out to write each blueprint's "
                         "viewer.config_out")
    for it in items:
        if str(out) == "-":
            typer.echo(ohif_config.render_config(flow.pinned(it.bp, target), emulator_url=target.emulator,
                                                 fmt=kind), nl=False)
            continue
        path = flow.write_config(it.bp, target, out, kind)
        typer.echo(f"wrote {path}", err=True)
        checklist = flow.config_checklist(it.bp, target)
        if checklist:
            typer.echo(checklist, err=True)
        for warning in ohif_config.config_warnings(it.bp, emulator_url=target.emulator):
            typer.echo(f"warning: {warning}", err=True)


@app.command(cls=Command)
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

    items, target = fleet.load(blueprints), target_of(emulator, impersonate, quota_project)
    if as_member:
        from provision.running.smoke import refuse_unchecked_identity

        target = flow.target_as(target, as_member)
        refuse_unchecked_identity(items[0].bp, target, as_member)
    outcomes = fleet.each(items, lambda it: flow.smoke(it.bp, target, browser=browser or None, as_member=as_member))
    outcomes = [fleet.Outcome(o.item, o.value, o.error or (None if o.value.ok else "smoke check failed"))
                for o in outcomes]
    finish("smoke", json_out, outcomes, lambda o: {"smoke": o.value.to_dict()}, lambda o: o.value.summary())


@app.command(cls=Command)
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
    items, target = fleet.load(blueprints), target_of(emulator, impersonate, quota_project)
    outcomes = fleet.each(items, lambda it: audit_mod.audit(it.bp, target, window))
    finish("audit", json_out, outcomes, lambda o: {"audit": o.value.to_json()}, lambda o: o.value.render(),
            summary=lambda o: f"{o.value.entries} entries")


@app.command(cls=Command)
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

    bp, target = load_one(blueprint, emulator, None)
    dist = ensure_viewer(on_fetch=lambda message: typer.echo(f"{message} ...", err=True))
    server = serve_viewer(render_config(flow.pinned(bp, target), emulator_url=target.emulator), port=port, dist=dist)
    typer.echo(f"OHIF viewer on {server.url} (Ctrl-C to stop)", err=True)
    try:
        threading.Event().wait()
    finally:
        server.stop()


@app.command(cls=Command)
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


@app.command(cls=Command)
def demo(
    browser: Annotated[bool, typer.Option("--browser", help="Also drive the real OHIF viewer at the end.")] = False,
    out: Annotated[Path, typer.Option("--out", metavar="DIR", help="Folder for the demo's blueprint, studies, OHIF config and screenshots "
                                                    "(files of the same names are overwritten).")] = Path("out"),
    emulator: EmulatorOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """The whole flow offline, on an embedded emulator with synthetic studies."""
    from provision.demo.run import run_demo

    with live_progress() as progress:
        result = run_demo(out_dir=out, emulator_url=emulator, browser=browser, listener=progress)
    typer.echo(result.render())


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
