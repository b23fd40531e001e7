"""Reservations in Redis: what every instance may spend in an outage never exceeds what is left.

``gcra.lua`` is driven on a real Redis with its test clock (``now``), by 2 to 4 stores that
count 1 to 4 live instances, as a hypothesis state machine.
"""

from __future__ import annotations

import uuid

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from redis import Redis as SyncRedis

from hardenkit.ratelimit import Rate
from hardenkit.ratelimit._charge import RESERVED
from hardenkit.ratelimit.gcra import Reply, decode_reply, reservation_expiry, reservation_of
from hardenkit.ratelimit.redis_store import GCRA_SCRIPT

pytestmark = pytest.mark.redis

START_US = 1_700_000_000_000_000
RESERVE_US = 10_000_000


class Key:
    """One rate-limit key in Redis, decided through ``gcra.lua`` at chosen instants."""

    def __init__(self, redis: SyncRedis, rate: Rate, reserve_us: int = RESERVE_US) -> None:
        self.redis = redis
        self.script = redis.register_script(GCRA_SCRIPT)
        self.key = f"hktest:reservations:{{{uuid.uuid4().hex}}}"
        self.rate = rate
        self.reserve_us = reserve_us

    def decide(self, member: str, instances: int, cost: int, now: int) -> Reply:
        emission = self.rate.emission_interval_us
        reply = self.script(
            keys=[self.key, self.key + RESERVED],
            args=[
                emission * cost,
                self.rate.tolerance_us,
                emission,
                member,
                instances,
                self.reserve_us,
                now,
            ],
        )
        return decode_reply(reply)

    def left(self, now: int) -> int:
        """Units left in the bucket at ``now``."""
        tat = self.redis.get(self.key)
        ahead = max(0, int(tat) - now) if tat is not None else 0
        return (self.rate.tolerance_us - ahead) // self.rate.emission_interval_us

    def reservations(self, now: int) -> dict[str, int]:
        """Every unexpired reservation at ``now``, in units."""
        held = {}
        for field, value in self.redis.hgetall(self.key + RESERVED).items():
            reservation = reservation_of(int(value))
            if reservation.expiry_us > now:
                held[field.decode()] = reservation.units
        return held


class ReservationMachine(RuleBasedStateMachine):
    """Stores decide one key in any order, as time passes; an outage may start any time."""

    redis: SyncRedis

    @initialize(
        stores=st.integers(2, 4),
        count=st.integers(1, 40),
        period=st.sampled_from([60, 3600]),
        burst=st.integers(1, 40),
    )
    def setup(self, stores: int, count: int, period: int, burst: int) -> None:
        self.rate = Rate(count, period, burst)
        self.key = Key(self.redis, self.rate)
        self.members = [f"store-{index}" for index in range(stores)]
        self.now = START_US
        self.admitted = 0

    @rule(
        store=st.integers(0, 3),
        instances=st.integers(1, 4),
        cost=st.integers(1, 5),
    )
    def decide(self, store: int, instances: int, cost: int) -> None:
        member = self.members[store % len(self.members)]
        reply = self.key.decide(member, instances, cost, self.now)
        if reply.allowed:
            self.admitted += cost
            mine = self.key.reservations(self.now).get(member, 0)
            assert reply.reserved == mine
        else:
            assert reply.retry_after_us > 0
            # Retry-After is true: the same request from the same store is admitted then.
            later = self.key.decide(member, instances, cost, self.now + reply.retry_after_us)
            assert later.allowed or cost > self.rate.burst
            if later.allowed:
                self.admitted += cost
                self.now += reply.retry_after_us

    @rule(advance=st.integers(0, 20_000_000))
    def wait(self, advance: int) -> None:
        self.now += advance

    @invariant()
    def reservations_never_add_up_to_more_than_is_left(self) -> None:
        if not hasattr(self, "key"):
            return
        assert sum(self.key.reservations(self.now).values()) <= self.key.left(self.now)

    @invariant()
    def an_outage_now_spends_at_most_the_limit_and_what_refilled(self) -> None:
        if not hasattr(self, "key"):
            return
        # Every store spends its whole reservation (and nothing else) from now on.
        spent = self.admitted + sum(self.key.reservations(self.now).values())
        refilled = (self.now - START_US) // self.rate.emission_interval_us
        assert spent <= self.rate.burst + refilled

    @precondition(lambda self: hasattr(self, "key"))
    @rule()
    def every_reservation_expires_after_reserve(self) -> None:
        later = reservation_expiry(self.now, self.key.reserve_us)  # a tenth of a second
        assert self.key.reservations(later) == {}


def test_reservations_fit_in_what_is_left_whatever_the_stores_do(sync_redis: SyncRedis) -> None:
    class Machine(ReservationMachine):
        redis = sync_redis

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=60,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture],
        ),
    )


def test_an_idle_instances_reservation_frees_its_units_after_reserve(
    sync_redis: SyncRedis,
) -> None:
    rate = Rate(8, 3600)  # one unit per 450 s: nothing refills within the test
    key = Key(sync_redis, rate)
    now = START_US
    first = key.decide("a", 4, 4, now)  # 4 left: "a" keeps floor(4 / 4) = 1 of them
    assert (first.allowed, first.reserved) == (True, 1)
    # The hash expires with its last reservation (in milliseconds, rounded up).
    assert 10_000 < sync_redis.pttl(key.key + RESERVED) <= 10_101
    taken = [key.decide("b", 4, 1, now) for _ in range(4)]
    assert [reply.allowed for reply in taken] == [True, True, True, False]
    refused = taken[-1]
    assert refused.held == 1
    # Told to come back when "a"'s reservation expires (refill would take 450 s): 10 s,
    # rounded up to the next tenth of a second.
    assert refused.retry_after_us == RESERVE_US + 100_000
    assert not key.decide("b", 4, 1, now + refused.retry_after_us - 1).allowed
    assert key.decide("b", 4, 1, now + refused.retry_after_us).allowed


def test_an_instance_can_always_spend_its_own_reservation(sync_redis: SyncRedis) -> None:
    key = Key(sync_redis, Rate(8, 3600))
    now = START_US
    assert key.decide("a", 2, 2, now).reserved == 3  # 6 left: 3 for "a"
    assert key.decide("b", 2, 1, now).reserved == 2  # 5 left, 3 held: min(5 // 2, 5 - 3)
    # "b" spends its own 2; the last 3 are "a"'s.
    assert [key.decide("b", 2, 1, now).allowed for _ in range(3)] == [True, True, False]
    assert [key.decide("a", 2, 1, now).allowed for _ in range(4)] == [True] * 3 + [False]


def test_a_store_that_counts_one_instance_reserves_nothing_but_respects_the_others(
    sync_redis: SyncRedis,
) -> None:
    key = Key(sync_redis, Rate(8, 3600))
    now = START_US
    assert key.decide("a", 2, 1, now).reserved == 3
    assert key.decide("b", 2, 1, now).reserved == 3  # 6 left, 3 held: min(6 // 2, 6 - 3)
    lone = key.decide("b", 1, 1, now)  # "b" now counts one instance: drops its own
    assert (lone.allowed, lone.reserved, lone.held) == (True, 0, 3)
    assert key.reservations(now) == {"a": 3}
    assert [key.decide("b", 1, 1, now).allowed for _ in range(3)] == [True, True, False]


def test_a_key_without_reservations_is_plain_gcra(sync_redis: SyncRedis) -> None:
    key = Key(sync_redis, Rate(3, 3600))
    replies = [key.decide("only", 1, 1, START_US) for _ in range(4)]
    assert [reply.allowed for reply in replies] == [True, True, True, False]
    assert [reply.reserved for reply in replies] == [0, 0, 0, 0]
    assert replies[-1].retry_after_us == Rate(3, 3600).emission_interval_us
    assert not sync_redis.exists(key.key + RESERVED)
