"""Cloud Logging v2, as far as provision needs it: `entries:list` over the log entries the other
emulated APIs write (today the Healthcare import errors). State in `state.py`, the filter
language subset in `query.py`, HTTP in `handlers.py`."""
