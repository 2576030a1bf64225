"""IAM v1 service accounts (iam.googleapis.com)."""
