"""An import's `gs://bucket/glob` URI (its bucket, the literal prefix to list, the glob as a regex),
and the buckets a blueprint's imports read: shared by the dicom-import kind and the bucket-iam
kind, which checks the Healthcare service agent may read them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # for annotations only: no import at run time
    from provision.blueprint.models import Blueprint


@dataclass
class Source:
    uri: str
    bucket: str
    glob: str

    @property
    def prefix(self) -> str:
        """The literal part of the object pattern, before any wildcard (used as the list prefix)."""
        m = re.search(r"[*?\[]", self.glob)
        return self.glob[: m.start()] if m else self.glob

    def regex(self) -> re.Pattern[str]:
        out = []
        i = 0
        g = self.glob
        while i < len(g):
            if g.startswith("**", i):
                out.append(".*")
                i += 2
            elif g[i] == "*":
                out.append("[^/]*")
                i += 1
            elif g[i] == "?":
                out.append("[^/]")
                i += 1
            else:
                out.append(re.escape(g[i]))
                i += 1
        return re.compile("".join(out) + r"\Z")


def parse_uri(uri: str) -> Source:
    rest = uri.removeprefix("gs://")
    bucket, _, glob = rest.partition("/")
    return Source(uri, bucket, glob)


def source_buckets(bp: Blueprint) -> list[str]:
    """The buckets the blueprint's imports read, in order, once each."""
    return list(dict.fromkeys(parse_uri(s.import_.uri).bucket for s in bp.dicom_stores if s.import_))
