"""``RateLimitMiddleware``: pure ASGI, one decision per matching rule, headers on the way out."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hardenkit._late import judged_path, leave_for_later
from hardenkit._marks import EXEMPT, MarkedRoutes
from hardenkit._paths import route_path
from hardenkit.context import FACTS_KEY, client_ip_var, own_facts, principal_var
from hardenkit.errors import Refusal, send_refusal
from hardenkit.proxies import TrustedProxies
from hardenkit.ratelimit._observe import record_decision, refusal_of
from hardenkit.ratelimit._report import REPORT_KEY, Report, report_of
from hardenkit.ratelimit.decision import RateLimitDecision, RateLimitStore
from hardenkit.ratelimit.headers import as_text, decision_headers
from hardenkit.ratelimit.keys import needs_principal
from hardenkit.ratelimit.limiter import RateLimiter
from hardenkit.ratelimit.memory import MemoryStore
from hardenkit.ratelimit.rules import PathPatterns, RateLimitRule

__all__ = ["RateLimitMiddleware"]


class RateLimitMiddleware:
    """Refuse requests over their rules' rates with a 429 problem; report limits in headers.

    Every rule whose paths and methods match, and whose key function returns a key, takes
    its cost; the first refusal answers (later rules are not charged). Allowed responses
    carry ``RateLimit-Policy`` / ``RateLimit`` listing every rule that applied. A refusal is a
    ``429`` ``RATE_LIMITED`` problem with ``Retry-After``, an audit event and the
    ``hardenkit.ratelimit.decisions`` metric; a ``closed`` rule while Redis is down
    answers ``503`` ``SERVICE_UNAVAILABLE``. When several layers serve one request
    (``install()`` puts one before auth and one after, and per-route limits run in the
    endpoint), the outermost lists the rules of all of them, or the one that refused.

    A WebSocket handshake is one ``GET`` request to the rules: admitted, its accept
    carries the headers; refused, it is never accepted, and gets the same problem as the
    handshake's response where the server offers ``websocket.http.response``, else a
    close that the server answers with ``403``. Other scopes (lifespan) pass through.

    Args:
        app: The ASGI application to protect.
        rules: The rules, evaluated in order (put the strictest first).
        store: Shared state (:class:`RedisStore` or :class:`MemoryStore`); a private
            memory store by default.
        exempt_paths: Paths never limited (exact, or a prefix ending in ``*``); routes
            whose endpoint is marked ``@exempt()`` are never limited either.
        trusted_proxies: Proxies whose forwarding headers are believed, used when no
            :class:`~hardenkit.proxies.TrustedProxyMiddleware` ran before this one.
        legacy_headers: Also send ``X-RateLimit-Limit/Remaining/Reset``.

    Raises:
        ValueError: No rules, or two rules share a name.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        rules: Sequence[RateLimitRule],
        store: RateLimitStore | None = None,
        exempt_paths: Iterable[str] = ("/healthz", "/readyz"),
        trusted_proxies: TrustedProxies | Iterable[str] = (),
        legacy_headers: bool = False,
    ) -> None:
        if not rules:
            raise ValueError("RateLimitMiddleware needs at least one rule")
        names = [rule.name for rule in rules]
        if len(set(names)) != len(names):
            raise ValueError(f"rate limit rule names must be unique: {names}")
        self.app = app
        self.store: RateLimitStore = store if store is not None else MemoryStore()
        self.rules = tuple(rules)
        self._limiters = tuple(
            (
                rule,
                RateLimiter(
                    rule.parsed_rate, store=self.store, name=rule.name, when_down=rule.when_down
                ),
            )
            for rule in self.rules
        )
        self.exempt = PathPatterns(exempt_paths)
        self.exempt_routes = MarkedRoutes(EXEMPT)
        self.trusted = (
            trusted_proxies
            if isinstance(trusted_proxies, TrustedProxies)
            else TrustedProxies(trusted_proxies)
        )
        self.legacy_headers = legacy_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection."""
        if scope["type"] not in _LIMITED:
            await self.app(scope, receive, send)
            return
        if FACTS_KEY not in scope:  # the first hardenkit layer of this request
            await own_facts(self, scope, receive, send)
            return
        path = route_path(scope)
        judged_path(scope, self)  # asked again should a rewrite serve another path
        if self.exempt.matches(path) or self.exempt_routes.matches(scope):
            await self.app(scope, receive, send)
            return
        report = report_of(scope)
        reporting = report is None
        if report is None:  # the outermost rate-limit layer reports for all of them
            report = scope[REPORT_KEY] = Report()
        token = None
        if client_ip_var.get() is None:  # used without TrustedProxyMiddleware
            token = client_ip_var.set(self.trusted.resolve(scope)[0])
        try:
            refused = await self._decide(scope, report, path)
            if refused is not None:
                await send_refusal(send, scope, self._refusal(refused, reporting=reporting))
                return
            if not reporting:
                await self.app(scope, receive, send)
                return
            legacy = self.legacy_headers

            async def send_with_headers(message: Message) -> None:
                if message["type"] in _RESPONSE_STARTS and report.decisions:
                    extra = report.headers(legacy=legacy)
                    message = {**message, "headers": [*message.get("headers", ()), *extra]}
                await send(message)

            await self.app(scope, receive, send_with_headers)
        finally:
            if token is not None:
                client_ip_var.reset(token)

    async def _decide(
        self, scope: Scope, report: Report, path: str
    ) -> tuple[str, RateLimitDecision] | None:
        """Offer every rule's decision to ``report``; return the first refusal, if any.

        A rule keyed on the principal that finds none (auth let the request through as
        public) is left for the endpoint, should auth authenticate the request there.
        """
        method: str = scope.get("method", "GET")  # a WebSocket handshake is a GET
        unkeyed: list[tuple[RateLimitRule, RateLimiter]] | None = None
        for rule, limiter in self._limiters:
            if not rule.applies_to(path, method):
                continue
            key = rule.key(scope)
            if key is None:
                if needs_principal(rule.key) and principal_var.get() is None:
                    unkeyed = [] if unkeyed is None else unkeyed
                    unkeyed.append((rule, limiter))
                continue
            decision = await limiter.hit(key, rule.cost)
            record_decision(rule.name, decision)
            report.offer(rule.name, decision)
            if not decision.allowed:
                return rule.name, decision
        if unkeyed is not None:
            leave_for_later(scope, _LateCharge(unkeyed, report))
        return None

    def recheck_path(self, judged: str, reached: str, app: ASGIApp) -> ASGIApp | None:
        """``app`` behind the rules ``reached`` comes under and ``judged`` did not.

        A middleware inside the stack rewrote the path of a request this layer judged:
        the rules of the path served (the login limit's, say) are charged at the endpoint
        (see :mod:`hardenkit._late`).
        """
        if self.exempt.matches(reached):
            return None
        return _ChargedAtTheEndpoint(self, judged, reached, app)

    def _refusal(self, refused: tuple[str, RateLimitDecision], *, reporting: bool) -> Refusal:
        """The ``429`` (or ``503``) for ``refused``.

        It lists the rate headers when ``reporting``; an outer layer's send adds them
        otherwise.
        """
        rule_name, decision = refused
        rate_headers = (
            decision_headers(rule_name, decision, legacy=self.legacy_headers) if reporting else []
        )
        return refusal_of(rule_name, decision, as_text(rate_headers))


class _LateCharge:
    """The rules one layer could not key for want of a principal, charged at the endpoint.

    The request was let through as public and reached a protected route, where auth
    authenticated it (``hardenkit.auth._checkpoint``); its principal is bound now.
    """

    __slots__ = ("_report", "_rules")

    def __init__(self, rules: list[tuple[RateLimitRule, RateLimiter]], report: Report) -> None:
        self._rules = rules
        self._report = report

    async def __call__(self, scope: Scope, send: Send) -> bool:
        return await _charged_at_the_endpoint(self._rules, scope, send, self._report)


class _ChargedAtTheEndpoint:
    """An endpoint's app, reached through a rewritten path, behind the rules it adds."""

    __slots__ = ("_app", "_judged", "_judged_exempt", "_layer", "_reached")

    def __init__(self, layer: RateLimitMiddleware, judged: str, reached: str, app: ASGIApp) -> None:
        self._layer = layer
        self._judged = judged
        self._judged_exempt = layer.exempt.matches(judged)
        self._reached = reached
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in _LIMITED:
            method: str = scope.get("method", "GET")
            rules = [
                (rule, limiter)
                for rule, limiter in self._layer._limiters
                if rule.applies_to(self._reached, method)
                # not charged already, on the path judged
                and (self._judged_exempt or not rule.applies_to(self._judged, method))
            ]
            report = report_of(scope) or Report()
            if rules and await _charged_at_the_endpoint(rules, scope, send, report):
                return
        await self._app(scope, receive, send)


async def _charged_at_the_endpoint(
    rules: list[tuple[RateLimitRule, RateLimiter]], scope: Scope, send: Send, report: Report
) -> bool:
    """Charge ``rules`` at the endpoint; ``True`` when one refused (and the 429 was sent).

    The endpoint's send passes every rate-limit layer's: the outermost one adds the rate
    headers to the refusal.
    """
    for rule, limiter in rules:
        key = rule.key(scope)
        if key is None:
            continue
        decision = await limiter.hit(key, rule.cost)
        record_decision(rule.name, decision)
        report.offer(rule.name, decision)
        if not decision.allowed:
            await send_refusal(send, scope, refusal_of(rule.name, decision, ()))
            return True
    return False


_LIMITED = frozenset({"http", "websocket"})
# The messages that start what the client sees first: where the rate-limit headers go.
_RESPONSE_STARTS = frozenset(
    {"http.response.start", "websocket.accept", "websocket.http.response.start"}
)
