"""A path rewritten inside the stack, on a real uvicorn under ``--root-path``.

The app's own middleware (added before ``install()``, so inside hardenkit's layers)
resolves dot segments and drops trailing slashes. uvicorn percent-decodes the path
(``%2e%2e`` is ``..``) and puts the root path in front; the checks that hold on the path
the router serves hold here too: the webhook stays signed, the login limit counts, the
tenant stays bound and limited, and the rewrite is said once in the server's log.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import jwt
import pytest

from hardenkit import sign_webhook
from tests.support.rewriting_app import AUDIENCE, ISSUER, SECRET, WEBHOOK_SECRET
from tests.support.uvicorn_server import UvicornServer

pytestmark = pytest.mark.e2e


def _token(tenant: str) -> str:
    now = int(time.time())
    claims = {"sub": "u1", "tenant_id": tenant, "iss": ISSUER, "aud": AUDIENCE}
    return jwt.encode({**claims, "iat": now, "exp": now + 300}, SECRET, algorithm="HS256")


def test_checks_hold_on_the_path_served_after_an_inner_rewrite_under_a_root_path(
    tmp_path: Path,
) -> None:
    log = tmp_path / "uvicorn.log"
    with (
        UvicornServer(
            "tests.support.rewriting_app:create_app",
            factory=True,
            log_path=log,
            args=("--root-path", "/svc"),
        ) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        # The webhook handler is reached only with a signature, however the path is spelled.
        body = b'{"amount": 1}'
        for path in (
            "/docs/%2e%2e/webhooks/pay",
            "/docs/%2e%2e/webhooks/pay/",
            "/api/v1/webhooks/pay",  # verified at the endpoint
        ):
            unsigned = client.post(path, content=body)
            assert unsigned.status_code == 400, unsigned.text
            assert unsigned.json()["code"] == "SIGNATURE_INVALID"
        signed = client.post(
            "/docs/%2e%2e/webhooks/pay", content=body, headers=sign_webhook(body, WEBHOOK_SECRET)
        )
        assert signed.status_code == 200, signed.text
        assert signed.json() == {"paid": True, "bytes": len(body)}

        # One login budget (3/minute per ip), whichever way the login path is spelled.
        logins = [
            client.post(path).status_code
            for path in ("/docs/%2e%2e/auth/token", "/api/v1/auth/token", "/auth//token")
        ]
        assert logins == [401, 401, 401]
        assert client.post("/auth/token").status_code == 429

        # The tenant is bound at the route served, and its limit (4/minute) counts there.
        acme = {"Authorization": f"Bearer {_token('acme')}"}
        assert client.get("/tenants/acme/items/").status_code == 401
        other = client.get("/tenants/globex/items/", headers=acme)
        assert other.status_code == 403
        assert "secret" not in other.text
        served = [client.get("/tenants/acme/items/", headers=acme) for _ in range(4)]
        assert [response.status_code for response in served] == [200] * 4
        assert served[0].json()["tenant"] == "acme"
        limited = client.get("/tenants/acme/items/", headers=acme)
        assert limited.status_code == 429
        assert limited.json()["code"] == "RATE_LIMITED"
        assert client.get("/tenants/acme/items", headers=acme).status_code == 429

    text = log.read_text()
    assert text.count("path_rewritten_inside_the_stack") == 1  # said once, loudly
    assert "auth_checked_at_the_endpoint" in text
    assert "webhook_verified_at_the_endpoint" in text
