"""How long things take on Google Cloud, so `--latency realistic` exercises the provisioner's
waiting the way the real services do. `--time-scale` compresses every figure.

The table is our best reading of public material (Terraform's timeouts and retry comments,
gcloud's progress output, Google's docs saying enablement "may take a few minutes"); the
figures are typical, not worst cases. A FILE (JSON or YAML mapping of the same keys) overrides it.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# key: seconds. "op:" keys are long-running-operation durations; "sync:" keys delay the response
# itself; "propagation:" keys are windows after a change during which dependants still fail.
REALISTIC: dict[str, float] = {
    "op:crm.projects.create": 12.0,        # CreateProjectMetadata ready after ~5-20 s
    "op:crm.projects.delete": 2.0,
    "sync:crm.projects.setIamPolicy": 0.6,
    "sync:crm.projects.getIamPolicy": 0.15,
    "sync:billing.updateBillingInfo": 1.5,
    "op:serviceusage.enable": 20.0,         # batchEnable of two APIs: 10-40 s
    "op:serviceusage.generateServiceIdentity": 2.0,
    "propagation:serviceusage.enable": 30.0,  # SERVICE_DISABLED after the enable finished
    "sync:storage.buckets.insert": 1.0,
    "sync:storage.buckets.setIamPolicy": 0.5,
    "op:healthcare.datasets.create": 5.0,     # also the 404 "dataset not initialized" window
    "propagation:healthcare.datasets.create": 0.0,  # more of that window after the operation is done
    "sync:healthcare.dicomStores.create": 1.0,
    "sync:healthcare.setIamPolicy": 0.5,
    "op:healthcare.import": 25.0,           # fixed part of an import
    "op:healthcare.import.per_instance": 0.01,
    "op:healthcare.delete": 3.0,
    "op:run.services.deploy": 15.0,
    "op:cloudbuild.build": 60.0,            # a buildpack build of a small Python app: about a minute (our reading)
    "op:artifactregistry.repositories.create": 1.0,         # a no-build source deploy: "~10s" plus routing (our reading)
}


@dataclass
class Latency:
    """The latency table in force, scaled by `time_scale` (0 everywhere when `--latency none`)."""

    table: dict[str, float] = field(default_factory=dict)
    time_scale: float = 1.0

    @classmethod
    def from_option(cls, option: str | None, time_scale: float = 1.0) -> "Latency":
        """Build from `--latency none|realistic|FILE`."""
        if not option or option == "none":
            return cls({}, time_scale)
        if option == "realistic":
            return cls(dict(REALISTIC), time_scale)
        if not Path(option).is_file():
            raise ValueError(f"--latency {option!r}: not 'none', 'realistic' or an existing JSON/YAML file")
        text = Path(option).read_text()
        if option.endswith((".yaml", ".yml")):
            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
        unknown = sorted(set(data) - set(REALISTIC))
        if unknown:
            raise ValueError(f"{option}: unknown latency keys {unknown}; valid keys: {sorted(REALISTIC)}")
        return cls({**REALISTIC, **{k: float(v) for k, v in data.items()}}, time_scale)

    def seconds(self, key: str, count: float = 1.0) -> float:
        """Scaled duration for a table key (0 when the key is absent)."""
        return self.table.get(key, 0.0) * count * self.time_scale

    def sleep(self, key: str) -> None:
        """Delay a synchronous response by its table entry."""
        delay = self.seconds(key)
        if delay > 0:
            time.sleep(delay)
