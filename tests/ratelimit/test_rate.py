from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hardenkit.ratelimit import Rate
from hardenkit.settings import SettingsError, load_settings


@pytest.mark.parametrize(
    ("text", "count", "period", "burst"),
    [
        ("100/15m", 100, 900, 100),
        ("5/15 minutes", 5, 900, 5),
        ("10/s", 10, 1, 10),
        ("100/hour", 100, 3600, 100),
        ("1000 per day", 1000, 86400, 1000),
        ("10/s burst 50", 10, 1, 50),
        (" 3 / 2 hours ", 3, 7200, 3),
    ],
)
def test_rate_strings_parse_to_count_period_and_burst(
    text: str, count: int, period: int, burst: int
) -> None:
    rate = Rate.parse(text)
    assert (rate.count, rate.period_seconds, rate.burst) == (count, period, burst)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "100",
        "100/",
        "/m",
        "ten/m",
        "100/15 fortnights",
        "0/m",
        "5/0m",
        "5/m burst 0",
        "-1/s",
        "5/m,",
    ],
)
def test_malformed_rate_strings_are_refused_with_the_expected_form(text: str) -> None:
    with pytest.raises(ValueError, match=r"rate|burst|count|period"):
        Rate.parse(text)


def test_emission_interval_is_rounded_up_so_a_period_never_admits_more_than_its_count() -> None:
    rate = Rate.parse("3/s")
    assert rate.emission_interval_us == 333_334
    assert rate.emission_interval_us * rate.count >= 1_000_000


@given(
    count=st.integers(1, 10**6),
    period=st.integers(1, 86400 * 30),
    data=st.data(),
)
def test_a_rate_survives_its_own_string_form(count: int, period: int, data: st.DataObject) -> None:
    emission = -(-period * 1_000_000 // count)  # rounded up, as Rate does
    burst = data.draw(st.integers(1, min(10**6, 366 * 86400 * 1_000_000 // emission)))
    rate = Rate(count, period, burst)
    assert Rate.parse(str(rate)) == rate


def test_a_burst_that_takes_longer_than_366_days_to_refill_is_refused() -> None:
    assert Rate.parse("1/366d").tolerance_us == 366 * 86400 * 1_000_000
    assert Rate.parse("10/day burst 3660").burst == 3660
    with pytest.raises(ValueError, match="refill within 366 days") as refused:
        Rate.parse("10/day burst 3661")
    assert "'10/day burst 3661'" in str(refused.value)
    with pytest.raises(ValueError, match="refill within 366 days"):
        Rate(1, 366 * 86400, 2)


@given(st.text(max_size=40))
def test_parsing_any_text_either_gives_a_rate_or_a_value_error(text: str) -> None:
    try:
        rate = Rate.parse(text)
    except ValueError:
        return
    assert rate.count >= 1
    assert rate.burst >= 1


def test_a_malformed_rate_setting_refuses_startup_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HARDENKIT_RATE_LIMIT_TENANT", "lots/minute")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "HARDENKIT_RATE_LIMIT_TENANT" in str(caught.value)
    assert "expected '<count>/<period>'" in str(caught.value)


def test_a_key_prefix_with_a_hash_tag_brace_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARDENKIT_RATE_LIMIT_KEY_PREFIX", "app:{x}:")
    with pytest.raises(SettingsError, match="HARDENKIT_RATE_LIMIT_KEY_PREFIX"):
        load_settings()
