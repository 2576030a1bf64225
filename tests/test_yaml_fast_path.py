"""Blueprints are read through libyaml's parser when they can be (a fleet reads hundreds at start-up),
with the pure-Python path's guarded composer: the Document (data, every key's and value's FILE:LINE:COL,
the scalars as written, every problem in its words) is the same either way, valid or not."""
from __future__ import annotations

from pathlib import Path

import pytest

from provision.blueprint import yamlpos

ROOT = Path(__file__).resolve().parent.parent

TEXTS = {
    "demo": (ROOT / "provision" / "blueprints" / "demo.yaml").read_text(),
    "example": (ROOT / "blueprints" / "example-gcp.yaml").read_text(),
    "crlf and flow": "version: 1\r\nproject: {id: p-1, labels: {a: b}}\r\niam:\r\n  - [x, y]\r\n",
    "duplicate key": "version: 1\nproject:\n  id: a\n  id: b\n",
    "tags": "version: !!str 1\nwhen: 2024-01-01\nodd: !custom x\nbig: 1" + "0" * 5000 + "\n",
    "env refs": "project:\n  id: '${PID}-x'\n  name: \"$${literal}\"\n  bad: ${MISSING}\n  worse: ${\n",
    "non-scalar key": "? [a, b]\n: c\n",
    "anchor": "a: &x 1\nb: 2\n",
    "alias": "a: &x [1]\nb: *x\n",
    "deep": "a: " + "[" * 40 + "]" * 40 + "\n",
    "syntax": "project:\n  id: a\n bad: [\n",
    "two documents": "a: 1\n---\nb: 2\n",
    "control character": "a: b\x07\n",
    "tab indent": "a:\n\tb: 1\n",
    "non-ascii": "project:\n  display_name: Radiologie Zürich\n  id: p\n",
    "empty": "# only a comment\n",
}


def read(path: Path) -> tuple:
    doc = yamlpos.read_yaml(path, env={"PID": "team"})
    return doc.data, doc.keys, doc.values, doc.scalars, doc.unreadable, doc.problems


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_libyaml_and_pure_python_read_alike(name, tmp_path, monkeypatch):
    path = tmp_path / "bp.yaml"
    path.write_bytes(TEXTS[name].encode())
    fast = read(path)
    monkeypatch.setattr(yamlpos, "CParser", None)   # libyaml absent: the pure-Python path alone
    assert read(path) == fast


def test_a_valid_ascii_blueprint_takes_the_fast_path(tmp_path):
    assert yamlpos.CParser is not None, "PyYAML without libyaml: a fleet's start-up reads blueprints ~10x slower"
    for name in ("demo", "example", "crlf and flow", "duplicate key", "tags", "env refs"):
        doc = yamlpos.Document(path=tmp_path / "bp.yaml")
        assert yamlpos._read_fast(TEXTS[name], doc, {"PID": "team"}), name
    for name in ("anchor", "alias", "deep", "syntax", "two documents", "control character", "empty"):
        doc = yamlpos.Document(path=tmp_path / "bp.yaml")
        assert not yamlpos._read_fast(TEXTS[name], doc, {}) and doc.data is None and not doc.problems, name
