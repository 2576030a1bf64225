"""The starter blueprint that `provision init` writes: commented YAML that validates as written.

Kept apart from `provision.blueprint` so that sixty lines of sample text do not sit in
the middle of the models and the loader; the tests check that it still loads.
"""
from __future__ import annotations

__all__ = ["STARTER", "starter_blueprint"]

STARTER = """\
# A provision blueprint: one OHIF viewer on Google Cloud Healthcare.
#   provision validate THIS-FILE     check it (no API call)
#   provision plan THIS-FILE         see what apply would change
#   provision apply THIS-FILE        make it so
# `provision schema` prints the JSON Schema for editor completion.
# ${NAME} in a value is replaced by the environment variable NAME ($${ for a literal ${).
version: 1

project:
  id: my-ohif-project            # 6-30 chars: lowercase letters, digits, hyphens; globally unique
  display_name: My OHIF Project  # 4-30 chars; a new project defaults to the id
  # parent: folders/123456789012 # or organizations/N; needed when a service account creates the project
  # billing_account: 012345-6789AB-CDEF01   # Cloud Healthcare needs billing on the project
  labels: {purpose: imaging}

# Services to enable (this is the default; healthcare.googleapis.com is required).
apis: [healthcare.googleapis.com, cloudresourcemanager.googleapis.com]

# Additive grants on the project: bindings not named here are never removed.
# Basic roles (roles/owner, roles/editor, roles/viewer) are refused unless
# `allow_basic_roles: true`; prefer the narrower healthcare roles.
iam:
  - member: group:imaging-team@example.com
    roles: [roles/serviceusage.serviceUsageConsumer]

# The Cloud Storage bucket that holds the DICOM files to import.
bucket:
  name: my-ohif-project-dicom    # globally unique; lowercase, 3-63 chars
  location: US
  create: true                   # false: the bucket exists and is only read
  # upload: {from: ./dicom, prefix: dicom/}   # upload local DICOM files first (directory must exist)
  # Locked down by default: uniform bucket-level access, public access prevention enforced.
  # uniform_access: false                # an opt-out the plan flags
  # public_access_prevention: inherited  # an opt-out the plan flags

# Data Access audit logs (who read or changed which study; `provision audit` shows them) are
# on by default for Cloud Healthcare and Cloud Storage. They add log volume (billed past the
# free allotment). Turning them off is an opt-out the plan flags:
# audit_logs: {data_access: false}

dataset:
  id: imaging
  location: us-central1          # a Cloud Healthcare location (us-central1, europe-west4, us, eu, ...)
  time_zone: UTC

dicom_stores:
  - id: primary
    iam:                         # grants on this store only (least privilege)
      - member: group:imaging-team@example.com
        roles: [roles/healthcare.dicomViewer]
    import:
      uri: "gs://my-ohif-project-dicom/dicom/**.dcm"   # '**' matches across folders
      # max_failures: 0          # files that may fail to import (each named in a note); 0: none may

viewer:
  origin: http://localhost:3000  # where OHIF is served (scheme://host:port)
  # oauth_client_id: 123456789012-abc123def456.apps.googleusercontent.com   # from the console; apply prints the steps
  # config_out: out/my-ohif-project.js   # the default: out/<project.id>.js, relative to this file
  # hosting:                     # deploy the viewer on Cloud Run behind Identity-Aware Proxy
  #                              # (apply prints its URL; the project must be in an organization)
  #   on: cloud-run
  #   region: us-central1        # default: the dataset's location when it is a region
  #   access: iap                # iap: sign in with Google at IAP, no console step; google-sign-in: the
  #                              # static viewer, public, each user signs in with Google in it (needs
  #                              # oauth_client_id, no members: users need Healthcare roles of their own)
  #   members: [group:imaging-team@example.com]   # who may open the viewer (with iap)
  #   scaling: {min_instances: 0, max_instances: 3}   # min 0: nothing runs (or bills) while idle

smoke:
  min_studies: 1                 # the stores must hold at least this many studies after import
  browser: false                 # true: also drive the real OHIF viewer in headless Chromium
"""


def starter_blueprint() -> str:
    """A commented starter blueprint (YAML text) that validates as written."""
    return STARTER
