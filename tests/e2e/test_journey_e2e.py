"""A user's whole journey on a real uvicorn, with real tokens: HS256 and ES256 from a JWKS."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from examples.reference_app.settings import DEMO_DEFAULTS
from hardenkit import sign_webhook
from tests.e2e._traffic import BEHIND_PROXY_ENV, bearer, check_response, demo_claims, hs256_token
from tests.support.uvicorn_server import UvicornServer

pytestmark = pytest.mark.e2e

APP = "examples.reference_app.app:create_app"


class _Checked:
    """An httpx client that sends a fresh request id and checks every response's headers."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.responses = 0

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        request_id = f"journey-{uuid.uuid4().hex}"
        headers = {**kwargs.pop("headers", {}), "X-Request-ID": request_id}
        response = self.client.request(method, path, headers=headers, **kwargs)
        assert check_response(response, request_id) == [], (method, path, response.text)
        self.responses += 1
        return response

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)


def _walk_protected_routes(http: _Checked, member: str, admin: str, tenant: str) -> None:
    """The same journey whatever signed the tokens: identity, tenant binding, roles."""
    me = http.get("/api/me", headers=bearer(member))
    assert me.status_code == 200
    assert me.json()["tenant"] == tenant
    assert me.json()["credential"] == "jwt"

    items = http.get(f"/api/tenants/{tenant}/items", headers=bearer(member))
    assert items.status_code == 200
    assert items.json()["tenant"] == tenant

    other = "globex" if tenant != "globex" else "acme"
    for response in (
        http.get(f"/api/tenants/{other}/items", headers=bearer(member)),
        http.get("/api/me", headers={**bearer(member), "X-Tenant-ID": other}),
    ):
        assert response.status_code == 403
        assert response.json()["code"] == "TENANT_MISMATCH"
        assert other not in json.dumps(response.json().get("items", []))

    refused = http.get("/api/admin/stats", headers=bearer(member))
    assert refused.status_code == 403
    assert refused.json()["code"] == "AUTHORIZATION_ERROR"
    stats = http.get("/api/admin/stats", headers=bearer(admin))
    assert stats.status_code == 200
    assert stats.json()["tenants"] == 2

    anonymous = http.get("/api/me")
    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "AUTHENTICATION_ERROR"
    assert anonymous.headers["www-authenticate"].startswith("Bearer")


def test_hs256_journey_from_demo_login_to_admin_and_a_webhook_processed_once(
    tmp_path: Path,
) -> None:
    with (
        UvicornServer(
            APP, factory=True, env=BEHIND_PROXY_ENV, log_path=tmp_path / "uvicorn.log"
        ) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        http = _Checked(client)

        wrong = http.request("POST", "/auth/token", json={"username": "alice", "password": "guess"})
        assert wrong.status_code == 401
        tokens = {}
        for user in ("alice", "bob"):
            login = http.request(
                "POST", "/auth/token", json={"username": user, "password": f"{user}-demo-password"}
            )
            assert login.status_code == 200
            assert login.headers["cache-control"] == "no-store"
            tokens[user] = login.json()["access_token"]
        _walk_protected_routes(http, tokens["alice"], tokens["bob"], "acme")

        # Tokens signed directly with the shared secret work the same way...
        _walk_protected_routes(
            http, hs256_token("globex"), hs256_token("globex", roles=["admin"]), "globex"
        )
        # ...and the claims are checked, not just the signature.
        for token in (
            hs256_token("acme", secret="another-secret-of-enough-length-for-hs256-Zq9x"),
            hs256_token("acme", aud="some-other-api"),
            hs256_token("acme", iss="https://someone-else.invalid"),
            hs256_token("acme", exp=1, iat=0, nbf=0),
            jwt.encode(
                {k: v for k, v in demo_claims("acme").items() if k != "tenant_id"},
                DEMO_DEFAULTS["jwt_secret"],
                algorithm="HS256",
            ),
        ):
            response = http.get("/api/me", headers=bearer(token))
            assert response.status_code == 401, response.text
            assert response.json()["code"] == "AUTHENTICATION_ERROR"

        # A webhook delivery runs the handler once; its redelivery is acknowledged only.
        body = json.dumps({"type": "invoice.paid", "id": "evt_1"}).encode()
        signed = sign_webhook(body, DEMO_DEFAULTS["webhook_secret"], webhook_id="msg_e2e_once")
        first = http.request("POST", "/webhooks/demo", content=body, headers=signed)
        assert first.status_code == 200
        assert first.json() == {
            "status": "processed",
            "processed": True,
            "webhook_id": "msg_e2e_once",
            "body_bytes": len(body),
        }
        again = http.request("POST", "/webhooks/demo", content=body, headers=signed)
        assert again.status_code == 200
        assert again.json()["processed"] is False
        assert again.json()["status"] == "duplicate"
        forged = http.request(
            "POST", "/webhooks/demo", content=body + b" ", headers={**signed, "webhook-id": "x2"}
        )
        assert forged.status_code == 401
        assert forged.json()["code"] == "SIGNATURE_INVALID"

        assert http.get("/readyz").json()["status"] == "healthy"
        assert http.responses == 26  # every response above was checked


class _JwksServer:
    """A local identity provider's JWKS endpoint on 127.0.0.1 (plain http, a thread)."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        payload = json.dumps(jwks).encode()
        self.fetches = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                if self.path != "/jwks.json":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"

    def __enter__(self) -> _JwksServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def _hmac_signed_with(secret: bytes, tenant: str) -> str:
    """An HS256 token whose HMAC key is the provider's public key (pyjwt refuses to)."""
    header = {"alg": "HS256", "typ": "JWT", "kid": "e2e-key-1"}
    signing_input = b".".join(
        _b64url(json.dumps(part).encode()) for part in (header, demo_claims(tenant))
    )
    signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + _b64url(signature)).decode()


def _b64url(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


@pytest.fixture
def es256_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def test_es256_journey_with_keys_from_a_local_jwks_server(
    tmp_path: Path, es256_key: ec.EllipticCurvePrivateKey
) -> None:
    jwk = ECAlgorithm.to_jwk(es256_key.public_key(), as_dict=True)
    jwk.update(kid="e2e-key-1", alg="ES256", use="sig")
    other_key = ec.generate_private_key(ec.SECP256R1())
    public_pem = es256_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    def es256(tenant: str, *, key: Any = es256_key, kid: str = "e2e-key-1", **extra: Any) -> str:
        return jwt.encode(
            demo_claims(tenant, **extra), key, algorithm="ES256", headers={"kid": kid}
        )

    with _JwksServer({"keys": [jwk]}) as idp:
        env = {
            "HARDENKIT_JWT_JWKS_URL": idp.url,
            "HARDENKIT_JWT_JWKS_ALLOW_HTTP_LOOPBACK": "true",
            "HARDENKIT_JWT_ALGORITHMS": "ES256",
            **BEHIND_PROXY_ENV,
        }
        with (
            UvicornServer(APP, factory=True, env=env, log_path=tmp_path / "uvicorn.log") as server,
            httpx.Client(base_url=server.url, timeout=10) as client,
        ):
            http = _Checked(client)
            _walk_protected_routes(http, es256("acme"), es256("acme", roles=["admin"]), "acme")
            assert idp.fetches >= 1

            for token in (
                es256("acme", key=other_key),  # right kid, wrong key
                es256("acme", kid="unknown-kid"),
                hs256_token("acme"),  # the demo secret is no key source here
                _hmac_signed_with(public_pem, "acme"),  # the key-confusion attack
            ):
                response = http.get("/api/me", headers=bearer(token))
                assert response.status_code == 401, response.text
                assert response.json()["code"] == "AUTHENTICATION_ERROR"

            # No shared secret configured: the demo login is not offered.
            login = http.request(
                "POST", "/auth/token", json={"username": "alice", "password": "alice-demo-password"}
            )
            assert login.status_code == 404
            ready = http.get("/readyz").json()
            assert ready["status"] == "healthy", ready
