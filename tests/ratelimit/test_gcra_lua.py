"""The Lua script and its Python twin are the same algorithm, decision for decision,
reservations included."""

from __future__ import annotations

import random
import uuid
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from hardenkit.ratelimit import MemoryStore, Rate, RedisStore
from hardenkit.ratelimit._charge import RESERVED
from hardenkit.ratelimit.decision import decision_from_gcra
from hardenkit.ratelimit.gcra import Reservation, decode_reply, gcra_reserving, reservation_of
from hardenkit.ratelimit.redis_store import GCRA_SCRIPT
from hardenkit.stores import EPOCH_SCRIPT, MAX_HOLD_US

pytestmark = pytest.mark.redis

START_US = 1_700_000_000_000_000


# Emission intervals of at least half a second keep the real TTL the script sets (in real
# server time) far longer than an example takes, so expiry never interferes with the
# injected clock.
short_rates = st.builds(
    Rate,
    count=st.integers(1, 20),
    period_seconds=st.integers(10, 3600),
    burst=st.integers(1, 30),
)


def max_burst(count: int, period: int) -> int:
    """The largest burst Rate accepts: tolerance within 366 days, emission rounded up."""
    emission = -(-period * 1_000_000 // count)
    return 366 * 86400 * 1_000_000 // emission


@st.composite
def long_rates(draw: st.DrawFn) -> Rate:
    """Periods of days, bursts up to the bound: TATs far ahead, numbers in the 10^13 µs."""
    period = draw(st.integers(86400, 366 * 86400))
    count = draw(st.integers(1, 2 * period))
    burst = draw(st.integers(1, min(10**9, max_burst(count, period))))
    return Rate(count, period, burst)


MEMBERS = ["a", "b", "c", "d"]

# (advance µs, cost, which store decides, the live instances it counts)
short_steps = st.lists(
    st.tuples(st.integers(0, 5_000_000), st.integers(1, 8), st.integers(0, 3), st.integers(1, 4)),
    min_size=1,
    max_size=25,
)
long_steps = st.lists(
    st.tuples(
        st.integers(0, 10 * 86400 * 1_000_000),
        st.integers(1, 10**6),
        st.integers(0, 3),
        st.integers(1, 4),
    ),
    min_size=1,
    max_size=25,
)
# At least 10 s: the hash's TTL runs in real server time and must outlast an example.
reserves = st.integers(10_000_000, 120_000_000)


def stored_reservations(redis: SyncRedis, key: str) -> dict[str, Reservation]:
    stored = redis.hgetall(key)
    return {field.decode(): reservation_of(int(value)) for field, value in stored.items()}


def assert_lua_agrees_with_python(
    redis: SyncRedis,
    rate: Rate,
    sequence: list[tuple[int, int, int, int]],
    now: int,
    reserve_us: int,
) -> None:
    script = redis.register_script(GCRA_SCRIPT)
    key = f"hktest:gcra-lua:{{{uuid.uuid4().hex}}}"
    reserved_key = key + RESERVED
    tat: int | None = None
    reservations: dict[str, Reservation] = {}
    emission, tolerance = rate.emission_interval_us, rate.tolerance_us
    for advance, drawn_cost, member, instances in sequence:
        now += advance
        # The limiter and the rules refuse a cost above the burst before any store runs.
        cost = 1 + (drawn_cost - 1) % rate.burst
        expected = gcra_reserving(
            tat,
            reservations,
            now,
            emission,
            tolerance,
            cost=cost,
            me=MEMBERS[member],
            instances=instances,
            reserve_us=reserve_us,
        )
        reply = script(
            keys=[key, reserved_key],
            args=[
                emission * cost,
                tolerance,
                emission,
                MEMBERS[member],
                instances,
                reserve_us,
                now,
            ],
        )
        assert decode_reply(reply) == (
            expected.allowed,
            expected.ahead_us,
            expected.reserved,
            expected.retry_after_us,
            expected.held,
        )
        reservations = expected.reservations
        assert stored_reservations(redis, reserved_key) == reservations
        if expected.allowed:
            tat = expected.new_tat
            assert int(redis.get(key)) == tat  # stored as a plain, exact integer


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rate=short_rates, sequence=short_steps, offset=st.integers(0, 10**12), reserve=reserves)
def test_python_and_lua_gcra_agree_on_decisions_reservations_and_retry_after(
    sync_redis: SyncRedis,
    rate: Rate,
    sequence: list[tuple[int, int, int, int]],
    offset: int,
    reserve: int,
) -> None:
    assert_lua_agrees_with_python(sync_redis, rate, sequence, START_US + offset, reserve)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rate=long_rates(), sequence=long_steps, offset=st.integers(0, 10**12), reserve=reserves)
def test_python_and_lua_gcra_agree_on_rates_of_up_to_366_days_and_huge_bursts(
    sync_redis: SyncRedis,
    rate: Rate,
    sequence: list[tuple[int, int, int, int]],
    offset: int,
    reserve: int,
) -> None:
    assert_lua_agrees_with_python(sync_redis, rate, sequence, START_US + offset, reserve)


def test_a_value_that_is_not_a_timestamp_reads_as_a_full_bucket(sync_redis: SyncRedis) -> None:
    script = sync_redis.register_script(GCRA_SCRIPT)
    key = f"hktest:gcra-lua:{{{uuid.uuid4().hex}}}"
    rate = Rate.parse("10/minute")
    sync_redis.set(key, "not a number")
    sync_redis.hset(key + RESERVED, "other", "not a reservation")
    emission = rate.emission_interval_us
    reply = script(
        keys=[key, key + RESERVED],
        args=[emission, rate.tolerance_us, emission, "me", 1, 10_000_000, START_US],
    )
    assert decode_reply(reply) == (True, emission, 0, 0, 0)
    assert not sync_redis.exists(key + RESERVED)  # a malformed reservation is dropped


async def test_memory_and_redis_stores_answer_the_same_sequence_alike(
    redis_client: Redis, key_prefix: str
) -> None:
    randomness = random.Random(4)
    rate = Rate.parse("7/10s burst 4")
    memory = MemoryStore()
    redis_store = RedisStore(redis_client, prefix=key_prefix, timeout=2.0)
    now = START_US
    outcomes = []
    for _ in range(200):
        now += randomness.choice([0, 0, 100_000, 900_000, 1_428_571, 3_000_000])
        cost = randomness.choice([1, 1, 1, 2, 4])
        in_memory = memory.decide_now("k", rate, cost, now=now)
        reply = await redis_store.evaluate(redis_store.redis_key("k"), rate, cost, now_us=now)
        on_redis = decision_from_gcra(
            rate, cost, allowed=reply.allowed, ahead_us=reply.ahead_us, backend="redis"
        )
        assert replace(on_redis, backend="memory") == in_memory
        outcomes.append(in_memory.allowed)
    assert any(outcomes)
    assert not all(outcomes)


def test_the_script_resets_an_epoch_further_ahead_than_the_longest_hold() -> None:
    """gcra.lua spells ``MAX_HOLD_US`` as a literal (the heartbeat's script formats it in):
    the two must not drift apart, or one resets an epoch the other holds by."""
    assert f"ready > now + {MAX_HOLD_US} then" in GCRA_SCRIPT
    assert f"ready > now + {MAX_HOLD_US} then" in EPOCH_SCRIPT
