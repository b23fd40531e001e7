"""install() composes the parts each feature builds; the result is built once."""

from __future__ import annotations

import dataclasses
import gc
import inspect

import pytest
import structlog.testing
from starlette.applications import Starlette
from starlette.testclient import TestClient

from hardenkit import HardenSettings, install
from hardenkit._parts import Shared
from hardenkit.ratelimit._install import build_rate_limits
from hardenkit.ratelimit.memory import MemoryStore
from hardenkit.ratelimit.middleware import RateLimitMiddleware
from hardenkit.signing._install import build_signing

SETTINGS = HardenSettings(
    jwt_secret="x" * 8 + "Q2v9#Lm4!pR7@tZ1wY6^kB3$nH8&cF5*",
    webhook_paths=["/webhooks/*"],
    webhook_secret="whsec_" + "A" * 40,
    cors_origins=["https://app.example"],
)


def test_every_installed_layer_is_built_from_keywords_its_class_accepts() -> None:
    kit = install(Starlette(), SETTINGS)

    for layer in kit.middleware:
        assert layer.args == ()
        inspect.signature(layer.cls).bind(Starlette(), **layer.kwargs)  # raises if not


def test_every_rate_limit_layer_counts_on_the_store_the_kit_hands_out() -> None:
    kit = install(Starlette(), SETTINGS)

    stores = [layer.kwargs["store"] for layer in kit.middleware if layer.cls is RateLimitMiddleware]

    assert len(stores) == 3  # per ip, per tenant, per webhook path
    assert all(store is kit.rate_limit_store for store in stores)


def test_the_kit_is_built_once_and_cannot_be_rewired_afterwards() -> None:
    kit = install(Starlette(), SETTINGS)

    with pytest.raises(dataclasses.FrozenInstanceError):
        kit.rate_limit_store = MemoryStore()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        kit.auth = None  # type: ignore[misc]


def test_a_builder_needs_only_the_settings_and_the_shared_pieces() -> None:
    rate_limits = build_rate_limits(SETTINGS, Shared())
    signing = build_signing(SETTINGS, Shared())

    assert isinstance(rate_limits.store, MemoryStore)
    assert rate_limits.webhook is not None
    assert signing.middleware is not None
    assert signing.checks == ()  # no Redis: nothing for readiness to report


def test_gc_freeze_keeps_what_startup_built_out_of_collections_until_shutdown() -> None:
    app = Starlette()
    install(app, SETTINGS.model_copy(update={"gc_freeze": True}))
    gc.unfreeze()
    with TestClient(app):
        assert gc.get_freeze_count() > 0  # startup's objects: the permanent generation
    assert gc.get_freeze_count() == 0  # given back at shutdown


def test_without_gc_freeze_nothing_is_frozen() -> None:
    app = Starlette()
    install(app, SETTINGS)
    gc.unfreeze()
    with TestClient(app):
        assert gc.get_freeze_count() == 0


@pytest.mark.parametrize("redis_url", [None, "redis://127.0.0.1:1/0"])
def test_install_says_once_that_limits_are_per_process_without_redis(
    redis_url: str | None,
) -> None:
    # Production warns through the settings' problems; in development a user running
    # several workers should still be told that each one admits the whole limit.
    with structlog.testing.capture_logs() as logs:
        install(Starlette(), HardenSettings(env="development", redis_url=redis_url))
    said = [log for log in logs if log["event"] == "stores_per_process"]
    if redis_url is None:
        assert len(said) == 1
        assert said[0]["setting"] == "HARDENKIT_REDIS_URL"
        assert said[0]["log_level"] == "info"
    else:
        assert said == []


def test_a_startup_on_another_event_loop_than_asyncio_is_refused_by_name() -> None:
    """Round 13: under ``hypercorn --worker-class trio`` the app started, then answered
    every request, ``/healthz`` included, with a 500 (the timers are asyncio's)."""
    app = Starlette()
    install(app, SETTINGS)
    starting = app.router.lifespan_context(app).__aenter__()
    try:
        with pytest.raises(RuntimeError, match="needs an asyncio event loop"):
            starting.send(None)  # driven by no asyncio loop, as trio would
    finally:
        starting.close()
