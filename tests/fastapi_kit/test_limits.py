"""hardenkit.fastapi.limit: route limits on the app's store, as decorator or dependency."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Host, Mount
from starlette.testclient import TestClient

from hardenkit import HardenSettings, SettingsError, install, require_roles
from hardenkit.auth import Principal
from hardenkit.errors import ConfigurationError
from hardenkit.fastapi import CurrentPrincipal, OptionalPrincipal, exempt, limit, public
from hardenkit.ratelimit import MemoryStore, RedisStore, keys
from hardenkit.testing import reset
from tests.auth.support import AUDIENCE, ISSUER, SECRET, claims, hs256
from tests.support.redis_server import RedisServer


def settings(**values: Any) -> HardenSettings:
    defaults: dict[str, Any] = {
        "jwt_secret": SECRET,
        "jwt_issuer": ISSUER,
        "jwt_audience": [AUDIENCE],
        "public_paths": ["/healthz", "/readyz", "/open/*"],
    }
    return HardenSettings(**{**defaults, **values})


def bearer(tenant: str, **extra: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {hs256(claims(tenant_id=tenant, **extra))}"}


def hardened(app: FastAPI, **values: Any) -> TestClient:
    install(app, settings(**values))
    return TestClient(app, client=("203.0.113.9", 40000))


def test_a_decorated_route_is_limited_and_lists_its_rule_next_to_the_stacks() -> None:
    app = FastAPI()

    @app.post("/export")
    @limit("2/hour", key=keys.tenant)
    async def export(principal: CurrentPrincipal) -> dict[str, str | None]:
        return {"tenant": principal.tenant}

    client = hardened(app, rate_limit_default="100/hour", rate_limit_tenant="50/hour")
    first = client.post("/export", headers=bearer("acme"))
    assert first.status_code == 200
    assert first.json() == {"tenant": "acme"}
    policies = first.headers["ratelimit-policy"]
    assert policies == '"ip";q=100;w=3600, "tenant";q=50;w=3600, "export";q=2;w=3600'
    assert first.headers["ratelimit"].endswith('"export";r=1;t=1800')
    assert client.post("/export", headers=bearer("acme")).status_code == 200
    refused = client.post("/export", headers=bearer("acme"))
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "RATE_LIMITED"
    assert refused.headers.get_list("ratelimit") == ['"export";r=0;t=3600']
    assert int(refused.headers["retry-after"]) == 1800
    # Counted per tenant: another tenant has its own budget.
    assert client.post("/export", headers=bearer("globex")).status_code == 200


def test_a_sync_endpoint_keeps_its_parameters_under_the_decorator() -> None:
    app = FastAPI()

    @app.get("/items/{item_id}")
    @limit("2/hour")
    def item(item_id: int, q: str = "none") -> dict[str, Any]:
        return {"item_id": item_id, "q": q}

    client = hardened(app, public_paths=["/items/*"])
    assert client.get("/items/7?q=x").json() == {"item_id": 7, "q": "x"}
    assert client.get("/items/seven").status_code == 422
    assert client.get("/items/7").status_code == 429


def test_as_a_dependency_one_name_is_one_budget_shared_by_routes() -> None:
    shared = limit("3/hour", name="reports")
    router = APIRouter(prefix="/open", dependencies=[Depends(shared)])

    @router.get("/daily")
    async def daily() -> dict[str, str]:
        return {"report": "daily"}

    @router.get("/weekly")
    async def weekly() -> dict[str, str]:
        return {"report": "weekly"}

    app = FastAPI()
    app.include_router(router)
    client = hardened(app)
    statuses = [client.get(path).status_code for path in ("/open/daily", "/open/weekly") * 2]
    assert statuses == [200, 200, 200, 429]


def test_as_a_dependency_without_a_name_each_route_counts_on_its_own() -> None:
    per_route = limit("1/hour")
    app = FastAPI()

    @app.get("/open/a", dependencies=[Depends(per_route)])
    async def route_a() -> dict[str, str]:
        return {}

    @app.get("/open/b", dependencies=[Depends(per_route)])
    async def route_b() -> dict[str, str]:
        return {}

    client = hardened(app)
    assert [client.get("/open/a").status_code, client.get("/open/b").status_code] == [200, 200]
    assert client.get("/open/a").headers["ratelimit"] == '"route_a";r=0;t=3600'


def test_a_rate_computed_per_tenant_is_cached_per_key() -> None:
    calls: list[str | None] = []

    def plan(request: Request, principal: Principal | None) -> str:
        tenant = principal.tenant if principal else None
        calls.append(tenant)
        return "3/hour" if tenant == "acme" else "1/hour"

    app = FastAPI()

    @app.get("/search")
    @limit(plan, key=keys.tenant)
    async def search(principal: CurrentPrincipal) -> dict[str, str]:
        return {}

    client = hardened(app)
    acme = [client.get("/search", headers=bearer("acme")).status_code for _ in range(4)]
    globex = [client.get("/search", headers=bearer("globex")).status_code for _ in range(2)]
    assert acme == [200, 200, 200, 429]
    assert globex == [200, 429]
    assert calls == ["acme", "globex"]  # once per key, not per request


async def _async_plan(request: Request, principal: Principal | None) -> str:
    return "1/hour"


def test_an_async_rate_function_is_awaited() -> None:
    app = FastAPI()

    @app.get("/open/x")
    @limit(_async_plan)
    async def route_x() -> dict[str, str]:
        return {}

    client = hardened(app)
    assert [client.get("/open/x").status_code for _ in range(2)] == [200, 429]


def test_the_limit_counts_on_the_apps_redis_store_without_being_given_it(
    redis_server_factory: Callable[[], RedisServer],
) -> None:
    server = redis_server_factory()
    app = FastAPI()

    @app.get("/open/r")
    @limit("2/hour")
    async def route_r() -> dict[str, str]:
        return {}

    first = hardened(app, redis_url=server.url)
    assert isinstance(app.state.hardenkit.rate_limit_store, RedisStore)
    # A second app instance on the same Redis shares the budget: the count is in Redis.
    other = FastAPI()
    other.add_api_route("/open/r", route_r)
    second = hardened(other, redis_url=server.url)
    with first, second:
        assert first.get("/open/r").status_code == 200
        assert second.get("/open/r").status_code == 200
        assert first.get("/open/r").status_code == 429


def test_a_limit_without_install_or_store_says_what_to_do() -> None:
    app = FastAPI()

    @app.get("/x")
    @limit("1/hour")
    async def route_x() -> dict[str, str]:
        return {}

    with pytest.raises(ConfigurationError, match=r"no hardenkit.install\(\).*store="):
        TestClient(app).get("/x")


def test_an_exempt_route_keeps_its_own_limit_and_shows_it() -> None:
    app = FastAPI()

    @app.get("/open/feed")
    @exempt()
    @limit("2/hour")
    async def feed() -> dict[str, str]:
        return {}

    client = hardened(app, rate_limit_default="1/hour")
    first = client.get("/open/feed")
    assert first.headers["ratelimit"] == '"feed";r=1;t=1800'
    assert [client.get("/open/feed").status_code for _ in range(2)] == [200, 429]


def test_a_public_route_needs_no_token_and_its_principal_is_optional() -> None:
    app = FastAPI()

    @app.get("/hello")
    @public()
    async def hello(principal: OptionalPrincipal) -> dict[str, str | None]:
        return {"subject": principal.subject if principal else None}

    @app.get("/me")
    async def me(principal: CurrentPrincipal) -> dict[str, str | None]:
        return {"subject": principal.subject}

    client = hardened(app)
    assert client.get("/hello").json() == {"subject": None}
    assert client.get("/me").status_code == 401
    assert client.get("/me", headers=bearer("acme")).json() == {"subject": "user-1"}


def test_bad_limits_are_refused_when_declared() -> None:
    with pytest.raises(ValueError, match="burst"):
        limit("2/hour", cost=3)
    with pytest.raises(ValueError, match="name"):
        limit("2/hour", name="Has Spaces")
    with pytest.raises(ValueError):
        limit("lots/hour")
    assert isinstance(limit("1/hour", store=MemoryStore()).store, MemoryStore)


def test_a_limit_above_the_route_decorator_refuses_to_start() -> None:
    app = FastAPI()

    @limit("1/hour")
    @app.get("/open/unlimited")
    async def unlimited() -> dict[str, str]:
        return {}

    with pytest.raises(SettingsError, match=r"above the route decorator on /open/unlimited"):
        install(app, settings())


def test_a_public_route_of_an_included_router_is_public_and_its_neighbours_are_not() -> None:
    router = APIRouter(prefix="/v1")

    @router.get("/status")
    @public()
    async def status() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/private")
    async def private() -> dict[str, str]:
        return {}

    app = FastAPI()
    app.include_router(router, prefix="/edge")
    client = hardened(app)
    assert client.get("/edge/v1/status").status_code == 200
    assert client.get("/edge/v1/private").status_code == 401
    document = app.openapi()
    assert "security" not in document["paths"]["/edge/v1/status"]["get"]
    assert "401" not in document["paths"]["/edge/v1/status"]["get"]["responses"]
    assert "401" in document["paths"]["/edge/v1/private"]["get"]["responses"]


def test_report_only_documents_the_scheme_but_no_refusal_it_never_sends() -> None:
    app = FastAPI()

    @app.get("/me")
    async def me(principal: OptionalPrincipal) -> dict[str, str]:
        return {}

    client = hardened(app, auth_mode="report_only")
    operation = app.openapi()["paths"]["/me"]["get"]
    assert operation["security"] == [{"HTTPBearer": []}]
    assert not {"401", "403"} & set(operation["responses"])
    assert client.get("/me").status_code == 200


def test_api_key_routes_document_the_api_key_scheme_and_jwks_apps_a_503() -> None:
    from hardenkit.auth.apikeys import hash_api_key

    app = FastAPI()

    @app.get("/internal/jobs")
    async def jobs() -> dict[str, str]:
        return {}

    @app.get("/orders")
    async def orders(principal: CurrentPrincipal) -> dict[str, str]:
        return {}

    install(
        app,
        HardenSettings(
            jwt_jwks_url="https://idp.example/.well-known/jwks.json",
            jwt_issuer=ISSUER,
            jwt_audience=[AUDIENCE],
            api_key_paths=["/internal/*"],
            api_keys=[f"ops:{hash_api_key('k' * 40)}"],
            api_key_header="X-API-Key",
        ),
    )
    document = app.openapi()
    schemes = document["components"]["securitySchemes"]
    assert schemes["APIKeyHeader"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert document["paths"]["/internal/jobs"]["get"]["security"] == [{"APIKeyHeader": []}]
    operation = document["paths"]["/orders"]["get"]
    assert operation["security"] == [{"HTTPBearer": []}]
    assert "503" in operation["responses"]  # the JWKS can be unreachable
    assert operation["responses"]["503"]["headers"]["Retry-After"]["schema"] == {"type": "integer"}


def test_a_computed_rate_is_computed_again_after_a_reset_and_for_a_new_app() -> None:
    # One module-level limit, as a decorator at import time: first app A, then app B.
    plan_of: dict[str, str] = {"now": "1/hour"}
    shared = limit(lambda request, principal: plan_of["now"], key=keys.tenant)

    def build() -> tuple[FastAPI, TestClient]:
        app = FastAPI()

        @app.get("/search", dependencies=[Depends(shared)])
        async def search(principal: CurrentPrincipal) -> dict[str, str]:
            return {}

        return app, hardened(app)

    app_a, client_a = build()
    assert [client_a.get("/search", headers=bearer("acme")).status_code for _ in range(2)] == [
        200,
        429,
    ]
    plan_of["now"] = "3/hour"  # the tenant upgraded: a new app sees the new plan
    _, client_b = build()
    statuses = [client_b.get("/search", headers=bearer("acme")).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    # In the same app, reset() forgets the computed rate along with the counts.
    plan_of["now"] = "2/hour"
    reset(app_a.state.hardenkit)
    statuses = [client_a.get("/search", headers=bearer("acme")).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


def test_a_limit_on_a_public_route_counts_each_client_ip() -> None:
    app = FastAPI()

    @app.post("/signup")
    @public()
    @limit("2/minute")
    async def signup() -> dict[str, str]:
        return {"status": "ok"}

    client = hardened(app)
    responses = [client.post("/signup") for _ in range(3)]
    assert [response.status_code for response in responses] == [200, 200, 429]
    assert '"signup";q=2;w=60' in responses[0].headers["ratelimit-policy"]
    assert responses[2].json()["code"] == "RATE_LIMITED"
    other = TestClient(app, client=("198.51.100.7", 40000))
    assert other.post("/signup").status_code == 200


@pytest.mark.parametrize("key", [keys.tenant, keys.subject, keys.combine(keys.route, keys.tenant)])
def test_a_limit_per_verified_caller_on_a_public_route_refuses_to_start(
    key: keys.KeyFunction,
) -> None:
    app = FastAPI()

    @app.post("/signup")
    @public()
    @limit("2/minute", key=key)
    async def signup() -> dict[str, str]:
        return {"status": "ok"}

    with pytest.raises(SettingsError, match=r"keyed on the verified caller .* on /signup"):
        install(app, settings(env="development"))


def test_a_limit_per_tenant_on_a_public_path_refuses_to_start() -> None:
    app = FastAPI()

    @app.get("/open/feed", dependencies=[Depends(limit("2/minute", key=keys.tenant))])
    async def feed() -> dict[str, str]:
        return {}

    with pytest.raises(SettingsError, match=r"on /open/feed, served without credentials"):
        install(app, settings())


def test_require_roles_as_a_decorator_on_a_fastapi_route_refuses_to_start() -> None:
    app = FastAPI()

    @app.get("/admin")
    @require_roles("admin")
    async def admin() -> dict[str, str]:
        return {}

    with pytest.raises(SettingsError, match=r"decorates the FastAPI routes /admin") as raised:
        install(app, settings(env="development"))
    assert "Depends(require_roles" in str(raised.value)


def test_openapi_says_401_for_a_public_principal_route_and_names_the_headers() -> None:
    app = FastAPI()

    @app.get("/whoami")
    @public()
    async def whoami(principal: CurrentPrincipal) -> dict[str, str]:
        return {"subject": principal.subject}

    @app.post("/export")
    @limit("2/hour")
    async def export(principal: CurrentPrincipal) -> dict[str, str]:
        return {}

    client = hardened(app, env="development")
    public_401 = client.get("/whoami")
    assert public_401.status_code == 401
    document = app.openapi()
    whoami_responses = document["paths"]["/whoami"]["get"]["responses"]
    assert "401" in whoami_responses
    assert "403" not in whoami_responses  # public: no auth layer refuses it
    assert "WWW-Authenticate" in whoami_responses["401"]["headers"]
    assert public_401.headers["www-authenticate"].startswith("Bearer")

    export_responses = document["paths"]["/export"]["post"]["responses"]
    assert "WWW-Authenticate" in export_responses["401"]["headers"]
    answered = client.post("/export", headers=bearer("acme"))
    for status in ("200", "429"):
        declared = export_responses[status]["headers"]
        assert {"RateLimit", "RateLimit-Policy"} <= set(declared), status
    assert "ratelimit" in answered.headers
    assert "ratelimit-policy" in answered.headers


def _mounted_api() -> FastAPI:
    sub = FastAPI()

    @sub.get("/notes/{note_id}")
    @limit("2/hour", key=keys.tenant)
    async def note(note_id: int, principal: CurrentPrincipal) -> dict[str, Any]:
        return {"note": note_id, "tenant": principal.tenant}

    @sub.get("/missing")
    async def missing() -> None:
        raise HTTPException(404, "no such note")

    @sub.get("/crash")
    async def crash() -> None:
        raise RuntimeError("boom: secret-in-message")

    return sub


@pytest.mark.parametrize("when", ["before_install", "after_install"])
def test_a_mounted_fastapi_app_limits_and_answers_errors_as_the_stack_does(when: str) -> None:
    # A new-user review: under an installed parent, a mounted app's limit() answered 500
    # on every request (no app.state.hardenkit on the sub-app), its HTTPException came in
    # FastAPI's shape, its 422 echoed the input and its crash was a text/plain 500.
    parent = FastAPI()
    sub = _mounted_api()
    if when == "before_install":
        parent.mount("/v2", sub)
        install(parent, settings())
    else:
        install(parent, settings())
        parent.mount("/v2", sub)  # a mount added later is adopted when the app starts
    with TestClient(parent, raise_server_exceptions=False) as client:
        for _ in range(2):
            assert client.get("/v2/notes/1", headers=bearer("acme")).json() == {
                "note": 1,
                "tenant": "acme",
            }
        refused = client.get("/v2/notes/1", headers=bearer("acme"))
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        # Counted on the parent's store, per tenant.
        assert client.get("/v2/notes/1", headers=bearer("globex")).status_code == 200

        invalid = client.get("/v2/notes/x", headers=bearer("initech"))
        assert invalid.status_code == 422
        assert invalid.headers["content-type"] == "application/problem+json"
        assert "input" not in str(invalid.json())

        missing = client.get("/v2/missing", headers=bearer("acme"))
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        assert missing.json()["detail"] == "no such note"

        crashed = client.get("/v2/crash", headers=bearer("acme"))
        assert crashed.status_code == 500
        assert crashed.headers["content-type"] == "application/problem+json"
        assert "secret-in-message" not in crashed.text
        assert crashed.headers["x-request-id"] == crashed.json()["request_id"]


def test_a_mounted_app_keeps_its_own_handlers_and_its_own_install() -> None:
    # A re-check: adoption replaced the mounted app's own HTTPException and 422 handlers.
    parent, own = FastAPI(), FastAPI()
    sub = _mounted_api()

    async def own_crash(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"own": "crash"}, status_code=500)

    async def own_http(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"own": "http"}, status_code=404)

    async def own_invalid(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"own": "invalid"}, status_code=400)

    sub.add_exception_handler(Exception, own_crash)
    sub.add_exception_handler(StarletteHTTPException, own_http)
    sub.add_exception_handler(RequestValidationError, own_invalid)
    parent.mount("/v2", sub)
    kit = install(own, settings())
    parent.mount("/own", own)
    install(parent, settings())
    assert own.state.hardenkit is kit  # its own install() is left alone
    with TestClient(parent, raise_server_exceptions=False) as client:
        headers = bearer("acme")
        assert client.get("/v2/crash", headers=headers).json() == {"own": "crash"}
        assert client.get("/v2/missing", headers=headers).json() == {"own": "http"}
        assert client.get("/v2/notes/x", headers=bearer("initech")).json() == {"own": "invalid"}


def test_a_mounted_debug_app_answers_a_problem_not_a_traceback() -> None:
    # A re-check: FastAPI(debug=True) mounted in an installed app sent its traceback,
    # the exception's message (a password) included.
    parent, sub = FastAPI(), FastAPI(debug=True)

    @sub.get("/crash")
    async def crash() -> None:
        raise RuntimeError("db password=hunter2")

    parent.mount("/v2", sub)
    install(parent, settings())
    with TestClient(parent, raise_server_exceptions=False) as client:
        crashed = client.get("/v2/crash", headers=bearer("acme"))
    assert crashed.status_code == 500
    assert crashed.headers["content-type"] == "application/problem+json"
    assert "hunter2" not in crashed.text


def test_one_sub_app_mounted_in_two_installed_apps_counts_on_each_ones_store() -> None:
    # A re-check: an app factory mounting one module-level sub-app; the second app's
    # limit counted on the first app's store.
    sub = _mounted_api()
    apps = []
    for _ in range(2):
        app = FastAPI()
        app.mount("/v2", sub)
        install(app, settings())
        apps.append(app)
    for app in apps:
        with TestClient(app) as client:
            statuses = [
                client.get("/v2/notes/1", headers=bearer("acme")).status_code for _ in range(3)
            ]
        assert statuses == [200, 200, 429]


@pytest.mark.parametrize("shape", ["mount", "host"])
def test_an_installed_app_under_a_plain_parent_limits_its_mounted_apps(shape: str) -> None:
    # A second re-check: with the kit found from the outermost router, an installed app
    # mounted (or Host-routed) in a parent without install() answered 500 to its
    # mounted app's limited route.
    app = FastAPI()
    app.mount("/v2", _mounted_api())
    install(app, settings())
    with TestClient(app):  # its lifespan: the plain parent runs none
        pass
    if shape == "mount":
        parent, base = Starlette(routes=[Mount("/api", app=app)]), "http://testserver/api"
    else:
        parent, base = (
            Starlette(routes=[Host("api.example.com", app=app)]),
            "http://api.example.com",
        )
    client = TestClient(parent)
    statuses = [
        client.get(f"{base}/v2/notes/1", headers=bearer("acme")).status_code for _ in range(3)
    ]
    assert statuses == [200, 200, 429]


def test_an_app_with_its_own_install_counts_on_its_own_store_when_mounted() -> None:
    parent, own = FastAPI(), _mounted_api()
    own_kit = install(own, settings())
    parent.mount("/own", own)
    install(parent, settings())
    with TestClient(parent) as client:
        statuses = [
            client.get("/own/notes/1", headers=bearer("acme")).status_code for _ in range(3)
        ]
        reset(own_kit)  # its store, so this empties the count
        statuses.append(client.get("/own/notes/1", headers=bearer("acme")).status_code)
    assert statuses == [200, 200, 429, 200]


def test_an_installed_app_is_not_kept_alive_by_hardenkit() -> None:
    # A second re-check: a registry of installed routers kept every app of a test suite
    # (or an app factory) alive.
    app = FastAPI()
    app.mount("/v2", _mounted_api())
    install(app, settings())
    with TestClient(app) as client:
        client.get("/v2/notes/1", headers=bearer("acme"))
    gone = weakref.ref(app)
    del app, client
    gc.collect()
    assert gone() is None


def test_a_limit_on_a_websocket_route_is_refused_at_startup() -> None:
    # A re-check: FastAPI passes a WebSocket dependency no Request, so limit() there
    # answered every handshake with a 500.
    for form in ("dependency", "decorator"):
        app = FastAPI()
        if form == "dependency":

            @app.websocket("/live", dependencies=[Depends(limit("5/minute"))])
            async def live(websocket: WebSocket) -> None:
                await websocket.close()
        else:

            @app.websocket("/live")
            @limit("5/minute")
            async def live_decorated(websocket: WebSocket) -> None:
                await websocket.close()

        with pytest.raises(SettingsError, match="WebSocket routes /live"):
            install(app, settings())
