"""Breaker state shared by every process through Redis, with local state as the fallback.

Each step (ask for a permission, record an outcome, give a permission back) is one
atomic Lua script (``_breaker.lua``) that reads the state, updates the sliding window kept
in Redis, judges the rates and transitions, all with the server's clock, so a fleet of
processes behaves like one breaker. The two keys of a breaker share a hash tag and so a
slot: the script runs on Redis Cluster too.

While Redis is unavailable (the :class:`~hardenkit.stores.RedisGuard`'s rules: a refused
connection at once, timeouts only several in a row), the breaker's own in-process state
answers at once, and the store goes back to Redis after a successful probe. A single
timed-out step is answered locally for that step alone. A transition is reported
(metric, audit, callbacks) by the process whose call caused it, once for the fleet.

Sharing costs two Redis round trips per call (one before, one after), so it is opt-in.
It applies to async calls; sync calls on the same breaker use the local state.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

from hardenkit.resilience.errors import CircuitOpenError
from hardenkit.resilience.events import BreakerState, StateChange, emit_state_change
from hardenkit.stores import LuaScript, RedisGuard, store_key

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

    from hardenkit.resilience.breaker import CircuitBreaker

__all__ = ["RedisBreakerStore"]

_SCRIPT = LuaScript(resources.files("hardenkit.resilience").joinpath("_breaker.lua").read_text())


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisBreakerStore:
    """Shares breaker state through Redis (standalone or Cluster).

    Args:
        redis: An asyncio Redis or RedisCluster client (``Hardened.redis``).
        guard: The switch to local state while Redis fails; pass the application's
            ``Hardened.redis_guard`` so every Redis-backed piece agrees. A private guard
            is created when omitted.
        prefix: Key prefix; keys are ``<prefix>{<name>}:state`` and ``...:window``.
        ttl: Seconds an idle breaker's keys live in Redis.
    """

    def __init__(
        self,
        redis: Redis | RedisCluster,
        *,
        guard: RedisGuard | None = None,
        prefix: str = "hardenkit:breaker:",
        ttl: float = 86_400.0,
    ) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self.redis = redis
        self.guard = RedisGuard.of_store("breakers", redis, guard)
        self.prefix = prefix
        self.ttl_ms = int(ttl * 1000)
        # Loaded by the guard's probes: at startup (warm_up) and after an outage.
        self.guard.add_probe(self._load_script)

    async def _load_script(self) -> None:
        await _SCRIPT.load(self.redis)

    def keys(self, name: str) -> list[str]:
        """The Redis keys holding the breaker called ``name``."""
        key = store_key(self.prefix, name)
        return [f"{key}:state", f"{key}:window"]

    async def acquire(self, breaker: CircuitBreaker) -> None:
        """Ask the shared state for one call; raise :class:`CircuitOpenError` if refused."""
        reply = await self._step(breaker, "acquire", False, False)
        if reply is None:
            breaker.acquire()
            return
        state, allowed, remaining = self._apply(breaker, reply)
        if not allowed:
            raise CircuitOpenError(
                breaker.name, None if state is BreakerState.FORCED_OPEN else remaining
            )

    async def record(self, breaker: CircuitBreaker, failed: bool, slow: bool) -> None:
        """Record one outcome in the shared window (locally while Redis is down)."""
        reply = await self._step(breaker, "record", failed, slow)
        if reply is None:
            breaker.record_flags(failed, slow)
            return
        self._apply(breaker, reply)

    async def release(self, breaker: CircuitBreaker) -> None:
        """Give back a trial permission whose call counted as nothing."""
        reply = await self._step(breaker, "release", False, False)
        if reply is None:
            breaker.release()
            return
        self._apply(breaker, reply)

    async def _step(
        self, breaker: CircuitBreaker, op: str, failed: bool, slow: bool
    ) -> Sequence[Any] | None:
        config = breaker.config

        async def via_redis() -> Sequence[Any] | None:
            return await _SCRIPT.run(  # type: ignore[no-any-return]
                self.redis,
                self.keys(breaker.name),
                [
                    op,
                    int(failed),
                    int(slow),
                    config.window,
                    config.window_size,
                    config.minimum_calls,
                    config.failure_rate_threshold,
                    config.slow_call_rate_threshold,
                    config.permitted_calls_in_half_open,
                    int(config.wait_in_open * 1000),
                    config.wait_multiplier,
                    int((config.max_wait_in_open or 0) * 1000),
                    self.ttl_ms,
                ],
            )

        async def locally() -> None:
            return None

        return await self.guard.call(via_redis, locally)

    def _apply(
        self, breaker: CircuitBreaker, reply: Sequence[Any]
    ) -> tuple[BreakerState, bool, float]:
        state = BreakerState(_text(reply[0]))
        allowed = int(reply[1]) == 1
        remaining = int(reply[2]) / 1000.0
        breaker.adopt(state, remaining)
        previous = _text(reply[3])
        if previous:
            failure_rate, slow_rate = _text(reply[5]), _text(reply[6])
            emit_state_change(
                StateChange(
                    breaker.name,
                    BreakerState(previous),
                    state,
                    _text(reply[4]),
                    float(failure_rate) if failure_rate else None,
                    float(slow_rate) if slow_rate else None,
                    shared=True,
                ),
                breaker.listeners,
            )
        return state, allowed, remaining

    async def reset(self, name: str) -> None:
        """Delete the shared state of ``name`` (an operator closing it for the fleet)."""
        await self.redis.delete(*self.keys(name))
