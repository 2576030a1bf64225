"""What the browser smoke found (provision/checks/browser.py): problems, timings, screenshots, and
what the viewer's requests showed (tokens only as fingerprints, never themselves)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass
class BrowserReport:
    """The browser smoke's result: `ok` when it found no problem; `summary()` for people, `to_json()` for --json."""

    viewer_url: str = ""
    problems: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds
    screenshots: list[str] = field(default_factory=list)
    studies_expected: list[str] = field(default_factory=list)
    studies_shown: list[str] = field(default_factory=list)
    canvas: dict[str, Any] = field(default_factory=dict)
    page_errors: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    mode: str = "emulator"                 # emulator | google | google-via-emulator | hosted | hosted-google-sign-in
    config_sha256: str = ""                # of the /app-config.js the browser loaded
    google_requests: list[str] = field(default_factory=list)   # "GET host/path -> status" (no query, no token)
    stubbed_requests: list[str] = field(default_factory=list)
    dicomweb_requests: int = 0
    dicomweb_unauthorized: list[str] = field(default_factory=list)  # DICOMweb requests without a token of this session
    sign_in: dict[str, Any] = field(default_factory=dict)
    dialog: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    data_source: str = ""                  # the OHIF sourceName driven ("": the default data source)
    cross_origin_isolated: bool | None = None   # the viewer page's self.crossOriginIsolated (None: not read)
    # The hosted viewer (hosted=...): every https request as routed, and those carrying a Google token.
    routed_requests: list[str] = field(default_factory=list)   # "GET host/path -> status" (no query)
    bearer_requests: list[str] = field(default_factory=list)   # with `Authorization: Bearer` (must stay empty)
    token_in_url: list[str] = field(default_factory=list)      # with access_token in the URL (must stay empty)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, **asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def summary(self) -> str:
        t = ", ".join(f"{k} {v:.2f} s" for k, v in self.timings.items())
        of = f" of data source {self.data_source}" if self.data_source else ""
        head = f"browser smoke{of} {'passed' if self.ok else 'FAILED'} ({t})"
        lines = [head] + [f"  - {p}" for p in self.problems]
        if self.mode == "hosted":
            parts = urlsplit(self.viewer_url)
            lines.append(f"  the hosted viewer at {parts.scheme}://{parts.netloc}, signed in through IAP; "
                         f"{len(self.bearer_requests) + len(self.token_in_url)} request(s) carried a Google token")
        elif self.mode == "hosted-google-sign-in":
            parts = urlsplit(self.viewer_url)
            lines.append(f"  the hosted viewer at {parts.scheme}://{parts.netloc}, signed in with Google; "
                         f"{self.dicomweb_requests} DICOMweb request(s) to Google with the user's token, "
                         f"{len(self.bearer_requests)} with a token to the service")
        if self.screenshots:
            lines.append("  screenshots: " + ", ".join(self.screenshots))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()
