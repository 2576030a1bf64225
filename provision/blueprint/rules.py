"""The blueprint's rules that span several values (layer 3 of `provision.blueprint.models`).

They work on the raw data (a mapping as read from YAML, or a model's dump), tolerant of wrong
types (those are reported by the models), and return `(path, message)` pairs: the loader turns
the paths into `FILE:LINE:COL`, a blueprint built in Python into one ValueError.
"""
from __future__ import annotations

from typing import Any, Mapping

from pydantic import TypeAdapter, ValidationError

from provision.blueprint.hosting import hosting_checks
from provision.blueprint.naming import BASIC_ROLES, HEALTHCARE_API, NARROW_ROLES
from provision.blueprint.yamlpos import PathKey

# The services a blueprint enables when it lists none.
DEFAULT_APIS = (HEALTHCARE_API, "cloudresourcemanager.googleapis.com")

# Well-known public datasets a viewer source can name with `public:` (provision.resources.viewer_source
# knows where each one is and how access to it is obtained).
PUBLIC_DATASETS = ("nih-chest-xray", "idc-proxy")
SOURCE_KINDS = ("store", "dicomweb", "idc", "public")
_SOURCE_FORMS = ("store: projects/P/locations/L/datasets/D/dicomStores/S, dicomweb: https://.../dicomWeb, "
                 "idc: latest (or a release such as v23), or public: " + " | ".join(PUBLIC_DATASETS))


def _as_bool(value: Any) -> bool:
    try:
        return TypeAdapter(bool).validate_python(value)
    except ValidationError:
        return False


def _explicit_false(value: Any) -> bool:
    """A value that validates as the boolean false (an invalid one is reported elsewhere)."""
    try:
        return TypeAdapter(bool).validate_python(value) is False
    except ValidationError:
        return False


# Cross-field problems reported at the key (the key is what is wrong, not its value).
_AT_KEY: frozenset[PathKey] = frozenset({("bucket", "upload"), ("bucket", "uniform_access"),
                                         ("bucket", "public_access_prevention"), ("viewer", "hosting")})


def _cross_checks(data: Mapping[str, Any]) -> list[tuple[PathKey, str]]:
    """Rules spanning several values; tolerant of wrong types (those are reported elsewhere)."""
    stores = data.get("dicom_stores")
    out = _api_checks(data) + _role_checks(data, stores) + _bucket_checks(data) + _store_id_checks(stores)
    out += _source_checks(data, stores if isinstance(stores, list) else [])
    out += hosting_checks(data)
    return out


def _api_checks(data: Mapping[str, Any]) -> list[tuple[PathKey, str]]:
    """apis: each listed once, and the Cloud Healthcare API among them."""
    out: list[tuple[PathKey, str]] = []
    apis = data.get("apis", list(DEFAULT_APIS))
    if isinstance(apis, list):
        seen: dict[Any, int] = {}
        for i, api in enumerate(apis):
            if not isinstance(api, str):
                continue
            if api in seen:
                out.append((("apis", i), f"'{api}' is listed twice (already as apis[{seen[api]}]); list each API once"))
            else:
                seen[api] = i
        if HEALTHCARE_API not in seen:
            out.append(
                (("apis",), f"{HEALTHCARE_API} is missing, and nothing works without the Cloud Healthcare API; add it to apis "
                            f"(or remove apis to get the default: {', '.join(DEFAULT_APIS)})")
            )
    return out


def _role_checks(data: Mapping[str, Any], stores: Any) -> list[tuple[PathKey, str]]:
    """Roles of the project's and each store's grants: each once a grant, no basic role unless allowed."""
    out: list[tuple[PathKey, str]] = []
    allow_basic = _as_bool(data.get("allow_basic_roles", False))
    grant_lists: list[tuple[PathKey, Any]] = [(("iam",), data.get("iam"))]
    if isinstance(stores, list):
        grant_lists += [(("dicom_stores", i, "iam"), s.get("iam")) for i, s in enumerate(stores) if isinstance(s, dict)]
    for base, grants in grant_lists:
        if not isinstance(grants, list):
            continue
        for g, grant in enumerate(grants):
            roles = grant.get("roles") if isinstance(grant, dict) else None
            if not isinstance(roles, list):
                continue
            seen_roles: set[str] = set()
            for r, role in enumerate(roles):
                if not isinstance(role, str):
                    continue
                at = base + (g, "roles", r)
                if role in seen_roles:
                    out.append((at, f"role '{role}' is listed twice in this grant; list each role once"))
                seen_roles.add(role)
                if role in BASIC_ROLES and not allow_basic:
                    out.append(
                        (at, f"'{role}' is a basic role (broad access to everything in the project); grant narrower roles "
                             f"such as {', '.join(NARROW_ROLES)}, or set allow_basic_roles: true if you really mean it")
                    )
    return out


def _bucket_checks(data: Mapping[str, Any]) -> list[tuple[PathKey, str]]:
    """A bucket provision only reads (create: false) takes no keys that would change it."""
    out: list[tuple[PathKey, str]] = []
    bucket = data.get("bucket")
    if isinstance(bucket, dict) and bucket.get("upload") is not None and _explicit_false(bucket.get("create", True)):
        out.append((("bucket", "upload"), "upload needs create: true; with create: false the bucket is only read "
                                          "(upload the files yourself, or set create: true)"))
    if isinstance(bucket, dict) and _explicit_false(bucket.get("create", True)):
        for key in ("uniform_access", "public_access_prevention"):
            if bucket.get(key) is not None:
                out.append((("bucket", key), f"{key} changes the bucket, and with create: false provision only "
                                             "reads it (its settings are reported, not changed); remove "
                                             f"{key}, or set create: true"))
    return out


def _store_id_checks(stores: Any) -> list[tuple[PathKey, str]]:
    """dicom_stores: each ID once."""
    out: list[tuple[PathKey, str]] = []
    if isinstance(stores, list):
        first_at: dict[str, int] = {}
        for i, store in enumerate(stores):
            sid = store.get("id") if isinstance(store, dict) else None
            if not isinstance(sid, str):
                continue
            if sid in first_at:
                out.append(
                    (("dicom_stores", i, "id"),
                     f"DICOM store ID '{sid}' is used twice (first by dicom_stores[{first_at[sid]}]); each store needs its own ID")
                )
            else:
                first_at[sid] = i
    return out


def _source_checks(data: Mapping[str, Any], stores: list[Any]) -> list[tuple[PathKey, str]]:
    """viewer_sources: one kind each, unique names apart from the store IDs, never one of our own stores."""
    out: list[tuple[PathKey, str]] = []
    sources = data.get("viewer_sources")
    if not isinstance(sources, list):
        return out
    store_ids = {s.get("id"): i for i, s in enumerate(stores) if isinstance(s, dict) and isinstance(s.get("id"), str)}
    own_paths: dict[str, int] = {}
    project, dataset = data.get("project"), data.get("dataset")
    if isinstance(project, dict) and isinstance(dataset, dict):
        for sid, i in store_ids.items():
            own_paths[f"projects/{project.get('id')}/locations/{dataset.get('location')}/datasets/"
                      f"{dataset.get('id')}/dicomStores/{sid}"] = i
    names: dict[str, int] = {}
    for i, src in enumerate(sources):
        if not isinstance(src, dict):
            continue
        at = ("viewer_sources", i)
        kinds = [k for k in SOURCE_KINDS if src.get(k) is not None]
        if not kinds:
            out.append((at, f"names no source; add one of {_SOURCE_FORMS}"))
        for extra in kinds[1:]:
            out.append((at + (extra,), f"a source is one of store, dicomweb, idc or public, and this one already "
                                       f"has {kinds[0]}: move {extra} to its own entry (with its own name)"))
        if src.get("contact") is not None and kinds[:1] != ["store"]:
            out.append((at + ("contact",), "contact names who grants access to a store: it goes with store: "
                                           "(public datasets say themselves how to get access)"))
        name = src.get("name")
        if isinstance(name, str):
            if name in names:
                out.append((at + ("name",), f"source name '{name}' is used twice (first by viewer_sources"
                                            f"[{names[name]}]); each data source needs its own name"))
            elif name in store_ids:
                out.append((at + ("name",), f"'{name}' is already the name of dicom_stores[{store_ids[name]}] in the "
                                            "viewer; give the source another name"))
            names.setdefault(name, i)
        path = src.get("store")
        if isinstance(path, str) and path.strip() in own_paths:
            out.append((at + ("store",), f"this is the blueprint's own store (dicom_stores[{own_paths[path.strip()]}]), "
                                         "which the viewer shows already; list other projects' stores here"))
    return out


# --------------------------------------------------------------------------- errors


def _dotted(path: PathKey) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "the top level"
