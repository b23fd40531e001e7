"""Redis as the shared store, the process memory as its fallback.

:func:`create_redis` builds the asyncio client from settings (standalone or Cluster) with
short socket timeouts. :class:`RedisGuard` decides per call whether Redis is used: after a
failure or timeout it switches to the caller's memory fallback at once, says so in a log
line and a metric, and probes Redis again after ``retry_interval`` seconds, in the
background where it has probes (a ping, the stores' own checks) and with one call
otherwise; when the probe succeeds, calls go back to Redis. No caller ever sees a Redis
exception.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import structlog

from hardenkit import _timer
from hardenkit.health import CheckResult, HealthStatus
from hardenkit.telemetry import store_fallbacks

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

    from hardenkit.settings import HardenSettings

__all__ = ["RedisGuard", "create_redis"]

T = TypeVar("T")

_logger = structlog.get_logger("hardenkit.stores")

_MIN_PROBE_SECONDS = 1.0
"""Least time a background probe has: a reconnect, its handshake and a script load are a
few round trips, and on a busy event loop each waits its turn."""


def create_redis(settings: HardenSettings) -> Redis | RedisCluster | None:
    """Return an asyncio Redis client for ``HARDENKIT_REDIS_URL``, or ``None`` when unset.

    Socket and connect timeouts come from ``HARDENKIT_REDIS_SOCKET_TIMEOUT`` so a hung
    Redis costs a request at most that long before the fallback answers.
    """
    if settings.redis_url is None:
        return None
    url = settings.redis_url.get_secret_value()
    timeout = settings.redis_socket_timeout
    if settings.redis_cluster:
        from redis.asyncio.cluster import RedisCluster  # noqa: PLC0415 - only when asked for

        return RedisCluster.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    from redis.asyncio import Redis  # noqa: PLC0415 - keeps import of hardenkit light

    return Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, health_check_interval=0
    )


class RedisGuard:
    """Routes calls to Redis while it answers and to a memory fallback while it does not.

    Args:
        name: Names the store in logs, metrics and readiness (``"ratelimit"``).
        timeout: Seconds one Redis call may take before it counts as a failure.
        retry_interval: Seconds after a failure before one probe call is sent to Redis.
        clock: Monotonic clock, replaceable in tests.
        ping: Async callable that checks Redis (``client.ping``); when given, readiness
            checks ping Redis themselves, so an outage and a recovery are noticed even
            when no request touches the store. It is also the first probe (see
            :meth:`add_probe`).

    Recovery: with at least one probe, the first call after ``retry_interval`` starts a
    background task that runs every probe, with ``retry_interval`` seconds (at least
    one) for all of them, while calls keep going to the fallback; when they pass, calls
    go back to Redis. No request waits for a probe, and one that needs several round
    trips (reconnect, handshake, script load) is not held to the per-call ``timeout``,
    which on a loaded event loop it could miss every time. Without probes, the first
    call after ``retry_interval`` goes to Redis as the probe.
    """

    def __init__(
        self,
        name: str,
        *,
        timeout: float = 0.05,
        retry_interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        ping: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        if timeout <= 0 or retry_interval <= 0:
            raise ValueError("timeout and retry_interval must be positive")
        self.name = name
        self.timeout = timeout
        self.retry_interval = retry_interval
        self._clock = clock
        self._failed_at: float | None = None
        self._probing = False
        self._ping = ping
        self._probes: list[Callable[[], Awaitable[object]]] = [] if ping is None else [ping]
        self._probe_task: asyncio.Task[None] | None = None
        self.fallback_activations = 0

    def add_probe(self, probe: Callable[[], Awaitable[object]]) -> None:
        """Add a check that must pass before calls go back to Redis after a failure.

        A store adds what its first call after an outage would otherwise do inside one
        call's timeout: the rate-limit store reconnects and loads its script. A probe
        fails by raising (a Redis error, ``OSError``) or by running out of time.
        """
        self._probes.append(probe)

    @property
    def using_fallback(self) -> bool:
        """Whether calls are currently answered by the fallback."""
        return self._failed_at is not None

    def _may_call_redis(self) -> bool:
        if self._failed_at is None:
            return True
        if self._probing or self._clock() - self._failed_at < self.retry_interval:
            return False
        self._probing = True
        if self._probes:
            self._probe_task = asyncio.get_running_loop().create_task(self._probe())
            return False
        return True

    async def _probe(self) -> None:
        failure: BaseException | None = None
        try:
            async with asyncio.timeout(max(self.retry_interval, _MIN_PROBE_SECONDS)):
                for probe in self._probes:
                    await probe()
        except Exception as error:  # noqa: BLE001 - a background task has no caller to raise to
            if not _is_redis_failure(error):
                _logger.error("redis_probe_error", store=self.name, error=type(error).__name__)
            failure = error
        except asyncio.CancelledError:  # the loop is closing: the next loop probes afresh
            self._probing = False
            raise
        finally:
            self._probe_task = None
        if failure is None:
            self._succeeded()
        else:
            self._failed(failure)

    def _succeeded(self) -> None:
        if self._failed_at is not None:
            _logger.info("redis_recovered", store=self.name)
        self._failed_at = None
        self._probing = False

    def _failed(self, error: BaseException) -> None:
        was_healthy = self._failed_at is None
        self._failed_at = self._clock()
        self._probing = False
        if was_healthy:
            self.fallback_activations += 1
            store_fallbacks.add(1, {"store": self.name})
            _logger.warning(
                "redis_unavailable_using_fallback",
                store=self.name,
                error=type(error).__name__,
                retry_in_seconds=self.retry_interval,
            )

    async def call(
        self,
        redis_call: Callable[[], Awaitable[T]],
        fallback_call: Callable[[], Awaitable[T]],
    ) -> T:
        """Return ``redis_call()``'s result, or ``fallback_call()``'s when Redis fails."""
        if not self._may_call_redis():
            return await fallback_call()
        # One watchdog timer per event loop rather than an asyncio.timeout per call: this
        # sits on the path of every rate-limit decision (see hardenkit/_timer.py).
        attempt = _timer.watch(self.timeout)
        failure: BaseException | None = None
        try:
            result = await redis_call()
        except asyncio.CancelledError:
            if not attempt.timed_out():
                raise  # cancelled from outside: not Redis's fault
            failure = TimeoutError()
        except Exception as error:
            # Redis errored, timed out or is out of reach: the fallback answers, the log
            # line keeps the class name. Anything else is the caller's bug.
            if not _is_redis_failure(error):
                self._probing = False
                raise
            failure = error
        finally:
            attempt.done()
        if failure is not None:
            self._failed(failure)
            return await fallback_call()
        self._succeeded()
        return result

    async def health_check(self) -> CheckResult:
        """Readiness: healthy on Redis, degraded while the fallback answers."""
        ping = self._ping
        if ping is not None:

            async def redis_ping() -> None:
                await ping()

            await self.call(redis_ping, _nothing)
        if self.using_fallback:
            return CheckResult(HealthStatus.DEGRADED, {"backend": "memory", "store": self.name})
        return CheckResult(HealthStatus.HEALTHY, {"backend": "redis", "store": self.name})


async def _nothing() -> None:
    return None


def _is_redis_failure(error: Exception) -> bool:
    """Whether ``error`` says Redis failed (errored, timed out, unreachable), not a bug."""
    if isinstance(error, (OSError, TimeoutError, ConnectionError)):
        return True
    from redis.exceptions import RedisError  # noqa: PLC0415 - redis is imported lazily

    return isinstance(error, RedisError)
