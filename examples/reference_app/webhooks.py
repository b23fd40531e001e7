"""Signed traffic: ``POST /webhooks/demo`` (Standard Webhooks) and ``POST /api/agents/messages``.

``/webhooks/demo`` is guarded by ``WebhookMiddleware``, which ``install()`` puts on
``HARDENKIT_WEBHOOK_PATHS`` with the secret from ``HARDENKIT_WEBHOOK_SECRET``: by the time
the handler runs, the signature and timestamp were verified and the ``webhook-id`` was
claimed, so the handler runs once per id. A duplicate delivery is answered
``200 {"status": "duplicate", "processed": false}`` by the middleware, without this handler.

``/api/agents/messages`` accepts only messages signed by a key in
``HARDENKIT_MESSAGE_TRUSTED_KEYS`` (timestamp window, nonce used once), and answers with a
receipt signed by this service's own key (``HARDENKIT_MESSAGE_SIGNING_KEY``), which the
agent verifies with the service's public key.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hardenkit import HardenError, sign_message
from hardenkit.errors import ErrorCode
from hardenkit.signing import VerifiedWebhook
from hardenkit.signing.middleware import SCOPE_KEY


async def demo_webhook(request: Request) -> Response:
    delivery: VerifiedWebhook = request.scope[SCOPE_KEY]
    body = await request.body()  # the exact raw bytes that were verified
    return JSONResponse(
        {
            "status": "processed",
            "processed": True,
            "webhook_id": delivery.id,
            "body_bytes": len(body),
        }
    )


async def agent_message(request: Request) -> Response:
    kit = request.app.state.hardenkit
    verifier = kit.message_verifier
    if verifier is None:
        raise HardenError(
            ErrorCode.SERVICE_UNAVAILABLE,
            status=503,
            detail="No agent key is trusted (HARDENKIT_MESSAGE_TRUSTED_KEYS).",
        )
    message = await verifier(request)
    settings = kit.settings
    receipt = None
    if settings.message_signing_key is not None and settings.message_key_id is not None:
        receipt = sign_message(
            {"accepted_nonce": message.nonce, "from": message.key_id},
            settings.message_signing_key.get_secret_value(),
            key_id=settings.message_key_id,
        )
    return JSONResponse(
        {"accepted": True, "from": message.key_id, "payload": message.payload, "receipt": receipt}
    )


routes = [
    Route("/webhooks/demo", demo_webhook, methods=["POST"]),
    Route("/api/agents/messages", agent_message, methods=["POST"]),
]
