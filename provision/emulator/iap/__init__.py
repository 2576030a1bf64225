"""Identity-Aware Proxy: IAM on iap_web resources, sign-in, signed assertions."""
