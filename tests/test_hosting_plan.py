"""The hosted viewer's plan logic on given live states (no API call: what plan decides from what it
read): a service carrying the archive's sha256 is a no-op, IAP turned off or the invoker check
disabled is loud drift that apply corrects, allUsers on the service is drift, a deploy under way
is waited for, a removed member is revoked, and names stay within IAM's limits."""
from __future__ import annotations

from pathlib import Path

from test_apply_support import blueprint_dict, load

from provision.gcp.context import Facts
from provision.resources import viewer_access, viewer_service
from provision.resources.base import Draft, Key, Live
from provision.resources.hosted_archive import Archive
from provision.resources.hosting_names import (
    SOURCE_ANNOTATION,
    account_id,
    iap_resource,
)
from provision.resources.record import Record
from provision.resources.steps import Options

SHA = "ab" * 32
NUMBER = "100000000042"


def _bp(tmp_path, **hosting):
    data = blueprint_dict("ohif-host-unit")
    data["viewer"]["hosting"] = {"region": "us-central1", "members": ["user:ana@example.com"], **hosting}
    return load(tmp_path, data)


def _service(bp, **over) -> dict:
    svc = {"name": "projects/ohif-host-unit/locations/us-central1/services/ohif-viewer",
           "uri": f"https://ohif-viewer-{NUMBER}.us-central1.run.app", "iapEnabled": True,
           "ingress": "INGRESS_TRAFFIC_ALL", "annotations": {SOURCE_ANNOTATION: SHA},
           "terminalCondition": {"type": "Ready", "state": "CONDITION_SUCCEEDED"},
           "template": {"serviceAccount": f"ohif-viewer-viewer@{bp.project.id}.iam.gserviceaccount.com",
                        "scaling": {"minInstanceCount": 0, "maxInstanceCount": 3},
                        "containers": [{"image": "us-central1-docker.pkg.dev/x/cloud-run-source-deploy/ohif-viewer@sha256:1"}]}}
    svc.update(over)
    return svc


def _live(bp, svc, **read) -> Live:
    from provision.resources.states import ProjectState

    live = Live(record=Record(bp.project.id))
    live.read[Key.PROJECT] = ProjectState(bp.project.id, NUMBER)
    live.read[Key.VIEWER_SERVICE] = svc
    live.read[Key.VIEWER_ARCHIVE] = Archive(Path("/nonexistent.tar.gz"), SHA, 1000, {"primary": "https://x/dicomWeb"})
    live.read.update(read)
    return live


def _plan(kind, bp, live) -> Draft:
    draft = Draft(facts=Facts())
    kind.diff(bp, live, Options(), draft)
    return draft


def test_a_service_that_carries_the_archive_sha_is_neither_built_nor_deployed(tmp_path):
    bp = _bp(tmp_path)
    draft = _plan(viewer_service, bp, _live(bp, _service(bp)))
    assert [(s.id, s.action) for s in draft.steps] == [("viewer-service", "no-op")]
    assert draft.steps[0].run is None
    assert draft.facts.viewer_url == f"https://ohif-viewer-{NUMBER}.us-central1.run.app"


def test_another_archive_is_built_and_deployed(tmp_path):
    bp = _bp(tmp_path)
    draft = _plan(viewer_service, bp, _live(bp, _service(bp, annotations={SOURCE_ANNOTATION: "cd" * 32})))
    assert [(s.id, s.action) for s in draft.steps] == [("viewer-archive", "create"), ("viewer-build", "create"),
                                                       ("viewer-service", "update")]
    assert draft.steps[2].changes[0].startswith(f"~ deploy source archive {SHA[:12]} (running: cdcdcdcdcdcd")


def test_iap_turned_off_and_invoker_check_disabled_are_loud_drift_that_apply_corrects(tmp_path):
    bp = _bp(tmp_path)
    draft = _plan(viewer_service, bp, _live(bp, _service(bp, iapEnabled=False, invokerIamDisabled=True)))
    step = draft.steps[0]
    assert step.action == "update" and step.run is not None
    assert any(c.startswith("DRIFT: IAP is OFF") for c in step.changes)
    assert any(c.startswith("DRIFT: the invoker check is disabled") for c in step.changes)
    assert not any(s.id in ("viewer-archive", "viewer-build") for s in draft.steps)   # same archive: no build


def test_a_deploy_under_way_is_waited_for_not_started_again(tmp_path):
    bp = _bp(tmp_path)
    svc = _service(bp, reconciling=True, terminalCondition={"state": "CONDITION_RECONCILING"})
    draft = _plan(viewer_service, bp, _live(bp, svc))
    assert [(s.id, s.action) for s in draft.steps] == [("viewer-service", "update")]
    assert "under way" in draft.steps[0].changes[0]


def test_a_failed_deploy_is_built_and_deployed_again(tmp_path):
    bp = _bp(tmp_path)
    svc = _service(bp, terminalCondition={"state": "CONDITION_FAILED", "message": "crashed"})
    draft = _plan(viewer_service, bp, _live(bp, svc))
    assert [s.id for s in draft.steps] == ["viewer-archive", "viewer-build", "viewer-service"]


def test_all_users_invoker_is_drift_and_a_removed_member_is_revoked(tmp_path):
    bp = _bp(tmp_path, members=["user:bob@example.com"])
    agent = f"serviceAccount:service-{NUMBER}@gcp-sa-iap.iam.gserviceaccount.com"
    service = "projects/ohif-host-unit/locations/us-central1/services/ohif-viewer"
    resource = iap_resource(NUMBER, "us-central1", "ohif-viewer")
    live = _live(bp, _service(bp), **{
        viewer_access.SERVICE_POLICY: {"bindings": [{"role": "roles/run.invoker", "members": [agent, "allUsers"]}]},
        viewer_access.IAP_POLICY: {"bindings": [{"role": "roles/iap.httpsResourceAccessor",
                                                 "members": ["user:ana@example.com", "user:bob@example.com"]}]}})
    live.record.add_grants(service, [("roles/run.invoker", agent)])
    live.record.add_grants(resource, [("roles/iap.httpsResourceAccessor", "user:ana@example.com"),
                                      ("roles/iap.httpsResourceAccessor", "user:bob@example.com")])
    draft = _plan(viewer_access, bp, live)
    invoker, access = draft.steps
    assert invoker.action == "no-op" and any(d.startswith("DRIFT: allUsers holds roles/run.invoker") for d in invoker.drift)
    assert access.action == "delete" and access.changes == ["- user:ana@example.com roles/iap.httpsResourceAccessor"]


def test_the_viewer_account_id_fits_iam_rules():
    assert account_id("ohif-viewer") == "ohif-viewer-viewer"
    long = account_id("a-very-long-service-name-for-the-team-viewer")
    assert len(long) <= 30 and long.endswith("-viewer") and "--" not in long
    assert 6 <= len(account_id("v")) <= 30


def test_the_archive_is_built_once_per_inputs_and_again_when_they_change(tmp_path, small_ohif_dist):
    from provision.gcp.target import Target
    from provision.resources import hosted_archive

    dist = small_ohif_dist
    bp = _bp(tmp_path)
    target = Target(emulator="http://127.0.0.1:9")
    first = hosted_archive.prepare(bp, target)
    built = first.path.stat().st_ino   # written atomically (a new file renamed over): a rebuild is a new inode
    again = hosted_archive.prepare(bp, target)
    assert (again.sha256, again.path, again.path.stat().st_ino) == (first.sha256, first.path, built)
    assert again.sources == {"primary": "http://127.0.0.1:9/v1/projects/ohif-host-unit/locations/us-central1/"
                                        "datasets/imaging/dicomStores/primary/dicomWeb"}
    (dist / "index.html").write_text("<html>another viewer</html>")
    assert hosted_archive.prepare(bp, target).sha256 != first.sha256
    import tarfile
    with tarfile.open(first.path) as tar:
        config = tar.extractfile("app-config.js").read().decode()
    assert "googleapis.com" not in config and "oidc" not in config and "'http://127.0.0.1:9/v1/projects/" in config


def test_the_hosted_app_accepts_the_config_and_env_apply_deploys_on_google(tmp_path, small_ohif_dist):
    """On Google the config names Healthcare's roots; every one of them is proxied, so the app (which
    refuses a config that would send the browser to googleapis.com) starts with it."""
    import tarfile

    from provision.gcp.target import Target
    from provision.hosted.app import create_app
    from provision.hosted.settings import from_env
    from provision.resources import hosted_archive

    dist = small_ohif_dist
    data = blueprint_dict("ohif-host-gcp")
    data["dicom_stores"].append({"id": "second"})
    data["viewer"]["hosting"] = {"region": "us-central1", "members": ["user:ana@example.com"]}
    bp = load(tmp_path, data)
    archive = hosted_archive.prepare(bp, Target())
    with tarfile.open(archive.path) as tar:
        config = tar.extractfile("app-config.js").read().decode()
    assert config.count("https://healthcare.googleapis.com/v1/projects/ohif-host-gcp/") >= 2
    env = {e["name"]: e["value"] for e in hosted_archive.environment(archive, NUMBER, "us-central1", "ohif-viewer")}
    assert env["HOSTED_IAP_AUDIENCE"] == f"/projects/{NUMBER}/locations/us-central1/services/ohif-viewer"
    assert "HOSTED_IAP_JWKS_URL" not in env   # Google's keys
    settings = from_env({**env, "HOSTED_DIST": str(dist), "HOSTED_APP_CONFIG": config})
    assert set(settings.sources) == {"primary", "second"}
    create_app(settings)   # raises SettingsError if googleapis.com were left in the config


def test_plan_notes_the_organization_requirement_and_warm_instances(tmp_path):
    data = blueprint_dict("ohif-host-unit")
    data["project"].pop("parent")
    data["viewer"]["hosting"] = {"region": "us-central1", "members": ["user:ana@example.com"],
                                 "scaling": {"min_instances": 1, "max_instances": 2}}
    bp = load(tmp_path, data)
    draft = _plan(viewer_service, bp, _live(bp, None))
    assert any("needs the project inside an organization" in n for n in draft.notes)
    assert any("min_instances 1 keeps 1 instance(s) running, billed while idle" in n for n in draft.notes)
    assert not _plan(viewer_service, _bp(tmp_path), _live(_bp(tmp_path), None)).notes   # org parent, min 0


def test_a_service_moved_to_another_region_deletes_the_old_one_after_its_account(tmp_path):
    from provision.resources import viewer_account

    bp = _bp(tmp_path, region="europe-west4")
    old = "projects/ohif-host-unit/locations/us-central1/services/ohif-viewer"
    live = _live(bp, None, **{f"old_service:{old}": _service(bp)})
    live.record.add_resource(viewer_service.RESOURCE, old)
    draft = _plan(viewer_service, bp, live)
    removal = next(s for s in draft.steps if s.resource == old)
    assert removal.action == "delete" and removal.id == "viewer-service:us-central1/ohif-viewer"
    assert {s.id for s in draft.steps} >= {"viewer-build", "viewer-service"}
    # A renamed service's old account goes after the old service.
    live.record.add_resource("service-account", "old-viewer@ohif-host-unit.iam.gserviceaccount.com")
    viewer_account.diff(bp, live, Options(), draft)
    viewer_account.finish(bp, live, Options(), draft)
    gone = next(s for s in draft.steps if s.kind == "viewer-account" and s.action == "delete")
    assert removal.id in gone.deps
