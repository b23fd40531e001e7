"""The HARDENKIT_LOG_* settings refuse what would make redaction unsafe."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from hardenkit.settings import HardenSettings, SettingsError, load_settings


def test_pseudonymizing_without_a_key_is_refused_in_every_environment() -> None:
    with pytest.raises(SettingsError, match="HARDENKIT_LOG_PSEUDONYMIZATION_KEY"):
        load_settings(env="development", log_pseudonymize_keys=["email"])


def test_a_short_pseudonymization_key_is_refused_in_production_only() -> None:
    short = SecretStr("too-short")
    assert load_settings(env="development", log_pseudonymization_key=short)
    problems = HardenSettings(env="production", log_pseudonymization_key=short).startup_errors()
    assert [p.setting for p in problems if "LOG" in p.setting] == [
        "HARDENKIT_LOG_PSEUDONYMIZATION_KEY"
    ]


def test_an_allow_pattern_that_does_not_compile_names_the_variable_not_the_value() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(log_allow_patterns=["[0-9a-fZQX"])
    assert "HARDENKIT_LOG_ALLOW_PATTERNS" in str(caught.value)
    assert "ZQX" not in str(caught.value)


def test_lists_come_from_comma_separated_environment_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HARDENKIT_LOG_REDACT_KEYS", "iban, tax_id")
    assert HardenSettings().log_redact_keys == ["iban", "tax_id"]


def test_allow_lists_that_switch_redaction_off_for_plain_secrets_are_warned() -> None:
    """`password` in the allowed names or `.*` in the allowed patterns kept secrets in the
    logs with no word at startup (new-user review)."""
    settings = HardenSettings(
        log_allow_keys=["token_type", "password", "X-Authorization"],
        log_allow_patterns=[".*", "[0-9a-f]{32}"],
    )
    warned = {p.setting: p for p in settings.problems() if p.setting.startswith("HARDENKIT_LOG_")}
    assert warned["HARDENKIT_LOG_ALLOW_KEYS"].severity == "warning"
    assert "password, X-Authorization" in warned["HARDENKIT_LOG_ALLOW_KEYS"].message
    assert "token_type" not in warned["HARDENKIT_LOG_ALLOW_KEYS"].message
    assert warned["HARDENKIT_LOG_ALLOW_PATTERNS"].message.startswith(".* matches")
    narrow = HardenSettings(log_allow_keys=["token_type"], log_allow_patterns=["[0-9a-f]{32}"])
    assert not [p for p in narrow.problems() if p.setting.startswith("HARDENKIT_LOG_ALLOW")]
