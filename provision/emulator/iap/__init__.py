"""Identity-Aware Proxy v1: IAM policies of iap_web resources (Cloud Run services)."""
