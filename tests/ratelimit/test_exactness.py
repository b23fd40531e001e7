"""Exactness across processes: 4 workers × 32 concurrent callers, one key, real Redis."""

from __future__ import annotations

import multiprocessing
import uuid
from typing import Any

import pytest

from hardenkit.ratelimit import Rate
from tests.ratelimit import _exactness_worker
from tests.support.redis_server import RedisCluster

pytestmark = [pytest.mark.redis, pytest.mark.slow]

WORKERS = 4
ROUNDS_OF_100_PER_HOUR = 3
SHORT_RATE = "20/s"
SHORT_RUN_SECONDS = 1.5


def run_workers(url: str, *, cluster: bool) -> list[list[dict[str, Any]]]:
    """Run every scenario in 4 spawned processes at once; return the results per scenario."""
    run_id = uuid.uuid4().hex[:10]
    scenarios: list[dict[str, Any]] = [
        # 4 × 32 callers × 3 calls = 384 attempts at a limit of 100.
        {"rate": "100/hour", "key": f"{run_id}-hour-{index}", "calls_per_caller": 3}
        for index in range(ROUNDS_OF_100_PER_HOUR)
    ]
    scenarios.append({"rate": SHORT_RATE, "key": f"{run_id}-short", "run_for": SHORT_RUN_SECONDS})
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(WORKERS)
    results = context.Queue()
    processes = [
        context.Process(
            target=_exactness_worker.run, args=(url, cluster, scenarios, barrier, results)
        )
        for _ in range(WORKERS)
    ]
    for process in processes:
        process.start()
    try:
        outcomes = [results.get(timeout=120) for _ in range(WORKERS * len(scenarios))]
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    assert all(process.exitcode == 0 for process in processes)
    by_scenario: list[list[dict[str, Any]]] = [[] for _ in scenarios]
    for outcome in outcomes:
        by_scenario[outcome["scenario"]].append(outcome)
    assert all(len(outcomes) == WORKERS for outcomes in by_scenario)
    return by_scenario


def check(by_scenario: list[list[dict[str, Any]]]) -> None:
    for outcomes in by_scenario:
        assert all(outcome["fallbacks"] == 0 for outcome in outcomes)
        assert all(outcome["backends"] == ["redis"] for outcome in outcomes)
    for outcomes in by_scenario[:ROUNDS_OF_100_PER_HOUR]:
        assert sum(outcome["allowed"] for outcome in outcomes) == 100
    short = by_scenario[-1]
    rate = Rate.parse(SHORT_RATE)
    allowed = sum(outcome["allowed"] for outcome in short)
    elapsed = max(o["last_end"] for o in short) - min(o["first_start"] for o in short)
    assert allowed <= rate.burst + elapsed * rate.count / rate.period_seconds
    assert allowed > rate.burst  # the bucket refilled while the callers kept asking


def test_exactly_the_limit_is_admitted_across_processes_on_standalone_redis(
    redis_url: str,
) -> None:
    check(run_workers(redis_url, cluster=False))


@pytest.mark.cluster
def test_exactly_the_limit_is_admitted_across_processes_on_redis_cluster(
    redis_cluster: RedisCluster,
) -> None:
    check(run_workers(redis_cluster.url, cluster=True))
