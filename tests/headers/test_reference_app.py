"""The reference app's home page, slow route and event stream, in-process and on uvicorn."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from examples.reference_app.app import create_app
from examples.reference_app.settings import demo_settings
from tests.headers.test_middleware import HTML_CSP
from tests.support.uvicorn_server import UvicornServer


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(create_app(demo_settings(auth_mode="off", request_timeout=0.5)))


def test_home_page_inline_script_and_style_carry_this_responses_nonce(client: TestClient) -> None:
    first = client.get("/")
    second = client.get("/")
    nonces = []
    for response in (first, second):
        assert response.status_code == 200
        match = HTML_CSP.fullmatch(
            response.headers["content-security-policy"].split("; report-uri")[0]
        )
        assert match is not None, response.headers["content-security-policy"]
        nonce = match["nonce"]
        assert re.findall(r'<(?:script|style) nonce="([^"]+)"', response.text) == [nonce, nonce]
        nonces.append(nonce)
    assert nonces[0] != nonces[1]
    assert "<script>" not in first.text  # no inline code without a nonce


@pytest.mark.parametrize("seconds", ["abc", "-1", "nan", "inf", "1e9", "121", ""])
def test_slow_route_refuses_garbage_with_a_400_problem(client: TestClient, seconds: str) -> None:
    response = client.get("/api/slow", params={"seconds": seconds})
    assert response.status_code == 400
    assert response.json()["code"] == "VALIDATION_ERROR"


def test_slow_route_answers_within_the_budget(client: TestClient) -> None:
    response = client.get("/api/slow", params={"seconds": "0.01"})
    assert response.status_code == 200
    assert response.json() == {"slept_seconds": 0.01}


def test_slow_route_past_the_budget_is_a_504_problem(client: TestClient) -> None:
    response = client.get("/api/slow", params={"seconds": "3"})
    assert response.status_code == 504
    assert response.json()["code"] == "REQUEST_TIMEOUT"
    assert response.headers["content-security-policy"].startswith("default-src 'none'")


@pytest.mark.e2e
def test_on_a_real_server_the_504_comes_in_time_and_the_event_stream_outlives_it(
    tmp_path: Path,
) -> None:
    timeout = 0.5
    env = {
        "HARDENKIT_AUTH_MODE": "off",
        "HARDENKIT_REQUEST_TIMEOUT": str(timeout),
    }
    with (
        UvicornServer(env=env, log_path=tmp_path / "uvicorn.log") as server,
        httpx.Client(base_url=server.url, timeout=10) as http,
    ):
        started = time.monotonic()
        response = http.get("/api/slow", params={"seconds": "5"})
        elapsed = time.monotonic() - started
        assert response.status_code == 504
        assert response.json()["code"] == "REQUEST_TIMEOUT"
        assert timeout <= elapsed < timeout + 0.1
        assert "strict-transport-security" not in response.headers  # plain http loopback

        ticks = 0
        started = time.monotonic()
        with http.stream("GET", "/api/stream") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            for line in stream.iter_lines():
                if line.startswith("data: "):
                    ticks += 1
        assert ticks == 4  # ceil(0.5 + 3) events, one a second
        assert time.monotonic() - started > timeout * 4

        # The server still serves after the cancelled handler: nothing was left behind.
        assert http.get("/healthz").status_code == 200
