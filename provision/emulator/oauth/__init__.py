"""Google's OAuth 2.0 / OpenID Connect endpoints and IAM Credentials generateAccessToken."""
