"""Fixtures shared by every test: real Redis servers, settings without the environment."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from redis.asyncio import Redis

from hardenkit.resilience import testing as resilience_testing
from tests.support.hang_guard import HangGuard
from tests.support.redis_server import RedisCluster, RedisServer

# The suite must not read the developer's own HARDENKIT_* settings.
for _name in list(os.environ):
    if _name.upper().startswith("HARDENKIT_") and not _name.upper().startswith("HARDENKIT_TEST_"):
        del os.environ[_name]
# ...nor a .env file it may keep in the working directory (tests that read one name it).
os.environ["HARDENKIT_ENV_FILE"] = ""

# Property tests check behaviour, not speed (make bench does): on a loaded 2-core CI
# machine one example can take longer than hypothesis's default 200 ms deadline.
settings.register_profile("hardenkit", deadline=None)
settings.load_profile("hardenkit")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under ``pytest -n`` (``make test``) the end-to-end tests run one at a time.

    They start uvicorn fleets and Redis servers and hold bounds on a busy host; one of
    them at a time next to a worker running the unit tests is the load they are written
    for, two fleets at once on two cores is not a shape users run.
    """
    for item in items:
        if item.get_closest_marker("e2e") is not None:
            item.add_marker(pytest.mark.xdist_group("e2e"))


# Longer than any test takes on a busy 2-core machine (the slowest e2e test: about a
# minute); a test still running then is stuck, and ends the run with its stacks.
HANG_SECONDS = 300.0


@pytest.fixture(autouse=True)
def _hang_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    """End the run, with every task's and thread's stack, if this test hangs."""
    guard = HangGuard(request.node.nodeid, HANG_SECONDS)
    yield
    guard.stop()


@pytest.fixture(autouse=True)
def _fresh_resilient_overrides() -> Iterator[None]:
    """``resilient()`` keeps the overrides it parsed (or install set): none leak between tests."""
    resilience_testing.reset_overrides()
    yield
    resilience_testing.reset_overrides()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real Redis: ``HARDENKIT_TEST_REDIS_URL``, or a private server started here.

    Tests share it, so they must use :func:`key_prefix` and never flush it.
    """
    configured = os.environ.get("HARDENKIT_TEST_REDIS_URL")
    if configured:
        yield configured
        return
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def key_prefix() -> str:
    """A key prefix unique to this test, so tests sharing a Redis never collide."""
    return f"hktest:{uuid.uuid4().hex[:12]}:"


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    """An asyncio client on the shared test Redis."""
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def redis_server_factory(tmp_path: Path) -> Iterator[Callable[[], RedisServer]]:
    """Start private Redis servers that a fault test may stop and start at will."""
    servers: list[RedisServer] = []

    def start() -> RedisServer:
        server = RedisServer(tmp_path / f"redis{len(servers)}")
        server.start()
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A private 3-master Redis Cluster, started once for the session."""
    cluster = RedisCluster(tmp_path_factory.mktemp("cluster"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
