"""Sentinel failover under load: two uvicorn workers keep serving, and shared state survives.

Two workers of the reference app reach Redis through a Sentinel group (1 master, 1
replica, 3 sentinels; ``HARDENKIT_REDIS_SENTINELS`` + ``HARDENKIT_REDIS_SENTINEL_MASTER``).
Background traffic runs on both while the master is killed (SIGKILL) and the replica is
promoted. What is written before the failover (and replicated) is what the promoted
replica decides with afterwards:

- rate limits: no 5xx at any time (a fresh tenant answered by a worker's fallback gets
  429: it has no reservation there); within a few seconds of the promotion both workers
  are back on Redis, a tenant that had used part of its limit gets exactly the rest, a
  new tenant exactly its limit;
- shared breakers: two failed calls recorded before the failover plus one after open the
  breaker (3 calls, 100 % failures; one call alone would not), and the other worker,
  whose upstream is up, is refused by that shared open state;
- replay: a webhook delivered before the failover is a duplicate after it, on the other
  worker; a new one is processed once.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from redis import Redis

from examples.reference_app.settings import DEMO_DEFAULTS
from hardenkit import sign_webhook
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
from tests.support.redis_sentinel import MASTER_NAME, SentinelGroup
from tests.support.uvicorn_server import UvicornServer, serving

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

APP = "examples.reference_app.app:create_app"
WORKERS = 2
LIMIT = 100
USED_BEFORE = 60
BACK_ON_REDIS_WITHIN = 5.0  # seconds after the promotion
PROMOTION_WITHIN = 30.0  # down-after 1 s + election + failover, on a loaded host


def worker_env(group: SentinelGroup) -> dict[str, str]:
    return {
        "HARDENKIT_REDIS_URL": "redis://sentinel/0",
        "HARDENKIT_REDIS_SENTINELS": ",".join(group.addresses),
        "HARDENKIT_REDIS_SENTINEL_MASTER": MASTER_NAME,
        "HARDENKIT_REDIS_RETRY_INTERVAL": "0.5",
        "HARDENKIT_OUTBOUND_SHARED_BREAKERS": "true",
        "HARDENKIT_RATE_LIMIT_DEFAULT": "1000000/day",
        "HARDENKIT_RATE_LIMIT_TENANT": f"{LIMIT}/day",  # no refill within the test
        **BEHIND_PROXY_ENV,  # the load client's request ids are kept, and checked
    }


def workers(group: SentinelGroup, logs: list[Path]) -> list[UvicornServer]:
    env = worker_env(group)
    return [UvicornServer(APP, factory=True, env=env, log_path=log) for log in logs]


def current_master_port(group: SentinelGroup) -> int | None:
    with Redis(port=group.sentinel_ports[0], socket_timeout=1) as sentinel:
        address = sentinel.execute_command("SENTINEL", "get-master-addr-by-name", MASTER_NAME)
    return int(address[1]) if address else None


def replicated(group: SentinelGroup) -> None:
    """Return once the replica has everything written to the master so far."""
    with Redis(port=group.master.port, socket_timeout=5) as master:
        master.set("e2e:replication-mark", "1")
        assert master.execute_command("WAIT", 1, 5000) == 1


async def background(urls: list[str], stop: asyncio.Event, results: list[Result]) -> None:
    """Fresh tenants (one request each: never near a limit) and unauthenticated calls.

    While a worker is on its fallback, a tenant it has not decided lately gets only its
    share of what refills (none within the test, at 100/day): 429, never 5xx.
    """
    counter = itertools.count()

    def planned(index: int) -> Planned:
        if index % 2:
            return Planned("unauthenticated", "/api/me", expected=frozenset({401}))
        return Planned(
            "authorised",
            "/api/me",
            bearer(hs256_token(f"bg-{index}")),
            expected=frozenset({200, 429}),
        )

    async def worker(client: httpx.AsyncClient) -> None:
        while not stop.is_set() and (index := next(counter)) < 20_000:
            results.append(await send(client, planned(index)))
            await asyncio.sleep(0.005)  # load, not a flood: the failover is under test

    async with client_for(urls[0], 3) as first, client_for(urls[1], 3) as second:
        await asyncio.gather(*(worker(client) for client in (first, second) * 3))


def refused_only_on_the_fallback(load: list[Result], before_kill: int, on_redis: int) -> None:
    """No 5xx; every fresh tenant answered on Redis is admitted: before the kill, and once
    both workers are back (the background's 6 callers may have sent theirs just before)."""
    assert max(result.status for result in load) < 500
    for result in load[:before_kill] + load[on_redis + 6 :]:
        assert result.status != 429, "a fresh tenant was refused while on Redis"


async def spread(urls: list[str], tenant: str, count: int) -> list[Result]:
    plan = [
        Planned(tenant, "/api/me", bearer(hs256_token(tenant)), expected=frozenset({200, 429}))
    ] * (count // len(urls))
    runs = await asyncio.gather(*(run_plan(url, plan, concurrency=8) for url in urls))
    return [result for run in runs for result in run]


async def redis_backend(client: httpx.AsyncClient) -> str:
    return str((await client.get("/readyz")).json()["checks"]["redis"]["backend"])


async def webhook(client: httpx.AsyncClient, webhook_id: str) -> dict[str, object]:
    body = json.dumps({"type": "invoice.paid", "id": webhook_id}).encode()
    headers = sign_webhook(body, DEMO_DEFAULTS["webhook_secret"], webhook_id=webhook_id)
    response = await client.post("/webhooks/demo", content=body, headers=headers)
    assert response.status_code == 200, response.text
    answer: dict[str, object] = response.json()
    return answer


async def upstream_mode(client: httpx.AsyncClient, mode: str) -> None:
    token = bearer(hs256_token("ops"))
    response = await client.put("/api/upstream/mode", json={"mode": mode}, headers=token)
    assert response.status_code == 200, response.text


async def breaker_state(client: httpx.AsyncClient) -> str:
    report = (await client.get("/readyz")).json()["checks"]["breakers"]["breakers"]
    return str(report["upstream"]["state"])


@asynccontextmanager
async def probes(servers: list[UvicornServer]) -> AsyncIterator[list[httpx.AsyncClient]]:
    async with (
        httpx.AsyncClient(base_url=servers[0].url, timeout=10) as first,
        httpx.AsyncClient(base_url=servers[1].url, timeout=10) as second,
    ):
        await counted_by_each_other([first, second])
        yield [first, second]


async def two_failed_upstream_calls(first: httpx.AsyncClient, second: httpx.AsyncClient) -> None:
    """Record two failures in the shared breaker: still closed (2 calls < minimum 3)."""
    await upstream_mode(first, "down")
    await upstream_mode(second, "up")
    failed = await first.get("/api/upstream", headers=bearer(hs256_token("ops")))
    assert failed.status_code == 502, failed.text  # both attempts failed
    assert await breaker_state(first) == "closed"
    await upstream_mode(first, "up")


async def third_failure_opens_the_shared_breaker(
    first: httpx.AsyncClient, second: httpx.AsyncClient
) -> httpx.Response:
    """One failure on the second worker: it opens the breaker only if the two from before
    the failover were kept. Return the first worker's answer (its upstream is up: only the
    shared state can refuse it)."""
    await upstream_mode(second, "down")
    opening = await second.get("/api/upstream", headers=bearer(hs256_token("ops")))
    assert await breaker_state(second) == "open", opening.text
    return await first.get("/api/upstream", headers=bearer(hs256_token("ops")))


async def promoted(group: SentinelGroup, killed_at: float) -> float:
    """When the sentinels named the replica as the master (bounded)."""
    while time.monotonic() - killed_at < PROMOTION_WITHIN:
        if await asyncio.to_thread(current_master_port, group) == group.replica.port:
            return time.monotonic()
        await asyncio.sleep(0.1)
    raise AssertionError(f"the replica was not promoted within {PROMOTION_WITHIN} s")


async def counted_by_each_other(clients: list[httpx.AsyncClient]) -> None:
    """Until each worker has been counted by the other: a worker that joined within a
    heartbeat interval refuses in an outage (its share would come on top)."""
    deadline = time.monotonic() + PROMOTION_WITHIN
    checks: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        checks = [(await client.get("/readyz")).json()["checks"]["redis"] for client in clients]
        if all(check["counted_by_others"] for check in checks):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the workers never counted each other: {checks}")


async def back_on_redis(clients: list[httpx.AsyncClient], since: float) -> float:
    """Seconds from ``since`` until every worker's readiness says Redis (bounded)."""
    backends: list[str] = []
    while time.monotonic() - since < PROMOTION_WITHIN:
        backends = [await redis_backend(client) for client in clients]
        if backends == ["redis"] * len(clients):
            return time.monotonic() - since
        await asyncio.sleep(0.1)
    raise AssertionError(f"not back on Redis {PROMOTION_WITHIN} s after promotion: {backends}")


async def test_sentinel_failover_under_load_keeps_limits_breakers_and_replay(
    tmp_path: Path,
) -> None:
    group = SentinelGroup(tmp_path / "sentinel")
    group.start()
    logs = [tmp_path / f"worker{index}.log" for index in range(WORKERS)]
    servers = workers(group, logs)
    try:
        with serving(servers):
            urls = [server.url for server in servers]
            async with probes(servers) as (first, second), asyncio.timeout(180):
                assert [await redis_backend(probe) for probe in (first, second)] == ["redis"] * 2

                # Before: part of a limit used, a webhook processed, two failed calls.
                before = await spread(urls, "partly-used", USED_BEFORE)
                delivered = await webhook(first, "msg_before_failover")
                await two_failed_upstream_calls(first, second)
                await asyncio.to_thread(replicated, group)

                stop = asyncio.Event()
                load: list[Result] = []
                traffic = asyncio.create_task(background(urls, stop, load))
                try:
                    await asyncio.sleep(0.5)  # mid-load
                    served_before_kill = len(load)
                    await asyncio.to_thread(group.master.kill)
                    promoted_at = await promoted(group, time.monotonic())
                    back_after = await back_on_redis([first, second], promoted_at)
                    served_at_promotion = len(load)
                    # Exact again: what was replicated counts, a new tenant gets its limit.
                    rest = await spread(urls, "partly-used", 2 * LIMIT)
                    fresh = await spread(urls, "after-failover", 2 * LIMIT)
                    exact_after = time.monotonic() - promoted_at
                finally:
                    served_at_end = len(load)
                    stop.set()
                    await traffic

                # Replay: the delivery from before is a duplicate on the other worker.
                replays = [
                    await webhook(second, "msg_before_failover"),
                    await webhook(second, "msg_after_failover"),
                    await webhook(first, "msg_after_failover"),
                ]
                refused = await third_failure_opens_the_shared_breaker(first, second)
    finally:
        group.stop()

    assert back_after < BACK_ON_REDIS_WITHIN, back_after
    assert statuses(before) == {200: USED_BEFORE}
    assert statuses(rest) == {200: LIMIT - USED_BEFORE, 429: LIMIT + USED_BEFORE}
    assert statuses(fresh) == {200: LIMIT, 429: LIMIT}
    # Every answer as planned (status, request id, headers), background included: no 5xx.
    assert problems_of(before + rest + fresh + load) == []
    assert 0 < served_before_kill < served_at_promotion < served_at_end
    refused_only_on_the_fallback(load, served_before_kill, served_at_promotion)

    assert (delivered["status"], delivered["processed"]) == ("processed", True)
    assert [(answer["status"], answer["processed"]) for answer in replays] == [
        ("duplicate", False),  # delivered before the failover, to the other worker
        ("processed", True),
        ("duplicate", False),
    ]

    assert refused.status_code == 503, refused.text
    assert refused.json()["code"] == "UPSTREAM_UNAVAILABLE"
    assert refused.headers["retry-after"]

    for log in logs:
        assert "redis_recovered" in log.read_text()  # each worker saw the failover, came back
    print(f"back on Redis {back_after:.2f} s after promotion, exact at {exact_after:.2f} s")
