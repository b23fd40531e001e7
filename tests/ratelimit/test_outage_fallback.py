"""While Redis is unavailable the fallback keeps the global limit: reserved, shared, charged."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis
from structlog.testing import capture_logs

from hardenkit.instances import InstanceRegistry, instances_key
from hardenkit.ratelimit import RateLimiter, RedisStore
from hardenkit.ratelimit._fallback import Pending
from hardenkit.ratelimit.limiter import key_digest
from hardenkit.ratelimit.redis_store import epoch_key
from hardenkit.stores import RedisGuard
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.redis

LIMIT = 20


class Instance:
    """One process's client, guard, heartbeat and rate-limit store on a shared Redis."""

    def __init__(
        self,
        url: str,
        prefix: str,
        share: float | str = "auto",
        reserve: float = 10.0,
        restart_hold: float | None = None,
        *,
        counted_after: float = 0.0,
    ) -> None:
        self.client = Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self.guard = RedisGuard("test", timeout=1.0, retry_interval=0.2, ping=self.client.ping)
        # As install() builds it, except that its second heartbeat may count it: these
        # fleets beat in rounds until every instance counts every other (``fleet_of``),
        # where a running fleet waits ``ttl / 2`` for late beats.
        self.instances = InstanceRegistry(
            self.client,
            self.guard,
            key=instances_key(prefix),
            epoch=epoch_key(prefix),
            counted_after=counted_after,
        )
        if restart_hold is not None:
            self.instances.restart_hold = restart_hold
        self.store = RedisStore(
            self.client,
            guard=self.guard,
            prefix=prefix,
            fallback_share=share,  # type: ignore[arg-type]
            instances=self.instances,
            reserve_seconds=reserve,
        )
        self.limiter = RateLimiter(f"{LIMIT}/hour", store=self.store, name="api")

    async def admitted(self, key: str, count: int) -> int:
        return sum([(await self.limiter.hit(key)).allowed for _ in range(count)])

    async def recovered(self) -> None:
        for _ in range(200):  # bounded: the probe reconnects and charges in the background
            if not self.guard.using_fallback:
                return
            await self.limiter.hit("nudge")  # a call after the retry interval starts it
            await asyncio.sleep(0.02)
        raise AssertionError("never back on Redis")

    async def aclose(self) -> None:
        await self.client.aclose()


async def test_heartbeats_count_the_live_instances_and_a_leaving_one_at_once(
    redis_url: str, key_prefix: str
) -> None:
    fleet = [Instance(redis_url, key_prefix) for _ in range(3)]
    try:
        assert [await instance.instances.beat() for instance in fleet] == [1, 2, 3]
        assert await fleet[1].instances.beat() == 3
        await fleet[0].instances.aclose()
        assert await fleet[1].instances.beat() == 3  # shares stay small for 3 × ttl
        assert fleet[1].instances.measured_instances == 2  # Redis counts one fewer at once
    finally:
        for instance in fleet:
            await instance.aclose()


async def test_a_heartbeat_that_stops_stops_counting_after_its_ttl(
    redis_client: Redis, key_prefix: str
) -> None:
    guard = RedisGuard("test", timeout=1.0)
    gone = InstanceRegistry(redis_client, guard, key=f"{key_prefix}i", ttl=0.2)
    staying = InstanceRegistry(redis_client, guard, key=f"{key_prefix}i", ttl=5.0)
    assert await gone.beat() == 1
    assert await staying.beat() == 2
    await asyncio.sleep(0.3)
    assert await staying.beat() == 2  # the share keeps the higher count for 3 × ttl...
    assert staying.measured_instances == 1  # ...though Redis counts one
    assert 0 < await redis_client.pttl(f"{key_prefix}i") <= 5000  # the key expires too


async def test_a_key_exhausted_in_redis_stays_exhausted_during_and_after_an_outage(
    redis_server_factory: Callable[[], RedisServer], key_prefix: str
) -> None:
    server = redis_server_factory()
    instance = Instance(server.url, key_prefix, share=1.0)
    try:
        assert await instance.admitted("attacker", LIMIT + 5) == LIMIT
        server.stop()
        assert await instance.admitted("attacker", 10) == 0
        assert instance.guard.using_fallback
        server.start()
        await instance.recovered()
        assert await instance.admitted("attacker", 10) == 0
    finally:
        await instance.aclose()


async def test_four_instances_admit_at_most_the_limit_plus_four_through_an_outage(
    redis_server_factory: Callable[[], RedisServer], key_prefix: str
) -> None:
    server = redis_server_factory()
    fleet = [Instance(server.url, key_prefix) for _ in range(4)]
    try:
        for instance in fleet:
            await instance.instances.beat()
            await asyncio.sleep(0.002)
        assert [instance.instances.live_instances for instance in fleet] == [1, 2, 3, 4]
        await count_each_other(fleet)  # every one has seen the count of four
        # Traffic spread over the fleet, as a load balancer does: 8 of 20 used.
        used_before = sum([await fleet[index % 4].admitted("tenant", 1) for index in range(8)])
        assert used_before == 8
        server.stop()
        during = [await instance.admitted("tenant", LIMIT) for instance in fleet]
        assert all(instance.guard.using_fallback for instance in fleet)
        # Each spends the reservation its last decision left it: 12 were left after the
        # last, and each decision reserved min(floor(left / 4), left - the others' own).
        assert during == [3, 3, 3, 3]
        assert sum(during) <= LIMIT - used_before
        server.start()
        for instance in fleet:
            await instance.recovered()
        after = sum([await instance.admitted("tenant", LIMIT) for instance in fleet])
        # This Redis came back empty: it knows the key again from the charges, restored
        # from the freshest view whatever the order they came in, plus every charge.
        assert used_before + sum(during) + after == LIMIT
    finally:
        for instance in fleet:
            await instance.aclose()


async def test_what_the_fallback_admitted_is_charged_to_redis_before_it_decides_again(
    redis_server_factory: Callable[[], RedisServer], key_prefix: str
) -> None:
    server = redis_server_factory()
    instance = Instance(server.url, key_prefix, share=1.0)
    other = Instance(server.url, key_prefix, share=1.0)
    try:
        assert await instance.admitted("seen", 1) == 1
        server.stop()
        assert await instance.admitted("seen", 5) == 5
        assert await instance.admitted("new-in-outage", 8) == 8
        server.start()
        await instance.recovered()
        # Another instance, which saw none of it, finds it counted in Redis.
        assert await other.admitted("seen", LIMIT) == LIMIT - 6
        assert await other.admitted("new-in-outage", LIMIT) == LIMIT - 8
    finally:
        await instance.aclose()
        await other.aclose()


async def test_one_timed_out_call_is_answered_from_what_redis_last_said_and_settled(
    redis_client: Redis, key_prefix: str
) -> None:
    guard = RedisGuard("test", timeout=1.0, failure_threshold=3)
    store = RedisStore(redis_client, guard=guard, prefix=key_prefix, fallback_share=1.0)
    limiter = RateLimiter("3/hour", store=store, name="api")
    assert [(await limiter.hit("k")).allowed for _ in range(3)] == [True] * 3
    key = f"api:{key_digest('x')}"  # what the limiter stores for key "x"
    given_up = Pending(key, 1, store._outage)

    async def times_out() -> object:
        raise TimeoutError

    async def fallback() -> object:
        return store._outage.decide(key, limiter.rate, 1, given_up)

    seeded = await guard.call(times_out, fallback)
    assert not guard.using_fallback
    assert seeded.allowed  # a key Redis never refused: its share is whole
    assert (store._outage.pending_keys, store._outage.ready_keys) == (1, 0)
    given_up(None)  # Redis never ran it (its connection was closed first): charged
    for _ in range(100):  # bounded: settled in the background
        if not store._outage.pending_keys:
            break
        await asyncio.sleep(0.01)
    assert store._outage.pending_keys == 0
    other = RateLimiter("3/hour", store=RedisStore(redis_client, prefix=key_prefix), name="api")
    assert [(await other.hit("x")).allowed for _ in range(3)] == [True, True, False]


@pytest.mark.parametrize(
    ("redis_said", "left_after"),
    # Never ran, or ran and refused: the fallback's admission is charged (2 of 3 left).
    # Ran and admitted (the hit below stands for it): counted once, not charged again.
    [(None, 2), ([2, 0, 0], 2), ([-5, 0, 0], 2)],
)
async def test_a_given_up_call_is_charged_unless_redis_admitted_it_itself(
    redis_client: Redis, key_prefix: str, redis_said: list[int] | None, left_after: int
) -> None:
    store = RedisStore(redis_client, prefix=key_prefix, fallback_share=1.0)
    rate = RateLimiter("3/hour", store=store, name="api").rate
    key = f"api:{key_digest('y')}"
    given_up = Pending(key, 1, store._outage)
    assert store._outage.decide(key, rate, 1, given_up).allowed
    if redis_said is not None and redis_said[0] > 0:  # it ran in Redis and admitted there
        await RateLimiter("3/hour", store=store, name="api").hit("y")
    given_up(redis_said)
    for _ in range(100):
        if not store._outage.pending_keys:
            break
        await asyncio.sleep(0.01)
    assert store._outage.pending_keys == 0
    other = RateLimiter("3/hour", store=RedisStore(redis_client, prefix=key_prefix), name="api")
    decisions = [await other.hit("y") for _ in range(3)]
    assert sum(decision.allowed for decision in decisions) == left_after


async def test_a_call_dropped_in_a_paused_redis_is_charged_back_once_it_answers(
    redis_server_factory: Callable[[], RedisServer], key_prefix: str
) -> None:
    """The shape of the fleet test's stall: Redis runs no command of a closed connection."""
    server = redis_server_factory()
    client = Redis.from_url(server.url, socket_timeout=5.0)
    admin = Redis.from_url(server.url, socket_timeout=5.0)
    guard = RedisGuard("test", timeout=0.05, retry_interval=0.2, failure_threshold=10)
    store = RedisStore(client, guard=guard, prefix=key_prefix, fallback_share=1.0)
    limiter = RateLimiter("5/hour", store=store, name="api")
    try:
        assert [(await limiter.hit("z")).backend for _ in range(2)] == ["redis"] * 2
        await admin.execute_command("CLIENT", "PAUSE", "1200", "ALL")
        during = await limiter.hit("z")  # its connection is closed when it times out
        assert (during.backend, during.allowed) == ("memory", True)
        assert not guard.using_fallback
        assert guard.single_fallbacks == 1
        for _ in range(300):  # bounded: charged once the pause ends
            if not store._outage.pending_keys:
                break
            await asyncio.sleep(0.01)
        assert store._outage.pending_keys == 0
        after = [await limiter.hit("z") for _ in range(5)]
        assert [decision.allowed for decision in after] == [True, True, False, False, False]
    finally:
        await client.aclose()
        await admin.aclose()


async def count_each_other(fleet: list[Instance]) -> None:
    """Heartbeats in rounds until every instance is counted by every other: the ones that
    joined after an instance beat again after it saw them (three rounds in all)."""
    for _ in range(3):
        for instance in fleet:
            await instance.instances.beat()
            await asyncio.sleep(0.002)  # one beat per millisecond of Redis's clock
    assert all(instance.instances.counted for instance in fleet)


@asynccontextmanager
async def fleet_of(
    url: str, prefix: str, size: int, **options: float
) -> AsyncIterator[list[Instance]]:
    """``size`` instances that have each counted ``size`` live ones."""
    fleet = [Instance(url, prefix, **options) for _ in range(size)]
    try:
        await count_each_other(fleet)
        assert [instance.instances.live_instances for instance in fleet] == [size] * size
        yield fleet
    finally:
        for instance in fleet:
            await instance.aclose()


async def test_a_key_an_instance_never_decided_gets_only_the_refill_share_in_an_outage(
    redis_server_factory: Callable[[], RedisServer], key_prefix: str
) -> None:
    """A client on one keep-alive connection reaches one instance only: the others must
    not hand it a fresh share when Redis goes away."""
    server = redis_server_factory()
    async with fleet_of(server.url, key_prefix, 4) as fleet:
        assert await fleet[0].admitted("one-connection", LIMIT + 5) == LIMIT
        assert await fleet[0].admitted("used-a-little", 4) == 4
        server.stop()
        # 20/hour: the share refills one unit every 12 minutes per instance.
        assert [await instance.admitted("one-connection", 5) for instance in fleet] == [0] * 4
        # 16 left, decided by the first instance only: it holds floor(16 / 4) = 4 of them.
        during = [await instance.admitted("used-a-little", LIMIT) for instance in fleet]
        assert during == [4, 0, 0, 0]


async def test_a_reservation_that_expires_during_an_outage_is_dropped(
    redis_server_factory: Callable[[], RedisServer], key_prefix: str
) -> None:
    """Only this instance may be cut off: once its reservation expires in Redis, the
    others may take those units, so what is left of it here goes too."""
    server = redis_server_factory()
    async with fleet_of(server.url, key_prefix, 2, reserve=1.0) as [instance, _]:
        assert await instance.admitted("tenant", 2) == 2  # 18 left: 9 reserved for it
        server.stop()
        assert await instance.admitted("tenant", 3) == 3
        await asyncio.sleep(1.1)  # the reservation (1 s from the call's sending) expires
        assert await instance.admitted("tenant", LIMIT) == 0  # its last 6 are gone
        assert instance.guard.using_fallback


async def test_a_reservation_already_expired_when_the_outage_starts_gives_nothing(
    redis_server_factory: Callable[[], RedisServer], key_prefix: str
) -> None:
    server = redis_server_factory()
    async with fleet_of(server.url, key_prefix, 2, reserve=1.0) as [instance, _]:
        assert await instance.admitted("tenant", 2) == 2
        await asyncio.sleep(1.1)
        server.stop()
        assert await instance.admitted("tenant", LIMIT) == 0


async def test_a_lone_instance_reserves_nothing_and_keeps_what_redis_last_said(
    redis_server_factory: Callable[[], RedisServer], key_prefix: str
) -> None:
    server = redis_server_factory()
    async with fleet_of(server.url, key_prefix, 1) as [instance]:
        assert await instance.admitted("tenant", 5) == 5
        assert [key async for key in instance.client.scan_iter("*:reserved")] == []
        server.stop()
        assert await instance.admitted("tenant", LIMIT) == LIMIT - 5


async def test_an_instance_that_joined_just_before_an_outage_does_not_admit_through_it(
    redis_server_factory: Callable[[], RedisServer], key_prefix: str
) -> None:
    """Scaled from 2 to 3 just before Redis goes away, the two old instances still divide
    by 2: a share for the newcomer would come on top of their halves. It refuses through
    the whole outage, however long (time alone proves nothing), and takes its share
    only once Redis has shown that the others count it."""
    server = redis_server_factory()
    async with fleet_of(server.url, key_prefix, 2) as old:
        joining = Instance(server.url, key_prefix, counted_after=0.5)
        try:
            assert await joining.instances.beat() == 3  # answered, not yet counted
            assert joining.instances.answered
            assert not joining.instances.counted
            assert [instance.instances.live_instances for instance in old] == [2, 2]
            assert await joining.admitted("tenant", 1) == 1  # 19 left: 6 reserved for it
            server.stop()
            with capture_logs() as logs:
                decisions = [await joining.limiter.hit("tenant") for _ in range(3)]
                await asyncio.sleep(0.6)  # longer than counted_after: still not counted
                await joining.instances.beat()  # unanswered
                decisions.append(await joining.limiter.hit("tenant"))
            assert [(d.allowed, d.unavailable) for d in decisions] == [(False, True)] * 4
            events = [log["event"] for log in logs]
            assert events.count("ratelimit_fallback_closed_instance_joining") == 1
            # The old instances keep their halves of what is left (19, nothing reserved
            # for them): the newcomer's refusals are what keeps the sum within the limit.
            assert [await instance.admitted("tenant", LIMIT) for instance in old] == [0, 0]
            server.start()
            await joining.recovered()
            for instance in [*old, joining]:
                await instance.instances.beat()
                await asyncio.sleep(0.002)
            await joining.instances.beat()
            assert joining.instances.counted  # Redis shows the others beat since it joined
        finally:
            await joining.aclose()


def test_a_fixed_share_starts_from_what_this_instance_last_saw_left() -> None:
    from hardenkit.ratelimit._fallback import _scaled, _view_share
    from hardenkit.ratelimit.rate import Rate

    rate = Rate(100, 3600)
    now = 10**12
    half_used = now + 50 * rate.emission_interval_us  # 50 of 100 left in this view
    assert _view_share(half_used, now, rate, _scaled(rate, 0.25), 0.25) == 12
    assert _view_share(half_used, now, rate, rate, 1.0) == 50
    assert _view_share(None, now, rate, _scaled(rate, 0.25), 0.25) == 25  # capped at the burst


def test_a_share_leaves_out_what_this_instance_still_has_in_flight_to_redis() -> None:
    """Calls sent before the share started may still be admitted by Redis, out of this
    instance's reservation: the share does not hand those units out a second time."""
    from hardenkit.ratelimit._fallback import OutageFallback
    from hardenkit.ratelimit.memory import MemoryStore
    from hardenkit.ratelimit.rate import Rate

    def share_after(in_flight: int) -> int:
        fallback = OutageFallback(MemoryStore(), lambda: 0.25, reserve_us=10_000_000)
        rate = Rate(100, 3600)
        fallback.mirror("k", 0, 5, fallback.memory.now_us())  # Redis reserved 5 for it
        first = fallback.decide("k", rate, 1, in_flight=in_flight)
        return first.allowed + sum(fallback.decide("k", rate, 1).allowed for _ in range(10))

    assert share_after(0) == 5
    assert share_after(3) == 2
    assert share_after(7) == 0


@pytest.mark.parametrize(
    ("share", "reserve_us"),
    [(1.0, 10_000_000), (1.0, None), (0.5, None)],
    ids=["lone-instance", "fixed-share-1", "fixed-share-half"],
)
def test_a_key_the_memory_dropped_while_still_limiting_is_not_a_full_bucket_in_an_outage(
    share: float, reserve_us: int | None
) -> None:
    """A flood of other keys pushed an exhausted key out of the mirror: its view is lost.
    The outage must not read that as a full bucket and hand out the limit again; nor may
    the flood take the limit from keys it did not spend (a denial of service)."""
    from hardenkit.ratelimit._fallback import OutageFallback
    from hardenkit.ratelimit.memory import MemoryStore, _slot_of
    from hardenkit.ratelimit.rate import Rate

    clock = [10**12]
    rate = Rate(100, 900)
    full = int(100 * share)

    def fallback_after(flood: int) -> OutageFallback:
        fallback = OutageFallback(
            MemoryStore(max_keys=50, clock=lambda: clock[0]), lambda: share, reserve_us=reserve_us
        )
        now = clock[0]
        fallback.mirror("api:exhausted", rate.tolerance_us, None, now)  # Redis: none left
        for index in range(flood):  # one request each: still limiting for 9 s
            fallback.mirror(f"api:other-{index}", rate.emission_interval_us, None, now)
        return fallback

    def admitted(fallback: OutageFallback, key: str, count: int = 120) -> int:
        decisions = [fallback.decide(key, rate, 1) for _ in range(count)]
        return sum(bool(decision and decision.allowed) for decision in decisions)

    evicted = {_slot_of("api:exhausted"), *(_slot_of(f"api:other-{i}") for i in range(60))}
    apart = next(f"api:new-{i}" for i in range(100) if _slot_of(f"api:new-{i}") not in evicted)
    flood_slot = next(
        slot
        for slot in (_slot_of(f"api:other-{i}") for i in range(60))
        if slot != _slot_of("api:exhausted")
    )
    beside_a_flood_key = next(
        f"api:new-{i}" for i in range(1_000_000) if _slot_of(f"api:new-{i}") == flood_slot
    )
    assert admitted(fallback_after(0), "api:exhausted") == 0  # its view says so
    flooded = fallback_after(60)
    assert "api:exhausted" not in flooded.memory
    assert admitted(flooded, "api:exhausted") == 0  # before the fix: the whole limit again
    assert admitted(flooded, apart) == full  # no dropped key in its slot: a full bucket
    assert admitted(flooded, beside_a_flood_key) in {full - 1, full}  # one unit, at most
    assert admitted(flooded, "login:new") == full  # another rule's keys are kept apart
    assert flooded.estimated_views == 2
    clock[0] += rate.emission_interval_us * 2  # it refills at the share's rate
    assert 1 <= admitted(flooded, "api:exhausted") <= 2
    assert admitted(fallback_after(0), "api:never-seen") == full  # no flood


@given(
    count=st.integers(1, 1_000_000),
    period=st.integers(1, 366 * 86400),
    burst_factor=st.integers(1, 50),
    instances=st.integers(2, 16),
)
def test_a_share_of_any_valid_rate_is_never_more_than_its_part_rounded_up(
    count: int, period: int, burst_factor: int, instances: int
) -> None:
    """Rounding up may push an extreme rate's share past 366 days of refill: it then gets
    a smaller burst, never the whole rate (which multiplied it by the instances)."""
    from hardenkit.ratelimit._fallback import _scaled
    from hardenkit.ratelimit.rate import Rate

    try:
        rate = Rate(count, period, count * burst_factor)
    except ValueError:
        return  # not a valid rate: nothing to share
    share = 1 / instances
    scaled = _scaled(rate, share)
    assert scaled.period_seconds == rate.period_seconds
    assert scaled.count <= math.ceil(rate.count * share)
    assert 1 <= scaled.burst <= math.ceil(rate.burst * share)


def test_an_extreme_rate_is_shared_not_kept_whole() -> None:
    from hardenkit.ratelimit._fallback import _scaled
    from hardenkit.ratelimit.rate import Rate

    rate = Rate(2, 240 * 86400, 3)  # ceil(3 / 2) = 2 would refill over 480 days
    assert (_scaled(rate, 0.5).count, _scaled(rate, 0.5).burst) == (1, 1)


async def test_a_store_without_an_instance_count_says_its_share_counts_one_instance() -> None:
    client = Redis.from_url("redis://127.0.0.1:1/0")
    with capture_logs() as logs:
        RedisStore(client)
        RedisStore(client, fallback_share=1)  # said: one instance
    warned = [log for log in logs if log["event"] == "ratelimit_fallback_share_counts_one_instance"]
    assert len(warned) == 1
    assert warned[0]["log_level"] == "warning"
    assert warned[0]["setting"] == "HARDENKIT_RATE_LIMIT_FALLBACK_SHARE"
    await client.aclose()


def test_clearing_the_memory_store_forgets_what_it_dropped_too() -> None:
    """``testing.reset()`` promises full buckets: the estimates of dropped keys go too."""
    from hardenkit.ratelimit.memory import MemoryStore
    from hardenkit.ratelimit.rate import Rate

    clock = [10**12]
    rate = Rate(100, 900)
    memory = MemoryStore(max_keys=1, clock=lambda: clock[0])
    memory.set_tat("api:exhausted", clock[0] + rate.tolerance_us)
    memory.set_tat("api:other", clock[0] + rate.emission_interval_us)  # drops the first
    assert memory.forgotten_tat("api:exhausted", clock[0]) == clock[0] + rate.tolerance_us
    memory.clear()
    assert memory.forgotten_tat("api:exhausted", clock[0]) is None
