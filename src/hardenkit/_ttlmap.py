"""A bounded map whose entries expire: hardenkit's one in-memory cache.

Every entry has its own deadline. Writing an entry moves it to the back; each write
drops expired entries from the front (for free), and when the map is full the least
recently written goes, which is the one closest to expiring when TTLs are alike. Reads never
reorder, so a hit costs one dict lookup and one clock read.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

__all__ = ["TTLMap"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TTLMap(Generic[K, V]):
    """At most ``max_entries`` values, each alive until its deadline on ``clock``.

    Args:
        max_entries: Most entries kept; ``0`` keeps nothing (every write is dropped).
        clock: The clock deadlines are read on (``time.monotonic``, or ``time.time`` for
            deadlines that are wall-clock times such as a token's ``exp``).

    Raises:
        ValueError: A negative ``max_entries``.
    """

    __slots__ = ("_clock", "_entries", "max_entries")

    def __init__(self, max_entries: int, clock: Callable[[], float]) -> None:
        if max_entries < 0:
            raise ValueError("max_entries must not be negative")
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[K, tuple[V, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[K]:
        """The keys held, expired ones not yet dropped included."""
        return iter(self._entries)

    def get(self, key: K) -> V | None:
        """Return the value of ``key`` while it is alive, else ``None`` (and forget it)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self._clock() < entry[1]:
            return entry[0]
        del self._entries[key]
        return None

    def put(self, key: K, value: V, ttl: float) -> None:
        """Keep ``value`` for ``ttl`` seconds."""
        self.put_until(key, value, self._clock() + ttl)

    def put_until(self, key: K, value: V, expires_at: float) -> None:
        """Keep ``value`` until ``expires_at`` (a time on the map's clock)."""
        if self.max_entries == 0:
            return
        entries = self._entries
        entries[key] = (value, expires_at)
        entries.move_to_end(key)
        self._trim()

    def add(self, key: K, value: V, ttl: float) -> V | None:
        """Keep ``value`` unless ``key`` is alive; return the live value, ``None`` if added."""
        found = self.get(key)
        if found is None:
            self.put(key, value, ttl)
        return found

    def pop(self, key: K) -> None:
        """Forget ``key``."""
        self._entries.pop(key, None)

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()

    def _trim(self) -> None:
        entries = self._entries
        now = self._clock()
        while entries:
            key, (_, expires_at) = next(iter(entries.items()))
            if expires_at > now and len(entries) <= self.max_entries:
                return
            del entries[key]
