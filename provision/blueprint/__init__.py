"""The blueprint: its models (models.py), loading a file with positioned errors and the JSON Schema
(load.py), Google's naming rules (naming.py), the YAML reader that keeps positions (yamlpos.py), and
the starter that `provision init` writes (starter.py)."""
