"""The flaky upstream goes fully down and recovers: the breaker opens fast, then closes.

The reference app's ``/api/upstream`` calls its upstream through ``ResilientTransport``
(2 attempts of at most 2 s each, a breaker that opens at 50 % failures over the last 6
calls and waits 5 s before one trial call). ``502`` means the upstream was called and
failed; ``503 UPSTREAM_UNAVAILABLE`` with ``Retry-After`` means the breaker refused
without calling it.

How fast a refusal is, is read from the server (``Server-Timing``, added by a test-only
outer layer, :mod:`tests.support.server_timing`): the load client's wall time per request
also counts its own queueing behind the other requests of the burst, and under coverage
that alone reached the bound while the server answered within tens of milliseconds.
"""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

import httpx
import pytest

from examples.reference_app.upstream import BREAKER_WAIT_SECONDS
from tests.e2e._traffic import (
    BEHIND_PROXY_ENV,
    Planned,
    Result,
    bearer,
    hs256_token,
    problems_of,
    run_plan,
    send,
)
from tests.support.uvicorn_server import UvicornServer

pytestmark = pytest.mark.e2e

APP = "tests.support.server_timing:timed_reference_app"  # the reference app, timed
ATTEMPT_TIMEOUT = 2.0  # upstream.py: resilient(..., timeout=2.0, attempts=2)
# A refused call must not wait on the upstream at all: well under one attempt's timeout.
FAST_REFUSAL_SECONDS = ATTEMPT_TIMEOUT / 2


async def _call(client: httpx.AsyncClient, token: str) -> tuple[float, Result]:
    sent_at = time.monotonic()
    planned = Planned(
        "upstream", "/api/upstream", bearer(token), expected=frozenset({200, 502, 503})
    )
    return sent_at, await send(client, planned)


async def _set_mode(client: httpx.AsyncClient, token: str, mode: str) -> None:
    response = await client.put("/api/upstream/mode", json={"mode": mode}, headers=bearer(token))
    assert response.status_code == 200
    assert response.json()["mode"] == mode


async def test_breaker_opens_when_the_upstream_is_down_and_closes_after_it_recovers(
    tmp_path: Path,
) -> None:
    token = hs256_token("acme")
    env = {
        "HARDENKIT_RATE_LIMIT_DEFAULT": "1000000/day",
        "HARDENKIT_RATE_LIMIT_TENANT": "1000000/day",
        **BEHIND_PROXY_ENV,
    }
    with UvicornServer(APP, factory=True, env=env, log_path=tmp_path / "uvicorn.log") as server:
        async with (
            httpx.AsyncClient(base_url=server.url, timeout=10) as client,
            asyncio.timeout(60),
        ):
            # Flaky (one call in three fails): the retry absorbs it; the breaker stays closed.
            flaky = [(await _call(client, token))[1] for _ in range(6)]
            assert [r.status for r in flaky] == [200] * 6
            assert {r.body["breaker"] for r in flaky} == {"closed"}

            await _set_mode(client, token, "down")
            calls_until_open: list[tuple[float, Result]] = []
            for _ in range(5):
                calls_until_open.append(await _call(client, token))
                if calls_until_open[-1][1].status == 503:
                    break
            statuses = [r.status for _, r in calls_until_open]
            assert statuses[-1] == 503, statuses
            assert 2 <= len(statuses) <= 4, statuses
            assert set(statuses[:-1]) == {502}  # called, failed: what opens the breaker
            opened_no_earlier_than = calls_until_open[-2][0]

            # Open: a burst of 100 at 50 connections is refused at once, upstream untouched.
            burst = await run_plan(
                server.url,
                [Planned("open", "/api/upstream", bearer(token), expected=frozenset({503}))] * 100,
                concurrency=50,
                time_limit=BREAKER_WAIT_SECONDS,
            )
            burst_ended = time.monotonic()
            assert burst_ended - opened_no_earlier_than < BREAKER_WAIT_SECONDS  # still open
            assert problems_of(burst) == []
            assert {r.code for r in burst} == {"UPSTREAM_UNAVAILABLE"}
            assert {1 <= int(r.retry_after or 0) <= BREAKER_WAIT_SECONDS for r in burst} == {True}
            # The server's answer time; a response without one counts as infinitely slow.
            slowest = max(math.inf if r.server_seconds is None else r.server_seconds for r in burst)
            slowest_seen_by_client = max(r.elapsed for r in burst)
            assert slowest < FAST_REFUSAL_SECONDS, (slowest, slowest_seen_by_client)
            ready = (await client.get("/readyz")).json()
            assert ready["status"] == "degraded"
            assert ready["checks"]["breakers"]["breakers"]["upstream"]["state"] == "open"

            # Recovery: after the wait, one trial call succeeds and the breaker closes.
            await _set_mode(client, token, "up")
            recovered_at = None
            for _ in range(60):
                _, result = await _call(client, token)
                assert result.problems == ()
                if result.status == 200:
                    recovered_at = time.monotonic()  # the breaker let this call through
                    assert result.body["breaker"] == "closed"
                    break
                assert result.status == 503
                assert time.monotonic() - burst_ended < BREAKER_WAIT_SECONDS + 3
                await asyncio.sleep(0.2)
            assert recovered_at is not None
            assert recovered_at - opened_no_earlier_than >= BREAKER_WAIT_SECONDS
            after = [(await _call(client, token))[1] for _ in range(5)]
            assert [r.status for r in after] == [200] * 5
            ready = (await client.get("/readyz")).json()
            assert ready["status"] == "healthy"
            assert ready["checks"]["breakers"]["breakers"]["upstream"]["state"] == "closed"
