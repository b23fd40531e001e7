"""SecurityHeadersMiddleware on its own: what each kind of response carries."""

from __future__ import annotations

import dataclasses
import re

import pytest
from fastapi import Depends, FastAPI
from fastapi.responses import HTMLResponse as FastAPIHTMLResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from hardenkit.headers import (
    CSP,
    HeaderPolicy,
    SecurityHeadersMiddleware,
    get_csp_nonce,
    header_policy,
    header_policy_dependency,
)
from tests.headers.asgi import call

COMMON = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "x-permitted-cross-domain-policies": "none",
}
# What a document does: on pages only, never on a JSON or problem body.
HTML_ONLY = {"origin-agent-cluster": "?1", "x-dns-prefetch-control": "off"}
HTML_CSP = re.compile(
    r"default-src 'self'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'; "
    r"object-src 'none'; script-src 'self' 'nonce-(?P<nonce>[A-Za-z0-9_-]{22})'; "
    r"style-src 'self' 'nonce-(?P=nonce)'; img-src 'self' data:"
    r"(?P<upgrade>; upgrade-insecure-requests)?"
)
API_CSP = "default-src 'none'; frame-ancestors 'none'"
HSTS = "max-age=63072000; includeSubDomains"


def assert_common_headers(headers: dict[str, str] | object) -> None:
    for name, value in COMMON.items():
        assert headers[name] == value, name  # type: ignore[index]
    content_type: str = headers.get("content-type", "")  # type: ignore[attr-defined]
    if content_type.startswith("text/html"):
        for name, value in HTML_ONLY.items():
            assert headers[name] == value, name  # type: ignore[index]
    else:
        for name in HTML_ONLY:
            assert name not in headers, name  # type: ignore[operator]
    permissions = headers["permissions-policy"]  # type: ignore[index]
    for feature in ("camera=()", "microphone=()", "geolocation=()", "payment=()", "usb=()"):
        assert feature in permissions
    assert "cross-origin-embedder-policy" not in headers  # type: ignore[operator]


async def page(request: Request) -> Response:
    nonce = request.state.csp_nonce
    assert get_csp_nonce() == nonce
    return HTMLResponse(f'<script nonce="{nonce}">go()</script><style nonce="{nonce}"></style>')


async def api(request: Request) -> Response:
    return JSONResponse({"ok": True})


async def leaky(request: Request) -> Response:
    return PlainTextResponse(
        "x", headers={"Server": "gunicorn/1.0", "X-Powered-By": "PHP/5", "X-AspNet-Version": "4"}
    )


async def own_headers(request: Request) -> Response:
    return HTMLResponse(
        "<p>framed</p>",
        headers={
            "X-Frame-Options": "SAMEORIGIN",
            "Content-Security-Policy": "default-src 'self'; frame-ancestors 'self'",
            "Cache-Control": "max-age=60",
            "Referrer-Policy": "same-origin",
        },
    )


async def cached_api(request: Request) -> Response:
    return JSONResponse({"ok": True}, headers={"Cache-Control": "public, max-age=300"})


def make_app(**options: object) -> Starlette:
    app = Starlette(
        routes=[
            Route("/", page),
            Route("/api", api),
            Route("/leaky", leaky),
            Route("/own", own_headers),
            Route("/cached", cached_api),
        ]
    )
    app.add_middleware(SecurityHeadersMiddleware, **options)  # type: ignore[arg-type]
    return app


def test_html_response_gets_the_strict_csp_with_a_nonce_and_every_common_header() -> None:
    response = TestClient(make_app(), base_url="https://testserver").get("/")
    assert_common_headers(response.headers)
    match = HTML_CSP.fullmatch(response.headers["content-security-policy"])
    assert match is not None, response.headers["content-security-policy"]
    assert match["upgrade"]
    assert response.headers["strict-transport-security"] == HSTS
    assert "cache-control" not in response.headers


def test_api_response_gets_the_locked_down_csp_and_no_store() -> None:
    response = TestClient(make_app(), base_url="https://testserver").get("/api")
    assert_common_headers(response.headers)
    assert response.headers["content-security-policy"] == API_CSP
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["strict-transport-security"] == HSTS


def test_nonce_differs_per_request_and_matches_the_page() -> None:
    client = TestClient(make_app())
    nonces = []
    for _ in range(5):
        response = client.get("/")
        match = HTML_CSP.fullmatch(response.headers["content-security-policy"])
        assert match is not None
        nonce = match["nonce"]
        assert f'<script nonce="{nonce}">' in response.text
        assert f'<style nonce="{nonce}">' in response.text
        nonces.append(nonce)
    assert len(set(nonces)) == 5


def test_plain_http_gets_no_hsts_and_no_upgrade_insecure_requests() -> None:
    response = TestClient(make_app(), base_url="http://127.0.0.1").get("/")
    assert "strict-transport-security" not in response.headers
    assert "upgrade-insecure-requests" not in response.headers["content-security-policy"]
    assert_common_headers(response.headers)


def test_headers_naming_the_stack_are_removed() -> None:
    response = TestClient(make_app()).get("/leaky")
    for name in ("server", "x-powered-by", "x-aspnet-version"):
        assert name not in response.headers


def test_headers_the_app_set_itself_are_kept_and_never_duplicated() -> None:
    response = TestClient(make_app()).get("/own")
    raw = [name.lower() for name, _ in response.headers.multi_items()]
    assert len(raw) == len(set(raw)), raw
    assert response.headers["x-frame-options"] == "SAMEORIGIN"
    assert response.headers["content-security-policy"] == (
        "default-src 'self'; frame-ancestors 'self'"
    )
    assert response.headers["referrer-policy"] == "same-origin"
    assert response.headers["cache-control"] == "max-age=60"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_policy_can_replace_the_apps_headers_without_duplicating_them() -> None:
    client = TestClient(make_app(policy=HeaderPolicy(keep_app_headers=False)))
    response = client.get("/own")
    raw = [name.lower() for name, _ in response.headers.multi_items()]
    assert len(raw) == len(set(raw)), raw
    assert response.headers["x-frame-options"] == "DENY"
    assert HTML_CSP.fullmatch(response.headers["content-security-policy"])
    # Caching stays the application's decision.
    assert response.headers["cache-control"] == "max-age=60"


def test_api_cache_control_set_by_the_app_is_kept() -> None:
    response = TestClient(make_app()).get("/cached")
    assert response.headers["cache-control"] == "public, max-age=300"


async def test_mixed_case_header_names_from_a_raw_asgi_app_are_not_duplicated() -> None:
    async def raw_app(scope: dict[str, object], receive: object, send: object) -> None:
        await send(  # type: ignore[operator]
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"Content-Type", b"text/html"), (b"X-Frame-Options", b"SAMEORIGIN")],
            }
        )
        await send({"type": "http.response.body", "body": b"<p>hi</p>"})  # type: ignore[operator]

    captured = await call(SecurityHeadersMiddleware(raw_app))  # type: ignore[arg-type]
    assert captured.header("x-frame-options") == "SAMEORIGIN"
    assert captured.header("content-security-policy") is not None
    assert "nonce-" in (captured.header("content-security-policy") or "")


def test_report_only_mode_sends_the_policy_under_the_report_only_name() -> None:
    policy = HeaderPolicy(csp_report_only=True, report_path="/csp-report")
    response = TestClient(make_app(policy=policy)).get("/")
    assert "content-security-policy" not in response.headers
    value = response.headers["content-security-policy-report-only"]
    assert value.endswith("; report-uri /csp-report; report-to csp-endpoint")
    assert response.headers["reporting-endpoints"] == 'csp-endpoint="/csp-report"'


def test_coep_is_available_but_off_by_default() -> None:
    policy = HeaderPolicy(cross_origin_embedder_policy="require-corp")
    response = TestClient(make_app(policy=policy)).get("/api")
    assert response.headers["cross-origin-embedder-policy"] == "require-corp"


def test_preload_is_sent_only_when_configured() -> None:
    policy = HeaderPolicy(hsts_preload=True)
    response = TestClient(make_app(policy=policy), base_url="https://testserver").get("/api")
    assert response.headers["strict-transport-security"] == HSTS + "; preload"


def test_path_map_gives_routes_their_own_policy() -> None:
    framable = dataclasses.replace(HeaderPolicy(), frame_options="SAMEORIGIN")
    client = TestClient(make_app(routes={"/api*": framable}))
    assert client.get("/api").headers["x-frame-options"] == "SAMEORIGIN"
    assert client.get("/").headers["x-frame-options"] == "DENY"


def test_route_decorator_and_fastapi_dependency_choose_the_policy() -> None:
    embed_policy = dataclasses.replace(
        HeaderPolicy(),
        frame_options="SAMEORIGIN",
        html_csp=CSP(default_src=["'self'"], frame_ancestors=["'self'"]),
    )
    app = FastAPI()

    @app.get("/decorated/{item}", response_class=FastAPIHTMLResponse)
    @header_policy(embed_policy)
    async def decorated(item: int) -> str:
        return f"<p>{item}</p>"

    @app.get("/sync-decorated", response_class=FastAPIHTMLResponse)
    @header_policy(embed_policy)
    def sync_decorated() -> str:
        return "<p>sync</p>"

    @app.get(
        "/dependency",
        response_class=FastAPIHTMLResponse,
        dependencies=[Depends(header_policy_dependency(embed_policy))],
    )
    async def dependency() -> str:
        return "<p>dep</p>"

    @app.get("/plain", response_class=FastAPIHTMLResponse)
    async def plain() -> str:
        return "<p>plain</p>"

    app.add_middleware(SecurityHeadersMiddleware)
    client = TestClient(app)
    for path in ("/decorated/7", "/sync-decorated", "/dependency"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["x-frame-options"] == "SAMEORIGIN", path
        assert response.headers["content-security-policy"] == (
            "default-src 'self'; frame-ancestors 'self'"
        )
    assert client.get("/decorated/x").status_code == 422  # parameters still validated
    assert client.get("/plain").headers["x-frame-options"] == "DENY"


def test_route_policy_must_be_a_header_policy() -> None:
    with pytest.raises(TypeError):
        SecurityHeadersMiddleware(make_app(), routes={"/x": "DENY"})  # type: ignore[dict-item]


async def test_websocket_and_lifespan_scopes_pass_through_untouched() -> None:
    seen: list[str] = []

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        seen.append(str(scope["type"]))

    middleware = SecurityHeadersMiddleware(app)  # type: ignore[arg-type]
    await middleware({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    await middleware({"type": "websocket", "path": "/ws"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan", "websocket"]


def test_a_refused_websocket_handshake_gets_the_api_security_headers() -> None:
    from starlette.testclient import WebSocketDenialResponse

    from hardenkit.errors import ErrorCode, Refusal, send_refusal

    async def refuse(scope: dict[str, object], receive: object, send: object) -> None:
        refusal = Refusal(429, ErrorCode.RATE_LIMITED, headers=(("Server", "leaky/1.0"),))
        await send_refusal(send, scope, refusal)  # type: ignore[arg-type]

    client = TestClient(SecurityHeadersMiddleware(refuse))  # type: ignore[arg-type]
    with pytest.raises(WebSocketDenialResponse) as refused, client.websocket_connect("/ws"):
        pass
    response = refused.value
    assert response.status_code == 429
    assert_common_headers(response.headers)
    assert response.headers["content-security-policy"] == API_CSP
    assert response.headers["cache-control"] == "no-store"
    assert "server" not in response.headers
    assert "strict-transport-security" not in response.headers  # ws://, not wss://


def test_a_json_response_draws_no_nonce_and_an_html_page_draws_the_one_it_shows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    drawn: list[str] = []

    def token_urlsafe(size: int) -> str:
        drawn.append("n" * 22)
        return drawn[-1]

    monkeypatch.setattr("hardenkit.headers._nonce.secrets.token_urlsafe", token_urlsafe)
    client = TestClient(make_app(), base_url="https://testserver")
    assert client.get("/api").headers["content-security-policy"] == API_CSP
    assert drawn == []
    page_response = client.get("/")
    assert drawn == ["n" * 22]
    assert f"'nonce-{drawn[0]}'" in page_response.headers["content-security-policy"]
    assert f'nonce="{drawn[0]}"' in page_response.text


def test_what_the_handler_stores_in_request_state_reaches_the_original_state_dict() -> None:
    async def handler(request: Request) -> Response:
        request.state.user = "alice"
        return JSONResponse({"nonce_read": len(request.state.csp_nonce)})

    original: dict[str, object] = {"from_lifespan": 1}
    seen: list[object] = []

    async def outer(scope: dict[str, object], receive: object, send: object) -> None:
        scope["state"] = original
        await inner(scope, receive, send)  # type: ignore[arg-type]
        seen.append(scope["state"])

    inner = SecurityHeadersMiddleware(Starlette(routes=[Route("/", handler)]))
    response = TestClient(outer).get("/")
    assert response.json() == {"nonce_read": 22}
    assert original["user"] == "alice"
    assert original["from_lifespan"] == 1
    assert seen == [original]
    assert seen[0] is original  # the server's dict again, once the middleware returns


def test_obsolete_headers_are_sent_only_when_asked_for() -> None:
    default = TestClient(make_app()).get("/api").headers
    assert "x-xss-protection" not in default
    assert "x-download-options" not in default
    legacy = TestClient(make_app(policy=HeaderPolicy(legacy_headers=True))).get("/api").headers
    assert legacy["x-xss-protection"] == "0"
    assert legacy["x-download-options"] == "noopen"


@pytest.mark.parametrize("served", ["root_path", "mount"])
def test_reports_go_to_the_report_route_where_a_path_prefix_serves_it(served: str) -> None:
    """Under ``--root-path`` or a ``Mount`` the report route answers at the prefix plus
    its path: that is where browsers must post (not to a path the proxy does not route)."""
    policy = HeaderPolicy(report_path="/csp-report")
    inner = make_app(policy=policy)
    if served == "mount":
        client = TestClient(Starlette(routes=[Mount("/svc", app=inner)]))
        path = "/svc/"
    else:
        client = TestClient(inner, root_path="/svc")
        path = "/"
    for route in (path, path + "api"):
        headers = client.get(route).headers
        assert "report-uri /svc/csp-report" in headers["content-security-policy"]
        assert headers["reporting-endpoints"] == 'csp-endpoint="/svc/csp-report"'
    plain = TestClient(make_app(policy=policy)).get("/").headers
    assert "report-uri /csp-report" in plain["content-security-policy"]
    assert policy.at_root("/svc") is policy.at_root("/svc")  # compiled once


def test_a_report_url_elsewhere_is_not_prefixed_with_the_root_path() -> None:
    policy = HeaderPolicy(report_path="https://reports.example.com/csp")
    assert policy.at_root("/svc") is policy
    headers = TestClient(make_app(policy=policy), root_path="/svc").get("/").headers
    assert "report-uri https://reports.example.com/csp" in headers["content-security-policy"]
