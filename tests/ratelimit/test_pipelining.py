"""Concurrent decisions batched over the store's one held connection."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster as ClusterClient

from hardenkit.ratelimit import RateLimiter, RedisStore
from hardenkit.ratelimit._pipelining import _CLUSTER_IN_FLIGHT, ScriptRunner
from hardenkit.stores import RedisGuard
from tests.ratelimit.test_redis_store import connected_clients
from tests.support.redis_server import RedisCluster, RedisServer

pytestmark = pytest.mark.redis


async def evalsha_calls(admin: Redis) -> int:
    stats = (await admin.info("commandstats")).get("cmdstat_evalsha", {"calls": 0})
    return int(stats["calls"])


@pytest.fixture
def server(redis_server_factory: Callable[[], RedisServer]) -> RedisServer:
    return redis_server_factory()


@pytest.fixture
async def admin(server: RedisServer) -> AsyncIterator[Redis]:
    """A client of the private Redis for the test's own look at it (INFO)."""
    client = Redis.from_url(server.url)
    yield client
    await client.aclose()


@pytest.fixture
async def client(server: RedisServer) -> AsyncIterator[Redis]:
    """The client the store under test uses."""
    client = Redis.from_url(server.url, socket_timeout=2.0, socket_connect_timeout=2.0)
    yield client
    await client.aclose()


async def test_concurrent_decisions_go_in_batches_over_the_one_held_connection(
    admin: Redis, client: Redis
) -> None:
    before = await connected_clients(admin)
    store = RedisStore(client, prefix="hk:", guard=RedisGuard("batch", timeout=2.0))
    limiter = RateLimiter("100/hour", store=store, name="batched")
    evalsha_before = await evalsha_calls(admin)
    decisions = await asyncio.gather(*(limiter.hit(f"caller-{i % 7}") for i in range(700)))
    assert {decision.backend for decision in decisions} == {"redis"}
    # Every caller counted exactly: 7 callers, 100 each, 700 calls.
    assert sum(decision.allowed for decision in decisions) == 700
    assert min(decision.remaining for decision in decisions) == 0
    # No second connection for the batches, and still one EVALSHA per decision.
    assert await connected_clients(admin) == before + 1
    assert await evalsha_calls(admin) - evalsha_before == 700


async def test_an_error_reply_in_a_batch_is_that_callers_and_the_others_are_answered(
    client: Redis,
) -> None:
    store = RedisStore(client, prefix="hk:", guard=RedisGuard("mixed", timeout=2.0))
    limiter = RateLimiter("5/hour", store=store, name="mixed")
    assert (await limiter.hit("warm")).backend == "redis"  # script loaded, conn held
    # A key of the wrong type makes the script fail for that caller alone.
    digest = limiter._storage_key("wrong").split(":", 1)[1]
    await client.hset("hk:{mixed:" + digest + "}", "field", 1)
    keys = ["a", "wrong", "b", "c", "d"]
    results = dict(zip(keys, await asyncio.gather(*map(limiter.hit, keys)), strict=True))
    for key in ("a", "b", "c", "d"):
        assert (results[key].backend, results[key].remaining) == ("redis", 4)
    # The failing caller is answered too (by the fallback), not left waiting.
    assert results["wrong"].backend == "memory"
    assert (await limiter.hit("a")).remaining == 3  # the replies stayed in order


async def test_a_batch_cut_off_by_a_frozen_redis_is_never_read_as_later_decisions(
    server: RedisServer, client: Redis
) -> None:
    assert server.process is not None
    # Each caller gives up after 0.1 s; no outage is declared, so each is answered alone.
    guard = RedisGuard("frozen", timeout=0.1, retry_interval=0.2, failure_threshold=1000)
    store = RedisStore(client, guard=guard)
    stalled = RateLimiter("100/hour", store=store, name="stalled")
    later = RateLimiter("5/hour", store=store, name="later")
    assert (await later.hit("warm")).backend == "redis"
    server.process.send_signal(signal.SIGSTOP)
    try:
        decisions = await asyncio.gather(*(stalled.hit(f"k{i}") for i in range(20)))
        assert {decision.backend for decision in decisions} == {"memory"}
        # Past the batch's own backstop (its callers' timeout plus the loop-lag
        # allowance): the batch is cut off with its replies still to come.
        await asyncio.sleep(1.5)
    finally:
        server.process.send_signal(signal.SIGCONT)
    fresh = [(d.backend, d.remaining) for d in [await later.hit("fresh") for _ in range(3)]]
    assert fresh == [("redis", 4), ("redis", 3), ("redis", 2)]


_SHA = "0123456789abcdef0123456789abcdef01234567"


@given(
    key=st.text(min_size=1, max_size=80),
    args=st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=6),
)
def test_an_evalsha_is_written_byte_for_byte_as_redis_py_packs_it(
    key: str, args: list[int]
) -> None:
    client = Redis()  # never connects: only its encoder and a connection's packer are used
    runner = ScriptRunner(client, "return 1", _SHA, batch_timeout=1.0)
    connection = client.connection_pool.make_connection()
    expected = b"".join(connection.pack_command("EVALSHA", _SHA, 2, key, key + ":r", *args))
    assert runner._packed_evalsha((key, key + ":r"), tuple(args)) == expected


async def test_a_caller_cancelled_in_the_turn_its_reply_came_hands_the_reply_on() -> None:
    """The batch set the reply, and in that same turn the caller's timeout cancelled it:
    the batch saw a done future, not a cancelled one. Whoever waits for the given-up
    call's outcome (the fallback, to settle its charge) must still be told."""
    runner = ScriptRunner(
        Redis.from_url("redis://127.0.0.1:1/0"), "return 1", "0" * 40, batch_timeout=1.0
    )
    runner._loop = asyncio.get_running_loop()
    runner._busy = True  # a batch is in flight: this call queues behind it
    told: list[object] = []
    caller = asyncio.create_task(runner.run(("k",), (1,), told.append))
    await asyncio.sleep(0)
    [(_, _, future, _)] = runner._queue
    future.set_result([5, 0, 0])
    caller.cancel()  # the same turn
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert told == [[5, 0, 0]]


async def test_a_held_connection_redis_closed_while_idle_is_replaced_not_a_fallback(
    admin: Redis, client: Redis
) -> None:
    """Redis closed the store's held connection while it sat idle (CLIENT KILL here; a
    restart or a sentinel's reconfiguration alike): the next decision fails on it once,
    which is a stale socket, not Redis down. It is sent again at once on a fresh
    connection, as redis-py does for its pooled ones; the guard stays on Redis."""
    guard = RedisGuard("stale", timeout=2.0)
    store = RedisStore(client, prefix="hk:", guard=guard, fallback_share=1)
    limiter = RateLimiter("3/hour", store=store, name="stale")
    assert (await limiter.hit("caller")).backend == "redis"
    killed = await admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    assert killed >= 1
    decisions = [await limiter.hit("caller") for _ in range(3)]
    assert [(d.backend, d.allowed) for d in decisions] == [
        ("redis", True),
        ("redis", True),
        ("redis", False),  # counted once each: the first decision was not taken twice
    ]
    assert guard.fallback_activations == 0


async def test_a_child_forked_after_decisions_connects_afresh_and_counts_with_its_parent(
    server: RedisServer,
) -> None:
    """A fork after the app talked to Redis (after its startup, after traffic): the child
    would write to its parent's sockets and read replies meant for the parent (measured
    before: 500s from a reply to another command). It drops them and connects afresh;
    the parent carries on; the two count one limit."""
    import gc
    import json
    import os

    from hardenkit import HardenSettings
    from hardenkit.stores import create_redis

    client = create_redis(HardenSettings(redis_url=server.url))  # type: ignore[arg-type]
    assert isinstance(client, Redis)
    guard = RedisGuard("fork", timeout=2.0)
    store = RedisStore(client, prefix="hk:", guard=guard, fallback_share=1)
    limiter = RateLimiter("3/hour", store=store, name="forked")
    assert (await limiter.hit("caller")).allowed
    parent_id = await client.client_id()
    held = store._runner._connection
    assert held is not None
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:

            async def child() -> list[object]:
                # What the collector does at some point in any child with a running loop:
                # the parent's dropped objects are finalized now, not by luck (before the
                # fix, their close unregistered the parent's socket from the epoll both
                # processes share, and the parent's next read timed out).
                gc.collect()
                decision = await limiter.hit("caller")
                fresh = store._runner._connection is not held
                return [decision.backend, decision.allowed, fresh, await client.client_id()]

            os.write(write, json.dumps(asyncio.run(child())).encode())
        except BaseException as error:
            os.write(write, json.dumps(["error", repr(error), False, 0]).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        backend, allowed, fresh, child_id = json.load(pipe)
    os.waitpid(pid, 0)
    assert (backend, allowed, fresh) == ("redis", True, True)
    assert child_id != parent_id  # its own connection, not the parent's socket
    assert await client.client_id() == parent_id  # the parent's connection is untouched
    assert [(await limiter.hit("caller")).allowed for _ in range(2)] == [True, False]
    await client.aclose()


@pytest.mark.cluster
async def test_a_first_burst_on_a_cluster_finds_its_connections_open(
    redis_cluster: RedisCluster,
) -> None:
    """Startup opens the connections a burst needs: none is opened inside a decision.

    A burst of 16 new connections to one node took 30-45 ms on an idle 2-core host, most
    of a decision's 50 ms: a fresh worker's first burst fell back (503 while the
    instances were unknown) on a busy one.
    """
    client = ClusterClient.from_url(redis_cluster.url)
    store = RedisStore(client, prefix="hk:burst:", fallback_share=1)
    limiter = RateLimiter("1000/hour", store=store, name="burst")
    try:
        assert await store.guard.warm_up()

        def opened() -> dict[str, int]:
            return {node.name: len(node._connections) for node in client.get_primaries()}

        at_startup = opened()
        assert all(count >= _CLUSTER_IN_FLIGHT for count in at_startup.values()), at_startup
        # Keys on every primary; four times as many callers as connections to each.
        callers = [f"caller-{index}" for index in range(4 * _CLUSTER_IN_FLIGHT * 3)]
        decisions = await asyncio.gather(*(limiter.hit(caller) for caller in callers))
        assert {(decision.backend, decision.allowed) for decision in decisions} == {("redis", True)}
        assert opened() == at_startup
        assert store.guard.single_fallbacks == 0
    finally:
        await client.aclose()


@pytest.mark.cluster
async def test_a_paused_cluster_node_holds_up_its_own_keys_only(tmp_path: Path) -> None:
    """The in-flight bound is per primary: decisions for a healthy node never wait behind
    calls to a node that stopped answering (they would time out with it)."""
    cluster = RedisCluster(tmp_path)
    cluster.start()
    client = ClusterClient.from_url(cluster.url)
    store = RedisStore(client, prefix="hk:pause:", fallback_share=1)
    limiter = RateLimiter("1000/hour", store=store, name="pause")
    paused = cluster.nodes[0]
    assert paused.process is not None
    try:
        assert await store.guard.warm_up()
        on_paused: list[str] = []
        elsewhere: list[str] = []
        for index in range(400):
            caller = f"caller-{index}"
            node = client.get_node_from_key(store.redis_key(limiter._storage_key(caller)))
            mine = node is not None and node.port == paused.port
            (on_paused if mine else elsewhere).append(caller)
        assert len(on_paused) >= 2 * _CLUSTER_IN_FLIGHT
        assert len(elsewhere) >= 16

        async def timed(caller: str) -> tuple[float, str]:
            started = time.perf_counter()
            decision = await limiter.hit(caller)
            return time.perf_counter() - started, decision.backend

        paused.process.send_signal(signal.SIGSTOP)  # well within the 2 s node timeout
        try:
            stuck = [asyncio.create_task(timed(c)) for c in on_paused[: 2 * _CLUSTER_IN_FLIGHT]]
            await asyncio.sleep(0.01)  # their calls are in flight
            healthy = await asyncio.gather(*(timed(c) for c in elsewhere[:16]))
            held = await asyncio.gather(*stuck)
        finally:
            paused.process.send_signal(signal.SIGCONT)
        assert {backend for _, backend in healthy} == {"redis"}
        # One bound for every node: the healthy ones waited for the paused node's calls to
        # give up (0.50 s against its 0.51 s); per node: 0.01 s against 0.56 s.
        assert max(took for took, _ in healthy) < min(took for took, _ in held) / 2
    finally:
        await client.aclose()
        cluster.stop()
