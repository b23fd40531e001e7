"""``WebhookMiddleware``: verify deliveries on chosen paths and process each one once.

On a matching path the middleware reads the body (refusing it beyond the verifier's
limit), verifies it, then claims its id in the :class:`ReplayStore`:

* new: the application runs and sees the exact raw body (``await request.body()``) and
  the :class:`VerifiedWebhook` in ``request.scope["hardenkit.webhook"]``. When it answers
  below 500 (and not 408/409/425/429, which ask for a retry, nor a redirect, 404 or 405
  the router answered when no handler ran) the id is remembered as processed for
  ``dedupe_ttl``; otherwise, or when it raises, the claim is released so the sender's
  retry is processed. Whether a handler ran is said by AuthMiddleware's endpoint check
  (:data:`hardenkit._late.ENDPOINT_KEY`); without it, a redirect, 404 or 405 releases.
* already processed: ``on_duplicate="acknowledge"`` answers 200
  ``{"status": "duplicate", "processed": false, ...}`` without calling the application
  (the sender stops retrying); ``"refuse"`` answers 401 ``SIGNATURE_INVALID``.
* still being processed by another delivery: 409 ``CONFLICT`` with ``Retry-After``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Literal

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hardenkit._late import ENDPOINT_KEY, judged_path
from hardenkit._paths import PathPatterns, route_path
from hardenkit.context import FACTS_KEY, own_facts
from hardenkit.errors import ErrorCode, Refusal, send_refusal
from hardenkit.signing._body import ClientDisconnect, read_limited
from hardenkit.signing._refusal import SignatureError, refuse
from hardenkit.signing.replay import ClaimOutcome, ReplayStore, ReplayStoreUnavailableError
from hardenkit.signing.webhooks import STANDARD_HEADERS, VerifiedWebhook, WebhookVerifier

__all__ = ["SCOPE_KEY", "DuplicateHandling", "WebhookMiddleware"]

SCOPE_KEY = "hardenkit.webhook"
DEFAULT_DEDUPE_TTL_SECONDS = 24 * 3600
DEFAULT_PROCESSING_TTL_SECONDS = 60
# Answers after which the delivery is not taken as processed: its claim is released, so
# the sender's retry runs. Those asking for a retry later, whoever answered them.
_RETRY_LATER = frozenset({408, 409, 425, 429})
# And those the router answers when no handler ran: a redirect (redirect_slashes: the
# verified path may be spelled otherwise than the route), no route, a method the route
# does not take. A handler's own redirect or 404 is its answer: the delivery is processed.
# Without AuthMiddleware's endpoint check, which says when a handler ran, these always
# release the claim.
_ROUTER_ANSWERS = frozenset({404, 405, *range(300, 400)})

DuplicateHandling = Literal["acknowledge", "refuse"]

_logger = structlog.get_logger("hardenkit.signing")


class WebhookMiddleware:
    """Pure ASGI middleware that verifies signed webhooks on ``paths``.

    Args:
        app: The ASGI application to wrap.
        verifier: Secrets, format, tolerance and limits (:class:`WebhookVerifier`).
        paths: Paths to protect: exact, or a prefix ending in ``*``. Other paths pass
            through untouched.
        replay_store: Where delivery ids are remembered; a memory-only store (one
            process) when omitted.
        on_duplicate: ``"acknowledge"`` (200, not processed again) or ``"refuse"`` (401).
        dedupe_ttl: Seconds a processed id is remembered. At least twice the tolerance,
            so a replay is caught for as long as its timestamp is acceptable; longer
            catches the sender's late retries too.
        processing_ttl: Seconds a claim lasts when the application never finishes (a
            crash): after that a retry is processed.

    Raises:
        ValueError: Bad paths, an unknown ``on_duplicate``, or TTLs that are too short.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        verifier: WebhookVerifier,
        paths: Iterable[str],
        replay_store: ReplayStore | None = None,
        on_duplicate: DuplicateHandling = "acknowledge",
        dedupe_ttl: float = DEFAULT_DEDUPE_TTL_SECONDS,
        processing_ttl: float = DEFAULT_PROCESSING_TTL_SECONDS,
    ) -> None:
        if on_duplicate not in ("acknowledge", "refuse"):
            raise ValueError(
                f"on_duplicate must be 'acknowledge' or 'refuse', not {on_duplicate!r}"
            )
        if dedupe_ttl < 2 * verifier.tolerance:
            raise ValueError("dedupe_ttl must be at least twice the verifier's tolerance")
        if processing_ttl <= 0:
            raise ValueError("processing_ttl must be positive")
        self.app = app
        self.verifier = verifier
        self._matches = PathPatterns(paths, any_case=True)
        if not self._matches:
            raise ValueError("WebhookMiddleware needs at least one path pattern")
        self.replay_store = replay_store if replay_store is not None else ReplayStore()
        self.on_duplicate = on_duplicate
        self.dedupe_ttl = dedupe_ttl
        self.processing_ttl = processing_ttl
        self._checked_headers = {
            name.lower().encode("latin-1")
            for name in (*STANDARD_HEADERS, verifier.signature_header)
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if FACTS_KEY not in scope:  # the first hardenkit layer of this request
            await own_facts(self, scope, receive, send)
            return
        path = route_path(scope)
        judged_path(scope, self)  # asked again should a rewrite serve another path
        if not self._matches(path):
            await self.app(scope, receive, send)
            return
        await self._verified(scope, receive, send, self.app)

    def recheck_path(self, judged: str, reached: str, app: ASGIApp) -> ASGIApp | None:
        """``app`` behind this layer's verification, when only ``reached`` is a webhook path.

        A middleware inside the stack rewrote the path of a request this layer let pass:
        the delivery is verified at the endpoint (see :mod:`hardenkit._late`).
        """
        if self._matches(judged) or not self._matches(reached):
            return None
        return _VerifiedAtTheEndpoint(self, app)

    async def _verified(
        self, scope: Scope, receive: Receive, send: Send, app: ASGIApp, *, endpoint: bool = False
    ) -> None:
        """Verify the delivery and claim its id, then serve it with ``app`` (once).

        ``endpoint``: ``app`` is the endpoint itself (verified there after a rewrite).
        """
        try:
            body = await read_limited(scope, receive, self.verifier.max_body_bytes, "webhook")
            verified = self.verifier.verify(body, self._headers(scope))
        except SignatureError as error:
            await _send_refusal(send, scope, error)
            return
        except ClientDisconnect:
            return
        key = "webhook:" + verified.dedupe_key
        try:
            outcome = await self.replay_store.claim(key, processing_ttl=self.processing_ttl)
        except ReplayStoreUnavailableError as unavailable:
            _logger.warning("webhook_replay_store_unavailable", webhook_id=verified.id)
            await send_refusal(send, scope, unavailable.refusal())
            return
        if outcome is ClaimOutcome.NEW:
            await self._process(
                scope, receive, send, app, body=body, verified=verified, key=key, endpoint=endpoint
            )
        elif outcome is ClaimOutcome.IN_PROGRESS:
            _logger.info("webhook_in_progress", webhook_id=verified.id)
            refusal = Refusal.retry_later(
                409, ErrorCode.CONFLICT, "This delivery is being processed; retry later."
            )
            await send_refusal(send, scope, refusal)
        elif self.on_duplicate == "acknowledge":
            _logger.info("webhook_duplicate_acknowledged", webhook_id=verified.id)
            await _send_duplicate(send, verified)
        else:
            replayed = refuse("replayed", "This delivery was already processed.", kind="webhook")
            await _send_refusal(send, scope, replayed)

    def _headers(self, scope: Scope) -> dict[str, str]:
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope.get("headers", ()):
            if raw_name not in self._checked_headers:
                continue
            name = raw_name.decode("latin-1")
            if name in headers:
                # Two signature headers: which one the application would read is unclear.
                raise refuse(
                    "duplicate_header",
                    f"The {name} header is repeated.",
                    kind="webhook",
                    status=400,
                )
            headers[name] = raw_value.decode("latin-1")
        return headers

    async def _process(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        app: ASGIApp,
        *,
        body: bytes,
        verified: VerifiedWebhook,
        key: str,
        endpoint: bool,
    ) -> None:
        body_sent = False
        status: int | None = None

        async def replay_body() -> Message:
            nonlocal body_sent
            if not body_sent:
                body_sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        scope[SCOPE_KEY] = verified
        reached = scope[ENDPOINT_KEY] = [endpoint]  # set by the endpoint check, when it runs
        try:
            await app(scope, replay_body, record_status)
        except Exception:
            # A cancelled request (timeout, disconnect) keeps its claim until
            # processing_ttl lapses: awaiting Redis inside a cancelled task is not reliable.
            # Raised after the handler answered (a background task, a streamed body),
            # the delivery was processed: its claim is kept, or a retry runs it again.
            await self._settle(key, status, endpoint=reached[0])
            raise
        await self._settle(key, status, endpoint=reached[0])

    async def _settle(self, key: str, status: int | None, *, endpoint: bool) -> None:
        """Remember the delivery as processed, or release its claim for the retry.

        Processed: answered below 500, not asking for a retry, and not a redirect or a
        404/405 the router answered with no handler run (``endpoint`` says one ran).
        """
        if (
            status is not None
            and status < 500
            and status not in _RETRY_LATER
            and not (status in _ROUTER_ANSWERS and not endpoint)
        ):
            await self.replay_store.complete(key, self.dedupe_ttl)
        else:
            await self.replay_store.release(key)


class _VerifiedAtTheEndpoint:
    """An endpoint's app, reached through a rewritten path, behind the layer's verification."""

    __slots__ = ("_app", "_layer")

    def __init__(self, layer: WebhookMiddleware, app: ASGIApp) -> None:
        self._layer = layer
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        _logger.warning(
            "webhook_verified_at_the_endpoint",
            path=scope.get("path"),
            detail="a middleware inside the stack rewrote the path to a webhook path; the "
            "delivery is verified at the endpoint",
        )
        await self._layer._verified(scope, receive, send, self._app, endpoint=True)


async def _send_refusal(send: Send, scope: Scope, error: SignatureError) -> None:
    await send_refusal(send, scope, error.refusal())


async def _send_duplicate(send: Send, verified: VerifiedWebhook) -> None:
    body = json.dumps(
        {
            "status": "duplicate",
            "processed": False,
            "webhook_id": verified.id,
            "detail": "This delivery was already processed; it was not processed again.",
        },
        separators=(",", ":"),
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
