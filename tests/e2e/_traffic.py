"""Tokens and bounded concurrent traffic for the end-to-end tests.

Every request is planned up front (what it is, which statuses it may get), sent with a
unique ``X-Request-ID``, and every response is checked for what an operator relies on
whatever its status: the status among the planned ones (no plan but the upstream fault
test admits a 5xx), the request id echoed in the header and the problem body, and the
security headers present.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt

from examples.reference_app.settings import DEMO_DEFAULTS
from tests.support.http_clients import tls_context
from tests.support.server_timing import server_seconds

DEMO_SECRET: str = DEMO_DEFAULTS["jwt_secret"]
DEMO_ISSUER: str = DEMO_DEFAULTS["jwt_issuer"]
DEMO_AUDIENCE: str = DEMO_DEFAULTS["jwt_audience"][0]

# The traffic sends its own X-Request-ID and checks that it comes back: the test client
# plays the proxy in front of the service, the one caller whose ids are kept under the
# default HARDENKIT_REQUEST_ID_TRUST=proxies (it sends no X-Forwarded-For, so the client
# ip stays the loopback peer).
BEHIND_PROXY_ENV: Mapping[str, str] = {"HARDENKIT_TRUSTED_PROXIES": "127.0.0.1/32"}

# What every response of the reference app carries, from 200 to 503 (defaults of
# HARDENKIT_* header settings; HSTS only on https, so not on this plain-http loopback).
SECURITY_HEADERS: Mapping[str, str] = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}
CSP_START = "default-src 'none'"


def demo_claims(tenant: str, *, subject: str = "e2e-user", **extra: Any) -> dict[str, Any]:
    """Claims the reference app accepts: demo issuer and audience, valid for 15 minutes."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": subject,
        "tenant_id": tenant,
        "roles": ["member"],
        "scope": "items:read",
        "iss": DEMO_ISSUER,
        "aud": DEMO_AUDIENCE,
        "iat": now,
        "nbf": now,
        "exp": now + 900,
    }
    claims.update(extra)
    return claims


def hs256_token(tenant: str, *, secret: str = DEMO_SECRET, **extra: Any) -> str:
    """A token signed with the demo secret (or ``secret``) for ``tenant``."""
    return jwt.encode(demo_claims(tenant, **extra), secret, algorithm="HS256")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass(frozen=True, slots=True)
class Planned:
    """One request to send and the statuses it may get."""

    kind: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    method: str = "GET"
    json: Any = None
    expected: frozenset[int] = frozenset({200})


@dataclass(frozen=True, slots=True)
class Result:
    """What came back for one :class:`Planned` request.

    ``elapsed`` is the client's wall time (its own queueing included); ``server_seconds``
    is the server's answer time, when the app reports it (``Server-Timing``, see
    :mod:`tests.support.server_timing`).
    """

    planned: Planned
    status: int
    code: str | None
    retry_after: str | None
    elapsed: float
    problems: tuple[str, ...]
    body: Any
    server_seconds: float | None = None
    ratelimit: str | None = None
    """The ``RateLimit`` field (the tightest rule's remaining), when the response had one."""


def check_response(response: httpx.Response, request_id: str) -> list[str]:
    """Return what is wrong with ``response`` whatever its status (empty when nothing is)."""
    problems = []
    if response.headers.get("x-request-id") != request_id:
        problems.append(f"x-request-id {response.headers.get('x-request-id')!r} != {request_id}")
    for name, value in SECURITY_HEADERS.items():
        if response.headers.get(name) != value:
            problems.append(f"{name}: {response.headers.get(name)!r}")
    if not response.headers.get("content-security-policy", "").startswith(CSP_START):
        problems.append(f"csp: {response.headers.get('content-security-policy')!r}")
    if response.status_code >= 400:
        if response.headers.get("content-type") != "application/problem+json":
            problems.append(f"{response.status_code} is not problem+json")
        elif response.json().get("request_id") != request_id:
            problems.append("problem body lacks the request id")
    return problems


async def send(client: httpx.AsyncClient, planned: Planned) -> Result:
    request_id = f"e2e-{uuid.uuid4().hex}"
    started = time.perf_counter()
    response = await client.request(
        planned.method,
        planned.path,
        headers={**planned.headers, "X-Request-ID": request_id},
        json=planned.json,
    )
    elapsed = time.perf_counter() - started
    problems = check_response(response, request_id)
    if response.status_code not in planned.expected:
        problems.append(
            f"status {response.status_code} not in {sorted(planned.expected)}: "
            f"{response.text[:200]}"
        )
    is_json = response.headers.get("content-type", "").endswith("json")
    body = response.json() if is_json else None
    code = body.get("code") if isinstance(body, dict) else None
    return Result(
        planned,
        response.status_code,
        code,
        response.headers.get("retry-after"),
        elapsed,
        tuple(problems),
        body,
        server_seconds(response.headers.get("server-timing")),
        response.headers.get("ratelimit"),
    )


def client_for(base_url: str, concurrency: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        verify=tls_context(),  # made once: each client would load the CA bundle again
        timeout=httpx.Timeout(15.0),
        # Idle connections are dropped before uvicorn's 5 s keep-alive timeout closes them:
        # a request sent on a connection the server is closing fails with "Server
        # disconnected" (seen when a loaded test process blocks its loop for seconds).
        limits=httpx.Limits(
            max_connections=concurrency,
            max_keepalive_connections=concurrency,
            keepalive_expiry=2.0,
        ),
    )


async def run_plan(
    base_url: str, plan: Iterable[Planned], *, concurrency: int = 50, time_limit: float = 60.0
) -> list[Result]:
    """Send ``plan`` with ``concurrency`` connections; fail if it takes over ``time_limit``.

    Each connection is a client of its own: httpcore's pool (1.0.x) rescans all of its
    connections, and polls every idle socket, on each request and each response, so one
    50-connection pool cost this client about 4x the server's CPU per request (14 ms a
    request under coverage) and made the client, not the server, the bottleneck.
    """
    pending = list(plan)
    cursor = itertools.count()
    results: list[Result] = []

    async def worker(client: httpx.AsyncClient) -> None:
        while (index := next(cursor)) < len(pending):
            results.append(await send(client, pending[index]))

    async with AsyncExitStack() as stack, asyncio.timeout(time_limit):
        clients = [
            await stack.enter_async_context(client_for(base_url, 1)) for _ in range(concurrency)
        ]
        await asyncio.gather(*(worker(client) for client in clients))
    return results


def problems_of(results: Iterable[Result]) -> list[str]:
    """Every problem found, prefixed with the request kind (empty when all is well)."""
    return [f"{r.planned.kind}: {problem}" for r in results for problem in r.problems]


def statuses(results: Iterable[Result], kind: str | None = None) -> Counter[int]:
    return Counter(r.status for r in results if kind is None or r.planned.kind == kind)


def store_log_lines(logs: Iterable[Path], limit: int = 40) -> str:
    """What the workers said about Redis and the limits: why a burst was refused."""
    lines = [
        f"{log.name}: {line}"
        for log in logs
        for line in log.read_text().splitlines()
        if "redis" in line or "ratelimit" in line
    ]
    return "\n".join(lines[:limit])
