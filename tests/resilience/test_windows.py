"""Sliding windows keep exact running totals, checked against recounting from scratch."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from hardenkit.resilience.windows import CountWindow, TimeWindow

steps = st.lists(
    st.tuples(
        st.one_of(st.integers(0, 12).map(float), st.floats(0, 12)),
        st.booleans(),
        st.booleans(),
    ),
    max_size=60,
)


@settings(max_examples=300)
@given(size=st.integers(1, 8), steps=steps)
def test_time_window_totals_equal_a_recount_of_the_last_seconds(
    size: int, steps: list[tuple[float, bool, bool]]
) -> None:
    window = TimeWindow(size)
    now = 1000.0
    seen: list[tuple[float, bool, bool]] = []
    for advance, failed, slow in steps:
        now += advance
        window.add(failed, slow, now)
        seen.append((now, failed, slow))
        recent = [o for o in seen if math.floor(o[0]) > math.floor(now) - size]
        assert (window.total, window.failed, window.slow) == (
            len(recent),
            sum(f for _, f, _ in recent),
            sum(s for _, _, s in recent),
        )


@settings(max_examples=200)
@given(size=st.integers(1, 8), steps=steps)
def test_count_window_totals_equal_a_recount_of_the_last_calls(
    size: int, steps: list[tuple[float, bool, bool]]
) -> None:
    window = CountWindow(size)
    seen: list[tuple[bool, bool]] = []
    for _, failed, slow in steps:
        window.add(failed, slow, 0.0)
        seen.append((failed, slow))
        recent = seen[-size:]
        assert (window.total, window.failed, window.slow) == (
            len(recent),
            sum(f for f, _ in recent),
            sum(s for _, s in recent),
        )
