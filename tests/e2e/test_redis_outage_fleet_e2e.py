"""An outage never multiplies a limit: four workers through a Redis kill and a Redis stall.

Four uvicorn workers share one private Redis and a tenant limit of ``LIMIT/day``. Traffic
is spread over them as a load balancer would. While Redis is unavailable each worker's
fallback admits its share of what Redis last told it was left (``1 / 4``: the heartbeats
count four live instances), rounded down, and what it admitted is charged back to Redis
before Redis decides again: over the whole run at most ``LIMIT + 4`` are admitted when
each worker's last view was current, and a client exhausted before the outage stays
refused during and after it.

A worker's view is what Redis answered its own last decision; the other workers admitted
more since (a few, in a burst), so the views add up to more than was left. The stall test
reads each worker's view from its responses (``RateLimit: r=``) and holds the fleet to
exactly what the shares of those views allow, with nothing added on recovery.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager, contextmanager
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from tests.e2e._traffic import (
    BEHIND_PROXY_ENV,
    Planned,
    Result,
    bearer,
    client_for,
    hs256_token,
    problems_of,
    send,
    statuses,
)
from tests.support.redis_server import RedisServer
from tests.support.uvicorn_server import UvicornServer

pytestmark = pytest.mark.e2e

APP = "examples.reference_app.app:create_app"
WORKERS = 4
LIMIT = 100


def _env(redis_url: str) -> dict[str, str]:
    return {
        "HARDENKIT_REDIS_URL": redis_url,
        "HARDENKIT_REDIS_RETRY_INTERVAL": "0.5",
        "HARDENKIT_RATE_LIMIT_DEFAULT": "1000000/day",
        "HARDENKIT_RATE_LIMIT_TENANT": f"{LIMIT}/day",  # no refill within a test
        **BEHIND_PROXY_ENV,  # the load client's request ids are kept, and checked
    }


@contextmanager
def fleet(redis_url: str, logs: list[Path]) -> Iterator[list[UvicornServer]]:
    with ExitStack() as stack:
        yield [
            stack.enter_context(UvicornServer(APP, factory=True, env=_env(redis_url), log_path=log))
            for log in logs
        ]


CONCURRENCY = 5  # per worker: every count below is a multiple of 4 x 5


@asynccontextmanager
async def clients(servers: list[UvicornServer]) -> AsyncIterator[list[httpx.AsyncClient]]:
    """One client per worker, made up front: making one costs far more than a request."""
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(client_for(server.url, CONCURRENCY))
            for server in servers
        ]


async def spread(http: list[httpx.AsyncClient], tenant: str, count: int) -> list[Result]:
    """``count`` requests of ``tenant``, a quarter to each worker, concurrently."""
    return [result for results in await by_worker(http, tenant, count) for result in results]


async def by_worker(http: list[httpx.AsyncClient], tenant: str, count: int) -> list[list[Result]]:
    """:func:`spread`, with the results of each worker apart."""
    planned = Planned(
        tenant, "/api/me", bearer(hs256_token(tenant)), expected=frozenset({200, 429})
    )
    share, rest = divmod(count, len(http) * CONCURRENCY)
    assert rest == 0
    results: list[list[Result]] = [[] for _ in http]

    async def caller(index: int) -> None:
        results[index].extend([await send(http[index], planned) for _ in range(share)])

    async with asyncio.timeout(60):
        await asyncio.gather(
            *(caller(index) for index in range(len(http)) for _ in range(CONCURRENCY))
        )
    return results


def last_view(results: list[Result]) -> int:
    """What Redis said was left of the tenant rule after the last of these decisions.

    ``RateLimit`` lists every rule that applied (``"ip";r=…;t=…, "tenant";r=…;t=…``);
    the least ``r`` of the tenant's item is the view after the last decision.
    """
    views = []
    for result in results:
        for item in (result.ratelimit or "").split(","):
            name, _, parameters = item.strip().partition(";")
            if name == '"tenant"':
                views.append(int(dict(p.split("=", 1) for p in parameters.split(";"))["r"]))
    assert views, "no response carried the tenant rule's RateLimit item"
    return min(views)


async def readiness(servers: list[UvicornServer]) -> list[dict]:
    async with httpx.AsyncClient(timeout=5) as client:
        return [(await client.get(f"{server.url}/readyz")).json() for server in servers]


async def wait_ready(
    servers: list[UvicornServer], status: str, *, instances: int | None = None, within: float
) -> list[dict]:
    deadline = time.monotonic() + within
    bodies: list[dict] = []
    while time.monotonic() < deadline:
        bodies = await readiness(servers)
        if all(
            body["status"] == status
            and (instances is None or body["checks"]["redis"]["instances"] == instances)
            for body in bodies
        ):
            return bodies
        await asyncio.sleep(0.1)
    raise AssertionError(f"/readyz never became {status!r} everywhere within {within} s: {bodies}")


def admitted(results: list[Result]) -> int:
    return statuses(results)[200]


def no_server_errors(results: list[Result]) -> None:
    assert problems_of(results) == []
    assert max(result.status for result in results) < 500


async def test_redis_killed_under_load_for_seconds_admits_at_most_the_shares_of_the_views(
    tmp_path: Path, redis_server_factory: Callable[[], RedisServer]
) -> None:
    redis = redis_server_factory()
    logs = [tmp_path / f"worker-{index}.log" for index in range(WORKERS)]
    with fleet(redis.url, logs) as servers:
        async with asyncio.timeout(150), clients(servers) as http:
            await wait_ready(servers, "healthy", instances=WORKERS, within=10)
            exhausted_before = await spread(http, "exhausted", 160)
            views = await by_worker(http, "main", 40)
            before = [result for results in views for result in results]

            redis.stop()  # no save: it comes back empty, as a Redis without persistence
            degraded = await wait_ready(servers, "degraded", within=10)
            during = await spread(http, "main", 200)
            exhausted_during = await spread(http, "exhausted", 40)
            await asyncio.sleep(2.0)  # several seconds down in all
            during += await spread(http, "main", 40)

            redis.start()
            healthy = await wait_ready(servers, "healthy", within=10)
            after = await spread(http, "main", 200)
            exhausted_after = await spread(http, "exhausted", 40)

    every = exhausted_before + before + during + exhausted_during + after + exhausted_after
    no_server_errors(every)
    assert admitted(exhausted_before) == LIMIT
    assert admitted(exhausted_during) == 0
    assert admitted(exhausted_after) == 0
    assert admitted(before) == 40
    assert admitted(during) > 0  # served from the fallback, each its share
    # Each worker's fallback admits at most its quarter of what it last saw left (with
    # every view current, at most the LIMIT - 40 left in all). This Redis comes back
    # empty and relearns the key from the charges, each raising it to its own worker's
    # view: taken in some order, the key can end up as low as the stalest view plus
    # what the fallbacks admitted, so Redis can admit the difference between the
    # freshest and the stalest view once more (docs/ratelimit.md, "the bound").
    left = [last_view(results) for results in views]
    shares = sum(view // WORKERS for view in left)
    restarted_empty = max(left) - min(left)
    total = admitted(before) + admitted(during) + admitted(after)
    assert total <= max(LIMIT, admitted(before) + shares) + restarted_empty
    assert {body["checks"]["redis"]["backend"] for body in degraded} == {"memory"}
    assert {body["checks"]["redis"]["instances"] for body in degraded} == {WORKERS}
    assert {body["checks"]["redis"]["backend"] for body in healthy} == {"redis"}


def _log_times(log: Path, event: str) -> list[float]:
    times = []
    for line in log.read_text().splitlines():
        if event in line:
            stamp = line.split(" ", 1)[0].rstrip("Z")
            times.append(datetime.fromisoformat(stamp + "+00:00").timestamp())
    return times


async def test_redis_stalled_for_one_and_a_half_seconds_bounds_admissions_and_recovers_fast(
    tmp_path: Path, redis_server_factory: Callable[[], RedisServer]
) -> None:
    redis = redis_server_factory()
    logs = [tmp_path / f"worker-{index}.log" for index in range(WORKERS)]
    admin = Redis.from_url(redis.url, socket_timeout=10)
    try:
        with fleet(redis.url, logs) as servers:
            async with asyncio.timeout(120), clients(servers) as http:
                await wait_ready(servers, "healthy", instances=WORKERS, within=10)
                views = await by_worker(http, "main", 40)
                before = [result for results in views for result in results]
                # Every client's commands wait 1.5 s (DEBUG SLEEP is not enabled here).
                await admin.execute_command("CLIENT", "PAUSE", "1500", "ALL")
                stall_ended = time.time() + 1.5
                during = await spread(http, "main", 200)
                await asyncio.sleep(max(0.0, stall_ended - time.time()))
                after = await spread(http, "main", 200)
                await asyncio.sleep(1.0)
                late = await spread(http, "main", 40)
    finally:
        await admin.aclose()

    every = before + during + after + late
    no_server_errors(every)
    assert admitted(before) == 40
    # Each worker's fallback admits at most its quarter of what it last saw left, rounded
    # down (with every view current, at most the LIMIT - 40 left in all), and all of it is
    # charged before Redis decides again, so nothing is admitted on top, whichever worker
    # is back on Redis first. ("during" ends on Redis: the stall is over before it is.)
    shares = sum(last_view(results) // WORKERS for results in views)
    assert admitted(every) <= max(LIMIT, admitted(before) + shares)
    assert admitted(late) == 0
    switched = [log for log in logs if _log_times(log, "redis_unavailable_using_fallback")]
    assert switched, "the stall was long enough for the workers to switch"
    for log in switched:
        recovered = _log_times(log, "redis_recovered")
        assert recovered, f"{log.name} never went back to Redis"
        assert max(recovered) - stall_ended <= 1.0
