"""The `provision` command line: each command is a few lines over the library.

Google client libraries are imported lazily, inside the commands that call them, so that
`provision --help` and `provision validate` stay fast.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from provision.errors import BlueprintError, NotBuiltYet, ProvisionError
from typer.core import TyperGroup


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
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
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


def _not_built(what: str) -> None:
    raise NotBuiltYet(f"`provision {what}` is not built yet: see the open issues for its status.")


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
        from provision.errors import UsageError

        raise UsageError(f"{path} already exists; pass --force to overwrite it, or choose another path.")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    typer.echo(f"wrote {path}; edit it, then run: provision validate {path}")


@app.command()
def plan(blueprint: BlueprintArg, json_out: JsonOpt = False, emulator: EmulatorOpt = None, impersonate: ImpersonateOpt = None) -> None:
    """Show what apply would change; changes nothing."""
    _not_built("plan")


@app.command()
def apply(
    blueprints: Annotated[list[Path], typer.Argument(help="One or more blueprint YAML files.", show_default=False)],
    yes: Annotated[bool, typer.Option("--yes", help="Apply without asking for confirmation.")] = False,
    json_out: JsonOpt = False,
    no_smoke: Annotated[bool, typer.Option("--no-smoke", help="Skip the smoke check at the end.")] = False,
    parallel: Annotated[int, typer.Option("--parallel", min=1, help="Blueprints applied at once.")] = 4,
    emulator: EmulatorOpt = None,
    impersonate: ImpersonateOpt = None,
) -> None:
    """Create or update everything the blueprint describes, then check it works."""
    _not_built("apply")


@app.command()
def status(blueprint: BlueprintArg, json_out: JsonOpt = False, emulator: EmulatorOpt = None, impersonate: ImpersonateOpt = None) -> None:
    """Compare live state with the blueprint (drift)."""
    _not_built("status")


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
    _not_built("destroy")


@app.command()
def config(
    blueprint: BlueprintArg,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write here instead of viewer.config_out.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="js (window.config) or json (data sources only).")] = "js",
    emulator: EmulatorOpt = None,
) -> None:
    """Write the OHIF viewer configuration for the blueprint's stores."""
    from provision.blueprint import load_blueprint
    from provision.ohif import config as ohif_config
    from provision.errors import UsageError

    if fmt not in ("js", "json"):
        raise UsageError(f"--format {fmt!r}: use js (window.config) or json (data sources only)")
    bp = load_blueprint(blueprint)
    path = ohif_config.write_config(bp, out or bp.viewer.config_out, emulator_url=emulator, fmt=fmt)
    typer.echo(f"wrote {path}", err=True)
    if not emulator:
        typer.echo(ohif_config.oauth_checklist(bp), err=True)
    for warning in ohif_config.config_warnings(bp, emulator_url=emulator):
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
    _not_built("smoke")


@app.command()
def viewer(
    blueprint: BlueprintArg,
    port: Annotated[int, typer.Option("--port", help="Port to serve the viewer on.")] = 3000,
    emulator: EmulatorOpt = None,
) -> None:
    """Serve the real OHIF viewer with the blueprint's configuration."""
    import threading

    from provision.blueprint import load_blueprint
    from provision.ohif.config import render_config
    from provision.ohif.serve import serve_viewer

    bp = load_blueprint(blueprint)
    server = serve_viewer(render_config(bp, emulator_url=emulator), port=port)
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
    time_scale: Annotated[float, typer.Option("--time-scale", min=0.0, help="Multiply every latency by this factor.")] = 1.0,
    faults: Annotated[Optional[str], typer.Option("--faults", help="Inject faults, e.g. '429=0.1,503=0.05,reset=0.02,operation=0.1'.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for reproducible faults.")] = 0,
    enforce_iam: Annotated[bool, typer.Option("--enforce-iam", help="Check every call against IAM; bearer tokens 'emulator:MEMBER'.")] = False,
) -> None:
    """Run the local emulator of the Google APIs that provision and OHIF use."""
    from provision.emulator.server import EmulatorServer
    from provision.emulator.world import Options
    from provision.errors import UsageError

    opts = Options(host=host, port=port, data_dir=data_dir, record=record, latency=latency,
                   time_scale=time_scale, faults=faults, seed=seed, enforce_iam=enforce_iam)
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
    emulator: EmulatorOpt = None,
) -> None:
    """Run the whole flow offline on an embedded emulator with synthetic studies."""
    _not_built("demo")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
