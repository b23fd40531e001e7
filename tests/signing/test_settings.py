"""Signing settings: validated at startup, naming the variable, never echoing a secret."""

from __future__ import annotations

import json

import pytest

from hardenkit.settings import HardenSettings, SettingsError, load_settings
from hardenkit.signing import generate_private_key, private_key_text, public_key_text
from hardenkit.signing._secret import encode_standard_secret

SECRET = encode_standard_secret(b"k" * 32)
AGENT = public_key_text(generate_private_key())
OTHER = public_key_text(generate_private_key())


def refused_settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> SettingsError:
    for name, value in env.items():
        monkeypatch.setenv(f"HARDENKIT_{name.upper()}", value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    return caught.value


def names(error: SettingsError) -> set[str]:
    return {problem.setting for problem in error.problems}


@pytest.mark.parametrize("secret", ["whsec_short", "whsec_%%%%not-base64%%%%", "QUJDREVGR0g="])
def test_an_unusable_webhook_secret_refuses_to_start_and_is_not_echoed(
    monkeypatch: pytest.MonkeyPatch, secret: str
) -> None:
    error = refused_settings(monkeypatch, webhook_secret=secret)
    assert names(error) == {"HARDENKIT_WEBHOOK_SECRET"}
    assert secret not in str(error)


def test_rotation_lists_several_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARDENKIT_WEBHOOK_SECRET", f"{SECRET}, {encode_standard_secret(b'o' * 32)}")
    assert load_settings().webhook_secret is not None


def test_stripe_scheme_takes_the_secret_as_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARDENKIT_WEBHOOK_SCHEME", "stripe")
    monkeypatch.setenv("HARDENKIT_WEBHOOK_SECRET", "whsec_0123456789abcdefghijABCD")
    assert load_settings().webhook_scheme == "stripe"


def test_webhook_paths_without_a_secret_refuse_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    error = refused_settings(monkeypatch, webhook_paths="/webhooks/*")
    assert "HARDENKIT_WEBHOOK_SECRET" in names(error)


def test_a_dedupe_ttl_shorter_than_the_replay_window_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    error = refused_settings(monkeypatch, webhook_tolerance="300", webhook_dedupe_ttl="599")
    assert names(error) == {"HARDENKIT_WEBHOOK_DEDUPE_TTL"}


def test_trusted_keys_read_pairs_or_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARDENKIT_MESSAGE_TRUSTED_KEYS", f"agent-a={AGENT}, agent-b={OTHER}")
    assert load_settings().message_trusted_keys == {"agent-a": AGENT, "agent-b": OTHER}
    monkeypatch.setenv("HARDENKIT_MESSAGE_TRUSTED_KEYS", json.dumps({"agent-a": AGENT}))
    assert load_settings().message_trusted_keys == {"agent-a": AGENT}


@pytest.mark.parametrize(
    "value",
    ["agent-a=garbage", "no-separator", f"bad id={AGENT}", f"a={AGENT},a={OTHER}"],
    # Named, not shown: the keys are generated, and pytest -n needs the same ids everywhere.
    ids=["garbage-key", "no-separator", "space-in-id", "repeated-id"],
)
def test_unusable_trusted_keys_refuse_to_start(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    error = refused_settings(monkeypatch, message_trusted_keys=value)
    assert names(error) == {"HARDENKIT_MESSAGE_TRUSTED_KEYS"}


def test_the_signing_key_is_secret_validated_and_needs_a_key_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed = private_key_text(generate_private_key())
    error = refused_settings(monkeypatch, message_signing_key=seed)
    assert names(error) == {"HARDENKIT_MESSAGE_KEY_ID"}
    assert seed not in str(error)
    monkeypatch.setenv("HARDENKIT_MESSAGE_KEY_ID", "billing")
    settings = load_settings()
    assert seed not in repr(settings)
    monkeypatch.setenv("HARDENKIT_MESSAGE_SIGNING_KEY", "not-a-key")
    assert names(refused_settings(monkeypatch)) == {"HARDENKIT_MESSAGE_SIGNING_KEY"}


def test_webhook_paths_that_auth_would_guard_are_warned_about() -> None:
    settings = HardenSettings(webhook_secret=SECRET, webhook_paths=["/hooks/in"])
    warnings = [p for p in settings.problems() if p.setting == "HARDENKIT_WEBHOOK_PATHS"]
    assert warnings
    assert warnings[0].severity == "warning"
    public = HardenSettings(
        webhook_secret=SECRET, webhook_paths=["/hooks/in"], public_paths=["/hooks/*"]
    )
    assert not [p for p in public.problems() if p.setting == "HARDENKIT_WEBHOOK_PATHS"]


def test_long_windows_are_warned_about_in_production() -> None:
    settings = HardenSettings(
        env="production", webhook_tolerance=900, message_tolerance=900, webhook_dedupe_ttl=3600
    )
    warned = {p.setting for p in settings.problems() if p.severity == "warning"}
    assert {"HARDENKIT_WEBHOOK_TOLERANCE", "HARDENKIT_MESSAGE_TOLERANCE"} <= warned


@pytest.mark.parametrize(
    ("timeouts", "claimed_for"),
    [
        ({}, 60.0),  # the default 30 s timeout: the default claim
        ({"HARDENKIT_REQUEST_TIMEOUT": "90"}, 95.0),
        ({"HARDENKIT_REQUEST_TIMEOUT_ROUTES": '{"/webhooks/*": 120}'}, 125.0),
    ],
)
def test_a_webhook_claim_outlives_any_handler_the_timeouts_let_run(
    monkeypatch: pytest.MonkeyPatch, timeouts: dict[str, str], claimed_for: float
) -> None:
    """A claim that lapsed while its handler still ran (a 65 s handler, a 60 s claim)
    let the sender's next retry be processed beside it: twice, measured."""
    from starlette.applications import Starlette

    from hardenkit import install
    from hardenkit.signing import WebhookMiddleware

    monkeypatch.setenv("HARDENKIT_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("HARDENKIT_WEBHOOK_PATHS", "/webhooks/*")
    for name, value in timeouts.items():
        monkeypatch.setenv(name, value)
    kit = install(Starlette(), load_settings())
    (layer,) = [item for item in kit.middleware if item.cls is WebhookMiddleware]
    assert layer.kwargs["processing_ttl"] == claimed_for


@pytest.mark.parametrize(
    ("webhooks", "streaming", "untimed"),
    [
        ("/webhooks/*", "/webhooks/live", True),
        ("/webhooks/in", "/webhooks/*", True),
        ("/webhooks/x/", "/webhooks/x/", True),  # an exact path ending in / is itself
        ("/hooks/", "/hooks/*", True),
        ("/hooks", "*", True),
        ("/webhooks/*", "/webhooksx", False),
        ("/webhooks/*", "/events/*", False),
    ],
)
def test_a_webhook_path_the_timeout_skips_is_a_risk_whatever_the_patterns(
    webhooks: str, streaming: str, untimed: bool
) -> None:
    settings = HardenSettings(
        webhook_secret=SECRET,  # type: ignore[arg-type]
        webhook_paths=[webhooks],
        public_paths=[webhooks],
        streaming_paths=[streaming],
    )
    risks = {problem.risk for problem in settings.problems()}
    assert ("webhook-path-untimed" in risks) is untimed
