"""Warm start on Redis Cluster: freshly started workers admit exactly the limit at once.

Each run starts four uvicorn workers on a 3-master Cluster and sends the first burst as
soon as they serve. Slot discovery, connections and the script load happen at startup
(lifespan), not inside the first decisions' timeouts, so no worker falls back to memory.
"""

from __future__ import annotations

import asyncio
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
from tests.support.redis_server import RedisCluster
from tests.support.uvicorn_server import UvicornServer, serving

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

APP = "examples.reference_app.app:create_app"
WORKERS = 4
LIMIT = 50
REQUESTS = 200
RUNS = 5


async def test_four_fresh_workers_on_a_cluster_admit_exactly_the_limit_in_their_first_burst(
    tmp_path: Path, redis_cluster: RedisCluster
) -> None:
    env = {
        "HARDENKIT_REDIS_URL": redis_cluster.url,
        "HARDENKIT_REDIS_CLUSTER": "true",
        "HARDENKIT_RATE_LIMIT_DEFAULT": "1000000/day",
        "HARDENKIT_RATE_LIMIT_TENANT": f"{LIMIT}/day",
        **BEHIND_PROXY_ENV,  # the load client's request ids are kept, and checked
    }
    admitted_per_run: list[int] = []
    for run in range(RUNS):
        logs = [tmp_path / f"run{run}-worker{index}.log" for index in range(WORKERS)]
        servers = [UvicornServer(APP, factory=True, env=env, log_path=log) for log in logs]
        with serving(servers):  # fresh workers, started together: no request before the burst
            plan = [
                Planned(
                    "first",
                    "/api/me",
                    bearer(hs256_token(f"cluster-{run}")),
                    expected=frozenset({200, 429}),
                )
            ] * (REQUESTS // WORKERS)
            results = await asyncio.gather(
                *(run_plan(server.url, plan, concurrency=16, time_limit=60) for server in servers)
            )
        every = [result for own in results for result in own]
        assert problems_of(every) == [], store_log_lines(logs)
        admitted_per_run.append(statuses(every)[200])
        for log in logs:
            assert "redis_unavailable_using_fallback" not in log.read_text()
    assert admitted_per_run == [LIMIT] * RUNS
