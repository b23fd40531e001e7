"""The headers, CORS and timeout layers as install() wires them, on every kind of response."""

from __future__ import annotations

import asyncio

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from hardenkit import ErrorCode, HardenError, HardenSettings, install
from tests.headers.asgi import call
from tests.headers.test_middleware import API_CSP, HSTS, HTML_CSP, assert_common_headers

ORIGIN = "https://app.example"


async def page(request: Request) -> Response:
    return HTMLResponse(f'<script nonce="{request.state.csp_nonce}">1</script>')


async def api(request: Request) -> Response:
    return JSONResponse({"ok": True})


async def crash(request: Request) -> Response:
    raise RuntimeError("boom")


async def slow(request: Request) -> Response:
    await asyncio.sleep(5)
    return JSONResponse({"late": True})


class StandInRefusals:
    """Refuses like the inner layers do (rate limit, auth), raising HardenError from middleware."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/limited":
            raise HardenError(ErrorCode.RATE_LIMITED, status=429, headers={"Retry-After": "7"})
        if scope["type"] == "http" and scope["path"].startswith("/private"):
            raise HardenError(ErrorCode.AUTHENTICATION_ERROR, status=401)
        await self.app(scope, receive, send)


def make_app(**settings: object) -> Starlette:
    app = Starlette(
        routes=[
            Route("/", page),
            Route("/api", api),
            Route("/crash", crash),
            Route("/slow", slow),
            Route("/private/items", api, methods=["GET", "DELETE"]),
        ]
    )
    app.add_middleware(StandInRefusals)  # added first: innermost, like auth and rate limits
    values: dict[str, object] = {"auth_mode": "off", "request_timeout": 0.3}
    values.update(settings)
    install(app, HardenSettings(**values))  # type: ignore[arg-type]
    return app


@pytest.mark.parametrize(
    ("path", "status"),
    [("/api", 200), ("/nope", 404), ("/limited", 429), ("/crash", 500), ("/slow", 504)],
)
def test_every_response_hardenkit_produces_carries_every_header(path: str, status: int) -> None:
    client = TestClient(make_app(), base_url="https://testserver", raise_server_exceptions=False)
    response = client.get(path)
    assert response.status_code == status
    assert_common_headers(response.headers)
    assert response.headers["strict-transport-security"] == HSTS
    assert response.headers["content-security-policy"] == API_CSP
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-request-id"]
    if status >= 400:
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == status


def test_html_page_through_install_gets_the_nonce_policy() -> None:
    response = TestClient(make_app(), base_url="https://testserver").get("/")
    match = HTML_CSP.fullmatch(response.headers["content-security-policy"])
    assert match is not None
    assert f'nonce="{match["nonce"]}"' in response.text
    assert_common_headers(response.headers)


async def test_hsts_follows_the_scheme_a_trusted_proxy_reports_and_never_plain_loopback() -> None:
    app = make_app(trusted_proxies=["10.0.0.0/8"])
    forwarded = [(b"x-forwarded-for", b"203.0.113.9"), (b"x-forwarded-proto", b"https")]
    behind_tls = await call(app, "/api", client=("10.1.2.3", 4000), headers=forwarded)
    assert behind_tls.header("strict-transport-security") == HSTS
    spoofed = await call(app, "/api", client=("127.0.0.1", 4000), headers=forwarded)
    assert spoofed.header("strict-transport-security") is None
    loopback = await call(app, "/", client=("127.0.0.1", 4000))
    assert loopback.header("strict-transport-security") is None
    assert "upgrade-insecure-requests" not in (loopback.header("content-security-policy") or "")


def test_cors_preflight_is_answered_before_auth_could_refuse_it() -> None:
    client = TestClient(make_app(cors_origins=[ORIGIN]))
    response = client.options(
        "/private/items",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "DELETE",
            "Access-Control-Request-Headers": "authorization, x-request-id",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert "DELETE" in response.headers["access-control-allow-methods"]
    allowed = response.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed
    assert "x-request-id" in allowed
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(("path", "status"), [("/private/items", 401), ("/limited", 429)])
def test_refusals_carry_cors_headers_so_the_page_can_read_them(path: str, status: int) -> None:
    client = TestClient(make_app(cors_origins=[ORIGIN]))
    response = client.get(path, headers={"Origin": ORIGIN})
    assert response.status_code == status
    assert response.headers["access-control-allow-origin"] == ORIGIN
    exposed = response.headers["access-control-expose-headers"].lower()
    assert "x-request-id" in exposed
    assert "retry-after" in exposed


def test_crashes_and_timeouts_carry_cors_headers_too() -> None:
    client = TestClient(make_app(cors_origins=[ORIGIN]), raise_server_exceptions=False)
    for path, status in (("/crash", 500), ("/slow", 504)):
        response = client.get(path, headers={"Origin": ORIGIN})
        assert response.status_code == status
        assert response.headers["access-control-allow-origin"] == ORIGIN


def test_other_origins_get_no_cors_grant() -> None:
    client = TestClient(make_app(cors_origins=[ORIGIN]))
    response = client.get("/api", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers


def test_no_cors_layer_without_origins() -> None:
    client = TestClient(make_app())
    response = client.get("/api", headers={"Origin": ORIGIN})
    assert "access-control-allow-origin" not in response.headers
    assert all("CORS" not in layer.cls.__name__ for layer in client.app.state.hardenkit.middleware)  # type: ignore[attr-defined]


def test_stack_order_puts_headers_and_cors_outside_errors_and_the_timeout_inside() -> None:
    app = make_app(cors_origins=[ORIGIN])
    names = [layer.cls.__name__ for layer in app.state.hardenkit.middleware]
    assert names.index("TrustedProxyMiddleware") < names.index("SecurityHeadersMiddleware")
    assert names.index("SecurityHeadersMiddleware") < names.index("CORSMiddleware")
    assert names.index("CORSMiddleware") < names.index("ErrorMiddleware")
    assert names.index("ErrorMiddleware") < names.index("TimeoutMiddleware")
    assert names.index("TimeoutMiddleware") == names.index("ErrorMiddleware") + 1


def test_csp_report_route_is_added_when_configured() -> None:
    client = TestClient(make_app(csp_report_path="/csp-report"))
    page_response = client.get("/")
    assert "report-uri /csp-report" in page_response.headers["content-security-policy"]
    report = client.post(
        "/csp-report",
        content=b'{"csp-report": {"document-uri": "http://testserver/", "blocked-uri": "inline"}}',
        headers={"content-type": "application/csp-report"},
    )
    assert report.status_code == 204


def test_with_the_real_auth_and_rate_limit_layers_refusals_carry_every_header() -> None:
    app = Starlette(routes=[Route("/private/items", api, methods=["GET", "DELETE"])])
    install(
        app,
        HardenSettings(
            jwt_secret="q7Vt0yJw3mZ8rXc2LpN5sK1eH4uB9aG6dF0iO3nT7vY",
            cors_origins=[ORIGIN],
            rate_limit_default="3/1m",
        ),
    )
    client = TestClient(app, base_url="https://testserver")
    preflight = client.options(
        "/private/items",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "DELETE"},
    )
    assert preflight.status_code == 200  # answered by CORS; auth never saw it
    assert preflight.headers["access-control-allow-origin"] == ORIGIN

    statuses = []
    for _ in range(4):
        response = client.get("/private/items", headers={"Origin": ORIGIN})
        statuses.append(response.status_code)
        assert response.headers["access-control-allow-origin"] == ORIGIN
        assert_common_headers(response.headers)
        assert response.headers["strict-transport-security"] == HSTS
        assert response.headers["content-security-policy"] == API_CSP
        assert response.headers["content-type"] == "application/problem+json"
    assert statuses[0] == 401
    assert statuses[-1] == 429
