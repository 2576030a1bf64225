"""The arguments and options several `provision` commands share, with their help, and the help's
epilog (exit codes, environment). Commands' own options stay next to them in provision/cli.py."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from provision import __version__

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


def print_version(value: bool) -> None:
    """--version: print it and exit."""
    if value:
        typer.echo(f"provision {__version__}")
        raise typer.Exit()


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
