"""AuthMiddleware: status codes, challenges, tenant binding, modes, websockets."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocket
from structlog.testing import capture_logs

from hardenkit import AuthMiddleware, JWTVerifier, get_principal
from hardenkit.auth import APIKeyGuard, TenantStatusCache, hash_api_key
from hardenkit.auth.tenants import TenantResolver
from hardenkit.errors import ErrorMiddleware
from tests.auth.support import AUDIENCE, ISSUER, SECRET, claims, hs256


async def echo(request: Request) -> Response:
    principal = request.state.principal
    assert get_principal() is principal
    return JSONResponse(
        {
            "subject": principal.subject,
            "tenant": principal.tenant,
            "tenant_header": request.headers.getlist("x-tenant-id"),
            "alias_header": request.headers.getlist("x-client-id"),
            "credential": principal.credential,
        }
    )


async def open_route(request: Request) -> Response:
    return JSONResponse({"principal": get_principal() is not None})


async def ws_endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json({"tenant": websocket.scope["state"]["principal"].tenant})
    await websocket.close()


def make_app(**options: Any) -> Starlette:
    verifier = options.pop(
        "verifier", JWTVerifier(secret=SECRET, issuer=ISSUER, audience=[AUDIENCE])
    )
    options.setdefault("public_paths", ["/healthz", "/open/*"])
    inner = Starlette(
        routes=[
            Route("/me", echo),
            Route("/tenants/{tenant_id}/items", echo),
            Mount("/v1", routes=[Route("/tenants/{tenant_id}/orders", echo)]),
            Route("/open/page", open_route),
            Route("/healthz", open_route),
            Route("/service/stats", echo),
            WebSocketRoute("/ws", ws_endpoint),
        ]
    )
    inner.add_middleware(AuthMiddleware, verifier=verifier, **options)
    inner.add_middleware(ErrorMiddleware)
    return inner


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(make_app())


def test_a_valid_token_reaches_the_route_with_its_principal(client: TestClient) -> None:
    response = client.get("/me", headers=bearer(hs256()))
    assert response.status_code == 200
    assert response.json()["subject"] == "user-1"
    assert response.json()["tenant"] == "acme"


def test_no_token_gets_401_with_a_bearer_challenge_and_no_error_code(client: TestClient) -> None:
    response = client.get("/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="api"'
    body = response.json()
    assert body["code"] == "AUTHENTICATION_ERROR"
    assert body["detail"] == "Authentication is required."
    assert response.headers["content-type"] == "application/problem+json"


def test_an_invalid_token_gets_invalid_token_challenge_and_no_echo(client: TestClient) -> None:
    token = hs256(claims(aud="other-api"))
    response = client.get("/me", headers=bearer(token))
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert 'error="invalid_token"' in challenge
    assert "audience" not in response.text.lower()
    assert token not in response.text
    assert token.split(".")[1] not in response.text


def test_an_expired_token_says_expired_only(client: TestClient) -> None:
    token = hs256(claims(iat=1_000_000, exp=1_000_060))
    response = client.get("/me", headers=bearer(token))
    assert response.status_code == 401
    assert response.json()["detail"] == "The access token expired."


@pytest.mark.parametrize(
    "authorization",
    ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Token abc", "Bearer a b c", "bearer"],
)
def test_a_malformed_authorization_header_gets_401(client: TestClient, authorization: str) -> None:
    response = client.get("/me", headers={"Authorization": authorization})
    assert response.status_code == 401


def test_the_bearer_scheme_is_case_insensitive(client: TestClient) -> None:
    assert client.get("/me", headers={"Authorization": f"bEaReR {hs256()}"}).status_code == 200


def test_an_oversized_authorization_header_gets_401_before_parsing(client: TestClient) -> None:
    response = client.get("/me", headers={"Authorization": "Bearer " + "a" * 100 * 1024})
    assert response.status_code == 401


def test_two_authorization_headers_are_refused(client: TestClient) -> None:
    response = client.get(
        "/me", headers=[("Authorization", f"Bearer {hs256()}"), ("Authorization", "Bearer x")]
    )
    assert response.status_code == 401


def test_a_matching_tenant_header_passes_and_is_rewritten(client: TestClient) -> None:
    response = client.get("/me", headers={**bearer(hs256()), "X-Tenant-ID": "acme"})
    assert response.status_code == 200
    assert response.json()["tenant_header"] == ["acme"]


def test_an_absent_tenant_header_is_set_to_the_verified_tenant(client: TestClient) -> None:
    response = client.get("/me", headers=bearer(hs256()))
    assert response.json()["tenant_header"] == ["acme"]


def test_a_tenant_header_mismatch_gets_403_tenant_mismatch(client: TestClient) -> None:
    response = client.get("/me", headers={**bearer(hs256()), "X-Tenant-ID": "globex"})
    assert response.status_code == 403
    assert response.json()["code"] == "TENANT_MISMATCH"


def test_two_different_tenant_headers_are_a_mismatch(client: TestClient) -> None:
    headers = [("Authorization", f"Bearer {hs256()}"), ("X-Tenant-ID", "acme")]
    headers.append(("X-Tenant-ID", "globex"))
    assert client.get("/me", headers=headers).status_code == 403


def _wsgi_environ(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("content-type", "application/json")])
    return [json.dumps({k: v for k, v in environ.items() if k.startswith("HTTP_X_")}).encode()]


def _wsgi_tenant(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("content-type", "text/plain")])
    return [environ.get("HTTP_X_TENANT_ID", "").encode()]


@pytest.mark.parametrize("spelling", ["X_Tenant_ID", "x-tenant_id", "X_TENANT-ID"])
def test_an_underscore_spelling_of_the_tenant_header_is_the_tenant_header(spelling: str) -> None:
    # An attacker round: a CGI-style environ (WSGI, Django) reads X_Tenant_ID as the
    # tenant header and joins it with the verified one; a mounted WSGI app got
    # "globex,acme" for an acme token.
    from starlette.middleware.wsgi import WSGIMiddleware  # deprecated: imported here only

    app = make_app()
    app.router.routes.append(Mount("/legacy", app=WSGIMiddleware(_wsgi_tenant)))
    client = TestClient(app)
    spoofed = client.get("/legacy/x", headers={**bearer(hs256()), spelling: "globex"})
    assert spoofed.status_code == 403
    assert spoofed.json()["code"] == "TENANT_MISMATCH"
    same = client.get("/legacy/x", headers={**bearer(hs256()), spelling: "acme"})
    assert same.status_code == 200
    assert same.text == "acme"  # one value: the client's spelling was removed
    echoed = client.get("/me", headers={**bearer(hs256()), spelling: "acme"})
    assert echoed.json()["tenant_header"] == ["acme"]


@pytest.mark.parametrize(
    ("configured", "sent"),
    [
        ({"tenant_header": "X_Tenant"}, "x-tenant"),
        ({"tenant_header_aliases": ["X_Org_ID"]}, "x-org-id"),
        ({"tenant_header_aliases": ["X-Acme-Corp-EU-West-1-Tenant-Id"]},
         "x_acme-corp_eu-west_1-tenant_id"),
    ],
)  # fmt: skip
def test_a_configured_header_is_read_in_every_spelling_of_it(
    configured: dict[str, Any], sent: str
) -> None:
    # The re-check: a header configured with `_` was not read when sent with `-`, and
    # long names were read in only two of their spellings.
    from starlette.middleware.wsgi import WSGIMiddleware  # deprecated: imported here only

    app = make_app(**configured)
    app.router.routes.append(Mount("/legacy", app=WSGIMiddleware(_wsgi_environ)))
    client = TestClient(app)
    spoofed = client.get("/legacy/x", headers={**bearer(hs256()), sent: "globex"})
    assert spoofed.status_code == 403
    same = client.get("/legacy/x", headers={**bearer(hs256()), sent: "acme"})
    assert same.status_code == 200
    assert "globex" not in same.text


def test_a_path_tenant_mismatch_gets_403(client: TestClient) -> None:
    assert client.get("/tenants/acme/items", headers=bearer(hs256())).status_code == 200
    response = client.get("/tenants/globex/items", headers=bearer(hs256()))
    assert response.status_code == 403
    assert response.json()["code"] == "TENANT_MISMATCH"


def test_a_path_tenant_inside_a_mount_is_checked_too(client: TestClient) -> None:
    assert client.get("/v1/tenants/acme/orders", headers=bearer(hs256())).status_code == 200
    assert client.get("/v1/tenants/globex/orders", headers=bearer(hs256())).status_code == 403


def test_public_paths_need_no_token(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"principal": False}
    assert client.get("/open/page").status_code == 200


def test_a_prefix_public_path_does_not_open_its_siblings(client: TestClient) -> None:
    assert client.get("/openly").status_code == 401


def test_the_alias_header_is_checked_and_rewritten() -> None:
    client = TestClient(make_app(tenant_header_aliases=["X-Client-ID"]))
    ok = client.get("/me", headers={**bearer(hs256()), "X-Client-ID": "acme"})
    assert ok.status_code == 200
    assert ok.json()["alias_header"] == []
    assert ok.json()["tenant_header"] == ["acme"]
    bad = client.get("/me", headers={**bearer(hs256()), "X-Client-ID": "globex"})
    assert bad.status_code == 403


def test_refusals_are_audited_once_each_without_the_token(client: TestClient) -> None:
    token = hs256(claims(aud="other-api"))
    with capture_logs() as logs:
        client.get("/me", headers=bearer(token))
        client.get("/me", headers={**bearer(hs256()), "X-Tenant-ID": "globex"})
    audits = [entry for entry in logs if entry.get("audit")]
    assert [(entry["event_type"], entry["reason"]) for entry in audits] == [
        ("auth", "wrong_audience"),
        ("tenant_mismatch", "tenant_header_mismatch"),
    ]
    assert audits[1]["actor"] == "user-1"
    assert audits[1]["tenant"] == "acme"
    assert audits[1]["details"]["requested_tenant"] == "globex"
    assert token not in repr(logs)
    assert token.split(".")[2] not in repr(logs)


def test_report_only_lets_bad_requests_through_and_logs_each() -> None:
    client = TestClient(make_app(mode="report_only"))
    with capture_logs() as logs:
        assert client.get("/open/page").status_code == 200
        no_token = client.get("/tenants/acme/items")
        assert no_token.status_code == 500  # the route itself needs a principal; none was set
        mismatch = client.get("/me", headers={**bearer(hs256()), "X-Tenant-ID": "globex"})
    assert mismatch.status_code == 200
    assert mismatch.json()["tenant_header"] == ["globex"]  # report_only changes nothing
    let_through = [entry for entry in logs if entry["event"] == "auth_report_only_let_through"]
    assert [entry["log_level"] for entry in let_through] == ["warning", "warning"]
    assert [entry["reason"] for entry in let_through] == ["missing", "tenant_header_mismatch"]
    # Plain strings: the redactor hides an enum member named like a secret (BAD_API_KEY).
    assert all(type(entry["reason"]) is str for entry in let_through)
    outcomes = [entry["outcome"] for entry in logs if entry.get("audit")]
    assert outcomes == ["report_only_allowed", "report_only_allowed"]


def test_off_mode_passes_everything() -> None:
    client = TestClient(make_app(mode="off"))
    assert client.get("/open/page").status_code == 200
    assert client.get("/healthz").json() == {"principal": False}


def test_without_a_key_source_every_protected_request_is_refused() -> None:
    client = TestClient(make_app(verifier=None))
    assert client.get("/me", headers=bearer(hs256())).status_code == 401
    assert client.get("/healthz").status_code == 200


def test_a_websocket_with_a_valid_token_connects() -> None:
    client = TestClient(make_app())
    with client.websocket_connect("/ws", headers=bearer(hs256())) as ws:
        assert ws.receive_json() == {"tenant": "acme"}


def test_a_websocket_without_a_token_gets_a_401_denial_response() -> None:
    client = TestClient(make_app())
    with pytest.raises(WebSocketDenialResponse) as denied, client.websocket_connect("/ws"):
        pass
    assert denied.value.status_code == 401
    assert denied.value.json()["code"] == "AUTHENTICATION_ERROR"


async def test_a_websocket_refused_on_a_server_without_denial_responses_is_closed() -> None:
    app = AuthMiddleware(
        ws_endpoint, verifier=JWTVerifier(secret=SECRET, issuer=ISSUER, audience=[AUDIENCE])
    )
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": "/ws", "headers": [], "query_string": b""}
    await app(scope, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": ""}]


class Suspended(TenantResolver):
    def __init__(self) -> None:
        self.calls = 0

    async def is_active(self, tenant_id: str) -> bool:
        self.calls += 1
        return tenant_id != "acme"


class Broken(TenantResolver):
    async def is_active(self, tenant_id: str) -> bool:
        raise ConnectionError("accounts db down")


def test_an_inactive_tenant_is_refused_and_the_answer_is_cached() -> None:
    resolver = Suspended()
    client = TestClient(make_app(tenant_status=TenantStatusCache(resolver, ttl=60)))
    for _ in range(5):
        response = client.get("/me", headers=bearer(hs256()))
        assert response.status_code == 403
        assert response.json()["code"] == "AUTHORIZATION_ERROR"
    assert resolver.calls == 1
    other = client.get("/me", headers=bearer(hs256(claims(tenant_id="globex"))))
    assert other.status_code == 200


def test_a_resolver_that_fails_closes_the_door_with_503() -> None:
    client = TestClient(make_app(tenant_status=TenantStatusCache(Broken())))
    response = client.get("/me", headers=bearer(hs256()))
    assert response.status_code == 503
    assert "accounts db" not in response.text


def test_multi_membership_lets_the_request_pick_one_of_its_tenants() -> None:
    verifier = JWTVerifier(secret=SECRET, issuer=ISSUER, audience=[AUDIENCE], multi_tenant=True)
    client = TestClient(make_app(verifier=verifier))
    token = hs256(claims(tenant_id=["acme", "globex"]))
    picked = client.get("/me", headers={**bearer(token), "X-Tenant-ID": "globex"})
    assert picked.json()["tenant"] == "globex"
    assert client.get("/tenants/acme/items", headers=bearer(token)).json()["tenant"] == "acme"
    outsider = client.get("/me", headers={**bearer(token), "X-Tenant-ID": "initech"})
    assert outsider.status_code == 403
    unpicked = client.get("/me", headers=bearer(token))
    assert unpicked.status_code == 403


def test_api_key_paths_take_an_api_key_instead_of_a_jwt() -> None:
    guard = APIKeyGuard([f"ops:{hash_api_key('k' * 40)}"])
    client = TestClient(make_app(api_key_guard=guard, api_key_paths=["/service/*"]))
    ok = client.get("/service/stats", headers={"X-API-Key": "k" * 40})
    assert ok.status_code == 200
    assert ok.json()["credential"] == "api_key"
    assert client.get("/service/stats", headers=bearer(hs256())).status_code == 401
    assert client.get("/service/stats", headers={"X-API-Key": "wrong"}).status_code == 401


def test_an_api_key_acts_for_no_tenant_so_a_request_naming_one_is_refused() -> None:
    """A key has no tenant to bind to: a tenant in the path, the query or the header was
    the client's choice, unchecked (new-user review: one partner key read every tenant)."""
    guard = APIKeyGuard([f"partner:{hash_api_key('k' * 40)}"])
    client = TestClient(make_app(api_key_guard=guard, api_key_paths=["/*"]))
    key = {"X-API-Key": "k" * 40}
    assert client.get("/service/stats", headers=key).status_code == 200
    for path, headers, reason in (
        ("/tenants/globex/items", key, "tenant_path_mismatch"),
        ("/v1/tenants/acme/orders", key, "tenant_path_mismatch"),
        ("/service/stats", {**key, "X-Tenant-ID": "globex"}, "tenant_header_mismatch"),
    ):
        with capture_logs() as logs:
            refused = client.get(path, headers=headers)
        assert refused.status_code == 403, path
        assert refused.json()["code"] == "TENANT_MISMATCH"
        audited = [log for log in logs if log.get("event_type") == "tenant_mismatch"]
        assert [(log["actor"], log["reason"]) for log in audited] == [("partner", reason)]


def test_construction_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="mode"):
        AuthMiddleware(open_route, verifier=None, mode="permissive")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="api_key_guard"):
        AuthMiddleware(open_route, verifier=None, api_key_paths=["/x"])
    with pytest.raises(ValueError, match="paths"):
        AuthMiddleware(open_route, verifier=None, public_paths=["healthz"])


_HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=300)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(authorization=_HEADER_TEXT, tenant=_HEADER_TEXT)
def test_garbage_headers_never_give_a_500(
    client: TestClient, authorization: str, tenant: str
) -> None:
    response = client.get("/me", headers={"Authorization": authorization, "X-Tenant-ID": tenant})
    assert response.status_code in {401, 403}
    assert json.loads(response.text)["code"] in {"AUTHENTICATION_ERROR", "TENANT_MISMATCH"}


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    segments=st.lists(
        st.text(
            alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=.",
            max_size=80,
        ),
        min_size=1,
        max_size=6,
    )
)
def test_garbage_tokens_never_give_a_500(client: TestClient, segments: list[str]) -> None:
    response = client.get("/me", headers=bearer(".".join(segments) or "x"))
    assert response.status_code == 401


def fastapi_with_a_mount_in_an_included_router(**options: Any) -> TestClient:
    """``APIRouter.mount()`` inside ``include_router``: FastAPI wraps the Mount in a context."""
    from fastapi import APIRouter, FastAPI

    router = APIRouter()
    router.mount("/m", app=Starlette(routes=[Route("/t/{tenant_id}/items", echo)]))
    app = FastAPI()
    app.include_router(router, prefix="/api")
    app.add_middleware(
        AuthMiddleware,
        verifier=JWTVerifier(secret=SECRET, issuer=ISSUER, audience=[AUDIENCE]),
        **options,
    )
    app.add_middleware(ErrorMiddleware)
    return TestClient(app)


def test_a_tenant_in_a_mount_of_an_included_fastapi_router_is_bound() -> None:
    client = fastapi_with_a_mount_in_an_included_router()
    token = hs256(claims(tenant_id="acme"))
    assert client.get("/api/m/t/acme/items", headers=bearer(token)).json()["tenant"] == "acme"
    other = client.get("/api/m/t/globex/items", headers=bearer(token))
    assert other.status_code == 403
    assert other.json()["code"] == "TENANT_MISMATCH"


def test_an_api_key_naming_a_tenant_in_a_mount_of_an_included_fastapi_router_is_refused() -> None:
    guard = APIKeyGuard([f"partner:{hash_api_key('k' * 40)}"])
    client = fastapi_with_a_mount_in_an_included_router(api_key_guard=guard, api_key_paths=["/*"])
    response = client.get("/api/m/t/globex/items", headers={"X-API-Key": "k" * 40})
    assert response.status_code == 403
    assert response.json()["code"] == "TENANT_MISMATCH"


def test_a_tenant_only_in_an_include_prefix_is_bound_for_websockets_and_added_routes() -> None:
    """Attacker review: "/tenants/{tenant_id}" as the include's prefix, over a websocket
    and an ``add_route`` route, with no other route naming the tenant: never bound."""
    from fastapi import APIRouter, FastAPI

    async def events(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json({"tenant": websocket.path_params["tenant_id"]})
        await websocket.close()

    router = APIRouter()
    router.add_api_websocket_route("/events", events)
    router.add_route("/export", echo)
    app = FastAPI()
    app.include_router(router, prefix="/tenants/{tenant_id}")
    app.add_middleware(
        AuthMiddleware, verifier=JWTVerifier(secret=SECRET, issuer=ISSUER, audience=[AUDIENCE])
    )
    app.add_middleware(ErrorMiddleware)
    client = TestClient(app)
    token = bearer(hs256(claims(tenant_id="acme")))
    assert client.get("/tenants/acme/export", headers=token).status_code == 200
    assert client.get("/tenants/globex/export", headers=token).status_code == 403
    with client.websocket_connect("/tenants/acme/events", headers=token) as websocket:
        assert websocket.receive_json() == {"tenant": "acme"}
    with (
        pytest.raises(WebSocketDenialResponse) as denied,
        client.websocket_connect("/tenants/globex/events", headers=token),
    ):
        pass
    assert denied.value.status_code == 403
