"""Rate-limit state in Redis: one ``EVALSHA`` per decision, memory while Redis is down."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from importlib.resources import files
from typing import TYPE_CHECKING, Final, Literal

import structlog
from redis.exceptions import ClusterCrossSlotError

from hardenkit._afterfork import renew_after_fork
from hardenkit.health import CheckResult, HealthStatus
from hardenkit.ratelimit._charge import RESERVED
from hardenkit.ratelimit._fallback import OutageFallback, Pending
from hardenkit.ratelimit._pipelining import ScriptRunner
from hardenkit.ratelimit.decision import (
    Backend,
    RateLimitDecision,
    RedisDownBehaviour,
    decision_from_gcra,
)
from hardenkit.ratelimit.gcra import Reply, decode_reply
from hardenkit.ratelimit.memory import MemoryStore
from hardenkit.ratelimit.rate import Rate
from hardenkit.stores import (
    EPOCH_SCRIPT,
    MAX_HOLD_US,
    LuaScript,
    RedisGuard,
    is_cluster,
    is_redis_failure,
    store_key,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

    from hardenkit.instances import InstanceRegistry

__all__ = [
    "GCRA_SCRIPT",
    "FallbackShare",
    "RedisStore",
    "epoch_for",
    "epoch_key",
    "refuses_two_slots",
]

FallbackShare = float | Literal["auto"]
"""The part of each limit one instance's fallback admits while Redis is unavailable:
``"auto"`` (``1 / live instances``, from the heartbeats), a fraction, or ``1``."""

GCRA_SCRIPT: Final = files("hardenkit.ratelimit").joinpath("gcra.lua").read_text()
"""The Lua script run by :class:`RedisStore` (``gcra.lua`` next to this module)."""

_logger = structlog.get_logger("hardenkit.ratelimit")


def epoch_key(key_prefix: str) -> str:
    """The rate-limit store's epoch under ``key_prefix`` (see ``gcra.lua``).

    The time from which Redis decides the limits. A Redis that lost its data lost it too,
    and the first heartbeat or decision after that recreates it a hold ahead, during which
    the instances restore the keys they mirrored (docs/ratelimit.md).
    """
    return f"{key_prefix}epoch"


def epoch_for(client: object, key_prefix: str) -> str | None:
    """The epoch key a store under ``key_prefix`` uses on ``client``: none on a Cluster.

    A Cluster script reaches one hash slot, and the epoch is another.
    """
    return None if is_cluster(client) else epoch_key(key_prefix)


async def refuses_two_slots(client: Redis | RedisCluster, key_prefix: str) -> bool:
    """Whether Redis refuses a script naming two hash slots (``CROSSSLOT``) to ``client``.

    A Redis that enforces slots behind a client that knows none (a cluster-mode server,
    a sharding proxy such as Redis Enterprise's) does: the epoch, another slot than any
    key's, cannot be read with the key then. ``False`` on a Cluster client, which knows.
    """
    if is_cluster(client):
        return False
    try:
        await client.eval(
            "return 1", 2, store_key(key_prefix, "epoch-check"), epoch_key(key_prefix)
        )
    except ClusterCrossSlotError:
        return True
    return False


_GCRA: Final = LuaScript(GCRA_SCRIPT)


class RedisStore:
    """GCRA state in Redis (standalone or Cluster), exact across every instance.

    Each decision is one ``EVALSHA`` of ``gcra.lua``; the script reads the time from the
    Redis server (``TIME``), so application clocks do not matter, and sets a TTL so keys
    expire by themselves. When a node does not have the script yet (``NOSCRIPT``: first
    call, restart, failover) the same call is sent as ``EVAL``, which also caches it.

    On a standalone client the store keeps one connection of the client's pool for
    decisions made one at a time (never the pool's only connection); concurrent
    decisions are pipelined over the pool. :meth:`aclose` gives it back.

    Keys are ``<prefix>{<name>:<digest>}``: the braces are a Cluster hash tag, so every
    key of one decision lands in one slot (the key's reservations are the same key with
    ``:reserved`` after it, its restore base ``:restored``).

    With the ``"auto"`` share and more than one live instance, each decision also
    reserves this store's part of what is left of the key (``floor(left / N)``) for
    ``reserve_seconds``, which no other instance may take meanwhile: that is what this
    instance's fallback may spend if Redis becomes unavailable (see
    :mod:`hardenkit.ratelimit._fallback`). Healthy decisions pay for it: an instance may
    be refused while another instance's reservation holds the last units of a key, at
    most ``reserve_seconds`` after that instance last decided it.

    On a standalone Redis (or Sentinel) the store also keeps an *epoch* in Redis
    (:func:`epoch_key`), which Redis loses with its data (a restart
    without persistence, a flush). A store that has had answers from Redis recreates it
    ``restart_hold`` seconds ahead, and until then every decision is held: answered from
    this instance's share as in an outage, while every instance restores the keys it
    mirrored, so that no instance decides a key on an empty Redis before the instance
    that saw it last has brought it back (docs/ratelimit.md, "Redis that lost its data").

    Args:
        client: redis-py asyncio client (``Redis`` or ``RedisCluster``).
        guard: The app's shared :class:`~hardenkit.stores.RedisGuard`; a private one
            named ``"ratelimit"`` is made when omitted.
        fallback: Memory store answering while Redis is down (a new one by default).
        prefix: Prepended to every key.
        timeout: Seconds per call for the private guard (ignored with ``guard``).
        retry_interval: Seconds before the private guard probes Redis again.
        fallback_share: What one instance's fallback admits while Redis is unavailable
            (see :mod:`hardenkit.ratelimit._fallback` and docs/ratelimit.md): ``"auto"``
            divides each limit by the live instances ``instances`` last counted (1
            without it), a fraction in (0, 1] is fixed, ``1`` admits the whole limit
            per instance. What it admits is charged to Redis before Redis decides again.
        instances: The heartbeat registry counting live instances (``"auto"`` share).
        reserve_seconds: How long a reservation holds after this instance's last
            decision of a key (``"auto"`` share only): the longest a quiet instance keeps
            units from the others, and the longest after its last decision of a key that
            this instance may spend its part of it during an outage.
        restart_hold: Seconds decisions are held after Redis lost its data (above);
            by default ``instances``' (a heartbeat interval and a second), else 1.
    """

    def __init__(
        self,
        client: Redis | RedisCluster,
        *,
        guard: RedisGuard | None = None,
        fallback: MemoryStore | None = None,
        prefix: str = "hk:rl:",
        timeout: float = 0.05,
        retry_interval: float = 2.0,
        fallback_share: FallbackShare = "auto",
        instances: InstanceRegistry | None = None,
        reserve_seconds: float = 10.0,
        restart_hold: float | None = None,
    ) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError("prefix must not contain '{' or '}' (they are the hash tag)")
        if fallback_share != "auto" and not 0 < fallback_share <= 1:
            raise ValueError("fallback_share must be 'auto' or a fraction in (0, 1]")
        if not 0 < reserve_seconds <= _MAX_RESERVE_SECONDS:
            raise ValueError(f"reserve_seconds must be in (0, {_MAX_RESERVE_SECONDS}]")
        if fallback_share == "auto" and instances is None:
            # Counting one instance where there are N: an outage admits N × each limit.
            _logger.warning(
                "ratelimit_fallback_share_counts_one_instance",
                detail="fallback_share='auto' without instances= divides by one instance: "
                "with N instances an outage admits up to N times each limit. Pass "
                "instances=InstanceRegistry(redis, guard) (install() does), or "
                "fallback_share=1 to say there is one instance",
                setting="HARDENKIT_RATE_LIMIT_FALLBACK_SHARE",
            )
        self.client = client
        self.guard = RedisGuard.of_store(
            "ratelimit", client, guard, timeout=timeout, retry_interval=retry_interval
        )
        self.fallback = fallback if fallback is not None else MemoryStore()
        self.fallback_share: FallbackShare = fallback_share
        self.instances = instances
        self.reserve_seconds = reserve_seconds
        self.member = uuid.uuid4().hex
        """This store's id in the keys' reservations (one per store, as each has its own
        fallback)."""
        self._reserve_us = round(reserve_seconds * 1_000_000)
        self._outage = self._new_outage()
        self._settling: asyncio.Task[None] | None = None
        self._warned_unknown = False
        self._warned_joining = False
        # Units per key of this store's calls waiting on Redis: Redis may still admit
        # them out of this instance's reservation, which a share starting now leaves out.
        self._in_flight: dict[str, int] = {}
        self.prefix = prefix
        if restart_hold is None:
            restart_hold = instances.restart_hold if instances is not None else 1.0
        if not 0 < restart_hold <= MAX_HOLD_US / 1_000_000:
            raise ValueError(f"restart_hold must be in (0, {MAX_HOLD_US // 1_000_000}]")
        self._hold_us = round(restart_hold * 1_000_000)
        self._answered = False  # a first answer: from now on a missing epoch is a loss
        self._hold_until = 0  # the fallback's clock, microseconds
        self.epoch_key = epoch_for(client, prefix)
        """The epoch's key (``None`` on a Cluster)."""
        self._runner = ScriptRunner(
            client, _GCRA.source, _GCRA.sha, batch_timeout=self.guard.timeout
        )
        # After an outage the guard charges what the fallback admitted, then reconnects
        # and reloads the script, in the background, before decisions go back to Redis.
        self.guard.add_probe(self._charge_outage, first=True)
        # Before the charge: on a Redis that refuses two slots, the charge must know to
        # go slot by slot, or it fails there every time (a store built without warm_up).
        self.guard.add_probe(self._check_epoch, first=True)
        self.guard.add_probe(self._runner.prepare)
        self.guard.on_recovery(self._settle_soon)  # lets go of the keys the probe kept
        self._restoring: asyncio.Task[None] | None = None
        if instances is not None:  # Redis lost its data, maybe without a failed call
            instances.on_rejoin(self._restore_soon)
        renew_after_fork(self)

    def _new_outage(self) -> OutageFallback:
        return OutageFallback(
            self.fallback,
            self._share,
            self._settle_soon,
            member=self.member,
            reserve_us=self._reserve_us if self.fallback_share == "auto" else None,
        )

    def renew_after_fork(self) -> None:
        """In a forked child: a new reservation member, and none of the parent's state.

        Workers forked from a process that built the app (gunicorn ``--preload``) would
        otherwise reserve and charge under one member, and each hold a copy of the
        parent's fallback: what one admitted would be charged by all.
        """
        slotted = self._outage.slotted
        self.member = uuid.uuid4().hex
        self.fallback.clear()
        self._outage = self._new_outage()
        self._outage.slotted = slotted
        self._settling = self._restoring = None  # the parent's tasks
        self._in_flight = {}
        self._answered, self._hold_until = False, 0

    def _share(self) -> float:
        if self.fallback_share != "auto":
            return self.fallback_share
        live = self.instances.live_instances if self.instances is not None else 1
        return 1.0 / live

    async def _charge_outage(self) -> None:
        # Charged first: a Redis that was only paused runs every instance's charge, queued
        # meanwhile, before anyone's next decision. Kept in the share until back on Redis.
        await self._outage.charge(self.client, self.prefix, keep=True)
        if self.epoch_key is None:
            # No epoch to tell whether Redis lost the keys this instance mirrored: they are
            # restored in the background (a restore of many keys would outlast the probe,
            # which would then never pass), where Redis kept them a restore writes nothing.
            self._restore_soon()
        else:
            # Back on a Redis that lost its data: the outage goes on as a hold, its keys
            # in the share (with what is left of their reservations) until it ends.
            sent = self.fallback.now_us()
            wait = await self.client.eval(EPOCH_SCRIPT, 1, self.epoch_key, self._hold_arg())
            if int(wait) > 0:
                self._hold(int(wait), sent)

    async def _check_epoch(self) -> None:
        """Leave the epoch out where Redis refuses a script two slots (CROSSSLOT).

        A Redis that enforces slots behind a client that knows none (a cluster-mode
        server, a sharding proxy such as Redis Enterprise's) refuses every decision that
        names the epoch: then the store decides without it, and says so.
        """
        if self.epoch_key is None:
            return
        if await refuses_two_slots(self.client, self.prefix):
            _logger.error(
                "ratelimit_epoch_unavailable",
                detail="Redis refuses a script that names two hash slots (a cluster-mode "
                "server or a sharding proxy behind a plain client): decisions are not held "
                "after Redis lost its data (docs/ratelimit.md); on Redis Cluster set "
                "HARDENKIT_REDIS_CLUSTER=true, behind a sharding proxy turn on persistence",
                setting="HARDENKIT_REDIS_URL",
            )
            self.epoch_key = None
            self._outage.slotted = True  # outage charges: one hash slot per script call

    def _settle_soon(self) -> None:
        """Charge keys decided by single timed-out calls, in the background.

        During an outage the guard's recovery probe charges everything instead.
        """
        if self._settling is None and not self.guard.using_fallback:
            self._settling = asyncio.get_running_loop().create_task(self._settle())

    async def _settle(self) -> None:
        held_turns = settle_turns = 0
        try:
            for _ in range(_HOLD_CHARGES + _SETTLE_ATTEMPTS):  # bounded: both counts below
                left = self._hold_left_us()
                if left > 0 and held_turns < _HOLD_CHARGES:
                    # Held (Redis lost its data): what the share decides goes to Redis as
                    # it is decided (a key's floor restores it, units are charged), so it
                    # is all there when Redis decides again; nobody decides on Redis
                    # meanwhile. The keys stay in the share (``keep``) until the hold
                    # ends: let go of, a key would start a new share, without the
                    # reservation its first one spent from. Re-checked at every turn: a
                    # hold may start while this task waits to retry a settle.
                    held_turns += 1
                    if await self._charge_once(keep=True) is None:
                        return
                    if left > _HOLD_MARGIN_US:
                        pause = min(left - _HOLD_MARGIN_US, _HOLD_CHARGE_US)
                    else:  # the last charge is out; the shares refuse until the end
                        pause = left
                    await asyncio.sleep(pause / 1_000_000)
                    continue
                if settle_turns >= _SETTLE_ATTEMPTS:
                    return
                settle_turns += 1
                if self.guard.using_fallback or not self._outage.ready_keys:
                    return  # recovery charges it all, or nothing is left
                charged = await self._charge_once(keep=False)
                if charged is None:
                    return
                if not charged:
                    await asyncio.sleep(self.guard.retry_interval)  # kept for a later try
        finally:
            self._settling = None

    async def _charge_once(self, *, keep: bool) -> bool | None:
        """One charge of the background settle.

        ``True``: done; ``False``: Redis failed it (kept for a later try); ``None``: stop
        (a bug, logged).
        """
        try:
            async with asyncio.timeout(max(self.guard.retry_interval, 0.5)):
                if keep:
                    await self._outage.charge(self.client, self.prefix, keep=True)
                else:
                    await self._outage.charge(self.client, self.prefix, ready_only=True)
        except Exception as error:  # noqa: BLE001 - a background task has no caller
            if not is_redis_failure(error):
                _logger.error("ratelimit_settle_error", error=type(error).__name__)
                return None
            return False
        return True

    def _restore_soon(self) -> None:
        """Restore the keys this instance mirrored, in the background (Redis lost them)."""
        if self._restoring is None:
            self._restoring = asyncio.get_running_loop().create_task(self._restore())

    async def _restore(self) -> None:
        try:
            async with asyncio.timeout(max(self.guard.retry_interval, 0.5) * 10):
                await self._outage.restore(self.client, self.prefix)
        except Exception as error:  # noqa: BLE001 - a background task has no caller
            # Left to the guard: a failed call switches it, and its probe restores.
            _logger.warning("ratelimit_restore_failed", error=type(error).__name__)
        finally:
            self._restoring = None

    async def clear(self) -> None:
        """Delete every key under this store's prefix, and forget the fallback's state.

        The epoch stays: a missing one would hold every decision for ``restart_hold``.
        """
        self.fallback.clear()
        epoch = None if self.epoch_key is None else self.epoch_key.encode()
        async for name in self.client.scan_iter(match=self.prefix + "*", count=500):
            if name != epoch:
                await self.client.delete(name)

    def redis_key(self, key: str) -> str:
        """Return the Redis key that holds ``key``'s state."""
        return store_key(self.prefix, key)

    async def decide(
        self, key: str, rate: Rate, cost: int, when_down: RedisDownBehaviour = "fallback"
    ) -> RateLimitDecision:
        """Take ``cost`` units of ``rate`` for ``key``; answer by ``when_down`` if Redis is not."""
        outage = self._outage
        if when_down == "fallback" and outage.holds(key) and not self.guard.using_fallback:
            # Its share until what it admitted is charged.
            if (closing := self._closing(rate)) is not None:
                return closing
            return self._held(outage.decide(key, rate, cost), rate)
        keys = self._keys(key)
        args = self._script_args(rate, cost)
        given_up: Pending | None = None

        async def on_redis() -> RateLimitDecision:
            nonlocal given_up
            pending = Pending(key, cost, outage)
            sent = self.fallback.now_us()
            try:
                raw = await self._runner.run(keys, args, pending)
            except asyncio.CancelledError:  # timed out (or cancelled): it may still run
                given_up = pending
                raise
            self._answered = True
            if raw[0] == 0:  # held: Redis lost its data (gcra.lua)
                self._hold(raw[1], sent)
                outage.seen(key, raw[2], sent)  # the key as restored so far, if it is
                if when_down == "closed":
                    return self._unavailable(rate, raw[1] / 1_000_000)
                # An open rule is not open while Redis is up: it is held like the rest.
                if (closing := self._closing(rate)) is not None:
                    return closing
                return self._from_share(key, rate, cost, None, raw[1] / 1_000_000)
            reply = decode_reply(raw)
            outage.mirror(key, reply.ahead_us, reply.reserved if reply.allowed else None, sent)
            return decision_from_gcra(
                rate,
                cost,
                allowed=reply.allowed,
                ahead_us=reply.ahead_us,
                backend="redis",
                held=reply.held,
                retry_after_us=reply.retry_after_us,
            )

        async def on_fallback() -> RateLimitDecision:
            if when_down == "fallback":
                return self._from_share(key, rate, cost, given_up)
            if when_down == "open":
                return RateLimitDecision(
                    allowed=True,
                    limit=rate.count,
                    remaining=rate.burst,
                    retry_after=0.0,
                    reset_after=0.0,
                    period_seconds=rate.period_seconds,
                    backend="none",
                )
            return self._unavailable(rate)

        in_flight = self._in_flight
        in_flight[key] = in_flight.get(key, 0) + cost
        try:
            return await self.guard.call(on_redis, on_fallback)
        finally:
            left = in_flight.pop(key) - cost
            if left:
                in_flight[key] = left

    @property
    def held_seconds(self) -> float:
        """Seconds left of the hold after Redis lost its data (0: Redis decides)."""
        return max(0.0, self._hold_left_us() / 1_000_000)

    async def health_check(self) -> CheckResult:
        """Readiness: degraded while decisions are held after Redis lost its data."""
        held = self.held_seconds
        if held:
            detail = {"held_seconds": round(held, 3), "reason": "redis_lost_data"}
            return CheckResult(HealthStatus.DEGRADED, detail)
        return CheckResult(HealthStatus.HEALTHY, {"held_seconds": 0})

    def _keys(self, key: str) -> tuple[str, ...]:
        redis_key = store_key(self.prefix, key)
        if self.epoch_key is None:
            return (redis_key, redis_key + RESERVED)
        return (redis_key, redis_key + RESERVED, self.epoch_key)

    def _hold(self, wait_us: int, sent_us: int) -> None:
        """Redis lost its data: hold decisions for ``wait_us`` and restore this mirror.

        Counted from the call's sending (``sent_us``), so this instance's hold ends no
        later than Redis's: the share's last charge lands before Redis decides again.
        """
        now = self.fallback.now_us()
        if now >= self._hold_until:  # a new hold
            _logger.warning(
                "ratelimit_redis_lost_data_holding",
                detail="the rate-limit epoch is gone from Redis (a restart without "
                "persistence, a flush): decisions come from this instance's share while "
                "every instance restores the keys it mirrored",
                hold_seconds=round(wait_us / 1_000_000, 3),
                key=self.epoch_key,
            )
            self._restore_soon()
        self._hold_until = max(self._hold_until, sent_us + wait_us)

    def _hold_left_us(self) -> int:
        """Microseconds left of the hold (0 or less: Redis decides)."""
        return self._hold_until - self.fallback.now_us()

    def _from_share(
        self, key: str, rate: Rate, cost: int, given_up: Pending | None, wait: float | None = None
    ) -> RateLimitDecision:
        """Decide from this instance's share (an outage, a hold).

        A 503 with ``wait`` instead when the live instances are unknown. ``given_up``:
        this decision's own call, which timed out.
        """
        if not self._instances_known():
            return self._unavailable(rate, wait)
        others = self._in_flight[key] - cost  # this one is answered here
        return self._held(self._outage.decide(key, rate, cost, given_up, others), rate)

    def _closing(self, rate: Rate) -> RateLimitDecision | None:
        """A refusal in a hold's last moments (``_HOLD_MARGIN_US``), else ``None``.

        What a share admitted then could not reach Redis before Redis decides again.
        """
        left = self._hold_left_us()
        if not 0 < left <= _HOLD_MARGIN_US:
            return None
        return _refused(rate, left / 1_000_000, backend="memory")

    def _held(self, decision: RateLimitDecision | None, rate: Rate) -> RateLimitDecision:
        """The share's decision, told to retry no later than Redis may decide again.

        A share refuses with its own wait (a key without a reservation refills at ``1/N``
        of its rate: an hour for ``100/day`` among four), but Redis may decide sooner:
        when the hold ends, or when the guard tries Redis again.
        """
        if decision is None:
            return self._unavailable(rate)
        if decision.allowed:
            return decision
        left = self._hold_left_us() / 1_000_000
        wait = max(left, 0.001) if left > 0 else self.guard.retry_interval
        if decision.retry_after <= wait:
            return decision
        return replace(decision, retry_after=wait, reset_after=max(wait, decision.reset_after))

    def _unavailable(self, rate: Rate, wait: float | None = None) -> RateLimitDecision:
        """Only Redis can decide: 503 with ``Retry-After`` ``wait``, else the retry interval."""
        wait = self.guard.retry_interval if wait is None else max(wait, 0.001)
        return _refused(rate, wait, backend="none", unavailable=True)

    def _instances_known(self) -> bool:
        """Whether the ``auto`` share has a count to divide by.

        A heartbeat registry that never had an answer from Redis (this process started
        during an outage) does not know how many instances share the limits: a share of
        1 would give this instance the whole limit on top of what the others admit. One
        that joined a moment ago is not in the others' counts until they beat again
        (:attr:`~hardenkit.instances.InstanceRegistry.counted`): its share would come on
        top of theirs. The fallback does not admit then; it answers as
        ``when_down="closed"`` does.
        """
        instances = self.instances
        if self.fallback_share != "auto" or instances is None or instances.counted:
            return True
        if instances.answered:
            if not self._warned_joining:
                self._warned_joining = True
                _logger.info(
                    "ratelimit_fallback_closed_instance_joining",
                    detail="Redis has not yet shown that every other instance counts "
                    "this one (it joined a moment ago, or the others could not beat since): "
                    "its fallback refuses (503) until a heartbeat does",
                )
            return False
        if not self._warned_unknown:
            self._warned_unknown = True
            _logger.error(
                "ratelimit_fallback_closed_instances_unknown",
                detail="Redis has not answered since this process started: the live "
                "instances are unknown, so the fallback refuses (503) until it does",
                setting="HARDENKIT_RATE_LIMIT_FALLBACK_SHARE",
            )
        return False

    def _script_args(self, rate: Rate, cost: int, now_us: int | str = "") -> tuple[int | str, ...]:
        """``gcra.lua``'s ARGV (see the script): what to decide, what to reserve, the hold."""
        instances = self.instances
        live = instances.live_instances if instances is not None else 1
        args = (
            rate.emission_interval_us * cost,
            rate.tolerance_us,
            rate.emission_interval_us,
            self.member,
            live if self.fallback_share == "auto" else 1,
            self._reserve_us,
        )
        if self.epoch_key is None:
            return args if now_us == "" else (*args, now_us)
        return (*args, now_us, self._hold_arg())

    def _hold_arg(self) -> int:
        """The hold a missing epoch is recreated with: none on a first start.

        A store that never had an answer from Redis, nor its heartbeat, cannot tell a
        first deployment from a Redis that lost its data; it takes the first.
        """
        instances = self.instances
        if self._answered or (instances is not None and instances.answered):
            return self._hold_us
        return 0

    async def evaluate(
        self, redis_key: str, rate: Rate, cost: int, now_us: int | None = None
    ) -> Reply:
        """Run the script once for this store and return its decoded reply (:mod:`.gcra`).

        ``now_us`` replaces the Redis server's clock; only tests pass it.
        """
        keys: tuple[str, ...] = (redis_key, redis_key + RESERVED)
        if self.epoch_key is not None:
            keys = (*keys, self.epoch_key)
        if now_us is None:
            return decode_reply(await self._runner.run(keys, self._script_args(rate, cost)))
        return decode_reply(await self._runner.run_one(keys, self._script_args(rate, cost, now_us)))

    async def aclose(self) -> None:
        """Give the connection this store holds back to the client's pool.

        Closing the client (``await client.aclose()``) closes it as well, so an app that
        closes its client at shutdown, as :func:`hardenkit.install` does, needs no call.
        """
        await self._runner.aclose()


def _refused(
    rate: Rate, wait: float, *, backend: Backend, unavailable: bool = False
) -> RateLimitDecision:
    """A refusal that only says when to come back (not decided by the key's state)."""
    return RateLimitDecision(
        allowed=False,
        limit=rate.count,
        remaining=0,
        retry_after=wait,
        reset_after=wait,
        period_seconds=rate.period_seconds,
        backend=backend,
        unavailable=unavailable,
    )


_SETTLE_ATTEMPTS: Final = 5
_HOLD_CHARGE_US: Final = 50_000
"""Microseconds between a hold's charges."""
_HOLD_MARGIN_US: Final = 150_000
"""A hold's last microseconds: the shares refuse, and their last charge is sent then, so
that it lands before Redis decides again."""
_HOLD_CHARGES: Final = MAX_HOLD_US // _HOLD_CHARGE_US + 2
_MAX_RESERVE_SECONDS: Final = 3600
