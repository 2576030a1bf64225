"""The `provision` command line: each command is a few lines over the library.

Google client libraries are imported lazily, inside the commands that call them, so that
`provision --help` and `provision validate` stay fast.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from typer.core import TyperGroup

from provision.errors import BlueprintError, ProvisionError, UsageError


class _Group(TyperGroup):
    """Expected failures become one clear message and their exit code, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BlueprintError as exc:
            for problem in exc.problems:  # FILE:LINE:COL: ... one per line, for editors and CI
                typer.echo(problem, err=True)
            raise typer.Exit(exc.exit_code) from None
        except ProvisionError as exc:
            from provision.redact import redact

            typer.echo(f"error: {redact(str(exc))}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except (KeyboardInterrupt, typer.Abort):  # Ctrl-C, also at a confirmation prompt
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None


app = typer.Typer(
    cls=_Group,
    name="provision",
    help="Turn one YAML blueprint into a working OHIF viewer on Google Cloud Healthcare.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

def _version(value: bool) -> None:
    if value:
        from provision import __version__

        typer.echo(f"provision {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Turn one YAML blueprint into a working OHIF viewer on Google Cloud Healthcare."""


BlueprintArg = Annotated[Path, typer.Argument(help="The blueprint YAML file.", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout; progress goes to stderr.")]
EmulatorOpt = Annotated[
    Optional[str],
    typer.Option("--emulator", envvar="PROVISION_EMULATOR_HOST", help="Send every API call to this emulator URL instead of Google Cloud."),
]
ImpersonateOpt = Annotated[
    Optional[str],
    typer.Option("--impersonate-service-account", help="Act as this service account (Google Cloud only)."),
]


def _load(path: Path, emulator: str | None, impersonate: str | None):
    """The blueprint and the target (Google Cloud, or the emulator named by --emulator / the environment)."""
    from provision.blueprint import load_blueprint
    from provision.gcp.target import Target

    return load_blueprint(path), Target.from_env(emulator=emulator, impersonate=impersonate)


def _progress():
    """Progress on stderr (a live view on a terminal, one line per event elsewhere); stdout stays clean for --json."""
    from provision.progress import Progress

    return Progress()


def _emit(json_out: bool, doc: dict, text: str) -> None:
    """`--json`: one JSON document on stdout; otherwise the human rendering."""
    if json_out:
        import json

        typer.echo(json.dumps(doc, indent=2, sort_keys=True, default=str))
    else:
        typer.echo(text)


def _confirm_or_refuse(question: str) -> None:
    """Ask on a terminal; refuse (exit 2, nothing changed) when no one can answer."""
    if not sys.stdin.isatty():
        raise UsageError(f"{question} needs confirmation: run again with --yes (no terminal to ask on)")
    if not typer.confirm(question, default=False, err=True):
        raise typer.Exit(1)


@app.command()
def validate(blueprint: BlueprintArg) -> None:
    """Check a blueprint (schema and Google's naming rules) without calling any API."""
    from provision.blueprint import load_blueprint

    bp = load_blueprint(blueprint)
    typer.echo(f"{blueprint}: valid (project {bp.project.id}, {len(bp.dicom_stores)} DICOM store(s))")


@app.command()
def schema() -> None:
    """Print the blueprint's JSON Schema, for editors to complete and check blueprints."""
    import json

    from provision.blueprint import json_schema

    typer.echo(json.dumps(json_schema(), indent=2, sort_keys=True))


@app.command()
def init(
    path: Annotated[Optional[Path], typer.Argument(help="Where to write the starter blueprint (default: stdout).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented starter blueprint that validates."""
    from provision.blueprint import starter_blueprint

    text = starter_blueprint()
    if path is None:
        typer.echo(text, nl=False)
        return
    if path.exists() and not force:
        raise UsageError(f"{path} already exists; pass --force to overwrite it, or choose another path.")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    typer.echo(f"wrote {path}; edit it, then run: provision validate {path}")


@app.command()
def plan(blueprint: BlueprintArg, json_out: JsonOpt = False, emulator: EmulatorOpt = None, impersonate: ImpersonateOpt = None) -> None:
    """Show what apply would change; changes nothing."""
    from provision import provisioner

    bp, target = _load(blueprint, emulator, impersonate)
    with _progress() as progress:
        the_plan = provisioner.plan(bp, target, listener=progress)
    _emit(json_out, the_plan.to_json(), the_plan.render())


@app.command()
def apply(
    blueprints: Annotated[list[Path], typer.Argument(help="One or more blueprint YAML files.", show_default=False)],
    yes: Annotated[bool, typer.Option("--yes", help="Apply without asking for confirmation.")] = False,
    json_out: JsonOpt = False,
    no_smoke: Annotated[bool, typer.Option("--no-smoke", help="Skip the smoke check at the end.")] = False,
    parallel: Annotated[int, typer.Option("--parallel", min=1, help="Blueprints applied at once.")] = 4,
    delete_data: Annotated[bool, typer.Option("--delete-data", help="Also delete what provision made that the "
                                              "blueprint dropped and that holds data (stores with studies, "
                                              "buckets with objects).")] = False,
    replace: Annotated[bool, typer.Option("--replace", help="Carry out -/+ replace steps (a dataset or bucket "
                                          "whose location changed: deleted and made again, data included).")] = False,
    reimport: Annotated[Optional[list[str]], typer.Option("--reimport", metavar="STORE",
                                                          help="Run this store's import again (repeatable).")] = None,
    emulator: EmulatorOpt = None,
    impersonate: ImpersonateOpt = None,
) -> None:
    """Make the environment match the blueprint (within what provision made), then check it works."""
    from concurrent.futures import ThreadPoolExecutor

    from provision import pipeline, provisioner

    opts = provisioner.Options(delete_data=delete_data, replace=replace, reimport=frozenset(reimport or ()))
    loaded = [_load(path, emulator, impersonate) for path in blueprints]
    bps, target = [bp for bp, _ in loaded], loaded[0][1]  # every blueprint goes to the same target
    with _progress() as progress, ThreadPoolExecutor(max_workers=parallel) as pool:
        plans = list(pool.map(lambda bp: provisioner.plan(bp, target, listener=progress, opts=opts), bps))
    for p in plans:
        if p.replacements and not replace:
            typer.echo(p.render(), err=True)
        provisioner.refuse_replacements(p, opts)
    changing = [p for p in plans if p.has_changes]
    if changing and not yes:
        for p in changing:
            typer.echo(p.render(), err=True)
        _confirm_or_refuse("apply these changes?")
    with _progress() as progress:
        outcomes = pipeline.apply_many(bps, target, progress, plans=plans, parallel=parallel, run_smoke=not no_smoke,
                                       opts=opts)
    docs = [o.to_json() for o in outcomes]
    _emit(json_out, docs[0] if len(docs) == 1 else {"ok": all(o.ok for o in outcomes), "results": docs},
          "\n".join(o.render() for o in outcomes))
    for o in outcomes:
        if not o.ok:
            typer.echo(f"error: {o.project}: {o.error}", err=True)
    if not all(o.ok for o in outcomes):
        raise typer.Exit(1)


@app.command()
def status(blueprint: BlueprintArg, json_out: JsonOpt = False, emulator: EmulatorOpt = None, impersonate: ImpersonateOpt = None) -> None:
    """Compare live state with the blueprint (drift)."""
    from provision import provisioner

    bp, target = _load(blueprint, emulator, impersonate)
    report = provisioner.status(bp, target)
    _emit(json_out, report.to_json(), report.render())


@app.command()
def destroy(
    blueprint: BlueprintArg,
    yes: Annotated[bool, typer.Option("--yes", help="Destroy without asking for confirmation.")] = False,
    delete_data: Annotated[bool, typer.Option("--delete-data", help="Also delete DICOM stores that hold data.")] = False,
    delete_project: Annotated[bool, typer.Option("--delete-project", help="Also delete the project.")] = False,
    emulator: EmulatorOpt = None,
    impersonate: ImpersonateOpt = None,
) -> None:
    """Delete what the blueprint describes; data and the project are kept unless asked."""
    from provision import provisioner

    bp, target = _load(blueprint, emulator, impersonate)
    try:
        steps, kept = the_plan = provisioner.destroy_plan(bp, target, delete_data=delete_data,
                                                          delete_project=delete_project)
    except provisioner.NeedsFlag as exc:
        raise ProvisionError(_flags(str(exc))) from None
    for line in kept:
        typer.echo(_flags(line) if line.startswith("nothing to destroy") else f"keep: {_flags(line)}", err=True)
    if not steps:
        typer.echo("nothing to destroy")
        return
    if not yes:
        for step in steps:
            typer.echo(f"  {step.action:<7} {step.id}  {', '.join(step.changes)}", err=True)
        _confirm_or_refuse(f"destroy {len(steps)} resource(s) of {bp.project.id}?")
    with _progress() as progress:
        result = provisioner.destroy(bp, target, listener=progress, plan_=the_plan)
    typer.echo(result.render())


def _flags(text: str) -> str:
    """The library names destroy's options; users know them as flags."""
    return text.replace("delete_data", "--delete-data").replace("delete_project", "--delete-project")


@app.command()
def config(
    blueprint: BlueprintArg,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write here instead of viewer.config_out.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="js (window.config) or json (data sources only).")] = "js",
    emulator: EmulatorOpt = None,
) -> None:
    """Write the OHIF viewer configuration for the blueprint's stores."""
    from provision import pipeline
    from provision.ohif import config as ohif_config

    if fmt not in ("js", "json"):
        raise UsageError(f"--format {fmt!r}: use js (window.config) or json (data sources only)")
    bp, target = _load(blueprint, emulator, None)
    path = pipeline.write_config(bp, target, out, fmt)
    typer.echo(f"wrote {path}", err=True)
    if not target.is_emulator:
        typer.echo(ohif_config.oauth_checklist(bp), err=True)
    for warning in ohif_config.config_warnings(bp, emulator_url=target.emulator):
        typer.echo(f"warning: {warning}", err=True)


@app.command()
def smoke(
    blueprint: BlueprintArg,
    browser: Annotated[bool, typer.Option("--browser", help="Also drive the real OHIF viewer in headless Chromium.")] = False,
    json_out: JsonOpt = False,
    emulator: EmulatorOpt = None,
    impersonate: ImpersonateOpt = None,
) -> None:
    """Prove the viewer will work: DICOMweb as OHIF uses it, optionally the real viewer."""
    from provision import pipeline

    bp, target = _load(blueprint, emulator, impersonate)
    report = pipeline.smoke(bp, target, browser=browser or None)
    _emit(json_out, report.to_dict(), report.summary())
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def viewer(
    blueprint: BlueprintArg,
    port: Annotated[int, typer.Option("--port", help="Port to serve the viewer on.")] = 3000,
    emulator: EmulatorOpt = None,
) -> None:
    """Serve the real OHIF viewer with the blueprint's configuration."""
    import threading

    from provision.ohif.config import render_config
    from provision.ohif.serve import serve_viewer

    bp, target = _load(blueprint, emulator, None)
    server = serve_viewer(render_config(bp, emulator_url=target.emulator), port=port)
    typer.echo(f"OHIF viewer on {server.url} (Ctrl-C to stop)", err=True)
    try:
        threading.Event().wait()
    finally:
        server.stop()


@app.command()
def emulator(
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8765,
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="Keep state here across restarts (default: in memory).")] = None,
    record: Annotated[Optional[Path], typer.Option("--record", help="Append one JSON line per request to this file.")] = None,
    latency: Annotated[str, typer.Option("--latency", help="none, realistic, or a JSON/YAML latency table file.")] = "none",
    time_scale: Annotated[float, typer.Option("--time-scale", min=0.0, help="Multiply every latency (and quota window) by this factor.")] = 1.0,
    quotas: Annotated[Optional[str], typer.Option("--quotas", help="Google's request quotas: none, realistic, or a JSON/YAML table file (default: on with --latency realistic).")] = None,
    faults: Annotated[Optional[str], typer.Option("--faults", help="Inject faults, e.g. '429=0.1,503=0.05,reset=0.02,operation=0.1'.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for reproducible faults.")] = 0,
    enforce_iam: Annotated[bool, typer.Option("--enforce-iam", help="Check every call against IAM; bearer tokens 'emulator:MEMBER'.")] = False,
    allow_host: Annotated[Optional[list[str]], typer.Option("--allow-host", help="Also serve requests whose Host is this name (repeatable); loopback names and the bound address always are.")] = None,
) -> None:
    """Run the local emulator of the Google APIs that provision and OHIF use."""
    from provision.emulator.server import EmulatorServer
    from provision.emulator.world import Options
    for name in allow_host or ():
        if not name.strip() or any(c in name for c in "/ \t@?#"):
            raise UsageError(f"--allow-host {name!r} is not a host name; e.g. --allow-host emulator.local")
    opts = Options(host=host, port=port, data_dir=data_dir, record=record, latency=latency,
                   time_scale=time_scale, quotas=quotas, faults=faults, seed=seed, enforce_iam=enforce_iam,
                   allow_hosts=tuple(allow_host or ()))
    try:
        server = EmulatorServer(opts)
    except (ValueError, FileNotFoundError) as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise ProvisionError(f"cannot listen on {host}:{port}: {exc.strerror}; choose another --port") from None
    typer.echo(f"emulator listening on {server.url} (state: {data_dir or 'in memory'})", err=True)
    typer.echo(f"  export PROVISION_EMULATOR_HOST={server.url}", err=True)
    server.serve_forever()


@app.command()
def demo(
    browser: Annotated[bool, typer.Option("--browser", help="Also drive the real OHIF viewer at the end.")] = False,
    out: Annotated[Path, typer.Option("--out", help="Folder for the demo's blueprint, studies, OHIF config and screenshots "
                                                    "(files of the same names are overwritten).")] = Path("out"),
    emulator: EmulatorOpt = None,
) -> None:
    """Run the whole flow offline on an embedded emulator with synthetic studies."""
    from provision.demo import run_demo

    with _progress() as progress:
        result = run_demo(out_dir=out, emulator_url=emulator, browser=browser, listener=progress)
    typer.echo(result.render())


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
