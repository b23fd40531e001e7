"""Slow is not down: a busy host never hands a shared limit to per-process memory.

Four uvicorn workers share one private Redis with the default 50 ms Redis timeout, while a
process spins on one of the machine's cores during every burst. Replies that a busy event
loop notices late are not Redis failures, so every run admits exactly the limit: never
more in the burst, and the units a burst leaves in another worker's reservation
(docs/ratelimit.md, "What it costs": refused with the reservation's ``Retry-After``, 10
to 11 s, not the refill's 36 s) are admitted once it has passed, no fewer.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.e2e._traffic import (
    BEHIND_PROXY_ENV,
    Planned,
    Result,
    bearer,
    hs256_token,
    problems_of,
    run_plan,
    statuses,
    store_log_lines,
)
from tests.support.redis_server import RedisServer
from tests.support.uvicorn_server import UvicornServer, serving

pytestmark = pytest.mark.e2e

APP = "examples.reference_app.app:create_app"
WORKERS = 4
LIMIT = 100
REQUESTS = 200
RUNS = 10
BUSY_SECONDS_AT_MOST = 30.0
RESERVATION_SECONDS = 10  # HARDENKIT_RATE_LIMIT_RESERVATION_SECONDS, the default

_SPIN = (
    "import sys, time\n"
    "end = time.monotonic() + float(sys.argv[1])\n"
    "while time.monotonic() < end: pass\n"
)


@contextmanager
def one_core_saturated() -> Iterator[None]:
    """A process spinning on one core (bounded in time even if never stopped)."""
    spinner = subprocess.Popen([sys.executable, "-c", _SPIN, str(BUSY_SECONDS_AT_MOST)])
    try:
        yield
    finally:
        spinner.kill()
        spinner.wait(timeout=10)


def worker_env(redis_url: str) -> dict[str, str]:
    # No HARDENKIT_REDIS_SOCKET_TIMEOUT: the default 50 ms is what is under test.
    return {
        "HARDENKIT_REDIS_URL": redis_url,
        "HARDENKIT_RATE_LIMIT_DEFAULT": "1000000/day",
        "HARDENKIT_RATE_LIMIT_TENANT": f"{LIMIT}/hour",
        **BEHIND_PROXY_ENV,  # the load client's request ids are kept, and checked
    }


@contextmanager
def workers(env: dict[str, str], logs: list[Path]) -> Iterator[list[UvicornServer]]:
    servers = [UvicornServer(APP, factory=True, env=env, log_path=log) for log in logs]
    with serving(servers):
        yield servers


async def admitted_once_reservations_expired(
    url: str, tenant: str, burst: list[Result], stranded: int
) -> int:
    """Admissions of the units ``burst`` left in reservations, once they expired.

    Each such refusal says so: a ``Retry-After`` of the reservation (10 to 11 s), not of
    the refill (36 s a unit at ``100/hour``). Then, one at a time to one worker, exactly
    ``stranded`` more are admitted and the next is refused: no unit was lost or counted
    twice.
    """
    waits = sorted(int(result.retry_after or 0) for result in burst if result.status == 429)
    reserved = [wait for wait in waits if wait <= RESERVATION_SECONDS + 1]
    assert reserved, f"{stranded} units short, and every refusal waits for the refill: {waits}"
    await asyncio.sleep(max(reserved) + 0.5)
    plan = [
        Planned("top-up", "/api/me", bearer(hs256_token(tenant)), expected=frozenset({200, 429}))
    ] * (stranded + 1)
    after = await run_plan(url, plan, concurrency=1, time_limit=30)
    assert problems_of(after) == []
    assert [result.status for result in after] == [200] * stranded + [429]
    return stranded


async def test_four_workers_on_a_busy_host_admit_exactly_the_limit_in_ten_runs_in_a_row(
    tmp_path: Path, redis_server_factory: Callable[[], RedisServer]
) -> None:
    redis = redis_server_factory()
    logs = [tmp_path / f"worker-{index}.log" for index in range(WORKERS)]
    admitted_per_run: list[int] = []
    with workers(worker_env(redis.url), logs) as servers:
        for run in range(RUNS):
            plan = [
                Planned(
                    "burst",
                    "/api/me",
                    bearer(hs256_token(f"busy-{run}")),
                    expected=frozenset({200, 429}),
                )
            ] * (REQUESTS // WORKERS)
            with one_core_saturated():
                results = await asyncio.gather(
                    *(
                        run_plan(server.url, plan, concurrency=16, time_limit=60)
                        for server in servers
                    )
                )
            every = [result for own in results for result in own]
            assert problems_of(every) == [], store_log_lines(logs)
            admitted = statuses(every)[200]
            assert admitted <= LIMIT, (admitted_per_run, store_log_lines(logs))
            if admitted < LIMIT:
                admitted += await admitted_once_reservations_expired(
                    servers[run % WORKERS].url, f"busy-{run}", every, LIMIT - admitted
                )
            admitted_per_run.append(admitted)
            assert admitted == LIMIT, (admitted_per_run, store_log_lines(logs))

    assert admitted_per_run == [LIMIT] * RUNS
    for log in logs:
        assert "redis_unavailable_using_fallback" not in log.read_text()


async def every_worker_counts_the_others(servers: list[UvicornServer]) -> None:
    """Wait (20 s at most) until each worker's readiness counts all of them: only then
    do they reserve units for themselves."""
    deadline = asyncio.get_running_loop().time() + 20
    async with httpx.AsyncClient() as client:
        for server in servers:
            while True:
                redis = (await client.get(f"{server.url}/readyz")).json()["checks"]["redis"]
                if redis["instances"] == WORKERS and redis["counted_by_others"]:
                    break
                assert asyncio.get_running_loop().time() < deadline, redis
                await asyncio.sleep(0.2)


async def test_units_a_quiet_worker_left_reserved_are_admitted_once_they_expire(
    tmp_path: Path, redis_server_factory: Callable[[], RedisServer]
) -> None:
    """One worker serves 8 requests, then no more, while the others serve 64 each: its
    reservation holds units it never uses, so the burst admits fewer than the limit, and
    the rest exactly once the reservation expired."""
    redis = redis_server_factory()
    logs = [tmp_path / f"worker-{index}.log" for index in range(WORKERS)]
    plan = Planned(
        "burst", "/api/me", bearer(hs256_token("uneven")), expected=frozenset({200, 429})
    )
    with workers(worker_env(redis.url), logs) as servers:
        await every_worker_counts_the_others(servers)
        quiet = await run_plan(servers[0].url, [plan] * 8, concurrency=1, time_limit=30)
        results = await asyncio.gather(
            *(
                run_plan(server.url, [plan] * 64, concurrency=16, time_limit=60)
                for server in servers[1:]
            )
        )
        every = quiet + [result for own in results for result in own]
        assert problems_of(every) == [], store_log_lines(logs)
        admitted = statuses(every)[200]
        assert admitted < LIMIT, "no unit stranded: the split no longer shows the cost"
        admitted += await admitted_once_reservations_expired(
            servers[1].url, "uneven", every, LIMIT - admitted
        )
    assert admitted == LIMIT
