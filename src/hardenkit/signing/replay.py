"""Remembering message and event ids in Redis (first writer wins, with a TTL); memory when down.

:class:`ReplayStore` answers two questions. ``remember(key, ttl)``: is this the first time
this nonce is seen? (signed messages: a second sighting is a replay). ``claim(key, ...)``:
may this delivery be processed now? (webhooks: a delivery whose id was processed is a
duplicate; one still being processed elsewhere is in progress). A claim is settled with
``complete`` (processed: remember it for ``ttl``) or ``release`` (failed: forget it, so
the sender's retry is processed).

Every operation is one command or one script on one key, so the store works unchanged on
Redis Cluster.
Redis is reached through a :class:`~hardenkit.stores.RedisGuard` (the same rules as every
Redis-backed store: slow is not down). While Redis is unavailable, ``when_down`` decides:

* ``fallback``: a bounded in-memory store answers. It is per process: ids seen by other
  instances are not known there, so with several instances a delivery redelivered to
  another one during the outage is processed again. Results obtained from Redis are
  mirrored into memory, so the fallback starts with what this process saw.
* ``closed``: nothing is claimed or remembered; :class:`ReplayStoreUnavailableError` (503 with
  ``Retry-After``) asks the sender to retry, so no delivery is ever processed twice.

A write Redis did not answer is owed, not dropped. Each claim carries a token of its own
(``p:<token>``), so only its holder settles it. A processed mark that timed out (Redis
paused, a blip) is kept in memory, where it makes this process answer ``duplicate``
for the id, and written again in the background until Redis takes it or its ``ttl``
ends; meanwhile the claim in Redis still says *processing*, so other instances answer
"in progress" (409). A claim whose command timed out may still land in Redis after its
caller was answered 503, and a release may be lost the same way: both are withdrawn in
the background by a tombstone (``x:<token>``) that any new claim may replace but that the
late command itself cannot, so a retry is not held off for ``processing_ttl``. A nonce
(:meth:`ReplayStore.remember`) is taken the same way, and withdrawn the same way when
its caller was answered 503: the sender's retry of that message is not a replay. A
nonce command that Redis ran after its caller may have stopped waiting (by Redis's
clock, from the offset the previous reply showed) is marked late, and the same nonce
answers 503 (retry), not "replayed": until its withdrawal lands with ``closed``, so a
retry that comes back before it is asked again, never refused for good; until the
nonce's TTL when nothing is owed (``fallback``, or a caller that still got the reply).
A nonce taken in time answers "replayed" as before.

What that does not cover, said precisely: a process that dies between its handler's
answer and the mark reaching Redis takes the owed mark with it, and a claim in Redis
lapses after ``processing_ttl``: Redis must be back, with its data, before then for the
id to stay refused everywhere. A redelivery after either is processed again.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Final, Literal

import structlog

from hardenkit._ttlmap import TTLMap
from hardenkit.errors import ErrorCode, HardenError, Refusal, retry_after_seconds
from hardenkit.health import CheckResult, HealthStatus
from hardenkit.stores import RedisGuard

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

__all__ = ["ClaimOutcome", "ReplayRedisDown", "ReplayStore", "ReplayStoreUnavailableError"]

ReplayRedisDown = Literal["fallback", "closed"]
"""While Redis is unavailable: remember ids per process (``fallback``) or refuse (``closed``)."""

_SEEN = "1"
_PROCESSING = "p"
_DONE = "d"
DEFAULT_MAX_MEMORY_ENTRIES = 100_000
_OWED_RETRY_SECONDS = 0.25
"""How often owed writes are tried again (each goes through the guard: while it is on the
fallback, a try costs nothing and sends nothing)."""
_LATE_MARGIN_SECONDS = 0.25
"""How much later than its guard's timeout a nonce command must run to be marked late."""

_logger = structlog.get_logger("hardenkit.signing")

# A claim is taken when the id is unknown or withdrawn by another claim's holder; a
# withdrawn claim's own late command (ARGV[1] is its token) does not land.
_CLAIM: Final = """
local state = redis.call('GET', KEYS[1])
if not state or (string.sub(state, 1, 2) == 'x:' and state ~= 'x:' .. ARGV[1]) then
  redis.call('SET', KEYS[1], 'p:' .. ARGV[1], 'PX', ARGV[2])
  return false
end
return state
"""
# A nonce is taken as a claim is (a token of its own). One that runs after ARGV[3] (the
# time its sender stops waiting, by Redis's clock, microseconds; '' when not known) is
# marked ':l', late: its sender may have answered 503 and owe its withdrawal, so the
# same nonce answers "pending" (retry) rather than "seen" until that lands. Returns the
# outcome ('new', 'pending' or the state) and Redis's time.
_REMEMBER: Final = """
local time = redis.call('TIME')
local now = time[1] * 1000000 + time[2]
local state = redis.call('GET', KEYS[1])
if not state or (string.sub(state, 1, 2) == 'x:' and state ~= 'x:' .. ARGV[1]) then
  local mark = 'p:' .. ARGV[1]
  if ARGV[3] ~= '' and now > ARGV[3] + 0 then mark = mark .. ':l' end
  redis.call('SET', KEYS[1], mark, 'PX', ARGV[2])
  return {'new', now}
end
if string.sub(state, 1, 2) == 'p:' and string.sub(state, -2) == ':l' then
  return {'pending', now}
end
return {state, now}
"""
# Withdraw this holder's claim or nonce, or keep its late command from landing: never
# another's.
_WITHDRAW: Final = """
local state = redis.call('GET', KEYS[1])
local mine = 'p:' .. ARGV[1]
if not state or state == mine or state == mine .. ':l' then
  redis.call('SET', KEYS[1], 'x:' .. ARGV[1], 'PX', ARGV[2])
end
return 0
"""


@dataclass(frozen=True, slots=True)
class _Owed:
    """A write Redis did not answer: a processed mark, or a withdrawal of a claim."""

    done: bool
    token: str
    ttl: float


class ClaimOutcome(StrEnum):
    """What :meth:`ReplayStore.claim` found."""

    NEW = "new"
    """Not seen before: process it, then call ``complete`` or ``release``."""
    DUPLICATE = "duplicate"
    """Already processed: do not process it again."""
    IN_PROGRESS = "in_progress"
    """Claimed by a delivery still being processed: ask the sender to retry later."""


class ReplayStoreUnavailableError(HardenError):
    """Redis is unavailable and the replay store is ``closed``: 503, retry later.

    Nothing was claimed or remembered, so the sender's retry is processed normally.
    """

    def __init__(self, retry_after: float) -> None:
        refusal = Refusal.retry_later(
            503,
            ErrorCode.SERVICE_UNAVAILABLE,
            "Replay protection is unavailable; retry later.",
            wait=retry_after,
        )
        super().__init__(
            refusal.code,
            status=refusal.status,
            detail=refusal.detail,
            headers=dict(refusal.headers),
        )
        self.retry_after_seconds = retry_after_seconds(retry_after)


class ReplayStore:
    """Ids remembered in Redis (first writer wins, with a TTL), with a bounded memory fallback.

    Args:
        redis: An asyncio Redis or RedisCluster client; ``None`` keeps ids in memory only
            (one process).
        guard: The :class:`~hardenkit.stores.RedisGuard` to share (``install()`` passes the
            app's); when omitted and ``redis`` is given, the store makes its own
            (:meth:`RedisGuard.of_store`, as every Redis-backed store does).
        prefix: Prepended to every key, so several apps can share one Redis.
        max_memory_entries: Bound of the in-memory store.
        timeout: Seconds a Redis call may take before the fallback answers (own guard only).
        retry_interval: Seconds before Redis is probed again after a failure (own guard only).
        clock: Monotonic clock of the memory store, replaceable in tests.
        when_down: While Redis is unavailable: ``fallback`` (ids in this process's
            memory) or ``closed`` (raise :class:`ReplayStoreUnavailableError`). Ignored
            without ``redis``.

    Raises:
        ValueError: A bound below 1, an unknown ``when_down``, or a guard without
            ``redis``.
    """

    def __init__(
        self,
        redis: Redis | RedisCluster | None = None,
        *,
        guard: RedisGuard | None = None,
        prefix: str = "hardenkit:replay:",
        max_memory_entries: int = DEFAULT_MAX_MEMORY_ENTRIES,
        timeout: float = 0.05,
        retry_interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        when_down: ReplayRedisDown = "fallback",
    ) -> None:
        if max_memory_entries <= 0:
            raise ValueError("max_memory_entries must be positive")
        if when_down not in ("fallback", "closed"):
            raise ValueError("when_down must be 'fallback' or 'closed'")
        self.when_down: ReplayRedisDown = when_down
        self._redis = redis
        self.guard = RedisGuard.of_store(
            "replay", redis, guard, timeout=timeout, retry_interval=retry_interval
        )
        self.prefix = prefix
        self._memory: TTLMap[str, str] = TTLMap(max_memory_entries, clock)
        self._held: TTLMap[str, tuple[str, float]] = TTLMap(max_memory_entries, clock)
        """Token and ``processing_ttl`` of each claim this process holds (lapse with it)."""
        self._owed: TTLMap[str, _Owed] = TTLMap(max_memory_entries, clock)
        self._catching_up: asyncio.Task[None] | None = None
        self._clock_offset_us: int | None = None
        """Redis's clock minus this process's (``_now_us``), at most: from the last reply."""
        # Marked late past the guard's timeout plus a margin: a command that merely waited
        # on a busy host is not marked (its nonce's replays would answer 503, not 401).
        timeout = self.guard.timeout if self.guard else 0.0
        self._give_up_us = round((timeout + _LATE_MARGIN_SECONDS) * 1_000_000)

    @property
    def owed_writes(self) -> int:
        """Marks and withdrawals not yet written to Redis (written again in the background)."""
        return len(self._owed)

    @property
    def using_fallback(self) -> bool:
        """Whether answers currently come from memory (always, without Redis)."""
        return self.guard is None or self.guard.using_fallback

    def _refuse_if_closed(self) -> None:
        """Called instead of Redis: refuse when ``closed`` rather than answer from memory."""
        if self.when_down == "closed" and self.guard is not None:
            raise ReplayStoreUnavailableError(self.guard.retry_interval)

    async def health_check(self) -> CheckResult:
        """Readiness: unhealthy while Redis is unavailable and the store is ``closed``."""
        if self.guard is not None:
            await self.guard.health_check()  # pings Redis: an outage is noticed here too
        detail: dict[str, object] = {"when_down": self.when_down}
        if self._owed:
            detail["owed_writes"] = len(self._owed)
        if self.when_down == "closed" and self.using_fallback:
            return CheckResult(HealthStatus.UNHEALTHY, {**detail, "backend": "none"})
        backend = "memory" if self.using_fallback else "redis"
        return CheckResult(HealthStatus.HEALTHY, {**detail, "backend": backend})

    def clear_memory(self) -> None:
        """Forget every id kept in this process (the memory store and Redis's mirror)."""
        self._memory.clear()

    async def clear(self) -> None:
        """Forget every id: this process's, and Redis's under this store's prefix."""
        self.clear_memory()
        if self._redis is not None:
            async for name in self._redis.scan_iter(match=self.prefix + "*", count=500):
                await self._redis.delete(name)

    async def remember(self, key: str, ttl: float) -> bool:
        """Record ``key`` for ``ttl`` seconds; return ``True`` only the first time it is seen."""
        name = self.prefix + key
        redis = self._redis
        token = uuid.uuid4().hex
        sent = False

        async def in_memory() -> bool:
            try:
                self._refuse_if_closed()
            except ReplayStoreUnavailableError:
                if sent:  # it may still land: the sender's retry must not read as a replay
                    self._owe(name, _Owed(done=False, token=token, ttl=ttl))
                raise
            return self._memory.add(name, _SEEN, ttl) is None

        if redis is None or self.guard is None:
            return await in_memory()

        async def in_redis() -> bool:
            nonlocal sent
            sent = True
            # By Redis's clock, when this call's guard may give up on it (see _REMEMBER).
            offset = self._clock_offset_us
            gives_up = "" if offset is None else str(_now_us() + self._give_up_us + offset)
            outcome, redis_now = await redis.eval(_REMEMBER, 1, name, token, _millis(ttl), gives_up)
            # Redis's clock ran the call before this moment: a lower bound of the offset.
            self._clock_offset_us = int(redis_now) - _now_us()
            state = outcome.decode() if isinstance(outcome, bytes) else str(outcome)
            if state == "pending":
                raise ReplayStoreUnavailableError(_OWED_RETRY_SECONDS * 4)
            self._memory.put(name, _SEEN, ttl)
            return state == "new"

        return await self.guard.call(in_redis, in_memory)

    async def claim(self, key: str, *, processing_ttl: float) -> ClaimOutcome:
        """Claim ``key`` for processing, holding the claim at most ``processing_ttl`` seconds.

        The claim lapses by itself after ``processing_ttl`` (a crashed worker must not
        block the sender's retries forever); settle it with :meth:`complete` or
        :meth:`release` before that.
        """
        name = self.prefix + key
        owed = self._owed.get(name)
        if owed is not None and owed.done:
            return ClaimOutcome.DUPLICATE  # processed here; the mark is on its way to Redis
        redis = self._redis
        token = uuid.uuid4().hex
        sent = False

        def withdraw_if_sent() -> None:
            # A claim sent but not answered may still land in Redis; this caller does not
            # hold it (503, or memory said otherwise): withdraw it.
            if sent:
                self._owe(name, _Owed(done=False, token=token, ttl=processing_ttl))

        async def in_memory() -> ClaimOutcome:
            try:
                self._refuse_if_closed()
            except ReplayStoreUnavailableError:
                withdraw_if_sent()
                raise
            outcome = _outcome(self._memory.add(name, _PROCESSING, processing_ttl))
            if outcome is not ClaimOutcome.NEW:
                withdraw_if_sent()
            return outcome

        if redis is None or self.guard is None:
            return await in_memory()

        async def in_redis() -> ClaimOutcome:
            nonlocal sent
            sent = True
            found = await redis.eval(_CLAIM, 1, name, token, _millis(processing_ttl))
            if found is None:
                self._memory.put(name, _PROCESSING, processing_ttl)
                return ClaimOutcome.NEW
            state = found.decode() if isinstance(found, bytes) else str(found)
            if state == _DONE:
                self._memory.put(name, _DONE, processing_ttl)
            return _outcome(state)

        outcome = await self.guard.call(in_redis, in_memory)
        if outcome is ClaimOutcome.NEW:  # only a claim taken is this process's to settle
            self._held.put(name, (token, processing_ttl), processing_ttl)
        return outcome

    async def complete(self, key: str, ttl: float) -> None:
        """Mark ``key`` processed; a delivery with the same key within ``ttl`` is a duplicate.

        When Redis does not take the mark, it is owed: this process answers ``duplicate``
        for the id and writes the mark in the background until Redis takes it.
        """
        name = self.prefix + key
        self._memory.put(name, _DONE, ttl)
        held = self._held.get(name)
        self._held.pop(name)
        token = "" if held is None else held[0]
        if self._redis is not None and self.guard is not None:
            await self._write(name, _Owed(done=True, token=token, ttl=ttl))

    async def release(self, key: str) -> None:
        """Withdraw a claim whose processing failed, so a retry is processed."""
        name = self.prefix + key
        self._memory.pop(name)
        held = self._held.get(name)
        self._held.pop(name)
        if held is None or self._redis is None or self.guard is None:
            return  # not held here (lapsed): Redis forgets it by itself
        token, processing_ttl = held
        await self._write(name, _Owed(done=False, token=token, ttl=processing_ttl))

    async def _write(self, name: str, owed: _Owed) -> bool:
        """Write ``owed`` to Redis; owe it (and return ``False``) when Redis does not answer."""
        redis = self._redis
        guard = self.guard
        if redis is None or guard is None:  # pragma: no cover - callers check
            return True

        async def in_redis() -> bool:
            if owed.done:
                await redis.set(name, _DONE, px=_millis(owed.ttl))
            else:
                await redis.eval(_WITHDRAW, 1, name, owed.token, _millis(owed.ttl))
            return True

        async def unanswered() -> bool:
            self._owe(name, owed)
            return False

        return await guard.call(in_redis, unanswered)

    def _owe(self, name: str, owed: _Owed) -> None:
        current = self._owed.get(name)
        if current is owed:
            return  # tried again and still not written: owed as before
        if current is not None and current.done and not owed.done:
            return  # a processed mark outranks a withdrawal
        self._owed.put(name, owed, owed.ttl)
        _logger.warning(
            "replay_write_owed",
            kind="processed" if owed.done else "withdrawal",
            owed=len(self._owed),
        )
        task = self._catching_up
        if task is None or task.done():
            self._catching_up = asyncio.get_running_loop().create_task(self._catch_up())

    async def _catch_up(self) -> None:
        """Write what is owed, oldest first, until nothing is (or each one's ttl ends)."""
        while self._owed:
            await asyncio.sleep(_OWED_RETRY_SECONDS)
            for name in list(self._owed):
                owed = self._owed.get(name)
                if owed is None:
                    continue
                if not await self._write(name, owed):
                    break  # Redis is still away: try again later
                if self._owed.get(name) is owed:
                    self._owed.pop(name)
        _logger.info("replay_writes_caught_up")


def _outcome(state: str | None) -> ClaimOutcome:
    if state is None:
        return ClaimOutcome.NEW
    # A processing claim (``p``, ``p:<token>``) or a withdrawn one only a late command sees.
    return ClaimOutcome.DUPLICATE if state == _DONE else ClaimOutcome.IN_PROGRESS


def _now_us() -> int:
    return time.monotonic_ns() // 1000


def _millis(seconds: float) -> int:
    return max(1, int(seconds * 1000))
