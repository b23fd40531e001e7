"""Webhook verification against the minimum the Standard Webhooks spec asks for, by hand.

There is no webhook library among the installed peers, so the peer is the bare check a
careful user would write: HMAC-SHA256 of ``{id}.{timestamp}.{body}`` and one
``compare_digest``, without header parsing, limits, timestamp window or audit. The ratio
is what hardenkit's checks cost on top of it; reported, with no target.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from benchmarks._harness import Row, compare_sync
from hardenkit import WebhookVerifier, sign_webhook

_KEY = hashlib.sha256(b"bench").digest()
_SECRET = "whsec_" + base64.b64encode(_KEY).decode()


def run(quick: bool) -> list[Row]:
    number, repeat = (2_000, 5) if quick else (10_000, 9)
    rows: list[Row] = []
    verifier = WebhookVerifier(_SECRET)
    for size in (1_024, 65_536):
        body = b'{"type":"invoice.paid","data":"' + b"x" * (size - 36) + b'"}'
        headers = sign_webhook(body, _SECRET, timestamp=int(time.time()))
        webhook_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
        signature = base64.b64decode(headers["webhook-signature"].removeprefix("v1,"))

        def by_hand(
            body: bytes = body,
            webhook_id: str = webhook_id,
            timestamp: str = timestamp,
            signature: bytes = signature,
        ) -> bool:
            content = f"{webhook_id}.{timestamp}.".encode() + body
            expected = hmac.new(_KEY, content, hashlib.sha256).digest()
            return hmac.compare_digest(expected, signature)

        def ours(body: bytes = body, headers: dict[str, str] = headers) -> object:
            return verifier.verify(body, headers)

        times = compare_sync({"hardenkit": ours, "by hand": by_hand}, number=number, repeat=repeat)
        rows.append(
            Row(
                piece="signing",
                figure=f"verify Standard Webhooks delivery, {size // 1024} KiB body",
                ours=times["hardenkit"] * 1e6,
                peer_name="hmac by hand (spec minimum)",
                peer=times["by hand"] * 1e6,
            )
        )
    return rows
