"""Kind `viewer-service`: the hosted viewer's image build and its Cloud Run service (DESIGN.md §5b).

Three steps, keyed by the source archive's sha256 (provision/resources/hosted_archive.py):
- `viewer-archive`: the archive uploaded to the ownership record's bucket as `hosted/<sha256>.tar.gz`
  (kept there: the record's bucket goes with destroy) as soon as that bucket exists, so the upload
  overlaps the APIs' enabling instead of delaying the build;
- `viewer-build`: Cloud Run's `builds:submit`
  (buildpacks) into `REGION-docker.pkg.dev/P/cloud-run-source-deploy/SERVICE`, the Cloud Build
  operation polled to done (a progress line with the time waited), the image digest read from
  the build's result;
- `viewer-service`: the service created or patched with that image by digest, `iapEnabled`,
  `ingress: INGRESS_TRAFFIC_ALL`, never `invokerIamDisabled`, `launchStage: BETA` (IAP directly on
  Cloud Run is not GA everywhere: hosting.md §3; the plan says so), the viewer's service account,
  the app's env, the blueprint's scaling, and the archive's sha256 as an annotation; the operation
  waited for, `uri` read back.
A service that already carries the archive's sha256 is neither built nor deployed again (a
re-apply with nothing changed writes nothing). A run killed mid-deploy leaves a service whose
deploy is under way or failed: the next plan reads it and waits, or deploys again; nothing is
made twice. IAP turned off or the invoker check disabled behind provision's back is drift, loud
in plan and status, and apply turns them back on. Reads `viewer_service` and `viewer_archive`.

With `access: google-sign-in` the same service runs the app in its static mode: `iapEnabled`
false (each user signs in with Google in the viewer itself), launch stage GA (IAP's is the BETA
feature), and its invoker is `allUsers` (viewer_access.py): a public static site. Switching the
mode rebuilds (the archive's config differs) and patches `iapEnabled` either way; IAP found on in
this mode is a change apply undoes, not drift (it only hides the viewer from its users).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from provision.errors import ProvisionError
from provision.gcp.context import Ctx
from provision.gcp.errors import is_status
from provision.resources import hosting_calls as calls
from provision.resources.base import Draft, Key, Live, Reads
from provision.resources.hosted_archive import Archive, environment, prepare
from provision.resources.hosting_names import (
    PUBLIC_INVOKER,
    SOURCE_ANNOTATION,
    account_email,
    behind_iap,
    deploys,
    hosting_block,
    iap_resource,
    image_uri,
    region,
    service_id,
    service_name,
)
from provision.resources.steps import CREATE, DELETE, NOOP, UPDATE, Options, Step

if TYPE_CHECKING:  # for annotations only: no import at run time
    from provision.blueprint.models import Blueprint

KIND = "viewer-service"
RESOURCE = "run-service"      # the record's kind
ARCHIVE = "hosted-archive"    # the record's kind for an uploaded archive
LAUNCH_STAGE = "BETA"         # IAP directly on Cloud Run (hosting.md §3)
STATIC_LAUNCH_STAGE = "GA"    # google-sign-in: a plain public service, no preview feature
LABELS = {"managed-by": "provision"}


def reads(bp: Blueprint, live: Live, phase: int) -> Reads:
    out: Reads = {}
    wanted = deploys(bp) and not live.opts.destroy
    if phase == 2 and wanted:
        # Built locally even for a project that does not exist yet: the plan names what it will run.
        out[Key.VIEWER_ARCHIVE] = lambda ctx: prepare(bp, ctx.target, live.get("idc_releases"))
        if live.project is not None:
            name = service_name(bp)
            out[Key.VIEWER_SERVICE] = lambda ctx: calls.get_service(ctx, name)
    if phase == 3 and live.project is not None:   # the record is known from phase 3 on
        keep = service_name(bp) if wanted else None
        for name in live.record.names(RESOURCE):
            if name != keep:
                out[f"old_service:{name}"] = lambda ctx, n=name: calls.get_service(ctx, n)  # type: ignore[misc]  # a lambda with a bound default (mypy cannot infer it)
    return out


def launch_stage(bp: Blueprint) -> str:
    return LAUNCH_STAGE if behind_iap(bp) else STATIC_LAUNCH_STAGE


def wanted_spec(bp: Blueprint, archive: Archive, number: str, image: str) -> dict[str, Any]:
    """The service as provision deploys it (merged with others' labels and annotations when patching)."""
    h = hosting_block(bp)
    container = {"image": image, "ports": [{"containerPort": 8080}],
                 "env": environment(archive, number, region(bp), service_id(bp))}
    return {"labels": dict(LABELS), "annotations": {SOURCE_ANNOTATION: archive.sha256}, "launchStage": launch_stage(bp),
            "ingress": "INGRESS_TRAFFIC_ALL", "iapEnabled": behind_iap(bp),
            "template": {"serviceAccount": account_email(bp), "containers": [container],
                         "scaling": {"minInstanceCount": h.scaling.min_instances,
                                     "maxInstanceCount": h.scaling.max_instances}}}


def differences(bp: Blueprint, svc: dict[str, Any]) -> list[str]:
    """What of a deployed service differs from what provision deploys, besides the archive (drift first)."""
    out = []
    if behind_iap(bp) and not svc.get("iapEnabled"):
        out.append("DRIFT: IAP is OFF on the service (iapEnabled false): the viewer answers without IAP's "
                   "sign-in; apply turns it back on")
    elif not behind_iap(bp) and svc.get("iapEnabled"):
        out.append("~ IAP on -> off (access google-sign-in: users sign in with Google in the viewer itself)")
    if svc.get("invokerIamDisabled"):
        out.append("DRIFT: the invoker check is disabled (invokerIamDisabled): anyone on the internet may call "
                   "the viewer; apply turns it back on")
    if svc.get("ingress", "INGRESS_TRAFFIC_ALL") != "INGRESS_TRAFFIC_ALL":
        out.append(f"~ ingress {svc.get('ingress')} -> INGRESS_TRAFFIC_ALL")
    template = svc.get("template") or {}
    if template.get("serviceAccount") != account_email(bp):
        out.append(f"~ identity {template.get('serviceAccount')} -> {account_email(bp)}")
    scaling = template.get("scaling") or {}
    h = hosting_block(bp).scaling
    if (int(scaling.get("minInstanceCount") or 0), int(scaling.get("maxInstanceCount") or 0)) != (
            h.min_instances, h.max_instances):
        out.append(f"~ scaling {scaling.get('minInstanceCount', 0)}-{scaling.get('maxInstanceCount', '?')} -> "
                   f"{h.min_instances}-{h.max_instances} instances")
    return out


def _state(svc: dict[str, Any]) -> str:
    cond = (svc.get("terminalCondition") or {}).get("state", "")
    if svc.get("reconciling") or cond == "CONDITION_RECONCILING":
        return "deploying"
    return "failed" if cond == "CONDITION_FAILED" else "ready"


def diff(bp: Blueprint, live: Live, opts: Options, draft: Draft) -> None:
    wanted = deploys(bp) and not opts.destroy
    if wanted:
        _diff_deploy(bp, live, draft)
    # Services provision made that the blueprint no longer names (hosting removed, or moved to
    # another region or name): deleted, with their grants.
    for name in live.record.names(RESOURCE):
        if wanted and name == service_name(bp):
            continue
        svc = live.get(f"old_service:{name}")
        what = f"- Cloud Run service {name} and its access grants (made by provision)"
        step_id = f"{KIND}:{name.split('/')[3]}/{name.rsplit('/', 1)[1]}" if wanted else KIND
        draft.add(Step(step_id, KIND, name, DELETE, [what if svc is not None else
                                                     "- already gone: forget it in the record"], ["record"],
                       _delete(name, svc)))


def _notes(bp: Blueprint, live: Live, draft: Draft) -> None:
    """What a team should know before the deploy: IAP's organization requirement (or, with google-sign-in, that
    the service is public and who reads the stores), the cost of warm instances."""
    parent = bp.project.parent or (live.project.parent if live.project is not None else "")
    if not behind_iap(bp):
        draft.note(f"viewer.hosting access google-sign-in: {service_id(bp)} is public (roles/run.invoker for "
                   f"{PUBLIC_INVOKER}), as a static site needs (it serves the viewer's files and config, no data; "
                   "an organization policy iam.allowedPolicyMemberDomains refuses that grant). Each user "
                   "signs in with Google in the viewer and reads the stores with their own token: grant them "
                   "roles/healthcare.dicomViewer in dicom_stores[].iam or iam")
    elif not parent:
        draft.note("viewer.hosting: IAP directly on Cloud Run needs the project inside an organization (its users "
                   "sign in with accounts of that organization); project.parent names none, so turning IAP on may "
                   "be refused")
    warm = hosting_block(bp).scaling.min_instances
    if warm:
        draft.note(f"viewer.hosting: scaling.min_instances {warm} keeps {warm} instance(s) running, billed while idle "
                   "(0: nothing runs or bills between visits; the first request then waits for a start)")


def _diff_deploy(bp: Blueprint, live: Live, draft: Draft) -> None:
    _notes(bp, live, draft)
    archive: Archive | None = live.read.get(Key.VIEWER_ARCHIVE)
    svc = live.viewer_service
    name = service_name(bp)
    if svc is not None:
        draft.facts.viewer_url = svc.get("uri")
    sha = (svc or {}).get("annotations", {}).get(SOURCE_ANNOTATION) if svc else None
    state = _state(svc) if svc else None
    short = archive.sha256[:12] if archive else "?"
    rebuild = svc is None or sha != (archive.sha256 if archive else None) or state == "failed"
    changes = differences(bp, svc) if svc else []
    wait_only = not rebuild and not changes   # only a deploy under way to wait for
    if rebuild:
        mb = f", {archive.size / 1e6:.1f} MB" if archive else ""
        # Uploaded as soon as the record's bucket exists, so that the upload (tens of MB) goes on
        # while the APIs are enabled, not after them on the way to the build.
        draft.add(Step("viewer-archive", KIND, archive.object if archive else "hosted archive", CREATE,
                       [f"+ upload the viewer's source archive sha256 {short}{mb} to the record's bucket (kept there)"],
                       ["record"], _archive(archive)))
        draft.add(Step("viewer-build", KIND, image_uri(bp), CREATE,
                       [f"+ build the viewer image from source archive sha256 {short} (builds:submit, buildpacks)"],
                       ["artifact-repo", "apis", "record", "viewer-archive"], _build(bp, archive)))
        action = CREATE if svc is None else UPDATE
        created = (f"+ Cloud Run service {service_id(bp)} in {region(bp)}: IAP on, ingress all, launch stage "
                   f"{LAUNCH_STAGE} (IAP directly on Cloud Run), as {account_email(bp)}") if behind_iap(bp) else (
                   f"+ Cloud Run service {service_id(bp)} in {region(bp)}: the static viewer with Google sign-in, "
                   f"IAP off, public (invoker {PUBLIC_INVOKER}), ingress all, as {account_email(bp)}")
        changes = ([created] if svc is None else
                   [f"~ deploy source archive {short} (running: {(sha or 'none')[:12]}"
                    + (", its last deploy failed)" if state == "failed" else ")")] + changes)
    elif state == "deploying":
        action, changes = UPDATE, ["~ a deploy of this archive is under way: wait for it"] + changes
    else:
        action = UPDATE if changes else NOOP
    claims = [("resource", RESOURCE, name)] if svc is None else []
    run = None if action == NOOP else _deploy(bp, archive, svc, wait_only=wait_only)
    # DRIFT lines are changes (apply corrects them), so they are not also the step's `drift` (what apply leaves).
    draft.add(Step(KIND, KIND, name, action, changes, ["viewer-build", "viewer-account", "apis", "record"], run,
                   claims=claims))


def _archive(archive: Archive | None) -> Callable[[Ctx], str]:
    def run(ctx: Ctx) -> str:
        if archive is None:
            raise ProvisionError("the viewer's source archive was not prepared; plan again")
        ctx.facts.viewer_archive_generation = _upload(ctx, archive)
        return f"gs://{ctx.facts.record.bucket}/{archive.object}"
    return run


def _build(bp: Blueprint, archive: Archive | None) -> Callable[[Ctx], str]:
    def run(ctx: Ctx) -> str:
        if archive is None:
            raise ProvisionError("the viewer's source archive was not prepared; plan again")
        image = image_uri(bp)
        generation = ctx.facts.viewer_archive_generation or _upload(ctx, archive)
        parent = f"projects/{bp.project.id}/locations/{region(bp)}"
        body = {"storageSource": {"bucket": ctx.facts.record.bucket, "object": archive.object,
                                  "generation": str(generation)},
                "imageUri": image, "buildpackBuild": {}}   # no `client`: run.v2 before google-api-python-client 2.190 (our floor is 2.167) lacks it
        ctx.progress(f"submitting the build of {image}")
        answer = ctx.call(lambda: ctx.target.run().projects().locations().builds().submit(parent=parent, body=body)
                          .execute(num_retries=0))
        started = time.monotonic()
        done = calls.wait_build(ctx, answer.get("buildOperation") or {}, on_poll=lambda op: ctx.progress(
            f"building the viewer image ({time.monotonic() - started:.0f}s)"))
        ctx.facts.viewer_image = f"{image}@{_digest(done, image)}"
        return f"built {ctx.facts.viewer_image}"
    return run


def _upload(ctx: Ctx, archive: Archive) -> int:
    """The archive into the record's bucket (kept, recorded first); its generation. One already there is reused."""
    record = ctx.facts.record
    record.add_resource(ctx, ARCHIVE, f"gs://{record.bucket}/{archive.object}")   # the bucket exists after this

    def put() -> int:
        blob = ctx.target.storage(record.project_id).bucket(record.bucket).blob(archive.object)
        try:
            blob.upload_from_filename(str(archive.path), content_type="application/gzip", if_generation_match=0,
                                      retry=None)
        except Exception as exc:
            if not is_status(exc, 412):
                raise
            blob.reload(retry=None)   # the same sha256, so the same bytes
        return int(blob.generation or 0)
    ctx.progress(f"uploading the viewer's source archive ({archive.size / 1e6:.1f} MB)")
    return ctx.call(put)


def _digest(done: dict[str, Any], image: str) -> str:
    """The pushed image's digest, from the finished build (its response, or the operation's metadata)."""
    for build in (done.get("response") or {}, (done.get("metadata") or {}).get("build") or {}):
        for img in (build.get("results") or {}).get("images") or []:
            if str(img.get("name", "")).split(":")[0].split("@")[0] == image and img.get("digest"):
                return cast("str", img["digest"])
    raise ProvisionError(f"the build of {image} finished without an image digest in its result; see its log in "
                         "Cloud Build (`gcloud builds list`)")


def _deploy(bp: Blueprint, archive: Archive | None, seen: dict[str, Any] | None, *,
            wait_only: bool) -> Callable[[Ctx], str]:
    def run(ctx: Ctx) -> str:
        name = service_name(bp)
        services = ctx.target.run().projects().locations().services()
        current = calls.get_service(ctx, name)
        if wait_only and current is not None:
            return _settle(ctx, name, {"name": name, "done": False}, poll_service=True)
        image = ctx.facts.viewer_image or _running_image(current or seen)
        if archive is None or not image:
            raise ProvisionError(f"no image to deploy for {name}; plan again")
        body = wanted_spec(bp, archive, ctx.facts.project_number or "", image)
        if current is None:
            ctx.facts.record.add_resource(ctx, RESOURCE, name)   # before it exists (record.py)
            op = ctx.call(lambda: services.create(parent=name.rsplit("/services/", 1)[0], serviceId=service_id(bp),
                                                  body=body).execute(num_retries=0))
        else:
            body["labels"] = {**(current.get("labels") or {}), **body["labels"]}
            body["annotations"] = {**(current.get("annotations") or {}), **body["annotations"]}
            op = ctx.call(lambda: services.patch(name=name, body=body).execute(num_retries=0))
        return _settle(ctx, name, op)
    return run


def _running_image(svc: dict[str, Any] | None) -> str | None:
    containers = ((svc or {}).get("template") or {}).get("containers") or []
    return containers[0].get("image") if containers else None


def _settle(ctx: Ctx, name: str, op: dict[str, Any], poll_service: bool = False) -> str:
    """Wait for the deploy (its operation, or the service itself when the operation is not known), read back `uri`."""
    started = time.monotonic()

    def said(_: dict[str, Any]) -> None:
        ctx.progress(f"deploying {name.rsplit('/', 1)[-1]} ({time.monotonic() - started:.0f}s)")

    if not poll_service and not op.get("done"):
        op = calls.wait_run(ctx, op, said, kind="run.services.deploy")
    if op.get("error"):
        raise ProvisionError(f"deploying {name} failed: {op['error'].get('message')}")
    # The service itself, until no deploy is under way (one started by a run that was interrupted
    # goes on without its operation being known here).
    ctx.wait_operation({"name": name, "done": False}, lambda n: _as_operation(calls.get_service(ctx, name) or {}),
                       said)
    svc = calls.get_service(ctx, name)
    if svc is None:
        raise ProvisionError(f"{name} was deleted while it was being deployed; apply again")
    if _state(svc) == "failed":
        raise ProvisionError(f"{name} is not ready: {(svc.get('terminalCondition') or {}).get('message', '')}")
    ctx.facts.viewer_url = svc.get("uri")
    return f"serving at {ctx.facts.viewer_url}"


def _as_operation(svc: dict[str, Any]) -> dict[str, Any]:
    """A service read as an operation (done once it is no longer reconciling), for a deploy whose operation is unknown."""
    return {"name": svc.get("name", "service"), "done": not svc or _state(svc) != "deploying"}


def _delete(name: str, svc: dict[str, Any] | None) -> Callable[[Ctx], str]:
    def run(ctx: Ctx) -> str:
        if svc is not None:
            calls.delete_service(ctx, name)
        number = ctx.facts.project_number
        _, _, location, _, service = name.split("/")[1:]
        iap = iap_resource(number, location, service) if number else None

        def forget(r: Any) -> None:
            r.drop_resource(RESOURCE, name)
            r.drop_grants(name)
            if iap:
                r.drop_grants(iap)
        ctx.facts.record.change(ctx, forget)   # after it is gone: its IAP and invoker grants went with it
        return f"deleted {name}"
    return run
