"""Names of what provision makes for the hosted viewer (`viewer.hosting`, DESIGN.md §5b), shared by
the hosting kinds (a kind never imports another kind; what they share lives here).

Everything is derived from the blueprint, so no user lists the APIs, names the service account or
the Artifact Registry repository:
- APIs: Cloud Run, IAP, Artifact Registry, Cloud Build and IAM (`hosting_apis`), enabled by the
  apis kind when hosting deploys (no IAP with `access: google-sign-in`);
- the viewer's service account `<service>-viewer` (IAM account IDs are 6-30 characters: the
  service name is cut to fit), holding roles/healthcare.dicomViewer on the blueprint's stores
  when the viewer proxies them (`access: iap`); with `google-sign-in` it is the service's identity
  and holds no role (Cloud Run would otherwise run it as the Compute default account, an Editor);
- the repository `cloud-run-source-deploy` in the hosting region, the one `gcloud run deploy
  --source` makes, and the image `REGION-docker.pkg.dev/P/cloud-run-source-deploy/SERVICE`;
- the IAP resource `projects/NUMBER/iap_web/cloud_run-REGION/services/SERVICE` and IAP's service
  agent `service-NUMBER@gcp-sa-iap.iam.gserviceaccount.com`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # for annotations only: no import at run time
    from provision.blueprint.models import Blueprint, Hosting

HOSTING_APIS = ("run.googleapis.com", "iap.googleapis.com", "artifactregistry.googleapis.com",
                "cloudbuild.googleapis.com", "iam.googleapis.com")
IAP_API = "iap.googleapis.com"
VIEWER_ROLE = "roles/healthcare.dicomViewer"
INVOKER_ROLE = "roles/run.invoker"
ACCESSOR_ROLE = "roles/iap.httpsResourceAccessor"
REPOSITORY = "cloud-run-source-deploy"
# The archive's sha256 on the service (an annotation: a label value holds at most 63 characters).
SOURCE_ANNOTATION = "provision/source-sha256"
ACCOUNT_SUFFIX = "-viewer"
ACCOUNT_MAX = 30
SERVICE_ACCOUNT = "service-account"   # the record's kind for the viewer's account
PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")
# With google-sign-in the service is a public static site (the viewer's files and its config, no data):
# anyone may load it, as from any static host; the studies are read with each user's own Google token.
PUBLIC_INVOKER = "allUsers"


def hosting(bp: Blueprint) -> Hosting | None:
    """The blueprint's viewer.hosting block, or None."""
    viewer = getattr(bp, "viewer", None)
    return getattr(viewer, "hosting", None) if viewer is not None else None


def deploys(bp: Blueprint) -> bool:
    """Whether apply deploys the hosted viewer (either access mode)."""
    return hosting(bp) is not None


def behind_iap(bp: Blueprint) -> bool:
    """Whether the hosted viewer is deployed behind IAP and proxies the stores with its own account
    (access: iap); False for google-sign-in (the static viewer, each user's own token) and no hosting."""
    h = hosting(bp)
    return h is not None and h.access == "iap"


def hosting_apis(bp: Blueprint) -> tuple[str, ...]:
    """The services the hosted viewer needs in its access mode (none without hosting)."""
    if not deploys(bp):
        return ()
    return HOSTING_APIS if behind_iap(bp) else tuple(a for a in HOSTING_APIS if a != IAP_API)


def hosting_block(bp: Blueprint) -> Hosting:
    """The viewer.hosting block of a blueprint that has one (the hosting kinds ask `deploys` first)."""
    h = hosting(bp)
    assert h is not None, "viewer.hosting is not set"   # a caller that skipped `deploys`
    return h


def region(bp: Blueprint) -> str:
    """The Cloud Run region: hosting.region, else the dataset's location (validation made sure it is a region)."""
    return hosting_block(bp).region or bp.dataset.location


def service_id(bp: Blueprint) -> str:
    return hosting_block(bp).service


def account_id(service: str) -> str:
    """`<service>-viewer`, the service name cut so the ID stays within IAM's 30 characters."""
    head = service[:ACCOUNT_MAX - len(ACCOUNT_SUFFIX)].rstrip("-")
    return head + ACCOUNT_SUFFIX


def account_email(bp: Blueprint) -> str:
    return f"{account_id(service_id(bp))}@{bp.project.id}.iam.gserviceaccount.com"


def account_member(bp: Blueprint) -> str:
    return f"serviceAccount:{account_email(bp)}"


def service_name(bp: Blueprint) -> str:
    """The Cloud Run service's resource name."""
    return f"projects/{bp.project.id}/locations/{region(bp)}/services/{service_id(bp)}"


def repository_name(project_id: str, location: str) -> str:
    return f"projects/{project_id}/locations/{location}/repositories/{REPOSITORY}"


def image_uri(bp: Blueprint) -> str:
    """Where builds:submit pushes the viewer's image (the digest is added once it is built)."""
    return f"{region(bp)}-docker.pkg.dev/{bp.project.id}/{REPOSITORY}/{service_id(bp)}"


def iap_resource(number: str, location: str, service: str) -> str:
    """IAP's resource for a Cloud Run service (iap.v1: projects/NUMBER/iap_web/cloud_run-REGION/services/S)."""
    return f"projects/{number}/iap_web/cloud_run-{location}/services/{service}"


def iap_agent(number: str) -> str:
    """IAP's service agent, which calls the service once IAP let a request through."""
    return f"service-{number}@gcp-sa-iap.iam.gserviceaccount.com"


def audience(number: str, location: str, service: str) -> str:
    """The audience IAP signs its assertion for, on a Cloud Run service (hosting.md §3)."""
    return f"/projects/{number}/locations/{location}/services/{service}"
