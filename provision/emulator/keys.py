"""Signing keys the emulator keeps: made on first use, kept in --data-dir when there is one (so
tokens and assertions signed before a restart still verify after it)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from provision.emulator.lazy import LazyModule

serialization = LazyModule("cryptography.hazmat.primitives.serialization")   # loaded on first use


def persisted_key(path: Path | None, generate: Callable[[], Any]) -> Any:
    """The private key stored at `path`, or a new one from `generate()` (written there, 0600)."""
    if path is not None and path.exists():
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    key = generate()
    if path is not None:
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        path.chmod(0o600)
    return key


def public_der(key: Any) -> bytes:
    """The public half as DER SubjectPublicKeyInfo, what a key ID is derived from."""
    return bytes(key.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo))
