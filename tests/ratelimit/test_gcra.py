from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hardenkit.ratelimit import MemoryStore, Rate
from hardenkit.ratelimit.gcra import decode_reply, gcra, settle


def test_a_fresh_key_admits_the_whole_burst_at_once_then_refuses() -> None:
    rate = Rate.parse("100/hour")
    store = MemoryStore(clock=lambda: 10**12)
    decisions = [store.decide_now("k", rate, 1) for _ in range(101)]
    assert all(decision.allowed for decision in decisions[:100])
    assert [decision.remaining for decision in decisions[:3]] == [99, 98, 97]
    refused = decisions[100]
    assert not refused.allowed
    assert refused.remaining == 0
    assert refused.retry_after == 36.0  # one unit refills every 3600/100 seconds
    assert refused.reset_after == 3600.0


def test_units_refill_smoothly_one_emission_interval_at_a_time() -> None:
    rate = Rate.parse("10/s")
    start = 10**12
    store = MemoryStore()
    for _ in range(10):
        assert store.decide_now("k", rate, 1, now=start).allowed
    assert not store.decide_now("k", rate, 1, now=start + 99_999).allowed
    assert store.decide_now("k", rate, 1, now=start + 100_000).allowed
    assert not store.decide_now("k", rate, 1, now=start + 100_000).allowed


def test_a_smaller_burst_limits_how_many_go_at_once_but_not_the_rate() -> None:
    rate = Rate.parse("60/minute burst 5")
    store = MemoryStore()
    now = 10**12
    assert sum(store.decide_now("k", rate, 1, now=now).allowed for _ in range(20)) == 5
    now += 60_000_000
    assert sum(store.decide_now("k", rate, 1, now=now).allowed for _ in range(20)) == 5


def test_a_refused_request_takes_nothing() -> None:
    rate = Rate.parse("2/s")
    store = MemoryStore()
    now = 10**12
    store.decide_now("k", rate, 2, now=now)
    for _ in range(50):
        assert not store.decide_now("k", rate, 1, now=now).allowed
    assert store.decide_now("k", rate, 1, now=now + 500_000).allowed


def test_a_cost_takes_that_many_units() -> None:
    rate = Rate.parse("10/s")
    store = MemoryStore()
    decision = store.decide_now("k", rate, 7, now=10**12)
    assert decision.allowed
    assert decision.remaining == 3
    refused = store.decide_now("k", rate, 4, now=10**12)
    assert not refused.allowed
    assert refused.remaining == 3
    assert refused.retry_after == 0.1


@settings(max_examples=150, deadline=None)
@given(
    count=st.integers(1, 50),
    period_s=st.integers(1, 100),
    burst=st.integers(1, 50),
    steps=st.lists(st.tuples(st.integers(0, 3_000_000), st.integers(1, 5)), max_size=60),
)
def test_never_more_than_burst_plus_elapsed_times_rate_is_admitted(
    count: int, period_s: int, burst: int, steps: list[tuple[int, int]]
) -> None:
    rate = Rate(count, period_s, burst)
    tat = None
    now = start = 10**15
    admitted = 0
    for advance, cost in steps:
        now += advance
        outcome = gcra(tat, now, rate.emission_interval_us, rate.tolerance_us, cost)
        if outcome.allowed:
            tat = outcome.new_tat
            admitted += cost
        else:
            # Waiting exactly retry_after admits the same request, and not a moment less.
            retry_after_us = settle(
                False, outcome.ahead_us, rate.emission_interval_us, rate.tolerance_us, cost
            ).retry_after_us
            assert retry_after_us > 0
            later = gcra(
                tat, now + retry_after_us, rate.emission_interval_us, rate.tolerance_us, cost
            )
            sooner = gcra(
                tat, now + retry_after_us - 1, rate.emission_interval_us, rate.tolerance_us, cost
            )
            assert not sooner.allowed
            # More than the burst is never admitted (hit() and the rules refuse it up front).
            assert later.allowed == (cost <= burst)
        elapsed = now - start
        assert admitted <= burst + elapsed * count / (period_s * 1_000_000)


@given(
    ahead_us=st.integers(0, 366 * 86400 * 1_000_000),
    allowed=st.booleans(),
    second=st.integers(0, 10**12),
    held=st.integers(0, 10**9),
)
def test_the_scripts_first_integer_carries_the_decision_and_the_offset(
    ahead_us: int, allowed: bool, second: int, held: int
) -> None:
    if allowed and ahead_us == 0:
        ahead_us = 1  # an admitted request always pushes the TAT ahead of now
    code = ahead_us if allowed else -1 - ahead_us
    reply = decode_reply([code, second, held])
    assert (reply.allowed, reply.ahead_us, reply.held) == (allowed, ahead_us, held)
    # The second integer is the units reserved when admitted, the wait when refused.
    assert (reply.reserved, reply.retry_after_us) == ((second, 0) if allowed else (0, second))


def test_settled_values_are_what_the_client_is_told() -> None:
    rate = Rate.parse("10/s burst 5")  # one unit per 100 ms, 500 ms of tolerance
    emission, tolerance = rate.emission_interval_us, rate.tolerance_us
    assert settle(True, 300_000, emission, tolerance, 1) == (2, 0, 300_000)
    # Refused 2 units with the TAT 450 ms ahead: 650 ms would exceed 500 ms by 150 ms.
    assert settle(False, 450_000, emission, tolerance, 2) == (0, 150_000, 450_000)
