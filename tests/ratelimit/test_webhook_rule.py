"""Webhook paths: their own rate rule, counted only once the signature verified."""

from __future__ import annotations

import hashlib
import json

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from hardenkit import HardenSettings, RateLimitRule, install, sign_webhook
from hardenkit.signing._secret import encode_standard_secret

SECRET = encode_standard_secret(hashlib.sha256(b"webhook-rule").digest())


async def _delivered(request: Request) -> Response:
    return JSONResponse({"bytes": len(await request.body())})


async def _page(request: Request) -> Response:
    return JSONResponse({"ok": True})


def _client(**overrides: object) -> TestClient:
    app = Starlette(
        routes=[
            Route("/hooks/billing", _delivered, methods=["POST"]),
            Route("/hooks/crm", _delivered, methods=["POST"]),
            Route("/page", _page),
        ]
    )
    values: dict[str, object] = {
        "webhook_paths": ["/hooks/*"],
        "webhook_secret": SECRET,
        "public_paths": ["/hooks/*", "/page"],
        **overrides,
    }
    install(app, HardenSettings(**values))  # type: ignore[arg-type]
    return TestClient(app)


def _signed(client: TestClient, path: str, number: int) -> int:
    body = json.dumps({"id": f"evt_{number}", "type": "invoice.paid"}).encode()
    headers = sign_webhook(body, SECRET, webhook_id=f"msg_{path.rsplit('/', 1)[-1]}_{number}")
    return client.post(path, content=body, headers=headers).status_code


def test_the_101st_signed_delivery_is_not_429_under_the_default_rules() -> None:
    client = _client()
    statuses = [_signed(client, "/hooks/billing", number) for number in range(130)]
    assert statuses == [200] * 130
    # The per-ip default (100/15m) still holds everywhere else, for the same client.
    pages = [client.get("/page").status_code for _ in range(101)]
    assert pages[:100] == [200] * 100
    assert pages[100] == 429


def test_signed_deliveries_report_the_webhook_rule_in_their_headers() -> None:
    client = _client()
    body = b'{"id": "evt_1"}'
    response = client.post("/hooks/billing", content=body, headers=sign_webhook(body, SECRET))
    assert response.status_code == 200
    assert response.headers["ratelimit-policy"] == '"webhook";q=1000;w=60'


def test_an_unsigned_flood_does_not_spend_the_providers_budget() -> None:
    client = _client(rate_limit_webhook="3/1m", rate_limit_default="1000/1m")
    for _ in range(20):
        forged = client.post("/hooks/billing", content=b"{}", headers={"webhook-id": "msg_x"})
        assert forged.status_code in (400, 401)
        assert forged.json()["code"] == "SIGNATURE_INVALID"
    assert [_signed(client, "/hooks/billing", number) for number in range(3)] == [200] * 3
    refused_body = b'{"id": "evt_over"}'
    headers = sign_webhook(refused_body, SECRET, webhook_id="msg_over")
    refused = client.post("/hooks/billing", content=refused_body, headers=headers)
    assert refused.status_code == 429
    assert refused.json()["code"] == "RATE_LIMITED"
    assert int(refused.headers["retry-after"]) > 0
    # The refused delivery was not remembered as processed: its retry is a new attempt
    # (still over the limit now), never a 200 "duplicate" that drops the event.
    retried = client.post("/hooks/billing", content=refused_body, headers=headers)
    assert retried.status_code == 429


def test_each_webhook_path_has_its_own_budget() -> None:
    client = _client(rate_limit_webhook="2/1m")
    assert [_signed(client, "/hooks/billing", number) for number in range(3)] == [200, 200, 429]
    assert [_signed(client, "/hooks/crm", number) for number in range(2)] == [200, 200]


def test_the_webhook_rule_is_validated_like_every_rate() -> None:
    with pytest.raises(ValueError, match="rate_limit_webhook"):
        HardenSettings(rate_limit_webhook="lots")


def test_except_paths_keep_a_rule_off_the_paths_it_names() -> None:
    rule = RateLimitRule("ip", "5/1m", except_paths=["/hooks/*"])
    assert rule.applies_to("/page", "GET")
    assert not rule.applies_to("/hooks/billing", "POST")
    assert not rule.applies_to("/hooks", "POST")
