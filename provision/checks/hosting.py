"""Refused at plan: a `viewer.hosting` this version cannot deploy.

`access: google-sign-in` (the static viewer at the service's URL, each user signing in with Google)
needs the OAuth web client that no API creates and a deploy path without the proxy; it is not wired
yet. Rather than plan a deploy that would leave a viewer nobody can sign in to, plan refuses it at
its blueprint line (exit 2, nothing changed) and says what works today.
"""
from __future__ import annotations

from typing import Any


def problems(bp: Any) -> list[str]:
    """`FILE:LINE:COL: ...` for each hosting choice this version cannot deploy."""
    hosting = getattr(getattr(bp, "viewer", None), "hosting", None)
    if hosting is None or hosting.access != "google-sign-in":
        return []
    return [(f"{bp.where('viewer', 'hosting', 'access')}: viewer.hosting.access google-sign-in is not deployable "
            "yet: this version deploys the hosted viewer behind IAP only; use access: iap (the default, no console "
            "step: list who may open it in members), or remove viewer.hosting and serve the viewer yourself "
            "(`provision viewer`)")]
