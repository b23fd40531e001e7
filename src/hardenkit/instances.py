"""How many instances share this Redis: a heartbeat per process, counted in Redis.

Every process that runs :func:`hardenkit.install` with Redis registers itself in one
sorted set (member: a random id per process; score: when its heartbeat expires, in the
Redis server's milliseconds) every ``ttl / 3`` seconds, and reads back how many members
are still live. The key itself expires ``ttl`` after the last heartbeat, so nothing is
left behind. One key, one script: it works unchanged on Redis Cluster.

The count the rate-limit fallback divides by (``live_instances``: each instance admits
``ceil(limit / live_instances)`` while Redis is unavailable, docs/ratelimit.md) never
drops below the highest count measured within the last ``3 × ttl`` seconds. A count can
read low for reasons that are not fewer instances: after Redis restarts empty, the first
heartbeats find a set holding only those that beat since, and a count taken then and
kept through the next outage would multiply the limit. Only a low count that lasts
longer than every live instance needs to beat again (``ttl``) is believed. While Redis
is unavailable nothing decays: the counts of the last answers stay in force, and their
window starts again at the first answer after the outage. Readiness
and ``hardenkit doctor`` show the count measured (``measured_instances``).

A newcomer is not in the others' counts until they beat again. Until it is, its
heartbeat also answers every live member and its expiry (when it last beat, plus the
ttl), so an instance knows (by the Redis server's clock) when every other one counts it
and every one that appeared since: ``counted``, which the fallback waits for before it
admits a share.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import structlog

from hardenkit._afterfork import keep_inherited, renew_after_fork
from hardenkit.stores import EPOCH_SCRIPT, MAX_HOLD_US, follow_sentinel_master, nothing

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

    from hardenkit.stores import RedisGuard

__all__ = ["InstanceRegistry", "count_live_instances", "instances_key"]

_logger = structlog.get_logger("hardenkit.instances")

_RECANCEL_SECONDS: Final = 0.1
"""How long :meth:`InstanceRegistry.aclose` waits for the heartbeat to end before it
cancels it again."""
_STOP_SECONDS: Final = 5.0
"""How long it keeps cancelling a heartbeat that does not end, before it gives up."""

# One rule for "live", shared by the heartbeat (what readiness and the fallback see) and by
# count_live_instances (what `hardenkit doctor` sees): a member whose heartbeat has not
# expired by the Redis server's clock.
_NOW: Final = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
"""
_LIVE: Final = "return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')\n"

# Answers the live count; 1 when this instance's own heartbeat was still there; the
# server's time (ms); and, when asked (ARGV[3] = 1: not counted yet), every live member
# with its expiry, from which a member's last beat is its expiry minus the ttl.
_HEARTBEAT: Final = (
    _NOW
    + """local mine = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], now + ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local live = redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
local members = {}
if ARGV[3] == '1' then
  members = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
end
if mine and mine + 0 > now then return {live, 1, now, members} end
return {live, 0, now, members}
"""
)
_COUNT: Final = _NOW + _LIVE


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def instances_key(key_prefix: str) -> str:
    """The sorted set of heartbeats under ``HARDENKIT_RATE_LIMIT_KEY_PREFIX``."""
    return f"{key_prefix}instances"


async def count_live_instances(redis: Redis | RedisCluster, key: str) -> int:
    """Return how many instances have a live heartbeat in ``key``, without adding one.

    The same rule the heartbeat counts by, so ``hardenkit doctor`` (which is no
    instance) and readiness agree. Raises what the Redis client raises.
    """
    return int(await redis.eval(_COUNT, 1, key))


class InstanceRegistry:
    """This process's heartbeat in Redis, and the number of live instances last seen.

    Args:
        redis: The shared asyncio Redis or RedisCluster client.
        guard: The app's :class:`~hardenkit.stores.RedisGuard`: a heartbeat is a Redis
            call like any other (when Redis is unavailable the last count stays).
        key: The sorted set holding the heartbeats.
        ttl: Seconds a heartbeat keeps an instance counted; one is sent every ``ttl / 3``.
        clock: Monotonic clock of the ``3 × ttl`` window, replaceable in tests.
        epoch: The rate-limit store's epoch key
            (:func:`hardenkit.ratelimit.redis_store.epoch_key`; standalone Redis and
            Sentinel, where the decision script reads it): each heartbeat recreates it,
            :attr:`restart_hold` ahead, if Redis lost it (:data:`~hardenkit.stores.EPOCH_SCRIPT`).
        counted_after: Seconds before this instance trusts its own count (see
            :attr:`counted`); default ``guard.retry_interval + ttl / 2``.
    """

    def __init__(
        self,
        redis: Redis | RedisCluster,
        guard: RedisGuard,
        *,
        key: str = "hardenkit:instances",
        ttl: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        epoch: str | None = None,
        counted_after: float | None = None,
    ) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        if counted_after is not None and counted_after < 0:
            raise ValueError("counted_after must not be negative")
        self.redis = redis
        self.guard = guard
        self.key = key
        self.ttl = ttl
        self.epoch = epoch
        self.restart_hold = min(ttl / 3 + 1.0, MAX_HOLD_US / 1_000_000)
        """Seconds the rate limits are held after Redis lost its data: one heartbeat
        interval for every instance to notice, and a second to restore the keys it
        mirrored (``gcra.lua``, docs/ratelimit.md)."""
        self.instance_id = uuid.uuid4().hex
        self.measured_instances = 1
        """Live instances (this one included) at the last heartbeat Redis answered."""
        self.answered = False
        """Whether Redis ever answered a heartbeat: until then the count is unknown, and
        the ``auto`` rate-limit fallback does not admit (docs/ratelimit.md)."""
        self.counted_after = (
            guard.retry_interval + ttl / 2 if counted_after is None else counted_after
        )
        """Seconds after its first answer before this instance trusts its own count. One
        that Redis lost (a restart without persistence) is back by then: its guard
        probes Redis ``retry_interval`` after a failure, and it beats every ``ttl / 3``
        (half as long again for a late loop). The instances share the setting."""
        self.counted = False
        """Whether every live instance counts this one, and this one all of them, so
        the fallback's shares add up to one (:meth:`beat` decides; docs/ratelimit.md).

        An instance that joined a moment ago is not in the count the others divide by
        until they beat again: were it to admit its share in an outage starting now,
        the shares would add up to more than the limit (two counting 2 take a half
        each, a third counting 3 a third on top). Its count may miss instances too,
        after Redis restarted empty. It becomes ``True`` at a heartbeat Redis answers
        at least :attr:`counted_after` seconds after the first, when every other live
        instance has beat since this one joined and since the last other one appeared
        (by the Redis server's clock; the instances sharing the key beat with the same
        ``ttl``, as ``install()`` does). Never by time alone: through an outage it stays
        as it was. It is lost again when this
        instance was away from Redis (a paused process, a network cut) until its
        heartbeat expired and for nearly the others' ``3 × ttl`` window: their counts may
        no longer include it, and it joins afresh.
        """
        self._joined: tuple[float, int] | None = None  # first answer: our clock, Redis ms
        self._known: set[str] = set()  # the other members at the last beat, until counted
        self._appeared: dict[str, int] = {}  # those that appeared since it joined: when
        self._last_answer = 0.0  # when Redis last answered a heartbeat, by our clock
        self.live_instances = 1
        """The count the fallback's shares divide by: the highest measured in the window."""
        self.window = 3 * ttl
        """Seconds a measured count stays in force after a lower one is measured."""
        self._clock = clock
        self._measured: deque[tuple[float, int]] = deque()
        self._unanswered = False
        self._task: asyncio.Task[None] | None = None
        self._on_rejoin: list[Callable[[], None]] = []
        renew_after_fork(self)

    def renew_after_fork(self) -> None:
        """In a forked child: a new instance id, and nothing the parent measured.

        A worker forked from a process that built the app (gunicorn ``--preload``) would
        otherwise beat with its parent's id: N workers counted as one instance, each
        admitting the whole limit in an outage. The child joins as a newcomer.
        """
        self.instance_id = uuid.uuid4().hex
        self.measured_instances = self.live_instances = 1
        self.answered = self.counted = self._unanswered = False
        self._joined, self._known, self._appeared = None, set(), {}
        self._last_answer = 0.0
        self._measured = deque()
        keep_inherited(self._task)  # never finalized here (its finally blocks are the parent's)
        self._task = None  # the parent's task: its loop does not run here

    def on_rejoin(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when this instance's heartbeat is found gone from Redis.

        After the first answer, a heartbeat that finds its own entry missing means Redis
        lost its data (a restart without persistence, a failover to an empty replica) or
        did not hear from this instance for ``ttl``: the rate-limit store then restores
        the keys it mirrored (docs/ratelimit.md). A restart can be short enough for the
        client to reconnect without any call failing; the heartbeat still sees it.
        """
        self._on_rejoin.append(callback)

    async def beat(self) -> int:
        """Send one heartbeat; return :attr:`live_instances`, the count shares divide by."""

        async def in_redis() -> None:
            count, present, server_ms, members = await self.redis.eval(
                _HEARTBEAT,
                1,
                self.key,
                self.instance_id,
                int(self.ttl * 1000),
                int(not self.counted),
            )
            if self.epoch is not None:  # its own call: another slot than the set
                hold = round(self.restart_hold * 1_000_000) if self.answered else 0
                await self.redis.eval(EPOCH_SCRIPT, 1, self.epoch, hold)
            rejoined = self.answered and not int(present)
            if rejoined and self._clock() - self._last_answer >= self.window - self.ttl / 3:
                # Away (not lost with Redis's data) for as long as the others keep a count
                # in their window, less a beat: theirs may no longer include it. It joins
                # afresh (docs/ratelimit.md). A shorter absence, a Redis outage of all,
                # leaves it in their counts.
                self.counted, self._joined = False, None
            self._record(max(1, int(count)))
            self._check_counted(int(server_ms), members)
            if rejoined:
                _logger.warning("instance_heartbeat_lost", key=self.key)
                for callback in self._on_rejoin:
                    callback()

        async def unanswered() -> None:
            self._unanswered = True

        await self.guard.call(in_redis, unanswered)
        return self.live_instances

    def _record(self, count: int) -> None:
        """Keep the counts measured in the window; only an answer from Redis ages them."""
        now = self._clock()
        measured = self._measured
        if self._unanswered:  # the counts held through the outage: their window starts now
            self._unanswered = False
            measured = self._measured = deque((now, count) for _, count in measured)
        while measured and measured[0][0] < now - self.window:
            measured.popleft()
        while measured and measured[-1][1] <= count:
            measured.pop()  # a count at most this one's ends its say earlier than this one
        measured.append((now, count))
        self.measured_instances = count
        self.live_instances = measured[0][1]
        self.answered = True

    def _check_counted(self, server_ms: int, members: list[bytes | str]) -> None:
        """Decide :attr:`counted` from an answered heartbeat (see there).

        ``members``: every live member and its expiry, flat, while not counted yet.
        """
        self._last_answer = self._clock()
        if self.counted:
            return
        ttl_ms = int(self.ttl * 1000)
        last_beats = {}  # every other live member: when it last beat, Redis ms
        for index in range(0, len(members) - 1, 2):
            name = _text(members[index])
            if name != self.instance_id:
                last_beats[name] = int(float(_text(members[index + 1]))) - ttl_ms
        joined = self._joined
        if joined is None:
            self._joined = (self._clock(), server_ms)
            self._known, self._appeared = set(last_beats), {}
            return
        # One that appeared since (a newcomer, or one back after Redis lost the set) is
        # in another's count only once that one beat after it: wait for that too. The
        # beat that first saw it is no earlier than it joined.
        appeared = {
            name: self._appeared.get(name, server_ms)
            for name in last_beats
            if name in self._appeared or name not in self._known
        }
        self._known, self._appeared = set(last_beats), appeared
        if self._clock() - joined[0] < self.counted_after:
            return
        for name, beat in last_beats.items():
            # Strictly after: within one millisecond the order is unknown.
            if beat <= joined[1] or any(
                beat <= since for other, since in appeared.items() if other != name
            ):
                return
        self.counted = True

    def start(self) -> None:
        """Beat every ``ttl / 3`` seconds in a background task, until :meth:`aclose`."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                # Behind Sentinel, after a failover that left the old master up: the
                # heartbeat (and every call after it) goes to the master named now.
                await follow_sentinel_master(self.redis)
                await self.beat()
            except Exception:  # a bug must not stop the heartbeat; it is logged
                _logger.exception("instance_heartbeat_failed")
            await asyncio.sleep(self.ttl / 3)

    async def aclose(self) -> None:
        """Stop beating and leave the set, so the others count one fewer at once."""
        task, self._task = self._task, None
        if task is not None:
            await _stop(task)

        async def leave() -> None:
            await self.redis.zrem(self.key, self.instance_id)

        await self.guard.call(leave, nothing)


async def _stop(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait until it ends, cancelling again while it has not.

    One cancellation is not always enough: a client library that catches
    ``CancelledError`` (while it reconnects, say) loses it, and the task goes on beating
    while the shutdown waits for it for ever (seen once). As anyio does, cancel again
    until it ends; give up after ``_STOP_SECONDS`` with an error rather than hold the
    shutdown. This task's own cancellation is not absorbed.
    """
    give_up = time.monotonic() + _STOP_SECONDS
    while not task.done():
        if time.monotonic() >= give_up:
            _logger.error("instance_heartbeat_did_not_stop", seconds=_STOP_SECONDS)
            return
        task.cancel()
        await asyncio.wait({task}, timeout=_RECANCEL_SECONDS)
