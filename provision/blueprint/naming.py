"""Google's naming rules: is this a valid Google name, and if not, what is wrong and what would be valid.

Covers project IDs and display names, labels, parents, billing accounts, API service
names, IAM principals and roles, Cloud Storage bucket names and locations, Healthcare
dataset / DICOM store IDs and locations, time zones, `gs://` import URIs, viewer origins
and OAuth client IDs.

Each `check_*` rule takes a value and returns it (possibly normalised) or raises
`_Invalid` with "what is wrong; what would be valid". They are plain functions, free of
pydantic, so that one rule can reuse another (the import URI rule uses the bucket rule),
`provision.blueprint` can wrap each one as a field validator (turning `_Invalid` into a
positioned blueprint error), and tests can call them directly.
"""
# Long module (issue 20): a table of Google's naming rules, one short check per kind of name.
from __future__ import annotations

import difflib
import functools
import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "BASIC_ROLES",
    "HEALTHCARE_API",
    "HEALTHCARE_LOCATION_RE",
    "HEALTHCARE_MULTI_REGIONS",
    "NARROW_ROLES",
    "PROJECT_ID_RE",
    "PUBLIC_MEMBERS",
    "RESTRICTED_PROJECT_WORDS",
    "bucket_name_problem",
    "check_api",
    "check_billing_account",
    "check_bucket_location",
    "check_bucket_name",
    "check_display_name",
    "check_dicomweb_url",
    "check_healthcare_location",
    "check_idc_version",
    "check_import_uri",
    "check_label_key",
    "check_label_value",
    "check_labels",
    "check_member",
    "check_oauth_client_id",
    "check_origin",
    "check_parent",
    "check_project_id",
    "check_resource_id",
    "check_role",
    "check_source_name",
    "check_store_path",
    "check_time_zone",
    "closest",
]

HEALTHCARE_API = "healthcare.googleapis.com"

# Cloud Healthcare locations are not listed here: Google adds regions, so a list in the code goes
# stale. The blueprint checks the form of a location (a region such as us-central1, or one of the
# multi-regions); plan checks the name against the target's `projects.locations.list`.
HEALTHCARE_MULTI_REGIONS: tuple[str, ...] = ("us", "eu")
# A region's form: lowercase words joined by hyphens (us-central1, northamerica-northeast2).
HEALTHCARE_LOCATION_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)+$")
_ZONE_RE = re.compile(r"^([a-z]+-[a-z]+[0-9]+)-[a-z]$")   # a zone (us-central1-a): never a Healthcare location

# Google's basic roles grant broad access to everything in a project; the blueprint refuses
# them unless allowed and suggests the narrower roles instead.
BASIC_ROLES = ("roles/owner", "roles/editor", "roles/viewer")
NARROW_ROLES = (
    "roles/healthcare.dicomViewer",
    "roles/healthcare.dicomEditor",
    "roles/healthcare.datasetAdmin",
    "roles/serviceusage.serviceUsageAdmin",
)
# Principals meaning "anyone": never granted access to medical images.
PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")


class _Invalid(ValueError):
    """A value breaks one of Google's rules; the message says what is wrong and what would be valid.

    Private to the package: `provision.blueprint` catches it to report the message at the
    value's position (and the tests expect it); nothing else raises or catches it.
    """


def _chars(n: int) -> str:
    return f"{n} character" if n == 1 else f"{n} characters"


def closest(word: str, choices: Any, cutoff: float = 0.6) -> str | None:
    """The choice most like `word` (for a "did you mean" hint), or None if none is close enough."""
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=cutoff)
    return found[0] if found else None


PROJECT_ID_RE = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_PROJECT_ID_RULE = (
    "a project ID has 6-30 characters: lowercase letters, digits and hyphens, "
    "starts with a letter and does not end with a hyphen (e.g. ohif-team-a)"
)
RESTRICTED_PROJECT_WORDS = ("google", "null", "undefined", "ssl")


def check_project_id(value: str) -> str:
    """Google's project ID rule, plus the restricted words Google refuses in IDs."""
    why = None
    if not 6 <= len(value) <= 30:
        why = f"it is {_chars(len(value))} long"
    elif any(c.isupper() for c in value):
        why = "it has uppercase letters"
    elif not ("a" <= value[0] <= "z"):
        why = f"it starts with {value[0]!r}"
    elif bad := [c for c in value if not (c.isascii() and (c.isdigit() or "a" <= c <= "z" or c == "-"))]:
        why = f"it contains {bad[0]!r}"
    elif value.endswith("-"):
        why = "it ends with a hyphen"
    if why or not PROJECT_ID_RE.match(value):
        hint = ""
        if value.lower() != value and PROJECT_ID_RE.match(value.lower()):
            hint = f" Did you mean '{value.lower()}'?"
        raise _Invalid(f"'{value}' is not a valid project ID ({why or 'wrong form'}); {_PROJECT_ID_RULE}.{hint}")
    for word in RESTRICTED_PROJECT_WORDS:
        if word in value:
            raise _Invalid(
                f"project ID '{value}' contains the restricted string '{word}'; Google refuses project IDs "
                f"containing {', '.join(RESTRICTED_PROJECT_WORDS)}: choose another ID, e.g. "
                f"'{value.replace(word, 'img') if PROJECT_ID_RE.match(value.replace(word, 'img')) else 'ohif-team-a'}'"
            )
    return value


def check_display_name(value: str) -> str:
    """4-30 characters of letters, digits, hyphen, quotes, space and '!' (Resource Manager)."""
    bad = [c for c in value if not (c.isalnum() or c in "-'\" !")]
    if not 4 <= len(value) <= 30 or bad:
        why = f"it contains {bad[0]!r}" if bad else f"it is {_chars(len(value))} long"
        raise _Invalid(
            f"'{value}' is not a valid project display name ({why}); a display name has 4-30 characters: "
            "letters, digits, hyphen, single quote, double quote, space and '!' (e.g. OHIF Team A)"
        )
    return value


def _label_char(c: str) -> bool:
    # Google allows international letters in labels, but only lowercase ones.
    return c.isdigit() or c in "_-" or (c.isalpha() and not c.isupper())


def check_label_key(value: str) -> str:
    """Label keys: 1-63 characters, lowercase letters, digits, '_' and '-', starting with a letter."""
    if not (1 <= len(value) <= 63 and value[0].isalpha() and not value[0].isupper() and all(map(_label_char, value))):
        lower = value.lower()
        hint = f" Did you mean '{lower}'?" if lower != value and lower[:1].isalpha() and all(map(_label_char, lower)) else ""
        raise _Invalid(
            f"label key '{value}' is not valid; a label key has 1-63 characters: lowercase letters, digits, "
            f"'_' and '-', starting with a lowercase letter (e.g. team).{hint}"
        )
    return value


def check_label_value(value: str) -> str:
    """Label values: 0-63 characters, lowercase letters, digits, '_' and '-'."""
    if not (len(value) <= 63 and all(map(_label_char, value))):
        lower = value.lower()
        hint = f" Did you mean '{lower}'?" if lower != value and len(lower) <= 63 and all(map(_label_char, lower)) else ""
        raise _Invalid(
            f"label value '{value}' is not valid; a label value has 0-63 characters: lowercase letters, "
            f"digits, '_' and '-' (e.g. radiology).{hint}"
        )
    return value


def check_labels(value: dict[str, str]) -> dict[str, str]:
    """At most 64 labels on a project."""
    if len(value) > 64:
        raise _Invalid(f"{len(value)} labels given; a project can have at most 64 labels")
    return value


def check_parent(value: str) -> str:
    """`folders/N` or `organizations/N`."""
    if not re.fullmatch(r"(folders|organizations)/[0-9]+", value):
        digits = re.sub(r"\D", "", value)
        raise _Invalid(
            f"'{value}' is not a valid parent; write folders/NUMBER or organizations/NUMBER "
            f"(e.g. folders/{digits or '123456789012'})"
        )
    return value


_BILLING_RE = re.compile(r"[0-9A-F]{6}-[0-9A-F]{6}-[0-9A-F]{6}")


def check_billing_account(value: str) -> str:
    """`XXXXXX-XXXXXX-XXXXXX` in uppercase hex; a `billingAccounts/` prefix is dropped."""
    bare = value.removeprefix("billingAccounts/")
    if not _BILLING_RE.fullmatch(bare):
        hint = f" Did you mean '{bare.upper()}'?" if _BILLING_RE.fullmatch(bare.upper()) else ""
        raise _Invalid(
            f"'{value}' is not a valid billing account ID; write three groups of six uppercase hex digits "
            f"as XXXXXX-XXXXXX-XXXXXX (e.g. 012345-6789AB-CDEF01), optionally prefixed billingAccounts/.{hint}"
        )
    return bare


_API_RE = re.compile(r"^[a-z][a-z0-9-]*(\.[a-z0-9-]+)*\.googleapis\.com$")


def check_api(value: str) -> str:
    """A service name such as healthcare.googleapis.com."""
    if not _API_RE.match(value):
        guess = value.lower().strip().removesuffix(".googleapis.com")
        hint = f" Did you mean '{guess}.googleapis.com'?" if _API_RE.match(guess + ".googleapis.com") else ""
        raise _Invalid(
            f"'{value}' is not a Google API service name; write NAME.googleapis.com "
            f"(e.g. healthcare.googleapis.com).{hint}"
        )
    return value


_EMAIL_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}$")
_DOMAIN_RE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}$")
_MEMBER_KINDS = {"user": "email", "group": "email", "serviceAccount": "email", "domain": "domain"}
_MEMBER_FORMS = "user:EMAIL, group:EMAIL, serviceAccount:EMAIL or domain:DOMAIN (e.g. group:radiology@example.com)"


def check_member(value: str) -> str:
    """An IAM principal: user:, group:, serviceAccount: (email) or domain:; never public."""
    if value in PUBLIC_MEMBERS:
        who = "anyone on the internet" if value == "allUsers" else "anyone with a Google account"
        raise _Invalid(
            f"'{value}' would give {who} access; these are medical images, so provision refuses public "
            f"principals; grant a group instead: {_MEMBER_FORMS}"
        )
    kind, sep, rest = value.partition(":")
    if not sep:
        hint = f" Did you mean 'user:{value}' or 'group:{value}'?" if _EMAIL_RE.match(value) else ""
        raise _Invalid(f"'{value}' has no principal type; write {_MEMBER_FORMS}.{hint}")
    if kind not in _MEMBER_KINDS:
        near = closest(kind, _MEMBER_KINDS)
        hint = f" Did you mean '{near}:{rest}'?" if near else ""
        raise _Invalid(f"'{kind}:' is not a principal type; write {_MEMBER_FORMS}.{hint}")
    if _MEMBER_KINDS[kind] == "email" and not _EMAIL_RE.match(rest):
        raise _Invalid(f"'{rest}' is not an email address; write {kind}:NAME@DOMAIN (e.g. {kind}:radiology@example.com)")
    if _MEMBER_KINDS[kind] == "domain" and not _DOMAIN_RE.match(rest):
        raise _Invalid(f"'{rest}' is not a domain name; write domain:DOMAIN (e.g. domain:example.com)")
    return value


_ROLE_RE = re.compile(
    r"^(roles/[A-Za-z0-9_.]+"
    r"|projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/roles/[A-Za-z0-9_.]+"
    r"|organizations/[0-9]+/roles/[A-Za-z0-9_.]+)$"
)


def check_role(value: str) -> str:
    """A predefined role `roles/X` or a custom one `projects/P/roles/X`, `organizations/N/roles/X`."""
    if not _ROLE_RE.match(value):
        hint = f" Did you mean 'roles/{value}'?" if _ROLE_RE.match(f"roles/{value}") else ""
        raise _Invalid(
            f"'{value}' is not an IAM role; write roles/NAME (e.g. roles/healthcare.dicomViewer) or a custom "
            f"role projects/PROJECT/roles/NAME or organizations/NUMBER/roles/NAME.{hint}"
        )
    return value


_BUCKET_RULE = (
    "a bucket name has 3-63 characters (up to 222 with dots, 63 per dot-separated part): lowercase "
    "letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
)
# Cloud Storage refuses "google" and close misspellings of it; fold the usual digit swaps.
_LOOKALIKES = str.maketrans({"0": "o", "1": "l", "3": "e", "9": "g", "6": "g"})


def bucket_name_problem(name: str) -> str | None:
    """Why `name` is not a valid Cloud Storage bucket name, or None when it is."""
    if not name:
        return f"a bucket name cannot be empty; {_BUCKET_RULE}"
    bad = [c for c in name if not (c.isascii() and (c.islower() or c.isdigit() or c in "-_."))]
    if bad:
        hint = f" Did you mean '{name.lower()}'?" if name.lower() != name and bucket_name_problem(name.lower()) is None else ""
        return f"'{name}' is not a valid bucket name (it contains {bad[0]!r}); {_BUCKET_RULE}.{hint}"
    limit = 222 if "." in name else 63
    if not 3 <= len(name) <= limit:
        return f"'{name}' is not a valid bucket name (it is {_chars(len(name))} long); {_BUCKET_RULE}"
    if any(not 1 <= len(part) <= 63 for part in name.split(".")):
        return f"'{name}' is not a valid bucket name (a dot-separated part is empty or longer than 63); {_BUCKET_RULE}"
    if not (name[0].isalnum() and name[-1].isalnum()):
        return f"'{name}' is not a valid bucket name (it must start and end with a letter or digit); {_BUCKET_RULE}"
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        return f"'{name}' is not a valid bucket name (it looks like an IP address); {_BUCKET_RULE}"
    if name.startswith("goog"):
        return f"'{name}' is not a valid bucket name: Cloud Storage refuses names that start with 'goog'"
    if "google" in name.translate(_LOOKALIKES):
        return f"'{name}' is not a valid bucket name: Cloud Storage refuses names containing 'google' or close misspellings of it"
    return None


def check_bucket_name(value: str) -> str:
    """Cloud Storage bucket naming rules."""
    problem = bucket_name_problem(value)
    if problem:
        raise _Invalid(problem)
    return value


def check_bucket_location(value: str) -> str:
    """A Cloud Storage location: a multi-region (US, EU, ASIA), a dual-region or a region."""
    if not re.fullmatch(r"[A-Za-z0-9-]+", value):
        raise _Invalid(
            f"'{value}' is not a Cloud Storage location; write a multi-region (US, EU, ASIA) or a region (e.g. us-central1)"
        )
    return value


def check_resource_id(value: str, what: str = "ID", example: str = "imaging") -> str:
    """Healthcare dataset / DICOM store IDs: 1-256 letters, digits, '_', '-' and '.'."""
    bad = [c for c in value if not (c.isalnum() or c in "_-.")]
    if not 1 <= len(value) <= 256 or bad:
        why = f"it contains {bad[0]!r}" if bad else f"it is {_chars(len(value))} long"
        raise _Invalid(
            f"'{value}' is not a valid {what} ({why}); use 1-256 letters, digits, '_', '-' and '.' (e.g. {example})"
        )
    return value


def check_healthcare_location(value: str) -> str:
    """The form of a Cloud Healthcare location: a region (lowercase, e.g. us-central1) or a
    multi-region (us, eu). Whether the target offers it is checked by plan, against Google's list."""
    zone = _ZONE_RE.fullmatch(value.strip().lower())
    if not zone and len(value) <= 63 and (value in HEALTHCARE_MULTI_REGIONS or HEALTHCARE_LOCATION_RE.fullmatch(value)):
        return value
    near = None
    if zone:
        why, near = " (that is a zone; a dataset lives in a region)", zone.group(1)
    else:
        why = ""
        fixed = re.sub(r"[\s_]+", "-", value.strip().lower())
        if len(fixed) <= 63 and (fixed in HEALTHCARE_MULTI_REGIONS or HEALTHCARE_LOCATION_RE.fullmatch(fixed)):
            near = fixed
    hint = f"; did you mean '{near}'? A" if near else "; a"
    multi = " or ".join(HEALTHCARE_MULTI_REGIONS)
    raise _Invalid(
        f"'{value}' is not a Cloud Healthcare location name{why}{hint} location is a region in lowercase "
        f"(e.g. us-central1, europe-west4) or a multi-region ({multi}); "
        "plan checks it against the locations the target offers"
    )


@functools.cache
def _time_zones() -> frozenset[str]:
    import zoneinfo  # only needed when a blueprint is validated

    return frozenset(zoneinfo.available_timezones())


def check_time_zone(value: str) -> str:
    """An IANA time zone name (e.g. UTC, Europe/Berlin)."""
    zones = _time_zones()
    if value in zones:
        return value
    if not zones and value == "UTC":  # no tz database on this machine: accept the default
        return value
    near = closest(value, zones)
    hint = f"; did you mean '{near}'? Or" if near else "; write"
    raise _Invalid(f"'{value}' is not an IANA time zone name{hint} an IANA name such as UTC, Europe/Berlin or America/New_York")


def check_import_uri(value: str) -> str:
    """`gs://BUCKET/OBJECT-PATTERN`, with the wildcard rules of the Healthcare import."""
    form = "gs://BUCKET/PATH-PATTERN (e.g. gs://my-bucket/dicom/**.dcm)"
    if not value.startswith("gs://"):
        raise _Invalid(f"'{value}' is not a Cloud Storage URI; write {form}")
    bucket, _, obj = value[len("gs://") :].partition("/")
    problem = bucket_name_problem(bucket)
    if problem:
        raise _Invalid(f"in import URI '{value}': {problem}")
    if not obj or obj.endswith("/"):
        raise _Invalid(f"import URI '{value}' names no objects; add a pattern after the folder: {form}")
    if obj.count("**") > 1:
        raise _Invalid(f"in import URI '{value}', '**' may appear only once (in the last path segment); write {form}")
    if "**" in obj:
        first = obj.index("**")
        rest = obj[:first] + obj[first + 2 :]
        if "/" in obj[first:]:
            raise _Invalid(f"in import URI '{value}', '**' may only appear in the last path segment; write {form}")
        if "*" in rest or "?" in rest:
            raise _Invalid(
                f"in import URI '{value}', '**' cannot be combined with another wildcard ('*' or '?') "
                f"anywhere in the path; write {form}"
            )
    return value


STORE_PATH_FORM = "projects/PROJECT/locations/LOCATION/datasets/DATASET/dicomStores/STORE"


def check_store_path(value: str) -> str:
    """A Cloud Healthcare DICOM store's resource name (in any project):
    `projects/P/locations/L/datasets/D/dicomStores/S`. A DICOMweb URL of such a store is refused
    with the path to write instead (a store path lets plan check access; a URL cannot)."""
    text = value.strip()
    m = re.search(r"(projects/[^?#]*?)(/dicomWeb)?/?$", text)
    if text.startswith(("http://", "https://")):
        hint = ""
        if m and "/dicomStores/" in m.group(1):
            hint = f"; for a Cloud Healthcare store write its path, store: {m.group(1)}"
        raise _Invalid(f"'{value}' is a URL, not a store path{hint}; a plain DICOMweb root goes in dicomweb: instead")
    if text.endswith("/dicomWeb"):
        raise _Invalid(f"'{value}' ends with /dicomWeb; write the store path alone: {text[: -len('/dicomWeb')]}")
    parts = text.split("/")
    keys = ("projects", "locations", "datasets", "dicomStores")
    if len(parts) != 8 or tuple(parts[0::2]) != keys or not all(parts[1::2]):
        raise _Invalid(f"'{value}' is not a DICOM store path; write {STORE_PATH_FORM} "
                       "(e.g. projects/team-b-imaging/locations/us-central1/datasets/imaging/dicomStores/primary)")
    project, location, dataset, store = parts[1::2]
    try:
        check_project_id(project)
        check_healthcare_location(location)
        check_resource_id(dataset, what="dataset ID")
        check_resource_id(store, what="DICOM store ID", example="primary")
    except _Invalid as exc:
        raise _Invalid(f"in store path '{value}': {exc}") from None
    return text


def check_dicomweb_url(value: str) -> str:
    """A plain DICOMweb root (a public proxy, another PACS): an http(s) URL with a host and no
    query or fragment; https unless the host is a loopback one. A trailing '/' is dropped."""
    form = "https://HOST/PATH/dicomWeb (the root OHIF appends /studies to)"
    try:
        parts = urlsplit(value)
        _ = parts.port  # urlsplit checks the port only when it is read
    except ValueError:
        raise _Invalid(f"'{value}' is not a valid URL; write {form}") from None
    why = None
    if parts.scheme not in ("http", "https"):
        why = f"the scheme must be https, not {parts.scheme or 'missing'!r}"
    elif not parts.hostname:
        why = "it has no host"
    elif parts.username is not None or parts.password is not None:
        why = "it has a user name or password (the viewer's config is public: put no secret in it)"
    elif parts.query or "?" in value or parts.fragment or "#" in value:
        why = "it has a query or fragment"
    elif parts.scheme == "http" and parts.hostname not in ("localhost", "127.0.0.1", "::1"):
        why = "plain http is only for a local server; a remote DICOMweb root needs https"
    if why:
        raise _Invalid(f"'{value}' is not a DICOMweb root ({why}); write {form}")
    if parts.hostname == "healthcare.googleapis.com" and "/dicomStores/" in parts.path:
        m = re.search(r"(projects/.*?/dicomStores/[^/]+)", parts.path)
        raise _Invalid(f"'{value}' is a Cloud Healthcare store: write store: {m.group(1) if m else STORE_PATH_FORM} "
                       "instead, so plan can check your access to it")
    return value.rstrip("/")


_SOURCE_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")


def check_source_name(value: str) -> str:
    """An OHIF data source name (`sourceName`, used in the viewer's `?datasources=` URL parameter)."""
    if not _SOURCE_NAME_RE.match(value):
        raise _Invalid(f"'{value}' is not a valid source name; use 1-63 letters, digits, '_' and '-', starting "
                       "with a letter (it appears in the viewer's URL as ?datasources=NAME), e.g. idc")
    return value


def check_idc_version(value: Any) -> str:
    """An NCI Imaging Data Commons release: `latest` (resolved by plan) or `vN` (a number N is read as vN)."""
    if isinstance(value, bool):
        raise _Invalid(f"'{value}' is not an IDC release; write latest, or a release such as v23")
    text = str(value).strip()
    if text == "latest":
        return text
    m = re.fullmatch(r"[vV]?([0-9]{1,4})", text)
    if not m or int(m.group(1)) < 1:
        raise _Invalid(f"'{value}' is not an IDC release; write latest (plan picks the newest store IDC "
                       "publishes and says which), or a release such as v23")
    return f"v{int(m.group(1))}"


def check_origin(value: str) -> str:
    """An http(s) origin: scheme://host[:port], no path, query or fragment. A trailing '/' is dropped."""
    form = "scheme://host[:port] with http or https and nothing after it (e.g. http://localhost:3000)"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise _Invalid(f"'{value}' is not a valid origin; write {form}") from None
    why = None
    if parts.scheme not in ("http", "https"):
        why = f"the scheme must be http or https, not {parts.scheme or 'missing'!r}"
    elif not parts.hostname:
        why = "it has no host"
    elif parts.username is not None or parts.password is not None:
        why = "it has a user name or password"
    elif parts.path not in ("", "/"):
        why = f"it has a path ({parts.path})"
    elif parts.query or "?" in value:
        why = "it has a query"
    elif parts.fragment or "#" in value:
        why = "it has a fragment"
    elif port == 0:
        why = "port 0 cannot be served"
    if why:
        raise _Invalid(f"'{value}' is not a valid origin ({why}); write {form}")
    # OAuth "authorized JavaScript origins" have no trailing slash.
    return value.rstrip("/")


_CLIENT_ID_RE = re.compile(r"^[0-9]+-[a-z0-9]+\.apps\.googleusercontent\.com$")


def check_oauth_client_id(value: str) -> str:
    """An OAuth web client ID: NUMBER-ID.apps.googleusercontent.com."""
    if not _CLIENT_ID_RE.match(value):
        raise _Invalid(
            f"'{value}' is not an OAuth client ID; it looks like NUMBER-ID.apps.googleusercontent.com "
            "(e.g. 123456789012-abc123def456.apps.googleusercontent.com), copied from the console's Credentials page"
        )
    return value
