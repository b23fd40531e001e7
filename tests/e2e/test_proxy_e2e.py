"""On a real uvicorn: who the client is cannot be chosen by the client, whatever the server.

Each test runs the reference app (or a small ``install()``-ed app) the way the docs tell
operators to (``--no-proxy-headers``), or deliberately with uvicorn's proxy headers on to
show that hardenkit notices.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import httpx
import jwt
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from hardenkit.cli import main
from tests.e2e._traffic import DEMO_SECRET, SECURITY_HEADERS
from tests.support.uvicorn_server import UvicornServer

pytestmark = pytest.mark.e2e

WRONG_LOGIN = {"username": "alice", "password": "not-alices-password"}
# HARDENKIT_RATE_LIMIT_AUTH defaults to 5/15m per client ip on /auth/*.
LOGIN_LIMIT = 5


def _logins(server: UvicornServer, headers_for: list[dict[str, str]]) -> list[int]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        return [
            client.post("/auth/token", json=WRONG_LOGIN, headers=headers).status_code
            for headers in headers_for
        ]


def test_a_client_forwarded_header_behind_a_trusted_proxy_never_buys_a_fresh_login_bucket(
    tmp_path: Path,
) -> None:
    log = tmp_path / "uvicorn.log"
    env = {
        "HARDENKIT_REDIS_URL": "",
        "HARDENKIT_TRUSTED_PROXIES": "127.0.0.1/32",
        "HARDENKIT_LOG_FORMAT": "json",
    }
    # The loopback "proxy" appended the real client to X-Forwarded-For and passed the
    # client's own rotating Forwarded through, as nginx, ALB, HAProxy and Envoy do.
    attempts = [
        {"X-Forwarded-For": "203.0.113.50", "Forwarded": f"for=198.51.100.{n};proto=https"}
        for n in range(1, 8)
    ]
    with UvicornServer(env=env, log_path=log) as server:
        statuses = _logins(server, attempts)
    assert statuses == [401] * LOGIN_LIMIT + [429] * 2
    text = log.read_text()
    assert '"client_ip": "203.0.113.50"' in text  # the audit events name the real client
    assert "198.51.100." not in text


def test_under_forwarded_a_client_x_forwarded_for_never_buys_a_fresh_login_bucket(
    tmp_path: Path,
) -> None:
    env = {
        "HARDENKIT_REDIS_URL": "",
        "HARDENKIT_TRUSTED_PROXIES": "127.0.0.1/32",
        "HARDENKIT_FORWARDED_HEADER": "forwarded",
    }
    attempts = [
        {"Forwarded": "for=203.0.113.51;proto=http", "X-Forwarded-For": f"198.51.100.{n}"}
        for n in range(1, 8)
    ]
    with UvicornServer(env=env, log_path=tmp_path / "uvicorn.log") as server:
        statuses = _logins(server, attempts)
    assert statuses == [401] * LOGIN_LIMIT + [429] * 2


def test_the_demo_command_limits_rotating_x_forwarded_for_from_a_loopback_client(
    tmp_path: Path,
) -> None:
    # `make demo`: no trusted proxy, uvicorn with --no-proxy-headers.
    attempts = [{"X-Forwarded-For": f"198.51.100.{n}"} for n in range(1, 9)]
    with UvicornServer(
        env={"HARDENKIT_REDIS_URL": ""}, log_path=tmp_path / "uvicorn.log"
    ) as server:
        statuses = _logins(server, attempts)
        ready = httpx.get(f"{server.url}/readyz", timeout=10).json()
    assert statuses == [401] * LOGIN_LIMIT + [429] * 3
    assert ready["checks"]["proxy_headers"]["client_resolved_by"] == "hardenkit"


def _doctor(capsys: pytest.CaptureFixture[str], url: str) -> tuple[int, dict[str, dict[str, str]]]:
    code = main(["doctor", "--json", "--url", url])
    return code, {f["check"]: f for f in json.loads(capsys.readouterr().out)}


def test_uvicorn_with_its_proxy_headers_on_is_detected_and_doctor_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "uvicorn.log"
    env = {"HARDENKIT_REDIS_URL": "", "HARDENKIT_LOG_FORMAT": "json"}
    with UvicornServer(env=env, log_path=log, proxy_headers=True) as server:
        ready = httpx.get(f"{server.url}/readyz", timeout=10).json()
        code, findings = _doctor(capsys, server.url)
    assert ready["status"] == "degraded"
    assert ready["checks"]["proxy_headers"]["client_resolved_by"] == "server"
    # Seen at startup: no request before this one carried a forwarding header.
    assert "uvicorn" in ready["checks"]["proxy_headers"]["detected_by"]
    assert code == 1
    assert findings["proxy_headers"]["status"] == "fail"
    assert "--no-proxy-headers" in findings["proxy_headers"]["detail"]
    warnings = [
        json.loads(line)
        for line in log.read_text().splitlines()
        if '"server_rewrote_client"' in line
    ]
    assert len(warnings) == 1  # at startup, once
    assert warnings[0]["level"] == "warning"
    assert "--no-proxy-headers" in warnings[0]["fix"]


def test_doctor_passes_a_server_that_leaves_the_client_to_hardenkit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with UvicornServer(
        env={"HARDENKIT_REDIS_URL": ""}, log_path=tmp_path / "uvicorn.log"
    ) as server:
        code, findings = _doctor(capsys, server.url)
    assert findings["proxy_headers"]["status"] == "pass", findings
    assert code == 0, findings


def _socket_server(tmp_path: Path, **settings: str) -> UvicornServer:
    """The hardened WebSocket app on uvicorn: memory stores, the demo secret, ``settings``."""
    env = {"HARDENKIT_REDIS_URL": "", "HARDENKIT_JWT_SECRET": DEMO_SECRET, **settings}
    return UvicornServer(
        "tests.support.hardened_socket_app:create_app",
        env=env,
        factory=True,
        log_path=tmp_path / "uvicorn.log",
    )


async def test_refused_websocket_handshakes_carry_the_request_id_and_security_headers(
    tmp_path: Path,
) -> None:
    with _socket_server(tmp_path, HARDENKIT_RATE_LIMIT_DEFAULT="2/minute") as server:
        refusals = []
        for _ in range(3):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(
                    f"ws://127.0.0.1:{server.port}/ws",
                    open_timeout=5,
                    additional_headers={"X-Request-ID": "client-chosen-0001"},
                ):
                    pass
            refusals.append(refused.value.response)
            await asyncio.sleep(0)
    assert [response.status_code for response in refusals] == [401, 401, 429]
    for response in refusals:
        request_id = response.headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", request_id)  # a client's id is not kept
        assert json.loads(response.body)["request_id"] == request_id
        for name, value in SECURITY_HEADERS.items():
            assert response.headers[name] == value, name
        assert (
            response.headers["content-security-policy"]
            == "default-src 'none'; frame-ancestors 'none'"
        )


async def test_an_authenticated_handshake_no_route_serves_gets_the_problem_not_a_bare_403(
    tmp_path: Path,
) -> None:
    # Starlette closes a WebSocket no route serves before accepting it, and uvicorn
    # answers such a close with a bare 403: no body, no request id, no security headers.
    now = int(time.time())
    token = jwt.encode(
        {"sub": "alice", "tenant_id": "acme", "iat": now, "exp": now + 600},
        DEMO_SECRET,
        algorithm="HS256",
    )
    with _socket_server(tmp_path) as server:
        async with connect(
            f"ws://127.0.0.1:{server.port}/ws",
            open_timeout=5,
            additional_headers={"Authorization": f"Bearer {token}"},
        ) as socket:  # the token is good: the served path opens
            assert await asyncio.wait_for(socket.recv(), timeout=5) == "connected"
        with pytest.raises(InvalidStatus) as refused:
            async with connect(
                f"ws://127.0.0.1:{server.port}/nowhere",
                open_timeout=5,
                additional_headers={"Authorization": f"Bearer {token}"},
            ):
                pass
    response = refused.value.response
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    body = json.loads(response.body)
    assert body["code"] == "AUTHORIZATION_ERROR"
    assert body["request_id"] == response.headers["x-request-id"]
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value, name
