"""provision: one YAML blueprint to a working OHIF viewer on Google Cloud Healthcare,
with a local emulator of the Google APIs it uses."""

__version__ = "0.1.0"  # the one place the version is written; pyproject.toml reads it
