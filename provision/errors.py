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



class PlanRefused(ProvisionError):
    """What Google would refuse halfway, found by plan before any write: a blueprint mistake that only
    the target shows (a location it does not offer, an organization policy the blueprint breaks, a KMS
    key elsewhere). Each problem is `FILE:LINE:COL: what is wrong; what would be valid`. Exit 2, as
    for any invalid blueprint; not a UsageError, so in a fleet it stays that blueprint's outcome."""

    exit_code = 2

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems) + "\nNothing was changed.")
