"""Redis stops and starts under load: no 5xx, readiness follows it, limits hold throughout.

What "enforced" means here, phase by phase, for a tenant limit of ``N/day`` (burst ``N``,
so exactly ``N`` admitted per key for the length of this test):

1. Redis up: decisions run in Redis; a hammered tenant gets exactly ``N``.
2. Redis down: decisions run in this process's memory fallback, seeded with what Redis
   last said for each key: the tenant exhausted in phase 1 stays refused. A tenant new
   during the outage gets this instance's share of ``N`` (all of it: one live instance).
3. Redis back (restarted with its data, as a persistent Redis or a replica would be):
   what the fallback admitted is charged to Redis before Redis decides again, so the
   tenant served during the outage is refused too; a tenant new to Redis gets exactly
   ``N``.

Background traffic (authorised on fresh tenants, unauthorised, tenant-mismatched) runs
across all three phases and both transitions: every response is checked (status exactly
as planned, request id, security headers, no 5xx).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from redis import Redis

from tests.e2e._traffic import (
    BEHIND_PROXY_ENV,
    Planned,
    Result,
    bearer,
    client_for,
    hs256_token,
    problems_of,
    run_plan,
    send,
    statuses,
)
from tests.support.redis_server import RedisServer
from tests.support.uvicorn_server import UvicornServer

pytestmark = pytest.mark.e2e

APP = "examples.reference_app.app:create_app"
LIMIT = 100
HAMMER = 300


def _env(redis_url: str) -> dict[str, str]:
    return {
        "HARDENKIT_REDIS_URL": redis_url,
        # A reply slower than this moves decisions to memory by design; 1 s keeps a busy
        # 2-core machine from doing so while Redis is up, so phase counts stay exact.
        "HARDENKIT_REDIS_SOCKET_TIMEOUT": "1.0",
        "HARDENKIT_REDIS_RETRY_INTERVAL": "0.5",
        "HARDENKIT_RATE_LIMIT_DEFAULT": "1000000/day",
        "HARDENKIT_RATE_LIMIT_TENANT": f"{LIMIT}/day",
        **BEHIND_PROXY_ENV,
    }


def _hammer(tenant: str) -> list[Planned]:
    token = hs256_token(tenant)
    return [
        Planned(tenant, "/api/me", bearer(token), expected=frozenset({200, 429}))
        for _ in range(HAMMER)
    ]


def _background() -> Callable[[int], Planned]:
    mismatched = bearer(hs256_token("acme"))

    def planned(index: int) -> Planned:
        match index % 3:
            case 0:  # one request per tenant: never near its limit, in any phase
                return Planned(
                    "authorised",
                    "/api/me",
                    bearer(hs256_token(f"bg-{index}")),
                    expected=frozenset({200}),
                )
            case 1:
                return Planned("unauthorised", "/api/me", expected=frozenset({401}))
            case _:
                return Planned(
                    "mismatch", "/api/tenants/globex/items", mismatched, expected=frozenset({403})
                )

    return planned


async def _background_load(
    url: str, stop: asyncio.Event, results: list[Result], *, max_requests: int = 6000
) -> None:
    plan = _background()
    counter = itertools.count()
    async with client_for(url, 10) as client:

        async def worker() -> None:
            while not stop.is_set() and (index := next(counter)) < max_requests:
                results.append(await send(client, plan(index)))

        await asyncio.gather(*(worker() for _ in range(10)))


def _save(url: str) -> None:
    with Redis.from_url(url) as admin:
        admin.save()  # the restarted server loads this, as a persistent one would


async def _wait_ready(
    client: httpx.AsyncClient, status: str, *, within: float, counted: bool = False
) -> dict:
    """Until ``/readyz`` says ``status`` (and, with ``counted``, that a heartbeat has
    shown this instance its count: before that its fallback refuses in an outage)."""
    deadline = time.monotonic() + within
    body: dict = {}
    while time.monotonic() < deadline:
        body = (await client.get("/readyz")).json()
        if body["status"] == status and (
            not counted or body["checks"]["redis"]["counted_by_others"]
        ):
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"/readyz never became {status!r} within {within} s: {body}")


async def test_redis_outage_under_load_keeps_serving_and_enforcing_limits(
    tmp_path: Path, redis_server_factory: Callable[[], RedisServer]
) -> None:
    redis = redis_server_factory()
    with UvicornServer(
        APP, factory=True, env=_env(redis.url), log_path=tmp_path / "uvicorn.log"
    ) as server:
        stop = asyncio.Event()
        background: list[Result] = []
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as probe, asyncio.timeout(120):
            ready = await _wait_ready(probe, "healthy", within=10, counted=True)
            assert ready["checks"]["redis"]["backend"] == "redis"
            load = asyncio.create_task(_background_load(server.url, stop, background))
            try:
                before = await run_plan(server.url, _hammer("hot"), concurrency=40)

                # In threads: the background load keeps its event loop (and its connections'
                # keep-alive) while the server stops and starts, as a client elsewhere would.
                await asyncio.to_thread(_save, redis.url)
                await asyncio.to_thread(redis.stop)
                served_at_stop = len(background)
                degraded = await _wait_ready(probe, "degraded", within=5)
                during = await run_plan(server.url, _hammer("hot"), concurrency=40)
                during_new = await run_plan(server.url, _hammer("outage"), concurrency=40)
                still_degraded = (await probe.get("/readyz")).json()

                await asyncio.to_thread(redis.start)
                served_at_start = len(background)
                healthy = await _wait_ready(probe, "healthy", within=10)
                after_hot = await run_plan(server.url, _hammer("hot"), concurrency=40)
                after_outage = await run_plan(server.url, _hammer("outage"), concurrency=40)
                after_fresh = await run_plan(server.url, _hammer("fresh"), concurrency=40)
            finally:
                served_at_end = len(background)
                stop.set()
                await load

    hammered = before + during + during_new + after_hot + after_outage + after_fresh
    assert problems_of(hammered) == []
    assert max(r.status for r in hammered + background) < 500
    assert statuses(before) == {200: LIMIT, 429: HAMMER - LIMIT}
    assert degraded["checks"]["redis"] == {
        "status": "degraded",
        "backend": "memory",
        "store": "redis",
        "instances": 1,
        "instances_for_fallback_share": 1,
        "counted_by_others": True,  # shown by a heartbeat before Redis went away
    }
    assert still_degraded["status"] == "degraded"
    assert statuses(during) == {429: HAMMER}  # exhausted before the outage: still
    assert statuses(during_new) == {200: LIMIT, 429: HAMMER - LIMIT}
    assert healthy["checks"]["redis"]["status"] == "healthy"
    assert statuses(after_hot) == {429: HAMMER}
    assert statuses(after_outage) == {429: HAMMER}  # what the fallback admitted, charged
    assert statuses(after_fresh) == {200: LIMIT, 429: HAMMER - LIMIT}

    # The background ran through both transitions, and every answer was the planned one.
    assert problems_of(background) == []
    assert 0 < served_at_stop < served_at_start < served_at_end
    counts = statuses(background)
    assert set(counts) == {200, 401, 403}
    assert sum(counts.values()) == len(background)

    log = (tmp_path / "uvicorn.log").read_text()
    assert log.count("redis_unavailable_using_fallback") == 1
    assert log.count("redis_recovered") == 1
