"""`provision demo`: synthetic studies (studies.py) and the whole flow offline (run.py)."""
