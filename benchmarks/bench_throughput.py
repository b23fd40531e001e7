"""Requests per second under uvicorn: the full hardenkit stack against the bare app.

Both servers run one uvicorn worker without access log, one after the other, driven by
the same keep-alive load client (benchmarks/_load.py) on loopback with a valid token, so
the figure is what the stack costs a real server. Reported, no target.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import jwt

from benchmarks._harness import Row
from benchmarks._load import run_load
from tests.support.redis_server import free_port

SECRET = "bench-secret-" + "x" * 40
ISSUER = "https://bench.hardenkit.invalid"
AUDIENCE = "bench"


def _serve(factory: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    command = [
        sys.executable, "-m", "uvicorn", f"benchmarks._throughput_apps:{factory}", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    process = subprocess.Popen(command, env=env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/me", timeout=0.5)
            return process, port
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{factory} did not start")


def _measure(factory: str, env: dict[str, str], headers: dict[str, str], seconds: float) -> float:
    process, port = _serve(factory, env)
    try:
        run_load("127.0.0.1", port, "/api/me", headers=headers, concurrency=32, seconds=0.5)
        result = run_load(
            "127.0.0.1", port, "/api/me", headers=headers, concurrency=32, seconds=seconds
        )
        if set(result.statuses) != {200}:
            raise RuntimeError(f"{factory} answered {dict(result.statuses)}")
        return result.per_second
    finally:
        process.terminate()
        process.wait(timeout=15)


def run(quick: bool) -> list[Row]:
    now = int(time.time())
    token = jwt.encode(
        {"sub": "alice", "tenant_id": "acme", "iss": ISSUER, "aud": AUDIENCE,
         "iat": now, "exp": now + 3600},
        SECRET,
        algorithm="HS256",
    )  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARDENKIT_")}
    env.update(
        HARDENKIT_JWT_SECRET=SECRET,
        HARDENKIT_JWT_ISSUER=ISSUER,
        HARDENKIT_JWT_AUDIENCE=AUDIENCE,
        HARDENKIT_RATE_LIMIT_DEFAULT="100000000/s",
        HARDENKIT_RATE_LIMIT_TENANT="100000000/s",
        HARDENKIT_LOG_LEVEL="WARNING",
    )
    headers = {"Authorization": f"Bearer {token}"}
    seconds = 2.0 if quick else 5.0
    bare = _measure("bare", env, headers, seconds)
    hardened = _measure("hardened", env, headers, seconds)
    return [
        Row(
            piece="reference stack",
            figure="requests/s under uvicorn, full stack vs no hardenkit (32 connections)",
            ours=hardened,
            peer_name="same route, bare Starlette",
            peer=bare,
            unit="req/s",
        )
    ]
