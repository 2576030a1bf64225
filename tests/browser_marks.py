"""The marks every test module that drives the real OHIF viewer in Debian's Chromium carries."""
from __future__ import annotations

from pathlib import Path

import pytest

from provision.checks.browser_chromium import CHROMIUM

# Under `make test` (PROVISION_NO_SKIP=1) this skip fails the run: it means a missing install step.
DRIVES_CHROMIUM = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"LOUD SKIP: {CHROMIUM} is not installed, so the real OHIF viewer cannot be driven "
                              "(apt-get install chromium, or `make test`, which installs it)"),
]
