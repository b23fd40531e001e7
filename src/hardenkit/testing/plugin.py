"""hardenkit's pytest plugin: fixtures for testing an application built on hardenkit.

pytest loads it by itself (the ``pytest11`` entry point ``hardenkit``), or with
``pytest -p hardenkit.testing.plugin`` when plugin autoloading is off. Every fixture name
starts with ``hardenkit_``; none is autouse, so a project that does not ask for one is
not changed by it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from hardenkit.auth.principal import Principal
from hardenkit.testing._jwks import JWKSServer
from hardenkit.testing._switches import limits_disabled, override_principal, reset
from hardenkit.testing._tokens import TokenIssuer

__all__ = [
    "hardenkit_es256_issuer",
    "hardenkit_issuer",
    "hardenkit_jwks_server",
    "hardenkit_limits_disabled",
    "hardenkit_principal",
    "hardenkit_reset",
    "hardenkit_rs256_issuer",
]


@pytest.fixture
def hardenkit_issuer() -> TokenIssuer:
    """An HS256 :class:`TokenIssuer` with a fresh random secret."""
    return TokenIssuer.hs256()


@pytest.fixture(scope="session")
def hardenkit_rs256_issuer() -> TokenIssuer:
    """An RS256 :class:`TokenIssuer` (one key per session: RSA keys take time to make)."""
    return TokenIssuer.rs256()


@pytest.fixture(scope="session")
def hardenkit_es256_issuer() -> TokenIssuer:
    """An ES256 :class:`TokenIssuer`, one per session."""
    return TokenIssuer.es256()


@pytest.fixture
def hardenkit_jwks_server(hardenkit_rs256_issuer: TokenIssuer) -> Iterator[JWKSServer]:
    """A started :class:`JWKSServer` serving the session's RS256 key on loopback."""
    with JWKSServer(hardenkit_rs256_issuer) as server:
        yield server


@pytest.fixture
def hardenkit_reset() -> Iterator[Callable[..., None]]:
    """Closed breakers and empty retry budgets before and after the test.

    Yields :func:`hardenkit.testing.reset`: call it with your app's kit
    (``hardenkit_reset(app.state.hardenkit)``) to empty its rate-limit and replay stores.
    """
    reset()
    yield reset
    reset()


@pytest.fixture
def hardenkit_limits_disabled() -> Iterator[None]:
    """Every rate limit admits every call during the test."""
    with limits_disabled():
        yield


@pytest.fixture
def hardenkit_principal() -> Iterator[Principal]:
    """Every protected request is served as ``user-1`` of ``tenant-1`` during the test."""
    with override_principal() as principal:
        yield principal
