"""Per-route limits: a decorator for endpoints and a FastAPI dependency."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from starlette.requests import Request
from starlette.types import Scope

from hardenkit.ratelimit import keys
from hardenkit.ratelimit._observe import record_decision, refusal_of
from hardenkit.ratelimit._report import report_of
from hardenkit.ratelimit.decision import RateLimitDecision, RateLimitStore, RedisDownBehaviour
from hardenkit.ratelimit.headers import as_text, decision_headers
from hardenkit.ratelimit.keys import KeyFunction
from hardenkit.ratelimit.limiter import RateLimiter
from hardenkit.ratelimit.rate import Rate

__all__ = ["RouteLimit", "enforce"]

P = ParamSpec("P")
R = TypeVar("R")


class RouteLimit:
    """A limit on one route (or a few), checked inside the endpoint rather than in middleware.

    As a FastAPI dependency::

        export_limit = RouteLimit(
            "10/hour", name="export", key=keys.tenant, store=kit.rate_limit_store
        )

        @app.post("/export", dependencies=[Depends(export_limit)])
        async def export(): ...

    As a decorator of an endpoint that receives the request (Starlette, or FastAPI with a
    ``request: Request`` parameter)::

        @export_limit.wrap
        async def export(request: Request) -> Response: ...

    A refusal raises :class:`~hardenkit.errors.HardenError` carrying the same refusal
    :class:`~hardenkit.ratelimit.RateLimitMiddleware` sends (429 ``RATE_LIMITED`` with
    ``Retry-After`` and the ``RateLimit`` headers, or 503 while a ``closed`` limit's store
    is down), which :func:`hardenkit.install` turns into the problem response. Behind a
    rate-limit middleware a refusal is handed to it, and it writes the headers, as it
    does for its own rules.

    Args:
        rate: A :class:`Rate` or a rate string.
        name: Names the limit in keys, logs and metrics.
        key: Who is counted; when it returns ``None`` the limit does not apply.
        store: Where state lives (``kit.rate_limit_store`` to share the app's).
        cost: Units each call takes.
        when_down: While Redis is down: ``fallback``, ``open`` or ``closed``.
    """

    def __init__(
        self,
        rate: Rate | str,
        *,
        name: str,
        key: KeyFunction = keys.client_ip,
        store: RateLimitStore | None = None,
        cost: int = 1,
        when_down: RedisDownBehaviour = "fallback",
    ) -> None:
        self.limiter = RateLimiter(rate, store=store, name=name, when_down=when_down)
        if not 1 <= cost <= self.limiter.rate.burst:
            raise ValueError("cost must be between 1 and the burst")
        self.key = key
        self.cost = cost

    async def __call__(self, request: Request) -> RateLimitDecision | None:
        """Check the limit for ``request``; raise a 429 ``HardenError`` when refused."""
        return await self.check(request)

    async def check(self, request: Request) -> RateLimitDecision | None:
        """Check the limit; return the decision, or ``None`` when the key does not apply."""
        key = self.key(request.scope)
        if key is None:
            return None
        return await enforce(self.limiter, key, self.cost, request.scope)

    def wrap(self, endpoint: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        """Decorate an async endpoint whose arguments include the ``Request``."""

        @functools.wraps(endpoint)
        async def limited(*args: P.args, **kwargs: P.kwargs) -> R:
            request = _find_request(args, kwargs)
            await self.check(request)
            return await endpoint(*args, **kwargs)

        return limited


async def enforce(limiter: RateLimiter, key: str, cost: int, scope: Scope) -> RateLimitDecision:
    """Take ``cost`` for ``key``; offer the decision to the request's report; raise if refused.

    Behind a rate-limit layer the decision goes to its report, which writes the headers
    (every rule that applied, or the refusing one); with no layer outside, a refusal
    carries this limit's headers itself.

    Raises:
        HardenError: The refusal (429, or 503 while a ``closed`` limit's store is down).
    """
    decision = await limiter.hit(key, cost)
    name = limiter.name
    record_decision(name, decision)
    report = report_of(scope)
    if report is not None:
        report.offer(name, decision)
    if decision.allowed:
        return decision
    rate_headers = as_text(decision_headers(name, decision)) if report is None else ()
    raise refusal_of(name, decision, rate_headers).error()


def _find_request(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Request:
    for value in (*args, *kwargs.values()):
        if isinstance(value, Request):
            return value
    raise TypeError("a rate-limited endpoint must receive the Request (add `request: Request`)")
