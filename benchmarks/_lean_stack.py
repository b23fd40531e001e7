"""The full stack's essential work in one lean middleware, with none of its guarantees.

A reference for the throughput tables, not a product: what the work every request of
the benchmark route needs costs when written as one pure ASGI middleware that does
nothing else. Per request it draws a request id; reads the bearer token and looks it
up in a cache of verified tokens (PyJWT verifies a token it has not seen: signature,
``exp``, ``iss``, ``aud``, the tenant claim); takes one GCRA unit per client ip and one
per tenant in process memory; arms a deadline that cancels the handler and answers
``504``; puts the claims in a context variable for the handler; and adds the response
headers the full stack sends (the same names, in the same order: the static ones taken
from one response of the full stack).

What it leaves out is what hardenkit adds around that work, each of which a test holds
it to: the route actually reached judged again at the endpoint (path rewrites, public
and exempt route marks, tenant path parameters), limits charged at the endpoint for a
request auth let through, trusted-proxy resolution and the server-rewrite detector, a
pipelined request starting with none of the previous one's facts, the request id
validated when a client sends one, CORS, the body limit, error and refusal formats,
metrics, WebSocket scopes, Redis. The difference between this row and the full stack
is therefore the price of those guarantees, not of the layering.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import time
from typing import Any

import jwt
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["LeanMiddleware", "lean_app"]

claims_var: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "lean_claims", default=None
)
_TIMEOUT_SECONDS = 30.0
_MAX_CACHED = 10_000


class LeanMiddleware:
    """The essential work of the benchmark route's stack, fused (see the module)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        secret: str,
        issuer: str,
        audience: str,
        per_second: int,
        static_headers: list[tuple[bytes, bytes]],
    ) -> None:
        self.app = app
        self.secret, self.issuer, self.audience = secret, issuer, audience
        self.emission_us = max(1, 1_000_000 // per_second)
        self.tolerance_us = self.emission_us * per_second
        self.static_headers = static_headers
        self.policy = f'"ip";q={per_second};w=1, "tenant";q={per_second};w=1'.encode()
        self.tokens: dict[bytes, tuple[dict[str, Any], float]] = {}
        self.tats: dict[str, int] = {}

    def _claims(self, token: bytes) -> dict[str, Any] | None:
        cached = self.tokens.get(token)
        if cached is None:
            try:
                claims: dict[str, Any] = jwt.decode(
                    token,
                    self.secret,
                    algorithms=["HS256"],
                    audience=self.audience,
                    issuer=self.issuer,
                    options={"require": ["exp", "iss", "aud", "sub"]},
                )
            except jwt.InvalidTokenError:
                return None
            if not isinstance(claims.get("tenant_id"), str):
                return None
            if len(self.tokens) >= _MAX_CACHED:
                self.tokens.clear()
            cached = self.tokens[token] = (claims, float(claims["exp"]))
        claims, expires = cached
        return claims if time.time() < expires else None

    def _take(self, key: str, now_us: int) -> int | None:
        """One GCRA unit for ``key``: the units left, or ``None`` when refused."""
        tat = self.tats.get(key, now_us)
        ahead = tat - now_us if tat > now_us else 0
        after = ahead + self.emission_us
        if after > self.tolerance_us:
            return None
        self.tats[key] = now_us + after
        return (self.tolerance_us - after) // self.emission_us

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = os.urandom(16).hex().encode()
        authorization = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
        scheme, _, token = authorization.partition(b" ")
        claims = self._claims(token) if scheme.lower() == b"bearer" and token else None
        if claims is None:
            await JSONResponse({"code": "UNAUTHENTICATED"}, 401)(scope, receive, send)
            return
        client = scope.get("client")
        now_us = time.monotonic_ns() // 1000
        by_ip = self._take(f"ip:{client[0] if client else '-'}", now_us)
        by_tenant = self._take(f"tenant:{claims['tenant_id']}", now_us)
        if by_ip is None or by_tenant is None:
            await JSONResponse({"code": "RATE_LIMITED"}, 429)(scope, receive, send)
            return
        extra = [
            (b"ratelimit-policy", self.policy),
            (b"ratelimit", b'"ip";r=%d;t=1, "tenant";r=%d;t=1' % (by_ip, by_tenant)),
            *self.static_headers,
            (b"x-request-id", request_id),
        ]
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        task = asyncio.current_task()
        if task is None:  # pragma: no cover - ASGI servers run each request in a task
            raise RuntimeError("LeanMiddleware needs a running task")
        loop = asyncio.get_running_loop()
        timer = loop.call_at(loop.time() + _TIMEOUT_SECONDS, task.cancel)
        token_set = claims_var.set(claims)
        try:
            await self.app(scope, receive, send_with_headers)
        except asyncio.CancelledError:
            if timer.cancelled() or loop.time() < timer.when():
                raise  # not our deadline: the server's
            task.uncancel()
            if not started:
                await JSONResponse({"code": "REQUEST_TIMEOUT"}, 504)(scope, receive, send)
        finally:
            timer.cancel()
            claims_var.reset(token_set)


def lean_app(
    *,
    secret: str,
    issuer: str,
    audience: str,
    per_second: int,
    static_headers: list[tuple[bytes, bytes]],
    routes: list[Route],
) -> Starlette:
    """The benchmark route behind :class:`LeanMiddleware`."""
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(
                LeanMiddleware,
                secret=secret,
                issuer=issuer,
                audience=audience,
                per_second=per_second,
                static_headers=static_headers,
            )
        ],
    )
