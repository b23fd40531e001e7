"""hardenkit's pytest plugin: fixtures for testing an application built on hardenkit.

pytest loads it by itself (the ``pytest11`` entry point ``hardenkit``), or with
``pytest -p hardenkit.testing.plugin`` when plugin autoloading is off. Every fixture name
starts with ``hardenkit_``; none is autouse, so a project that does not ask for one is
not changed by it.

One thing it does for the whole session: settings built in tests ignore the developer's
``./.env`` (``HARDENKIT_ENV_FILE`` is set to empty), so a local ``.env`` cannot change
what a test sees, or pass on one machine and fail in CI. A session that sets
``HARDENKIT_ENV_FILE`` itself (the environment, ``pytest-env``) keeps its value, and
``load_settings(env_file=...)`` still reads the file it is given.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from hardenkit.auth.principal import Principal
from hardenkit.settings import ENV_FILE_VARIABLE
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

_ENV_FILE_SET_BY_PLUGIN = pytest.StashKey[bool]()


def pytest_configure(config: pytest.Config) -> None:
    """Make settings built during the session ignore ``./.env`` unless the user chose one."""
    set_here = ENV_FILE_VARIABLE not in os.environ
    if set_here:
        os.environ[ENV_FILE_VARIABLE] = ""
    config.stash[_ENV_FILE_SET_BY_PLUGIN] = set_here


def pytest_unconfigure(config: pytest.Config) -> None:
    """Give the environment back as it was."""
    if config.stash.get(_ENV_FILE_SET_BY_PLUGIN, False):
        os.environ.pop(ENV_FILE_VARIABLE, None)


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
