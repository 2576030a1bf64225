"""Desired resources (the blueprint) + observed state (reads, in parallel) -> an ordered plan.

`observe` reads live state: the project first (everything else hangs off it), then, in
parallel, billing, enabled services, the project policy, the bucket and its policy and
objects, the dataset, each store with its policy and labels, and the objects each import
matches. `build` diffs that against the blueprint into `Step`s: create / update / noop per
resource, IAM additions named member by member, each with its dependencies:

    project -> billing -> apis -> project-iam -> service-agent -> bucket (+upload)
    -> bucket-iam -> dataset -> store:S (+store-iam:S) -> import:S

A step's `run` does the change at apply time, reading again what it must (a resource the plan
would create that exists by then is adopted). A `noop` step has no `run`: applying a plan with
no changes makes no call at all.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from provision.gcp.context import Ctx
from provision.resources import apis as apis_mod
from provision.resources import billing as billing_mod
from provision.resources import bucket as bucket_mod
from provision.resources import bucket_iam, dataset as dataset_mod, dicom_import, dicom_store
from provision.resources import iam as iam_mod
from provision.resources import project as project_mod
from provision.resources import project_iam, service_agent
from provision.resources.bucket import BucketState, LocalFile
from provision.resources.dataset import DatasetState
from provision.resources.dicom_store import StoreState
from provision.resources.project import ProjectState

CREATE, UPDATE, NOOP, DELETE, KEEP = "create", "update", "noop", "delete", "keep"


@dataclass
class Step:
    id: str
    kind: str
    resource: str
    action: str
    changes: list[str] = field(default_factory=list)
    deps: list[str] = field(default_factory=list)
    run: Callable[[Ctx], str | None] | None = field(default=None, repr=False, compare=False)

    @property
    def changing(self) -> bool:
        return self.action not in (NOOP, KEEP)

    def to_json(self) -> dict:
        return {"id": self.id, "kind": self.kind, "resource": self.resource, "action": self.action,
                "changes": list(self.changes), "depends_on": list(self.deps)}


@dataclass
class Live:
    """What the reads found."""

    project: ProjectState | None = None
    billing: str | None = None
    enabled: set[str] = field(default_factory=set)
    project_policy: dict | None = None
    bucket: BucketState | None = None
    bucket_policy: dict | None = None
    local: list[LocalFile] = field(default_factory=list)
    remote: dict[str, dict] = field(default_factory=dict)
    dataset: DatasetState | None = None
    stores: dict[str, StoreState | None] = field(default_factory=dict)
    store_policies: dict[str, dict | None] = field(default_factory=dict)
    import_objects: dict[str, dict | None] = field(default_factory=dict)
    foreign_access: dict[str, bool | None] = field(default_factory=dict)
    bucket_owner: str | None = None   # project id owning an existing bucket of another project, when readable


@dataclass
class Plan:
    project: str
    target: str
    steps: list[Step]
    notes: list[str] = field(default_factory=list)
    live: Live | None = field(default=None, repr=False)
    facts: dict = field(default_factory=dict, repr=False)

    @property
    def changes(self) -> list[Step]:
        return [s for s in self.steps if s.changing]

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    def step(self, step_id: str) -> Step:
        return next(s for s in self.steps if s.id == step_id)

    def to_json(self) -> dict:
        return {
            "project": self.project,
            "target": self.target,
            "changes": len(self.changes),
            "summary": self.summary(),
            "steps": [s.to_json() for s in self.steps],
            "notes": list(self.notes),
        }

    def summary(self) -> str:
        if not self.has_changes:
            return "no changes"
        counts: dict[str, int] = {}
        for s in self.changes:
            counts[s.action] = counts.get(s.action, 0) + 1
        return ", ".join(f"{n} to {a}" for a, n in sorted(counts.items()))

    def render(self) -> str:
        """The human rendering: one line per step, its changes indented below."""
        sign = {CREATE: "+", UPDATE: "~", DELETE: "-", NOOP: "=", KEEP: "="}
        lines = [f"plan for project {self.project} on {self.target}: {self.summary()}"]
        for s in self.steps:
            lines.append(f"  {sign.get(s.action, '?')} {s.id:<24} {s.action:<7} {s.resource}")
            for c in s.changes:
                lines.append(f"      {c}")
        for n in self.notes:
            lines.append(f"  note: {n}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------- names
def dataset_name(bp: Any) -> str:
    return dataset_mod.name_of(bp.project.id, bp.dataset.location, bp.dataset.id)


def store_name(bp: Any, store_id: str) -> str:
    return dicom_store.name_of(dataset_name(bp), store_id)


def own_bucket(bp: Any) -> str | None:
    return bp.bucket.name if bp.bucket else None


def import_buckets(bp: Any) -> list[str]:
    out = []
    for s in bp.dicom_stores:
        if s.import_:
            b = dicom_import.parse_uri(s.import_.uri).bucket
            if b not in out:
                out.append(b)
    return out


def bucket_is_ours(bp: Any, live: Live) -> bool:
    """The blueprint's bucket belongs to its project: it lives in our project (same project number),
    or it does not exist yet and this blueprint creates it."""
    if not bp.bucket:
        return False
    b = live.bucket
    if b is not None and b.exists:
        return bool(b.accessible and b.project_number and live.project is not None
                    and b.project_number == live.project.number)
    return bool(bp.bucket.create)


def refuse_foreign_bucket(bp: Any, live: Live) -> None:
    """`create: true` naming a bucket another project owns: a plan error (never adopt, grant on or delete it)."""
    b = live.bucket
    if not (bp.bucket and bp.bucket.create and b is not None and b.exists and b.accessible and b.project_number):
        return
    if live.project is not None and b.project_number == live.project.number:
        return
    from provision.errors import ProvisionError

    owner = live.bucket_owner or f"number {b.project_number}"
    raise ProvisionError(f"bucket gs://{b.name}: bucket name taken by project {owner} (this blueprint's project is "
                         f"{bp.project.id}); pick another name or set create: false to only read it")


# ---------------------------------------------------------------------------- observe
def observe_project(ctx: Ctx, bp: Any) -> Live:
    """Phase 1: the project, its billing link, the bucket, the local upload tree (in parallel)."""
    jobs: list[Callable[[], Any]] = [lambda: project_mod.read(ctx, bp.project.id)]
    jobs.append((lambda: billing_mod.read(ctx, bp.project.id)) if bp.project.billing_account else (lambda: None))
    jobs.append((lambda: bucket_mod.read(ctx, bp.bucket.name)) if bp.bucket else (lambda: None))
    jobs.append((lambda: bucket_mod.local_files(bp.bucket.upload)) if bp.bucket and bp.bucket.upload else (lambda: []))
    project, billing, bucket, local = ctx.parallel(jobs)
    live = Live(project=project, billing=billing if project is not None else None, bucket=bucket, local=local)
    if (bp.bucket and bp.bucket.create and bucket is not None and bucket.exists and bucket.project_number
            and (project is None or bucket.project_number != project.number)):
        owner = project_mod.read(ctx, bucket.project_number)  # to name it in the error; None if hidden
        live.bucket_owner = owner.project_id if owner else None
    return live


def refuse_inactive(project: ProjectState | None) -> None:
    """A project pending deletion cannot be built on: say how to restore it."""
    if project is not None and project.state != "ACTIVE":
        from provision.errors import ProvisionError

        raise ProvisionError(f"project {project.project_id} is {project.state} (deleted, pending purge): restore it "
                             f"with `gcloud projects undelete {project.project_id}`, or choose another project.id")


def observe(ctx: Ctx, bp: Any, live: Live) -> Live:
    """Phase 2: everything else, in parallel."""
    project, bucket = live.project, live.bucket
    jobs: dict[str, Callable[[], Any]] = {}
    pid = bp.project.id
    if project is not None:
        jobs["enabled"] = lambda: apis_mod.read(ctx, pid)
        jobs["project_policy"] = lambda: project_iam.read(ctx, pid)
        jobs["dataset"] = lambda: dataset_mod.read(ctx, dataset_name(bp))
        for s in bp.dicom_stores:
            jobs[f"store:{s.id}"] = (lambda sid=s.id: _read_store(ctx, store_name(bp, sid)))
    if bucket is not None and bucket.exists and bucket.accessible:
        if bucket_is_ours(bp, live):
            jobs["bucket_policy"] = lambda: bucket_iam.read(ctx, bp.bucket.name)
        if bp.bucket.upload:
            jobs["remote"] = lambda: bucket_mod.list_objects(ctx, bp.bucket.name, bp.bucket.upload.prefix or "")
    reuse: dict[str, dicom_import.Source] = {}
    for s in bp.dicom_stores:
        if s.import_:
            src = dicom_import.parse_uri(s.import_.uri)
            if bucket is not None and src.bucket == bucket.name and not bucket.exists:
                continue  # the bucket is still to be created
            if "remote" in jobs and src.bucket == bp.bucket.name and src.prefix.startswith(bp.bucket.upload.prefix or ""):
                reuse[s.id] = src  # the upload's listing already covers these objects
                continue
            jobs[f"import:{s.id}"] = (lambda src=src: dicom_import.matched_objects(ctx, src))
    keys = list(jobs)
    results = dict(zip(keys, ctx.parallel([jobs[k] for k in keys])))
    live.enabled = results.get("enabled") or set()
    live.project_policy = results.get("project_policy")
    live.dataset = results.get("dataset")
    live.bucket_policy = results.get("bucket_policy")
    live.remote = results.get("remote") or {}
    for s in bp.dicom_stores:
        state, policy = results.get(f"store:{s.id}", (None, None))
        live.stores[s.id] = state
        live.store_policies[s.id] = policy
        if s.id in reuse:
            rx = reuse[s.id].regex()
            live.import_objects[s.id] = {n: o for n, o in live.remote.items() if rx.match(n)}
        elif s.import_:
            live.import_objects[s.id] = results.get(f"import:{s.id}", {})
    if project is not None:
        member = service_agent.member_for(project.number)
        for b in import_buckets(bp):
            if b != own_bucket(bp) or not bucket_is_ours(bp, live):
                live.foreign_access[b] = bucket_iam.check_foreign(ctx, b, member)
    return live


def _read_store(ctx: Ctx, name: str) -> tuple[StoreState | None, dict | None]:
    state = dicom_store.read(ctx, name)
    if state is None:
        return None, None
    return state, dicom_store.read_iam(ctx, name)


# ---------------------------------------------------------------------------- build
def build(bp: Any, live: Live, target_label: str = "") -> Plan:
    pid = bp.project.id
    steps: list[Step] = []
    notes: list[str] = []
    facts: dict = {}
    project = live.project
    if project is not None:
        facts["project_number"] = project.number
        facts["agent"] = service_agent.member_for(project.number)

    def add(step: Step) -> Step:
        steps.append(step)
        return step

    # project
    spec = bp.project
    if project is None:
        changes = [f"create project {pid}" + (f" under {spec.parent}" if spec.parent else "")]
        changes += [f"label {k}={v}" for k, v in sorted((spec.labels or {}).items())]

        def run_project(ctx: Ctx) -> str:
            st = project_mod.create(ctx, spec)
            ctx.facts["project_number"] = st.number
            ctx.facts["agent"] = service_agent.member_for(st.number)
            return f"project {pid} (number {st.number})"

        add(Step("project", "project", f"projects/{pid}", CREATE, changes, [], run_project))
    else:
        drift = project_mod.desired_changes(spec, project)
        run = (lambda ctx: (project_mod.update(ctx, spec, project), "labels updated")[1]) if drift else None
        add(Step("project", "project", f"projects/{pid}", UPDATE if drift else NOOP, drift, [], run))

    # billing
    last_setup = "project"
    if spec.billing_account:
        want = billing_mod.account_name(spec.billing_account)
        if project is None or live.billing != want:
            was = live.billing if project is not None else None
            change = f"link {want}" + (f" (now {was})" if was else "")
            add(Step("billing", "billing", f"projects/{pid}/billingInfo", CREATE if not was else UPDATE, [change],
                     ["project"], lambda ctx: (billing_mod.link(ctx, pid, spec.billing_account), f"linked {want}")[1]))
        else:
            add(Step("billing", "billing", f"projects/{pid}/billingInfo", NOOP, [], ["project"]))
        last_setup = "billing"

    # apis
    wanted = list(dict.fromkeys(bp.apis))
    todo = [a for a in wanted if a not in live.enabled]
    add(Step("apis", "apis", f"projects/{pid}/services", CREATE if todo else NOOP, [f"+ {a}" for a in todo],
             [last_setup], (lambda ctx: (apis_mod.enable(ctx, pid, todo), f"enabled {', '.join(todo)}")[1]) if todo else None))

    # project IAM (additive)
    pairs = iam_mod.pairs_of(bp.iam)
    missing = iam_mod.missing(live.project_policy, pairs) if project is not None else pairs
    if pairs:
        add(Step("project-iam", "project-iam", f"projects/{pid}", (UPDATE if project else CREATE) if missing else NOOP,
                 iam_mod.describe(missing), ["apis"],
                 (lambda ctx: f"granted {len(project_iam.grant(ctx, pid, pairs))} role(s)") if missing else None))
    agent_after = "project-iam" if pairs else "apis"

    # service agent
    agent_ok = project is not None and service_agent.exists(live.project_policy, project.number)

    def run_agent(ctx: Ctx) -> str:
        email = service_agent.ensure(ctx, pid, ctx.facts["project_number"])
        ctx.facts["agent"] = f"serviceAccount:{email}"
        return email

    add(Step("service-agent", "service-agent",
             service_agent.email_for(project.number) if project else "service-<number>@gcp-sa-healthcare.iam.gserviceaccount.com",
             NOOP if agent_ok else CREATE,
             [] if agent_ok else ["generate the Cloud Healthcare Service Agent", f"+ {service_agent.AGENT_ROLE}"],
             [agent_after], None if agent_ok else run_agent))

    # bucket (+ upload)
    upload_pending: list[LocalFile] = []
    if bp.bucket:
        b = bp.bucket
        base_dep = last_setup
        if b.create:
            if live.bucket is None or not live.bucket.exists:
                add(Step("bucket", "bucket", f"gs://{b.name}", CREATE, [f"create gs://{b.name} in {b.location}"], [base_dep],
                         lambda ctx: (bucket_mod.create(ctx, pid, b, ctx.facts.get("project_number")), f"gs://{b.name}")[1]))
            elif not live.bucket.accessible:
                add(Step("bucket", "bucket", f"gs://{b.name}", CREATE, [f"create gs://{b.name} (the name answers 403: taken?)"],
                         [base_dep], lambda ctx: (bucket_mod.create(ctx, pid, b, ctx.facts.get("project_number")), "")[1]))
            else:
                refuse_foreign_bucket(bp, live)
                add(Step("bucket", "bucket", f"gs://{b.name}", NOOP, [], [base_dep]))
        else:
            if live.bucket is None or not live.bucket.exists:
                from provision.errors import ProvisionError

                raise ProvisionError(f"bucket gs://{b.name} does not exist, and the blueprint says `create: false`; "
                                     "create it, or set `bucket.create: true`")
            add(Step("bucket", "bucket", f"gs://{b.name}", NOOP, ["exists; read only (create: false)"], [base_dep]))
        if b.upload:
            upload_pending = bucket_mod.pending(live.local, live.remote) if live.bucket and live.bucket.exists else list(live.local)
            n = len(upload_pending)

            def run_upload(ctx: Ctx) -> str:
                remote = bucket_mod.list_objects(ctx, b.name, b.upload.prefix or "")
                todo_files = bucket_mod.pending(bucket_mod.local_files(b.upload), remote)
                done = bucket_mod.upload(ctx, b.name, todo_files)
                return f"uploaded {done} file(s)" if done else "already uploaded"

            add(Step("upload", "upload", f"gs://{b.name}/{b.upload.prefix or ''}", CREATE if n else NOOP,
                     [f"upload {n} of {len(live.local)} file(s) from {b.upload.from_}"] if n else [],
                     ["bucket"], run_upload if n else None))
            notes += bucket_mod.upload_notes(live.local)

    # bucket IAM for the agent (own bucket only)
    grant_bucket = bool(bp.bucket) and bucket_is_ours(bp, live) and bp.bucket.name in import_buckets(bp)
    if grant_bucket:
        bname = bp.bucket.name
        agent_member = facts.get("agent")
        has = bool(agent_member) and agent_ok and bucket_iam.agent_can_read(live.bucket_policy, agent_member)
        if live.bucket is None or not live.bucket.exists:
            has = False

        def run_bucket_iam(ctx: Ctx) -> str:
            bucket_iam.grant(ctx, bname, ctx.facts["agent"])
            return f"{ctx.facts['agent']} {bucket_iam.VIEWER}"

        fresh = live.bucket is None or not live.bucket.exists
        add(Step("bucket-iam", "bucket-iam", f"gs://{bname}", NOOP if has else (CREATE if fresh else UPDATE),
                 [] if has else [f"+ {agent_member or 'the Healthcare service agent'} {bucket_iam.VIEWER}"],
                 ["bucket", "service-agent"], None if has else run_bucket_iam))
    for bname, access in live.foreign_access.items():
        member = facts.get("agent", "the Healthcare service agent")
        if access is False:
            notes.append(f"the Healthcare service agent cannot read gs://{bname} (not this blueprint's bucket); "
                         + bucket_iam.ask_owner(bname, member))
        elif access is None:
            notes.append(f"gs://{bname} is not this blueprint's bucket and its policy is not readable: the import "
                         f"needs {member} to hold {bucket_iam.VIEWER} on it")
    if project is None:
        # A new project: its agent's email is known only once the project exists (its number).
        future = service_agent.member_for("<PROJECT_NUMBER>")
        for bname in import_buckets(bp):
            if bname != own_bucket(bp) or not bucket_is_ours(bp, live):
                notes.append(f"gs://{bname} is not this blueprint's bucket: the new project's Healthcare service agent "
                             f"({future.split(':', 1)[1]}, known once the project exists) will need "
                             f"{bucket_iam.VIEWER} on it for the import; " + bucket_iam.ask_owner(bname, future))

    # dataset
    dname = dataset_name(bp)
    ds = bp.dataset
    if live.dataset is None:
        add(Step("dataset", "dataset", dname, CREATE, [f"create dataset {ds.id} in {ds.location} (time zone {ds.time_zone})"],
                 ["apis"], lambda ctx: (dataset_mod.create(ctx, dname, ds.time_zone), dname)[1]))
    else:
        if ds.time_zone and live.dataset.time_zone and live.dataset.time_zone != ds.time_zone:
            notes.append(f"dataset {ds.id} has time zone {live.dataset.time_zone}, the blueprint says {ds.time_zone}; "
                         "a dataset's time zone cannot be changed")
        add(Step("dataset", "dataset", dname, NOOP, [], ["apis"]))

    # stores, store IAM, imports
    for s in bp.dicom_stores:
        sname = store_name(bp, s.id)
        state = live.stores.get(s.id)
        if state is None:
            add(Step(f"store:{s.id}", "dicom-store", sname, CREATE, [f"create DICOM store {s.id}"], ["dataset"],
                     lambda ctx, n=sname: (dicom_store.create(ctx, n), n)[1]))
        else:
            add(Step(f"store:{s.id}", "dicom-store", sname, NOOP, [], ["dataset"]))
        spairs = iam_mod.pairs_of(s.iam)
        if spairs:
            smissing = iam_mod.missing(live.store_policies.get(s.id), spairs) if state else spairs
            add(Step(f"store-iam:{s.id}", "dicom-store-iam", sname, (UPDATE if state else CREATE) if smissing else NOOP,
                     iam_mod.describe(smissing),
                     [f"store:{s.id}"],
                     (lambda ctx, n=sname, p=spairs: f"granted {len(dicom_store.grant(ctx, n, p))} role(s)") if smissing else None))
        if s.import_:
            step = add(_import_step(bp, s, sname, state, live, upload_pending, grant_bucket))
            if step.changing and _matches_nothing_now(bp, s, live, upload_pending):
                notes.append(f"import:{s.id} would fail before it starts (0 object(s) match {s.import_.uri} now); "
                             "check the bucket, the prefix and the ** pattern")

    return Plan(pid, target_label, steps, notes, live, facts)


def _matches_nothing_now(bp: Any, s: Any, live: Live, upload_pending: list[LocalFile]) -> bool:
    """The import's bucket exists (and was listed), nothing in it matches, and no pending upload will."""
    src = dicom_import.parse_uri(s.import_.uri)
    if bp.bucket and src.bucket == bp.bucket.name:
        if not (live.bucket and live.bucket.exists):
            return False
        rx = src.regex()
        if any(f.name and rx.match(f.name) for f in upload_pending):
            return False
    return live.import_objects.get(s.id) == {}


def _import_step(bp: Any, s: Any, sname: str, state: StoreState | None, live: Live,
                 upload_pending: list[LocalFile], grant_bucket: bool) -> Step:
    uri = s.import_.uri
    src = dicom_import.parse_uri(uri)
    deps = [f"store:{s.id}", "service-agent"]  # store IAM runs alongside: their label writes share a lock
    if bp.bucket and src.bucket == bp.bucket.name:
        if bp.bucket.upload:
            deps.append("upload")
        if grant_bucket:
            deps.append("bucket-iam")
        else:
            deps.append("bucket")
    objects = live.import_objects.get(s.id)
    current = dicom_import.fingerprint(uri, objects)
    rx = src.regex()
    will_change = any(f.name and rx.match(f.name) for f in upload_pending) if bp.bucket and src.bucket == bp.bucket.name else False
    done = state is not None and state.labels.get(dicom_import.LABEL) == current and not will_change
    count = len(objects) if objects else 0
    own = bool(bp.bucket) and src.bucket == bp.bucket.name and grant_bucket
    min_studies = bp.smoke.min_studies

    def run_import(ctx: Ctx) -> str:
        objs = dicom_import.matched_objects(ctx, src)
        fp = dicom_import.fingerprint(uri, objs)
        st = dicom_store.read(ctx, sname)
        if st is not None and st.labels.get(dicom_import.LABEL) == fp:
            return "already imported (label matches the objects)"
        dicom_import.require_match(ctx, sname, uri, objs)
        agent = ctx.facts.get("agent", "")
        fix = None
        if not own:
            fix = bucket_iam.ask_owner(src.bucket, agent)
            access = bucket_iam.check_foreign(ctx, src.bucket, agent) if agent else None
            if access is False:
                ctx.note(f"the service agent has no read access to gs://{src.bucket}; the import will likely fail")
        n = dicom_import.run(ctx, sname, uri, min_studies=min_studies, fingerprint_value=fp, access_fix=fix,
                             max_failures=s.import_.max_failures)
        return f"{n} studies in the store"

    if will_change or (bp.bucket and src.bucket == bp.bucket.name and not (live.bucket and live.bucket.exists)):
        now = " (after the upload)" if bp.bucket.upload else " (the bucket does not exist yet)"
    else:
        now = f" ({count} object(s) match now)" if objects is not None else ""
    changes = [] if done else [f"import {uri}{now}"]
    return Step(f"import:{s.id}", "dicom-import", sname, NOOP if done else CREATE, changes, deps,
                None if done else run_import)
