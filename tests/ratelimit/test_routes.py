from __future__ import annotations

from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from hardenkit import HardenError
from hardenkit.errors import harden_error_handler
from hardenkit.ratelimit import MemoryStore, RateLimitMiddleware, RateLimitRule, RouteLimit


def test_a_fastapi_dependency_limits_one_route_with_a_429_problem() -> None:
    app = FastAPI(exception_handlers={HardenError: harden_error_handler})
    export_limit = RouteLimit("2/hour", name="export", store=MemoryStore())

    @app.post("/export", dependencies=[Depends(export_limit)])
    async def export() -> dict[str, str]:
        return {"status": "queued"}

    @app.get("/other")
    async def other() -> dict[str, str]:
        return {"status": "ok"}

    client = TestClient(app)
    assert [client.post("/export").status_code for _ in range(2)] == [200, 200]
    refused = client.post("/export")
    assert refused.status_code == 429
    assert refused.json()["code"] == "RATE_LIMITED"
    assert int(refused.headers["retry-after"]) == 1800
    assert client.get("/other").status_code == 200


def test_a_decorated_starlette_endpoint_is_limited() -> None:
    limit = RouteLimit("1/hour", name="report", store=MemoryStore())

    @limit.wrap
    async def report(request: Request) -> Response:
        return PlainTextResponse("report")

    app = Starlette(
        routes=[Route("/report", report)],
        exception_handlers={HardenError: harden_error_handler},
    )
    client = TestClient(app)
    assert client.get("/report").status_code == 200
    refused = client.get("/report")
    assert refused.status_code == 429
    assert refused.json()["code"] == "RATE_LIMITED"


def _still_store() -> MemoryStore:
    """A store whose clock stands still: the refusal's wait is exact, however slow the run."""
    return MemoryStore(clock=lambda: 1_000_000_000)


def _refused_twice(app: Starlette) -> Response:
    client = TestClient(app)
    assert client.post("/export").status_code == 200
    return client.post("/export")


def test_a_route_limit_refuses_with_exactly_the_middlewares_429() -> None:
    async def export(request: Request) -> Response:
        return PlainTextResponse("queued")

    by_middleware = Starlette(
        routes=[Route("/export", export, methods=["POST"])],
        middleware=[
            Middleware(
                RateLimitMiddleware,
                rules=[RateLimitRule("export", "1/hour", paths=["/export"])],
                store=_still_store(),
            )
        ],
    )
    route_limit = RouteLimit("1/hour", name="export", store=_still_store())
    by_route = Starlette(
        routes=[Route("/export", route_limit.wrap(export), methods=["POST"])],
        exception_handlers={HardenError: harden_error_handler},
    )

    expected, got = _refused_twice(by_middleware), _refused_twice(by_route)
    assert (got.status_code, got.json()) == (expected.status_code, expected.json())
    assert expected.status_code == 429
    assert dict(got.headers) == dict(expected.headers)
    assert {"retry-after", "ratelimit", "ratelimit-policy"} <= set(got.headers)


def test_a_route_limit_behind_the_middleware_leaves_the_headers_to_it() -> None:
    route_limit = RouteLimit("1/hour", name="export", store=_still_store())

    @route_limit.wrap
    async def export(request: Request) -> Response:
        return PlainTextResponse("queued")

    app = Starlette(
        routes=[Route("/export", export, methods=["POST"])],
        middleware=[
            Middleware(
                RateLimitMiddleware, rules=[RateLimitRule("ip", "100/hour")], store=MemoryStore()
            )
        ],
        exception_handlers={HardenError: harden_error_handler},
    )
    refused = _refused_twice(app)
    assert refused.status_code == 429
    assert refused.headers.get_list("ratelimit") == ['"export";r=0;t=3600']
    assert refused.headers.get_list("ratelimit-policy") == ['"export";q=1;w=3600']
