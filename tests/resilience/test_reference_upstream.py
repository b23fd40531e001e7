"""The reference app's GET /api/upstream: retries absorb flakiness, an open breaker says 503."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from examples.reference_app import upstream
from hardenkit import install
from hardenkit.settings import HardenSettings
from tests.resilience.conftest import FakeClock

REQUEST_ID = "3f2b8f0e-6a43-4b8e-9f53-9a0d6f1f2c11"


@pytest.fixture
def client(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock, waits: list[float]
) -> Iterator[TestClient]:
    monkeypatch.setattr(upstream.breaker, "clock", clock)
    upstream.breaker.reset()
    monkeypatch.setattr(upstream.fake_upstream, "mode", "flaky")
    monkeypatch.setattr(upstream.fake_upstream, "requests", 0)
    app = Starlette(routes=upstream.routes)
    # TestClient's peer is "testclient", no address: trust every caller's id here.
    install(app, HardenSettings(auth_mode="off", request_id_trust="any"))
    with TestClient(app) as test_client:
        yield test_client
    upstream.breaker.reset()


def test_a_flaky_upstream_is_absorbed_by_the_retry(client: TestClient) -> None:
    answers = [client.get("/api/upstream", headers={"X-Request-ID": REQUEST_ID}) for _ in range(6)]
    assert [a.status_code for a in answers] == [200] * 6
    assert answers[0].json()["upstream"]["request_id"] == REQUEST_ID
    assert upstream.fake_upstream.requests == 8  # two of them retried


def test_an_outage_opens_the_breaker_and_the_route_answers_503_with_retry_after(
    client: TestClient, clock: FakeClock
) -> None:
    client.put("/api/upstream/mode", json={"mode": "down"})
    first = client.get("/api/upstream")
    assert first.status_code == 502
    assert first.json()["code"] == "UPSTREAM_UNAVAILABLE"
    refused = client.get("/api/upstream")
    assert refused.status_code == 503
    assert refused.json()["code"] == "UPSTREAM_UNAVAILABLE"
    assert refused.headers["Retry-After"] == "5"
    calls_so_far = upstream.fake_upstream.requests
    assert client.get("/api/upstream").status_code == 503
    assert upstream.fake_upstream.requests == calls_so_far  # the upstream is spared
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "degraded"
    assert ready.json()["checks"]["breakers"]["breakers"]["upstream"]["state"] == "open"

    client.put("/api/upstream/mode", json={"mode": "up"})
    clock.advance(upstream.BREAKER_WAIT_SECONDS)
    recovered = client.get("/api/upstream")
    assert recovered.status_code == 200
    assert recovered.json()["breaker"] == "closed"


def test_the_mode_switch_refuses_unknown_modes(client: TestClient) -> None:
    answer = client.put("/api/upstream/mode", json={"mode": "sideways"})
    assert answer.status_code == 400
    assert answer.json()["code"] == "VALIDATION_ERROR"
