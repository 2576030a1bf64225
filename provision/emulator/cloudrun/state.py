"""Cloud Run Admin v2's backend: services, their revisions and IAM policies, and the local
instances that run them. No HTTP here (handlers.py routes the Admin API, frontend.py answers the
services' run.app hosts).

The deploy contract (a source deploy without a build, what Cloud Run calls deploying "from
source with no build": terraform's `source_code.cloud_storage_source` + `base_image_uri` with
`image = "scratch"`): `template.containers[0]` has `sourceCode.cloudStorageSource{bucket,
object, generation}` (a gzipped tar in Cloud Storage), a `baseImageUri` (a Google base runtime
image such as `us-central1-docker.pkg.dev/serverless-runtimes/google-22/runtimes/python312`),
`command`/`args`, `env`, `ports`. Offline, running the container means (runner.py): read the
object from this emulator's Cloud Storage, extract it safely to a temp dir, start
`command`+`args` there (the python in `command` is this emulator's interpreter) with the
service's env, PORT (a free port on 127.0.0.1), K_SERVICE/K_REVISION/K_CONFIGURATION and
GCE_METADATA_HOST/GCE_METADATA_IP (its metadata server, metadata.py), wait for the port (TCP
startup probe), and only then report the operation done. A crash before that fails the
operation with Google's "Revision ... is not ready and cannot serve traffic" (code 9,
FAILED_PRECONDITION, as public Terraform logs show). A container with only an `image` runs
when a build pushed that image (builds/: `builds:submit` into this emulator's Artifact
Registry): the build's archive, started as a buildpack starts it, by the Procfile's `web:`
command (python there is this emulator's interpreter; anything else runs through /bin/sh).
Any other image fails the revision with Google's "Image '...' not found.".

Instances stop on delete, on reset, on emulator shutdown (`close`); a service recorded READY
with no instance (after a restart with --data-dir, or after its process died) starts again on
its next request, like a cold start. A deploy under way is cancelled by a reset or a shutdown
(its child stopped); with --data-dir it goes on at the next start. A patch that changes the template deploys a new revision
next to the old one and swaps only once it answers (the old one keeps serving if it fails).

Records: ("run-service", "PROJECT_ID/REGION/NAME") -> spec, generation, status, revisions, policy.
"""
# Long module (issue 20): one backend; services, revisions, IAM and their local instances share one lock and record.
from __future__ import annotations

import builtins
import copy
import hashlib
import queue
import re
import threading
import uuid
from pathlib import Path

from provision.emulator import iam
from provision.emulator.cloudrun import runner
from provision.emulator.cloudrun.frontend import Frontend
from provision.emulator.cloudrun.metadata import MetadataServer
from provision.emulator.cloudrun.views import (OUTPUT_FIELDS, SERVICE_TYPE, default_account, hosts, service_view,
                                               with_defaults)
from provision.emulator.common import timestamp
from provision.emulator.errors import ApiError, aborted, already_exists, invalid_argument, not_found
from provision.emulator.operations import injected_failure
from provision.emulator.worldview import WorldView as World


ATTACH_AS = "cloudrun"
SERVICE = "run.googleapis.com"
KIND = "run-service"
SERVICE_ID_RE = re.compile(r"^[a-z]([-a-z0-9]{0,47}[a-z0-9])?$")
REGION_RE = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
NOT_READY = ("Revision '{revision}' is not ready and cannot serve traffic. The user-provided container failed to "
             "start and listen on the port defined provided by the PORT=8080 environment variable within the "
             "allocated timeout. This can happen when the container port is misconfigured or if the timeout is too "
             "short. The health check timeout can be extended. Logs for this revision might contain more "
             "information. (Emulator: {why})")

# Google's wording for an image no registry holds (google-github-actions/deploy-cloudrun#465).
IMAGE_NOT_FOUND = "Revision '{revision}' is not ready and cannot serve traffic. Image '{image}' not found."


class CloudRun:
    """Cross-API interface: `by_host(host)`, `host_app(host)`, `instance(record)`, `policy_chain(record)`."""

    def __init__(self, world: World):
        self.world = world
        self.docs = world.docs
        self._instances: dict[str, runner.Instance] = {}
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        self._closed = False
        self._log_queue: queue.SimpleQueue = queue.SimpleQueue()
        self._log_thread: threading.Thread | None = None
        self._deploys: set[threading.Thread] = set()
        self._resume()

    def _resume(self) -> None:
        """Deploys that were under way when the emulator stopped (--data-dir) go on now."""
        for key, rec in self.docs.list(KIND):
            if rec.get("status") == "DEPLOYING" and rec.get("operation"):
                self._spawn(key, rec["latestCreatedRevision"], rec["operation"])

    # ------------------------------------------------------------------ lookups
    def get(self, project: dict, region: str, name: str) -> dict:
        rec = self.docs.get(KIND, f"{project['projectId']}/{region}/{name}")
        if rec is None:
            raise not_found(f"Resource '{name}' of kind 'SERVICE' in region '{region}' in project "
                            f"'{project['projectId']}' does not exist.")
        return rec

    def list(self, project: dict, region: str) -> list[dict]:
        prefix = f"{project['projectId']}/" + ("" if region == "-" else f"{region}/")
        return [rec for _, rec in self.docs.list(KIND, prefix)]

    def by_host(self, host: str) -> dict | None:
        """The service answering on a run.app host name, or None."""
        ref = self.docs.get("run-host", host.lower())
        return self.docs.get(KIND, ref["key"]) if ref else None

    def policy_chain(self, rec: dict) -> builtins.list[dict]:
        return [rec["policy"], *self.world.crm.policy_chain(rec["projectId"])]

    def host_app(self, host: str):
        """The WSGI app for a run.app host this emulator serves (None for any other host)."""
        if not host.endswith(".run.app"):
            return None
        return Frontend(self.world, host)

    # ------------------------------------------------------------------ changes
    def create(self, project: dict, region: str, service_id: str, body: dict, caller: str | None,
               validate_only: bool = False) -> dict:
        if not SERVICE_ID_RE.match(service_id or ""):
            raise invalid_argument(f"service_id '{service_id}' must use only lowercase alphanumeric characters and "
                                   "dashes, begin with a letter, not end with a dash, and be at most 49 characters.",
                                   [("service_id", "invalid service id")])
        spec = self._spec(project, body)
        key = f"{project['projectId']}/{region}/{service_id}"
        now = timestamp(self.world.clock())
        with self.world.db.transaction():
            if self.docs.get(KIND, key) is not None:
                raise already_exists(f"Resource '{service_id}' already exists.")
            rec = {"projectId": project["projectId"], "number": project["number"], "region": region,
                   "name": service_id, "spec": spec, "generation": 1, "revisions": 0, "status": "DEPLOYING",
                   "uid": str(uuid.UUID(bytes=hashlib.sha256(f"{key}:{now}".encode()).digest()[:16], version=4)),
                   "createTime": now, "updateTime": now, "creator": _email(caller), "lastModifier": _email(caller),
                   "policy": iam.empty_policy(), "etag": ""}
            if validate_only:
                return self._done_view(project, region, rec)
            self._new_revision(rec)
            self.docs.put(KIND, key, rec)
            for host in hosts(service_id, project["number"], region):
                self.docs.put("run-host", host, {"key": key})
            return self._deploy(project, region, rec)

    def patch(self, project: dict, region: str, name: str, body: dict, caller: str | None, *,
              force: bool = False, allow_missing: bool = False) -> dict:
        key = f"{project['projectId']}/{region}/{name}"
        with self.world.db.transaction():
            rec = self.docs.get(KIND, key)
            if rec is None:
                if allow_missing:
                    return self.create(project, region, name, body, caller)
                rec = self.get(project, region, name)   # raises NOT_FOUND, as a GET answers
            if body.get("etag") and body["etag"] != rec["etag"]:
                raise aborted(f"Resource '{name}' has changed: the request's etag does not match the service's.")
            spec = self._spec(project, body)
            # Compared with Google's defaults filled in, as a GET shows them: sending back what was
            # read changes nothing (no new generation, no new revision).
            new, old = with_defaults(spec, project["number"]), with_defaults(rec["spec"], project["number"])
            if new == old and not force:
                return self._done_view(project, region, rec)
            template_changed = force or new["template"] != old["template"]
            rec.update(spec=spec, generation=rec["generation"] + 1, updateTime=timestamp(self.world.clock()),
                       lastModifier=_email(caller))
            if template_changed:
                rec["status"] = "DEPLOYING"
                self._new_revision(rec)
                self.docs.put(KIND, key, rec)
                return self._deploy(project, region, rec)
            self._stamp(rec)
            self.docs.put(KIND, key, rec)
            return self._done_view(project, region, rec)

    def delete(self, project: dict, region: str, name: str, etag: str | None = None) -> dict:
        key = f"{project['projectId']}/{region}/{name}"
        with self.world.db.transaction():
            rec = self.get(project, region, name)
            if etag and etag != rec["etag"]:
                raise aborted(f"Resource '{name}' has changed: the request's etag does not match the service's.")
            self.docs.delete(KIND, key)
            for host in hosts(name, rec["number"], region):
                self.docs.delete("run-host", host)
        self._stop(key)
        rec["deleteTime"] = timestamp(self.world.clock())
        return self._done_view(project, region, rec)

    def set_policy(self, rec: dict, policy: dict) -> dict:
        key = f"{rec['projectId']}/{rec['region']}/{rec['name']}"
        self._check_members(policy.get("bindings") or [])
        with self.world.db.transaction():
            current = self.docs.get(KIND, key) or rec
            current["policy"] = iam.replace(current["policy"], policy)
            self.docs.put(KIND, key, current)
        return current["policy"]

    # ------------------------------------------------------------------ internals
    def _spec(self, project: dict, body: dict) -> dict:
        """The caller's service (output-only fields dropped), checked for what the emulator needs."""
        spec = {k: copy.deepcopy(v) for k, v in body.items() if k not in OUTPUT_FIELDS and k != "name"}
        template = spec.get("template")
        if not isinstance(template, dict) or not template.get("containers"):
            raise invalid_argument("template.containers: at least one container is required.",
                                   [("service.template.containers", "required")])
        for i, container in enumerate(template["containers"]):
            if not container.get("image"):
                raise invalid_argument(f"service.template.containers[{i}].image: required.",
                                       [(f"service.template.containers[{i}].image", "Required")])
        account = template.get("serviceAccount")
        # Enabling the Cloud Run Admin API creates the Compute Engine default service account
        # (run/docs/deploying-source-code), so it always exists here.
        if account and account != default_account(project["number"]) and not self._account_exists(account):
            raise ApiError("PERMISSION_DENIED", f"Permission 'iam.serviceaccounts.actAs' denied on service account "
                                                f"{account} (or it may not exist).")
        return spec

    def _account_exists(self, email: str) -> bool:
        admin = getattr(self.world, "iamadmin", None)
        return admin is None or admin.exists(email)

    def _check_members(self, bindings: builtins.list[dict]) -> None:
        su = self.world.serviceusage
        for b in bindings:
            for member in b.get("members") or []:
                kind, _, email = str(member).partition(":")
                if kind != "serviceAccount":
                    continue
                parsed = su.parse_agent_email(email)
                missing = (not su.agent_exists(*parsed)) if parsed else (
                    email.endswith(".iam.gserviceaccount.com") and not self._account_exists(email))
                if missing:
                    raise invalid_argument(f"Service account {email} does not exist.")

    def _new_revision(self, rec: dict) -> None:
        rec["revisions"] += 1
        salt = hashlib.sha256(f"{rec['uid']}:{rec['revisions']}".encode()).digest()
        suffix = "".join("abcdefghijklmnopqrstuvwxyz"[b % 26] for b in salt[:3])
        rec["latestCreatedRevision"] = f"{rec['name']}-{rec['revisions']:05d}-{suffix}"
        self._stamp(rec)

    def _stamp(self, rec: dict) -> None:
        rec["etag"] = '"' + hashlib.sha256(f"{rec['uid']}:{rec['generation']}:{rec['status']}".encode()
                                           ).hexdigest()[:16] + '"'

    def _operation_name(self, project: dict, region: str) -> str:
        n = self.world.docs.next_counter("run.operation")
        return f"projects/{project['projectId']}/locations/{region}/operations/" + str(
            uuid.UUID(bytes=hashlib.sha256(f"run:{project['number']}:{n}".encode()).digest()[:16], version=4))

    def _done_view(self, project: dict, region: str, rec: dict) -> dict:
        view = {"@type": SERVICE_TYPE, **service_view(rec)}
        return self.world.operations.start(self._operation_name(project, region), view, response=view,
                                           project=project["projectId"])

    def _deploy(self, project: dict, region: str, rec: dict) -> dict:
        """Start the operation and the revision in the background; the operation is done once it answers."""
        name = self._operation_name(project, region)
        view = {"@type": SERVICE_TYPE, **service_view(rec)}
        op = self.world.operations.start(name, view, busy=True, project=project["projectId"],
                                         seconds=self.world.latency.seconds("op:run.services.deploy"))
        if self.world.faults.draw_operation():
            self.world.operations.finish(name, error=injected_failure().rpc_status())
            return op
        key = f"{rec['projectId']}/{region}/{rec['name']}"
        rec["operation"] = name
        self.docs.put(KIND, key, rec)
        self._spawn(key, rec["latestCreatedRevision"], name)
        return op

    def _spawn(self, key: str, revision: str, op_name: str) -> None:
        thread = threading.Thread(target=self._run_deploy, args=(key, revision, op_name, self.world.epoch),
                                  name="run-deploy", daemon=True)
        with self._lock:
            self._deploys.add(thread)
        thread.start()

    def _cancelled(self, epoch: int) -> bool:
        """Whether work started in `epoch` must stop: the emulator is closing, or was reset since."""
        return self._closed or self.world.epoch != epoch

    def _run_deploy(self, key: str, revision: str, op_name: str, epoch: int) -> None:
        try:
            self._deploy_and_settle(key, revision, op_name, epoch)
        finally:
            with self._lock:
                self._deploys.discard(threading.current_thread())

    def _deploy_and_settle(self, key: str, revision: str, op_name: str, epoch: int) -> None:
        try:
            self.start_instance(key, revision, replace=True, epoch=epoch)
            error = None
        except runner.ImageNotFound as exc:
            error = ApiError("FAILED_PRECONDITION", IMAGE_NOT_FOUND.format(revision=revision, image=exc.image))
        except runner.StartFailed as exc:
            error = ApiError("FAILED_PRECONDITION", NOT_READY.format(revision=revision, why=exc))
        if self._cancelled(epoch):
            return   # reset (the operation is gone) or shutdown (it goes on at the next start: `_resume`)
        try:
            self._settle(key, revision, op_name, epoch, error)
        except Exception:  # noqa: BLE001 - the emulator closed its database meanwhile: nothing to record
            if not self._closed:
                raise

    def _settle(self, key: str, revision: str, op_name: str, epoch: int, error: ApiError | None) -> None:
        """Record how a revision's deploy ended, in the service and in its operation."""
        with self.world.db.transaction():
            if self.world.epoch != epoch:
                return   # reset meanwhile: the operation is gone with everything else
            rec = self.docs.get(KIND, key)
            if rec is None or rec.get("latestCreatedRevision") != revision:
                why = "was deleted" if rec is None else "was changed again"
                self.world.operations.finish(op_name, error=aborted(
                    f"The service {why} before revision '{revision}' was ready.").rpc_status())
                return
            rec["status"] = "FAILED" if error else "READY"
            rec["message"] = error.message if error else None
            if not error:
                rec["latestReadyRevision"] = revision
                rec["readyTemplate"] = rec["spec"]["template"]
            rec["updateTime"] = timestamp(self.world.clock())
            self._stamp(rec)
            self.docs.put(KIND, key, rec)
            view = {"@type": SERVICE_TYPE, **service_view(rec)}
            self.world.operations.finish(op_name, error=error.rpc_status() if error else None,
                                         response=None if error else view, done_metadata=view)

    # ------------------------------------------------------------------ instances
    def instance(self, rec: dict) -> runner.Instance:
        """The running instance of a READY service, started now if it is not running (a cold start)."""
        key = f"{rec['projectId']}/{rec['region']}/{rec['name']}"
        inst = self._instances.get(key)
        if inst is not None and inst.alive():
            return inst
        return self.start_instance(key, rec["latestReadyRevision"], replace=False)

    def replace_dead(self, rec: dict, dead: runner.Instance) -> runner.Instance:
        """A new instance for a service whose instance `dead` refused a connection (its process died
        and was not reaped yet); another caller may have replaced it already."""
        key = f"{rec['projectId']}/{rec['region']}/{rec['name']}"
        with self._lock:
            ours = self._instances.get(key) is dead   # not replaced by another caller yet
            if ours:
                del self._instances[key]
        if ours:
            runner.stop(dead)
        return self.instance(rec)

    def start_instance(self, key: str, revision: str, *, replace: bool, epoch: int | None = None) -> runner.Instance:
        """Start `revision` of the service at `key` (serialised per service); with `replace`, it takes
        over from a running instance, else a live one is kept. Work of an `epoch` a reset ended, or
        during shutdown, stops instead."""
        epoch = self.world.epoch if epoch is None else epoch
        with self._lock:
            lock = self._key_locks.setdefault(key, threading.Lock())
        with lock:
            current = self._instances.get(key)
            if not replace and current is not None and current.alive():
                return current
            rec = self.docs.get(KIND, key)
            if rec is None or self._cancelled(epoch):
                raise runner.StartFailed("The service no longer exists.")
            if replace and rec.get("latestCreatedRevision") != revision:
                raise runner.StartFailed("A newer revision was deployed meanwhile.")
            # A new revision runs the current template; a cold start, the last ready one's.
            template = rec["spec"]["template"] if replace else rec.get("readyTemplate") or rec["spec"]["template"]
            inst = self._launch(rec, revision, template, lambda: self._cancelled(epoch))
            with self._lock:
                cancelled = self._cancelled(epoch)   # checked under the lock reset and close take too
                old = None if cancelled else self._instances.get(key)
                if not cancelled:
                    self._instances[key] = inst
            if cancelled:
                runner.stop(inst)
                raise runner.StartFailed("The emulator was reset or is shutting down.")
            if old is not None:
                runner.stop(old)
            return inst

    def _launch(self, rec: dict, revision: str, template: dict, cancelled) -> runner.Instance:
        container = template["containers"][0]
        archive, command = self._artifact(container)
        account = template.get("serviceAccount") or default_account(rec["number"])
        meta = MetadataServer(self.world, {"email": account, "project_id": rec["projectId"],
                                           "project_number": rec["number"], "region": rec["region"]}).start()
        env = {str(e.get("name")): str(e.get("value", "")) for e in container.get("env") or [] if e.get("name")}
        env.update(K_SERVICE=rec["name"], K_REVISION=revision, K_CONFIGURATION=rec["name"],
                   GCE_METADATA_HOST=meta.host, GCE_METADATA_IP=meta.host)
        labels = {"project_id": rec["projectId"], "service_name": rec["name"], "revision_name": revision,
                  "location": rec["region"], "configuration_name": rec["name"]}
        project_id = rec["projectId"]

        def on_line(stream: str, line: str) -> None:
            self._log(project_id, stream, runner.log_entry(stream, line, labels))

        try:
            inst = runner.start(f"{rec['projectId']}/{rec['region']}/{rec['name']}", revision, archive,
                                command, env, on_line, cancelled=cancelled)
        except runner.StartFailed:
            meta.stop()
            raise
        inst.stop_hooks.append(meta.stop)
        return inst

    def _artifact(self, container: dict) -> tuple[Path, builtins.list[str]]:
        """(archive, command) of what the container runs: its source deploy (`sourceCode`), or the
        image a build pushed (its archive, started by the Procfile's web command unless the
        container sets `command`). Any other image: Cloud Run's "Image ... not found"."""
        source = (container.get("sourceCode") or {}).get("cloudStorageSource")
        own = [*(container.get("command") or []), *(container.get("args") or [])]
        if source:
            return self._archive(source), own
        image = str(container.get("image") or "")
        builds = getattr(self.world, "builds", None)
        built = builds.resolve(image) if builds is not None else None
        if built is None:
            raise runner.ImageNotFound(image)
        if not container.get("command"):
            own = [*runner.procfile_command(built["entrypoint"]), *(container.get("args") or [])]
        return self.world.blobs.path(built["blob"]), own

    def _archive(self, source: dict) -> Path:
        """The source object's file in the blob store (read in place, never copied into memory)."""
        storage = self.world.storage
        obj = storage.get_object(str(source.get("bucket") or ""), str(source.get("object") or ""))
        generation = source.get("generation")
        if obj is None or (generation and str(obj["generation"]) != str(generation)):
            raise runner.StartFailed(f"the source object gs://{source.get('bucket')}/{source.get('object')}"
                                     f"{'#' + str(generation) if generation else ''} does not exist")
        return self.world.blobs.path(obj["blob"])

    def log_request(self, rec: dict, revision: str, http_request: dict) -> None:
        """Cloud Run's request log line (`run.googleapis.com/requests`) for a request an instance answered."""
        status = int(http_request.get("status") or 0)
        labels = {"project_id": rec["projectId"], "service_name": rec["name"], "revision_name": revision,
                  "location": rec["region"], "configuration_name": rec["name"]}
        entry = {"resource": {"type": "cloud_run_revision", "labels": labels}, "httpRequest": http_request,
                 "severity": "ERROR" if status >= 500 else "WARNING" if status >= 400 else "INFO"}
        self._log(rec["projectId"], "requests", entry)

    def _log(self, project_id: str, stream: str, entry: dict) -> None:
        """Queue one output line for Cloud Logging. A writer thread stores them, so an instance's
        output readers never wait for the database (a reset holds it while it stops instances)."""
        if self._closed:
            return
        self._log_queue.put((project_id, stream, entry))
        if self._log_thread is None:
            with self._lock:
                if self._log_thread is None:
                    self._log_thread = threading.Thread(target=self._write_logs, name="run-logs", daemon=True)
                    self._log_thread.start()

    def _write_logs(self) -> None:
        logging_ = getattr(self.world, "logging", None)
        while True:
            item = self._log_queue.get()
            if item is None:
                return
            if logging_ is not None and not self._closed:
                try:
                    logging_.write(item[0], f"run.googleapis.com/{item[1]}", [item[2]])
                except Exception:  # noqa: BLE001 - a closed database at shutdown: drop the line
                    pass

    def _stop(self, key: str) -> None:
        with self._lock:
            inst = self._instances.pop(key, None)
        if inst is not None:
            runner.stop(inst)

    def running(self) -> dict[str, int]:
        """key -> pid of every running instance (for tests and the state dump)."""
        with self._lock:
            return {k: i.proc.pid for k, i in self._instances.items() if i.alive()}

    def stop_all(self) -> None:
        with self._lock:
            keys = list(self._instances)
        for key in keys:
            self._stop(key)

    def reset(self) -> None:
        self.stop_all()

    def close(self) -> None:
        """Emulator shutdown: stop every instance, after the deploys under way gave up theirs."""
        self._closed = True
        with self._lock:
            deploys = list(self._deploys)
        for thread in deploys:   # each sees `_closed` within a probe interval
            thread.join(timeout=runner.STOP_GRACE_S * 2)
        self.stop_all()
        self._log_queue.put(None)

    def dump(self) -> dict:
        return {"run_instances": self.running()}


Backend = CloudRun


def _email(principal: str | None) -> str:
    if not principal:
        return "emulator-owner@example.com"
    return principal.split(":", 1)[-1]
