"""The blueprint's models (pydantic) and the rules that span several values.

Loading a file with positioned errors, and the JSON Schema, are in `provision.blueprint.load`.

A blueprint is validated in three layers, and every problem from all of them is
reported together, each as `FILE:LINE:COL: what is wrong; what would be valid`:

1. `provision.blueprint.yamlpos` reads the file defensively (size, encoding, anchors, duplicate
   keys, `${ENV}` references) and remembers where every key and value is written.
2. The pydantic models check structure and types, and each value against Google's
   rules (`provision.blueprint.naming`; per value, so one bad value never hides another).
3. `provision.blueprint.rules` looks at rules that span several values (duplicates, a required
   API, basic roles versus `allow_basic_roles`). It works on the raw data, so it runs
   even when layer 2 found problems elsewhere.

Models built directly in Python get layers 2 and 3 too (layer 3 through a model
validator), so no code path can hold a blueprint that `provision validate` would refuse.

`Blueprint.source` is the file a blueprint was loaded from. It is a private attribute
behind a read-only property: not a YAML key, not in the JSON Schema, not in
`model_dump()`, and kept by `model_copy()`.
"""
from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Mapping, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

# Google's naming rules live in provision.blueprint.naming; _Invalid is what every rule raises and
# _rule (below) turns into a positioned blueprint error.
from provision.blueprint.naming import (
    HEALTHCARE_LOCATION_RE,
    HEALTHCARE_MULTI_REGIONS,
    PROJECT_ID_RE,
    _Invalid,
    check_api,
    check_billing_account,
    check_bucket_location,
    check_bucket_name,
    check_dicomweb_url,
    check_display_name,
    check_healthcare_location,
    check_idc_version,
    check_import_uri,
    check_label_key,
    check_label_value,
    check_labels,
    check_member,
    check_oauth_client_id,
    check_origin,
    check_parent,
    check_project_id,
    check_resource_id,
    check_role,
    check_source_name,
    check_store_path,
    check_time_zone,
    closest,
)
from provision.blueprint.hosting import (
    ACCESS_MODES,
    DEFAULT_SERVICE,
    PLATFORMS,
    RUN_REGION_RE,
    SERVICE_RE,
    check_run_region,
    check_service_name,
)
# Layer 3, the rules that span several values, sits below the models in its own module.
from provision.blueprint.rules import DEFAULT_APIS, PUBLIC_DATASETS, _cross_checks, _dotted

__all__ = [
    "AuditLogs",
    "Blueprint",
    "Bucket",
    "Dataset",
    "DicomStore",
    "Hosting",
    "IamGrant",
    "Import",
    "Project",
    "Smoke",
    "Upload",
    "Viewer",
    "ViewerSource",
    ]


def _rule(check: Callable[[Any], Any]) -> AfterValidator:
    """Wrap a `provision.blueprint.naming` rule as a pydantic validator whose error is the rule's message."""

    def run(value: Any) -> Any:
        try:
            return check(value)
        except _Invalid as exc:
            # The message travels in the context so that braces in it are never templated.
            raise PydanticCustomError("blueprint", "{detail}", {"detail": str(exc)}) from None

    return AfterValidator(run)


# --------------------------------------------------------------------------- models

ProjectId = Annotated[str, _rule(check_project_id)]
LabelKey = Annotated[str, _rule(check_label_key)]
LabelValue = Annotated[str, _rule(check_label_value)]
ApiName = Annotated[str, _rule(check_api)]
Member = Annotated[str, _rule(check_member)]
Role = Annotated[str, _rule(check_role)]
BucketName = Annotated[str, _rule(check_bucket_name)]


def _absolute(value: Path, info: ValidationInfo) -> Path:
    """Resolve against the blueprint's directory (loading) or the working directory."""
    base = (info.context or {}).get("base_dir") or Path.cwd()
    path = value.expanduser()
    if not path.is_absolute():
        path = Path(base) / path
    # normpath, not resolve(): '..' is folded but symlinks stay as the user wrote them.
    return Path(os.path.normpath(path))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_by_name=True, validate_by_alias=True)


class Project(_Model):
    """The Google Cloud project: created if missing, adopted if it exists."""

    id: ProjectId = Field(
        description="Project ID: 6-30 characters, [a-z][a-z0-9-]*[a-z0-9].", examples=["ohif-team-a"],
        json_schema_extra={"pattern": PROJECT_ID_RE.pattern},
    )
    display_name: Annotated[str, _rule(check_display_name)] | None = Field(
        None, description="4-30 characters; a new project gets the project ID when absent (an existing project's name is then left as it is).",
        examples=["OHIF Team A"]
    )
    parent: Annotated[str, _rule(check_parent)] | None = Field(
        None, description="folders/N or organizations/N (needed when a service account creates the project).",
        json_schema_extra={"pattern": r"^(folders|organizations)/[0-9]+$"},
    )
    billing_account: Annotated[str, _rule(check_billing_account)] | None = Field(
        None, description="XXXXXX-XXXXXX-XXXXXX (uppercase hex); a billingAccounts/ prefix is accepted.",
        json_schema_extra={"pattern": r"^(billingAccounts/)?[0-9A-F]{6}-[0-9A-F]{6}-[0-9A-F]{6}$"},
    )
    labels: Annotated[dict[LabelKey, LabelValue], _rule(check_labels)] = Field(
        default_factory=dict, description="Up to 64 labels; lowercase keys and values."
    )


class IamGrant(_Model):
    """Roles added for one principal. Additive: bindings the blueprint does not name are never removed."""

    member: Member = Field(
        description="user:EMAIL, group:EMAIL, serviceAccount:EMAIL or domain:DOMAIN.", examples=["group:radiology@example.com"]
    )
    roles: Annotated[list[Role], Field(min_length=1)] = Field(
        description="roles/NAME, projects/P/roles/NAME or organizations/N/roles/NAME.",
        examples=[["roles/healthcare.dicomViewer"]],
    )


class Upload(_Model):
    """Local files uploaded to the bucket before the import."""

    from_: Path = Field(alias="from", description="A local directory; relative to the blueprint file.", examples=["./data"])
    prefix: str = Field("", description="Object name prefix in the bucket, e.g. dicom/.")

    @field_validator("from_", mode="after")
    @classmethod
    def _existing_directory(cls, value: Path, info: ValidationInfo) -> Path:
        path = _absolute(value, info)
        if not path.is_dir():
            what = "is not a directory" if path.exists() else "does not exist"
            raise PydanticCustomError(
                "blueprint",
                "{detail}",
                {"detail": f"'{value}' ({path}) {what}; upload.from must be an existing directory of files to upload "
                           "(relative paths are relative to the blueprint file)"},
            )
        return path


class Bucket(_Model):
    """A Cloud Storage bucket holding the DICOM files to import."""

    name: BucketName = Field(description="Cloud Storage bucket name.", examples=["ohif-team-a-dicom"])
    location: Annotated[str, _rule(check_bucket_location)] = Field("US", description="US, EU, ASIA or a region.")
    create: bool = Field(True, description="false: the bucket exists and is only read.")
    upload: Upload | None = None
    uniform_access: bool | None = Field(
        None, description="Uniform bucket-level access (access through IAM only, no object ACLs). Unset: on for "
        "a bucket provision creates; an existing bucket it did not create is reported, not changed. true: turn "
        "it on for an existing bucket too. false: an opt-out the plan flags.")
    public_access_prevention: Literal["enforced", "inherited"] | None = Field(
        None, description="Public access prevention: enforced refuses grants to allUsers and "
        "allAuthenticatedUsers. Unset: enforced on a bucket provision creates; an existing bucket it did not "
        "create is reported, not changed. inherited: an opt-out the plan flags (the organization's policy "
        "decides).")


class AuditLogs(_Model):
    """Cloud Audit Logs the project writes for the services that hold patient data."""

    data_access: bool = Field(
        True, description="Data Access audit logs (DATA_READ, DATA_WRITE, ADMIN_READ) for "
        "healthcare.googleapis.com and storage.googleapis.com, in the project's IAM policy (auditConfigs): who "
        "read or changed which study. They add log volume (Cloud Logging ingestion is billed past the free "
        "allotment). false: an opt-out the plan flags; configs provision did not add are never removed.")


KMS_KEY_RE = re.compile(r"^projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/locations/[a-z0-9-]+/keyRings/[A-Za-z0-9_-]{1,63}"
                        r"/cryptoKeys/[A-Za-z0-9_-]{1,63}$")


def _check_kms_key(value: str) -> str:
    if not KMS_KEY_RE.match(value):
        raise _Invalid(f"'{value}' is not a Cloud KMS key name; write projects/PROJECT/locations/LOCATION/keyRings/"
                       "RING/cryptoKeys/KEY (the key's location must be the dataset's)")
    return value


class Dataset(_Model):
    """The Cloud Healthcare dataset."""

    id: Annotated[str, _rule(functools.partial(check_resource_id, what="dataset ID"))] = Field(
        description="1-256 letters, digits, '_', '-', '.'.", examples=["imaging"]
    )
    location: Annotated[str, _rule(check_healthcare_location)] = Field(
        description="A Cloud Healthcare location: a region (e.g. us-central1) or a multi-region (us, eu). "
        "Plan checks it against the locations the target offers (projects.locations.list).",
        examples=["us-central1", "europe-west4", "us"],
        json_schema_extra={"pattern": "^(" + "|".join(HEALTHCARE_MULTI_REGIONS) + "|"
                           + HEALTHCARE_LOCATION_RE.pattern.strip("^$") + ")$"},
    )
    time_zone: Annotated[str, _rule(check_time_zone)] = Field("UTC", description="IANA time zone name.")
    kms_key: Annotated[str, _rule(_check_kms_key)] | None = Field(
        None, description="Optional CMEK: a Cloud KMS key in the dataset's location. Plan checks it exists and is "
        "readable; the Healthcare service agent is granted roles/cloudkms.cryptoKeyEncrypterDecrypter on it before "
        "the dataset is created. Set at creation only: adding, changing or removing it replaces the dataset.",
        examples=["projects/team-a-keys/locations/us-central1/keyRings/imaging/cryptoKeys/dicom"],
        json_schema_extra={"pattern": KMS_KEY_RE.pattern})


class Import(_Model):
    """DICOM files imported from Cloud Storage into a store."""

    uri: Annotated[str, _rule(check_import_uri)] = Field(
        description="gs://BUCKET/PATTERN; '**' only once, in the last segment.", examples=["gs://ohif-team-a-dicom/dicom/**.dcm"]
    )
    max_failures: int = Field(
        0, ge=0, description="Files that may fail to import (not DICOM, or clashing with stored instances) "
        "without failing apply; they are named in a note. 0 (the default): any failure fails apply.",
        examples=[0],
    )

    @field_validator("max_failures", mode="before")
    @classmethod
    def _not_a_boolean(cls, value: Any) -> Any:
        # YAML `true` is no count (pydantic would read it as 1); "3" from ${VAR} still is one.
        if isinstance(value, bool):
            raise PydanticCustomError("int_type", "Input should be a valid integer")
        return value


class DicomStore(_Model):
    """A DICOM store in the dataset, served to the viewer over DICOMweb."""

    id: Annotated[str, _rule(functools.partial(check_resource_id, what="DICOM store ID", example="primary"))] = Field(
        description="1-256 letters, digits, '_', '-', '.'.", examples=["primary"]
    )
    iam: list[IamGrant] = Field(default_factory=list, description="Grants on this store only (least privilege).")
    import_: Import | None = Field(None, alias="import")



def _check_public(value: str) -> str:
    if value in PUBLIC_DATASETS:
        return value
    near = closest(value, PUBLIC_DATASETS)
    hint = f"; did you mean '{near}'?" if near else ";"
    raise _Invalid(f"'{value}' is not a public dataset provision knows{hint} known: {', '.join(PUBLIC_DATASETS)} "
                   "(for NCI Imaging Data Commons stores write idc: latest)")


def _check_text(limit: int) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not value.strip() or len(value) > limit or not value.isprintable():
            raise _Invalid(f"'{value}' must be 1-{limit} printable characters on one line")
        return value
    return check


class ViewerSource(_Model):
    """A read-only data source the viewer shows beside the blueprint's own stores: a DICOM store of
    another project (another team's, shared with you), a plain DICOMweb root, or a public dataset.
    Exactly one of store, dicomweb, idc, public. provision never writes to a source: plan checks
    your access (testIamPermissions) and says how to get what is missing."""

    name: Annotated[str, _rule(check_source_name)] = Field(
        description="The OHIF data source name (the viewer opens it with ?datasources=NAME); unique, and not "
        "the ID of one of the blueprint's stores.", examples=["idc"])
    label: Annotated[str, _rule(_check_text(100))] | None = Field(
        None, description="The name the viewer shows; default: whose data it is, and that it is read-only.",
        examples=["Team B imaging (read-only)"])
    store: Annotated[str, _rule(check_store_path)] | None = Field(
        None, description="A Cloud Healthcare DICOM store in any project.",
        examples=["projects/team-b-imaging/locations/us-central1/datasets/imaging/dicomStores/primary"],
        json_schema_extra={"pattern": r"^projects/[^/]+/locations/[^/]+/datasets/[^/]+/dicomStores/[^/]+$"})
    dicomweb: Annotated[str, _rule(check_dicomweb_url)] | None = Field(
        None, description="A plain DICOMweb root (https), used as written on Google Cloud and on an emulator; no "
        "credential is sent to it.", examples=["https://dicomweb.example.org/dicomWeb"])
    idc: Annotated[Union[str, int], _rule(check_idc_version)] | None = Field(
        None, description="An NCI Imaging Data Commons release on Cloud Healthcare (projects/nci-idc-data/.../"
        "idc-store-vN): latest (plan lists IDC's stores and says which it chose) or vN.",
        examples=["latest", "v23"])
    public: Annotated[str, _rule(_check_public)] | None = Field(
        None, description="A well-known public dataset: nih-chest-xray (the NIH Chest X-ray DICOM store, access on "
        "request) or idc-proxy (IDC's public DICOMweb proxy, no sign-in, daily quota).",
        json_schema_extra={"enum": list(PUBLIC_DATASETS)})
    contact: Annotated[str, _rule(_check_text(200))] | None = Field(
        None, description="With store: who grants access to it (a team's email or page); named in plan's note "
        "when you lack access.", examples=["imaging-admins@team-b.example.com"])

    @field_validator("idc", mode="before")
    @classmethod
    def _release_not_boolean(cls, value: Any) -> Any:
        if isinstance(value, bool):   # YAML `idc: yes` is no release (pydantic would read it as 1)
            raise PydanticCustomError("blueprint", "{detail}", {"detail": f"'{str(value).lower()}' is not an IDC "
                                      "release; write latest, or a release such as v23"})
        return value


class Scaling(_Model):
    """How many instances of the hosted viewer Cloud Run may run."""

    min_instances: int = Field(0, ge=0, le=100, description="Kept warm (billed while idle); 0: none, the first "
                               "request after a quiet spell waits for a start.")
    max_instances: int = Field(3, ge=1, le=100, description="At most this many at once.")


class Hosting(_Model):
    """The viewer deployed by provision on Google Cloud: Cloud Run behind IAP, or (access google-sign-in) the
    public static viewer at the service's URL, each user signing in with Google in it."""

    on: Literal[PLATFORMS] = Field("cloud-run", description="Where it runs; cloud-run is the only platform.")  # type: ignore[valid-type]  # one tuple for this and the rules; mypy wants literals
    region: Annotated[str, _rule(check_run_region)] | None = Field(
        None, description="A Cloud Run region; default: the dataset's location when it is a region.",
        examples=["us-central1"], json_schema_extra={"pattern": RUN_REGION_RE.pattern})
    service: Annotated[str, _rule(check_service_name)] = Field(
        DEFAULT_SERVICE, description="The Cloud Run service name (1-49 lowercase letters, digits, hyphens).",
        json_schema_extra={"pattern": SERVICE_RE.pattern})
    access: Literal[ACCESS_MODES] = Field(  # type: ignore[valid-type]  # (as above)
        "iap", description="iap: Identity-Aware Proxy in front, the viewer reads the stores with its own service "
        "account (no console step); google-sign-in: the static viewer, public, each user signs in with Google "
        "and reads the stores with their own Healthcare roles (needs viewer.oauth_client_id; no members).")
    members: list[Member] = Field(default_factory=list, description="With iap: who may open the viewer.",
                                  examples=[["group:radiology@example.com"]])
    scaling: Scaling = Field(default_factory=Scaling)


class Viewer(_Model):
    """Where the OHIF viewer is served and where its configuration is written."""

    origin: Annotated[str, _rule(check_origin)] = Field("http://localhost:3000", description="http(s)://host[:port]")
    oauth_client_id: Annotated[str, _rule(check_oauth_client_id)] | None = Field(
        None, description="NUMBER-ID.apps.googleusercontent.com (OAuth web client).",
        json_schema_extra={"pattern": r"^[0-9]+-[a-z0-9]+\.apps\.googleusercontent\.com$"},
    )
    config_out: Path = Field(
        Path("out/google.js"),
        validate_default=True,
        description="Where to write the OHIF config; relative to the blueprint file. Default in a blueprint: "
        "out/<project.id>.js, so blueprints sharing a directory never overwrite each other's config.",
    )
    hosting: Hosting | None = Field(None, description="Deploy the viewer on Google Cloud (Cloud Run, behind IAP or "
                                    "with Google sign-in).")

    @field_validator("config_out", mode="after")
    @classmethod
    def _absolute_config_out(cls, value: Path, info: ValidationInfo) -> Path:
        return _absolute(value, info)


class Smoke(_Model):
    """The end-to-end check after apply."""

    min_studies: int = Field(1, description="Studies the stores must hold, at least.", ge=0)
    browser: bool = Field(False, description="Also drive the real OHIF viewer in headless Chromium.")


class Blueprint(_Model):
    """A provision blueprint (version 1): one OHIF viewer on Google Cloud Healthcare."""

    version: Literal[1] = Field(description="Blueprint format version; this provision understands 1.", examples=[1])
    project: Project = Field(examples=[{"id": "ohif-team-a"}])
    apis: list[ApiName] = Field(default_factory=lambda: list(DEFAULT_APIS), description="Services to enable.")
    allow_basic_roles: bool = Field(False, description="Allow roles/owner, roles/editor and roles/viewer in grants.")
    iam: list[IamGrant] = Field(default_factory=list, description="Additive grants on the project.")
    bucket: Bucket | None = None
    audit_logs: AuditLogs = Field(default_factory=AuditLogs, description="Data Access audit logs (on by default).")
    dataset: Dataset = Field(examples=[{"id": "imaging", "location": "us-central1"}])
    dicom_stores: Annotated[list[DicomStore], Field(min_length=1)] = Field(examples=[[{"id": "primary"}]])
    viewer_sources: list[ViewerSource] = Field(
        default_factory=list, description="Read-only data sources the viewer shows beside the stores (public "
        "datasets, other teams' stores); the first store stays the viewer's default.",
        examples=[[{"name": "idc", "idc": "latest"}]])
    # Validated from {} (not built by a factory) so that its default config_out is
    # resolved against the blueprint's directory like a written one.
    viewer: Viewer = Field(default_factory=dict, validate_default=True)
    smoke: Smoke = Field(default_factory=Smoke)

    _source: Path | None = PrivateAttr(default=None)
    # Where each value is written, (line, column) by path, for problems found after loading (at plan).
    _positions: dict[tuple[Any, ...], Any] = PrivateAttr(default_factory=dict)

    @property
    def source(self) -> Path | None:
        """The blueprint file this was loaded from (absolute), or None if built in Python."""
        return self._source

    def where(self, *path: Any) -> str:
        """`FILE:LINE:COL` of the value at `path` (e.g. `where("dataset", "location")`), or its nearest
        written ancestor's; `FILE` alone without positions, and `blueprint` when built in Python."""
        shown = str(self._source) if self._source else "blueprint"
        for cut in range(len(path), -1, -1):
            pos = self._positions.get(tuple(path[:cut]))
            if pos is not None:
                return f"{shown}:{pos[0]}:{pos[1]}"
        return shown

    @model_validator(mode="before")
    @classmethod
    def _config_out_named_after_the_project(cls, data: Any) -> Any:
        # A fleet keeps its blueprints in one directory: one default file for all would have the
        # last team's config overwrite the others' (issue 19), so the default is the project's own.
        if not isinstance(data, Mapping):
            return data
        project, viewer = data.get("project"), data.get("viewer", {})
        pid = project.get("id") if isinstance(project, Mapping) else None
        if not isinstance(pid, str) or not isinstance(viewer, Mapping) or "config_out" in viewer:
            return data
        return {**data, "viewer": {**viewer, "config_out": f"out/{pid}.js"}}

    @model_validator(mode="after")
    def _whole_blueprint_rules(self, info: ValidationInfo) -> Blueprint:
        # The loader runs these on the raw data (so they are reported with positions even
        # when other fields are invalid); here they guard blueprints built in Python.
        if (info.context or {}).get("loading"):
            return self
        problems = _cross_checks(self.model_dump(by_alias=True))
        if problems:
            raise ValueError("; ".join(f"{_dotted(path)}: {msg}" for path, msg in problems))
        return self
