"""Helpers for tests of building source into images in the emulator: an Artifact Registry
repository, `builds:submit` through the run v2 discovery client, and polling the Cloud Build
operation through the cloudbuild v1 discovery client."""
from __future__ import annotations

import time

from cloudrun_helpers import REGION
from emulator_helpers import discovery_client

BUILD_APIS = ("run.googleapis.com", "iam.googleapis.com", "iap.googleapis.com", "cloudbuild.googleapis.com",
              "artifactregistry.googleapis.com")


def create_repository(url: str, project_id: str, repo: str = "viewer", member: str | None = None) -> dict:
    """A DOCKER repository in REGION; the finished create operation."""
    ar = discovery_client(url, "artifactregistry", "v1", member)
    op = ar.projects().locations().repositories().create(
        parent=f"projects/{project_id}/locations/{REGION}", repositoryId=repo,
        body={"format": "DOCKER", "description": "the hosted viewer"}).execute()
    return wait_build_operation(url, op["name"], member, api=("artifactregistry", "v1"))


def submit_build(url: str, project_id: str, source: dict, image: str, member: str | None = None, **extra) -> dict:
    """SubmitBuildResponse for a buildpack build of `source` (a cloudStorageSource-like dict) into `image`."""
    run = discovery_client(url, "run", "v2", member)
    body = {"storageSource": source, "imageUri": image, "buildpackBuild": {}, **extra}
    return run.projects().locations().builds().submit(parent=f"projects/{project_id}/locations/{REGION}",
                                                      body=body).execute()


def wait_build_operation(url: str, name: str, member: str | None = None, timeout: float = 60.0,
                         api: tuple[str, str] = ("cloudbuild", "v1")) -> dict:
    """Poll a Cloud Build operation (or, with `api`, an Artifact Registry one) until done."""
    cb = discovery_client(url, *api, member)
    deadline = time.time() + timeout
    while True:
        op = cb.projects().locations().operations().get(name=name).execute()
        if op.get("done"):
            return op
        if time.time() > deadline:
            raise TimeoutError(f"operation {name} not done after {timeout}s")
        time.sleep(0.05)
