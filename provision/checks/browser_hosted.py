"""The hosted viewer in the browser smoke (provision/checks/browser.py, `hosted=`): the viewer that runs
at its run.app URL, reached through the emulator with IAP's sign-in (hosted_route.py routes every
https request), and what those requests say afterwards: where the browser went, and whether it ever
held a Google token (it must not)."""
from __future__ import annotations

import re
from typing import Any, Mapping

from provision.checks.browser_session import Session, host_of
from provision.checks.hosted_route import HostedRoute
from provision.errors import ProvisionError


def route_hosted(s: Session, emulator: str | None, hosted: Mapping[str, Any], *, signs_in: bool = False) -> None:
    """Reach the hosted viewer's run.app host and IAP's sign-in through `emulator` (hosted_route.py);
    its DICOMweb roots are the hosted viewer's same-origin ones. `signs_in` (access google-sign-in): only
    the run.app host is routed here; Google's hosts, the roots and the sign-in stay Google mode's."""
    if not emulator:
        raise ProvisionError("the hosted viewer's browser smoke runs against an emulator only "
                             "(IAP's interactive Google sign-in cannot be automated on Google Cloud)")
    s.hosted = HostedRoute(emulator, host_of(s.base), timeout_ms=s.timeout_ms)
    if signs_in:
        s.report.mode = "hosted-google-sign-in"
        s.allowed_hosts.add(s.hosted.service_host)
        s.page.context.route(re.compile(r"^https://" + re.escape(s.hosted.service_host) + r"(/|$)"), s.hosted)
        return
    s.report.mode = "hosted"
    roots: Mapping[str, str] = hosted.get("roots") or {}   # source name -> same-origin root
    s.roots = sorted(roots.values())
    s.page_roots = [roots[s.data_source]] if s.data_source and s.data_source in roots else s.roots
    s.allowed_hosts |= s.hosted.hosts()
    s.page.context.route(re.compile(r"^https://"), s.hosted)


def hosted_findings(s: Session) -> None:
    """What the routed requests say: where the browser went, and any Google token it held."""
    got, report = s.hosted, s.report
    assert got is not None   # called only when the viewer is hosted
    report.routed_requests, report.bearer_requests, report.token_in_url = got.requests, got.bearer, got.token_in_url
    report.external_requests += [f"{r} (not routed)" for r in got.refused]
    if got.failed:
        report.problems.append("the emulator did not answer " + "; ".join(got.failed[:5]))
    if report.mode == "hosted-google-sign-in":
        # The OAuth implicit flow hands the token to /callback in its fragment, by design; the token is for
        # Google's APIs only, never for the service.
        if got.bearer:
            report.problems.append("the browser sent `Authorization: Bearer` to the hosted viewer's own "
                                   "service: " + ", ".join(got.bearer[:5]))
        return
    report.sign_in["iap"] = any(r.split()[1].startswith("accounts.google.com/") for r in got.requests)
    if got.bearer:
        report.problems.append("the browser sent `Authorization: Bearer` (a token it must never hold): "
                               + ", ".join(got.bearer[:5]))
    if got.token_in_url:
        report.problems.append("an access_token was in a URL the browser opened: " + ", ".join(got.token_in_url[:5]))
