"""The stack a FastAPI user assembles today from peer libraries, for the same job.

Outermost first: asgi-correlation-id (request id), secure (security headers), Starlette's
CORS, a pure-ASGI ``asyncio.timeout`` layer answering 504, slowapi limits per client ip
(``default_limits``) and per tenant (a route decorator; memory or Redis storage), and a
JWT layer that runs PyJWT's ``jwt.decode`` on every request and requires the tenant claim.
Every library is used as its documentation shows; nothing is tuned for the benchmark.
"""

from __future__ import annotations

import asyncio
from typing import Any

import jwt
from asgi_correlation_id import CorrelationIdMiddleware
from secure import Secure
from secure.middleware import SecureASGIMiddleware
from slowapi import Limiter, _rate_limit_exceeded_handler
from slowapi.errors import RateLimitExceeded
from slowapi.middleware import SlowAPIASGIMiddleware
from slowapi.util import get_remote_address
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["peer_app"]


class AsyncioTimeoutMiddleware:
    """A request timeout as users write it: ``asyncio.timeout`` around the app, 504 on expiry."""

    def __init__(self, app: ASGIApp, *, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            async with asyncio.timeout(self.seconds):
                await self.app(scope, receive, send_tracking)
        except TimeoutError:
            if started:
                raise
            await JSONResponse({"detail": "request timed out"}, status_code=504)(
                scope, receive, send
            )


class JwtMiddleware:
    """PyJWT verification on every request, tenant claim required; 401 otherwise."""

    def __init__(self, app: ASGIApp, *, secret: str, issuer: str, audience: str) -> None:
        self.app = app
        self.secret = secret
        self.issuer = issuer
        self.audience = audience

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        claims = self._claims(scope)
        if claims is None:
            await JSONResponse({"detail": "not authenticated"}, status_code=401)(
                scope, receive, send
            )
            return
        scope.setdefault("state", {})["principal"] = (claims["sub"], claims["tenant_id"])
        await self.app(scope, receive, send)

    def _claims(self, scope: Scope) -> dict[str, Any] | None:
        authorization = next(
            (value for name, value in scope["headers"] if name == b"authorization"), b""
        )
        scheme, _, token = authorization.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.secret,
                algorithms=["HS256"],
                issuer=self.issuer,
                audience=self.audience,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.InvalidTokenError:
            return None
        tenant = claims.get("tenant_id")
        return claims if isinstance(tenant, str) and tenant else None


def _tenant_key(request: Request) -> str:
    _, tenant = request.state.principal
    return str(tenant)


def peer_app(
    *,
    storage_uri: str,
    secret: str,
    issuer: str,
    audience: str,
    cors_origin: str,
    rate: str,
) -> Starlette:
    """The peer stack around the benchmark route ``/api/me``."""
    limiter = Limiter(key_func=get_remote_address, default_limits=[rate], storage_uri=storage_uri)

    @limiter.limit(rate, key_func=_tenant_key, override_defaults=False)
    async def me(request: Request) -> Response:
        subject, tenant = request.state.principal
        return JSONResponse({"subject": subject, "tenant": tenant})

    app = Starlette(
        routes=[Route("/api/me", me)],
        middleware=[
            Middleware(CorrelationIdMiddleware),
            Middleware(SecureASGIMiddleware, secure=Secure.with_default_headers()),
            Middleware(CORSMiddleware, allow_origins=[cors_origin]),
            Middleware(AsyncioTimeoutMiddleware, seconds=30.0),
            Middleware(SlowAPIASGIMiddleware),
            Middleware(JwtMiddleware, secret=secret, issuer=issuer, audience=audience),
        ],
    )
    app.state.limiter = limiter
    app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)  # type: ignore[arg-type]
    return app
