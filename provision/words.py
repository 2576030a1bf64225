"""Words for people: counts with the right plural."""
from __future__ import annotations

IRREGULAR = {"study": "studies", "entry": "entries", "retry": "retries", "record entry": "record entries"}


def plural(n: int, word: str) -> str:
    """`1 study`, `2 studies`, `0 files`."""
    return f"{n} {word if n == 1 else IRREGULAR.get(word, word + 's')}"
