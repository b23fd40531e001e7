from __future__ import annotations

import asyncio

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from hardenkit import CheckResult, HardenSettings, HealthStatus, install


def make_client(**checks: tuple[object, bool]) -> TestClient:
    app = Starlette()
    kit = install(app, HardenSettings(readiness_check_timeout=0.2))
    for name, (check, critical) in checks.items():
        kit.health.add(name, check, critical=critical)  # type: ignore[arg-type]
    return TestClient(app)


async def healthy() -> CheckResult:
    return CheckResult(HealthStatus.HEALTHY, {"backend": "redis"})


async def degraded() -> CheckResult:
    return CheckResult(HealthStatus.DEGRADED, {"backend": "memory"})


async def broken() -> CheckResult:
    raise ConnectionError("password=hunter2")


async def hangs() -> CheckResult:
    await asyncio.sleep(10)
    raise AssertionError("unreachable")


def test_liveness_is_200() -> None:
    response = make_client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readiness_healthy_lists_checks() -> None:
    response = make_client(redis=(healthy, True)).get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "healthy"
    assert response.json()["checks"]["redis"] == {"status": "healthy", "backend": "redis"}


def test_readiness_degraded_is_200() -> None:
    response = make_client(redis=(degraded, True), other=(healthy, True)).get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"


def test_failing_critical_check_is_503_without_the_exception_text() -> None:
    response = make_client(db=(broken, True)).get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "unhealthy"
    assert "hunter2" not in response.text


def test_failing_non_critical_check_only_degrades() -> None:
    response = make_client(breaker=(broken, False)).get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["checks"]["breaker"]["status"] == "unhealthy"


def test_hanging_check_times_out_as_unhealthy() -> None:
    response = make_client(slow=(hangs, True)).get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["slow"] == {"status": "unhealthy", "error": "timeout"}


def test_health_routes_win_over_a_catch_all_mount() -> None:
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount

    async def catch_all(scope: object, receive: object, send: object) -> None:
        await PlainTextResponse("app")(scope, receive, send)  # type: ignore[arg-type]

    app = Starlette(routes=[Mount("/", app=catch_all)])
    install(app, HardenSettings())
    assert TestClient(app).get("/healthz").json() == {"status": "ok"}


def test_probes_stay_public_and_unlimited_whatever_the_public_paths_and_probe_paths_say(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As the cookbook shows: a public path list without the probes, custom probe paths,
    # a per-ip limit far below what a kubelet sends.
    monkeypatch.setenv("HARDENKIT_JWT_SECRET", "k" * 48)
    monkeypatch.setenv("HARDENKIT_PUBLIC_PATHS", "/docs,/redoc,/openapi.json")
    monkeypatch.setenv("HARDENKIT_HEALTH_PATH", "/livez")
    monkeypatch.setenv("HARDENKIT_READY_PATH", "/ready")
    monkeypatch.setenv("HARDENKIT_RATE_LIMIT_DEFAULT", "3/15m")

    async def private(request: Request) -> Response:
        return PlainTextResponse("private")

    app = Starlette(routes=[Route("/private", private)])
    install(app)
    client = TestClient(app)
    statuses = {client.get(path).status_code for path in ["/livez", "/ready"] * 50}
    assert statuses == {200}
    assert client.get("/private").status_code == 401


@pytest.mark.parametrize("path", ["/*", "*", "healthz", "/health/*"])
def test_a_probe_path_that_is_a_pattern_is_refused_since_it_would_make_routes_public(
    path: str,
) -> None:
    with pytest.raises(ValueError, match="exact path"):
        HardenSettings(health_path=path)
    with pytest.raises(ValueError, match="exact path"):
        HardenSettings(ready_path=path)


def test_a_probe_path_that_is_also_an_app_route_is_warned_about() -> None:
    """The probes are added first: the app's route at that path is never reached, and
    the path is public and unlimited (new-user review: HARDENKIT_HEALTH_PATH=/api/me)."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from hardenkit import HardenSettings, install
    from hardenkit._app_policy import app_problems
    from tests.test_policy import SAFE

    async def me(request: object) -> PlainTextResponse:
        return PlainTextResponse("me")

    def warned(**values: str) -> list[str]:
        app = Starlette(routes=[Route("/api/me", me)])
        settings = HardenSettings(**{**SAFE, **values})
        install(app, settings)
        return [
            problem.setting
            for problem in app_problems(settings, app)
            if problem.setting in {"HARDENKIT_HEALTH_PATH", "HARDENKIT_READY_PATH"}
        ]

    assert warned(health_path="/api/me") == ["HARDENKIT_HEALTH_PATH"]
    assert warned(ready_path="/api/me") == ["HARDENKIT_READY_PATH"]
    assert warned() == []  # the probes' own routes are not a clash
