"""Slow is not down: a busy host never hands a shared limit to per-process memory.

Four uvicorn workers share one private Redis with the default 50 ms Redis timeout, while a
process spins on one of the machine's cores during every burst. Replies that a busy event
loop notices late are not Redis failures, so every run admits exactly the limit.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
            admitted_per_run.append(statuses(every)[200])
            assert statuses(every) == {200: LIMIT, 429: REQUESTS - LIMIT}, (
                admitted_per_run,
                store_log_lines(logs),
            )

    assert admitted_per_run == [LIMIT] * RUNS
    for log in logs:
        assert "redis_unavailable_using_fallback" not in log.read_text()
