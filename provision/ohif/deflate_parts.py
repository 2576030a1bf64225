"""One gzip member written from independently compressed parts, so that a large part that never
changes is compressed once and copied afterwards.

Each part is a raw deflate stream ended by a sync flush (byte-aligned, not final) or, for the
last part, finished; concatenated they are one valid deflate stream (pigz writes its blocks the
same way). The member's CRC-32 is combined from the parts' own (zlib's crc32_combine, which
Python's zlib does not expose). One member, not several concatenated gzip members: Python's
streaming tar reader (`tarfile.open(mode="r|gz")`) stops silently at the end of the first member.

The gzip header says where the parts are, as its comment (RFC 1952 FCOMMENT, which gzip readers
skip; not the extra field: Python 3.11's streaming tar reader inflates FEXTRA's bytes instead of
skipping them): `provision-parts:` then, for each part, its compressed length, inflated length and
CRC-32 (hex, `,` between fields, `;` between parts). Each part was compressed on its own (no shared
window), so a reader may inflate one part without the others: the emulator's Cloud Run reuses the
unpacked files of a part it has seen (the viewer's, the same in every blueprint's archive) instead
of inflating 213 MB on every deploy (provision/emulator/cloudrun/sources.py).
"""
from __future__ import annotations

import shutil
import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Iterable, Protocol

_POLY = 0xEDB88320   # CRC-32 (reflected), as zlib and gzip use


class Writer(Protocol):
    def write(self, data: bytes, /) -> int: ...


@dataclass(frozen=True)
class Part:
    """A compressed part: its raw deflate bytes, and the CRC-32 and length of what they inflate to."""

    data: bytes
    crc: int
    length: int


def compress(chunks: Iterable[bytes], level: int, *, last: bool) -> Part:
    """Deflate `chunks` as one part: sync-flushed (others may follow), or finished when `last`."""
    z = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    out, crc, length = [], 0, 0
    for chunk in chunks:
        out.append(z.compress(chunk))
        crc, length = zlib.crc32(chunk, crc), length + len(chunk)
    out.append(z.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH))
    return Part(b"".join(out), crc, length)


def _times(matrix: list[int], vector: int) -> int:
    total, i = 0, 0
    while vector:
        if vector & 1:
            total ^= matrix[i]
        vector >>= 1
        i += 1
    return total


def _square(matrix: list[int]) -> list[int]:
    return [_times(matrix, row) for row in matrix]


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """The CRC-32 of A + B from crc32(A), crc32(B) and len(B) (zlib's crc32_combine)."""
    if len2 <= 0:
        return crc1
    op = [_POLY] + [1 << n for n in range(31)]   # the operator for one zero bit
    for _ in range(3):                             # squared thrice: for one zero byte
        op = _square(op)
    while len2:   # apply len2 zero bytes to crc1, one bit of len2 at a time
        if len2 & 1:
            crc1 = _times(op, crc1)
        len2 >>= 1
        op = _square(op)
    return crc1 ^ crc2


COMMENT_PREFIX = b"provision-parts:"   # the gzip comment that lists the parts (module docstring)


def header(level: int, parts: Iterable[tuple[int, int, int]] = ()) -> bytes:
    """A gzip header without a name or time, as `gzip.GzipFile(filename="", mtime=0)` writes it,
    plus, given (compressed length, inflated length, CRC-32) of each part, the comment listing them."""
    xfl = 2 if level == 9 else 4 if level == 1 else 0
    listed = ";".join(f"{c:x},{n:x},{crc:x}" for c, n, crc in parts).encode()
    if not listed:
        return b"\x1f\x8b\x08\x00" + struct.pack("<I", 0) + bytes([xfl, 255])
    return b"\x1f\x8b\x08\x10" + struct.pack("<I", 0) + bytes([xfl, 255]) + COMMENT_PREFIX + listed + b"\0"


def write(out: Writer, parts: Iterable[Part | tuple[BinaryIO, int, int, int]], level: int) -> None:
    """Write one gzip member of `parts`, in order, the last one finished. A part may also be given
    as (an open file positioned at its deflate bytes, its CRC-32, its length, its deflate bytes'
    length), copied as it is read."""
    parts = list(parts)
    out.write(header(level, [(len(p.data), p.length, p.crc) if isinstance(p, Part) else (p[3], p[2], p[1])
                             for p in parts]))
    crc, length = 0, 0
    for part in parts:
        if isinstance(part, Part):
            out.write(part.data)
            part_crc, part_len = part.crc, part.length
        else:
            src, part_crc, part_len, _ = part
            shutil.copyfileobj(src, out, 1 << 20)
        crc, length = crc32_combine(crc, part_crc, part_len), length + part_len
    out.write(struct.pack("<II", crc & 0xFFFFFFFF, length & 0xFFFFFFFF))
