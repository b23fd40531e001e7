"""The reference app on a real uvicorn: ids, errors and health as an operator sees them."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.e2e._traffic import BEHIND_PROXY_ENV
from tests.support.uvicorn_server import UvicornServer

pytestmark = pytest.mark.e2e


def test_reference_app_serves_health_ids_and_problems_on_a_real_server(tmp_path: Path) -> None:
    with (
        UvicornServer(env=BEHIND_PROXY_ENV, log_path=tmp_path / "uvicorn.log") as server,
        httpx.Client(base_url=server.url, timeout=5) as client,
    ):
        health = client.get("/healthz")
        assert health.status_code == 200
        assert len(health.headers["x-request-id"]) == 32

        # A protected path without a token: refused before routing, in the one format.
        refused = client.get("/api/nope?token=abc", headers={"X-Request-ID": "operator-1234"})
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.headers["x-request-id"] == "operator-1234"
        assert refused.json()["request_id"] == "operator-1234"
        assert refused.json()["code"] == "AUTHENTICATION_ERROR"
        assert "abc" not in refused.text
        assert "server" not in refused.headers

        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["status"] == "healthy"
