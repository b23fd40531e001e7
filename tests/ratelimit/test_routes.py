from __future__ import annotations

from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from hardenkit import HardenError
from hardenkit.errors import harden_error_handler
from hardenkit.ratelimit import MemoryStore, RouteLimit


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
