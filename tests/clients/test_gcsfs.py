"""gcsfs, unmodified, against the emulator the way its documentation says (`endpoint_url=` and
`token="anon"`): writes (its multipart bodies separate parts with a bare `\\n`), reads, `cp`
(objects.rewrite), `mv` (objects.move), `merge` (objects.compose), and a large file written in
blocks (a resumable upload whose chunks gcsfs sends with POST).

gcsfs's experimental zonal-bucket layer (`ExtendedGcsFileSystem`, on by default) first asks the
gRPC Storage Control API for a bucket's layout; the emulator answers the JSON API only, so the
tests use the JSON-API filesystem `gcsfs.core.GCSFileSystem`, which is what
`GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false` selects.
"""
from __future__ import annotations

import json
import os

import pytest
from gcsfs import core as gcsfs_core

from emulator_helpers import create_project

PROJECT = "gcsfs-proj-1"


@pytest.fixture
def fs(emulator_factory, tmp_path):
    emu = emulator_factory(record=tmp_path / "record.jsonl")
    create_project(emu.url, PROJECT, enable=())
    fs = gcsfs_core.GCSFileSystem(endpoint_url=emu.url, token="anon", project=PROJECT, skip_instance_cache=True)
    fs.record = tmp_path / "record.jsonl"   # what the emulator saw, for the wire assertions
    fs.mkdir("gcsfs-bucket")
    return fs


def seen(fs) -> list[dict]:
    return [json.loads(line) for line in fs.record.read_text().splitlines()]


def test_write_read_copy_move_merge(fs):
    fs.pipe("gcsfs-bucket/studies/a.dcm", b"DICM\n\nfirst")
    fs.pipe("gcsfs-bucket/studies/b.dcm", b"second\n--")
    assert fs.cat("gcsfs-bucket/studies/a.dcm") == b"DICM\n\nfirst"
    assert fs.cat("gcsfs-bucket/studies/b.dcm") == b"second\n--"
    uploads = [r for r in seen(fs) if r["path"].startswith("/upload/")]
    assert [(r["query"]["uploadType"], r["status"]) for r in uploads] == [(["multipart"], 200)] * 2

    fs.cp("gcsfs-bucket/studies/a.dcm", "gcsfs-bucket/copies/a.dcm")
    fs.mv("gcsfs-bucket/studies/b.dcm", "gcsfs-bucket/moved/b.dcm")
    assert fs.find("gcsfs-bucket") == ["gcsfs-bucket/copies/a.dcm", "gcsfs-bucket/moved/b.dcm",
                                       "gcsfs-bucket/studies/a.dcm"]
    assert fs.cat("gcsfs-bucket/moved/b.dcm") == b"second\n--"
    verbs = [(verb, r["status"]) for r in seen(fs) for verb in ("rewriteTo", "moveTo") if f"/{verb}/" in r["path"]]
    assert verbs == [("rewriteTo", 200), ("moveTo", 200)]      # the move needed no copy-then-delete fallback

    fs.merge("gcsfs-bucket/all.dcm", ["gcsfs-bucket/studies/a.dcm", "gcsfs-bucket/moved/b.dcm"])
    assert fs.cat("gcsfs-bucket/all.dcm") == b"DICM\n\nfirstsecond\n--"
    fs.invalidate_cache("gcsfs-bucket")                        # gcsfs's merge leaves its listing cache stale
    assert fs.info("gcsfs-bucket/all.dcm")["componentCount"] == 2

    fs.cp("gcsfs-bucket/copies", "gcsfs-bucket/tree", recursive=True)
    assert fs.cat("gcsfs-bucket/tree/a.dcm") == b"DICM\n\nfirst"
    with pytest.raises(FileNotFoundError):
        fs.cp("gcsfs-bucket/nothing-here", "gcsfs-bucket/x")


def test_large_file_goes_up_in_resumable_chunks_sent_with_post(fs):
    data = os.urandom(12 * 1024 * 1024 + 3)
    with fs.open("gcsfs-bucket/big/volume.bin", "wb", block_size=5 * 1024 * 1024) as fh:
        fh.write(data)
    assert fs.info("gcsfs-bucket/big/volume.bin")["size"] == len(data)
    assert fs.cat("gcsfs-bucket/big/volume.bin") == data
    chunks = [r for r in seen(fs) if r["path"].startswith("/upload/") and "upload_id" in r["query"]]
    assert [r["method"] for r in chunks] == ["POST"] * len(chunks) and len(chunks) >= 2
    assert [r["status"] for r in chunks] == [308] * (len(chunks) - 1) + [200]
