"""Replay the recorded real Cloud Storage exchanges (shared/fidelity/gcp-recorded/
storage-bucket-crud.http.log) against the emulator and compare what can be compared across
runs: status codes and the JSON shape of each answer (keys, nesting, `kind` values). Values
such as timestamps, numbers and etags differ per run and are not compared.

Every difference must be listed in KNOWN_DIFFERENCES with a reason; anything else fails, and
so does a listed difference that no longer occurs.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import resourcemanager_v3

from provision.emulator import discovery
from recorded import Exchange, parse_log

LOG = Path(__file__).resolve().parent.parent.parent / "shared" / "fidelity" / "gcp-recorded" / "storage-bucket-crud.http.log"
PROJECT = "fidelity-storage-1"
UNIQUE = "a1b2c3d4"

# "exchange index: JSON path: what differs" -> why we accept it.
KNOWN_DIFFERENCES: dict[str, str] = {}

# The discovery schema each answer must meet, by exchange.
RESPONSE_SCHEMAS = {0: "Bucket", 1: "Bucket", 2: "Buckets"}


def fill(text: str) -> str:
    return text.replace("${projectId}", PROJECT).replace("${uniqueId}", UNIQUE)


def shape_differences(recorded, ours, path: str = "$") -> list[str]:
    """Where `ours` departs from `recorded` in keys, nesting, types of containers and `kind`s."""
    out: list[str] = []
    if isinstance(recorded, dict):
        if not isinstance(ours, dict):
            return [f"{path}: expected an object"]
        for key in sorted(set(recorded) - set(ours)):
            out.append(f"{path}: missing key {key!r}")
        for key in sorted(set(ours) - set(recorded)):
            out.append(f"{path}: extra key {key!r}")
        for key in sorted(set(recorded) & set(ours)):
            if key in ("kind", "@type") and recorded[key] != ours[key]:
                out.append(f"{path}.{key}: {ours[key]!r} instead of {recorded[key]!r}")
            out += shape_differences(recorded[key], ours[key], f"{path}.{key}")
    elif isinstance(recorded, list):
        if not isinstance(ours, list):
            return [f"{path}: expected an array"]
        if len(recorded) != len(ours):
            out.append(f"{path}: {len(ours)} elements instead of {len(recorded)}")
        for i, (a, b) in enumerate(zip(recorded, ours, strict=True)):
            out += shape_differences(a, b, f"{path}[{i}]")
    elif isinstance(recorded, (dict, list)) != isinstance(ours, (dict, list)):
        out.append(f"{path}: expected a scalar")
    return out


def replay(emu) -> tuple[list[Exchange], dict[str, str], list[int]]:
    """Run every exchange; (exchanges, differences found -> '', indexes that matched)."""
    exchanges = parse_log(LOG.read_text())
    found: dict[str, str] = {}
    matched: list[int] = []
    for n, ex in enumerate(exchanges):
        url = fill(ex.url).replace("https://storage.googleapis.com", emu.url)
        headers = {k: v for k, v in ex.headers.items() if k in ("Accept", "Content-Type")}
        r = requests.request(ex.method, url, data=fill(ex.body).encode() or None, headers=headers)
        diffs = []
        if r.status_code != ex.status:
            diffs.append(f"status {r.status_code} instead of {ex.status}")
        recorded = json.loads(fill(ex.response)) if ex.response else None
        ours = r.json() if r.content else None
        if (recorded is None) != (ours is None):
            diffs.append("body present" if ours is not None else "body missing")
        elif recorded is not None:
            diffs += shape_differences(recorded, ours)
            schema = RESPONSE_SCHEMAS.get(n)
            if schema:
                assert discovery.problems("storage.v1", schema, ours) == [], (n, ours)
        for d in diffs:
            found[f"{n}: {d}"] = ""
        if not diffs:
            matched.append(n)
    return exchanges, found, matched


def test_recorded_bucket_crud_replays(emulator):
    if hasattr(emulator.world, "crm"):
        resourcemanager_v3.ProjectsClient(
            credentials=AnonymousCredentials(), transport="rest",
            client_options=ClientOptions(api_endpoint=emulator.url),
        ).create_project(project=resourcemanager_v3.Project(project_id=PROJECT))
    exchanges, found, matched = replay(emulator)
    assert len(exchanges) == 4
    unexpected = sorted(set(found) - set(KNOWN_DIFFERENCES))
    stale = sorted(set(KNOWN_DIFFERENCES) - set(found))
    assert not unexpected, f"differences from the recording: {unexpected}"
    assert not stale, f"KNOWN_DIFFERENCES that no longer occur: {stale}"
    print(f"storage-bucket-crud: {len(matched)} of {len(exchanges)} exchanges match")


def test_parser_reads_the_recording():
    exchanges = parse_log(LOG.read_text())
    assert [(e.method, e.status) for e in exchanges] == [("POST", 200), ("GET", 200), ("GET", 200), ("DELETE", 204)]
    assert json.loads(fill(exchanges[0].body)) == {"name": f"test-{UNIQUE}"}


@pytest.mark.parametrize("recorded,ours,expected", [
    ({"a": 1, "b": {"c": 1}}, {"a": 2, "b": {"c": "x"}}, []),
    ({"a": 1}, {"a": 1, "z": 1}, ["$: extra key 'z'"]),
    ({"kind": "storage#bucket"}, {"kind": "storage#object"}, ["$.kind: 'storage#object' instead of 'storage#bucket'"]),
    ({"l": [{"a": 1}]}, {"l": [{}]}, ["$.l[0]: missing key 'a'"]),
])
def test_shape_comparison(recorded, ours, expected):
    assert shape_differences(recorded, ours) == expected
