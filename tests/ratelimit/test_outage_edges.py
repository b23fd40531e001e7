"""The outage's edges: Redis back empty, an instance that never counted, a flood, a big cost."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from structlog.testing import capture_logs

from hardenkit.health import HealthStatus
from hardenkit.instances import InstanceRegistry, instances_key
from hardenkit.ratelimit import RateLimiter, RedisStore, redis_store
from hardenkit.ratelimit._fallback import OutageFallback
from hardenkit.ratelimit.limiter import key_digest
from hardenkit.ratelimit.memory import MemoryStore
from hardenkit.ratelimit.rate import Rate
from hardenkit.ratelimit.redis_store import epoch_key
from hardenkit.stores import RedisGuard
from tests.ratelimit.test_outage_fallback import LIMIT, Instance, fleet_of
from tests.support.redis_server import RedisServer, await_cluster_ok, one_node_cluster

pytestmark = pytest.mark.redis


async def test_redis_back_empty_restores_keys_nobody_decided_during_the_outage(
    redis_server_factory: Callable[[], RedisServer], key_prefix: str
) -> None:
    """Without persistence a restarted Redis knows no key: the instances that mirrored a
    key bring it back, though none of them decided it while Redis was away."""
    server = redis_server_factory()
    async with fleet_of(server.url, key_prefix, 4) as fleet:
        spread = sum([await fleet[index % 4].admitted("quiet", 1) for index in range(LIMIT)])
        assert spread == LIMIT
        # Exhausted through one instance only; the others never decided it.
        assert await fleet[0].admitted("pinned", LIMIT) == LIMIT
        server.stop()
        assert await fleet[1].admitted("pinned", 5) == 0  # no reservation: no share
        server.start()
        await fleet[1].recovered()  # its probe restores what it mirrored
        # The others made no call during the outage: their next heartbeat finds itself
        # gone from Redis, and they restore theirs.
        for instance in fleet:
            await instance.instances.beat()
        for instance in fleet:
            while getattr(instance.store, "_restoring", None) is not None:
                await asyncio.sleep(0.01)
        assert not any(instance.guard.using_fallback for instance in fleet)
        assert sum([await instance.admitted("quiet", LIMIT) for instance in fleet]) == 0
        assert sum([await instance.admitted("pinned", LIMIT) for instance in fleet]) == 0


async def test_an_instance_that_never_heard_from_redis_does_not_admit_in_an_outage(
    redis_server_factory: Callable[[], RedisServer], key_prefix: str
) -> None:
    """Started during an outage, it cannot know how many instances share each limit: a
    share of 1 would give it the whole limit on top of the others."""
    server = redis_server_factory()
    server.stop()
    late = Instance(server.url, key_prefix)
    try:
        await late.instances.beat()  # unanswered
        assert not late.instances.answered
        decisions = [await late.limiter.hit("tenant") for _ in range(3)]
        assert [(d.allowed, d.unavailable) for d in decisions] == [(False, True)] * 3
        assert decisions[0].retry_after == late.guard.retry_interval
        server.start()
        await late.recovered()
        await late.instances.beat()
        assert late.instances.answered
        assert await late.admitted("tenant", 3) == 3
    finally:
        await late.aclose()


async def test_a_cost_above_the_shares_burst_is_left_to_redis(
    redis_server_factory: Callable[[], RedisServer], key_prefix: str
) -> None:
    """A share of 20/hour among 4 has a burst of 5: a request of 6 is never admitted by
    it, though Redis would admit it; the answer is unavailable, retry soon."""
    server = redis_server_factory()
    async with fleet_of(server.url, key_prefix, 4) as fleet:
        assert (await fleet[0].limiter.hit("big", 6)).allowed
        server.stop()
        decision = await fleet[0].limiter.hit("big", 6)
        assert (decision.allowed, decision.unavailable) == (False, True)
        assert decision.retry_after == fleet[0].guard.retry_interval
        assert (await fleet[0].limiter.hit("big", 1)).allowed  # its reservation still holds


def test_a_flood_of_keys_never_forgets_one_with_admissions_to_charge() -> None:
    """Bounded by ``max_keys``: only keys with nothing to charge make room; when none can
    go a new key is refused by the fallback (``None``: unavailable), not admitted."""
    fallback = OutageFallback(MemoryStore(max_keys=4), lambda: 1.0, reserve_us=10_000_000)
    rate = Rate(5, 3600)
    victim = [fallback.decide("victim", rate, 1) for _ in range(7)]
    assert [d.allowed for d in victim if d is not None] == [True] * 5 + [False] * 2
    for index in range(3):  # three more keys admit once each: four keys to charge
        decision = fallback.decide(f"flood-{index}", rate, 1)
        assert decision is not None
        assert decision.allowed
    assert [fallback.decide(f"more-{index}", rate, 1) for index in range(100)] == [None] * 100
    assert fallback.pending_keys == 4
    assert fallback.refused_full == 100
    again = fallback.decide("victim", rate, 1)
    assert again is not None
    assert not again.allowed  # its state survived the flood


def test_keys_with_nothing_to_charge_make_room_oldest_first() -> None:
    fallback = OutageFallback(MemoryStore(max_keys=3), lambda: 1.0, reserve_us=10_000_000)
    rate = Rate(5, 3600)
    memory = fallback.memory
    exhausted = memory.now_us() + rate.tolerance_us  # Redis said: nothing left
    for key in ("refused-a", "refused-b"):
        fallback.mirror(key, rate.tolerance_us, None, memory.now_us())
    assert memory.tat("refused-a") is not None
    assert memory.tat("refused-a") >= exhausted  # type: ignore[operator]
    for key in ("refused-a", "refused-b"):
        decision = fallback.decide(key, rate, 1)
        assert decision is not None
        assert not decision.allowed
    admitted = fallback.decide("admitted", rate, 1)
    assert admitted is not None
    assert admitted.allowed
    for key in ("new-1", "new-2"):  # each takes the place of the oldest refused key
        decision = fallback.decide(key, rate, 1)
        assert decision is not None
        assert decision.allowed
    assert fallback.pending_keys == 3
    assert fallback.decide("new-3", rate, 1) is None  # every key left has a charge


async def test_a_restart_that_empties_redis_holds_until_the_keys_holder_restored_it(
    redis_server_factory: Callable[[], RedisServer], key_prefix: str
) -> None:
    """A client on one keep-alive connection spends a key through one instance, and Redis
    restarts empty before that instance notices (no call of its own failed, its next
    heartbeat not due). The others must not decide the key on the empty Redis: until
    the hold ends they answer from their shares (none: no reservation), and by then the
    holder has restored it. Before the epoch they admitted the limit again."""
    hold = 5.0
    server = redis_server_factory()
    async with fleet_of(server.url, key_prefix, 4, restart_hold=hold) as fleet:
        assert await fleet[0].admitted("pinned", LIMIT) == LIMIT
        server.stop()
        server.start()  # empty: the test servers keep nothing on disk
        loop = asyncio.get_running_loop()
        started = loop.time()
        for instance in fleet[1:]:
            await instance.limiter.hit("nudge")  # its dead connection fails: an outage
            await instance.recovered()  # its probe restores what it mirrored, not the key
        held = [
            await instance.limiter.hit("pinned") for instance in fleet[1:] for _ in range(LIMIT)
        ]
        fresh = await fleet[1].limiter.hit("never-seen")
        assert loop.time() - started < hold  # all of it inside the hold
        assert not any(decision.allowed for decision in held)
        # Told to come back when Redis decides again, not after the share's slow refill.
        assert max(decision.retry_after for decision in [*held, fresh]) <= hold
        assert not fresh.allowed
        # The holder's heartbeat finds itself gone from Redis: it restores its keys.
        await fleet[0].instances.beat()
        for _ in range(200):  # bounded: the restore runs in the background
            if fleet[0].store._restoring is None:
                break
            await asyncio.sleep(0.01)
        await fleet[0].limiter.hit("nudge")  # its own dead connection, in turn
        await fleet[0].recovered()
        await asyncio.sleep(await until_redis_decides(fleet[0].client, key_prefix) + 0.1)
        after = [await instance.limiter.hit("pinned") for instance in fleet for _ in range(5)]
        assert {decision.backend for decision in after} == {"redis"}
        assert not any(decision.allowed for decision in after)
        assert await fleet[2].admitted("never-seen", LIMIT) == LIMIT  # a new key is whole


async def test_a_first_start_and_a_cleared_store_do_not_hold(
    redis_client: Redis, key_prefix: str
) -> None:
    """The epoch is created ready by a store (or heartbeat) that never had an answer: a
    first deployment decides at once. ``clear()`` (``testing.reset()``) keeps it."""
    guard = RedisGuard("test", timeout=1.0)
    registry = InstanceRegistry(
        redis_client, guard, key=instances_key(key_prefix), epoch=epoch_key(key_prefix)
    )
    store = RedisStore(redis_client, guard=guard, prefix=key_prefix, instances=registry)
    limiter = RateLimiter("3/hour", store=store, name="first")
    assert (await limiter.hit("k")).allowed  # the store's first call creates the epoch
    assert int(await redis_client.get(epoch_key(key_prefix))) > 0
    await registry.beat()
    await store.clear()
    assert await redis_client.exists(epoch_key(key_prefix))
    assert [(await limiter.hit("k")).allowed for _ in range(4)] == [True] * 3 + [False]


async def test_a_heartbeat_recreates_a_lost_epoch_a_hold_ahead(
    redis_client: Redis, key_prefix: str
) -> None:
    guard = RedisGuard("test", timeout=1.0)
    epoch = epoch_key(key_prefix)
    registry = InstanceRegistry(redis_client, guard, key=instances_key(key_prefix), epoch=epoch)
    await registry.beat()  # first answer: ready at once
    first = int(await redis_client.get(epoch))
    server_now = await redis_client.time()
    assert first <= server_now[0] * 1_000_000 + server_now[1]
    await redis_client.delete(epoch, instances_key(key_prefix))  # Redis lost its data
    await registry.beat()
    again = int(await redis_client.get(epoch))
    server_now = await redis_client.time()
    ahead = again - (server_now[0] * 1_000_000 + server_now[1])
    assert registry.restart_hold * 1_000_000 - 500_000 < ahead <= registry.restart_hold * 1_000_000


async def until_redis_decides(client: Redis, key_prefix: str) -> float:
    """Seconds until the epoch's hold ends, by the Redis server's clock."""
    ready = int(await client.get(epoch_key(key_prefix)))
    seconds, micros = await client.time()
    return max(0.0, (ready - seconds * 1_000_000 - micros) / 1_000_000)


async def test_an_outage_refusal_says_to_retry_when_redis_may_answer_not_after_the_refill(
    redis_server_factory: Callable[[], RedisServer], key_prefix: str
) -> None:
    """A key an instance never decided has no share in an outage, and its share refills
    at a quarter of 20/hour: the refusal used to say 720 s. Redis may decide it after
    the guard's retry interval; the client is told that."""
    server = redis_server_factory()
    async with fleet_of(server.url, key_prefix, 4) as fleet:
        assert await fleet[0].admitted("warm", 1) == 1
        server.stop()
        refused = [await fleet[0].limiter.hit("never-seen") for _ in range(3)]
        assert [decision.allowed for decision in refused] == [False] * 3
        assert {decision.backend for decision in refused} == {"memory"}
        assert max(d.retry_after for d in refused) == fleet[0].guard.retry_interval


async def test_a_hold_answers_each_rule_by_its_when_down(
    redis_client: Redis, key_prefix: str
) -> None:
    """A lost epoch (a flush) holds every rule: ``closed`` answers 503 until the hold
    ends; ``open`` is not open while Redis is up, the share decides it as it does for
    ``fallback`` (a lone store: the whole limit, never more); then Redis decides."""
    guard = RedisGuard("test", timeout=1.0)
    store = RedisStore(redis_client, guard=guard, prefix=key_prefix, restart_hold=1.0)
    closed = RateLimiter("3/hour", store=store, name="login", when_down="closed")
    opened = RateLimiter("3/hour", store=store, name="feed", when_down="open")
    assert (await closed.hit("k")).allowed  # an answer: from now on a lost epoch is a loss
    await redis_client.delete(epoch_key(key_prefix))
    held = await closed.hit("k")
    assert (held.allowed, held.unavailable, held.backend) == (False, True, "none")
    assert 0 < held.retry_after <= 1.0  # when the hold ends
    assert [(await opened.hit("k")).allowed for _ in range(5)] == [True] * 3 + [False] * 2
    ready = await store.health_check()  # /readyz's "rate_limits", not critical
    assert ready.status == HealthStatus.DEGRADED
    assert 0 < ready.detail["held_seconds"] <= 1.0
    await asyncio.sleep(await until_redis_decides(redis_client, key_prefix) + 0.05)
    assert (await store.health_check()).status == HealthStatus.HEALTHY
    after = [await closed.hit("k") for _ in range(3)]
    assert [(d.allowed, d.backend) for d in after] == [(True, "redis")] * 2 + [(False, "redis")]


async def test_a_key_its_holder_decides_during_the_hold_is_in_redis_before_the_hold_ends(
    redis_server_factory: Callable[[], RedisServer], key_prefix: str
) -> None:
    """Review: the holder's own first call after the loss put the key in its share,
    which the restore skips, and it was charged only after the hold: the others found it
    empty at the hold's end (40 of 20). A hold now charges what the share decides as it
    goes, a key's floor first."""
    server = redis_server_factory()
    async with fleet_of(server.url, key_prefix, 4, restart_hold=1.5) as fleet:
        assert await fleet[0].admitted("pinned", LIMIT) == LIMIT
        admin = Redis.from_url(server.url)
        try:
            await admin.flushall()  # Redis lost its data; no call failed
            decision = await fleet[0].limiter.hit("pinned")  # the holder, first
            assert not decision.allowed
            await asyncio.sleep(0.3)  # well inside the hold
            assert await until_redis_decides(admin, key_prefix) > 0
            # Already back in Redis, exhausted, before anyone may decide it there.
            stored = fleet[0].store.redis_key(f"api:{key_digest('pinned')}")
            assert await admin.pttl(stored) > 3_000_000  # most of the hour's refill
            await asyncio.sleep(await until_redis_decides(admin, key_prefix) + 0.02)
        finally:
            await admin.aclose()
        assert await fleet[1].admitted("pinned", 25) == 0


async def test_an_epoch_set_by_a_clock_stepped_back_is_set_again(
    redis_client: Redis, key_prefix: str
) -> None:
    """An epoch an hour ahead is no hold: every decision would wait for the clock."""
    guard = RedisGuard("test", timeout=1.0)
    store = RedisStore(redis_client, guard=guard, prefix=key_prefix, restart_hold=2.0)
    limiter = RateLimiter("3/hour", store=store, name="clock")
    assert (await limiter.hit("k")).allowed
    seconds, micros = await redis_client.time()
    await redis_client.set(epoch_key(key_prefix), (seconds + 3600) * 1_000_000 + micros)
    held = await limiter.hit("k")  # set again, two seconds ahead
    assert held.backend == "memory"
    assert 0 < await until_redis_decides(redis_client, key_prefix) <= 2.0
    await asyncio.sleep(await until_redis_decides(redis_client, key_prefix) + 0.05)
    assert (await limiter.hit("k")).backend == "redis"


async def test_a_redis_that_refuses_two_slots_decides_without_the_epoch(
    tmp_path: Path, key_prefix: str
) -> None:
    """A cluster-mode server behind a plain client (as a sharding proxy would be)
    refuses a script naming two slots: the store leaves the epoch out and says so,
    instead of every decision failing over to the fallback."""
    server = RedisServer(tmp_path / "cluster-mode", cluster=True)
    server.start()
    client = Redis.from_url(server.url, socket_timeout=2.0)
    try:
        await client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        for _ in range(100):  # bounded: the node takes its slots
            if (await client.execute_command("CLUSTER", "INFO")).find(b"cluster_state:ok") >= 0:
                break
            await asyncio.sleep(0.05)
        guard = RedisGuard("test", timeout=2.0, ping=client.ping)
        store = RedisStore(client, guard=guard, prefix=key_prefix, fallback_share=1)
        with capture_logs() as logs:
            await guard.warm_up()
        assert store.epoch_key is None
        assert any(entry["event"] == "ratelimit_epoch_unavailable" for entry in logs)
        limiter = RateLimiter("3/hour", store=store, name="proxy")
        decisions = [await limiter.hit("k") for _ in range(4)]
        assert [(d.allowed, d.backend) for d in decisions] == [(True, "redis")] * 3 + [
            (False, "redis")
        ]
    finally:
        await client.aclose()
        server.stop()


async def test_an_outage_on_a_redis_that_refuses_two_slots_is_charged_back_slot_by_slot(
    tmp_path: Path, key_prefix: str
) -> None:
    """Behind a plain client, a server that enforces slots refuses one charge naming many
    keys: the charges go one slot per call, so what the fallback admitted reaches Redis."""
    server = one_node_cluster(tmp_path / "cluster-mode")
    instance = Instance(server.url, key_prefix, share=1.0)
    keys = [f"caller-{index}" for index in range(6)]  # store keys in six different slots
    other: Instance | None = None
    try:
        await instance.guard.warm_up()
        assert instance.store.epoch_key is None  # the server refused two slots
        for key in keys:
            assert await instance.admitted(key, 1) == 1
        server.stop()
        for key in keys:
            assert await instance.admitted(key, 4) == 4
        server.start()
        with SyncRedis(port=server.port, socket_timeout=2.0) as admin:
            await_cluster_ok(admin)
        await instance.recovered()
        # Another instance, which saw none of it, finds every admission counted in Redis.
        other = Instance(server.url, key_prefix, share=1.0)
        await other.guard.warm_up()
        for key in keys:
            assert await other.admitted(key, LIMIT) == LIMIT - 5
        assert not other.guard.using_fallback
    finally:
        await instance.aclose()
        if other is not None:
            await other.aclose()
        server.stop()


async def test_what_a_share_admits_in_a_hold_reaches_redis_while_the_key_stays_in_it(
    redis_server_factory: Callable[[], RedisServer],
    key_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Second review: charged once and let go of, a key would start a new share without
    its reservation; charged only after the hold, the others would decide without its
    units. So: charged as it goes, kept in the share, and in the hold's last moments the
    share refuses (what it admitted then could not reach Redis in time)."""
    # The last second of a 3 s hold instead of 150 ms: a wide window, on a busy host too.
    monkeypatch.setattr(redis_store, "_HOLD_MARGIN_US", 1_000_000)
    server = redis_server_factory()
    emission_ms = 3600 * 1000 // LIMIT
    async with fleet_of(server.url, key_prefix, 4, restart_hold=3.0) as fleet:
        holder = fleet[0]
        assert await holder.admitted("spread", 4) == 4  # reserves floor(16 / 4) = 4
        storage = f"api:{key_digest('spread')}"
        admin = Redis.from_url(server.url)
        try:
            await admin.flushall()
            assert await holder.admitted("spread", 2) == 2  # held: from its reservation
            await asyncio.sleep(0.3)
            assert await admin.pttl(holder.store.redis_key(storage)) > 5.5 * emission_ms
            assert holder.store._outage.holds(storage)
            await asyncio.sleep(max(0.0, holder.store.held_seconds - 0.6))
            closing = await holder.limiter.hit("spread")  # 2 left in its share, but late
            assert (closing.allowed, closing.backend) == (False, "memory")
            assert 0 < closing.retry_after <= 1.0
            await asyncio.sleep(await until_redis_decides(admin, key_prefix) + 0.05)
        finally:
            await admin.aclose()
        assert await fleet[1].admitted("spread", LIMIT) == LIMIT - 6


class _CutShort:
    """A client whose ``eval`` gives up at the ``at``-th call (the probe's time ran out)."""

    def __init__(self, client: Redis, at: int) -> None:
        self.client = client
        self.at = at
        self.calls = 0

    async def eval(self, *args: object) -> object:
        self.calls += 1
        if self.calls == self.at:
            raise asyncio.CancelledError
        return await self.client.eval(*args)  # type: ignore[arg-type]


async def test_a_charge_cut_short_charges_each_unit_once_when_it_is_taken_up_again(
    redis_server_factory: Callable[[], RedisServer], key_prefix: str
) -> None:
    """The probe has a time budget: what landed before it ran out counts as charged,
    what did not is charged by the next charge, and nothing twice."""
    server = redis_server_factory()
    instance = Instance(server.url, key_prefix, share=1.0)
    other = Instance(server.url, key_prefix, share=1.0)
    keys = [f"caller-{index}" for index in range(600)]  # three batches of charges
    try:
        server.stop()
        for key in keys:
            assert await instance.admitted(key, 1) == 1
        server.start()
        outage = instance.store._outage
        cut = _CutShort(instance.client, at=2)
        with pytest.raises(asyncio.CancelledError):
            await outage.charge(cut, key_prefix)  # type: ignore[arg-type]
        assert outage.ready_keys == len(keys) - 256  # one batch landed: let go of
        await outage.charge(instance.client, key_prefix)
        assert outage.ready_keys == 0
        for key in (*keys[:3], *keys[-3:]):  # from the batch that landed, and the rest
            assert await other.admitted(key, LIMIT) == LIMIT - 1, key
    finally:
        await instance.aclose()
        await other.aclose()


async def test_a_store_built_without_warm_up_finds_a_redis_that_refuses_two_slots(
    tmp_path: Path, key_prefix: str
) -> None:
    """Built by hand, no lifespan: the first decision fails with CROSSSLOT. The probe
    checks the slots before it charges, so the charge goes slot by slot and passes."""
    server = one_node_cluster(tmp_path / "cluster-mode")
    instance = Instance(server.url, key_prefix, share=1.0)
    other: Instance | None = None
    try:
        decided = [await instance.limiter.hit(f"caller-{index}") for index in range(6)]
        assert all(decision.allowed for decision in decided)
        assert instance.guard.using_fallback  # CROSSSLOT: the epoch named two slots
        await instance.recovered()
        assert instance.store.epoch_key is None
        other = Instance(server.url, key_prefix, share=1.0)
        await other.guard.warm_up()
        for index in range(6):
            assert await other.admitted(f"caller-{index}", LIMIT) == LIMIT - 1
    finally:
        await instance.aclose()
        if other is not None:
            await other.aclose()
        server.stop()
