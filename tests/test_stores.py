from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import structlog.testing
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster as ClusterClient
from redis.exceptions import (
    ClusterDownError,
    CrossSlotTransactionError,
    InvalidPipelineStack,
    RedisClusterException,
    SlotNotCoveredError,
)

from hardenkit import HardenSettings, HealthStatus, RedisGuard, _timer
from hardenkit.auth.tenants import TenantStatusCache
from hardenkit.ratelimit import Rate, RedisStore
from hardenkit.resilience.shared import RedisBreakerStore
from hardenkit.signing.replay import ReplayStore
from hardenkit.stores import create_redis, is_redis_failure, store_key
from tests.support.redis_server import RedisCluster, RedisServer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def memory() -> str:
    return "memory"


@pytest.mark.redis
async def test_guard_uses_redis_while_it_answers(redis_client: Redis) -> None:
    guard = RedisGuard("test", timeout=1.0)

    async def ping() -> str:
        return "redis" if await redis_client.ping() else "?"

    assert await guard.call(ping, memory) == "redis"
    assert not guard.using_fallback
    assert (await guard.health_check()).status is HealthStatus.HEALTHY


@pytest.mark.redis
async def test_a_cluster_with_every_node_down_is_an_outage_not_a_bug(
    tmp_path: Path,
) -> None:
    # redis-py's Cluster client says "cannot be connected" with RedisClusterException, which
    # is not a RedisError: it once went through the guard as a bug (HTTP 500, readiness 503).
    cluster = RedisCluster(tmp_path)
    cluster.start()
    client = ClusterClient.from_url(cluster.url, socket_timeout=0.2, socket_connect_timeout=0.2)
    guard = RedisGuard("test", timeout=0.5, retry_interval=60.0, ping=client.ping)
    store = RedisStore(client, guard=guard, prefix="hk:cluster-down:")
    rate = Rate.parse("5/minute")
    try:
        assert (await store.decide("k", rate, 1)).backend == "redis"
        cluster.stop()
        # The client retries its nodes, then says the cluster is gone. Other keys each: a
        # key whose call timed out (a loaded host) stays in its share, without calling
        # Redis again, so one key alone would show the guard only one failure.
        for index in range(3):
            assert (await store.decide(f"k{index}", rate, 1)).backend == "memory"
        assert guard.using_fallback
        assert (await guard.health_check()).status is HealthStatus.DEGRADED
        # A client made while every node is down fails the same way.
        fresh = ClusterClient.from_url(cluster.url, socket_timeout=0.2, socket_connect_timeout=0.2)
        other = RedisGuard("other", timeout=0.5, retry_interval=60.0, ping=fresh.ping)
        try:
            decision = await RedisStore(fresh, guard=other, prefix="hk:cd:").decide("k", rate, 1)
            assert decision.backend == "memory"
            assert other.using_fallback
        finally:
            await fresh.aclose()
    finally:
        cluster.stop()
        await client.aclose()


def test_cluster_client_errors_are_failures_except_the_callers_mistakes() -> None:
    assert is_redis_failure(RedisClusterException("Redis Cluster cannot be connected."))
    assert is_redis_failure(SlotNotCoveredError("no node serves slot 12"))
    assert is_redis_failure(ClusterDownError("CLUSTERDOWN"))
    assert not is_redis_failure(CrossSlotTransactionError("keys in several slots"))
    assert not is_redis_failure(InvalidPipelineStack("misused pipeline"))
    assert not is_redis_failure(KeyError("a bug"))


@pytest.mark.redis
async def test_guard_falls_back_at_once_and_returns_after_redis_restarts(
    redis_server_factory: Callable[[], RedisServer],
) -> None:
    server = redis_server_factory()
    client = Redis.from_url(server.url, socket_timeout=0.05, socket_connect_timeout=0.05)
    clock = Clock()
    guard = RedisGuard("test", timeout=0.2, retry_interval=2.0, clock=clock)

    async def ping() -> str:
        await client.ping()
        return "redis"

    try:
        assert await guard.call(ping, memory) == "redis"
        server.stop()
        assert await guard.call(ping, memory) == "memory"
        assert guard.using_fallback
        assert guard.fallback_activations == 1
        assert (await guard.health_check()).status is HealthStatus.DEGRADED
        server.start()
        # Before the retry interval the fallback keeps answering, without touching Redis.
        assert await guard.call(ping, memory) == "memory"
        clock.now += 2.0
        assert await guard.call(ping, memory) == "redis"
        assert not guard.using_fallback
    finally:
        await client.aclose()


async def test_guard_times_out_a_hung_call_and_falls_back() -> None:
    guard = RedisGuard("test", timeout=0.05)

    async def hangs() -> str:
        await asyncio.sleep(5)
        return "redis"

    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await guard.call(hangs, memory) == "memory"
    assert loop.time() - started < 0.5


async def test_guard_lets_application_errors_through() -> None:
    guard = RedisGuard("test")

    async def bug() -> str:
        raise ValueError("not a redis problem")

    with pytest.raises(ValueError, match="not a redis problem"):
        await guard.call(bug, memory)
    assert not guard.using_fallback


async def test_only_one_probe_is_sent_while_one_is_in_flight() -> None:
    clock = Clock()
    guard = RedisGuard("test", retry_interval=1.0, clock=clock)

    async def refuse() -> str:
        raise ConnectionError

    await guard.call(refuse, memory)
    clock.now += 1.0
    assert guard._may_call_redis()
    assert not guard._may_call_redis()


def test_create_redis_is_none_without_url() -> None:
    assert create_redis(HardenSettings()) is None


def test_the_clients_own_socket_timeout_is_only_a_backstop_behind_the_guards() -> None:
    # redis-py's timeouts would count a late event loop against Redis; the guard's don't.
    client = create_redis(
        HardenSettings(redis_url="redis://127.0.0.1:1/0", redis_socket_timeout=0.07)
    )  # type: ignore[arg-type]
    assert isinstance(client, Redis)
    # As long as the guard may wait: its timeout, 1 s for a slow Redis, 5 s of loop lag.
    assert client.connection_pool.connection_kwargs["socket_timeout"] == pytest.approx(6.07)
    assert client.connection_pool.connection_kwargs["socket_connect_timeout"] == pytest.approx(6.07)


@pytest.mark.redis
def test_readyz_reports_redis_degraded_then_healthy_without_other_traffic(
    redis_server_factory: Callable[[], RedisServer],
) -> None:
    import time

    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from hardenkit import install

    server = redis_server_factory()
    app = Starlette()
    install(
        app,
        HardenSettings(
            redis_url=server.url,  # type: ignore[arg-type]
            redis_socket_timeout=0.2,
            redis_retry_interval=0.2,
        ),
    )
    with TestClient(app) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"]["redis"]["backend"] == "redis"
        assert ready.json()["status"] == "healthy"
        server.stop()
        degraded = client.get("/readyz")
        assert degraded.status_code == 200
        assert degraded.json()["status"] == "degraded"
        assert degraded.json()["checks"]["redis"]["backend"] == "memory"
        server.start()
        deadline = time.monotonic() + 5
        status = "degraded"
        while status != "healthy" and time.monotonic() < deadline:
            time.sleep(0.1)
            status = client.get("/readyz").json()["status"]
        assert status == "healthy"


async def refuse() -> str:
    raise ConnectionError


async def redis_answers() -> str:
    return "redis"


async def wait_until(condition: Callable[[], bool], seconds: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.005)


class Probe:
    """Counts its runs, then does what ``then`` does (wait, fail, succeed)."""

    def __init__(self, then: Callable[[], Awaitable[None]]) -> None:
        self.runs = 0
        self.then = then

    async def __call__(self) -> None:
        self.runs += 1
        await self.then()


async def start_probing(
    probe: Probe, *, timeout: float = 0.05, retry_interval: float = 1.0
) -> tuple[RedisGuard, Clock]:
    """A guard that failed once and, its retry interval past, has just been asked again."""
    clock = Clock()
    guard = RedisGuard("test", timeout=timeout, retry_interval=retry_interval, clock=clock)
    guard.add_probe(probe)
    assert await guard.call(refuse, memory) == "memory"
    clock.now += retry_interval
    assert await guard.call(redis_answers, memory) == "memory"  # the probe runs meanwhile
    return guard, clock


async def probe_done(guard: RedisGuard) -> None:
    await wait_until(lambda: guard._probe_task is None, seconds=3.0)


async def test_with_a_probe_recovery_is_tested_in_the_background_and_no_call_waits() -> None:
    release = asyncio.Event()

    async def until_released() -> None:
        await release.wait()

    probe = Probe(until_released)
    guard, _ = await start_probing(probe)
    loop = asyncio.get_running_loop()
    started = loop.time()
    answers = [await guard.call(redis_answers, memory) for _ in range(5)]
    await asyncio.sleep(0)
    assert answers == ["memory"] * 5
    assert loop.time() - started < 0.5  # not one waited for the probe (it has 1 s)
    assert probe.runs == 1  # one probe in flight, however many calls arrive
    release.set()
    await wait_until(lambda: not guard.using_fallback)
    assert await guard.call(redis_answers, memory) == "redis"


async def test_a_probe_slower_than_one_calls_timeout_still_brings_redis_back() -> None:
    async def reconnect_and_load_script() -> None:
        await asyncio.sleep(0.1)  # ten times the per-call timeout

    guard, _ = await start_probing(Probe(reconnect_and_load_script), timeout=0.01)
    await wait_until(lambda: not guard.using_fallback)
    assert await guard.call(redis_answers, memory) == "redis"


async def test_a_failed_probe_keeps_the_fallback_until_another_interval_has_passed() -> None:
    async def refused() -> None:
        raise ConnectionError

    probe = Probe(refused)
    with structlog.testing.capture_logs() as logs:
        guard, clock = await start_probing(probe)
        await probe_done(guard)
        assert probe.runs == 1
        assert guard.using_fallback
        clock.now += 0.9
        assert await guard.call(redis_answers, memory) == "memory"
        await asyncio.sleep(0)
        assert probe.runs == 1
        for runs in (2, 3):
            clock.now += 1.0
            await guard.call(redis_answers, memory)
            await probe_done(guard)
            assert probe.runs == runs
    assert guard.fallback_activations == 1  # still the one outage, said once
    # Each failed probe is counted, and said at 1, 2, 4, 8...: a long outage stays quiet.
    assert guard.failed_probes == 3
    failed = [log for log in logs if log["event"] == "redis_probe_failed"]
    assert [(log["failed_probes"], log["error"]) for log in failed] == [
        (1, "ConnectionError"),
        (2, "ConnectionError"),
    ]


async def test_a_hung_probe_gives_up_after_its_time_and_a_bug_in_one_is_logged() -> None:
    hang = True

    async def hangs_then_has_a_bug() -> None:
        if hang:
            await asyncio.sleep(30)
        raise ValueError("a bug, not Redis")

    loop = asyncio.get_running_loop()
    started = loop.time()
    guard, clock = await start_probing(Probe(hangs_then_has_a_bug), retry_interval=0.2)
    await probe_done(guard)
    assert 1.0 <= loop.time() - started < 2.0  # retry_interval, but at least one second
    assert guard.using_fallback
    hang = False
    clock.now += 0.2
    with structlog.testing.capture_logs() as logs:
        await guard.call(redis_answers, memory)
        await probe_done(guard)
    assert guard.using_fallback
    assert {"event": "redis_probe_error", "store": "test", "error": "ValueError"} in [
        {key: entry[key] for key in ("event", "store", "error")} for entry in logs
    ]


async def test_a_probe_cancelled_with_its_event_loop_lets_the_next_one_probe() -> None:
    async def hangs() -> None:
        await asyncio.sleep(30)

    probe = Probe(hangs)
    guard, _ = await start_probing(probe)
    task = guard._probe_task
    assert task is not None
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await guard.call(redis_answers, memory)
    await asyncio.sleep(0)
    assert probe.runs == 2
    assert guard._probe_task is not None
    guard._probe_task.cancel()


async def times_out() -> str:
    raise TimeoutError


async def test_one_timeout_is_answered_by_the_fallback_for_that_call_alone_and_counted() -> None:
    guard = RedisGuard("test", timeout=0.05, failure_threshold=3)
    assert await guard.call(times_out, memory) == "memory"
    assert not guard.using_fallback
    assert guard.single_fallbacks == 1
    assert guard.fallback_activations == 0
    assert await guard.call(redis_answers, memory) == "redis"


async def test_timeouts_in_a_row_reaching_the_threshold_switch_to_the_fallback() -> None:
    guard = RedisGuard("test", timeout=0.05, failure_threshold=3)
    with structlog.testing.capture_logs() as logs:
        answers = [await guard.call(times_out, memory) for _ in range(3)]
    assert answers == ["memory"] * 3
    assert guard.using_fallback
    assert guard.fallback_activations == 1
    assert guard.single_fallbacks == 2
    assert [entry["event"] for entry in logs] == ["redis_unavailable_using_fallback"]
    assert await guard.call(redis_answers, memory) == "memory"  # switched: Redis not asked


async def test_a_call_answered_between_timeouts_starts_the_count_again() -> None:
    guard = RedisGuard("test", timeout=0.05, failure_threshold=3)
    for _ in range(5):
        await guard.call(times_out, memory)
        await guard.call(times_out, memory)
        assert await guard.call(redis_answers, memory) == "redis"
    assert not guard.using_fallback
    assert guard.single_fallbacks == 10


async def test_redis_py_socket_timeouts_count_as_timeouts_not_as_an_outage() -> None:
    from redis.exceptions import TimeoutError as RedisTimeoutError

    async def socket_timeout() -> str:
        raise RedisTimeoutError("Timeout reading from socket")

    guard = RedisGuard("test", timeout=0.05, failure_threshold=2)
    assert await guard.call(socket_timeout, memory) == "memory"
    assert not guard.using_fallback
    assert await guard.call(socket_timeout, memory) == "memory"
    assert guard.using_fallback


async def test_a_refused_connection_switches_at_once_whatever_the_threshold() -> None:
    guard = RedisGuard("test", timeout=0.05, failure_threshold=100)
    assert await guard.call(refuse, memory) == "memory"
    assert guard.using_fallback
    assert guard.single_fallbacks == 0


def test_the_failure_threshold_must_be_at_least_one() -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        RedisGuard("test", failure_threshold=0)


def block_the_loop(seconds: float) -> None:
    """What a CPU-bound request handler does to every other task of its process."""
    time.sleep(seconds)


async def test_a_reply_ready_when_a_busy_loop_notices_the_deadline_is_not_a_timeout() -> None:
    loop = asyncio.get_running_loop()
    guard = RedisGuard("test", timeout=0.05, failure_threshold=1)

    async def replied_while_the_loop_was_busy() -> str:
        reply: asyncio.Future[str] = loop.create_future()

        def busy_then_reply() -> None:
            block_the_loop(0.2)  # four timeouts long
            # The reply is handled in the same loop turn in which the late deadline fires,
            # as a socket found readable together with the due timer.
            loop.call_soon(reply.set_result, "redis")

        loop.call_later(0.01, busy_then_reply)
        return await reply

    for _ in range(3):
        assert await guard.call(replied_while_the_loop_was_busy, memory) == "redis"
    assert guard.single_fallbacks == 0
    assert not guard.using_fallback
    assert guard.loop_lag_forgiven >= 3 * 0.1


async def test_a_reply_handed_over_by_another_task_gets_its_loop_turns() -> None:
    loop = asyncio.get_running_loop()
    guard = RedisGuard("test", timeout=0.05, failure_threshold=1)

    async def reply_through_a_batch_task() -> str:
        reply: asyncio.Future[str] = loop.create_future()

        async def batch() -> None:  # as the pipelining drainer hands replies to callers
            await asyncio.sleep(0)
            reply.set_result("redis")

        tasks = []

        def busy_then_read() -> None:
            block_the_loop(0.2)
            tasks.append(loop.create_task(batch()))

        loop.call_later(0.01, busy_then_read)
        return await reply

    assert await guard.call(reply_through_a_batch_task, memory) == "redis"
    assert guard.single_fallbacks == 0


@pytest.mark.parametrize("lag_bound", [None, 0.2], ids=["default bound", "bound 0.2 s"])
async def test_a_stall_longer_than_the_allowance_is_forgiven_up_to_its_bound(
    monkeypatch: pytest.MonkeyPatch, lag_bound: float | None
) -> None:
    # A handler blocked the loop for 1.3 s (longer than LOOP_LAG_ALLOWANCE) before the
    # call's reply could even be read; the reply comes 10 ms after the loop is back, as
    # a call queued behind another is sent only then. Redis answered: not a timeout.
    if lag_bound is not None:
        monkeypatch.setattr(_timer, "MAX_LOOP_LAG_FORGIVEN", lag_bound)
    assert _timer.LOOP_LAG_ALLOWANCE < 1.3
    loop = asyncio.get_running_loop()
    guard = RedisGuard("test", timeout=0.05, failure_threshold=1)

    async def answered_after_the_stall() -> str:
        reply: asyncio.Future[str] = loop.create_future()

        def stall_then_reply() -> None:
            block_the_loop(1.3)
            loop.call_later(0.01, reply.set_result, "redis")

        loop.call_soon(stall_then_reply)
        return await reply

    answer = await guard.call(answered_after_the_stall, memory)
    if lag_bound is None:
        assert answer == "redis"
        assert guard.single_fallbacks == 0
        assert guard.loop_lag_forgiven >= 1.2
    else:  # the bound is reached: the call is given up on, as a hung one would be
        assert answer == "memory"
        assert guard.loop_lag_forgiven == pytest.approx(0.2)
    assert not guard.using_fallback or lag_bound is not None


@pytest.mark.redis
async def test_a_stall_with_replies_waiting_is_no_outage_for_plain_redis_py_calls(
    redis_url: str,
) -> None:
    # The replay store's calls go through redis-py with its socket timeouts: a 1.5 s
    # stall timed them out there (a 1.05 s backstop), and the guard saw an outage.
    client = create_redis(HardenSettings(redis_url=redis_url))  # type: ignore[arg-type]
    assert client is not None
    guard = RedisGuard("test", timeout=0.05)
    store = ReplayStore(client, guard=guard, prefix=f"test:stall:{uuid.uuid4().hex}:")
    try:
        await store.remember("warm", 10)
        claims = [
            asyncio.ensure_future(store.claim(f"stall-{index}", processing_ttl=60))
            for index in range(6)
        ]
        await asyncio.sleep(0)  # sent
        await asyncio.sleep(0)
        block_the_loop(1.5)
        outcomes = await asyncio.gather(*claims)
    finally:
        await client.aclose()
    assert [outcome.value for outcome in outcomes] == ["new"] * 6
    assert guard.single_fallbacks == 0
    assert guard.fallback_activations == 0


async def test_a_hung_call_on_a_busy_loop_is_given_up_within_a_second_of_loop_lag() -> None:
    loop = asyncio.get_running_loop()
    guard = RedisGuard("test", timeout=0.05, failure_threshold=1)

    blockers = []

    async def hangs_while_the_loop_stays_busy() -> str:
        # The loop is late to every deadline for 3 s.
        blockers.extend(
            loop.call_later(delay * 0.1, block_the_loop, 0.09) for delay in range(1, 30)
        )
        await asyncio.sleep(30)
        return "redis"

    started = loop.time()
    assert await guard.call(hangs_while_the_loop_stays_busy, memory) == "memory"
    assert 0.05 <= loop.time() - started <= 0.05 + 1.0 + 0.2
    assert guard.using_fallback
    for handle in blockers:
        handle.cancel()


async def test_callers_timing_out_together_right_after_an_answer_are_one_slow_reply() -> None:
    guard = RedisGuard("test", timeout=0.05, failure_threshold=3)
    assert await guard.call(redis_answers, memory) == "redis"
    # Queued behind one slow round trip, many callers time out in the same instant.
    answers = [await guard.call(times_out, memory) for _ in range(10)]
    assert answers == ["memory"] * 10
    assert not guard.using_fallback
    await asyncio.sleep(0.5)  # Redis silent for half a second (at least 3 timeouts): down
    assert await guard.call(times_out, memory) == "memory"
    assert guard.using_fallback


def test_every_redis_backed_store_made_without_a_guard_gets_the_same_kind_of_guard() -> None:
    from hardenkit.auth.tenants import TenantStatusCache
    from hardenkit.ratelimit import RedisStore
    from hardenkit.resilience.shared import RedisBreakerStore
    from hardenkit.signing import ReplayStore

    client = Redis.from_url("redis://127.0.0.1:1/0")
    guards = {
        "ratelimit": RedisStore(client).guard,
        "replay": ReplayStore(client).guard,
        "tenants": TenantStatusCache(redis=client)._guard,
        "breakers": RedisBreakerStore(client).guard,
    }
    for name, guard in guards.items():
        assert guard is not None
        assert guard.name == name
        assert guard._ping == client.ping  # readiness and recovery without traffic
        assert (guard.timeout, guard.failure_threshold) == (0.05, 3)


@pytest.mark.redis
def test_installed_every_redis_backed_store_shares_the_apps_one_guard(redis_url: str) -> None:
    from starlette.applications import Starlette

    from hardenkit import install
    from hardenkit.resilience.registry import default_registry as registry

    previous = registry.store
    try:
        kit = install(
            Starlette(),
            HardenSettings(redis_url=redis_url, outbound_shared_breakers=True),  # type: ignore[arg-type]
        )
        shared = registry.store
    finally:
        registry.share_through(previous)  # the process-wide registry, as it was
    assert kit.redis_guard is not None
    assert kit.rate_limit_store.guard is kit.redis_guard  # type: ignore[union-attr]
    assert kit.replay_store.guard is kit.redis_guard  # type: ignore[union-attr]
    assert kit.auth.tenant_status._guard is kit.redis_guard  # type: ignore[union-attr]
    assert shared is not None
    assert shared.guard is kit.redis_guard


async def test_warm_up_runs_every_probe_before_traffic_and_readiness_says_starting_meanwhile() -> (
    None
):
    release = asyncio.Event()
    guard = RedisGuard("test", timeout=0.05)
    seen: list[str] = []

    async def connect_and_load_scripts() -> None:
        seen.append((await guard.health_check()).detail["backend"])
        await release.wait()

    guard.add_probe(connect_and_load_scripts)
    warming = asyncio.create_task(guard.warm_up())
    await wait_until(lambda: bool(seen))
    assert seen == ["starting"]
    assert (await guard.health_check()).status is HealthStatus.UNHEALTHY
    release.set()
    assert await warming is True
    assert guard.warmed_up
    assert (await guard.health_check()).status is HealthStatus.HEALTHY


async def test_warm_up_against_an_unreachable_redis_starts_on_the_fallback() -> None:
    async def refused() -> None:
        raise ConnectionError

    guard = RedisGuard("test", timeout=0.05)
    guard.add_probe(refused)
    assert await guard.warm_up() is False
    assert guard.using_fallback
    assert (await guard.health_check()).status is HealthStatus.DEGRADED


def test_every_redis_backed_store_takes_its_guard_the_same_way() -> None:
    client = Redis(port=1)  # never connected: only the wiring is looked at
    shared = RedisGuard.for_client("app", client)
    assert ReplayStore(client, guard=shared).guard is shared
    assert TenantStatusCache(redis=client, guard=shared)._guard is shared
    assert RedisBreakerStore(client, guard=shared).guard is shared
    own = [ReplayStore(client).guard, TenantStatusCache(redis=client)._guard]
    assert all(guard is not None and guard is not shared for guard in own)
    assert ReplayStore().guard is None
    with pytest.raises(ValueError, match="a guard needs the redis client"):
        ReplayStore(guard=shared)
    with pytest.raises(ValueError, match="a guard needs the redis client"):
        TenantStatusCache(guard=shared)


def test_store_keys_share_one_shape_with_a_cluster_hash_tag() -> None:
    assert store_key("hk:tenant:", "acme") == "hk:tenant:{acme}"
    assert RedisBreakerStore(Redis(port=1)).keys("payments") == [
        "hardenkit:breaker:{payments}:state",
        "hardenkit:breaker:{payments}:window",
    ]


async def test_an_answer_sent_before_redis_failed_does_not_end_the_outage() -> None:
    """A call in flight when another found Redis gone (a heartbeat, a slow decision)
    answers late: that says nothing of Redis now. Only a probe ends the outage, after
    the stores' charges ran."""
    probes: list[str] = []

    async def probe() -> None:
        probes.append("charged")

    guard = RedisGuard("test", timeout=1.0, retry_interval=0.2)
    guard.add_probe(probe)
    release = asyncio.Event()

    async def in_flight() -> str:
        await release.wait()
        return "redis"

    async def refused() -> str:
        raise ConnectionRefusedError

    late = asyncio.ensure_future(guard.call(in_flight, memory))
    await asyncio.sleep(0)  # sent
    assert await guard.call(refused, memory) == "memory"
    assert guard.using_fallback
    release.set()
    assert await late == "redis"  # its own answer, for its own caller...
    assert guard.using_fallback  # ...but the outage goes on until a probe passes
    assert probes == []
    await asyncio.sleep(0.25)
    assert await guard.call(in_flight, memory) == "memory"  # starts the probe
    for _ in range(50):  # bounded: the probe runs in the background
        if not guard.using_fallback:
            break
        await asyncio.sleep(0.01)
    assert probes == ["charged"]
    assert not guard.using_fallback


def test_a_child_forked_while_its_parent_probes_redis_probes_for_itself() -> None:
    """The probe task is the parent's and does not run in the child: left marked as
    probing, the child would stay on its fallback for good (measured: 487 fallback
    calls and no Redis call in 5 s)."""
    import json
    import os

    guard = RedisGuard("forked", retry_interval=0.05)
    guard._probing = True  # the parent is mid-probe
    guard._failed_at = 0.0
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        os.write(write, json.dumps([guard._probing, guard._probe_task is None]).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        probing, no_task = json.load(pipe)
    os.waitpid(pid, 0)
    assert (probing, no_task) == (False, True)
    assert guard._probing  # the parent's own state is its own


async def test_timeouts_that_keep_coming_while_others_answer_are_logged_now_and_then() -> None:
    """A dead Cluster node: its keys time out, the other nodes answer, so the guard never
    switches, and the fallback decided those keys in silence (new-user review)."""
    guard = RedisGuard("test", timeout=0.05, failure_threshold=3)
    with structlog.testing.capture_logs() as logs:
        for _ in range(20):
            assert await guard.call(times_out, memory) == "memory"
            assert await guard.call(redis_answers, memory) == "redis"
    assert not guard.using_fallback
    warned = [entry for entry in logs if entry["event"] == "redis_calls_timed_out_using_fallback"]
    assert len(warned) == 1  # at most one every 10 s
    assert warned[0]["timed_out_since_last_warning"] == 3
    assert warned[0]["log_level"] == "warning"
