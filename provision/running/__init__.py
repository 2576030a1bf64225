"""Running plans: the engine (a dependency graph of steps), progress on a terminal, the library's
entry points (lifecycle.py: plan, apply, status, destroy), the whole flow of `apply` (flow.py:
resources, then the OHIF config, then the smoke, smoke.py), fleets of blueprints (fleet.py), and the
`--json` documents (documents.py: their models and schema; output.py: building and printing them)."""
