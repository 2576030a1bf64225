"""From a blueprint and live state to a plan: `plan.py` asks each resource kind what to read and
what to change; `saved.py` writes a plan to a file and applies exactly that plan later."""
