"""Service Usage's backend: which services a project has enabled, the operations that change
that, and the per-project service agents (`service-N@gcp-sa-<x>.iam.gserviceaccount.com`).
No HTTP here.

Records in `world.docs`:
- ("service", "<number>/<service>"): {"state", "done_at", "usable_at"} once a service was ever
  enabled or disabled in the project. A project with no record for a service has it ENABLED
  when it is one of Google's default services and the project started with them (not one a
  service account created under a folder or organization: see ResourceManager.create),
  otherwise DISABLED (never touched);
- ("service_agent", "<number>/<service>"): {"email", "uniqueId", "createTime"};
- ("counter", "serviceusage.operation").

Timing: an enable writes its record when it starts, but the service reads ENABLED only once the
operation is done (`op:serviceusage.enable`), and calls to it keep failing with SERVICE_DISABLED
for `propagation:serviceusage.enable` seconds more, as on Google.

Shapes follow the recorded exchanges: enable/disable operations carry a `google.protobuf.Empty`
metadata, batchEnable a `v1.OperationMetadata`; a service never touched in the project is
answered without `parent`.
"""
from __future__ import annotations

import builtins
import functools
import hashlib
import uuid
from typing import Any

from provision.emulator import discovery
from provision.emulator.state_base import ApiBackend
from provision.emulator.common import agent_email, parse_agent_email, timestamp
from provision.emulator.errors import ApiError, error_info, failed_precondition, invalid_argument
from provision.emulator.operations import injected_failure

ATTACH_AS = "serviceusage"

# An Any holding google.protobuf.Empty is `{"@type": ".../google.protobuf.Empty"}`. The recorded
# exchanges show `"value": {}` beside it, which is how Go's protojson writes it (golang/protobuf
# #759, #1707) and not how the C++, Java and Python printers do (protocolbuffers/protobuf #5390,
# #17099); Google's front end is not Go, and the Python parser the REST clients use refuses the
# recorded form ("Message type google.protobuf.Empty has no field named value",
# protocolbuffers/protobuf #24445), so google-cloud-service-usage could not poll it.
EMPTY_METADATA = {"@type": "type.googleapis.com/google.protobuf.Empty"}
OPERATION_METADATA = "type.googleapis.com/google.api.serviceusage.v1.OperationMetadata"
ENABLE_RESPONSE = "type.googleapis.com/google.api.serviceusage.v1.EnableServiceResponse"
DISABLE_RESPONSE = "type.googleapis.com/google.api.serviceusage.v1.DisableServiceResponse"
BATCH_RESPONSE = "type.googleapis.com/google.api.serviceusage.v1.BatchEnableServicesResponse"
IDENTITY_RESPONSE = "type.googleapis.com/google.api.serviceusage.v1beta1.ServiceIdentity"
NOOP_OPERATION = "operations/noop.DONE_OPERATION"
LOCALIZED_MESSAGE = "type.googleapis.com/google.rpc.LocalizedMessage"
HELP = "type.googleapis.com/google.rpc.Help"
PRECONDITION_FAILURE = "type.googleapis.com/google.rpc.PreconditionFailure"
MAX_BATCH = 20

# Enabled in a new project: the list Google documents for projects created with the console or
# gcloud (cloud.google.com/service-usage/docs/enabled-service#default, 2025). A project a service
# account creates under a folder or organization starts with none of them: the recorded
# exchanges enable cloudapis.googleapis.com on such a project with a real operation.
DEFAULT_SERVICES = (
    "analyticshub.googleapis.com", "bigquery.googleapis.com", "bigqueryconnection.googleapis.com",
    "bigquerydatapolicy.googleapis.com", "bigquerymigration.googleapis.com",
    "bigqueryreservation.googleapis.com", "bigquerystorage.googleapis.com", "cloudapis.googleapis.com",
    "cloudtrace.googleapis.com", "dataform.googleapis.com", "dataplex.googleapis.com",
    "datastore.googleapis.com", "logging.googleapis.com", "monitoring.googleapis.com",
    "servicemanagement.googleapis.com", "serviceusage.googleapis.com", "sql-component.googleapis.com",
    "storage-api.googleapis.com", "storage-component.googleapis.com", "storage.googleapis.com",
)

# The services this emulator knows: name -> (title, needs a billing account to be enabled).
# Anything else is "Not found or permission denied", as for a misspelt service on Google.
CATALOGUE: dict[str, tuple[str, bool]] = {
    "analyticshub.googleapis.com": ("Analytics Hub API", False),
    "bigquery.googleapis.com": ("BigQuery API", False),
    "bigqueryconnection.googleapis.com": ("BigQuery Connection API", False),
    "bigquerydatapolicy.googleapis.com": ("BigQuery Data Policy API", False),
    "bigquerymigration.googleapis.com": ("BigQuery Migration API", False),
    "bigqueryreservation.googleapis.com": ("BigQuery Reservation API", False),
    "bigquerystorage.googleapis.com": ("BigQuery Storage API", False),
    "cloudapis.googleapis.com": ("Google Cloud APIs", False),
    "cloudtrace.googleapis.com": ("Cloud Trace API", False),
    "dataform.googleapis.com": ("Dataform API", False),
    "dataplex.googleapis.com": ("Cloud Dataplex API", False),
    "datastore.googleapis.com": ("Cloud Datastore API", False),
    "logging.googleapis.com": ("Cloud Logging API", False),
    "monitoring.googleapis.com": ("Cloud Monitoring API", False),
    "servicemanagement.googleapis.com": ("Service Management API", False),
    "serviceusage.googleapis.com": ("Service Usage API", False),
    "sql-component.googleapis.com": ("Cloud SQL", False),
    "storage-api.googleapis.com": ("Google Cloud Storage JSON API", False),
    "storage-component.googleapis.com": ("Cloud Storage", False),
    "storage.googleapis.com": ("Cloud Storage API", False),
    # not enabled by default
    "healthcare.googleapis.com": ("Cloud Healthcare API", True),
    "cloudresourcemanager.googleapis.com": ("Cloud Resource Manager API", False),
    "cloudbilling.googleapis.com": ("Cloud Billing API", False),
    "iam.googleapis.com": ("Identity and Access Management (IAM) API", False),
    "iamcredentials.googleapis.com": ("IAM Service Account Credentials API", False),
    "runtimeconfig.googleapis.com": ("Cloud Runtime Configuration API", False),
    "pubsub.googleapis.com": ("Cloud Pub/Sub API", False),
    "apikeys.googleapis.com": ("API Keys API", False),
    "oslogin.googleapis.com": ("Cloud OS Login API", False),
    "servicenetworking.googleapis.com": ("Service Networking API", False),
    "compute.googleapis.com": ("Compute Engine API", True),
    "container.googleapis.com": ("Kubernetes Engine API", True),
    "run.googleapis.com": ("Cloud Run Admin API", True),
    "iap.googleapis.com": ("Cloud Identity-Aware Proxy API", False),
    "cloudfunctions.googleapis.com": ("Cloud Functions API", True),
    "cloudbuild.googleapis.com": ("Cloud Build API", True),
    "artifactregistry.googleapis.com": ("Artifact Registry API", True),
    "containerregistry.googleapis.com": ("Container Registry API", True),
    "secretmanager.googleapis.com": ("Secret Manager API", True),
    "cloudkms.googleapis.com": ("Cloud Key Management Service (KMS) API", True),
    "dns.googleapis.com": ("Cloud DNS API", True),
    "sqladmin.googleapis.com": ("Cloud SQL Admin API", True),
    "aiplatform.googleapis.com": ("Vertex AI API", True),
    "dataflow.googleapis.com": ("Dataflow API", True),
    "dataproc.googleapis.com": ("Cloud Dataproc API", True),
    "spanner.googleapis.com": ("Cloud Spanner API", True),
    "bigtableadmin.googleapis.com": ("Cloud Bigtable Admin API", True),
    "redis.googleapis.com": ("Google Cloud Memorystore for Redis API", True),
    "file.googleapis.com": ("Cloud Filestore API", True),
    "composer.googleapis.com": ("Cloud Composer API", True),
    "vpcaccess.googleapis.com": ("Serverless VPC Access API", True),
    "notebooks.googleapis.com": ("Notebooks API", True),
    "workflows.googleapis.com": ("Workflows API", True),
    "eventarc.googleapis.com": ("Eventarc API", True),
    "documentai.googleapis.com": ("Cloud Document AI API", True),
    "vision.googleapis.com": ("Cloud Vision API", True),
    "dlp.googleapis.com": ("Sensitive Data Protection (DLP)", True),
    "appengine.googleapis.com": ("App Engine Admin API", False),
    "cloudscheduler.googleapis.com": ("Cloud Scheduler API", False),
    "cloudtasks.googleapis.com": ("Cloud Tasks API", False),
    "firestore.googleapis.com": ("Cloud Firestore API", False),
    "firebase.googleapis.com": ("Firebase Management API", False),
    "cloudasset.googleapis.com": ("Cloud Asset API", False),
    "orgpolicy.googleapis.com": ("Organization Policy API", False),
    "accesscontextmanager.googleapis.com": ("Access Context Manager API", False),
    "recommender.googleapis.com": ("Recommender API", False),
    "containeranalysis.googleapis.com": ("Container Analysis API", False),
    "sourcerepo.googleapis.com": ("Cloud Source Repositories API", False),
    "clouderrorreporting.googleapis.com": ("Error Reporting API", False),
    "cloudprofiler.googleapis.com": ("Cloud Profiler API", False),
    "language.googleapis.com": ("Cloud Natural Language API", False),
    "translate.googleapis.com": ("Cloud Translation API", False),
}

@functools.cache
def _summary(service: str) -> str | None:
    """A service's one-line summary: the `description` of its bundled discovery document (the
    document whose rootUrl is the service's host), which is what Google's service configuration
    carries as `documentation.summary` (e.g. logging: "Writes log entries and manages your Cloud
    Logging configuration." in both)."""
    prefix = service.split(".", 1)[0]
    for version in ("v1", "v2", "v3", "v1beta1", "v1beta2", "v2beta1"):
        try:
            doc = discovery.document(f"{prefix}.{version}")
        except FileNotFoundError:
            continue
        if doc.get("rootUrl", "").rstrip("/") == f"https://{service}":
            return " ".join(str(doc.get("description", "")).split()) or None
    return None


def service_config(service: str) -> dict:
    """The service's `config` (GoogleApiServiceusageV1ServiceConfig) as Google answers it in
    services.get/list: name, title, documentation.summary, empty authentication/quota/monitoring,
    and usage.requirements, where billable services add the billing-enabled requirement. The
    shape is that of `gcloud services list --format=json` output of the real API quoted in public
    repositories (monitoredResources and monitoring destinations left out here)."""
    title, billable = CATALOGUE.get(service, (service, False))
    summary = _summary(service)
    requirements = ["serviceusage.googleapis.com/tos/cloud"]
    if billable:
        requirements.append("serviceusage.googleapis.com/billing-enabled")
    return {"name": service, "title": title, "documentation": {"summary": summary} if summary else {},
            "quota": {}, "authentication": {}, "usage": {"requirements": requirements}, "monitoring": {}}


class ServiceUsage(ApiBackend):
    """Cross-API interface: `require_enabled`, `is_enabled`, `agent_exists`, `ensure_agent`,
    `parse_agent_email`."""

    # ----- the interface other APIs call -------------------------------------------------
    def require_enabled(self, project_record: dict, service: str) -> None:
        """Raise Google's 403 SERVICE_DISABLED unless calls to `service` in the project (a
        `world.crm.lookup` record) would be accepted now: enabled and propagated."""
        number = str(project_record["number"])
        if not self.is_enabled(number, service):
            raise service_disabled(number, service)

    def is_enabled(self, project_number: str, service: str) -> bool:
        """True when calls to `service` would succeed now (enabled, operation done, propagated)."""
        return self._status(str(project_number), service)["usable"]

    def agent_exists(self, project_number: str, service: str) -> bool:
        return self.docs.get("service_agent", f"{project_number}/{service}") is not None

    def ensure_agent(self, project_number: str, service: str) -> str:
        """Create the project's service agent for `service` if it does not exist; its email."""
        key = f"{project_number}/{service}"
        with self.world.db.transaction():
            agent = self.docs.get("service_agent", key)
            if agent is None:
                agent = {"email": agent_email(str(project_number), service),
                         "uniqueId": self._unique_id(key), "createTime": timestamp(self.world.clock())}
                self.docs.put("service_agent", key, agent)
        return agent["email"]

    @staticmethod
    def parse_agent_email(email: str) -> tuple[str, str] | None:
        """`service-N@gcp-sa-x.iam.gserviceaccount.com` -> (N, "x.googleapis.com"); None otherwise."""
        return parse_agent_email(email)

    # ----- reads -------------------------------------------------------------------------
    def service(self, number: str, service: str) -> dict:
        """The GoogleApiServiceusageV1Service wire view, as services.get/list/batchGet answer it
        (with `config`; the views inside enable/disable operations have none, as recorded)."""
        status = self._status(number, service)
        out: dict[str, Any] = {"name": f"projects/{number}/services/{service}"}
        if status["touched"]:
            out["parent"] = f"projects/{number}"
        out["config"] = service_config(service)
        out["state"] = status["state"]
        return out

    def list(self, number: str, state: str | None = None) -> list[dict]:
        """Every catalogued service in the project (optionally only ENABLED or DISABLED), by name."""
        out = []
        for name in sorted(CATALOGUE):
            view = self.service(number, name)
            if state is None or view["state"] == state:
                out.append(view)
        return out

    def known(self, service: str) -> bool:
        return service in CATALOGUE

    # ----- changes -----------------------------------------------------------------------
    def enable(self, project: dict, service: str) -> dict:
        """Enable one service; the operation's wire view (noop.DONE_OPERATION when already on)."""
        number = project["number"]
        self.require_known([service])
        with self.world.db.transaction():
            status = self._status(number, service)
            self._require_idle(number, [service])
            if status["state"] == "ENABLED":
                return {"name": NOOP_OPERATION, "done": True,
                        "response": {"@type": ENABLE_RESPONSE, "service": self.service(number, service)}}
            self._require_billing(project, [service])
            name = self._operation_name(number)
            seconds = self.world.latency.seconds("op:serviceusage.enable")
            if self.world.faults.draw_operation():
                return self._start(number, name, EMPTY_METADATA, seconds=seconds, error=injected_failure())
            self._write(number, service, "ENABLED", seconds)
            view = {"name": f"projects/{number}/services/{service}", "parent": f"projects/{number}", "state": "ENABLED"}
            return self._start(number, name, EMPTY_METADATA, seconds=seconds,
                                               response={"@type": ENABLE_RESPONSE, "service": view})

    def batch_enable(self, project: dict, services: builtins.list[str]) -> dict:
        """Enable up to 20 services atomically: all of them or none."""
        number = project["number"]
        if not services:
            raise invalid_argument("Request contains an invalid argument.",
                                   [("service_ids", "at least one service must be given")])
        if len(services) > MAX_BATCH:
            raise invalid_argument(f"Request contains an invalid argument. At most {MAX_BATCH} services can be "
                                   "enabled in one request.",
                                   [("service_ids", f"more than {MAX_BATCH} services")])
        services = list(dict.fromkeys(services))
        self.require_known(services)
        with self.world.db.transaction():
            self._require_idle(number, services)
            todo = [s for s in services if self._status(number, s)["state"] != "ENABLED"]
            views = [{"name": f"projects/{number}/services/{s}", "parent": f"projects/{number}", "state": "ENABLED"}
                     for s in services]
            response = {"@type": BATCH_RESPONSE, "services": views}
            if not todo:
                return {"name": NOOP_OPERATION, "done": True, "response": response}
            self._require_billing(project, todo)
            name = self._operation_name(number)
            seconds = self.world.latency.seconds("op:serviceusage.enable")
            metadata = {"@type": OPERATION_METADATA}
            if self.world.faults.draw_operation():
                return self._start(number, name, metadata, seconds=seconds, error=injected_failure())
            for s in todo:
                self._write(number, s, "ENABLED", seconds)
            return self._start(number, name, metadata, seconds=seconds, response=response)

    def disable(self, project: dict, service: str) -> dict:
        """Disable one service: it stops answering at once; the operation reports it."""
        number = project["number"]
        self.require_known([service])
        with self.world.db.transaction():
            self._require_idle(number, [service])
            view = {"name": f"projects/{number}/services/{service}", "parent": f"projects/{number}", "state": "DISABLED"}
            if self._status(number, service)["state"] == "DISABLED":
                return {"name": NOOP_OPERATION, "done": True, "response": {"@type": DISABLE_RESPONSE, "service": view}}
            name = self._operation_name(number)
            seconds = self.world.latency.seconds("op:serviceusage.enable")
            if self.world.faults.draw_operation():
                return self._start(number, name, EMPTY_METADATA, seconds=seconds, error=injected_failure())
            self._write(number, service, "DISABLED", 0.0)
            return self._start(number, name, EMPTY_METADATA, seconds=seconds,
                                               response={"@type": DISABLE_RESPONSE, "service": view})

    def generate_service_identity(self, project: dict, service: str) -> dict:
        """v1beta1 generateServiceIdentity: create the service agent (the service must be enabled)."""
        number = project["number"]
        self.require_known([service])
        if self._status(number, service)["state"] != "ENABLED":
            raise failed_precondition(f"Service {service} is not enabled for project {number}.")
        name = self._operation_name(number)
        seconds = self.world.latency.seconds("op:serviceusage.generateServiceIdentity")
        if self.world.faults.draw_operation():
            return self._start(number, name, EMPTY_METADATA, seconds=seconds, error=injected_failure())
        email = self.ensure_agent(number, service)
        agent = self.docs.get("service_agent", f"{number}/{service}")
        assert agent is not None   # ensure_agent has just made it, or found it
        return self._start(number, name, EMPTY_METADATA, seconds=seconds, response={
            "@type": IDENTITY_RESPONSE, "email": email, "uniqueId": agent["uniqueId"]})

    # ----- internals ---------------------------------------------------------------------
    def _status(self, number: str, service: str) -> dict:
        record = self.docs.get("service", f"{number}/{service}")
        now = self.world.clock()
        if record is None:
            default = service in DEFAULT_SERVICES and self._has_defaults(number)
            return {"state": "ENABLED" if default else "DISABLED", "touched": default, "pending": False,
                    "usable": default}
        pending = now < record["done_at"]
        if record["state"] == "ENABLED":
            enabled = not pending
            return {"state": "ENABLED" if enabled else "DISABLED", "touched": True, "pending": pending,
                    "usable": enabled and now >= record["usable_at"]}
        return {"state": "DISABLED", "touched": True, "pending": pending, "usable": False}

    def _has_defaults(self, number: str) -> bool:
        """Whether the project started with Google's default services (see ResourceManager.create)."""
        crm = getattr(self.world, "crm", None)
        record = crm.lookup(str(number)) if crm is not None else None
        return record is None or record.get("defaultServices", True)

    def _write(self, number: str, service: str, state: str, seconds: float) -> None:
        now = self.world.clock()
        propagation = self.world.latency.seconds("propagation:serviceusage.enable") if state == "ENABLED" else 0.0
        self.docs.put("service", f"{number}/{service}",
                      {"state": state, "done_at": now + seconds, "usable_at": now + seconds + propagation})

    def require_known(self, services: builtins.list[str]) -> None:
        """403 "Not found or permission denied" for services outside the catalogue."""
        unknown = [s for s in services if s not in CATALOGUE]
        if unknown:
            names = ",".join(unknown)
            raise ApiError("PERMISSION_DENIED", f"Not found or permission denied for service(s): {names}.", [
                error_info("SERVICE_CONFIG_NOT_FOUND_OR_PERMISSION_DENIED", "serviceusage.googleapis.com",
                           {"services": names})])

    def _require_idle(self, number: str, services: builtins.list[str]) -> None:
        busy = [s for s in services if self._status(number, s)["pending"]]
        if busy:
            raise failed_precondition("Another activation or deactivation is in progress for the following "
                                      f"service(s): {','.join(busy)}")

    def _require_billing(self, project: dict, services: builtins.list[str]) -> None:
        billable = [s for s in services if CATALOGUE[s][1]]
        if not billable:
            return
        billing = getattr(self.world, "billing", None)
        if billing is not None and billing.linked_account(project["projectId"]):
            return
        raise billing_not_found(project["number"], billable)

    def _start(self, number: str, name: str, metadata: dict, **kwargs) -> dict:
        """Start one of this project's operations (its project kept for the IAM check on GET)."""
        return self.world.operations.start(name, metadata, project=number, **kwargs)

    def _operation_name(self, number: str) -> str:
        n = self.docs.next_counter("serviceusage.operation")
        digest = hashlib.sha256(f"serviceusage:{number}:{n}".encode()).digest()[:16]
        return f"operations/acf.p2-{number}-{uuid.UUID(bytes=digest, version=4)}"

    @staticmethod
    def _unique_id(key: str) -> str:
        return str(100000000000000000000 + int(hashlib.sha256(key.encode()).hexdigest(), 16) % 10 ** 20)


Backend = ServiceUsage


def service_disabled(number: str, service: str) -> ApiError:
    """403 PERMISSION_DENIED / SERVICE_DISABLED, as any Google API answers a project that has
    not enabled it (or whose enablement has not propagated yet)."""
    title = CATALOGUE.get(service, (service, False))[0]
    url = f"https://console.developers.google.com/apis/api/{service}/overview?project={number}"
    message = (f"{title} has not been used in project {number} before or it is disabled. Enable it by visiting "
               f"{url} then retry. If you enabled this API recently, wait a few minutes for the action to "
               "propagate to our systems and retry.")
    return ApiError("PERMISSION_DENIED", message, [
        error_info("SERVICE_DISABLED", "googleapis.com", {
            "consumer": f"projects/{number}", "service": service, "activationUrl": url,
            "serviceTitle": title, "containerInfo": str(number)}),
        {"@type": LOCALIZED_MESSAGE, "locale": "en-US", "message": message},
        {"@type": HELP, "links": [{"description": "Google developers console API activation", "url": url}]},
    ])


def billing_not_found(number: str, services: list[str]) -> ApiError:
    """400 FAILED_PRECONDITION: enabling a paid service in a project with no billing account."""
    joined = ",".join(services)
    subject = f"?error_code=390001&project={number}" + "".join(f"&services={s}" for s in services)
    return failed_precondition(
        f"Billing account for project '{number}' is not found. Billing must be enabled for activation of "
        f"service(s) '{joined}' to proceed.",
        [{"@type": PRECONDITION_FAILURE, "violations": [{"type": "googleapis.com/billing-enabled", "subject": subject}]},
         error_info("UREQ_PROJECT_BILLING_NOT_FOUND", "serviceusage.googleapis.com/billing-enabled",
                    {"project": str(number), "services": joined})])
