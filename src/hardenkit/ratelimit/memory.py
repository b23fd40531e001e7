"""Rate-limit state in process memory: bounded, asyncio- and thread-safe."""

from __future__ import annotations

import threading
import time
from array import array
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

import structlog

from hardenkit.ratelimit.decision import (
    RateLimitDecision,
    RedisDownBehaviour,
    decision_from_gcra,
)
from hardenkit.ratelimit.gcra import gcra
from hardenkit.ratelimit.rate import Rate

__all__ = ["MemoryStore"]

_logger = structlog.get_logger("hardenkit.ratelimit")


def _monotonic_us() -> int:
    return time.monotonic_ns() // 1000


class MemoryStore:
    """GCRA state for at most ``max_keys`` keys, least recently used evicted first.

    A flood of distinct keys (spoofed tenants, random API keys, IPv6 clients) cannot
    exhaust memory: past ``max_keys`` the least recently used key is dropped, which is
    almost always one whose bucket is already full again. Decisions are the same as
    :class:`RedisStore`'s for the same sequence of calls.

    Args:
        max_keys: Keys kept at most.
        clock: Current time in integer microseconds; monotonic by default.
    """

    def __init__(
        self, *, max_keys: int = 100_000, clock: Callable[[], int] = _monotonic_us
    ) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.max_keys = max_keys
        self._clock = clock
        self._tats: OrderedDict[str, int] = OrderedDict()
        # The decision never awaits, so it is atomic on one event loop; the lock makes
        # it so across threads (several loops, sync callers) for about 0.1 µs.
        self._lock = threading.Lock()
        self.evicted_live_keys = 0
        """Keys dropped while still limiting (a flood); each drop forgets one client's use."""
        # The latest TAT of the keys dropped while still limiting, per rule (the part of
        # a key before its first ":") and slot of the key's hash: an upper estimate of a
        # key this store no longer knows (see forgotten_tat). Made on the first such drop.
        self._forgotten: dict[str, array[int]] = {}

    def __len__(self) -> int:
        return len(self._tats)

    def __contains__(self, key: object) -> bool:
        return key in self._tats

    async def decide(
        self, key: str, rate: Rate, cost: int, when_down: RedisDownBehaviour = "fallback"
    ) -> RateLimitDecision:
        """Take ``cost`` units of ``rate`` for ``key`` if they are available."""
        return self.decide_now(key, rate, cost)

    def decide_now(
        self, key: str, rate: Rate, cost: int, now: int | None = None
    ) -> RateLimitDecision:
        """Decide synchronously, at ``now`` microseconds (the store's clock by default)."""
        with self._lock:
            if now is None:
                now = self._clock()
            tats = self._tats
            outcome = gcra(tats.get(key), now, rate.emission_interval_us, rate.tolerance_us, cost)
            if outcome.new_tat is not None:
                tats[key] = outcome.new_tat
                tats.move_to_end(key)
                if len(tats) > self.max_keys:
                    self._evict(now)
            elif key in tats:  # a refused client stays known, or a flood would forget it
                tats.move_to_end(key)
        return decision_from_gcra(
            rate, cost, allowed=outcome.allowed, ahead_us=outcome.ahead_us, backend="memory"
        )

    def now_us(self) -> int:
        """The store's clock, in integer microseconds."""
        return self._clock()

    def tat(self, key: str) -> int | None:
        """The stored theoretical arrival time of ``key`` (``None``: a full bucket)."""
        return self._tats.get(key)

    def ahead_of(self, now: int) -> list[tuple[str, int]]:
        """Every key whose TAT is after ``now``, with its TAT (oldest use first)."""
        with self._lock:
            return [(key, tat) for key, tat in self._tats.items() if tat > now]

    def set_tat(self, key: str, tat: int) -> None:
        """Store ``key``'s TAT as another store decided it (Redis, seeding the fallback)."""
        with self._lock:
            tats = self._tats
            tats[key] = tat
            tats.move_to_end(key)
            if len(tats) > self.max_keys:
                self._evict(self._clock())

    def clear(self) -> None:
        """Forget every key (every bucket is full again), and the keys it dropped."""
        with self._lock:
            self._tats.clear()
            self._forgotten.clear()

    def forget(self, key: str) -> None:
        """Drop ``key``'s state (its bucket is full again)."""
        with self._lock:
            self._tats.pop(key, None)

    def forgotten_tat(self, key: str, now: int) -> int | None:
        """At least the TAT ``key`` had, if it may be a key dropped while still limiting.

        ``None`` when no key of its rule that was dropped still limiting shares its slot
        (1 of 16,384, by the process's salted string hash: a client cannot aim at one),
        or when all that did have refilled by ``now``. Otherwise the latest TAT among
        them: never below the key's own, and as far above it as the most spent key of
        the same rule and slot. A flood of keys that took one unit each costs a colliding
        key about one unit; only keys spent to their limit in every slot of a rule
        would leave its unknown keys nothing.
        """
        slots = self._forgotten.get(_rule_of(key)) or self._forgotten.get(_OVERFLOW)
        if slots is None or key in self._tats:
            return None
        tat = slots[_slot_of(key)]
        return tat if tat > now else None

    def _evict(self, now: int) -> None:
        key, tat = self._tats.popitem(last=False)
        if tat > now:
            self.evicted_live_keys += 1
            slots = self._forgotten_slots(key)
            slot = _slot_of(key)
            slots[slot] = max(slots[slot], tat)
            if self.evicted_live_keys & (self.evicted_live_keys - 1) == 0:  # 1, 2, 4, 8...
                _logger.warning(
                    "ratelimit_memory_store_full",
                    max_keys=self.max_keys,
                    evicted_live_keys=self.evicted_live_keys,
                    setting="HARDENKIT_RATE_LIMIT_MEMORY_MAX_KEYS",
                )

    def _forgotten_slots(self, key: str) -> array[int]:
        rule = _rule_of(key)
        slots = self._forgotten.get(rule)
        if slots is None:
            if len(self._forgotten) >= _FORGOTTEN_RULES:  # more rules than kept apart
                rule = _OVERFLOW
                slots = self._forgotten.get(rule)
            if slots is None:
                slots = self._forgotten[rule] = array("q", bytes(8 * _FORGOTTEN_SLOTS))
        return slots


_FORGOTTEN_SLOTS: Final = 16_384  # 128 KiB per rule, made only when a rule's key is dropped
_FORGOTTEN_RULES: Final = 32  # rules kept apart; the keys of any more share one set of slots
_OVERFLOW: Final = "\x00"  # no rule name holds it (they are [a-z0-9_.-])


def _rule_of(key: str) -> str:
    """The rule a stored key belongs to: ``<rule>:<digest>`` (``RateLimiter``'s keys)."""
    return key.partition(":")[0]


def _slot_of(key: str) -> int:
    return hash(key) % _FORGOTTEN_SLOTS
