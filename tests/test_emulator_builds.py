"""Building source into an image in the emulator, as `gcloud run deploy --source` does: Cloud Run's
`builds:submit` (a gzipped tar in Cloud Storage, a buildpack build, an Artifact Registry image),
the Cloud Build operation polled to done, Artifact Registry repositories and images, and a Cloud
Run service running that image. All through real HTTP and the discovery clients."""
from __future__ import annotations

import hashlib
import json
import time

import pytest
import requests
from google.cloud import storage
from googleapiclient.errors import HttpError

from builds_helpers import BUILD_APIS, create_repository, submit_build, wait_build_operation
from cloudrun_helpers import APP, REGION, Browser, add_binding, deploy, ready_project, upload_source
from emulator_helpers import create_project, credentials, discovery_client

from provision.emulator import discovery

PROJECT = "build-project-1"
PROCFILE_APP = {"Procfile": "web: python3 main.py\n", "main.py": APP}


def _image(repo: str = "viewer", name: str = "ohif-viewer") -> str:
    return f"{REGION}-docker.pkg.dev/{PROJECT}/{repo}/{name}"


def _build(url: str, files: dict, *, repo: str = "viewer", bucket: str = "build-project-1-src") -> dict:
    source = upload_source(url, PROJECT, bucket, files)
    submitted = submit_build(url, PROJECT, source, _image(repo))
    assert discovery.problems("run.v2", "GoogleCloudRunV2SubmitBuildResponse", submitted, strict=True) == []
    return wait_build_operation(url, submitted["buildOperation"]["name"])


def test_a_build_pushes_an_image_named_by_the_archives_digest(emulator):
    number = ready_project(emulator.url, PROJECT, apis=BUILD_APIS)
    repo_op = create_repository(emulator.url, PROJECT)
    assert repo_op["response"]["name"] == f"projects/{PROJECT}/locations/{REGION}/repositories/viewer"
    source = upload_source(emulator.url, PROJECT, "build-project-1-src", PROCFILE_APP)
    submitted = submit_build(emulator.url, PROJECT, source, _image())
    op = submitted["buildOperation"]
    assert op["name"].startswith(f"projects/{number}/locations/{REGION}/operations/")
    assert op["metadata"]["@type"] == "type.googleapis.com/google.devtools.cloudbuild.v1.BuildOperationMetadata"
    done = wait_build_operation(emulator.url, op["name"])
    assert discovery.problems("cloudbuild.v1", "Operation", done, strict=True) == []
    build = done["metadata"]["build"]
    assert build["status"] == "SUCCESS" and done["response"]["id"] == build["id"]
    digest = build["results"]["images"][0]["digest"]
    blob = requests.get(f"{emulator.url}/storage/v1/b/{source['bucket']}/o/viewer%2Fsource.tar.gz?alt=media").content
    assert digest == "sha256:" + hashlib.sha256(blob).hexdigest()   # the archive's sha256: reproducible
    assert build["results"]["images"][0]["name"] == _image()
    # Artifact Registry lists it, under its digest and the tag `latest`.
    ar = discovery_client(emulator.url, "artifactregistry", "v1").projects().locations().repositories()
    parent = f"projects/{PROJECT}/locations/{REGION}/repositories/viewer"
    images = ar.dockerImages().list(parent=parent).execute()["dockerImages"]
    assert [i["uri"] for i in images] == [f"{_image()}@{digest}"] and images[0]["tags"] == ["latest"]
    assert discovery.problems("artifactregistry.v1", "DockerImage", images[0], strict=True) == []
    got = ar.dockerImages().get(name=images[0]["name"]).execute()
    assert got["uri"] == images[0]["uri"]
    cb = discovery_client(emulator.url, "cloudbuild", "v1")
    assert cb.projects().locations().builds().get(name=build["name"]).execute()["status"] == "SUCCESS"
    # The same archive again: the same image (one image, its tag kept).
    again = wait_build_operation(emulator.url, submit_build(emulator.url, PROJECT, source, _image())["buildOperation"]["name"])
    assert again["metadata"]["build"]["results"]["images"][0]["digest"] == digest
    assert len(ar.dockerImages().list(parent=parent).execute()["dockerImages"]) == 1


def test_repositories_create_get_list_delete(emulator):
    ready_project(emulator.url, PROJECT, apis=BUILD_APIS)
    ar = discovery_client(emulator.url, "artifactregistry", "v1").projects().locations().repositories()
    create_repository(emulator.url, PROJECT, "one")
    repo = ar.get(name=f"projects/{PROJECT}/locations/{REGION}/repositories/one").execute()
    assert repo["format"] == "DOCKER" and repo["registryUri"] == f"{REGION}-docker.pkg.dev/{PROJECT}/one"
    assert discovery.problems("artifactregistry.v1", "Repository", repo, strict=True) == []
    with pytest.raises(HttpError) as err:
        ar.create(parent=f"projects/{PROJECT}/locations/{REGION}", repositoryId="one", body={"format": "DOCKER"}).execute()
    assert err.value.resp.status == 409
    with pytest.raises(HttpError) as err:   # checked against the discovery document
        ar.create(parent=f"projects/{PROJECT}/locations/{REGION}", repositoryId="two",
                  body={"format": "DOCKER", "colour": "red"}).execute()
    assert err.value.resp.status == 400 and b'Unknown name \\"colour\\"' in err.value.content
    listed = ar.list(parent=f"projects/{PROJECT}/locations/{REGION}").execute()["repositories"]
    assert [r["name"].rsplit("/", 1)[1] for r in listed] == ["one"]
    op = ar.delete(name=repo["name"]).execute()
    assert wait_build_operation(emulator.url, op["name"], api=("artifactregistry", "v1"))["done"]
    with pytest.raises(HttpError) as err:
        ar.get(name=repo["name"]).execute()
    assert err.value.resp.status == 404 and b"was not found" in err.value.content


def test_submit_needs_the_apis_enabled(emulator):
    ready_project(emulator.url, PROJECT, apis=("run.googleapis.com",))
    source = upload_source(emulator.url, PROJECT, "build-project-1-src", PROCFILE_APP)
    with pytest.raises(HttpError) as err:
        submit_build(emulator.url, PROJECT, source, _image())
    assert err.value.resp.status == 403
    info = json.loads(err.value.content)["error"]["details"][0]
    assert info["reason"] == "SERVICE_DISABLED" and info["metadata"]["service"] == "cloudbuild.googleapis.com"
    ar = discovery_client(emulator.url, "artifactregistry", "v1").projects().locations().repositories()
    with pytest.raises(HttpError) as err:
        ar.list(parent=f"projects/{PROJECT}/locations/{REGION}").execute()
    assert err.value.resp.status == 403 and b"artifactregistry.googleapis.com" in err.value.content


def _failed_build(done: dict) -> dict:
    assert done["error"] == {"code": 2, "message": "Build failed; check build logs for details"}
    assert "response" not in done
    return done["metadata"]["build"]


def _build_log(url: str) -> list[str]:
    logging = discovery_client(url, "logging", "v2")
    entries = logging.entries().list(body={"resourceNames": [f"projects/{PROJECT}"],
                                           "filter": f'logName="projects/{PROJECT}/logs/cloudbuild"'}).execute()
    return [e.get("textPayload", "") for e in entries.get("entries", [])]


def test_a_source_without_procfile_fails_the_build_like_the_buildpack(emulator):
    ready_project(emulator.url, PROJECT, apis=BUILD_APIS)
    create_repository(emulator.url, PROJECT)
    build = _failed_build(_build(emulator.url, {"main.py": APP}))
    assert build["status"] == "FAILURE" and build["failureInfo"]["type"] == "USER_BUILD_STEP"
    assert any('an entrypoint must be manually set, either with "GOOGLE_ENTRYPOINT" env var or by creating a '
               '"Procfile" file' in line for line in _build_log(emulator.url))
    images = discovery_client(emulator.url, "artifactregistry", "v1").projects().locations().repositories(
    ).dockerImages().list(parent=f"projects/{PROJECT}/locations/{REGION}/repositories/viewer").execute()
    assert images == {}


def test_a_missing_repository_or_source_fails_the_build(emulator):
    ready_project(emulator.url, PROJECT, apis=BUILD_APIS)
    build = _failed_build(_build(emulator.url, PROCFILE_APP, repo="nope"))
    assert build["failureInfo"]["type"] == "PUSH_FAILED"
    assert 'name unknown: Repository "nope" not found' in build["failureInfo"]["detail"]
    gone = {"bucket": "build-project-1-src", "object": "no/such.tar.gz"}
    done = wait_build_operation(emulator.url, submit_build(emulator.url, PROJECT, gone, _image())["buildOperation"]["name"])
    assert _failed_build(done)["failureInfo"]["type"] == "FETCH_SOURCE_FAILED"


def test_an_image_no_build_pushed_fails_the_revision(emulator):
    ready_project(emulator.url, PROJECT, apis=BUILD_APIS)
    create_repository(emulator.url, PROJECT)
    image = f"{_image()}@sha256:{'0' * 64}"
    op = deploy(emulator.url, PROJECT, "viewer", {"template": {"containers": [{"image": image}]}})
    assert op["error"]["code"] == 9
    assert op["error"]["message"] == (f"Revision 'viewer-00001-{op['metadata']['latestCreatedRevision'][-3:]}' is not "
                                      f"ready and cannot serve traffic. Image '{image}' not found.")


def test_a_built_image_runs_its_procfile_on_cloud_run(emulator):
    number = ready_project(emulator.url, PROJECT, apis=BUILD_APIS)
    create_repository(emulator.url, PROJECT)
    # A shell Procfile line (the buildpack's launcher runs it with a shell: `$PORT`, `exec` work).
    files = {"Procfile": 'web: GREETING="$GREETING from the Procfile on $PORT" exec python3 main.py\n', "main.py": APP}
    digest = _build(emulator.url, files)["metadata"]["build"]["results"]["images"][0]["digest"]
    # The image keeps its bytes when the source object is deleted and garbage is collected.
    storage.Client(project=PROJECT, credentials=credentials(), client_options={"api_endpoint": emulator.url}
                   ).bucket("build-project-1-src").blob("viewer/source.tar.gz").delete()
    emulator.world.collect_garbage()
    body = {"template": {"containers": [{"image": f"{_image()}:latest",
                                         "env": [{"name": "GREETING", "value": "built"}]}]}}
    op = deploy(emulator.url, PROJECT, "echo", body)
    assert "error" not in op, op
    add_binding(emulator.url, op["response"]["name"], "roles/run.invoker", "allUsers")
    got = Browser(emulator.url).get(f"https://echo-{number}.{REGION}.run.app/hi")
    assert got.status_code == 200, got.text
    assert got.json()["env"]["GREETING"].startswith("built from the Procfile on ")
    assert digest.startswith("sha256:")


def test_enforce_iam_submit_needs_run_builds_create(emulator_factory):
    emu = emulator_factory(enforce_iam=True)
    owner, bob = "user:ana@example.com", "user:bob@example.com"
    for resource, role in (("organizations/1", "roles/resourcemanager.projectCreator"),
                           ("billingAccounts/012345-6789AB-CDEF01", "roles/billing.user")):
        requests.put(f"{emu.url}/_emulator/policies/{resource}", json={"bindings": [{"role": role, "members": [owner]}]},
                     headers={"X-Emulator-Control": "1"}, timeout=10).raise_for_status()
    create_project(emu.url, PROJECT, member=owner, parent="organizations/1", enable=BUILD_APIS)
    create_repository(emu.url, PROJECT, member=owner)
    source = upload_source(emu.url, PROJECT, "build-project-1-src", PROCFILE_APP, member=owner)
    crm = discovery_client(emu.url, "cloudresourcemanager", "v3", owner)
    policy = crm.projects().getIamPolicy(resource=f"projects/{PROJECT}", body={}).execute()
    policy["bindings"].append({"role": "roles/run.developer", "members": [bob]})
    crm.projects().setIamPolicy(resource=f"projects/{PROJECT}", body={"policy": policy}).execute()
    with pytest.raises(HttpError) as err:   # deploying services is not building
        submit_build(emu.url, PROJECT, source, _image(), member=bob)
    error = json.loads(err.value.content)["error"]
    assert err.value.resp.status == 403 and error["details"][0]["metadata"] == {"permission": "run.builds.create"}
    policy = crm.projects().getIamPolicy(resource=f"projects/{PROJECT}", body={}).execute()
    policy["bindings"].append({"role": "roles/run.sourceDeveloper", "members": [bob]})
    crm.projects().setIamPolicy(resource=f"projects/{PROJECT}", body={"policy": policy}).execute()
    with pytest.raises(HttpError) as err:   # building as an account needs actAs on it
        submit_build(emu.url, PROJECT, source, _image(), member=bob,
                     serviceAccount=f"projects/{PROJECT}/serviceAccounts/builder@{PROJECT}.iam.gserviceaccount.com")
    assert err.value.resp.status == 403 and b"iam.serviceaccounts.actAs" in err.value.content
    submitted = submit_build(emu.url, PROJECT, source, _image(), member=bob)
    done = wait_build_operation(emu.url, submitted["buildOperation"]["name"], member=bob)
    assert done["metadata"]["build"]["status"] == "SUCCESS"
    assert done["metadata"]["build"]["serviceAccount"].endswith("-compute@developer.gserviceaccount.com")


def test_with_latency_the_image_appears_when_the_build_is_done(emulator_factory):
    emu = emulator_factory(latency="realistic", time_scale=0.01)   # a build takes 0.6 s
    ready_project(emu.url, PROJECT, apis=BUILD_APIS)
    deadline = time.time() + 10
    while True:   # SERVICE_DISABLED while the enable propagates (0.3 s here), retried as clients do
        try:
            create_repository(emu.url, PROJECT)
            break
        except HttpError as exc:
            if b"SERVICE_DISABLED" not in exc.content or time.time() > deadline:
                raise
            time.sleep(0.05)
    source = upload_source(emu.url, PROJECT, "build-project-1-src", PROCFILE_APP)
    op = submit_build(emu.url, PROJECT, source, _image())["buildOperation"]
    assert not op.get("done") and op["metadata"]["build"]["status"] == "QUEUED"
    ar = discovery_client(emu.url, "artifactregistry", "v1").projects().locations().repositories().dockerImages()
    parent = f"projects/{PROJECT}/locations/{REGION}/repositories/viewer"
    assert ar.list(parent=parent).execute() == {}   # nothing pushed while the build runs
    done = wait_build_operation(emu.url, op["name"])
    assert done["metadata"]["build"]["status"] == "SUCCESS"
    assert len(ar.list(parent=parent).execute()["dockerImages"]) == 1


def test_a_service_on_a_built_image_starts_again_after_a_restart(emulator_factory, tmp_path):
    first = emulator_factory(data_dir=tmp_path / "state")
    number = ready_project(first.url, PROJECT, apis=BUILD_APIS)
    create_repository(first.url, PROJECT)
    _build(first.url, PROCFILE_APP)
    op = deploy(first.url, PROJECT, "echo", {"template": {"containers": [{"image": _image()}]}})
    assert "error" not in op, op
    add_binding(first.url, op["response"]["name"], "roles/run.invoker", "allUsers")
    first.stop()
    second = emulator_factory(data_dir=tmp_path / "state")
    got = Browser(second.url).get(f"https://echo-{number}.{REGION}.run.app/again")
    assert got.status_code == 200 and got.json()["path"] == "/again"   # a cold start of the built image
