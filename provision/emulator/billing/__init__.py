"""Cloud Billing v1: billing accounts and the link between a project and its account."""
