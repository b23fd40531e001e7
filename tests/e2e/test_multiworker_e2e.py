"""Two uvicorn processes behind one Redis enforce one tenant limit exactly, together."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e._traffic import (
    BEHIND_PROXY_ENV,
    Planned,
    bearer,
    hs256_token,
    problems_of,
    run_plan,
    statuses,
)
from tests.support.redis_server import RedisServer
from tests.support.uvicorn_server import UvicornServer

pytestmark = pytest.mark.e2e

APP = "examples.reference_app.app:create_app"
LIMIT = 100
PER_PROCESS = 200


async def test_two_processes_on_one_redis_admit_exactly_the_shared_limit(
    tmp_path: Path, redis_server_factory: Callable[[], RedisServer]
) -> None:
    redis = redis_server_factory()
    env = {
        "HARDENKIT_REDIS_URL": redis.url,
        # Only a Redis reply slower than this hands decisions to the per-process fallback
        # (which would rightly break the shared count); the log check below proves none did.
        "HARDENKIT_REDIS_SOCKET_TIMEOUT": "1.0",
        "HARDENKIT_RATE_LIMIT_DEFAULT": "1000000/day",
        "HARDENKIT_RATE_LIMIT_TENANT": f"{LIMIT}/hour",
        **BEHIND_PROXY_ENV,
    }
    token = hs256_token("shared-tenant")
    plan = [
        Planned("hammer", "/api/me", bearer(token), expected=frozenset({200, 429}))
    ] * PER_PROCESS
    logs = [tmp_path / "worker-a.log", tmp_path / "worker-b.log"]
    with (
        UvicornServer(APP, factory=True, env=env, log_path=logs[0]) as first,
        UvicornServer(APP, factory=True, env=env, log_path=logs[1]) as second,
    ):
        results = await asyncio.gather(
            run_plan(first.url, plan, concurrency=25, time_limit=60),
            run_plan(second.url, plan, concurrency=25, time_limit=60),
        )

    every = results[0] + results[1]
    assert problems_of(every) == []
    assert statuses(every) == {200: LIMIT, 429: 2 * PER_PROCESS - LIMIT}
    # Each process refused at least what it could not have admitted on its own count.
    for own in results:
        assert statuses(own)[429] >= PER_PROCESS - LIMIT
    assert {r.code for r in every if r.status == 429} == {"RATE_LIMITED"}
    for log in logs:
        assert "redis_unavailable_using_fallback" not in log.read_text()
