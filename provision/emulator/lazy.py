"""A module imported on first use. numpy (pixels, transcoding) costs about 12 MiB of resident
memory and a tenth of a second at start; most emulator sessions (provisioning, QIDO, metadata)
never decode a pixel."""
from __future__ import annotations

import importlib
import threading
from types import ModuleType
from typing import Any


class LazyModule:
    """`np = LazyModule("numpy")`; `np.frombuffer(...)` imports numpy the first time."""

    def __init__(self, name: str):
        self._name = name
        self._module: ModuleType | None = None
        self._lock = threading.Lock()

    def __getattr__(self, attr: str) -> Any:
        module = self._module
        if module is None:
            with self._lock:
                if self._module is None:
                    self._module = importlib.import_module(self._name)
                module = self._module
        return getattr(module, attr)
