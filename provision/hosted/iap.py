"""Verifying IAP's signed header, `x-goog-iap-jwt-assertion` (ES256, Google's keys).

What is checked (cloud.google.com/iap/docs/signed-headers-howto): the signature with the key the
header's `kid` names, from the JWK set IAP publishes; the algorithm is ES256 and nothing else
(`none`, HS256 with the public key as secret and any other algorithm fail); `exp` and `iat`
(with a small clock-skew allowance), `iss` = https://cloud.google.com/iap, `aud` = this very
service's audience. IAP's unsigned convenience headers (X-Goog-Authenticated-User-*) are never
read.

The key set is fetched with httpx, cached for an hour, and fetched again (at most every 30 s) when
an assertion names a key the cache does not hold, so IAP's key rotation needs no restart.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx
import jwt

from .settings import IAP_ISSUER

__all__ = ["Identity", "InvalidAssertion", "KeySet", "verify"]

ALGORITHM = "ES256"
LEEWAY_S = 30          # clock skew allowed on exp/iat: a choice (Google's samples leave it to the caller)
KEYS_TTL_S = 3600      # how long a fetched key set is used before it is fetched again
REFETCH_MIN_S = 30     # an unknown kid fetches again, but not more often than this


class InvalidAssertion(Exception):
    """The assertion is missing or does not verify; the message says why (it goes to the log only)."""


@dataclass(frozen=True)
class Identity:
    """Who IAP says is calling."""

    email: str
    subject: str


class _Verified:
    """Assertions already verified, until they expire: a browser sends the same one for many requests,
    and checking it again costs an ES256 verification and a base64 scan of every segment. Bounded."""

    SIZE = 4096

    def __init__(self) -> None:
        self._items: dict[tuple[str, str], tuple[Identity, float]] = {}

    def get(self, assertion: str, audience: str) -> Identity | None:
        hit = self._items.get((assertion, audience))
        if hit is None:
            return None
        if hit[1] <= time.time():
            self._items.pop((assertion, audience), None)
            return None
        return hit[0]

    def put(self, assertion: str, audience: str, identity: Identity, exp: float) -> None:
        if len(self._items) >= self.SIZE:
            now = time.time()
            self._items = {k: v for k, v in self._items.items() if v[1] > now}
            if len(self._items) >= self.SIZE:
                self._items.clear()
        self._items[(assertion, audience)] = (identity, exp)


class KeySet:
    """IAP's public keys from `url`, cached; `key(kid)` fetches again on an unknown kid."""

    def __init__(self, url: str, client: httpx.AsyncClient | None = None) -> None:
        self.url = url
        self._client = client
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched = 0.0
        self._lock = asyncio.Lock()
        self.verified = _Verified()   # per key set: an assertion is only ever trusted for the keys that signed it

    def bind(self, client: httpx.AsyncClient) -> None:
        """Use `client` (the app's, opened at startup) for fetching."""
        self._client = client

    async def _fetch(self) -> None:
        if self._client is None:
            raise httpx.TransportError("the app has not started (no HTTP client yet)")
        resp = await self._client.get(self.url, timeout=10.0)
        resp.raise_for_status()
        keys: dict[str, jwt.PyJWK] = {}
        for item in resp.json().get("keys", []):
            try:
                jwk = jwt.PyJWK.from_dict(item)
            except (jwt.exceptions.PyJWKError, jwt.exceptions.InvalidKeyError):
                continue  # a key type this library cannot read is simply not trusted
            if item.get("kid"):
                keys[item["kid"]] = jwk
        self._keys, self._fetched = keys, time.monotonic()

    async def key(self, kid: str) -> jwt.PyJWK:
        age = time.monotonic() - self._fetched
        if kid in self._keys and age < KEYS_TTL_S:
            return self._keys[kid]
        async with self._lock:
            age = time.monotonic() - self._fetched
            stale = age >= KEYS_TTL_S or (kid not in self._keys and age >= REFETCH_MIN_S)
            if not self._fetched or stale:
                try:
                    await self._fetch()
                except (httpx.HTTPError, ValueError) as exc:
                    if not self._keys:
                        raise InvalidAssertion(f"cannot fetch IAP keys from {self.url}: {exc}") from None
        if kid not in self._keys:
            raise InvalidAssertion(f"unknown key id {kid!r}")
        return self._keys[kid]


async def verify(assertion: str | None, *, audience: str, keys: KeySet) -> Identity:
    """The identity in a valid assertion; InvalidAssertion otherwise."""
    if not assertion:
        raise InvalidAssertion("no x-goog-iap-jwt-assertion header")
    known = keys.verified.get(assertion, audience)
    if known is not None:
        return known
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.exceptions.DecodeError as exc:
        raise InvalidAssertion(f"malformed assertion: {exc}") from None
    if header.get("alg") != ALGORITHM:
        raise InvalidAssertion(f"algorithm {header.get('alg')!r} is not {ALGORITHM}")
    jwk = await keys.key(str(header.get("kid", "")))
    try:
        claims = jwt.decode(
            assertion, jwk.key, algorithms=[ALGORITHM], audience=audience, issuer=IAP_ISSUER, leeway=LEEWAY_S,
            options={"require": ["exp", "iat", "aud", "iss", "sub", "email"]},
        )
    except jwt.exceptions.InvalidTokenError as exc:
        raise InvalidAssertion(f"{type(exc).__name__}: {exc}") from None
    identity = Identity(email=str(claims["email"]), subject=str(claims["sub"]))
    # Kept until `exp` exactly (no leeway): a cached answer is never more lenient than a fresh check.
    keys.verified.put(assertion, audience, identity, float(claims["exp"]))
    return identity
