"""``limit("5/minute")``: a per-route limit on the app's own store, as a decorator or dependency.

The store is resolved when a request arrives, from what :func:`hardenkit.install` built
(``app.state.hardenkit.rate_limit_store``: Redis when ``HARDENKIT_REDIS_URL`` is set), so
a limit declared at import time counts where every other limit of the app counts. The
check itself is :func:`hardenkit.ratelimit.routes.enforce`, shared with
:class:`~hardenkit.ratelimit.RouteLimit`: the same decision, report and refusal.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import re
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar, overload

from fastapi import Depends
from starlette.requests import Request
from starlette.responses import Response

from hardenkit._installed import installed_kit
from hardenkit._marks import mark_limited_original
from hardenkit._ttlmap import TTLMap
from hardenkit.auth import Principal, principal_of
from hardenkit.errors import ConfigurationError
from hardenkit.ratelimit import keys
from hardenkit.ratelimit._report import report_of
from hardenkit.ratelimit._switch import COMPUTED_RATES
from hardenkit.ratelimit.decision import RateLimitStore, RedisDownBehaviour
from hardenkit.ratelimit.headers import decisions_headers
from hardenkit.ratelimit.keys import KeyFunction
from hardenkit.ratelimit.limiter import RateLimiter, check_name
from hardenkit.ratelimit.rate import Rate
from hardenkit.ratelimit.routes import enforce

__all__ = ["Limit", "RateFunction", "limit"]

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])

RateFunction = Callable[[Request, Principal | None], "Rate | str | Awaitable[Rate | str]"]
"""Computes the rate of one caller (a tenant's plan tier) from the request and principal."""

_MAX_RATES: Final = 10_000
_MAX_LIMITERS: Final = 1024
_MAX_STORES: Final = 64
_NOT_A_NAME = re.compile(r"[^a-z0-9_.-]+")

# FastAPI reads a dependency's signature to know what to inject.
_DEPENDENCY_SIGNATURE = inspect.Signature(
    [
        inspect.Parameter("request", inspect.Parameter.KEYWORD_ONLY, annotation=Request),
        inspect.Parameter("response", inspect.Parameter.KEYWORD_ONLY, annotation=Response),
    ],
    return_annotation=None,
)


def _name_of(text: str) -> str:
    name = _NOT_A_NAME.sub("-", text.lower()).strip("-._")[:63]
    return name or "route"


class Limit:
    """A limit on a route, counted on the app's rate-limit store.

    As a decorator, below the route decorator (the limit is named for the function)::

        @app.post("/export")
        @limit("5/minute", key=keys.tenant)
        async def export(principal: CurrentPrincipal) -> Export: ...

    As a dependency, on a route or a router (named for the route unless ``name`` is
    given; two routes with one ``name`` share one budget)::

        @app.get("/search", dependencies=[Depends(limit("30/minute"))])

    With a rate per caller (computed once per key, then cached ``rate_ttl`` seconds)::

        def plan_rate(request: Request, principal: Principal | None) -> str:
            return "1000/minute" if principal and "pro" in principal.roles else "100/minute"

        @limit(plan_rate, key=keys.tenant)

    Args:
        rate: A :class:`~hardenkit.Rate`, a rate string, or a :data:`RateFunction`
            (sync or async) of the request and the verified principal.
        name: Names the limit in keys, ``RateLimit`` headers, logs and metrics.
        key: Who is counted (default: the client ip); ``None`` skips the limit.
        cost: Units each request takes.
        store: Where the counts live; default: the app's, resolved per request from
            what :func:`hardenkit.install` built (Redis when configured).
        when_down: While Redis is down: ``fallback``, ``open`` or ``closed`` (503).
        rate_ttl: Seconds a computed rate is reused for a key.

    Attributes:
        rate: The fixed rate, or ``None`` when a :data:`RateFunction` computes it.
        hardenkit_responses: The statuses this dependency can answer (for OpenAPI).

    Raises:
        ValueError: A bad rate, name or cost (at import, not per request).
    """

    __signature__ = _DEPENDENCY_SIGNATURE

    def __init__(
        self,
        rate: Rate | str | RateFunction,
        *,
        name: str | None = None,
        key: KeyFunction = keys.client_ip,
        cost: int = 1,
        store: RateLimitStore | None = None,
        when_down: RedisDownBehaviour = "fallback",
        rate_ttl: float = 60.0,
    ) -> None:
        if name is not None:
            check_name(name, "limit")
        if when_down not in ("fallback", "open", "closed"):
            raise ValueError("when_down must be 'fallback', 'open' or 'closed'")
        if rate_ttl <= 0:
            raise ValueError("rate_ttl must be positive")
        self.rate: Rate | None = None
        self._rate_of: RateFunction | None = None
        if isinstance(rate, Rate | str):
            self.rate = Rate.coerce(rate)
            if not 1 <= cost <= self.rate.burst:
                raise ValueError(f"cost must be between 1 and the burst ({self.rate.burst})")
        elif callable(rate):
            self._rate_of = rate
        else:
            raise TypeError("rate is a Rate, a rate string or a function of the request")
        if cost < 1:
            raise ValueError("cost must be at least 1")
        self.name = name
        self.key = key
        self.cost = cost
        self.store = store
        self.when_down: RedisDownBehaviour = when_down
        self.rate_ttl = rate_ttl
        self.hardenkit_responses = (429, 503) if when_down == "closed" else (429,)
        self._rates: dict[int, tuple[RateLimitStore, TTLMap[str, Rate]]] = {}
        self._limiters: dict[tuple[int, str, Rate], RateLimiter] = {}
        COMPUTED_RATES.track(self)

    def __repr__(self) -> str:
        rate = str(self.rate) if self.rate is not None else "dynamic"
        return f"limit({rate!r}, name={self.name!r}, cost={self.cost})"

    @overload
    def __call__(self, endpoint: Endpoint, /) -> Endpoint: ...
    @overload
    def __call__(self, *, request: Request, response: Response) -> Awaitable[None]: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Decorate an endpoint, or (called by FastAPI as a dependency) check a request."""
        if args:
            (endpoint,) = args
            if not callable(endpoint):
                raise TypeError("@limit(...) decorates an endpoint function")
            return self._decorate(endpoint)
        return self.check(kwargs["request"], kwargs["response"])

    async def check(self, request: Request, response: Response | None = None) -> None:
        """Take this limit's cost for the request's key.

        Raises:
            HardenError: 429 ``RATE_LIMITED`` (or 503 while a ``closed`` limit's store is
                down), the same refusal the rate-limit middleware sends.
            ConfigurationError: No ``store=`` and the app has no :func:`hardenkit.install`.
        """
        scope = request.scope
        key = self.key(scope)
        if key is None:
            return
        store = self._store(request)
        rate = self.rate if self.rate is not None else await self._rate_for(request, store, key)
        name = self.name or _name_of(str(getattr(scope.get("route"), "name", "") or "route"))
        decision = await enforce(self._limiter(store, name, rate), key, self.cost, scope)
        if report_of(scope) is None and response is not None:
            # No rate-limit layer writes headers for this request (an exempt path): the
            # route's own budget still shows on the response.
            for field, value in decisions_headers([(name, decision)]):
                response.headers.append(field.decode("latin-1"), value.decode("latin-1"))

    def _store(self, request: Request) -> RateLimitStore:
        if self.store is not None:
            return self.store
        # The stack the request went through, nearest to the route (a mounted app's
        # limit counts on its stack's store); else this app's own install().
        kit = installed_kit(request.scope) or getattr(request.app.state, "hardenkit", None)
        store: RateLimitStore | None = getattr(kit, "rate_limit_store", None)
        if store is None:
            raise ConfigurationError(
                f"{self!r} on {request.method} {request.url.path}: the app has no "
                "hardenkit.install(), so there is no rate-limit store to count on; call "
                "install(app) (its store is Redis when HARDENKIT_REDIS_URL is set), or pass "
                "store= to limit()"
            )
        return store

    def forget_rates(self) -> None:
        """Compute every caller's rate again (``hardenkit.testing.reset`` calls it)."""
        self._rates = {}

    def _rate_cache(self, store: RateLimitStore) -> TTLMap[str, Rate]:
        # Per store, so per app: another app (or a test's new app) computes its callers'
        # rates afresh. The entry holds the store, so its id names no other store.
        entry = self._rates.get(id(store))
        if entry is None:
            if len(self._rates) >= _MAX_STORES:
                self._rates = {}
            entry = (store, TTLMap(_MAX_RATES, time.monotonic))
            self._rates[id(store)] = entry
        return entry[1]

    async def _rate_for(self, request: Request, store: RateLimitStore, key: str) -> Rate:
        rates = self._rate_cache(store)
        cached = rates.get(key)
        if cached is not None:
            return cached
        assert self._rate_of is not None  # noqa: S101 - one of rate and _rate_of is set
        answer = self._rate_of(request, principal_of(request))
        if inspect.isawaitable(answer):
            answer = await answer
        rate = Rate.coerce(answer)
        if self.cost > rate.burst:
            raise ConfigurationError(
                f"{self!r}: the rate computed for this caller ({rate}) is smaller than the "
                f"cost ({self.cost}); no request could ever pass"
            )
        rates.put(key, rate, self.rate_ttl)
        return rate

    def _limiter(self, store: RateLimitStore, name: str, rate: Rate) -> RateLimiter:
        cache_key = (id(store), name, rate)
        limiter = self._limiters.get(cache_key)
        if limiter is None:
            limiter = RateLimiter(rate, store=store, name=name, when_down=self.when_down)
            if len(self._limiters) < _MAX_LIMITERS:
                self._limiters[cache_key] = limiter
        return limiter

    def _decorate(self, endpoint: Endpoint) -> Endpoint:
        named = self if self.name is not None else self._renamed(_name_of(endpoint.__name__))
        hidden = f"hardenkit_limit_{id(named):x}"
        try:
            # Resolved here: FastAPI versions that do not unwrap would read string
            # annotations against this module's globals instead of the endpoint's.
            signature = inspect.signature(endpoint, eval_str=True)
        except (NameError, AttributeError, TypeError, SyntaxError):
            signature = inspect.signature(endpoint)  # left for FastAPI to resolve
        parameters = list(signature.parameters.values())
        extra = inspect.Parameter(hidden, inspect.Parameter.KEYWORD_ONLY, default=Depends(named))
        position = next(
            (i for i, p in enumerate(parameters) if p.kind is inspect.Parameter.VAR_KEYWORD),
            len(parameters),
        )
        parameters.insert(position, extra)

        if inspect.iscoroutinefunction(endpoint):

            @functools.wraps(endpoint)
            async def limited_async(*args: Any, **kwargs: Any) -> Any:
                kwargs.pop(hidden, None)
                return await endpoint(*args, **kwargs)

            wrapper: Callable[..., Any] = limited_async
        else:

            @functools.wraps(endpoint)
            def limited(*args: Any, **kwargs: Any) -> Any:
                kwargs.pop(hidden, None)
                return endpoint(*args, **kwargs)

            wrapper = limited
        wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        # After wraps() copied the function's attributes: only the original carries it, so
        # a route serving the original (decorators in the wrong order) is refused at startup.
        mark_limited_original(endpoint)
        return wrapper  # type: ignore[return-value]

    def _renamed(self, name: str) -> Limit:
        clone = Limit.__new__(Limit)
        clone.__dict__.update(self.__dict__)
        clone.name = name
        clone._rates = {}
        clone._limiters = {}
        COMPUTED_RATES.track(clone)
        return clone


# FastAPI awaits a dependency whose __call__ is a coroutine function; this one is not
# (it also decorates), so it is marked as one: called by FastAPI it returns a coroutine.
if sys.version_info >= (3, 12):  # pragma: no cover - the suite runs on 3.11
    inspect.markcoroutinefunction(Limit.__call__)
else:
    Limit.__call__._is_coroutine = asyncio.coroutines._is_coroutine  # type: ignore[attr-defined]


limit = Limit
"""``limit("5/minute", key=..., cost=...)``: the name the docs use for :class:`Limit`."""
