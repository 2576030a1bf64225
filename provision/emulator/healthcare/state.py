"""Healthcare API backend (no HTTP), the facade the server attaches. Its parts, one job each:
`healthcare.backend` (cross-API lookups, dataset-level long-running operations, records, ingest
shared by STOW and import), `healthcare.datasets` (datasets, DICOM stores, their IAM policies),
`healthcare.transfers` (import from and export to Cloud Storage), `healthcare.instances` (DICOMweb
store and delete); `healthcare.common` holds the names and helpers they share.

Rules it keeps, as Google does: a project's Healthcare calls fail with SERVICE_DISABLED until the
API is enabled; the Healthcare service agent comes into being with the project's first dataset;
an import whose bucket the agent cannot read ends with PERMISSION_DENIED; a duplicate instance
with identical bytes is a no-op, with different bytes a failure.
"""
from __future__ import annotations

from provision.emulator.healthcare.datasets import Datasets
from provision.emulator.healthcare.instances import Instances
from provision.emulator.healthcare.transfers import Transfers

ATTACH_AS = "healthcare"


class Healthcare(Datasets, Transfers, Instances):
    """The Healthcare backend the server attaches (as `ATTACH_AS`): datasets and stores
    (`healthcare.datasets`), import and export (`healthcare.transfers`) and DICOMweb writes
    (`healthcare.instances`), all on the core in `healthcare.backend`."""

    # ---- world hooks --------------------------------------------------------------------------
    def blob_refs(self, keys: list[str] | None) -> set[str]:
        """Which blob keys DICOM instances use (World.referenced_blobs)."""
        return self.index.blob_refs(keys)

    def reset(self) -> None:
        super().reset()
        self.index.reset()

    def dump(self) -> dict:
        stores = {name: n for name, n in self.index.summary().items() if name not in self.world.stand_ins}
        return {"healthcare": {"dicomStores": stores}}   # the stand-ins: under publicDatasets


Backend = Healthcare
