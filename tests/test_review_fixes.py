"""Regression tests for the review findings (each fails without its fix), through the real
clients against the emulator."""
from __future__ import annotations

import pytest

from provision import provisioner
from provision.errors import ProvisionError
from provision.gcp.context import Ctx
from provision.gcp.target import Target
from provision.resources import bucket as bucket_mod
from provision.resources import iam
from test_apply_support import blueprint_dict, load, write_dicom


def _foreign_bucket_setup(emulator, tmp_path):
    """Project ohif-rv-c owns gs://ohif-rv-c-dicom (with objects); project ohif-rv-j exists without a bucket."""
    data = tmp_path / "data"
    write_dicom(data, studies=1)
    target = Target(emulator=emulator.url)
    c = load(tmp_path, blueprint_dict("ohif-rv-c", data, smoke={"min_studies": 1}), "c.yaml")
    provisioner.apply(c, target)
    j0 = load(tmp_path, blueprint_dict("ohif-rv-j", None, bucket=None,
                                       dicom_stores=[{"id": "primary"}], smoke={"min_studies": 0}), "j0.yaml")
    provisioner.apply(j0, target)
    j = load(tmp_path, blueprint_dict("ohif-rv-j", None, bucket={"name": "ohif-rv-c-dicom", "location": "US", "create": True},
                                      dicom_stores=[{"id": "primary",
                                                     "import": {"uri": "gs://ohif-rv-c-dicom/dicom/**.dcm"}}]), "j.yaml")
    return target, c, j


def test_create_true_on_another_projects_bucket_is_a_plan_error(emulator, tmp_path):
    target, c, j = _foreign_bucket_setup(emulator, tmp_path)
    before = iam.bucket_io(Ctx(target), c.bucket.name).read()["bindings"]
    with pytest.raises(ProvisionError, match=r"bucket name taken by project ohif-rv-c .*ohif-rv-j.*create: false"):
        provisioner.plan(j, target)
    with pytest.raises(ProvisionError, match="taken by project ohif-rv-c"):
        provisioner.apply(j, target)
    assert iam.bucket_io(Ctx(target), c.bucket.name).read()["bindings"] == before


def test_destroy_never_deletes_another_projects_bucket(emulator, tmp_path):
    target, c, j = _foreign_bucket_setup(emulator, tmp_path)
    ctx = Ctx(target)
    before = iam.bucket_io(ctx, c.bucket.name).read()["bindings"]
    n_objects = len(bucket_mod.list_objects(ctx, c.bucket.name))
    out = provisioner.destroy(j, target, delete_data=True)
    assert not any(s.id.startswith("bucket") for s in out.steps)
    assert any("another project" in k for k in out.kept)
    assert bucket_mod.read(ctx, c.bucket.name).exists
    assert len(bucket_mod.list_objects(ctx, c.bucket.name)) == n_objects > 0
    assert iam.bucket_io(ctx, c.bucket.name).read()["bindings"] == before
