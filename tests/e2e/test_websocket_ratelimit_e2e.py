"""On a real uvicorn, a WebSocket handshake over the limit gets the 429 problem as its answer."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.support.uvicorn_server import UvicornServer

pytestmark = pytest.mark.e2e


async def test_uvicorn_answers_a_refused_handshake_with_the_rate_limit_problem(
    tmp_path: Path,
) -> None:
    with UvicornServer("tests.support.socket_app:app", log_path=tmp_path / "uvicorn.log") as server:
        uri = f"ws://127.0.0.1:{server.port}/ws"
        for _ in range(2):
            async with connect(uri, open_timeout=5) as socket:
                assert await asyncio.wait_for(socket.recv(), timeout=5) == "connected"
                assert socket.response.headers["RateLimit-Policy"] == '"ip";q=2;w=60'
        with pytest.raises(InvalidStatus) as refused:
            async with connect(uri, open_timeout=5):
                pass
    response = refused.value.response
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "30"
    assert response.headers["Content-Type"] == "application/problem+json"
    assert json.loads(response.body)["code"] == "RATE_LIMITED"
