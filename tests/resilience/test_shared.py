"""Breaker state shared through a real Redis: across processes, on Cluster, and without Redis."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster as ClusterClient

from hardenkit.resilience import (
    BreakerState,
    CircuitBreaker,
    CircuitOpenError,
    RedisBreakerStore,
    StateChange,
)
from hardenkit.resilience.shared import _SCRIPT as breaker_script
from hardenkit.stores import RedisGuard
from tests.support.redis_server import RedisCluster, RedisServer

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]


def run_worker(redis_url: str, prefix: str, role: str) -> str:
    completed = subprocess.run(
        [sys.executable, "-m", "tests.resilience.breaker_worker", redis_url, prefix, role],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    # structlog writes its audit lines to stdout too; the verdict is the last line.
    return completed.stdout.strip().splitlines()[-1]


def test_a_breaker_opened_by_process_a_is_seen_open_by_process_b(
    redis_url: str, key_prefix: str
) -> None:
    assert run_worker(redis_url, key_prefix, "probe") == "allowed"
    assert run_worker(redis_url, key_prefix, "open") == "opened"
    verdict, seconds = run_worker(redis_url, key_prefix, "probe").split()
    assert verdict == "refused"
    assert 0 < float(seconds) <= 30.0


def patient_guard() -> RedisGuard:
    """A guard that waits for Redis long enough on a loaded machine (tests share 2 cores)."""
    return RedisGuard("breakers", timeout=2.0)


def shared_breaker(store: RedisBreakerStore, **options: object) -> CircuitBreaker:
    settings: dict[str, object] = {"window_size": 4, "minimum_calls": 4, "wait_in_open": 30.0}
    settings.update(options)
    return CircuitBreaker("provider", store=store, **settings)  # type: ignore[arg-type]


async def failing() -> None:
    raise ConnectionError("down")


async def succeeding() -> str:
    return "ok"


async def open_through(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.config.minimum_calls):
        with pytest.raises(ConnectionError):
            await breaker.call_async(failing)


async def test_failures_from_two_instances_add_up_in_one_shared_window(
    redis_client: Redis, key_prefix: str
) -> None:
    changes: list[StateChange] = []
    store = RedisBreakerStore(redis_client, guard=patient_guard(), prefix=key_prefix)
    one = shared_breaker(store, on_state_change=[changes.append])
    two = shared_breaker(store, on_state_change=[changes.append])
    for breaker in (one, two, one):
        with pytest.raises(ConnectionError):
            await breaker.call_async(failing)
    assert one.state is BreakerState.CLOSED
    with pytest.raises(ConnectionError):
        await two.call_async(failing)  # the fourth failure, fleet-wide
    with pytest.raises(CircuitOpenError):
        await one.call_async(succeeding)
    assert one.state is BreakerState.OPEN
    assert [(c.current, c.shared) for c in changes] == [(BreakerState.OPEN, True)]


async def test_shared_half_open_trial_closes_the_breaker_for_everyone(
    redis_client: Redis, key_prefix: str
) -> None:
    store = RedisBreakerStore(redis_client, guard=patient_guard(), prefix=key_prefix)
    one = shared_breaker(store, wait_in_open=0.2, permitted_calls_in_half_open=1)
    two = shared_breaker(store, wait_in_open=0.2, permitted_calls_in_half_open=1)
    await open_through(one)
    await asyncio.sleep(0.25)
    await one.acquire_async()  # the one trial permit, fleet-wide
    with pytest.raises(CircuitOpenError):
        await two.acquire_async()
    await one.record_async(0.0, None, "ok")
    assert await two.call_async(succeeding) == "ok"
    assert two.state is BreakerState.CLOSED


async def test_shared_time_window_opens_on_the_failure_rate(
    redis_client: Redis, key_prefix: str
) -> None:
    store = RedisBreakerStore(redis_client, guard=patient_guard(), prefix=key_prefix)
    breaker = shared_breaker(store, window="time", window_size=60)
    await open_through(breaker)
    with pytest.raises(CircuitOpenError):
        await breaker.call_async(succeeding)


async def test_shared_state_works_on_redis_cluster(
    redis_cluster: RedisCluster, key_prefix: str
) -> None:
    client_a = ClusterClient.from_url(redis_cluster.url)
    client_b = ClusterClient.from_url(redis_cluster.url)
    try:
        one = shared_breaker(RedisBreakerStore(client_a, guard=patient_guard(), prefix=key_prefix))
        two = shared_breaker(RedisBreakerStore(client_b, guard=patient_guard(), prefix=key_prefix))
        await open_through(one)
        with pytest.raises(CircuitOpenError):
            await two.call_async(succeeding)
    finally:
        await client_a.aclose()
        await client_b.aclose()


async def test_while_redis_is_down_each_process_falls_back_to_its_own_breaker(
    redis_server_factory: Callable[[], RedisServer], key_prefix: str
) -> None:
    server = redis_server_factory()
    client = Redis.from_url(server.url, socket_timeout=0.2, socket_connect_timeout=0.2)
    guard = RedisGuard("breakers", timeout=0.2, retry_interval=0.2)
    store = RedisBreakerStore(client, guard=guard, prefix=key_prefix)
    breaker = shared_breaker(store)
    try:
        assert await breaker.call_async(succeeding) == "ok"
        server.stop()
        assert await breaker.call_async(succeeding) == "ok"  # no Redis error reaches us
        assert guard.using_fallback
        for _ in range(breaker.config.minimum_calls):  # the local breaker still protects
            with pytest.raises(ConnectionError):
                await breaker.call_async(failing)
            if breaker.state is BreakerState.OPEN:
                break
        with pytest.raises(CircuitOpenError):
            await breaker.call_async(succeeding)
    finally:
        await client.aclose()


@pytest.fixture
async def private_client(redis_server_factory: Callable[[], RedisServer]) -> AsyncIterator[Redis]:
    """A client of a Redis of its own, whose script cache a test may empty."""
    client = Redis.from_url(redis_server_factory().url)
    try:
        yield client
    finally:
        await client.aclose()


async def test_warm_up_loads_the_breaker_script_before_the_first_call(
    private_client: Redis, key_prefix: str
) -> None:
    guard = patient_guard()
    RedisBreakerStore(private_client, guard=guard, prefix=key_prefix)
    assert await private_client.script_exists(breaker_script.sha) == [False]
    assert await guard.warm_up()
    assert await private_client.script_exists(breaker_script.sha) == [True]


async def test_a_redis_that_lost_the_script_runs_the_step_all_the_same(
    private_client: Redis, key_prefix: str
) -> None:
    guard = patient_guard()
    breaker = shared_breaker(RedisBreakerStore(private_client, guard=guard, prefix=key_prefix))
    await guard.warm_up()
    await private_client.script_flush()  # a restart between two probes
    assert await breaker.call_async(succeeding) == "ok"
    assert not guard.using_fallback
    assert await private_client.script_exists(breaker_script.sha) == [True]
