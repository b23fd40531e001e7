"""Redis stopped mid-run and started again: no 5xx, no slow request, back on Redis by itself."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from hardenkit.ratelimit import RateLimitMiddleware, RateLimitRule, RedisStore
from hardenkit.settings import HardenSettings
from hardenkit.stores import RedisGuard, create_redis
from tests.support.heap import runner_heap_frozen
from tests.support.redis_server import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.slow]

SOCKET_TIMEOUT = 0.05
MARGIN = 0.2  # scheduling on a shared 2-core machine, not Redis: requests run in-process
RETRY_INTERVAL = 0.5
CONCURRENCY = 4


async def ok(request: Request) -> Response:
    return PlainTextResponse("ok")


@dataclass
class Sample:
    finished_at: float
    seconds: float
    status: int
    on_redis: bool


async def test_redis_outage_mid_run_gives_no_5xx_no_slow_request_and_recovers(
    redis_server_factory: Callable[[], RedisServer],
) -> None:
    server = redis_server_factory()
    # The client install() builds: its socket timeouts are a backstop past the guard's
    # (a late event loop is not a slow Redis), and a connection error is retried once, at
    # once. A bare client with 50 ms socket timeouts failed the recovery probes whenever
    # the loaded loop read a reply late, and the run stayed on the fallback for seconds.
    client = create_redis(
        HardenSettings(redis_url=server.url, redis_socket_timeout=SOCKET_TIMEOUT)  # type: ignore[arg-type]
    )
    assert isinstance(client, Redis)
    guard = RedisGuard("ratelimit", timeout=SOCKET_TIMEOUT, retry_interval=RETRY_INTERVAL)
    store = RedisStore(client, guard=guard)
    app = RateLimitMiddleware(
        Starlette(routes=[Route("/", ok)]),
        rules=[
            RateLimitRule("ip", "300/s"),
            RateLimitRule("tenant-wide", "100000/s", key=lambda s: "all"),
        ],
        store=store,
    )
    samples: list[Sample] = []
    transport = httpx.ASGITransport(app=app, client=("198.51.100.7", 1234))

    async def run(count: int, *, until: Callable[[], bool] = lambda: True) -> None:
        async def caller(http: httpx.AsyncClient, share: int) -> None:
            for _ in range(share):
                started = time.perf_counter()
                response = await http.get("/")
                ended = time.perf_counter()
                samples.append(
                    Sample(ended, ended - started, response.status_code, not guard.using_fallback)
                )
                # A request served by the memory fallback through ASGITransport never
                # suspends, so without this the callers would run back to back and the
                # loop would poll sockets only between their batches (150 ms apart under
                # coverage): the guard's probe would crawl, as on no real server, where
                # each request arrives through the socket and the loop polls between them.
                await asyncio.sleep(0)

        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            deadline = time.perf_counter() + 15  # bounded in time as well as in count
            done = 0
            while (done < count or not until()) and time.perf_counter() < deadline:
                await asyncio.gather(*(caller(http, 25) for _ in range(CONCURRENCY)))
                done += 25 * CONCURRENCY

    try:
        await client.ping()  # connect outside the measured run
        # What is measured is what a request waits for while Redis is away; a full
        # collection of pytest's own heap (0.1-0.4 s under load) is not that.
        with runner_heap_frozen():
            # A 50 ms hiccup of a loaded machine may switch to the fallback here too; the run
            # goes on until decisions are on Redis before Redis is stopped.
            await run(800, until=lambda: not guard.using_fallback)
            assert not guard.using_fallback

            activations_before_outage = guard.fallback_activations
            server.stop()
            stopped_at = time.perf_counter()
            # Long enough for several probes to fail while it is down.
            await run(1000, until=lambda: time.perf_counter() - stopped_at > 3 * RETRY_INTERVAL)
            restarted_at = time.perf_counter()
            server.start()
            await run(1000, until=lambda: not guard.using_fallback)
            await run(200)
    finally:
        await client.aclose()

    assert len(samples) >= 3000
    assert all(sample.status < 500 for sample in samples)
    assert {sample.status for sample in samples} <= {200, 429}
    while_down = [
        s
        for s in samples
        if stopped_at <= s.finished_at - s.seconds and s.finished_at <= restarted_at
    ]
    assert len(while_down) >= 1000
    assert guard.fallback_activations > activations_before_outage
    assert not any(sample.on_redis for sample in while_down)
    assert max(sample.seconds for sample in while_down) <= SOCKET_TIMEOUT + MARGIN
    back = next(s.finished_at for s in samples if s.finished_at > restarted_at and s.on_redis)
    assert back - restarted_at <= RETRY_INTERVAL + 2.0
    assert samples[-1].on_redis
