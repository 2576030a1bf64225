"""A streamed body through one step: decoded, rewritten, re-encoded (proxy.py chains them)."""
from __future__ import annotations

from typing import AsyncIterator, Callable


async def through(chunks: AsyncIterator[bytes], step: Callable[[bytes], bytes],
                  finish: Callable[[], bytes]) -> AsyncIterator[bytes]:
    """`chunks` fed to `step` (which may hold bytes back), then what `finish()` releases; empty pieces
    are not passed on."""
    async for chunk in chunks:
        out = step(chunk)
        if out:
            yield out
    tail = finish()
    if tail:
        yield tail
