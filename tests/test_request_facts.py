"""A request never runs with the facts hardenkit set for another request.

uvicorn starts a pipelined HTTP/1.1 request from inside the previous one's last send, so
its task begins with that request's context: principal, request id, client ip, deadline
(tests/support/inherited.py serves requests the same way, in-process). An attacker round
found a standalone rate limit keying the next request on the previous client, and a
route exempt from the timeout running under the previous request's deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hardenkit import get_principal, get_request_id, public
from hardenkit._cors import CORSMiddleware
from hardenkit.auth import AuthMiddleware, JWTVerifier, require_roles
from hardenkit.auth.principal import Principal
from hardenkit.bodylimit import BodyLimitMiddleware
from hardenkit.context import principal_var, remaining_time
from hardenkit.errors import ErrorMiddleware
from hardenkit.headers import SecurityHeadersMiddleware
from hardenkit.proxies import TrustedProxyMiddleware
from hardenkit.ratelimit import MemoryStore, RateLimitMiddleware, RateLimitRule, RouteLimit, keys
from hardenkit.requestid import RequestIdMiddleware
from hardenkit.requestmetrics import RequestMetricsMiddleware
from hardenkit.resilience.deadline import deadline
from hardenkit.signing import WebhookMiddleware, WebhookVerifier
from hardenkit.timeouts import TimeoutMiddleware
from hardenkit.workcontext import WorkContext
from tests.support.inherited import (
    AUDIENCE,
    ISSUER,
    SECRET,
    Sent,
    bearer,
    facts,
    hardened,
    pipelined,
    public_facts,
)

WEBHOOK_SECRET = "whsec_" + "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"


def installed() -> Starlette:
    routes = [
        Route("/", public()(public_facts)),
        Route("/me", facts),
        Route("/stream", public()(public_facts)),
    ]
    return hardened(Starlette(routes=routes), request_timeout=1.0, streaming_paths=["/stream"])


LAYERS: dict[str, Callable[[ASGIApp], ASGIApp]] = {
    "none": lambda app: app,
    "request_id": RequestIdMiddleware,
    "trusted_proxies": TrustedProxyMiddleware,
    "metrics": RequestMetricsMiddleware,
    "headers": SecurityHeadersMiddleware,
    "cors": lambda app: CORSMiddleware(app, allow_origins=["https://app.example"]),
    "errors": ErrorMiddleware,
    "timeout": lambda app: TimeoutMiddleware(app, timeout=5, streaming_paths=["/stream"]),
    "body_limit": BodyLimitMiddleware,
    "rate_limit": lambda app: RateLimitMiddleware(
        app, rules=[RateLimitRule("ip", "100/minute")], store=MemoryStore()
    ),
    "auth": lambda app: AuthMiddleware(
        app,
        verifier=JWTVerifier(
            secret=SECRET, algorithms=["HS256"], issuer=ISSUER, audience=[AUDIENCE]
        ),
        public_paths=["/", "/stream"],
    ),
    "webhook": lambda app: WebhookMiddleware(
        app, verifier=WebhookVerifier(WEBHOOK_SECRET), paths=["/hook"]
    ),
}


@pytest.mark.parametrize("outermost", sorted(LAYERS))
async def test_a_pipelined_request_sees_none_of_the_facts_set_for_the_one_before(
    outermost: str,
) -> None:
    app = LAYERS[outermost](installed())
    first, second, third = await pipelined(
        app,
        Sent("/me", bearer("acme"), client="198.51.100.7"),
        Sent("/"),
        Sent("/stream"),
    )
    assert (first.status, second.status, third.status) == (200, 200, 200)
    before = first.json()
    assert before["tenant"] == "acme"
    for after in (second.json(), third.json()):
        assert after["tenant"] is None
        assert after["client_ip"] == "203.0.113.9"
        assert after["request_id"] not in (None, before["request_id"])
    assert 0.5 < second.json()["remaining"] <= 1.0  # its own deadline
    assert third.json()["remaining"] is None  # exempt: none, not the first one's


@pytest.mark.parametrize("outermost", sorted(LAYERS))
async def test_a_file_sent_by_path_leaves_no_facts_to_the_next_request(
    outermost: str, tmp_path: Path
) -> None:
    """Round 13: a response whose last message is ``http.response.pathsend`` (a
    ``FileResponse`` on a server offering it) was not sent clean."""
    report = tmp_path / "report.txt"
    report.write_text("quarterly")

    async def download(request: Request) -> Response:
        return FileResponse(report)

    app = installed()
    app.router.routes.insert(0, Route("/file", download))
    first, second = await pipelined(
        LAYERS[outermost](app),
        Sent("/file", bearer("acme"), client="198.51.100.7"),
        Sent("/stream"),
        pathsend=True,
    )
    assert (first.status, first.body, second.status) == (200, b"quarterly", 200)
    after = second.json()
    assert after["tenant"] is None
    assert after["client_ip"] == "203.0.113.9"
    assert after["request_id"] not in (None, first.headers["x-request-id"])
    assert after["remaining"] is None  # exempt from the timeout: not the file's deadline


async def test_a_standalone_rate_limit_keys_each_pipelined_request_on_its_own_client() -> None:
    limited = RateLimitMiddleware(
        Starlette(routes=[Route("/", facts)]),
        rules=[RateLimitRule("ip", "2/minute")],
        store=MemoryStore(),
        trusted_proxies=["127.0.0.1/32"],
    )
    proxied = [
        Sent("/", {"X-Forwarded-For": address}, client="127.0.0.1")
        for address in ("198.51.100.1", "198.51.100.2", "198.51.100.2")
    ]
    answers = await pipelined(limited, *proxied)
    assert [answer.status for answer in answers] == [200, 200, 200]
    assert [answer.json()["client_ip"] for answer in answers] == [
        "198.51.100.1",
        "198.51.100.2",
        "198.51.100.2",
    ]


async def test_a_fact_the_application_sets_outside_the_layers_is_kept() -> None:
    limited = RateLimitMiddleware(
        Starlette(routes=[Route("/", public()(public_facts))]),
        rules=[RateLimitRule("tenant", "100/minute")],
        store=MemoryStore(),
    )

    async def own_auth(scope: dict[str, object], receive: object, send: object) -> None:
        token = principal_var.set(Principal("bob", tenant="globex"))  # its own auth
        try:
            await limited(scope, receive, send)  # type: ignore[arg-type]
        finally:
            principal_var.reset(token)

    answers = await pipelined(own_auth, Sent("/"), Sent("/"))  # type: ignore[arg-type]
    assert [answer.json()["tenant"] for answer in answers] == ["globex", "globex"]
    assert all("ratelimit" in answer.headers for answer in answers)


async def test_an_app_called_in_process_hands_back_its_callers_facts() -> None:
    inner = installed()

    async def calls_another_app(request: Request) -> Response:
        before = (get_principal(), get_request_id())
        transport = httpx.ASGITransport(app=inner)
        async with httpx.AsyncClient(transport=transport, base_url="http://inner") as client:
            seen = (await client.get("/", headers=bearer("globex", "bob"))).json()
        return JSONResponse(
            {
                "inner_tenant": seen["tenant"],
                "same_after": (get_principal(), get_request_id()) == before,
            }
        )

    outer = hardened(Starlette(routes=[Route("/call", calls_another_app)]))
    [answer] = await pipelined(outer, Sent("/call", bearer("acme")))
    assert answer.status == 200
    assert answer.json() == {"inner_tenant": None, "same_after": True}


class Passthrough(BaseHTTPMiddleware):
    """A user's own middleware of the kind Starlette documents: it runs the app below in a
    child task."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        return await call_next(request)


async def slow(request: Request) -> Response:
    await asyncio.sleep(float(request.query_params.get("s", "0")))
    return await facts(request)


async def crash(request: Request) -> Response:
    raise RuntimeError("handler bug")


def nested(*, outer_timeout: float, inner_middleware: bool) -> Starlette:
    """An app with its own install() mounted in another (docs/cookbook.md)."""
    inner = hardened(
        Starlette(
            routes=[Route("/slow", slow)],
            middleware=[Middleware(Passthrough)] if inner_middleware else [],
        ),
        request_timeout=30.0,
    )
    routes = [
        Route("/export", public()(public_facts)),
        Route("/crash", public()(crash)),
        Mount("/sub", app=inner),
    ]
    return hardened(
        Starlette(routes=routes), request_timeout=outer_timeout, streaming_paths=["/export"]
    )


@pytest.mark.parametrize("inner_middleware", [False, True], ids=["plain", "base_http"])
async def test_facts_a_mounted_install_set_never_reach_the_next_request(
    inner_middleware: bool,
) -> None:
    app = nested(outer_timeout=1.0, inner_middleware=inner_middleware)
    first, second = await pipelined(app, Sent("/sub/slow", bearer("acme")), Sent("/export"))
    assert first.json()["tenant"] == "acme"
    assert 0.5 < first.json()["remaining"] <= 1.0  # the outer deadline holds inside
    assert second.json() == {**second.json(), "tenant": None, "remaining": None}


async def test_an_outer_504_leaves_no_deadline_to_the_next_request() -> None:
    app = nested(outer_timeout=0.3, inner_middleware=False)
    first, second = await pipelined(app, Sent("/sub/slow?s=2", bearer("acme")), Sent("/export"))
    assert first.status == 504
    assert second.json()["remaining"] is None


async def test_a_deadline_still_open_at_the_last_send_is_not_the_next_requests() -> None:
    fastapi = pytest.importorskip("fastapi")

    async def upstream_budget() -> AsyncIterator[None]:
        async with deadline(2.0):  # closed by FastAPI after the response is sent
            yield

    app = fastapi.FastAPI()

    @app.get("/report", dependencies=[fastapi.Depends(upstream_budget)])
    async def report() -> dict[str, float | None]:
        return {"remaining": remaining_time()}

    @app.get("/export")
    @public()
    async def export() -> dict[str, float | None]:
        return {"remaining": remaining_time()}

    hardened(app, request_timeout=30.0, streaming_paths=["/export"])
    first, second = await pipelined(app, Sent("/report", bearer("acme")), Sent("/export"))
    assert 1.5 < first.json()["remaining"] <= 2.0
    assert second.json() == {"remaining": None}


class AppBudget:
    """The application's own budget around the whole app (added after install())."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with deadline(0.8):
            await self.app(scope, receive, send)


async def test_a_deadline_the_app_sets_around_the_stack_holds_on_every_pipelined_request() -> None:
    app = installed()  # a 1 s timeout, /stream exempt
    app.add_middleware(AppBudget)
    answers = await pipelined(app, *[Sent(path) for path in ("/", "/stream") * 3])
    assert all(0.5 < answer.json()["remaining"] <= 0.8 for answer in answers), answers


async def test_a_principal_the_app_applies_outside_the_stack_keeps_its_tenant_limit() -> None:
    class Gateway:
        """Work context from an upstream gateway, applied around the app."""

        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            context = WorkContext(request_id=None, principal=Principal("bob", tenant="globex"))
            with context.applied():
                await self.app(scope, receive, send)

    limit = RouteLimit("2/minute", name="gateway", key=keys.tenant)
    # Identity from the gateway, not hardenkit's auth (which judges only its own).
    limited = hardened(Starlette(routes=[Route("/", limit.wrap(facts))]), auth_mode="off")
    limited.add_middleware(Gateway)
    answers = await pipelined(limited, *[Sent("/")] * 4)
    assert [answer.status for answer in answers] == [200, 200, 429, 429]
    assert answers[1].json()["tenant"] == "globex"


PATHS = ("/work", "/exempt")


def work_and_exempt() -> Starlette:
    """An app with a long timeout and a route exempt from it."""
    routes = [Route(path, public()(public_facts)) for path in PATHS]
    return hardened(Starlette(routes=routes), request_timeout=30.0, streaming_paths=["/exempt"])


async def test_an_app_called_in_process_is_held_to_its_callers_budget() -> None:
    called = work_and_exempt()

    async def caller(request: Request) -> Response:
        transport = httpx.ASGITransport(app=called)
        async with httpx.AsyncClient(transport=transport, base_url="http://called") as client:
            with deadline(0.3):
                seen = [
                    (await client.get(path)).json()["remaining"] for path in ("/work", "/exempt")
                ]
        return JSONResponse(seen)

    outer = hardened(Starlette(routes=[Route("/call", public()(caller))]), request_timeout=1.0)
    [answer] = await pipelined(outer, Sent("/call"))
    assert all(remaining is not None and remaining <= 0.3 for remaining in answer.json())


async def test_a_mounted_install_behind_a_scope_rebuilding_middleware_keeps_its_deadline() -> None:
    class Rebuild:
        """Passes on a new scope with only the keys the ASGI spec names."""

        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            spec = (
                "type",
                "asgi",
                "http_version",
                "method",
                "scheme",
                "path",
                "raw_path",
                "root_path",
                "query_string",
                "headers",
                "client",
                "server",
                "state",
            )
            await self.app({key: scope[key] for key in spec if key in scope}, receive, send)

    inner = work_and_exempt()
    outer = hardened(Starlette(routes=[Mount("/rebuilt", app=Rebuild(inner))]), request_timeout=1.0)
    answers = await pipelined(outer, Sent("/rebuilt/work"), Sent("/rebuilt/exempt"))
    assert all(0.5 < answer.json()["remaining"] <= 1.0 for answer in answers), answers


class OwnAuth:
    """The application's own authentication around the stack (auth_mode off): it sets the
    principal for a valid credential, and nothing otherwise."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (b"x-user", b"alice") in scope.get("headers", ()):
            token = principal_var.set(Principal("alice", tenant="acme", roles=frozenset({"admin"})))
            try:
                await self.app(scope, receive, send)
            finally:
                principal_var.reset(token)
            return
        await self.app(scope, receive, send)


async def test_an_anonymous_request_never_passes_as_the_caller_the_app_authenticated_before() -> (
    None
):
    @require_roles("admin")
    async def admin(request: Request) -> Response:
        return JSONResponse({"admin": True})

    app = hardened(Starlette(routes=[Route("/admin", admin)]), auth_mode="off")
    app.add_middleware(OwnAuth)
    alice, anonymous = await pipelined(app, Sent("/admin", {"X-User": "alice"}), Sent("/admin"))
    assert (alice.status, anonymous.status) == (200, 401)


async def test_an_apps_deadline_ends_with_its_request() -> None:
    class Budget:
        """The application's own budget, around the stack, for the requests that ask."""

        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if (b"x-budget", b"1") in scope.get("headers", ()):
                with deadline(0.4):
                    await self.app(scope, receive, send)
                return
            await self.app(scope, receive, send)

    app = work_and_exempt()
    app.add_middleware(Budget)
    first, second = await pipelined(app, Sent("/exempt", {"X-Budget": "1"}), Sent("/exempt"))
    assert 0.2 < first.json()["remaining"] <= 0.4
    assert second.json()["remaining"] is None


async def test_code_around_the_stack_sees_none_of_the_previous_requests_facts() -> None:
    seen: list[tuple[str | None, str | None]] = []

    class AccessLog:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            await self.app(scope, receive, send)
            principal = principal_var.get()
            seen.append((get_request_id(), None if principal is None else principal.tenant))

    app = installed()
    app.add_middleware(AccessLog)
    await pipelined(app, Sent("/me", bearer("acme")), Sent("/"), Sent("/"))
    assert seen == [(None, None)] * 3


async def test_middleware_around_the_stack_keeps_its_own_context_on_the_last_message() -> None:
    # Only the facts are cleared for the last send: a tracing span or a logger's bound
    # variables of a middleware around the stack are still there when the response ends.
    own: ContextVar[str | None] = ContextVar("around_the_stack", default=None)
    seen: list[str | None] = []

    class CompletionHook:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            token = own.set("span-1")

            async def hooked(message: Message) -> None:
                if message["type"] == "http.response.body" and not message.get("more_body"):
                    seen.append(own.get())
                await send(message)

            try:
                await self.app(scope, receive, hooked)
            finally:
                own.reset(token)

    app = installed()
    app.add_middleware(CompletionHook)
    await pipelined(app, Sent("/me", bearer("acme")), Sent("/"))
    assert seen == ["span-1", "span-1"]
