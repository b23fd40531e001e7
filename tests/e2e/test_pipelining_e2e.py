"""HTTP/1.1 pipelining on a real uvicorn: each request is judged on its own.

uvicorn (httptools and h11 alike) starts the next pipelined request from inside the
previous one's last send, so its task copies that request's context. An attacker round
saw the next request inherit the previous one's principal and verdicts: an API key
refused as a JWT, another tenant's token refused, an anonymous page shown the previous
client's tenant, and anonymous requests charged to that tenant's budget.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import jwt
import pytest

from tests.support.pipelined_app import API_KEY, AUDIENCE, ISSUER, SECRET
from tests.support.uvicorn_server import UvicornServer

pytestmark = pytest.mark.e2e


def _token(tenant: str) -> str:
    now = int(time.time())
    claims = {"sub": "u1", "tenant_id": tenant, "iss": ISSUER, "aud": AUDIENCE}
    return jwt.encode({**claims, "iat": now, "exp": now + 300}, SECRET, algorithm="HS256")


def _request(path: str, header: tuple[str, str] | None = None) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1"]
    if header is not None:
        lines.append(f"{header[0]}: {header[1]}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _pipelined(port: int, requests: list[bytes]) -> list[tuple[int, object]]:
    """Send ``requests`` at once on one connection; the statuses and JSON bodies."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(b"".join(requests))
        data = b""
        deadline = time.monotonic() + 10
        while data.count(b"HTTP/1.1 ") < len(requests) or not data.endswith(b"}"):
            assert time.monotonic() < deadline, data
            chunk = connection.recv(65536)
            if not chunk:
                break
            data += chunk
    parts = data.split(b"HTTP/1.1 ")[1:]
    return [(int(part[:3]), json.loads(part.split(b"\r\n\r\n", 1)[1])) for part in parts]


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_a_pipelined_request_is_judged_on_its_own(tmp_path: Path, http: str) -> None:
    with UvicornServer(
        "tests.support.pipelined_app:create_app",
        factory=True,
        log_path=tmp_path / "uvicorn.log",
        args=("--http", http),
    ) as server:
        acme = ("Authorization", f"Bearer {_token('acme')}")
        key = ("X-API-Key", API_KEY)
        globex = ("Authorization", f"Bearer {_token('globex')}")
        assert _pipelined(
            server.port, [_request("/me", acme), _request("/internal/export", key)]
        ) == [
            (200, {"tenant": "acme"}),
            (200, {"credential": "api_key"}),
        ]
        assert _pipelined(
            server.port, [_request("/me", acme), _request("/t/globex/items", globex)]
        ) == [
            (200, {"tenant": "acme"}),
            (200, {"tenant": "globex"}),
        ]
        assert _pipelined(server.port, [_request("/me", acme), _request("/news")]) == [
            (200, {"tenant": "acme"}),
            (200, {"seen_as": None}),
        ]
        # acme's /me ran three times above (3/minute): its fourth is refused, and the
        # anonymous pages behind it are never charged to acme.
        anonymous = _pipelined(server.port, [_request("/me", acme)] + [_request("/news")] * 3)
        assert [status for status, _ in anonymous] == [429, 200, 200, 200]
        # Outside the auth layer too: globex's crash is not logged as acme's, and a route
        # exempt from the timeout has no deadline (not the 1 s one /crash left behind).
        after = _pipelined(
            server.port, [_request("/me", acme), _request("/crash", globex), _request("/stream")]
        )
        assert [status for status, _ in after] == [429, 500, 200]
        assert after[2][1] == {"remaining": None}
    lines = [
        json.loads(line)
        for line in (tmp_path / "uvicorn.log").read_text().splitlines()
        if line.startswith("{")
    ]
    [crashed] = [line for line in lines if line.get("event") == "unhandled_exception"]
    assert "acme" not in (crashed.get("tenant"), crashed.get("subject")), crashed
