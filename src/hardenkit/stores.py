"""Redis as the shared store, the process memory as its fallback.

:func:`create_redis` builds the asyncio client from settings (standalone or Cluster) with
short socket timeouts. :class:`RedisGuard` decides per call whether Redis is used, and
switches to the caller's memory fallback only on evidence that Redis is unavailable: a
refused, reset or closed connection at once; timeouts only when ``failure_threshold``
calls in a row time out. A timeout is Redis's only when the event loop noticed it on
time: time this process's own loop ran late is not counted (see ``hardenkit/_timer.py``).
A single call that timed out without the switch is answered by the fallback for that
call alone, and counted (``hardenkit.store.timeouts``). After a switch the guard says so
in a log line and a metric, and probes Redis again after ``retry_interval`` seconds, in
the background where it has probes (a ping, the stores' own checks) and with one call
otherwise; when the probe succeeds, calls go back to Redis. No caller ever sees a Redis
exception.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import math
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar, overload

import structlog

from hardenkit import _timer
from hardenkit._afterfork import keep_inherited, renew_after_fork
from hardenkit.health import CheckResult, HealthStatus
from hardenkit.telemetry import store_fallbacks, store_timeouts

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

    from hardenkit.settings import HardenSettings

__all__ = [
    "EPOCH_SCRIPT",
    "MAX_HOLD_US",
    "RedisGuard",
    "create_redis",
    "failure_fix",
    "is_cluster",
    "is_redis_failure",
]

T = TypeVar("T")

_logger = structlog.get_logger("hardenkit.stores")

_MIN_PROBE_SECONDS = 1.0
"""Least time a background probe has: a reconnect, its handshake and a script load are a
few round trips, and on a busy event loop each waits its turn."""

_MIN_SILENCE = 0.5
"""Least time without any answer from Redis before timeouts count as Redis down."""

_SINGLE_LOG_SECONDS = 10.0
"""Least seconds between two ``redis_calls_timed_out_using_fallback`` warnings."""


def create_redis(settings: HardenSettings) -> Redis | RedisCluster | None:
    """Return an asyncio Redis client for ``HARDENKIT_REDIS_URL``, or ``None`` when unset.

    Standalone, Cluster (``HARDENKIT_REDIS_CLUSTER``) or behind Sentinel
    (``HARDENKIT_REDIS_SENTINELS`` + ``HARDENKIT_REDIS_SENTINEL_MASTER``: the client asks
    the sentinels for the current master and follows a failover); ``rediss://`` with
    ``HARDENKIT_REDIS_TLS_CA_FILE`` and an optional client certificate.

    ``HARDENKIT_REDIS_SOCKET_TIMEOUT`` bounds each call through :class:`RedisGuard`, which
    does not count the time this process's own event loop was late. redis-py's socket
    timeouts cannot tell a slow Redis from a late loop, so the client's are only a
    backstop, as long as the guard may wait: ``LOOP_LAG_ALLOWANCE`` (1 s) plus
    ``MAX_LOOP_LAG_FORGIVEN`` (5 s) longer. (At 1 s longer, a handler that blocked the
    loop for 1.5 s made the calls in flight time out in redis-py, replies read or not,
    and the guard took those for an outage.)
    """
    if settings.redis_url is None:
        return None
    url = settings.redis_url.get_secret_value()
    timeout = (
        settings.redis_socket_timeout + _timer.LOOP_LAG_ALLOWANCE + _timer.MAX_LOOP_LAG_FORGIVEN
    )
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        **_tls_options(settings),
    }
    if settings.redis_cluster:
        from redis.asyncio.cluster import RedisCluster  # noqa: PLC0415 - only when asked for

        cluster = RedisCluster.from_url(url, **options)
        renew_after_fork(cluster, _forget_connections)
        return cluster
    from redis.asyncio.retry import Retry  # noqa: PLC0415 - keeps import of hardenkit light
    from redis.backoff import NoBackoff  # noqa: PLC0415
    from redis.exceptions import ConnectionError as RedisConnectionError  # noqa: PLC0415

    # One immediate retry on a connection error: after Redis restarts (or fails over),
    # each pooled connection fails once on first use, which is a stale socket, not Redis
    # down (a Redis that is down refuses the retry at once too). Never on a timeout.
    options["health_check_interval"] = 0
    options["retry"] = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
    from redis.asyncio import Redis  # noqa: PLC0415

    client = (
        _sentinel_client(settings, url, options)
        if settings.redis_sentinels
        else Redis.from_url(url, **options)
    )
    renew_after_fork(client, _forget_connections)
    return client


def _forget_connections(client: Any) -> None:
    """In a forked child: drop the parent's connections (its sockets), never close them.

    redis-py's asyncio pools do not check the process id: a child would write to its
    parent's sockets and read replies meant for it (measured: a parent answering 500,
    `decode_reply` given another command's reply). The child connects afresh.
    """
    pool = getattr(client, "connection_pool", None)
    if pool is not None:
        # Never finalized here: closing them would unregister the parent's sockets from
        # the epoll both processes share (see keep_inherited).
        keep_inherited(
            list(getattr(pool, "_available_connections", ())),
            list(getattr(pool, "_in_use_connections", ())),
        )
        pool.reset()
    nodes = getattr(getattr(client, "nodes_manager", None), "nodes_cache", {})
    for node in nodes.values():  # a Cluster: each node keeps its own connections
        keep_inherited(node._connections, node._free)
        node._connections = []
        node._free = collections.deque(maxlen=node.max_connections)


def _tls_options(settings: HardenSettings) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if settings.redis_tls_ca_file is not None:
        options["ssl_ca_certs"] = settings.redis_tls_ca_file
    if settings.redis_tls_cert_file is not None:
        options["ssl_certfile"] = settings.redis_tls_cert_file
        options["ssl_keyfile"] = settings.redis_tls_key_file
    return options


def _sentinel_client(settings: HardenSettings, url: str, options: dict[str, Any]) -> Redis:
    from urllib.parse import unquote, urlsplit  # noqa: PLC0415

    from redis.asyncio.sentinel import Sentinel  # noqa: PLC0415

    parts = urlsplit(url)
    if parts.password is not None:
        options["password"] = unquote(parts.password)
    if parts.username:
        options["username"] = unquote(parts.username)
    database = parts.path.strip("/")
    options["db"] = int(database) if database.isdigit() else 0
    if parts.scheme == "rediss":
        options["ssl"] = True
    addresses = [entry.rpartition(":") for entry in settings.redis_sentinels]
    sentinel = Sentinel(  # type: ignore[no-untyped-call, unused-ignore]  # typed from redis 8.2
        [(host.strip("[]"), int(port)) for host, _, port in addresses],
        sentinel_kwargs={
            "socket_timeout": options["socket_timeout"],
            "socket_connect_timeout": options["socket_connect_timeout"],
        },
    )
    master = settings.redis_sentinel_master
    if master is None:  # pragma: no cover - the settings refuse sentinels without it
        raise ValueError("HARDENKIT_REDIS_SENTINEL_MASTER is required with sentinels")
    client: Redis = sentinel.master_for(master, **options)
    return client


def failure_fix(error: BaseException) -> str | None:
    """What to fix when Redis could not be reached for a reason a setting explains.

    A TLS handshake refused (:func:`tls_failure`), a Cluster node behind a plain client
    (``MOVED``), or sentinels that named no master:
    redis-py says ``MasterNotFoundError`` alike for sentinels that are down, that do not
    monitor that name, or that are not sentinels.
    """
    from redis.asyncio.sentinel import MasterNotFoundError  # noqa: PLC0415 - imported lazily
    from redis.exceptions import MovedError  # noqa: PLC0415

    if isinstance(error, MovedError):
        return "this Redis is a Cluster node (it answered MOVED): set HARDENKIT_REDIS_CLUSTER=true"
    if isinstance(error, MasterNotFoundError):
        return (
            "no sentinel of HARDENKIT_REDIS_SENTINELS named a master for "
            "HARDENKIT_REDIS_SENTINEL_MASTER: check the sentinels' addresses (host:port of "
            "redis-sentinel, usually 26379) and the master's name they monitor"
        )
    return tls_failure(error)


def tls_failure(error: BaseException) -> str | None:
    """What to fix when ``error`` (or what caused it) is a TLS handshake refused, else None.

    redis-py reports both as a plain ``ConnectionError``; the setting to change is in
    the SSL error it wraps.
    """
    seen: BaseException | None = error
    while seen is not None:
        text = str(seen)
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in text:
            return (
                "certificate verification failed; set HARDENKIT_REDIS_TLS_CA_FILE to the "
                "CA that signed Redis's certificate"
            )
        if "CERTIFICATE_REQUIRED" in text:
            return (
                "Redis asks for a client certificate; set HARDENKIT_REDIS_TLS_CERT_FILE and "
                "HARDENKIT_REDIS_TLS_KEY_FILE"
            )
        seen = seen.__cause__ or seen.__context__
    return None


# How long one question to the sentinels may take: they answer at once or are down.
_SENTINEL_ASK_SECONDS = 1.0


async def follow_sentinel_master(client: Redis | RedisCluster) -> bool:
    """Behind Sentinel: move every connection to the master the sentinels name now.

    redis-py asks the sentinels for the master only when it opens a connection. After a
    failover that left the old master up (``SENTINEL FAILOVER``, a network split), the
    connections it holds keep writing there until the sentinels demote it, about 10 s
    later, and the resync to the new master discards those writes: limits spent and
    webhook ids claimed go missing. Asked on every heartbeat, the sentinels' answer
    moves every connection still on another server (in use too) to the new master
    within one interval.

    Returns whether any connection was moved. A client not behind Sentinel, or not connected
    yet, is left alone; sentinels that do not answer leave the connections as they are
    (the guard handles a master that fails).
    """
    pool = getattr(client, "connection_pool", None)
    if pool is None or not hasattr(pool, "sentinel_manager") or not pool.is_master:
        return False
    try:
        async with asyncio.timeout(_SENTINEL_ASK_SECONDS):
            current = await pool.get_master_address()  # closes the idle connections if moved
    except Exception as error:  # noqa: BLE001 - sentinels down or no master: asked again later
        _logger.debug("redis_sentinel_not_asked", error=type(error).__name__)
        return False
    # Each connection is judged by the address it is connected to, not by the pool's
    # ``master_address``: redis-py updates that whenever it opens a connection (closing
    # only the idle ones), so after a burst it names the new master while held and busy
    # connections are still on the old one. Those already on the new master stay: after
    # a master that died, the probe reconnected them there, and closing them would fail
    # the calls in flight for nothing.
    connections = [
        *getattr(pool, "_available_connections", ()),
        *getattr(pool, "_in_use_connections", ()),
    ]
    stale = [
        connection
        for connection in connections
        if connection.is_connected and (connection.host, connection.port) != tuple(current)
    ]
    if not stale:
        return False
    previous = ", ".join(sorted({f"{c.host}:{c.port}" for c in stale}))
    _logger.warning(
        "redis_sentinel_master_changed",
        previous=previous,
        master=f"{current[0]}:{current[1]}",
        connections_moved=len(stale),
        detail="connections still on the old master move to the new one; writes it took "
        "since the failover are lost when it resyncs",
    )
    for connection in stale:
        await connection.disconnect()
    return True


class RedisGuard:
    """Routes calls to Redis while it answers and to a memory fallback while it does not.

    Args:
        name: Names the store in logs, metrics and readiness (``"ratelimit"``).
        timeout: Seconds one Redis call may take before it counts as timed out; time
            the event loop was late to notice it is not counted (up to one second).
        retry_interval: Seconds after a failure before one probe call is sent to Redis.
        failure_threshold: Timeouts in a row (no call answered in between, and none for
            ``failure_threshold × timeout`` seconds, at least half a second) that switch
            the process to the fallback. A refused, reset or closed connection switches
            at once; a timeout below the threshold is answered by the fallback for that
            call alone.
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
        failure_threshold: int = 3,
        clock: Callable[[], float] = time.monotonic,
        ping: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        if timeout <= 0 or retry_interval <= 0:
            raise ValueError("timeout and retry_interval must be positive")
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self.name = name
        self.timeout = timeout
        self.retry_interval = retry_interval
        self.failure_threshold = failure_threshold
        self._timeouts_in_row = 0
        self._answered_at = -math.inf
        self._clock = clock
        self._failed_at: float | None = None
        self._failures = 0  # switches to the fallback so far: a call's answer is news only
        # if it was sent after the last one
        self._probing = False
        self._ping = ping
        self._probes: list[Callable[[], Awaitable[object]]] = [] if ping is None else [ping]
        self._probe_task: asyncio.Task[None] | None = None
        self.failed_probes = 0
        renew_after_fork(self)
        """Recovery probes that failed in a row (logged at 1, 2, 4, 8...)."""
        self._on_recovery: list[Callable[[], object]] = []
        self.fallback_activations = 0
        self.warmed_up = False
        """Whether :meth:`warm_up` has run (readiness says ``starting`` while it runs)."""
        self._warming = False
        self.single_fallbacks = 0
        """Calls that timed out without switching, each answered by the fallback alone."""
        self._single_logged_at = -math.inf
        self._single_logged_count = 0
        self.loop_lag_forgiven = 0.0
        """Seconds of this process's own event-loop lag not held against Redis."""
        self._answering_now = self._answering  # bound once: passed on every call

    def renew_after_fork(self) -> None:
        """In a forked child: the parent's probe task does not run here; probe afresh."""
        keep_inherited(self._probe_task)
        self._probing = False
        self._probe_task = None

    @classmethod
    def for_client(
        cls,
        name: str,
        client: Redis | RedisCluster,
        *,
        timeout: float = 0.05,
        retry_interval: float = 2.0,
    ) -> RedisGuard:
        """The guard a store makes for itself when given a client and no guard.

        Every Redis-backed store uses this one convention (a ping as the first probe, so
        readiness and recovery do not depend on traffic); an application passes its one
        shared guard instead (``Hardened.redis_guard``), as :func:`hardenkit.install` does.
        """
        return cls(name, timeout=timeout, retry_interval=retry_interval, ping=client.ping)

    @overload
    @classmethod
    def of_store(
        cls,
        name: str,
        client: Redis | RedisCluster,
        guard: RedisGuard | None,
        *,
        timeout: float = ...,
        retry_interval: float = ...,
    ) -> RedisGuard: ...

    @overload
    @classmethod
    def of_store(
        cls,
        name: str,
        client: None,
        guard: RedisGuard | None,
        *,
        timeout: float = ...,
        retry_interval: float = ...,
    ) -> None: ...

    @classmethod
    def of_store(
        cls,
        name: str,
        client: Redis | RedisCluster | None,
        guard: RedisGuard | None,
        *,
        timeout: float = 0.05,
        retry_interval: float = 2.0,
    ) -> RedisGuard | None:
        """The guard of a Redis-backed store: the one given (shared), else its own.

        ``None`` without a client (the store keeps its state in memory).

        Raises:
            ValueError: A guard without the client it guards.
        """
        if client is None:
            if guard is not None:
                raise ValueError(f"{name}: a guard needs the redis client it guards")
            return None
        if guard is not None:
            return guard
        return cls.for_client(name, client, timeout=timeout, retry_interval=retry_interval)

    def add_probe(self, probe: Callable[[], Awaitable[object]], *, first: bool = False) -> None:
        """Add a check that must pass before calls go back to Redis after a failure.

        A store adds what its first call after an outage would otherwise do inside one
        call's timeout: the rate-limit store reconnects and loads its script. A probe
        fails by raising (a Redis error, ``OSError``) or by running out of time.
        ``first`` runs it before the others: the rate-limit store's charge-back, so that
        a Redis that was only paused runs every instance's charge, queued meanwhile,
        before any instance's next decision.
        """
        if first:
            self._probes.insert(0, probe)
        else:
            self._probes.append(probe)

    def on_recovery(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` each time calls go back to Redis after a failure."""
        self._on_recovery.append(callback)

    async def warm_up(self) -> bool:
        """Run every probe now (connect, load scripts), before the first request needs them.

        :func:`hardenkit.install` awaits this at application startup (lifespan), so the
        first burst of requests finds its connection open and its scripts loaded instead
        of paying for them inside one call's timeout. Bounded like a probe; when Redis
        cannot be reached, the guard starts on the fallback and probes again later.
        Returns whether Redis is ready.
        """
        self._probing = self._warming = True
        try:
            await self._probe()
        finally:
            self._warming = False
        self.warmed_up = True
        return not self.using_fallback

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
            if not is_redis_failure(error):
                _logger.error("redis_probe_error", store=self.name, error=type(error).__name__)
            failure = error
        except asyncio.CancelledError:  # the loop is closing: the next loop probes afresh
            self._probing = False
            raise
        finally:
            self._probe_task = None
        if failure is None:
            self.failed_probes = 0
            self._succeeded()
            return
        self._failed(failure)
        self.failed_probes += 1
        if self.failed_probes & (self.failed_probes - 1) == 0:  # 1, 2, 4, 8...: bounded
            _logger.info(
                "redis_probe_failed",
                store=self.name,
                error=type(failure).__name__,
                failed_probes=self.failed_probes,
                retry_in_seconds=self.retry_interval,
                **_fix_for(failure),
            )

    def _answering(self) -> bool:
        """Whether Redis answered a call lately: slow, not gone.

        A call whose timeout passes meanwhile gets more time (up to ``LOOP_LAG_ALLOWANCE``).
        """
        return time.monotonic() - self._answered_at < self._silence_is_down

    @property
    def _silence_is_down(self) -> float:
        # A loaded host can leave Redis without a CPU for a few timeouts; half a second
        # without any answer is not that.
        return max(self.failure_threshold * self.timeout, _MIN_SILENCE)

    def _succeeded(self) -> None:
        self._answered_at = time.monotonic()
        self._timeouts_in_row = 0
        self._probing = False
        if self._failed_at is not None:  # on every decision's path: the common case first
            self._failed_at = None
            _logger.info("redis_recovered", store=self.name)
            for callback in self._on_recovery:
                callback()

    def _failed(self, error: BaseException) -> None:
        self._timeouts_in_row = 0
        was_healthy = self._failed_at is None
        self._failed_at = self._clock()
        self._failures += 1
        self._probing = False
        if was_healthy:
            self.fallback_activations += 1
            store_fallbacks.add(1, {"store": self.name})
            _logger.warning(
                "redis_unavailable_using_fallback",
                store=self.name,
                error=type(error).__name__,
                retry_in_seconds=self.retry_interval,
                **_fix_for(error),
            )

    async def call(
        self,
        redis_call: Callable[[], Awaitable[T]],
        fallback_call: Callable[[], Awaitable[T]],
    ) -> T:
        """Return ``redis_call()``'s result, or ``fallback_call()``'s when Redis fails."""
        if self._failed_at is not None and not self._may_call_redis():
            return await fallback_call()
        # One watchdog timer per event loop rather than an asyncio.timeout per call: this
        # sits on the path of every rate-limit decision (see hardenkit/_timer.py). Patient:
        # the time this process's loop was late is not Redis's.
        attempt = _timer.watch(self.timeout, patient=True, answering=self._answering_now)
        sent_after = self._failures
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
            if not is_redis_failure(error):
                self._probing = False
                raise
            failure = _as_timeout(error)
        finally:
            attempt.done()
            if attempt.loop_lag:
                self.loop_lag_forgiven += attempt.loop_lag
        if failure is not None:
            if self._is_outage(failure):
                self._failed(failure)
            else:
                self.single_fallbacks += 1
                store_timeouts.add(1, {"store": self.name})
                self._log_single_fallbacks()
            return await fallback_call()
        if self._failed_at is not None and sent_after != self._failures:
            # Sent before Redis failed (a heartbeat, a decision in flight): its answer
            # says nothing of Redis now. Only a probe, or a call after it, goes back.
            return result
        self._succeeded()
        return result

    def _log_single_fallbacks(self) -> None:
        """Warn, at most every ``_SINGLE_LOG_SECONDS``, when timed-out calls keep falling back.

        One slow reply is no outage, and the guard stays on Redis; but replies that keep
        timing out while others answer (a Cluster node that died: its keys time out,
        the other nodes' answer) would otherwise show only in a metric.
        """
        if self.single_fallbacks - self._single_logged_count < self.failure_threshold:
            return  # one or two slow replies, or the start of an outage: logged as one
        now = time.monotonic()
        if now - self._single_logged_at < _SINGLE_LOG_SECONDS:
            return
        _logger.warning(
            "redis_calls_timed_out_using_fallback",
            store=self.name,
            timed_out_since_last_warning=self.single_fallbacks - self._single_logged_count,
            detail="calls to Redis timed out while others answered: each was decided by "
            "the fallback alone (a slow or unreachable Cluster node, a busy Redis)",
        )
        self._single_logged_at = now
        self._single_logged_count = self.single_fallbacks

    def _is_outage(self, failure: BaseException) -> bool:
        """Whether ``failure`` is evidence enough that Redis is unavailable.

        A connection refused, reset or closed is; one timeout is not (a slow reply, a
        busy host): only ``failure_threshold`` of them in a row, with no call answered in
        between, and Redis silent for ``failure_threshold`` timeouts' worth of time (at
        least half a second), are.
        (Callers queued behind one slow round trip time out together: that is one slow
        reply, not several.) A probe's failure always is (Redis was down a moment ago).
        """
        if not isinstance(failure, TimeoutError) or self._failed_at is not None:
            return True
        self._timeouts_in_row += 1
        silent_for = time.monotonic() - self._answered_at
        return (
            self._timeouts_in_row >= self.failure_threshold and silent_for >= self._silence_is_down
        )

    async def health_check(self) -> CheckResult:
        """Readiness: healthy on Redis, degraded while the fallback answers.

        Unhealthy (``"backend": "starting"``) while :meth:`warm_up` runs: the instance
        should get no traffic before its connection and scripts are ready.
        """
        if self._warming:
            return CheckResult(HealthStatus.UNHEALTHY, {"backend": "starting", "store": self.name})
        ping = self._ping
        if ping is not None:

            async def redis_ping() -> None:
                await ping()

            await self.call(redis_ping, nothing)
        if self.using_fallback:
            return CheckResult(HealthStatus.DEGRADED, {"backend": "memory", "store": self.name})
        return CheckResult(HealthStatus.HEALTHY, {"backend": "redis", "store": self.name})


def store_key(prefix: str, name: str) -> str:
    """The Redis key of ``name`` in a store: ``<prefix>{<name>}``.

    The braces are a Redis Cluster hash tag: every key derived from one name (with a
    suffix, like a breaker's ``:state`` and ``:window``) lands in one slot, so one script
    may touch them all. The rate-limit store's keys have the same shape.
    """
    return f"{prefix}{{{name}}}"


class LuaScript:
    """A Lua script of a Redis-backed store, run by its SHA and loaded before it is needed.

    Every store loads its script the same way: as a probe of its guard
    (:meth:`RedisGuard.add_probe`), so :meth:`RedisGuard.warm_up` loads it at startup and
    the recovery probe reloads it into a Redis that restarted, before calls go back to
    Redis. A call that still meets ``NOSCRIPT`` (a failover between probes) is sent once
    more as ``EVAL``, which also caches it. The rate-limit store runs its script through
    its pipelining runner with this SHA; the shared breaker store through :meth:`run`.
    """

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def load(self, client: Redis | RedisCluster) -> None:
        """Load the script (into every primary of a Cluster)."""
        await client.script_load(self.source)

    async def run(
        self, client: Redis | RedisCluster, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        """Run the script on ``keys`` with ``args`` (``EVALSHA``; ``EVAL`` after ``NOSCRIPT``)."""
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except Exception as error:
            if not _is_noscript(error):
                raise
            return await client.eval(self.source, len(keys), *keys, *args)


MAX_HOLD_US: Final = 60_000_000
"""The longest hold an epoch may set (``gcra.lua`` and :data:`EPOCH_SCRIPT`): an epoch
further ahead than this is taken as corrupt (a Redis clock stepped back after it was
set) and set again, rather than holding every decision for as long as the clock was off."""

EPOCH_SCRIPT: Final = f"""
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local ready = tonumber(redis.call('GET', KEYS[1]))
if not ready or ready > now + {MAX_HOLD_US} then
  ready = now + ARGV[1]
  redis.call('SET', KEYS[1], ready)
end
if ready > now then return ready - now end
return 0
"""
"""The rate-limit epoch as ``gcra.lua`` reads it, on its own (one key: any Redis shape).

KEYS[1] is the epoch (``hardenkit.ratelimit.redis_store.epoch_key``), ARGV[1] the hold
in microseconds a missing one is recreated with (0 on a first start). Answers the
microseconds until Redis decides again (0: now). Run by the heartbeat and by the rate-
limit store's first probe after an outage, so a Redis that lost its data holds the
limits from the first moment any instance hears from it."""


def is_cluster(client: object) -> bool:
    """Whether ``client`` is a Redis Cluster client (one hash slot per script)."""
    from redis.asyncio.cluster import RedisCluster  # noqa: PLC0415 - redis is imported lazily

    return isinstance(client, RedisCluster)


def _fix_for(error: BaseException) -> dict[str, str]:
    fix = failure_fix(error)
    return {} if fix is None else {"fix": fix}


async def nothing() -> None:
    """The fallback of a Redis write that has nothing to do without Redis."""
    return


def _as_timeout(error: BaseException) -> BaseException:
    """redis-py's own ``TimeoutError`` (a socket timeout) as the builtin one."""
    from redis.exceptions import TimeoutError as RedisTimeoutError  # noqa: PLC0415

    return TimeoutError() if isinstance(error, RedisTimeoutError) else error


def _is_noscript(error: BaseException) -> bool:
    from redis.exceptions import NoScriptError  # noqa: PLC0415 - redis is imported lazily

    return isinstance(error, NoScriptError)


def is_redis_failure(error: Exception) -> bool:
    """Whether ``error`` says Redis failed (errored, timed out, unreachable), not a bug.

    redis-py's Cluster client reports a cluster it cannot reach (every node down, a slot
    no node serves) with ``RedisClusterException``, which is not a ``RedisError``; two of
    its kinds are mistakes of the caller (keys of one transaction in several slots, a
    misused pipeline) and stay bugs.
    """
    if isinstance(error, (OSError, TimeoutError, ConnectionError)):
        return True
    from redis.exceptions import (  # noqa: PLC0415 - redis is imported lazily
        CrossSlotTransactionError,
        InvalidPipelineStack,
        RedisClusterException,
        RedisError,
    )

    if isinstance(error, (CrossSlotTransactionError, InvalidPipelineStack)):
        return False
    return isinstance(error, (RedisError, RedisClusterException))
