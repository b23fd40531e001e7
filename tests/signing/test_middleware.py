"""WebhookMiddleware and the dependencies: raw body kept, once-only processing, no 500s."""

from __future__ import annotations

import hashlib
from typing import Annotated

import pytest
from fastapi import Depends, FastAPI
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from hardenkit import ReplayStore, WebhookMiddleware, WebhookVerifier, install, sign_webhook
from hardenkit.settings import HardenSettings
from hardenkit.signing import VerifiedWebhook
from hardenkit.signing._refusal import refuse
from hardenkit.signing._secret import encode_standard_secret
from hardenkit.signing.middleware import SCOPE_KEY
from tests.signing.conftest import Refusals

SECRET = encode_standard_secret(hashlib.sha256(b"middleware").digest())
BODY = b'{"type": "invoice.paid",   "amount": 4200}'  # spacing a JSON re-encode would lose


class Handler:
    """An endpoint that records what it processed and answers with a chosen status."""

    def __init__(self) -> None:
        self.processed: list[tuple[str | None, bytes]] = []
        self.status = 200
        self.crash = False

    async def endpoint(self, request: Request) -> Response:
        delivery: VerifiedWebhook | None = request.scope.get(SCOPE_KEY)
        body = await request.body()
        if self.crash:
            raise RuntimeError("handler bug")
        self.processed.append((delivery.id if delivery else None, body))
        return JSONResponse({"processed": True}, status_code=self.status)


def make_app(handler: Handler, **options: object) -> Starlette:
    verifier = WebhookVerifier(SECRET, max_body_bytes=1024)
    routes = [
        Route("/webhooks/in", handler.endpoint, methods=["POST"]),
        Route("/other", handler.endpoint, methods=["POST"]),
    ]
    middleware = [
        Middleware(
            WebhookMiddleware,
            verifier=verifier,
            paths=["/webhooks/*"],
            **options,  # type: ignore[arg-type]
        )
    ]
    return Starlette(routes=routes, middleware=middleware)


def test_a_valid_delivery_reaches_the_handler_with_its_exact_raw_body() -> None:
    handler = Handler()
    client = TestClient(make_app(handler))
    headers = sign_webhook(BODY, SECRET, webhook_id="msg_1")
    response = client.post("/webhooks/in", content=BODY, headers=headers)
    assert response.status_code == 200
    assert handler.processed == [("msg_1", BODY)]


def test_a_duplicate_is_acknowledged_with_200_and_not_processed_again() -> None:
    handler = Handler()
    client = TestClient(make_app(handler))
    first = sign_webhook(BODY, SECRET, webhook_id="msg_dup")
    assert client.post("/webhooks/in", content=BODY, headers=first).status_code == 200
    retry = sign_webhook(BODY, SECRET, webhook_id="msg_dup")  # a re-signed retry
    response = client.post("/webhooks/in", content=BODY, headers=retry)
    assert response.status_code == 200
    assert response.json()["status"] == "duplicate"
    assert response.json()["processed"] is False
    assert len(handler.processed) == 1


def test_duplicates_can_be_refused_instead() -> None:
    handler = Handler()
    client = TestClient(make_app(handler, on_duplicate="refuse"))
    headers = sign_webhook(BODY, SECRET, webhook_id="msg_r")
    client.post("/webhooks/in", content=BODY, headers=headers)
    response = client.post("/webhooks/in", content=BODY, headers=headers)
    assert response.status_code == 401
    assert response.json()["code"] == "SIGNATURE_INVALID"
    assert len(handler.processed) == 1


@pytest.mark.parametrize("failure", ["status", "crash"])
def test_a_failed_delivery_is_released_so_the_retry_is_processed(failure: str) -> None:
    handler = Handler()
    client = TestClient(make_app(handler), raise_server_exceptions=False)
    if failure == "status":
        handler.status = 503
    else:
        handler.crash = True
    headers = sign_webhook(BODY, SECRET, webhook_id="msg_fail")
    assert client.post("/webhooks/in", content=BODY, headers=headers).status_code >= 500
    handler.status, handler.crash = 200, False
    response = client.post("/webhooks/in", content=BODY, headers=headers)
    assert response.status_code == 200
    assert response.json() == {"processed": True}


@pytest.mark.parametrize(
    ("path", "follow"),
    [
        ("/webhooks/in/", True),  # the router's redirect_slashes answers 307 first
        ("/webhooks/in/", False),  # a sender that does not follow it, and retries
        ("/webhooks/nowhere", False),  # no route: 404, until the route is deployed
    ],
)
def test_a_delivery_no_handler_answered_is_released_so_it_is_processed_later(
    path: str, *, follow: bool
) -> None:
    handler = Handler()
    client = TestClient(make_app(handler))
    headers = sign_webhook(BODY, SECRET, webhook_id="msg_routed")
    first = client.post(path, content=BODY, headers=headers, follow_redirects=follow)
    if follow:
        assert [step.status_code for step in first.history] == [307]
        assert first.json() == {"processed": True}
    else:
        assert first.status_code in (307, 404)
        retry = client.post("/webhooks/in", content=BODY, headers=headers)
        assert retry.json() == {"processed": True}
    assert handler.processed == [("msg_routed", BODY)]


async def test_a_delivery_still_in_progress_elsewhere_gets_409_with_retry_after() -> None:
    store = ReplayStore()
    handler = Handler()
    client = TestClient(make_app(handler, replay_store=store))
    headers = sign_webhook(BODY, SECRET, webhook_id="msg_busy")
    await store.claim("webhook:standard:id:msg_busy", processing_ttl=60)  # another worker
    response = client.post("/webhooks/in", content=BODY, headers=headers)
    assert response.status_code == 409
    assert response.headers["retry-after"] == "5"
    assert handler.processed == []


@pytest.mark.parametrize(
    ("mutate", "status", "code"),
    [
        (lambda h, b: (h, b + b" "), 401, "SIGNATURE_INVALID"),
        (
            lambda h, b: ({k: v for k, v in h.items() if k != "webhook-id"}, b),
            400,
            "SIGNATURE_INVALID",
        ),
        (lambda h, b: ({**h, "webhook-timestamp": "1000"}, b), 401, "SIGNATURE_INVALID"),
        (
            lambda h, b: ({**h, "webhook-signature": " ".join(["v1," + "A" * 43 + "="] * 1000)}, b),
            400,
            "SIGNATURE_INVALID",
        ),
        (lambda h, b: (h, b * 100), 413, "PAYLOAD_TOO_LARGE"),
    ],
    ids=[
        "one-byte-changed",
        "missing-header",
        "timestamp-changed",
        "thousand-signatures",
        "too-large",
    ],
)
def test_bad_deliveries_get_a_coded_problem_and_never_reach_the_handler(
    mutate: object, status: int, code: str
) -> None:
    handler = Handler()
    client = TestClient(make_app(handler))
    headers, body = mutate(sign_webhook(BODY, SECRET), BODY)  # type: ignore[operator]
    response = client.post("/webhooks/in", content=body, headers=headers)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code
    assert handler.processed == []


@pytest.mark.parametrize(
    ("corrupt", "reason"),
    [
        (lambda headers: {**headers, "webhook-id": "msg_other"}, "signature_mismatch"),
        (lambda headers: [*headers.items(), ("webhook-id", "again")], "duplicate_header"),
    ],
    ids=["refused-by-the-verifier", "refused-by-the-middleware"],
)
def test_each_refused_delivery_is_audited_and_counted_once(
    corrupt: object, reason: str, refusals: Refusals
) -> None:
    client = TestClient(make_app(Handler()))
    headers = corrupt(sign_webhook(BODY, SECRET))  # type: ignore[operator]
    assert client.post("/webhooks/in", content=BODY, headers=headers).status_code in (400, 401)
    assert refusals.reasons == [reason]
    assert refusals.metric == [(1, {"kind": "webhook", "reason": reason})]


def test_a_refusal_built_but_never_raised_out_is_not_recorded(refusals: Refusals) -> None:
    refuse("replayed", "Already processed.", kind="webhook")
    assert (refusals.reasons, refusals.metric) == ([], [])


def test_a_stale_delivery_is_refused_as_expired() -> None:
    handler = Handler()
    client = TestClient(make_app(handler))
    import time

    headers = sign_webhook(BODY, SECRET, timestamp=int(time.time()) - 301)
    response = client.post("/webhooks/in", content=BODY, headers=headers)
    assert (response.status_code, response.json()["code"]) == (401, "SIGNATURE_EXPIRED")


def test_a_repeated_signature_header_is_refused() -> None:
    handler = Handler()
    client = TestClient(make_app(handler))
    headers = sign_webhook(BODY, SECRET)
    raw = [(k, v) for k, v in headers.items()] + [
        ("webhook-signature", headers["webhook-signature"])
    ]
    response = client.post("/webhooks/in", content=BODY, headers=raw)
    assert response.status_code == 400
    assert handler.processed == []


def test_other_paths_pass_through_untouched() -> None:
    handler = Handler()
    client = TestClient(make_app(handler))
    assert client.post("/other", content=b"{}").status_code == 200
    assert handler.processed == [(None, b"{}")]


def test_a_chunked_body_over_the_limit_is_refused_while_streaming() -> None:
    handler = Handler()
    client = TestClient(make_app(handler))

    def chunks():  # no content-length: the limit applies while reading
        for _ in range(10):
            yield b"x" * 200

    headers = sign_webhook(b"", SECRET)
    response = client.post("/webhooks/in", content=chunks(), headers=headers)
    assert response.status_code == 413


def test_middleware_refuses_a_dedupe_ttl_shorter_than_the_replay_window() -> None:
    with pytest.raises(ValueError, match="dedupe_ttl"):
        WebhookMiddleware(Handler(), verifier=WebhookVerifier(SECRET), paths=["/w"], dedupe_ttl=100)
    with pytest.raises(ValueError, match="path pattern"):
        WebhookMiddleware(Handler(), verifier=WebhookVerifier(SECRET), paths=["w*x"])


# Module level: FastAPI resolves the (postponed) annotation in the module's globals.
DEPENDENCY = WebhookVerifier(SECRET, max_body_bytes=1024)


def test_fastapi_dependency_verifies_and_leaves_the_raw_body_to_the_endpoint() -> None:
    app = FastAPI()
    install(app, HardenSettings(public_paths=["/hooks"]))

    @app.post("/hooks")
    async def hook(
        request: Request, delivery: Annotated[VerifiedWebhook, Depends(DEPENDENCY)]
    ) -> dict[str, object]:
        raw = await request.body()
        return {"id": delivery.id, "same": raw == BODY, "digest": hashlib.sha256(raw).hexdigest()}

    client = TestClient(app)
    headers = sign_webhook(BODY, SECRET, webhook_id="msg_dep")
    response = client.post("/hooks", content=BODY, headers=headers)
    assert response.json()["id"] == "msg_dep"
    assert response.json()["same"] is True
    refused = client.post("/hooks", content=BODY + b"x", headers=headers)
    assert (refused.status_code, refused.json()["code"]) == (401, "SIGNATURE_INVALID")
    too_big = client.post("/hooks", content=b"x" * 2048, headers=headers)
    assert (too_big.status_code, too_big.json()["code"]) == (413, "PAYLOAD_TOO_LARGE")


class Event(BaseModel):
    type: str
    amount: int


def test_fastapi_dependency_works_when_the_endpoint_also_takes_a_body_model() -> None:
    app = FastAPI()
    install(app, HardenSettings(public_paths=["/typed"]))

    @app.post("/typed")
    async def typed(
        event: Event, delivery: Annotated[VerifiedWebhook, Depends(DEPENDENCY)]
    ) -> dict[str, object]:
        return {"id": delivery.id, "amount": event.amount}

    client = TestClient(app)
    headers = sign_webhook(BODY, SECRET, webhook_id="msg_typed")
    response = client.post(
        "/typed", content=BODY, headers={**headers, "content-type": "application/json"}
    )
    assert response.json() == {"id": "msg_typed", "amount": 4200}
    tampered = BODY.replace(b"4200", b"9999")
    refused = client.post(
        "/typed", content=tampered, headers={**headers, "content-type": "application/json"}
    )
    assert refused.status_code == 401


@pytest.mark.parametrize("status", [303, 404])
def test_a_handlers_own_redirect_or_404_is_its_answer_and_a_replay_is_a_duplicate(
    status: int,
) -> None:
    # An attacker round: a handler that did its work and answered 303 (or raised 404)
    # had its claim released, so a captured delivery was processed again, 3 times in 3.
    # With install(), the endpoint check says a handler ran: only the router's own
    # redirect or 404 (no handler) releases the claim.
    handler = Handler()
    handler.status = status
    app = Starlette(
        routes=[Route("/webhooks/in", handler.endpoint, methods=["POST"])],
    )
    install(
        app,
        HardenSettings(
            webhook_secret=SECRET, webhook_paths=["/webhooks/*"], public_paths=["/webhooks/*"]
        ),
    )
    client = TestClient(app)
    headers = sign_webhook(BODY, SECRET, webhook_id="msg_own")
    assert client.post("/webhooks/in", content=BODY, headers=headers).status_code == status
    replay = client.post("/webhooks/in", content=BODY, headers=headers)
    assert replay.json()["status"] == "duplicate"
    assert len(handler.processed) == 1
    # The router's redirect (no handler ran) still releases: the followed one is served.
    handler.status = 200
    other = sign_webhook(BODY, SECRET, webhook_id="msg_slash")
    followed = client.post("/webhooks/in/", content=BODY, headers=other, follow_redirects=True)
    assert [step.status_code for step in followed.history] == [307]
    assert followed.json() == {"processed": True}
    assert len(handler.processed) == 2


def test_a_handler_behind_a_mount_hardenkit_cannot_see_into_keeps_its_claim() -> None:
    # An attacker round: a plain ASGI receiver mounted at /webhooks/stripe processed the
    # delivery and answered 303; no endpoint check ran there, so its claim was released
    # and the same delivery was processed three times in three.
    processed: list[bytes] = []

    async def receiver(scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        processed.append(message.get("body", b""))
        await send({"type": "http.response.start", "status": 303, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    app = Starlette(routes=[Mount("/webhooks/stripe", app=receiver)])
    install(
        app,
        HardenSettings(
            webhook_secret=SECRET, webhook_paths=["/webhooks/*"], public_paths=["/webhooks/*"]
        ),
    )
    client = TestClient(app)
    headers = sign_webhook(BODY, SECRET, webhook_id="msg_mount")
    first = client.post("/webhooks/stripe/", content=BODY, headers=headers, follow_redirects=False)
    assert first.status_code == 303
    replay = client.post("/webhooks/stripe/", content=BODY, headers=headers)
    assert replay.json()["status"] == "duplicate"
    assert processed == [BODY]


def test_a_background_task_failing_after_the_answer_keeps_the_delivery_processed() -> None:
    # An attacker round: the handler answered 200 and its background task raised; the
    # claim was released, so the same delivery was processed again on every resend.
    processed: list[bytes] = []

    def fails() -> None:
        raise RuntimeError("background job failed")

    async def handler(request: Request) -> Response:
        processed.append(await request.body())
        return JSONResponse({"ok": True}, background=BackgroundTask(fails))

    verifier = WebhookVerifier(SECRET, max_body_bytes=1024)
    app = Starlette(
        routes=[Route("/webhooks/in", handler, methods=["POST"])],
        middleware=[Middleware(WebhookMiddleware, verifier=verifier, paths=["/webhooks/*"])],
    )
    client = TestClient(app, raise_server_exceptions=False)
    headers = sign_webhook(BODY, SECRET, webhook_id="msg_background")
    assert client.post("/webhooks/in", content=BODY, headers=headers).json() == {"ok": True}
    resent = client.post("/webhooks/in", content=BODY, headers=headers)
    assert resent.json()["status"] == "duplicate"
    assert processed == [BODY]


def test_install_guards_the_configured_paths_with_a_shared_replay_store() -> None:
    handler = Handler()
    app = Starlette(routes=[Route("/webhooks/in", handler.endpoint, methods=["POST"])])
    kit = install(
        app,
        HardenSettings(
            webhook_secret=SECRET, webhook_paths=["/webhooks/*"], public_paths=["/webhooks/*"]
        ),
    )
    assert kit.replay_store is not None
    assert any(layer.cls is WebhookMiddleware for layer in kit.middleware)
    client = TestClient(app)
    headers = sign_webhook(BODY, SECRET, webhook_id="msg_inst")
    assert client.post("/webhooks/in", content=BODY, headers=headers).status_code == 200
    assert (
        client.post("/webhooks/in", content=BODY, headers=headers).json()["status"] == "duplicate"
    )
    assert len(handler.processed) == 1
