"""Artifact Registry v1's backend (no HTTP): Docker repositories and the images builds push.

Records: ("ar-repo", "PROJECT_ID/LOCATION/REPO") -> the Repository as served;
("ar-image", "PROJECT_ID/LOCATION/REPO/IMAGE@sha256:HEX") -> the DockerImage as served plus what
running it needs (`blob`: the source archive's bytes in the blob store, `entrypoint`: the
Procfile's web command) and `availableAt` (the build's end: an image is not listed, nor runnable,
before its build is done).

Choices: only DOCKER repositories in STANDARD_REPOSITORY mode (anything else is a 400 naming
what is supported); a 404 reads `Repository "NAME" was not found.` in the form Artifact Registry
uses for packages (firebase-tools#7431 shows `Package "..." was not found.`); a repository's
create and delete operations are done at once (`op:artifactregistry.repositories.create` of the
latency table delays them).
"""
from __future__ import annotations

import re
from urllib.parse import quote

from provision.emulator.common import timestamp
from provision.emulator.errors import already_exists, invalid_argument, not_found
from provision.emulator.worldview import WorldView as World


REPO = "ar-repo"
IMAGE = "ar-image"
REPO_ID_RE = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
# LOCATION-docker.pkg.dev/PROJECT/REPO/IMAGE[:TAG][@sha256:HEX]
IMAGE_URI_RE = re.compile(r"^(?P<location>[a-z0-9-]+)-docker\.pkg\.dev/(?P<project>[a-z][a-z0-9-]{4,28}[a-z0-9])/"
                          r"(?P<repo>[a-z0-9-]+)/(?P<image>[a-z0-9._-]+(?:/[a-z0-9._-]+)*)"
                          r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$")
OUTPUT_FIELDS = ("name", "createTime", "updateTime", "registryUri", "sizeBytes", "satisfiesPzs", "satisfiesPzi")


def parse_image(uri: str) -> dict | None:
    """The parts of an Artifact Registry Docker image URI, or None for any other image."""
    m = IMAGE_URI_RE.match(uri or "")
    return m.groupdict() if m else None


class Registry:
    def __init__(self, world: World):
        self.world = world
        self.docs = world.docs

    # ------------------------------------------------------------------ repositories
    def create(self, project: dict, location: str, repo_id: str, body: dict) -> dict:
        """A new Docker repository (its Repository view)."""
        if not REPO_ID_RE.match(repo_id or ""):
            raise invalid_argument(f"repository_id '{repo_id}' is invalid: it must start with a lowercase letter, "
                                   "contain only lowercase letters, digits and hyphens, and be at most 63 characters.",
                                   [("repository_id", "invalid repository id")])
        if body.get("format") != "DOCKER":
            raise invalid_argument(f"format '{body.get('format') or 'FORMAT_UNSPECIFIED'}' is not supported by this "
                                   "emulator: it models DOCKER repositories only.", [("repository.format", "DOCKER")])
        if body.get("mode") not in (None, "MODE_UNSPECIFIED", "STANDARD_REPOSITORY"):
            raise invalid_argument(f"mode '{body['mode']}' is not supported by this emulator (STANDARD_REPOSITORY only).",
                                   [("repository.mode", "STANDARD_REPOSITORY")])
        key = f"{project['projectId']}/{location}/{repo_id}"
        now = timestamp(self.world.clock())
        with self.world.db.transaction():
            if self.docs.get(REPO, key) is not None:
                raise already_exists("the repository already exists")
            rec = {k: v for k, v in body.items() if k not in OUTPUT_FIELDS}
            rec.update(name=f"projects/{project['projectId']}/locations/{location}/repositories/{repo_id}",
                       mode="STANDARD_REPOSITORY", createTime=now, updateTime=now, sizeBytes="0",
                       registryUri=f"{location}-docker.pkg.dev/{project['projectId']}/{repo_id}",
                       satisfiesPzs=False, satisfiesPzi=False)
            self.docs.put(REPO, key, rec)
        return rec

    def get(self, project: dict, location: str, repo_id: str) -> dict:
        rec = self.docs.get(REPO, f"{project['projectId']}/{location}/{repo_id}")
        if rec is None:
            raise not_found(f'Repository "projects/{project["projectId"]}/locations/{location}/repositories/'
                            f'{repo_id}" was not found.')
        return rec

    def exists(self, project_id: str, location: str, repo_id: str) -> bool:
        return self.docs.get(REPO, f"{project_id}/{location}/{repo_id}") is not None

    def repositories(self, project: dict, location: str) -> list[dict]:
        return [rec for _, rec in self.docs.list(REPO, f"{project['projectId']}/{location}/")]

    def delete(self, project: dict, location: str, repo_id: str) -> None:
        """Remove the repository and every image in it."""
        key = f"{project['projectId']}/{location}/{repo_id}"
        with self.world.db.transaction():
            self.get(project, location, repo_id)
            self.docs.delete(REPO, key)
            for image_key, _ in self.docs.list(IMAGE, key + "/"):
                self.docs.delete(IMAGE, image_key)
        self.world.blobs_dirty()

    # ------------------------------------------------------------------ images
    def push(self, parts: dict, digest: str, *, blob: str, size: int, entrypoint: str, available_at: float) -> dict:
        """Record a built image (the caller checked the repository) and move its tag onto it."""
        repo_key = f"{parts['project']}/{parts['location']}/{parts['repo']}"
        tag = parts.get("tag") or "latest"
        now = timestamp(available_at)
        key = f"{repo_key}/{parts['image']}@{digest}"
        with self.world.db.transaction():
            for other_key, other in self.docs.list(IMAGE, f"{repo_key}/{parts['image']}@"):
                if other_key != key and tag in other.get("tags", []):
                    other["tags"] = [t for t in other["tags"] if t != tag]
                    self.docs.put(IMAGE, other_key, other)
            rec = self.docs.get(IMAGE, key) or {
                "name": (f"projects/{parts['project']}/locations/{parts['location']}/repositories/{parts['repo']}/"
                         f"dockerImages/{quote(parts['image'], safe='')}@{digest}"),
                "uri": f"{parts['location']}-docker.pkg.dev/{parts['project']}/{parts['repo']}/{parts['image']}@{digest}",
                "tags": [], "imageSizeBytes": str(size), "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "artifactType": "application/vnd.oci.image.config.v1+json", "blob": blob, "entrypoint": entrypoint}
            rec["tags"] = sorted({*rec["tags"], tag})
            rec.update(uploadTime=now, buildTime=now, updateTime=now, availableAt=available_at)
            self.docs.put(IMAGE, key, rec)
        return rec

    def images(self, project: dict, location: str, repo_id: str) -> list[dict]:
        self.get(project, location, repo_id)
        now = self.world.clock()
        return [rec for _, rec in self.docs.list(IMAGE, f"{project['projectId']}/{location}/{repo_id}/")
                if rec["availableAt"] <= now]

    def image(self, project: dict, location: str, repo_id: str, image_id: str) -> dict:
        """One image by `IMAGE@sha256:HEX` (the image path %2F-encoded or not)."""
        found = [r for r in self.images(project, location, repo_id)
                 if r["name"].rsplit("/dockerImages/", 1)[1] in (image_id, quote(image_id, safe="@:"))
                 or r["uri"].split(f"/{repo_id}/", 1)[1] == image_id]
        if not found:
            raise not_found(f'Requested entity was not found. DockerImage "{image_id}" in repository '
                            f'"projects/{project["projectId"]}/locations/{location}/repositories/{repo_id}".')
        return found[0]

    def resolve(self, uri: str) -> dict | None:
        """The image a container's `image` names (by digest, else by tag, `latest` by default), once
        its build is done; None when no build pushed it."""
        parts = parse_image(uri)
        if parts is None:
            return None
        repo_key = f"{parts['project']}/{parts['location']}/{parts['repo']}"
        if self.docs.get(REPO, repo_key) is None:
            return None
        now = self.world.clock()
        for _, rec in self.docs.list(IMAGE, f"{repo_key}/{parts['image']}@"):
            if rec["availableAt"] > now:
                continue
            if parts["digest"] and rec["uri"].endswith("@" + parts["digest"]):
                return rec
            if not parts["digest"] and (parts["tag"] or "latest") in rec.get("tags", []):
                return rec
        return None

    def blob_refs(self, keys: list[str] | None) -> set[str]:
        """Blob keys images hold (an image keeps its archive after the source object is gone)."""
        held = {rec["blob"] for _, rec in self.docs.list(IMAGE)}
        return held if keys is None else held & set(keys)


def image_view(rec: dict) -> dict:
    """A DockerImage as Artifact Registry serves it."""
    return {k: v for k, v in rec.items() if k not in ("blob", "entrypoint", "availableAt")}
