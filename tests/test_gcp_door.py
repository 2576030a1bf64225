"""Where a person's browser opens a URL a local emulator serves under a Google host (provision/gcp/door.py)."""
from __future__ import annotations

import pytest

from provision.gcp.door import local_url

VIEWER = "https://ohif-viewer-123.us-central1.run.app"


@pytest.mark.parametrize("emulator, expected", [
    ("http://127.0.0.1:8765", "http://ohif-viewer-123.us-central1.run.app.localhost:8765/"),
    ("http://localhost:9000", "http://ohif-viewer-123.us-central1.run.app.localhost:9000/"),
    ("http://[::1]:8765", "http://ohif-viewer-123.us-central1.run.app.localhost:8765/"),
    ("http://127.0.0.1", "http://ohif-viewer-123.us-central1.run.app.localhost/"),
])
def test_an_emulator_on_loopback_gets_the_localhost_twin(emulator, expected):
    assert local_url(VIEWER, emulator) == expected


@pytest.mark.parametrize("emulator", [None, "http://10.0.0.5:8765", "http://emulator.example.com:8765"])
def test_google_or_an_emulator_elsewhere_has_none(emulator):
    """A .localhost name reaches only this machine's loopback: it cannot open an emulator elsewhere."""
    assert local_url(VIEWER, emulator) is None
