"""Bounded cache of verified tokens, keyed by a hash of the whole token.

A hit costs a hash and a dict lookup. The token itself is never stored, only its
BLAKE2b digest. Entries die no later than the token's own ``exp`` (and the age limit, and
the cache TTL); the least recently stored entry is evicted when the cache is full
(:class:`~hardenkit._ttlmap.TTLMap`); :meth:`clear` drops everything when verification
keys change.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

from hardenkit._ttlmap import TTLMap
from hardenkit.auth.principal import Principal

__all__ = ["VerifiedTokenCache", "token_digest"]


def token_digest(token: bytes) -> bytes:
    """Return the cache key of ``token``: 256 bits, so collisions are not a concern."""
    return hashlib.blake2b(token, digest_size=32).digest()


class VerifiedTokenCache:
    """Principals of recently verified tokens, each until its own deadline.

    Args:
        max_entries: Most tokens remembered; ``0`` disables the cache.
        ttl: Longest time, in seconds, an entry is trusted without re-verification.
        clock: Wall clock (``time.time``): entries expire at ``exp``, a wall-clock time.
    """

    def __init__(
        self, max_entries: int, ttl: float, clock: Callable[[], float] = time.time
    ) -> None:
        if max_entries < 0 or ttl < 0:
            raise ValueError("max_entries and ttl must not be negative")
        self.max_entries = max_entries
        self.ttl = ttl
        self._clock = clock
        self._entries: TTLMap[bytes, Principal] = TTLMap(max_entries if ttl > 0 else 0, clock)

    @property
    def enabled(self) -> bool:
        """Whether anything is cached at all."""
        return self.max_entries > 0 and self.ttl > 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, digest: bytes) -> Principal | None:
        """Return the principal cached for ``digest`` if its entry is still alive."""
        return self._entries.get(digest)

    def put(self, digest: bytes, principal: Principal, valid_until: float) -> None:
        """Remember ``principal`` until ``valid_until`` or the TTL, whichever is first."""
        self._entries.put_until(digest, principal, min(valid_until, self._clock() + self.ttl))

    def clear(self) -> None:
        """Forget every entry (verification keys changed)."""
        self._entries.clear()
