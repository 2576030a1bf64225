"""Building source into images (Cloud Run Admin v2 `builds:submit`, Cloud Build operations) and
the Artifact Registry v1 repositories and Docker images that builds push to."""
