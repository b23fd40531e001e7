"""hardenkit.testing: tokens the app's settings accept, the switches, reset, the plugin."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from hardenkit import CircuitBreaker, HardenSettings, JWKSClient, JWTVerifier, RateLimiter
from hardenkit.auth.errors import TokenRejectedError
from hardenkit.ratelimit.memory import MemoryStore
from hardenkit.ratelimit.redis_store import RedisStore
from hardenkit.resilience.budget import RetryBudget
from hardenkit.resilience.events import BreakerState
from hardenkit.resilience.registry import ResilienceRegistry
from hardenkit.signing.replay import ReplayStore
from hardenkit.testing import (
    JWKSServer,
    TokenIssuer,
    areset,
    limits_disabled,
    override_principal,
    reset,
)

ISSUERS = {"HS256": TokenIssuer.hs256, "RS256": TokenIssuer.rs256, "ES256": TokenIssuer.es256}


def verifier_for(settings: dict[str, Any]) -> JWTVerifier:
    return JWTVerifier(
        secret=settings.get("jwt_secret"),
        public_key=settings.get("jwt_public_key"),
        algorithms=settings["jwt_algorithms"],
        issuer=settings["jwt_issuer"],
        audience=settings["jwt_audience"],
    )


@pytest.mark.parametrize("algorithm", sorted(ISSUERS))
async def test_minted_tokens_verify_under_the_issuers_settings(algorithm: str) -> None:
    issuer = ISSUERS[algorithm]()
    principal = await verifier_for(issuer.settings()).verify(
        issuer.mint("alice", tenant="acme", roles=["admin"], scopes=["orders:read", "a:b"])
    )
    assert (principal.subject, principal.tenant) == ("alice", "acme")
    assert principal.roles == frozenset({"admin"})
    assert principal.scopes == frozenset({"orders:read", "a:b"})


@pytest.mark.parametrize("algorithm", sorted(ISSUERS))
def test_the_issuers_settings_pass_the_test_environments_checks(algorithm: str) -> None:
    settings = HardenSettings(env="test", **ISSUERS[algorithm]().settings())
    assert settings.startup_errors() == []


async def test_tokens_of_another_issuer_are_refused() -> None:
    mine, theirs = TokenIssuer.es256(), TokenIssuer.es256()
    with pytest.raises(TokenRejectedError):
        await verifier_for(mine.settings()).verify(theirs.mint())


async def test_a_claim_can_be_replaced_or_removed() -> None:
    issuer = TokenIssuer.hs256()
    verifier = verifier_for(issuer.settings())
    with pytest.raises(TokenRejectedError):
        await verifier.verify(issuer.mint(claims={"iss": "https://elsewhere.test"}))
    with pytest.raises(TokenRejectedError):
        await verifier.verify(issuer.mint(claims={"exp": None}))


def test_a_shared_secret_is_never_published() -> None:
    issuer = TokenIssuer.hs256()
    with pytest.raises(TypeError):
        issuer.jwks()
    with pytest.raises(TypeError):
        JWKSServer(issuer)
    assert issuer.settings()["jwt_secret"] not in repr(issuer)


async def test_the_jwks_server_serves_keys_and_can_rotate_and_fail() -> None:
    old, new = TokenIssuer.rs256(), TokenIssuer.es256()
    with JWKSServer(old) as server:
        settings = server.settings()
        assert settings["jwt_jwks_url"].startswith("http://127.0.0.1:")
        client = JWKSClient(
            settings["jwt_jwks_url"],
            algorithms=["RS256", "ES256"],
            allow_http_loopback=True,
            refresh_cooldown=0,
        )
        verifier = JWTVerifier(jwks=client, issuer=old.issuer, audience=[old.audience])
        assert (await verifier.verify(old.mint("a"))).subject == "a"
        server.issuers = [new]  # rotation: the unknown kid makes the client fetch again
        assert (await verifier.verify(new.mint("b"))).subject == "b"
        assert server.requests == 2
        server.status = 503
        async with httpx.AsyncClient() as http:
            assert (await http.get(server.url)).status_code == 503
    with pytest.raises(RuntimeError):
        _ = server.url


async def test_limits_disabled_admits_everything_and_charges_nothing() -> None:
    store = MemoryStore()
    limiter = RateLimiter("1/minute", store=store, name="tight")
    with limits_disabled():
        decisions = [await limiter.hit("k") for _ in range(5)]
    assert all(decision.allowed for decision in decisions)
    assert len(store) == 0
    assert (await limiter.hit("k")).allowed
    assert not (await limiter.hit("k")).allowed  # back on after the block


def test_switches_restore_what_was_there_when_nested() -> None:
    from hardenkit.auth._override import PRINCIPAL_OVERRIDE
    from hardenkit.ratelimit._switch import LIMITS

    with override_principal(subject="outer") as outer:
        with override_principal(subject="inner", tenant=None) as inner:
            assert PRINCIPAL_OVERRIDE.principal is inner
            assert inner.tenant is None
        assert PRINCIPAL_OVERRIDE.principal is outer
    assert PRINCIPAL_OVERRIDE.principal is None
    with limits_disabled():
        with limits_disabled():
            pass
        assert LIMITS.disabled
    assert not LIMITS.disabled


def test_switches_refuse_to_turn_on_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARDENKIT_ENV", "production")
    with pytest.raises(RuntimeError, match="production"), override_principal():
        pass
    with pytest.raises(RuntimeError, match="production"), limits_disabled():
        pass


def test_reset_closes_breakers_and_empties_budgets_and_memory_stores() -> None:
    registry = ResilienceRegistry()
    breaker = registry.breaker("upstream", lambda: CircuitBreaker("upstream"))
    budget = registry.budget("upstream", lambda: RetryBudget(ratio=0, minimum_retries=1))
    breaker.force_open()
    assert budget.try_withdraw()
    assert not budget.try_withdraw()
    store, replay = MemoryStore(), ReplayStore()
    store.set_tat("key", 10**15)
    reset(stores=[store, replay], registry=registry)
    assert breaker.state is BreakerState.CLOSED
    assert registry.breaker("upstream", lambda: CircuitBreaker("other")) is breaker
    assert budget.try_withdraw()
    assert len(store) == 0


async def test_reset_forgets_replayed_ids() -> None:
    replay = ReplayStore()
    assert await replay.remember("delivery-1", 60)
    assert not await replay.remember("delivery-1", 60)
    reset(stores=[replay], registry=ResilienceRegistry())
    assert await replay.remember("delivery-1", 60)


@pytest.mark.redis
async def test_redis_state_needs_areset_which_deletes_only_its_prefix(
    redis_client: Redis, key_prefix: str
) -> None:
    store = RedisStore(redis_client, prefix=key_prefix + "rl:")
    replay = ReplayStore(redis_client, prefix=key_prefix + "replay:")
    limiter = RateLimiter("1/minute", store=store, name="tight")
    await redis_client.set(key_prefix + "other", "kept")
    assert (await limiter.hit("k")).allowed
    assert not (await limiter.hit("k")).allowed
    assert await replay.remember("id", 60)
    with pytest.raises(RuntimeError, match="areset"):
        reset(stores=[store], registry=ResilienceRegistry())
    await areset(stores=[store, replay], registry=ResilienceRegistry())
    assert (await limiter.hit("k")).allowed
    assert await replay.remember("id", 60)
    assert await redis_client.get(key_prefix + "other") == b"kept"
    await store.aclose()


def _run_pytest(tmp_path: Path, **env_vars: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "HARDENKIT_ENV_FILE"}
    env.update(PYTEST_DISABLE_PLUGIN_AUTOLOAD="1", **env_vars)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "hardenkit.testing.plugin",
            "-p",
            "no:cacheprovider",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )


def test_the_plugin_loads_with_autoload_off_and_its_fixtures_work(tmp_path: Path) -> None:
    (tmp_path / "test_app.py").write_text(
        textwrap.dedent(
            """
            from hardenkit.testing import TokenIssuer

            def test_fixtures(hardenkit_issuer, hardenkit_principal, hardenkit_limits_disabled):
                assert isinstance(hardenkit_issuer, TokenIssuer)
                assert hardenkit_principal.tenant == "tenant-1"
            """
        )
    )
    result = _run_pytest(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_the_plugin_keeps_a_developers_dotenv_out_of_the_tests_unless_asked(
    tmp_path: Path,
) -> None:
    (tmp_path / ".env").write_text("HARDENKIT_REQUEST_TIMEOUT=7.5\n")
    (tmp_path / "test_app.py").write_text(
        textwrap.dedent(
            """
            import os
            from hardenkit import load_settings

            def test_settings():
                expected = float(os.environ.get("EXPECTED_TIMEOUT", "30"))
                assert load_settings().request_timeout == expected
            """
        )
    )
    default = HardenSettings.model_fields["request_timeout"].default
    ignored = _run_pytest(tmp_path, EXPECTED_TIMEOUT=str(default))
    assert ignored.returncode == 0, ignored.stdout + ignored.stderr
    # Asked for: the session's own HARDENKIT_ENV_FILE is kept.
    read = _run_pytest(tmp_path, HARDENKIT_ENV_FILE=".env", EXPECTED_TIMEOUT="7.5")
    assert read.returncode == 0, read.stdout + read.stderr
    assert default != 7.5
