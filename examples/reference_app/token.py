"""``POST /auth/token``: a demo login that issues a signed token for a demo user.

It exists so ``make demo`` can be tried with curl. It signs with ``HARDENKIT_JWT_SECRET``
(the demo secret unless you set one) and answers 404 in production, where the demo
secret is refused anyway. The strict per-ip auth rate limit covers ``/auth/*``.
"""

from __future__ import annotations

import hmac
import time
from typing import Any

import jwt
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hardenkit import read_json
from hardenkit.errors import ErrorCode, HardenError

TOKEN_LIFETIME_SECONDS = 900
MAX_BODY_BYTES = 4096

# Demo users: the passwords are in docs/auth.md, so these accounts protect nothing.
DEMO_USERS: dict[str, dict[str, Any]] = {
    "alice": {"password": "alice-demo-password", "tenant_id": "acme", "roles": ["member"]},
    "bob": {"password": "bob-demo-password", "tenant_id": "acme", "roles": ["admin"]},
    "carol": {"password": "carol-demo-password", "tenant_id": "globex", "roles": ["member"]},
}


def _invalid_login() -> HardenError:
    return HardenError(
        ErrorCode.AUTHENTICATION_ERROR, status=401, detail="Unknown user or wrong password."
    )


async def _credentials(request: Request) -> tuple[str, str]:
    # Bounded reader: a login needs a few hundred bytes, so the 4 KiB limit is checked on
    # Content-Length and as the body streams, never after holding all of it. Invalid or
    # absurdly nested JSON is a 400 BAD_REQUEST.
    data = await read_json(request, MAX_BODY_BYTES)
    if not isinstance(data, dict):
        raise HardenError(
            ErrorCode.VALIDATION_ERROR,
            status=400,
            detail='Send {"username": "...", "password": "..."} as JSON.',
        )
    username, password = data.get("username"), data.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise _invalid_login()
    return username, password


async def issue_token(request: Request) -> Response:
    settings = request.app.state.hardenkit.settings
    if settings.is_production or settings.jwt_secret is None:
        raise HardenError(ErrorCode.NOT_FOUND, status=404)
    username, password = await _credentials(request)
    user = DEMO_USERS.get(username)
    expected = user["password"] if user else "no-such-user-placeholder"
    if not hmac.compare_digest(password.encode(), expected.encode()) or user is None:
        raise _invalid_login()
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": username,
        settings.tenant_claim: user["tenant_id"],
        "roles": user["roles"],
        "scope": "items:read",
        "iat": now,
        "nbf": now,
        "exp": now + TOKEN_LIFETIME_SECONDS,
    }
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience[0]
    algorithm = settings.jwt_algorithms[0] if settings.jwt_algorithms else "HS256"
    token = jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm=algorithm)
    return JSONResponse(
        {"access_token": token, "token_type": "Bearer", "expires_in": TOKEN_LIFETIME_SECONDS},
        headers={"Cache-Control": "no-store"},
    )


routes = [Route("/auth/token", issue_token, methods=["POST"])]
