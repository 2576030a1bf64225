"""What every API's backend (`<api>/state.py`, the state apart from its HTTP handlers) starts
from: the World it lives in, its document store, and the documents the API starts with.

World.reset clears every document; a backend's seeds (`seeds()`: a billing account, a Workspace
customer, ...) are written when it is attached and again after every reset, each only where it is
absent, in one transaction. A backend that keeps more than documents (threads, keys, caches)
extends `reset` and calls this one.
"""
from __future__ import annotations

from provision.emulator.worldview import WorldView


class ApiBackend:
    """An API's state over the World's stores (`world`, `docs`), seeded (`seeds()`) at start and after every reset."""

    def __init__(self, world: WorldView):
        self.world = world
        self.docs = world.docs
        self.seed()

    def seeds(self) -> list[tuple[str, str, dict]]:
        """The (kind, key, document) records this API starts with: none unless a backend says so."""
        return []

    def seed(self) -> None:
        """Write each seed record that is absent (one transaction: a reader sees all or none)."""
        records = self.seeds()
        if not records:
            return
        with self.world.db.transaction():
            for kind, key, doc in records:
                if self.docs.get(kind, key) is None:
                    self.docs.put(kind, key, doc)

    def reset(self) -> None:
        """After World.reset cleared every document: the seeds come back."""
        self.seed()
