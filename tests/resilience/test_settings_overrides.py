"""Per-name overrides from HARDENKIT_RESILIENT_<NAME>_<KEY>, validated at startup."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette

from hardenkit import install
from hardenkit.errors import ConfigurationError
from hardenkit.resilience import BreakerState, ResilienceRegistry, _overrides, resilient, testing
from hardenkit.settings import HardenSettings, SettingsError, load_settings


def test_env_overrides_tune_one_name_only(
    monkeypatch: pytest.MonkeyPatch, registry: ResilienceRegistry
) -> None:
    monkeypatch.setenv("HARDENKIT_RESILIENT_PAYMENTS_API_TIMEOUT", "2.5")
    monkeypatch.setenv("HARDENKIT_RESILIENT_PAYMENTS_API_ATTEMPTS", "5")
    monkeypatch.setenv("HARDENKIT_RESILIENT_PAYMENTS_API_WAIT_IN_OPEN", "7")
    monkeypatch.setenv("HARDENKIT_RESILIENT_PAYMENTS_API_MAX_CONCURRENT", "4")
    payments = resilient("payments-api", registry=registry, timeout=10, attempts=3)
    other = resilient("search", registry=registry, timeout=10, attempts=3)
    assert payments.timeout == 2.5
    assert payments.retry is not None
    assert payments.retry.attempts == 5
    assert payments.breaker is not None
    assert payments.breaker.config.wait_in_open == 7.0
    assert payments.bulkhead is not None
    assert payments.bulkhead.max_concurrent == 4
    assert other.timeout == 10
    assert other.retry is not None
    assert other.retry.attempts == 3


def test_an_operator_can_force_a_breaker_open_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, registry: ResilienceRegistry
) -> None:
    monkeypatch.setenv("HARDENKIT_RESILIENT_OPENAI_BREAKER", "forced_open")
    policy = resilient("openai", registry=registry)
    assert policy.breaker is not None
    assert policy.breaker.state is BreakerState.FORCED_OPEN


def test_timeout_none_removes_the_attempt_timeout(
    monkeypatch: pytest.MonkeyPatch, registry: ResilienceRegistry
) -> None:
    monkeypatch.setenv("HARDENKIT_RESILIENT_BATCH_TIMEOUT", "none")
    assert resilient("batch", registry=registry).timeout is None


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("HARDENKIT_RESILIENT_OPENAI_TIMEOUT", "ten"),
        ("HARDENKIT_RESILIENT_OPENAI_TIMEOUT", "-1"),
        ("HARDENKIT_RESILIENT_OPENAI_ATTEMPTS", "99"),
        ("HARDENKIT_RESILIENT_OPENAI_FAILURE_RATE_THRESHOLD", "150"),
        ("HARDENKIT_RESILIENT_OPENAI_BREAKER", "sometimes"),
        ("HARDENKIT_RESILIENT_OPENAI_TIMOUT", "5"),
    ],
)
def test_an_invalid_override_refuses_startup_naming_the_variable_not_the_value(
    monkeypatch: pytest.MonkeyPatch, registry: ResilienceRegistry, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert variable in str(refused.value)
    assert f"{value}" not in str(refused.value).replace(variable, "")


def test_an_invalid_override_also_fails_the_decorator_at_import_time(
    monkeypatch: pytest.MonkeyPatch, registry: ResilienceRegistry
) -> None:
    monkeypatch.setenv("HARDENKIT_RESILIENT_OPENAI_TIMEOUT", "soon")
    with pytest.raises(ConfigurationError, match="HARDENKIT_RESILIENT_OPENAI_TIMEOUT"):
        resilient("openai", registry=registry)


def test_a_breaker_override_for_a_breaker_built_in_code_is_refused(
    monkeypatch: pytest.MonkeyPatch, registry: ResilienceRegistry
) -> None:
    from hardenkit.resilience import CircuitBreaker

    monkeypatch.setenv("HARDENKIT_RESILIENT_OPENAI_WAIT_IN_OPEN", "5")
    with pytest.raises(ConfigurationError, match="HARDENKIT_RESILIENT_OPENAI_WAIT_IN_OPEN"):
        resilient("openai", registry=registry, breaker=CircuitBreaker("openai"))


def test_sharing_breakers_without_redis_is_reported() -> None:
    settings = HardenSettings(outbound_shared_breakers=True)
    assert "HARDENKIT_OUTBOUND_SHARED_BREAKERS" in {p.setting for p in settings.problems()}


def test_resilient_parses_the_environment_once_not_per_call(
    monkeypatch: pytest.MonkeyPatch, registry: ResilienceRegistry
) -> None:
    parses: list[int] = []
    real = _overrides.read_resilient_overrides

    def counted() -> _overrides.ResilientOverrides:
        parses.append(1)
        return real()

    monkeypatch.setattr(_overrides, "read_resilient_overrides", counted)
    monkeypatch.setenv("HARDENKIT_RESILIENT_PAYMENTS_TIMEOUT", "4")
    first = resilient("payments", registry=registry)
    second = resilient("payments", registry=registry)
    assert (first.timeout, second.timeout) == (4.0, 4.0)
    assert len(parses) == 1


def test_after_install_resilient_uses_the_overrides_the_settings_parsed(
    monkeypatch: pytest.MonkeyPatch, registry: ResilienceRegistry
) -> None:
    monkeypatch.setenv("HARDENKIT_RESILIENT_PAYMENTS_TIMEOUT", "4")
    settings = HardenSettings()
    install(Starlette(), settings)
    monkeypatch.setattr(_overrides, "read_resilient_overrides", _never_parsed)
    monkeypatch.setenv("HARDENKIT_RESILIENT_PAYMENTS_TIMEOUT", "9")
    assert resilient("payments", registry=registry).timeout == 4.0


def test_reset_overrides_makes_the_next_resilient_read_the_environment_again(
    monkeypatch: pytest.MonkeyPatch, registry: ResilienceRegistry
) -> None:
    monkeypatch.setenv("HARDENKIT_RESILIENT_PAYMENTS_TIMEOUT", "4")
    assert resilient("payments", registry=registry).timeout == 4.0
    monkeypatch.setenv("HARDENKIT_RESILIENT_PAYMENTS_TIMEOUT", "9")
    assert resilient("payments", registry=registry).timeout == 4.0
    testing.reset_overrides()
    assert resilient("payments", registry=registry).timeout == 9.0


def _never_parsed() -> _overrides.ResilientOverrides:
    raise AssertionError("resilient() parsed the environment after install()")
