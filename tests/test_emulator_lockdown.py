"""Buckets locked down as Google locks them: uniform bucket-level access refuses the legacy ACL
API (400 `invalid`), public access prevention refuses allUsers/allAuthenticatedUsers (412), both
through the real google-cloud-storage client over HTTP. Evidence: provision/emulator/storage/lockdown.py."""
from __future__ import annotations

import pytest
from google.api_core import exceptions as gexc

from test_emulator_storage import PROJECT, gcs, make_project


@pytest.fixture
def client(emulator):
    make_project(emulator, PROJECT)
    return gcs(emulator)


def locked(client, name: str):
    bucket = client.bucket(name)
    bucket.iam_configuration.uniform_bucket_level_access_enabled = True
    bucket.iam_configuration.public_access_prevention = "enforced"
    return client.create_bucket(bucket, location="us-central1")


def test_the_flags_are_stored_and_returned_as_google_does(client):
    made = locked(client, "locked-1")
    again = client.get_bucket("locked-1")
    for b in (made, again):
        assert b.iam_configuration.uniform_bucket_level_access_enabled is True
        assert b.iam_configuration.public_access_prevention == "enforced"
        assert b.iam_configuration.uniform_bucket_level_access_locked_time is not None   # 90 days on
    plain = client.create_bucket("plain-1")
    assert plain.iam_configuration.uniform_bucket_level_access_enabled is False
    assert plain.iam_configuration.public_access_prevention == "inherited"


def test_acl_calls_are_refused_under_uniform_access(client):
    bucket = locked(client, "locked-2")
    with pytest.raises(gexc.BadRequest, match="Cannot get legacy ACL for a bucket that has uniform bucket-level"):
        bucket.acl.reload()
    with pytest.raises(gexc.BadRequest, match="Cannot use ACL API to update bucket policy when uniform"):
        bucket.acl.save_predefined("private")          # PATCH the bucket with predefinedAcl
    with pytest.raises(gexc.BadRequest, match="Cannot use ACL API to update bucket policy when uniform"):
        bucket.default_object_acl.save_predefined("private")
    blob = bucket.blob("a.dcm")
    blob.upload_from_string(b"x")
    with pytest.raises(gexc.BadRequest, match="Cannot insert legacy ACL for an object when uniform"):
        bucket.blob("b.dcm").upload_from_string(b"x", predefined_acl="private")
    with pytest.raises(gexc.BadRequest, match="legacy ACL for an object"):
        blob.acl.reload()


def test_acl_works_without_uniform_access_and_public_entries_meet_prevention(client):
    bucket = client.bucket("acl-1")
    bucket.iam_configuration.public_access_prevention = "enforced"
    bucket = client.create_bucket(bucket)
    bucket.acl.reload()
    assert any(e["entity"].startswith("project-owners-") and e["role"] == "OWNER" for e in bucket.acl)
    bucket.acl.user("ana@example.com").grant_read()
    bucket.acl.save()
    bucket.acl.reload()
    assert {"entity": "user-ana@example.com", "role": "READER"} in [
        {"entity": e["entity"], "role": e["role"]} for e in bucket.acl]
    with pytest.raises(gexc.PreconditionFailed, match="allUsers and allAuthenticatedUsers are not allowed since "
                                                      "public access prevention is enforced"):
        bucket.acl.all().grant_read()
        bucket.acl.save()


def test_public_iam_grants_are_refused_under_prevention_and_allowed_without(client):
    bucket = locked(client, "locked-3")
    policy = bucket.get_iam_policy(requested_policy_version=3)
    policy.bindings.append({"role": "roles/storage.objectViewer", "members": {"allUsers"}})
    with pytest.raises(gexc.PreconditionFailed, match="public access prevention is enforced"):
        bucket.set_iam_policy(policy)
    bucket.iam_configuration.public_access_prevention = "inherited"
    bucket.patch()
    policy = bucket.get_iam_policy(requested_policy_version=3)
    policy.bindings.append({"role": "roles/storage.objectViewer", "members": {"allAuthenticatedUsers"}})
    bucket.set_iam_policy(policy)
    assert any("allAuthenticatedUsers" in b["members"] for b in bucket.get_iam_policy(requested_policy_version=3).bindings)


def test_a_bucket_created_with_an_acl_meets_its_own_settings(client):
    bucket = client.bucket("born-locked")
    bucket.iam_configuration.uniform_bucket_level_access_enabled = True
    with pytest.raises(gexc.BadRequest, match="Cannot use ACL API"):
        client.create_bucket(bucket, predefined_acl="projectPrivate")
    bucket = client.bucket("born-private")
    bucket.iam_configuration.public_access_prevention = "enforced"
    with pytest.raises(gexc.PreconditionFailed, match="public access prevention is enforced"):
        client.create_bucket(bucket, predefined_acl="publicRead")
    assert [b.name for b in client.list_buckets()] == []        # neither was made


def test_prevention_turns_off_a_public_grant_made_before_it(emulator_factory):
    emu = emulator_factory(enforce_iam=True)
    owner = "user:owner@example.com"
    make_project(emu, PROJECT, member=owner)
    client = gcs(emu, member=owner)
    bucket = client.create_bucket("was-public")
    bucket.blob("x.dcm").upload_from_string(b"x")
    policy = bucket.get_iam_policy(requested_policy_version=3)
    policy.bindings.append({"role": "roles/storage.objectViewer", "members": {"allUsers"}})
    bucket.set_iam_policy(policy)
    stranger = gcs(emu, member="user:stranger@example.com")
    assert stranger.bucket("was-public").blob("x.dcm").download_as_bytes() == b"x"
    bucket.iam_configuration.public_access_prevention = "enforced"
    bucket.patch()
    assert "allUsers" in {m for b in bucket.get_iam_policy(requested_policy_version=3).bindings for m in b["members"]}
    with pytest.raises(gexc.Forbidden):
        stranger.bucket("was-public").blob("x.dcm").download_as_bytes()


def test_provisions_retry_policy_does_not_retry_a_refusal_for_good(client):
    """A 412 for public access prevention is a rule, not a concurrent change: retried, it would
    only burn the step's deadline."""
    from provision.gcp.retry import iam_conflict

    bucket = locked(client, "locked-4")
    policy = bucket.get_iam_policy(requested_policy_version=3)
    policy.bindings.append({"role": "roles/storage.objectViewer", "members": {"allUsers"}})
    with pytest.raises(gexc.PreconditionFailed) as refused:
        bucket.set_iam_policy(policy)
    assert iam_conflict(refused.value) is None
    stale = bucket.get_iam_policy(requested_policy_version=3)
    bucket.set_iam_policy(bucket.get_iam_policy(requested_policy_version=3))   # moves the etag on
    with pytest.raises(gexc.PreconditionFailed) as conflict:
        bucket.set_iam_policy(stale)
    assert iam_conflict(conflict.value)[0] is True


def test_an_objects_acl_lives_and_dies_with_it(client):
    bucket = client.create_bucket("obj-acl-1")
    blob = bucket.blob("a.dcm")
    blob.upload_from_string(b"x")
    blob.acl.user("ana@example.com").grant_read()
    blob.acl.save()
    blob.acl.reload()
    assert "user-ana@example.com" in {e["entity"] for e in blob.acl}
    blob.delete()
    again = bucket.blob("a.dcm")
    again.upload_from_string(b"y")
    again.acl.reload()
    assert "user-ana@example.com" not in {e["entity"] for e in again.acl}
