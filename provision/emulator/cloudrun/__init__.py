"""Cloud Run Admin v2 and the deployed services running locally."""
