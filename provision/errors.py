"""Errors a user can act on. The CLI prints their message and exits with their code; never a traceback."""
from __future__ import annotations


class ProvisionError(Exception):
    """An expected failure at run time (an API error, a failed import, a failed smoke check): exit 1."""

    exit_code = 1


class UsageError(ProvisionError):
    """Invalid blueprint or command-line usage: exit 2, and nothing was changed."""

    exit_code = 2


class BlueprintError(UsageError):
    """One or more problems in a blueprint, each already formatted as `FILE:LINE:COL: what; what would be valid`."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))

