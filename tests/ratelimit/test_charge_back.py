"""Charging an outage back: the order the instances' charges arrive in does not matter."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from hardenkit.ratelimit import Rate
from hardenkit.ratelimit._charge import MIN_SLACK_US, RESERVED, RESTORED, Charge, charge_keys
from hardenkit.ratelimit.gcra import Reservation, decode_reply, reservation_value
from hardenkit.ratelimit.redis_store import GCRA_SCRIPT
from hardenkit.stores import store_key

pytestmark = pytest.mark.redis

NOW = 1_700_000_000_000_000
RATE = Rate(1000, 365 * 86400)  # one unit per 8.76 hours: nothing refills at NOW
EMISSION = RATE.emission_interval_us
PREFIX = "hktest:charge:"


async def decide(client: Redis, key: str, cost: int) -> int:
    """One Redis decision at NOW; return the increment it added (0 if refused)."""
    redis_key = store_key(PREFIX, key)
    reply = decode_reply(
        await client.eval(
            GCRA_SCRIPT,
            2,
            redis_key,
            redis_key + RESERVED,
            EMISSION * cost,
            RATE.tolerance_us,
            EMISSION,
            "decider",
            1,
            10_000_000,
            NOW,
        )
    )
    return EMISSION * cost if reply.allowed else 0


async def tat(client: Redis, key: str) -> int:
    """The key's TAT (``NOW`` for a key not stored: its bucket is full)."""
    stored = await client.get(store_key(PREFIX, key))
    return NOW if stored is None else int(stored)


# One instance's charge: its floor (what it last saw, in units used), what it admitted.
# Views a unit or two apart are the usual case (instances deciding in turn).
floors = st.one_of(st.integers(0, 6), st.integers(0, 400))
# A fallback charges a key only if it saw it used or admitted some of it (never 0 and 0).
charge = st.tuples(floors, st.integers(0, 50)).filter(lambda floor_units: sum(floor_units) > 0)
charges = st.lists(charge, min_size=2, max_size=4)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    charged=charges,
    order=st.randoms(use_true_random=False),
    between=st.lists(st.integers(0, 5), min_size=4, max_size=4),
    slack=st.sampled_from([0, MIN_SLACK_US, EMISSION]),
)
async def test_a_key_redis_lost_ends_at_the_freshest_view_plus_everything_in_any_order(
    redis_client: Redis,
    charged: list[tuple[int, int]],
    order: object,
    between: list[int],
    slack: int,
) -> None:
    """Whatever slack the fallback passes (it passes one emission interval for charges)."""
    key = f"k-{uuid.uuid4().hex}"
    arriving = list(enumerate(charged))
    order.shuffle(arriving)  # type: ignore[attr-defined]
    decided = 0
    for position, (instance, (floor_units, units)) in enumerate(arriving):
        charge = Charge(key, floor_units * EMISSION, units * EMISSION, units, slack)
        await charge_keys(redis_client, PREFIX, f"instance-{instance}", [charge], now_us=NOW)
        if between[position]:  # Redis decides between the charges
            decided += await decide(redis_client, key, between[position])
    freshest = max(floor for floor, _ in charged)
    everything = sum(units for _, units in charged)
    assert await tat(redis_client, key) == NOW + (freshest + everything) * EMISSION + decided


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(charged=charges, used=st.integers(400, 600))
async def test_a_key_redis_kept_only_gains_the_charges(
    redis_client: Redis, charged: list[tuple[int, int]], used: int
) -> None:
    """A paused Redis lost nothing: every view is at most its TAT, no floor applies."""
    key = f"k-{uuid.uuid4().hex}"
    await decide(redis_client, key, used)
    for instance, (floor_units, units) in enumerate(charged):
        charge = Charge(key, floor_units * EMISSION, units * EMISSION, units)
        await charge_keys(redis_client, PREFIX, f"instance-{instance}", [charge], now_us=NOW)
    everything = sum(units for _, units in charged)
    assert await tat(redis_client, key) == NOW + (used + everything) * EMISSION
    assert not await redis_client.exists(store_key(PREFIX, key) + RESTORED)


async def test_a_charge_takes_what_was_spent_off_the_instances_reservation(
    redis_client: Redis,
) -> None:
    key = f"k-{uuid.uuid4().hex}"
    reserved = store_key(PREFIX, key) + RESERVED
    expiry = NOW + 10_000_000

    def value(units: int) -> bytes:
        return b"%d" % reservation_value(Reservation(units, expiry))

    await redis_client.hset(reserved, mapping={"mine": value(7), "other": value(5)})
    await charge_keys(redis_client, PREFIX, "mine", [Charge(key, 0, 3 * EMISSION, 3)], now_us=NOW)
    assert await redis_client.hgetall(reserved) == {b"mine": value(4), b"other": value(5)}
    await charge_keys(redis_client, PREFIX, "mine", [Charge(key, 0, 9 * EMISSION, 9)], now_us=NOW)
    assert await redis_client.hgetall(reserved) == {b"other": value(5)}


async def test_a_restore_of_a_key_redis_kept_writes_nothing(redis_client: Redis) -> None:
    """Every mirrored key is sent on recovery; one Redis still has is left as it is, even
    when this instance's view reads a little after its TAT (the time a reply took)."""
    key = f"k-{uuid.uuid4().hex}"
    redis_key = store_key(PREFIX, key)
    await decide(redis_client, key, 300)
    await redis_client.pexpire(redis_key, 100_000)  # a charge that wrote would reset it
    late_view = 300 * EMISSION + 200_000  # 200 ms after the TAT Redis holds
    await charge_keys(
        redis_client, PREFIX, "mine", [Charge(key, late_view, 0, 0, MIN_SLACK_US)], now_us=NOW
    )
    assert await tat(redis_client, key) == NOW + 300 * EMISSION
    assert 0 < await redis_client.pttl(redis_key) <= 100_000
    assert not await redis_client.exists(redis_key + RESTORED)


async def test_a_restore_brings_back_a_key_redis_lost_at_the_highest_view(
    redis_client: Redis,
) -> None:
    key = f"k-{uuid.uuid4().hex}"
    for view in (120, 300, 200):  # three instances' mirrors, in any order
        await charge_keys(
            redis_client, PREFIX, "any", [Charge(key, view * EMISSION, 0, 0)], now_us=NOW
        )
    assert await tat(redis_client, key) == NOW + 300 * EMISSION


async def test_floors_measured_before_the_call_are_moved_to_when_it_runs(
    redis_client: Redis,
) -> None:
    """Building 100,000 charges, or the batches before, takes time: a floor measured
    300 ms before its batch is sent reads 300 ms higher than it is by then."""
    key = f"k-{uuid.uuid4().hex}"
    await decide(redis_client, key, 300)
    view = 300 * EMISSION + 400_000  # ahead of what Redis holds by the 300 ms, and 100 ms

    def clock() -> int:
        return 5_300_000  # the batch goes out 300 ms after the measure

    charge = Charge(key, view, 0, 0, MIN_SLACK_US)
    await charge_keys(
        redis_client, PREFIX, "mine", [charge], now_us=NOW, clock=clock, measured_us=5_000_000
    )
    assert await tat(redis_client, key) == NOW + 300 * EMISSION
    assert not await redis_client.exists(store_key(PREFIX, key) + RESTORED)
