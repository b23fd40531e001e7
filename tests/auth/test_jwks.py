"""JWKSClient against a real local HTTP provider: rotation, removal, outage, floods."""

from __future__ import annotations

import asyncio
import secrets
import statistics
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from hardenkit import HardenSettings, install
from hardenkit.auth import JWKSClient, JWTVerifier, KeysUnavailableError, TokenRejectedError
from hardenkit.auth.jwks import check_jwks_url
from hardenkit.testing import JWKSServer, TokenIssuer
from tests.auth.jwks_server import JWKSProvider
from tests.auth.support import AUDIENCE, ISSUER, claims, ec_key, jwk_of, rs256, rsa_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def provider() -> Iterator[JWKSProvider]:
    server = JWKSProvider([jwk_of(rsa_key("k1"), "k1")])
    server.start()
    try:
        yield server
    finally:
        server.stop()


def client(url: str, clock: Clock, **options: Any) -> JWKSClient:
    options.setdefault("refresh_cooldown", 30.0)
    options.setdefault("timeout", 2.0)
    return JWKSClient(url, allow_http_loopback=True, clock=clock, **options)


def verifier(jwks: JWKSClient) -> JWTVerifier:
    return JWTVerifier(jwks=jwks, issuer=ISSUER, audience=[AUDIENCE])


async def background_refresh(jwks: JWKSClient) -> None:
    """Wait (bounded) for a scheduled refresh that runs in the background."""
    task = jwks._inflight
    if task is not None:
        async with asyncio.timeout(10):
            await task


async def test_with_keys_loaded_a_slow_provider_never_slows_a_request(
    provider: JWKSProvider,
) -> None:
    clock = Clock()
    jwks = client(provider.url, clock, cache_ttl=60, timeout=10.0)
    check = verifier(jwks)
    await check.verify(rs256(key_name="k1", kid="k1"))  # the first load is waited for
    provider.delay = 8.0  # slow, not down: it answers after 8 s
    clock.now += 61  # the keys are due for their scheduled refresh
    loop = asyncio.get_running_loop()
    waits: list[float] = []
    try:
        for index in range(40):
            token = rs256(claims(sub=f"during-{index}"), key_name="k1", kid="k1")
            started = loop.time()  # the request's wait, not the test signing its token
            assert (await check.verify(token)).subject == f"during-{index}"
            waits.append(loop.time() - started)
            await asyncio.sleep(0.02)
        assert provider.hits == 2  # one refresh started, in the background, still waiting
        assert jwks._inflight is not None
        assert not jwks._inflight.done()
    finally:
        if jwks._inflight is not None:
            jwks._inflight.cancel()
    # No request waited for the provider (8 s), the one that started the refresh
    # included, and the typical one took what a verification takes. (The slowest alone,
    # bound at 50 ms, measured the host: 67 ms once, with other tests running beside.)
    assert max(waits) < provider.delay / 8
    assert statistics.median(waits) < 0.01


async def test_a_token_signed_by_a_published_key_verifies(provider: JWKSProvider) -> None:
    jwks = client(provider.url, Clock())
    principal = await verifier(jwks).verify(rs256(key_name="k1", kid="k1"))
    assert principal.tenant == "acme"
    assert provider.hits == 1


async def test_rotation_new_key_accepted_and_removed_key_refused(
    provider: JWKSProvider,
) -> None:
    clock = Clock()
    jwks = client(provider.url, clock)
    check = verifier(jwks)
    old_token = rs256(claims(sub="old"), key_name="k1", kid="k1")
    assert (await check.verify(old_token)).subject == "old"

    # The provider rotates: k2 added, k1 removed.
    provider.keys = [jwk_of(rsa_key("k2"), "k2")]
    clock.now += 31  # past the cooldown: an unknown kid may trigger a refresh
    new_token = rs256(claims(sub="new"), key_name="k2", kid="k2")
    assert (await check.verify(new_token)).subject == "new"
    assert jwks.kids == {"k2"}

    # k1 left the set: its token is no longer trusted, not even from the token cache.
    with pytest.raises(TokenRejectedError) as caught:
        await check.verify(old_token)
    assert caught.value.reason == "unknown_kid"


async def test_provider_down_keeps_serving_cached_keys(provider: JWKSProvider) -> None:
    clock = Clock()
    jwks = client(provider.url, clock, cache_ttl=60)
    check = verifier(jwks)
    await check.verify(rs256(key_name="k1", kid="k1"))
    provider.stop()
    clock.now += 120  # the keys are due for refresh, and the provider is gone
    fresh = rs256(claims(sub="during-outage"), key_name="k1", kid="k1")
    assert (await check.verify(fresh)).subject == "during-outage"
    assert jwks.kids == {"k1"}


async def test_provider_answering_500_keeps_serving_cached_keys(provider: JWKSProvider) -> None:
    clock = Clock()
    jwks = client(provider.url, clock, cache_ttl=60)
    await jwks.key_for("k1", "RS256")
    provider.status = 500
    clock.now += 120
    assert (await jwks.key_for("k1", "RS256")).algorithm == "RS256"
    await background_refresh(jwks)
    assert provider.hits == 2
    assert (await jwks.key_for("k1", "RS256")).algorithm == "RS256"


async def test_no_keys_ever_loaded_gives_keys_unavailable(provider: JWKSProvider) -> None:
    provider.stop()
    jwks = client(provider.url, Clock())
    with pytest.raises(KeysUnavailableError):
        await jwks.key_for("k1", "RS256")


async def test_a_flood_of_random_kids_causes_at_most_one_fetch_per_cooldown(
    provider: JWKSProvider,
) -> None:
    clock = Clock()
    jwks = client(provider.url, clock, refresh_cooldown=30)
    await jwks.key_for("k1", "RS256")
    assert provider.hits == 1
    clock.now += 31
    for _ in range(200):
        with pytest.raises(TokenRejectedError):
            await jwks.key_for(secrets.token_hex(8), "RS256")
    assert provider.hits == 2  # one refresh for the first unknown kid, then the cooldown
    clock.now += 10
    for _ in range(50):
        with pytest.raises(TokenRejectedError):
            await jwks.key_for(secrets.token_hex(8), "RS256")
    assert provider.hits == 2
    clock.now += 25  # cooldown over: one more refresh, no more
    for _ in range(50):
        with pytest.raises(TokenRejectedError):
            await jwks.key_for(secrets.token_hex(8), "RS256")
    assert provider.hits == 3


async def test_an_unknown_kid_seen_after_a_refresh_is_refused_without_fetching_again(
    provider: JWKSProvider,
) -> None:
    clock = Clock()
    jwks = client(provider.url, clock, refresh_cooldown=1, negative_ttl=60)
    await jwks.key_for("k1", "RS256")
    clock.now += 2
    with pytest.raises(TokenRejectedError):
        await jwks.key_for("ghost", "RS256")
    hits = provider.hits
    clock.now += 5  # cooldown passed, but "ghost" is in the negative cache
    with pytest.raises(TokenRejectedError):
        await jwks.key_for("ghost", "RS256")
    assert provider.hits == hits


async def test_concurrent_requests_share_one_fetch(provider: JWKSProvider) -> None:
    provider.delay = 0.2
    jwks = client(provider.url, Clock())
    keys = await asyncio.gather(*(jwks.key_for("k1", "RS256") for _ in range(25)))
    assert {key.algorithm for key in keys} == {"RS256"}
    assert provider.hits == 1


async def test_a_key_of_an_algorithm_outside_the_allow_list_is_not_used(
    provider: JWKSProvider,
) -> None:
    provider.keys = [jwk_of(ec_key("e1"), "e1"), jwk_of(rsa_key("k1"), "k1")]
    jwks = client(provider.url, Clock())  # RS256 only
    assert jwks.kids == frozenset()
    await jwks.key_for("k1", "RS256")
    assert jwks.kids == {"k1"}
    with pytest.raises(TokenRejectedError):
        await jwks.key_for("e1", "ES256")


async def test_symmetric_keys_in_a_jwks_are_ignored(provider: JWKSProvider) -> None:
    provider.keys = [{"kty": "oct", "kid": "hmac", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"}]
    jwks = client(provider.url, Clock())
    with pytest.raises(KeysUnavailableError):
        await jwks.key_for("hmac", "RS256")


def test_hmac_algorithms_are_refused_for_a_jwks() -> None:
    with pytest.raises(ValueError, match="never mix"):
        JWKSClient("https://idp.example/jwks", algorithms=["RS256", "HS256"])


@pytest.mark.parametrize(
    ("url", "allow", "message"),
    [
        ("http://idp.example/jwks", True, "https"),
        ("http://10.0.0.5/jwks", True, "https"),
        ("http://127.0.0.1:9/jwks", False, "explicitly"),
        ("ftp://idp.example/jwks", True, "https"),
        ("https://user:pw@idp.example/jwks", False, "credentials"),
        ("/jwks", False, "absolute"),
    ],
)
def test_only_https_or_explicitly_allowed_loopback_http_is_accepted(
    url: str, allow: bool, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        check_jwks_url(url, allow_http_loopback=allow)


@pytest.mark.parametrize(
    "url", ["https://idp.example/jwks", "http://127.0.0.1:8080/jwks", "http://[::1]/jwks"]
)
def test_https_and_allowed_loopback_http_pass(url: str) -> None:
    assert check_jwks_url(url, allow_http_loopback=True) == url


async def test_a_redirect_is_not_followed(provider: JWKSProvider) -> None:
    provider.status = 302
    jwks = client(provider.url, Clock())
    with pytest.raises(KeysUnavailableError):
        await jwks.key_for("k1", "RS256")


async def test_keys_unavailable_says_when_the_next_fetch_can_happen(
    provider: JWKSProvider,
) -> None:
    provider.stop()
    clock = Clock()
    jwks = client(provider.url, clock, refresh_cooldown=30)
    with pytest.raises(KeysUnavailableError) as first:
        await jwks.key_for("k1", "RS256")
    assert first.value.retry_after == 30
    clock.now += 12
    with pytest.raises(KeysUnavailableError) as later:
        await jwks.key_for("k1", "RS256")
    assert later.value.retry_after == 18


def test_a_jwks_outage_answers_503_with_retry_after_the_refetch_cooldown() -> None:
    issuer = TokenIssuer.rs256()
    with JWKSServer(issuer) as server:
        server.status = 503
        app = Starlette(routes=[Route("/me", lambda request: JSONResponse({}))])
        install(app, HardenSettings(**server.settings(), jwt_jwks_refresh_cooldown=30))
        answer = TestClient(app).get(
            "/me", headers={"Authorization": f"Bearer {issuer.mint('alice', tenant='acme')}"}
        )
    assert answer.status_code == 503
    assert answer.json()["code"] == "SERVICE_UNAVAILABLE"
    # Asking before the cooldown ends gets the same answer: 30 s, not "shortly" (5 s).
    assert 29 <= int(answer.headers["retry-after"]) <= 30
