"""The emulator's Cloud Run unpacks a deploy's archive reusing the viewer's part that earlier deploys
unpacked (provision/emulator/cloudrun/sources.py), and never runs files of another archive."""
from __future__ import annotations

import os
import re

from provision.emulator.cloudrun import sources
from provision.ohif.hosted_source import build_source

CONFIG = "window.config = { dataSources: [] };\n"


def viewer_dist(root, seed: bytes = b"1"):
    """A dist whose compressed part is large enough to be kept (random bytes do not compress)."""
    (root / "sub").mkdir(parents=True)
    (root / "index.html").write_bytes(b"<html>viewer " + seed + b"</html>")
    (root / "sub" / "big.wasm").write_bytes(seed + os.urandom(sources.CACHE_MIN + 4096))
    return root


def files(root):
    return {os.path.relpath(os.path.join(d, f), root): open(os.path.join(d, f), "rb").read()
            for d, _, names in os.walk(root) for f in names}


def whole(archive, into):
    into.mkdir()
    sources.extract(archive, into)
    return files(into)


def test_another_config_reuses_the_viewer_files_and_gets_its_own_config(tmp_path):
    dist, out, cache = viewer_dist(tmp_path / "d"), tmp_path / "out", tmp_path / "cache"
    a = build_source(out, config_js=CONFIG, dist=dist, level=1)
    b = build_source(out, config_js=CONFIG.replace("[]", "[1]"), dist=dist, level=1)
    (wa := tmp_path / "wa").mkdir()
    sources.unpack(a.path, wa, cache)
    (wb := tmp_path / "wb").mkdir()
    sources.unpack(b.path, wb, cache)
    assert files(wa) == whole(a.path, tmp_path / "ref-a") and files(wb) == whole(b.path, tmp_path / "ref-b")
    assert (wb / "app-config.js").read_text() == CONFIG.replace("[]", "[1]")
    big = "ohif/sub/big.wasm"
    assert os.stat(wa / big).st_ino == os.stat(wb / big).st_ino   # linked from one unpacked tree, not inflated twice
    assert len([p for p in cache.iterdir() if not p.name.startswith(".")]) == 1


def test_a_file_an_instance_changed_is_not_handed_to_the_next_deploy(tmp_path):
    dist, cache = viewer_dist(tmp_path / "d"), tmp_path / "cache"
    art = build_source(tmp_path / "out", config_js=CONFIG, dist=dist, level=1)
    (w1 := tmp_path / "w1").mkdir()
    sources.unpack(art.path, w1, cache)
    with open(w1 / "ohif/index.html", "r+b") as fh:   # the app writes into a shipped file (same inode)
        fh.write(b"<html>hacked")
    (w2 := tmp_path / "w2").mkdir()
    sources.unpack(art.path, w2, cache)
    assert files(w2) == whole(art.path, tmp_path / "ref")


def test_a_half_unpacked_or_damaged_tree_is_never_trusted(tmp_path):
    dist, cache = viewer_dist(tmp_path / "d"), tmp_path / "cache"
    art = build_source(tmp_path / "out", config_js=CONFIG, dist=dist, level=1)
    (w1 := tmp_path / "w1").mkdir()
    sources.unpack(art.path, w1, cache)
    entry = next(p for p in cache.iterdir() if not p.name.startswith("."))
    (entry / "tree/ohif/sub/big.wasm").unlink()      # a tree missing a file (as a crash mid-unpack would leave)
    (cache / ".tmp-crashed").mkdir()                 # and a crashed unpack's temp dir
    (w2 := tmp_path / "w2").mkdir()
    sources.unpack(art.path, w2, cache)
    assert files(w2) == whole(art.path, tmp_path / "ref")
    (entry / "manifest.json").unlink()               # a tree without its manifest: unpacked again
    (w3 := tmp_path / "w3").mkdir()
    sources.unpack(art.path, w3, cache)
    assert files(w3) == whole(art.path, tmp_path / "ref3")


def test_a_header_that_lies_about_its_parts_falls_back_to_the_whole_archive(tmp_path):
    dist = viewer_dist(tmp_path / "d")
    art = build_source(tmp_path / "out", config_js=CONFIG, dist=dist, level=1)
    raw = art.path.read_bytes()
    m = re.search(rb"provision-parts:[0-9a-f,;]+", raw[:200])
    first = m.group().split(b";")[0]
    head, second = m.group()[len(b"provision-parts:"):].split(b";")[:2]
    first = b";".join([head, second])
    fields = second.split(b",")
    fields[2] = fields[2][:-1] + (b"0" if fields[2][-1:] != b"0" else b"1")   # a wrong CRC-32 for the viewer's part
    wrong = b";".join([head, b",".join(fields)])
    lying = tmp_path / "lying.tar.gz"
    lying.write_bytes(raw.replace(first, wrong, 1))
    (w := tmp_path / "w").mkdir()
    sources.unpack(lying, w, tmp_path / "cache")
    assert files(w) == whole(art.path, tmp_path / "ref")
    assert [p.name for p in (tmp_path / "cache").iterdir()] == []   # nothing unpacked from it is kept


def test_at_most_keep_trees_are_kept(tmp_path):
    cache = tmp_path / "cache"
    for i in range(sources.KEEP_TREES + 2):
        art = build_source(tmp_path / f"out{i}", config_js=CONFIG, dist=viewer_dist(tmp_path / f"d{i}", str(i).encode()),
                           level=1)
        (w := tmp_path / f"w{i}").mkdir()
        sources.unpack(art.path, w, cache)
        assert (w / "ohif/index.html").read_bytes() == f"<html>viewer {i}</html>".encode()
    assert len(list(cache.iterdir())) == sources.KEEP_TREES
