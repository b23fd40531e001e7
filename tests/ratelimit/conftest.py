"""Fixtures of the rate-limit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis import Redis as SyncRedis


@pytest.fixture(scope="module")
def sync_redis(redis_url: str) -> Iterator[SyncRedis]:
    """A synchronous client on the shared test Redis, for driving the scripts directly."""
    client = SyncRedis.from_url(redis_url)
    try:
        yield client
    finally:
        client.close()
