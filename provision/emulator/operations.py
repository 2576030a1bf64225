"""Long-running operations, shared by every API. Each API names and shapes its own operations
(`operations/cp.N`, `operations/acf.p2-N-UUID`, `projects/.../datasets/D/operations/ID`); this
module keeps them, persists them and reports them done once their time has come.

State changes happen when an operation starts (so a killed client finds the resource on its
next read, as on Google); only the `done` flag and the result wait for the operation's time.
"""
from __future__ import annotations

import time
from typing import Any

from provision.emulator.errors import ApiError
from provision.emulator.store import DocStore

KIND = "operation"


class Operations:
    def __init__(self, docs: DocStore, clock=time.time):
        self.docs = docs
        self.clock = clock

    def start(self, name: str, metadata: dict, *, seconds: float = 0.0, response: dict | None = None,
              error: ApiError | None = None, done_metadata: dict | None = None, busy: bool = False,
              project: str | None = None, caller: str | None = None) -> dict:
        """Record an operation that completes `seconds` from now; returns its wire view.

        `done_metadata` replaces `metadata` once done (e.g. healthcare's endTime and counters);
        `busy` keeps it pending until `finish` is called (an import still running).
        `project` (ID or number) and `caller` (the principal who started it) are kept, never shown,
        so that under --enforce-iam a GET of the operation can be checked (`owner`).
        """
        record = {"name": name, "metadata": metadata, "done_at": self.clock() + seconds, "busy": busy,
                  "done_metadata": done_metadata, "project": project, "caller": caller}
        if error is not None:
            record["error"] = error.rpc_status()
        elif response is not None:
            record["response"] = response
        self.docs.put(KIND, name, record)
        return self.view(record)

    def finish(self, name: str, *, response: dict | None = None, error: dict | None = None,
               done_metadata: dict | None = None) -> None:
        """Settle a busy operation's outcome (it reports done once its time has also come)."""
        record = self.docs.get(KIND, name)
        if record is None:
            return
        record["busy"] = False
        record.pop("response", None), record.pop("error", None)
        if error is not None:
            record["error"] = error
        elif response is not None:
            record["response"] = response
        if done_metadata is not None:
            record["done_metadata"] = done_metadata
        self.docs.put(KIND, name, record)

    def update_metadata(self, name: str, metadata: dict) -> None:
        """Replace a running operation's metadata (progress counters)."""
        record = self.docs.get(KIND, name)
        if record is not None:
            record["metadata"] = metadata
            self.docs.put(KIND, name, record)

    def get(self, name: str) -> dict | None:
        """The operation's wire view, or None when there is no such operation."""
        record = self.docs.get(KIND, name)
        return self.view(record) if record else None

    def owner(self, name: str) -> tuple[str | None, str | None]:
        """(project, caller) recorded when the operation started; (None, None) if unknown."""
        record = self.docs.get(KIND, name) or {}
        return record.get("project"), record.get("caller")

    def list(self, prefix: str) -> list[dict]:
        return [self.view(r) for _, r in self.docs.list(KIND, prefix)]

    def view(self, record: dict) -> dict:
        """name, metadata, done, and response or error once done: no other field (clients parse strictly)."""
        done = not record.get("busy") and self.clock() >= record["done_at"]
        out: dict[str, Any] = {"name": record["name"]}
        metadata = record.get("done_metadata") if done and record.get("done_metadata") else record.get("metadata")
        if metadata:
            out["metadata"] = metadata
        if done:  # proto3 JSON leaves out a false `done`, as Google does
            out["done"] = True
            if "error" in record:
                out["error"] = record["error"]
            elif "response" in record:
                out["response"] = record["response"]
        return out


def injected_failure() -> ApiError:
    """The error an operation fails with under `--faults operation=R`."""
    return ApiError("INTERNAL", "Internal error encountered.")
