"""Signing settings: validated at startup, naming the variable, never echoing a secret."""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import AsyncIterator, Callable
from functools import partial, update_wrapper
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from starlette.applications import Starlette
from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from hardenkit import install, public
from hardenkit._app_policy import app_problems
from hardenkit.settings import HardenSettings, SettingsError, load_settings
from hardenkit.signing import generate_private_key, private_key_text, public_key_text
from hardenkit.signing._secret import encode_standard_secret
from tests.test_policy import SAFE, WEBHOOK_SECRET

SECRET = encode_standard_secret(b"k" * 32)
AGENT = public_key_text(generate_private_key())
OTHER = public_key_text(generate_private_key())


def refused_settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> SettingsError:
    for name, value in env.items():
        monkeypatch.setenv(f"HARDENKIT_{name.upper()}", value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    return caught.value


def names(error: SettingsError) -> set[str]:
    return {problem.setting for problem in error.problems}


@pytest.mark.parametrize("secret", ["whsec_short", "whsec_%%%%not-base64%%%%", "QUJDREVGR0g="])
def test_an_unusable_webhook_secret_refuses_to_start_and_is_not_echoed(
    monkeypatch: pytest.MonkeyPatch, secret: str
) -> None:
    error = refused_settings(monkeypatch, webhook_secret=secret)
    assert names(error) == {"HARDENKIT_WEBHOOK_SECRET"}
    assert secret not in str(error)


def test_rotation_lists_several_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARDENKIT_WEBHOOK_SECRET", f"{SECRET}, {encode_standard_secret(b'o' * 32)}")
    assert load_settings().webhook_secret is not None


def test_stripe_scheme_takes_the_secret_as_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARDENKIT_WEBHOOK_SCHEME", "stripe")
    monkeypatch.setenv("HARDENKIT_WEBHOOK_SECRET", "whsec_0123456789abcdefghijABCD")
    assert load_settings().webhook_scheme == "stripe"


def test_webhook_paths_without_a_secret_refuse_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    error = refused_settings(monkeypatch, webhook_paths="/webhooks/*")
    assert "HARDENKIT_WEBHOOK_SECRET" in names(error)


def test_a_dedupe_ttl_shorter_than_the_replay_window_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    error = refused_settings(monkeypatch, webhook_tolerance="300", webhook_dedupe_ttl="599")
    assert names(error) == {"HARDENKIT_WEBHOOK_DEDUPE_TTL"}


def test_trusted_keys_read_pairs_or_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARDENKIT_MESSAGE_TRUSTED_KEYS", f"agent-a={AGENT}, agent-b={OTHER}")
    assert load_settings().message_trusted_keys == {"agent-a": AGENT, "agent-b": OTHER}
    monkeypatch.setenv("HARDENKIT_MESSAGE_TRUSTED_KEYS", json.dumps({"agent-a": AGENT}))
    assert load_settings().message_trusted_keys == {"agent-a": AGENT}


@pytest.mark.parametrize(
    "value",
    ["agent-a=garbage", "no-separator", f"bad id={AGENT}", f"a={AGENT},a={OTHER}"],
    # Named, not shown: the keys are generated, and pytest -n needs the same ids everywhere.
    ids=["garbage-key", "no-separator", "space-in-id", "repeated-id"],
)
def test_unusable_trusted_keys_refuse_to_start(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    error = refused_settings(monkeypatch, message_trusted_keys=value)
    assert names(error) == {"HARDENKIT_MESSAGE_TRUSTED_KEYS"}


def test_the_signing_key_is_secret_validated_and_needs_a_key_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed = private_key_text(generate_private_key())
    error = refused_settings(monkeypatch, message_signing_key=seed)
    assert names(error) == {"HARDENKIT_MESSAGE_KEY_ID"}
    assert seed not in str(error)
    monkeypatch.setenv("HARDENKIT_MESSAGE_KEY_ID", "billing")
    settings = load_settings()
    assert seed not in repr(settings)
    monkeypatch.setenv("HARDENKIT_MESSAGE_SIGNING_KEY", "not-a-key")
    assert names(refused_settings(monkeypatch)) == {"HARDENKIT_MESSAGE_SIGNING_KEY"}


def test_long_windows_are_warned_about_in_production() -> None:
    settings = HardenSettings(
        env="production", webhook_tolerance=900, message_tolerance=900, webhook_dedupe_ttl=3600
    )
    warned = {p.setting for p in settings.problems() if p.severity == "warning"}
    assert {"HARDENKIT_WEBHOOK_TOLERANCE", "HARDENKIT_MESSAGE_TOLERANCE"} <= warned


@pytest.mark.parametrize(
    ("timeouts", "claimed_for"),
    [
        ({}, 60.0),  # the default 30 s timeout: the default claim
        ({"HARDENKIT_REQUEST_TIMEOUT": "90"}, 95.0),
        ({"HARDENKIT_REQUEST_TIMEOUT_ROUTES": '{"/webhooks/*": 120}'}, 125.0),
    ],
)
def test_a_webhook_claim_outlives_any_handler_the_timeouts_let_run(
    monkeypatch: pytest.MonkeyPatch, timeouts: dict[str, str], claimed_for: float
) -> None:
    """A claim that lapsed while its handler still ran (a 65 s handler, a 60 s claim)
    let the sender's next retry be processed beside it: twice, measured."""
    from starlette.applications import Starlette

    from hardenkit import install
    from hardenkit.signing import WebhookMiddleware

    monkeypatch.setenv("HARDENKIT_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("HARDENKIT_WEBHOOK_PATHS", "/webhooks/*")
    for name, value in timeouts.items():
        monkeypatch.setenv(name, value)
    kit = install(Starlette(), load_settings())
    (layer,) = [item for item in kit.middleware if item.cls is WebhookMiddleware]
    assert layer.kwargs["processing_ttl"] == claimed_for


@pytest.mark.parametrize(
    ("webhooks", "streaming", "untimed"),
    [
        ("/webhooks/*", "/webhooks/live", True),
        ("/webhooks/in", "/webhooks/*", True),
        ("/webhooks/x/", "/webhooks/x/", True),  # an exact path ending in / is itself
        ("/hooks/", "/hooks/*", True),
        ("/hooks", "*", True),
        ("/webhooks/*", "/webhooksx", False),
        ("/webhooks/*", "/events/*", False),
    ],
)
def test_a_webhook_path_the_timeout_skips_is_a_risk_whatever_the_patterns(
    webhooks: str, streaming: str, untimed: bool
) -> None:
    settings = HardenSettings(
        webhook_secret=SECRET,  # type: ignore[arg-type]
        webhook_paths=[webhooks],
        public_paths=[webhooks],
        streaming_paths=[streaming],
    )
    risks = {problem.risk for problem in settings.problems()}
    assert ("webhook-path-untimed" in risks) is untimed


def _sync_handler(request: Request) -> Response:
    return Response()


async def _async_handler(request: Request) -> Response:
    return Response()


_sync_in = Route("/in", _sync_handler)


class _SyncEndpoint(HTTPEndpoint):
    async def get(self, request: Request) -> Response:
        return Response()

    def post(self, request: Request) -> Response:
        return Response()


class _AsyncEndpoint(HTTPEndpoint):
    async def post(self, request: Request) -> Response:
        return Response()


async def _asgi_app(scope: Scope, receive: Receive, send: Send) -> None:
    await Response()(scope, receive, send)


def _fastapi(handler: Callable[..., Any]) -> FastAPI:
    app = FastAPI()
    app.post("/webhooks/in")(handler)
    return app


def _fastapi_def() -> FastAPI:
    def receive_hook() -> dict[str, str]:
        return {}

    return _fastapi(receive_hook)


def _fastapi_async() -> FastAPI:
    async def receive_hook() -> dict[str, str]:
        return {}

    return _fastapi(receive_hook)


@pytest.mark.parametrize(
    ("app", "in_thread"),
    [
        (lambda: Starlette(routes=[Route("/webhooks/in", _sync_handler)]), True),
        (lambda: Starlette(routes=[Route("/webhooks/in", _async_handler)]), False),
        (lambda: Starlette(routes=[Route("/webhooks/in", partial(_sync_handler))]), True),
        (lambda: Starlette(routes=[Route("/webhooks/in", partial(_async_handler))]), False),
        (lambda: Starlette(routes=[Route("/webhooks/in", _SyncEndpoint)]), True),
        (lambda: Starlette(routes=[Route("/webhooks/in", _AsyncEndpoint)]), False),
        (lambda: Starlette(routes=[Route("/webhooks/in", _asgi_app)]), False),
        (lambda: Starlette(routes=[Mount("/webhooks", routes=[_sync_in])]), True),
        (lambda: Starlette(routes=[Route("/events/in", _sync_handler)]), False),
        (_fastapi_def, True),
        (_fastapi_async, False),
    ],
    ids=[
        "def", "async def", "partial of def", "partial of async def", "endpoint with a def",
        "async endpoint", "ASGI app", "def under a Mount", "def outside the webhook paths",
        "FastAPI def", "FastAPI async def",
    ],
)  # fmt: skip
def test_a_webhook_route_whose_handler_runs_in_a_thread_is_a_risk(
    app: Callable[[], Starlette], in_thread: bool
) -> None:
    # A thread outlives the request timeout's cancellation: the claim may lapse while the
    # handler still runs, and the sender's retry is processed beside it.
    settings = HardenSettings(
        webhook_secret=SECRET,  # type: ignore[arg-type]
        webhook_paths=["/webhooks/*"],
        public_paths=["/webhooks/*"],
    )
    problems = [problem for problem in app_problems(settings, app()) if problem.risk]
    sync = [problem.risk for problem in problems if problem.risk != "webhook-path-unserved"]
    assert sync == (["webhook-handler-sync"] if in_thread else [])
    if in_thread:
        (problem,) = problems
        assert problem.setting == "HARDENKIT_WEBHOOK_PATHS"
        assert "/webhooks/in" in problem.message
        assert "async def" in str(problem.fix)


class _SyncCallable:
    def __call__(self) -> dict[str, str]:
        return {}


class _AsyncCallable:
    async def __call__(self) -> dict[str, str]:
        return {}


class _Decorated:  # a class-based decorator, as some libraries wrap handlers
    def __init__(self, function: Callable[..., Any]) -> None:
        update_wrapper(self, function)
        self.function = function

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)


def _wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [])
    return [b""]


def _plain_hook() -> dict[str, str]:
    return {}


def _routed(path: str, handler: Callable[..., Any]) -> Callable[[], Starlette]:
    return lambda: Starlette(routes=[Route(path, handler)])


def _wsgi_mounted(path: str) -> Callable[[], Starlette]:
    def app() -> Starlette:
        with warnings.catch_warnings():  # deprecated for a2wsgi's, which has the same name
            warnings.simplefilter("ignore")
            from starlette.middleware.wsgi import WSGIMiddleware

        return Starlette(routes=[Mount(path, app=WSGIMiddleware(_wsgi_app))])

    return app


@pytest.mark.parametrize(
    ("webhook_path", "app", "in_thread"),
    [
        ("/webhooks/github", _routed("/webhooks/{provider}", _sync_handler), True),
        ("/webhooks/github", _routed("/webhooks/{provider}", _async_handler), False),
        ("/webhooks/github", _routed("/events/{provider}", _sync_handler), False),
        ("/webhooks/*", _wsgi_mounted("/webhooks"), True),
        ("/webhooks/github", _wsgi_mounted("/webhooks"), True),
        ("/webhooks/*", _wsgi_mounted("/events"), False),
        ("/webhooks/*", lambda: _fastapi(_SyncCallable()), True),
        ("/webhooks/*", lambda: _fastapi(_AsyncCallable()), False),
        ("/webhooks/*", lambda: _fastapi(_Decorated(_plain_hook)), True),
    ],
    ids=[
        "template over an exact webhook path", "async template", "template elsewhere",
        "WSGI app mounted on the prefix", "WSGI app mounted above an exact path",
        "WSGI app elsewhere", "FastAPI callable object", "FastAPI async callable object",
        "FastAPI class-based decorator",
    ],
)  # fmt: skip
def test_every_shape_that_serves_a_webhook_from_a_thread_is_found(
    webhook_path: str, app: Callable[[], Starlette], in_thread: bool
) -> None:
    settings = HardenSettings(
        webhook_secret=SECRET,  # type: ignore[arg-type]
        webhook_paths=[webhook_path],
        public_paths=["/webhooks/*"],
    )
    problems = app_problems(settings, app())
    risks = [p.risk for p in problems if p.risk and p.risk != "webhook-path-unserved"]
    assert risks == (["webhook-handler-sync"] if in_thread else [])


def test_without_a_webhook_secret_a_def_handler_on_a_webhook_path_is_no_risk() -> None:
    # No secret, no webhook layer: the paths are not verified, nothing is claimed.
    settings = HardenSettings(webhook_paths=["/webhooks/*"], public_paths=["/webhooks/*"])
    app = Starlette(routes=[Route("/webhooks/in", _sync_handler)])
    assert not [problem for problem in app_problems(settings, app) if problem.risk]


def test_webhook_paths_that_no_route_serves_are_a_risk() -> None:
    """Written without the router's prefix, the paths verify nothing and the real webhook
    route is served unsigned (new-user review: `/api/v1/webhooks/stripe` answered 200;
    a later one: a forged delivery got a 200 in production, where it was only a warning)."""
    app = FastAPI()
    router = APIRouter()

    @router.post("/webhooks/{provider}")
    async def receive(provider: str) -> dict[str, bool]:
        return {"received": True}

    app.include_router(router, prefix="/api/v1")

    def warned(*paths: str) -> list[str]:
        settings = HardenSettings(
            webhook_secret=SECRET,  # type: ignore[arg-type]
            webhook_paths=list(paths),
            public_paths=list(paths),
        )
        return [
            problem.detail
            for problem in app_problems(settings, app)
            if problem.risk == "webhook-path-unserved"
        ]

    (message,) = warned("/webhooks/*")
    assert "/webhooks/*" in message
    assert "router prefix" in message
    assert "HARDENKIT_ACCEPT_RISKS=webhook-path-unserved" in message
    assert warned("/api/v1/webhooks/*") == []
    assert warned("/api/v1/webhooks/stripe") == []  # the template serves it
    (message,) = warned("/api/v1/webhooks/stripe", "/hooks/github")
    assert "/hooks/github" in message
    assert "/api/v1/webhooks/stripe" not in message


def _guarded(app: Starlette, webhook_paths: list[str], **values: Any) -> list[str]:
    settings = HardenSettings(
        webhook_secret=SECRET,  # type: ignore[arg-type]
        webhook_paths=webhook_paths,
        **values,
    )
    return [
        problem.message
        for problem in app_problems(settings, app)
        if problem.setting == "HARDENKIT_WEBHOOK_PATHS" and "need a token" in problem.message
    ]


async def _marked(request: Request) -> Response:
    return Response()


def test_a_webhook_route_auth_guards_is_warned_about_unless_public_or_marked() -> None:
    # A new-user review: a webhook route marked @public() was still said to be answered
    # 401, pushing users to open a public prefix they did not need.
    marked_app = Starlette(
        routes=[Route("/api/v1/webhooks/pay", public()(_marked), methods=["POST"])]
    )
    unmarked_app = Starlette(routes=[Route("/api/v1/webhooks/pay", _async_handler)])
    both = Starlette(
        routes=[
            Route("/api/v1/webhooks/pay", public()(_marked), methods=["POST"]),
            Route("/api/v1/webhooks/refund", _async_handler, methods=["POST"]),
        ]
    )
    paths = ["/api/v1/webhooks/*"]
    assert _guarded(marked_app, paths) == []
    (message,) = _guarded(unmarked_app, paths)
    assert "/api/v1/webhooks/pay" in message
    (message,) = _guarded(both, paths)  # one route under the path still needs a token
    assert "/api/v1/webhooks/refund" in message
    assert "/api/v1/webhooks/pay" not in message
    assert _guarded(unmarked_app, paths, public_paths=paths) == []
    assert _guarded(unmarked_app, paths, auth_mode="off") == []


@pytest.mark.parametrize(
    ("public_paths", "marked", "warned"),
    [
        (["/webhooks/stripe"], False, True),  # both settings agree; the route has a slash
        (["/webhooks/stripe/"], False, False),
        ([], True, False),
        (["/webhooks/*"], False, False),
    ],
)
def test_a_webhook_route_is_judged_at_the_path_deliveries_reach_it(
    public_paths: list[str], marked: bool, warned: bool
) -> None:
    # A new-user review: APIRouter(prefix="/webhooks/stripe") with @router.post("/"),
    # /webhooks/stripe in both settings: startup and doctor were silent and every signed
    # delivery got 401 (public paths match exactly, webhook paths with or without the
    # slash); the reverse spelling, and @public(), were warned about though they worked.
    endpoint = public()(_marked) if marked else _async_handler
    app = Starlette(routes=[Route("/webhooks/stripe/", endpoint, methods=["POST"])])
    found = _guarded(app, ["/webhooks/stripe"], public_paths=public_paths)
    assert bool(found) is warned
    if warned:
        assert "/webhooks/stripe/" in found[0]


@pytest.mark.parametrize(
    ("public_paths", "warned"),
    [(["/webhooks/github"], False), (["/webhooks/*"], False), ([], True)],
)
def test_a_template_route_is_judged_at_the_webhook_path_it_serves(
    public_paths: list[str], warned: bool
) -> None:
    app = Starlette(routes=[Route("/webhooks/{provider}", _async_handler, methods=["POST"])])
    assert bool(_guarded(app, ["/webhooks/github"], public_paths=public_paths)) is warned


def test_an_unserved_webhook_path_is_judged_once_every_route_exists() -> None:
    # Routes are often added after install(): the webhook route may yet come.
    settings = HardenSettings(
        **{**SAFE, "env": "production"},
        webhook_secret=WEBHOOK_SECRET,
        webhook_paths=["/webhooks/*"],
        public_paths=["/webhooks/*"],
    )
    late = Starlette()
    kit = install(late, settings)
    late.router.routes.append(Route("/webhooks/in", _async_handler, methods=["POST"]))
    assert kit.app_check is not None
    kit.app_check.run_final()  # served now: starts

    prefixed = Starlette()
    kit = install(prefixed, settings)
    prefixed.router.routes.append(
        Mount("/api/v1", routes=[Route("/webhooks/in", _async_handler, methods=["POST"])])
    )
    assert kit.app_check is not None
    with pytest.raises(SettingsError, match="webhook-path-unserved"):
        kit.app_check.run_final()


@pytest.mark.parametrize(
    ("webhook_path", "route_path"),
    [
        ("/hooks/stripe", "/hooks/stripe/"),  # APIRouter(prefix=...) with @post("/")
        ("/hooks/stripe/", "/hooks/stripe"),
        ("/Hooks/Stripe", "/hooks/stripe"),
        ("/hooks/*", "/HOOKS/{provider}"),
    ],
)
def test_a_webhook_path_served_in_another_spelling_is_served(
    webhook_path: str, route_path: str
) -> None:
    # A re-check: the webhook layer verifies these (any case, trailing slash or not),
    # yet production refused them as unserved.
    settings = HardenSettings(
        webhook_secret=SECRET,  # type: ignore[arg-type]
        webhook_paths=[webhook_path],
        public_paths=[webhook_path],
    )
    app = Starlette(routes=[Route(route_path, _async_handler, methods=["POST"])])
    assert [p for p in app_problems(settings, app) if p.risk == "webhook-path-unserved"] == []


def test_routes_the_apps_own_startup_adds_are_judged_too() -> None:
    # A re-check: the final check ran before the app's own lifespan, so a webhook route
    # it added was refused as unserved, and a tenant route it added never judged.
    @contextlib.asynccontextmanager
    async def adds_routes(app: Starlette) -> AsyncIterator[None]:
        app.router.routes.append(Route(added_path, _async_handler, methods=["POST"]))
        yield

    settings = HardenSettings(
        **{**SAFE, "env": "production"},
        webhook_secret=WEBHOOK_SECRET,
        webhook_paths=["/webhooks/*"],
        public_paths=["/webhooks/*"],
    )
    added_path = "/webhooks/in"
    app = Starlette(lifespan=adds_routes)
    install(app, settings)
    with TestClient(app):  # starts
        pass
    added_path = "/orgs/{org_id}/items"
    app = Starlette(routes=[Route("/webhooks/in", _async_handler)], lifespan=adds_routes)
    install(app, settings)
    with pytest.raises(SettingsError, match="org_id"), TestClient(app):
        pass


@pytest.mark.parametrize("value", ["", " , "])
def test_an_empty_webhook_secret_says_to_unset_it(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    # A new-user review: an empty variable read "at least one webhook secret is
    # required", in a service that receives no webhooks.
    refused = refused_settings(monkeypatch, webhook_secret=value)
    (problem,) = [p for p in refused.problems if p.setting == "HARDENKIT_WEBHOOK_SECRET"]
    assert problem.message == "is set but empty"
    assert problem.fix is not None
    assert "unset the variable" in problem.fix
