"""The one in-memory cache: bounded, entries expire, least recently written goes first."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hardenkit._ttlmap import TTLMap


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_lives_until_its_deadline_and_not_after() -> None:
    clock = Clock()
    cache: TTLMap[str, int] = TTLMap(10, clock)
    cache.put("a", 1, 5)
    clock.now += 4.999
    assert cache.get("a") == 1
    clock.now += 0.001
    assert cache.get("a") is None
    assert len(cache) == 0


def test_when_full_the_least_recently_written_entry_goes() -> None:
    cache: TTLMap[str, int] = TTLMap(2, Clock())
    cache.put("a", 1, 60)
    cache.put("b", 2, 60)
    cache.put("a", 3, 60)  # rewritten: now the most recent
    cache.put("c", 4, 60)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (3, None, 4)


def test_add_keeps_a_live_value_and_replaces_an_expired_one() -> None:
    clock = Clock()
    cache: TTLMap[str, str] = TTLMap(4, clock)
    assert cache.add("id", "processing", 1) is None
    assert cache.add("id", "done", 1) == "processing"
    clock.now += 1
    assert cache.add("id", "done", 1) is None
    assert cache.get("id") == "done"


def test_a_map_of_no_entries_keeps_nothing() -> None:
    cache: TTLMap[str, int] = TTLMap(0, Clock())
    cache.put("a", 1, 60)
    assert (cache.get("a"), len(cache)) == (None, 0)


def test_a_negative_bound_is_refused() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        TTLMap(-1, Clock())


_KEYS = st.sampled_from("abcdef")
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), _KEYS, st.integers(0, 9), st.integers(0, 5)),
        st.tuples(st.just("get"), _KEYS, st.just(0), st.just(0)),
        st.tuples(st.just("pop"), _KEYS, st.just(0), st.just(0)),
        st.tuples(st.just("tick"), _KEYS, st.just(0), st.integers(1, 3)),
    ),
    max_size=60,
)


@given(max_entries=st.integers(0, 4), ops=_OPS)
def test_the_map_agrees_with_a_list_in_write_order(
    max_entries: int, ops: list[tuple[str, str, int, int]]
) -> None:
    clock = Clock()
    cache: TTLMap[str, int] = TTLMap(max_entries, clock)
    model: list[tuple[str, int, float]] = []  # (key, value, deadline), oldest write first
    for op, key, value, amount in ops:
        if op == "tick":
            clock.now += amount
        elif op == "pop":
            cache.pop(key)
            model = [entry for entry in model if entry[0] != key]
        elif op == "put":
            cache.put(key, value, amount)
            if max_entries:
                model = [entry for entry in model if entry[0] != key]
                model.append((key, value, clock.now + amount))
                while model and (model[0][2] <= clock.now or len(model) > max_entries):
                    model.pop(0)
        else:
            alive = {k: v for k, v, deadline in model if deadline > clock.now}
            assert cache.get(key) == alive.get(key)
            model = [entry for entry in model if entry[0] != key or entry[0] in alive]
        assert len(cache) <= max_entries
        assert len(cache) == len(model)
