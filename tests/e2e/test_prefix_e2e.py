"""The reference app under a path prefix on a real uvicorn: every path setting still holds.

``uvicorn --root-path /svc`` puts ``/svc`` in front of every ``scope["path"]`` (and in
``root_path``); ``Mount("/v1", app)`` does the same for a mounted app. Path settings
match the route path, so the webhook stays signed, the login limit stays strict, the
probes stay public and the API stays protected, with no ``/svc`` in any setting.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import jwt
import pytest

from examples.reference_app.settings import DEMO_DEFAULTS
from tests.support.uvicorn_server import UvicornServer

pytestmark = pytest.mark.e2e


def _assert_every_path_setting_holds(client: httpx.Client, prefix: str) -> None:
    health = client.get(f"{prefix}/healthz")
    assert health.status_code == 200, health.text
    assert client.get(f"{prefix}/readyz").status_code == 200

    protected = client.get(f"{prefix}/api/me")
    assert protected.status_code == 401
    assert protected.json()["code"] == "AUTHENTICATION_ERROR"

    unsigned = client.post(f"{prefix}/webhooks/demo", content=b'{"type": "forged"}')
    assert unsigned.status_code == 400, unsigned.text
    assert unsigned.json()["code"] == "SIGNATURE_INVALID"

    wrong = {"username": "alice", "password": "wrong"}
    logins = [client.post(f"{prefix}/auth/token", json=wrong).status_code for _ in range(6)]
    assert logins == [401] * 5 + [429]  # HARDENKIT_RATE_LIMIT_AUTH=5/15m on /auth/*

    # The login route is closed to this ip for 15 minutes now: sign the token directly.
    token = _demo_token()
    me = client.get(f"{prefix}/api/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.json()["subject"] == "alice"


def _demo_token() -> str:
    now = int(time.time())
    claims = {
        "sub": "alice",
        "tenant_id": "acme",
        "roles": ["member"],
        "iss": DEMO_DEFAULTS["jwt_issuer"],
        "aud": DEMO_DEFAULTS["jwt_audience"][0],
        "iat": now,
        "nbf": now,
        "exp": now + 300,
    }
    return jwt.encode(claims, DEMO_DEFAULTS["jwt_secret"], algorithm="HS256")


def test_under_uvicorn_root_path_every_path_setting_matches_the_route_path(
    tmp_path: Path,
) -> None:
    with (
        UvicornServer(
            log_path=tmp_path / "uvicorn.log", args=("--root-path", "/svc", "--no-proxy-headers")
        ) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        # The proxy in front strips /svc; uvicorn adds it back to path and root_path.
        _assert_every_path_setting_holds(client, "")


def test_under_a_starlette_mount_every_path_setting_matches_the_route_path(
    tmp_path: Path,
) -> None:
    with (
        UvicornServer(
            "tests.support.mounted_app:create_mounted_app",
            factory=True,
            log_path=tmp_path / "uvicorn.log",
            args=("--no-proxy-headers",),
        ) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        _assert_every_path_setting_holds(client, "/v1")
