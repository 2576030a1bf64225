"""The main path against real Google Cloud. Skipped unless credentials and a billing account are given:

    GOOGLE_APPLICATION_CREDENTIALS=key.json (or `gcloud auth application-default login`)
    PROVISION_LIVE_BILLING_ACCOUNT=XXXXXX-XXXXXX-XXXXXX
    PROVISION_LIVE_PARENT=folders/N or organizations/N   (needed when the credentials are a service account)

It creates a project named `ohif-live-<random>`, applies a small blueprint (bucket + upload of two
studies, dataset, store, import), checks that a second apply changes nothing, then destroys
everything including the project. It costs a few cents; the project is deleted at the end.
"""
from __future__ import annotations

import os
import secrets

import pytest

from provision.gcp.target import Target
from test_apply_support import blueprint_dict, load, write_dicom

pytestmark = pytest.mark.live


def _live_target() -> Target:
    billing = os.environ.get("PROVISION_LIVE_BILLING_ACCOUNT")
    if not billing:
        pytest.skip("live Google Cloud test: set PROVISION_LIVE_BILLING_ACCOUNT (and ADC) to run it")
    if os.environ.get("PROVISION_EMULATOR_HOST"):
        pytest.skip("live Google Cloud test: PROVISION_EMULATOR_HOST is set, so this would not reach Google")
    try:
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError

        google.auth.default()
    except DefaultCredentialsError:
        pytest.skip("live Google Cloud test: no Application Default Credentials "
                    "(GOOGLE_APPLICATION_CREDENTIALS or `gcloud auth application-default login`)")
    return Target.from_env(env={})


def test_live_apply_is_idempotent_and_destroy_cleans_up(tmp_path):
    target = _live_target()
    from provision.running import lifecycle

    pid = f"ohif-live-{secrets.token_hex(4)}"
    data = tmp_path / "data"
    write_dicom(data, studies=2)
    raw = blueprint_dict(pid, data)
    raw["project"]["billing_account"] = os.environ["PROVISION_LIVE_BILLING_ACCOUNT"]
    parent = os.environ.get("PROVISION_LIVE_PARENT")
    if parent:
        raw["project"]["parent"] = parent
    else:
        raw["project"].pop("parent")
    bp = load(tmp_path, raw)
    try:
        result = lifecycle.apply(bp, target)
        assert result.ok and result.changed
        assert not lifecycle.apply(bp, target).changed
        assert lifecycle.status(bp, target).in_sync
    finally:
        lifecycle.destroy(bp, target, delete_data=True, delete_project=True)
