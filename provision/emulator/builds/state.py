"""Cloud Run's `builds:submit` and the Cloud Build builds it starts, with Artifact Registry
(registry.py) as where images go. No HTTP here (handlers.py, registry_routes.py).

A build, offline (archive.py says what stands for the buildpack):
  fetch the source object (this emulator's Cloud Storage; a missing object or generation fails
  the build with FETCH_SOURCE_FAILED, as Cloud Build's fetch step does) -> find the entrypoint
  (no Procfile: the buildpack's failure, USER_BUILD_STEP) -> push to the imageUri's repository
  (a missing repository fails with PUSH_FAILED and the registry's `name unknown: Repository "R"
  not found`, as GoogleCloudPlatform/developer-journey-app#117 shows) -> the image
  `LOCATION-docker.pkg.dev/P/REPO/IMAGE@sha256:<sha256 of the archive>` and its tag.
The work is done when submit is called (it is a check and a hash); the build operation reports
done after `op:cloudbuild.build` of the latency table, and the image is visible from then on.
Each build writes its log lines to Cloud Logging (`cloudbuild`, resource type `build`).

Choices where no public answer shows the wire: the build and operation names use the project
number (`projects/NUMBER/locations/R/builds/ID`, `.../operations/UUID`), as Cloud Build names
builds; a failed build's operation error is code 2 (UNKNOWN) "Build failed; check build logs for
details" (what `gcloud run deploy --source` prints); the build runs as
`projects/P/serviceAccounts/NUMBER-compute@developer.gserviceaccount.com` unless the request
names one; `dockerBuild` fails the build (the emulator runs no Docker).

Records: ("cloud-build", "PROJECT_NUMBER/REGION/ID") -> the final Build.
"""
from __future__ import annotations

import hashlib
import uuid

from provision.emulator.state_base import ApiBackend
from provision.emulator.builds import archive
from provision.emulator.builds.registry import Registry, parse_image
from provision.emulator.common import timestamp
from provision.emulator.errors import ApiError, invalid_argument
from provision.emulator.worldview import WorldView as World


ATTACH_AS = "builds"
KIND = "cloud-build"
SERVICES = ("run.googleapis.com", "cloudbuild.googleapis.com", "artifactregistry.googleapis.com")
METADATA_TYPE = "type.googleapis.com/google.devtools.cloudbuild.v1.BuildOperationMetadata"
BUILD_TYPE = "type.googleapis.com/google.devtools.cloudbuild.v1.Build"
FAILED = "Build failed; check build logs for details"


class Builds(ApiBackend):
    """Cross-API interface: `registry` (Artifact Registry), `resolve(image)` for Cloud Run."""

    def __init__(self, world: World):
        super().__init__(world)
        self.registry = Registry(world)

    def resolve(self, image: str) -> dict | None:
        """The built image a Cloud Run container names, or None (module docstring)."""
        return self.registry.resolve(image)

    def blob_refs(self, keys: list[str] | None) -> set[str]:
        return self.registry.blob_refs(keys)

    # ------------------------------------------------------------------ submit
    def submit(self, project: dict, region: str, body: dict, caller: str | None) -> dict:
        """SubmitBuildResponse for a SubmitBuildRequest (checked against run.v2 already)."""
        source, parts = self._check(body)
        number = project["number"]
        with self.world.db.transaction():
            n = self.world.docs.next_counter("cloudbuild.build")
        seed = f"build:{number}:{n}".encode()
        build_id = str(uuid.UUID(bytes=hashlib.sha256(seed).digest()[:16], version=4))
        op_id = str(uuid.UUID(bytes=hashlib.sha256(b"op:" + seed).digest()[:16], version=4))
        now = self.world.clock()
        seconds = self.world.latency.seconds("op:cloudbuild.build")
        image = body["imageUri"]
        account = body.get("serviceAccount") or f"{number}-compute@developer.gserviceaccount.com"
        build = {"id": build_id, "name": f"projects/{number}/locations/{region}/builds/{build_id}",
                 "projectId": project["projectId"], "status": "QUEUED",
                 "source": {"storageSource": {k: v for k, v in source.items() if v}},
                 "createTime": timestamp(now), "images": [image], "tags": list(body.get("tags") or []),
                 "serviceAccount": account if account.startswith("projects/") else
                 f"projects/{project['projectId']}/serviceAccounts/{account}",
                 "logUrl": (f"https://console.cloud.google.com/cloud-build/builds;region={region}/{build_id}"
                            f"?project={number}"), "timeout": "3600s"}
        queued = dict(build)
        lines = [f'starting build "{build_id}"', "", "FETCHSOURCE",
                 f"Fetching archive gs://{source['bucket']}/{source['object']}."]
        try:
            digest = self._build(body, source, parts, now + seconds, lines)
            build.update(status="SUCCESS", results={"images": [{"name": image, "digest": digest}]})
            lines += ["DONE"]
        except archive.BuildFailed as exc:
            lines += [*exc.lines, "ERROR", f"BUILD FAILURE: {exc.detail}"]
            build.update(status="FAILURE", statusDetail=exc.detail, failureInfo={"type": exc.kind, "detail": exc.detail})
        build.update(startTime=timestamp(now), finishTime=timestamp(now + seconds))
        self.docs.put(KIND, f"{number}/{region}/{build_id}", build)
        self._log(project, build_id, lines, build["status"] == "FAILURE")
        op = self.world.operations.start(
            f"projects/{number}/locations/{region}/operations/{op_id}", {"@type": METADATA_TYPE, "build": queued},
            seconds=seconds, done_metadata={"@type": METADATA_TYPE, "build": build},
            response={"@type": BUILD_TYPE, **build} if build["status"] == "SUCCESS" else None,
            error=ApiError("UNKNOWN", FAILED) if build["status"] == "FAILURE" else None,
            project=project["projectId"], caller=caller)
        out = {"buildOperation": op}
        base = (body.get("buildpackBuild") or {}).get("baseImage")
        if base:
            out["baseImageUri"] = base
        return out

    def _check(self, body: dict) -> tuple[dict, dict]:
        source = body.get("storageSource") or {}
        if not source.get("bucket") or not source.get("object"):
            raise invalid_argument("storage_source: bucket and object are required.",
                                   [("storage_source", "bucket and object are required")])
        if not body.get("imageUri"):
            raise invalid_argument("image_uri is required.", [("image_uri", "required")])
        parts = parse_image(body["imageUri"])
        if parts is None or parts["digest"]:
            raise invalid_argument(f"image_uri '{body['imageUri']}' must be an Artifact Registry Docker image "
                                   "(LOCATION-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE[:TAG]) without a digest.",
                                   [("image_uri", "an Artifact Registry image")])
        if "buildpackBuild" in body and "dockerBuild" in body:
            raise invalid_argument("Only one of buildpack_build or docker_build may be set.",
                                   [("build_type", "one of buildpack_build, docker_build")])
        return {"bucket": source["bucket"], "object": source["object"], "generation": source.get("generation")}, parts

    def _build(self, body: dict, source: dict, parts: dict, done_at: float, lines: list[str]) -> str:
        """The offline build (module docstring): the pushed digest, or BuildFailed."""
        storage = self.world.storage
        obj = storage.get_object(source["bucket"], source["object"])
        gen = source.get("generation")
        if obj is None or (gen and str(obj["generation"]) != str(gen)):
            where = f"gs://{source['bucket']}/{source['object']}" + (f"#{gen}" if gen else "")
            raise archive.BuildFailed("FETCH_SOURCE_FAILED", f"Failed to fetch {where}: the object does not exist.",
                                      [f"Failed to fetch {where}, will no longer retry: storage: object doesn't exist"])
        path = self.world.blobs.path(obj["blob"])
        lines += ["BUILD", "===> DETECTING"]
        if "dockerBuild" in body:
            raise archive.BuildFailed("USER_BUILD_STEP", "The emulator cannot run Docker builds: use buildpackBuild.",
                                      ["ERROR: the emulator builds with buildpacks only (no Docker daemon)."])
        env = dict((body.get("buildpackBuild") or {}).get("environmentVariables") or {})
        entrypoint = archive.entrypoint(path, env)
        lines += ["===> BUILDING", f"Procfile web: {entrypoint}", "===> EXPORTING"]
        if not self.registry.exists(parts["project"], parts["location"], parts["repo"]):
            detail = f'name unknown: Repository "{parts["repo"]}" not found'
            raise archive.BuildFailed("PUSH_FAILED", f'Docker image push failure ("{detail}")',
                                      [detail, (f"ERROR: failed to export: failed to write image to the following "
                                                f"tags: [{body['imageUri']}]")])
        digest = archive.digest(path)
        self.registry.push(parts, digest, blob=obj["blob"], size=int(obj.get("size") or path.stat().st_size),
                           entrypoint=entrypoint, available_at=done_at)
        lines.append(f"*** Digest: {digest}")
        return digest

    def _log(self, project: dict, build_id: str, lines: list[str], failed: bool) -> None:
        logging_ = getattr(self.world, "logging", None)
        if logging_ is None:
            return
        resource = {"type": "build", "labels": {"build_id": build_id, "build_trigger_id": "",
                                                "project_id": project["projectId"]}}
        entries = [{"resource": resource, "textPayload": line,
                    "severity": "ERROR" if failed and line.startswith(("ERROR", "Failure", "BUILD FAILURE")) else "INFO"}
                   for line in lines]
        logging_.write(project["projectId"], "cloudbuild", entries)

    def get_build(self, number: str, region: str, build_id: str) -> dict | None:
        return self.docs.get(KIND, f"{number}/{region}/{build_id}")

    def dump(self) -> dict:
        return {"ar_images": [rec["uri"] for _, rec in self.docs.list("ar-image")]}


Backend = Builds
