"""The hosted viewer: a small ASGI app (Starlette on uvicorn) that runs on Cloud Run.

It serves the pinned OHIF release and its config, and forwards one same-origin DICOMweb path per
store to the Healthcare API with the service's own identity, behind a verified IAP assertion.

This folder is shipped on its own (provision.ohif.hosted_source builds its source archive): it
imports nothing of provision, only its siblings (relative imports) and what `requirements.txt`
pins. Configuration is by environment variables (settings.py).
"""
__version__ = "0.1.0"
