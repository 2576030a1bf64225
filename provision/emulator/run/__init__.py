"""Cloud Run Admin API v2 (services, their operations and IAM policies)."""
