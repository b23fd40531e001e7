"""Synthetic secrets of every kind the redactor must catch (none of them is real)."""

from __future__ import annotations

import base64
import random
import string
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

_rng = random.Random(20240501)
_ALNUM = string.ascii_letters + string.digits


def _chars(alphabet: str, length: int) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(length))


def _alnum(length: int) -> str:
    return _chars(_ALNUM, length)


def _hex(length: int) -> str:
    return _chars("0123456789abcdef", length)


def _b64url(length: int) -> str:
    return _chars(_ALNUM + "-_", length)


@dataclass(frozen=True)
class Sample:
    """A secret as it appears in text, and the substrings that must never be logged."""

    kind: str
    text: str
    secrets: tuple[str, ...]

    @property
    def url_safe(self) -> bool:
        return not any(char.isspace() for char in self.text)


def _same(kind: str, text: str) -> Sample:
    return Sample(kind, text, (text,))


def _pem_rsa() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - throwaway
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def _pem_ec() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _pem_body(pem: str) -> tuple[str, ...]:
    lines = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    return tuple(lines)


def _luhn_complete(prefix_and_body: str) -> str:
    for check in "0123456789":
        candidate = prefix_and_body + check
        total = 0
        for index, char in enumerate(reversed(candidate)):
            value = int(char) * (2 if index % 2 else 1)
            total += value - 9 if value > 9 else value
        if total % 10 == 0:
            return candidate
    raise AssertionError("unreachable")


def build_corpus() -> list[Sample]:
    jwt_hs = jwt.encode({"sub": "user-1", "tenant_id": "acme", "n": _alnum(8)}, _alnum(32))
    jwt_rs_like = jwt.encode({"sub": "svc", "scope": "admin", "x": _alnum(12)}, _alnum(64), "HS512")
    bearer = _b64url(40)
    basic = base64.b64encode(f"admin:{_alnum(14)}".encode()).decode()
    pem_rsa, pem_ec = _pem_rsa(), _pem_ec()
    userinfo_password = _alnum(16)
    db_password = _alnum(12)
    query_token = _alnum(24)
    query_key = _alnum(10)
    amz_signature = _hex(64)
    oauth_fragment = _b64url(30)
    visa = "4111 1111 1111 1111"
    mastercard = "5555-5555-5555-4444"
    amex = "378282246310005"
    discover = "6011111111111117"
    generated_visa = _luhn_complete("4" + _chars(string.digits, 14))
    sentry_key = _hex(32)
    return [
        _same("jwt_hs256", jwt_hs),
        _same("jwt_hs512", jwt_rs_like),
        Sample("bearer", f"Bearer {bearer}", (bearer,)),
        Sample("bearer_lowercase", f"bearer {jwt_hs[:20]}x9Z", (f"{jwt_hs[:20]}x9Z",)),
        Sample("basic", f"Basic {basic}", (basic,)),
        Sample("pem_rsa", pem_rsa, _pem_body(pem_rsa)),
        Sample("pem_ec", pem_ec, _pem_body(pem_ec)),
        _same("aws_access_key_id", "AKIA" + _chars(string.ascii_uppercase + "234567", 16)),
        _same("aws_sts_key_id", "ASIA" + _chars(string.ascii_uppercase + "234567", 16)),
        _same("aws_secret_access_key", _chars(_ALNUM + "+/", 40)),
        _same("github_pat_classic", "ghp_" + _alnum(36)),
        _same("github_pat_fine", "github_pat_" + _alnum(22) + "_" + _alnum(59)),
        _same("github_oauth", "gho_" + _alnum(36)),
        _same("github_server", "ghs_" + _alnum(36)),
        _same("gitlab_pat", "glpat-" + _b64url(20)),
        _same("gitlab_deploy", "gldt-" + _b64url(20)),
        _same(
            "slack_bot",
            f"xoxb-{_chars(string.digits, 12)}-{_chars(string.digits, 13)}-{_alnum(24)}",
        ),
        _same("slack_app", f"xapp-1-A{_alnum(10)}-{_chars(string.digits, 13)}-{_hex(64)}"),
        _same(
            "slack_webhook",
            f"https://hooks.slack.com/services/T{_alnum(8)}/B{_alnum(8)}/{_alnum(24)}",
        ),
        _same("stripe_secret_live", "sk_live_" + _alnum(99)),
        _same("stripe_secret_test", "sk_test_" + _alnum(24)),
        _same("stripe_restricted", "rk_live_" + _alnum(24)),
        _same("stripe_webhook_secret", "whsec_" + _alnum(32)),
        _same("google_api_key", "AIza" + _b64url(35)),
        _same("google_oauth_secret", "GOCSPX-" + _b64url(28)),
        _same("google_access_token", "ya29." + _b64url(60)),
        _same("openai_project", "sk-proj-" + _b64url(120)),
        _same("openai_legacy", "sk-" + _alnum(48)),
        _same("anthropic", "sk-ant-api03-" + _b64url(93) + "AA"),
        _same("npm", "npm_" + _alnum(36)),
        _same("pypi", "pypi-AgEIcHlwaS5vcmc" + _b64url(60)),
        _same("sendgrid", f"SG.{_b64url(22)}.{_b64url(43)}"),
        _same("twilio_api_key", "SK" + _hex(32)),
        _same("twilio_auth_token", _hex(32)),
        Sample(
            "url_userinfo",
            f"https://deploy:{userinfo_password}@git.example.com/org/repo.git",
            (userinfo_password, f"deploy:{userinfo_password}"),
        ),
        Sample(
            "database_url",
            f"postgresql://app:{db_password}@db.internal:5432/orders",
            (db_password,),
        ),
        Sample("sentry_dsn", f"https://{sentry_key}@o123456.ingest.sentry.io/42", (sentry_key,)),
        Sample(
            "query_token",
            f"https://api.example.com/v1/export?format=csv&token={query_token}",
            (query_token,),
        ),
        Sample("query_api_key", f"/search?q=shoes&api_key={query_key}&page=2", (query_key,)),
        Sample(
            "presigned_url",
            "https://bucket.s3.amazonaws.com/report.pdf?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            f"&X-Amz-Expires=3600&X-Amz-Signature={amz_signature}",
            (amz_signature,),
        ),
        Sample(
            "oauth_fragment",
            f"https://app.example.com/callback#access_token={oauth_fragment}&expires_in=3600",
            (oauth_fragment,),
        ),
        Sample("card_visa_spaces", visa, (visa, visa.replace(" ", ""))),
        Sample("card_mastercard_dashes", mastercard, (mastercard, mastercard.replace("-", ""))),
        _same("card_amex", amex),
        _same("card_discover", discover),
        _same("card_generated", generated_visa),
        _same("high_entropy_base64", base64.b64encode(_rng.randbytes(33)).decode()),
        _same("high_entropy_urlsafe", _b64url(43)),
        _same("high_entropy_hex64", _hex(64)),
    ]


CORPUS = build_corpus()

# Values that hold no secret and must come out of the redactor unchanged.
ORDINARY_VALUES: dict[str, object] = {
    "uuid": "123e4567-e89b-12d3-a456-426614174000",
    "uuid_upper": "3F2B8F0E-6A43-4B8E-9F53-9A0D6F1F2C11",
    "request_id": "3f2b8f0e6a434b8e9f539a0d6f1f2c11",
    "client_request_id": "req-2024-05-01-checkout-7f3a",
    "timestamp": "2024-05-01T12:30:45.123456+00:00",
    "at": "2024-05-01T12:30:45Z",
    "message_1": "The token was refreshed before it expired, so the session continued.",
    "message_2": "Token validation failed: signature mismatch for key id k1.",
    "message_3": "Bearer authentication is required for this endpoint.",
    "message_4": "Basic auth is disabled in production.",
    "message_5": "token: expired",
    "message_6": "password reset email sent to the account owner",
    "path": "/api/v1/organisations/42/members/17/permissions",
    "route": "/tenants/{tenant_id}/orders/{order_id}",
    "user_agent": (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.4 Safari/605.1.15"
    ),
    "ipv4": "203.0.113.9",
    "ipv6": "2001:db8:85a3::8a2e:370:7334",
    "email": "ada@example.com",
    "epoch_ms": 1714566645123,
    "order_total": 1299.5,
    "phone": "+1 415 555 0100",
    "version": "hardenkit 0.1.0 (python 3.11.9)",
    "module": "hardenkit.ratelimit.middleware",
    "identifier": "test_spoofed_forwarded_for_from_untrusted_peer_is_ignored",
    "class_name": "ServiceUnavailableExceptionHandler",
    "query": "/search?q=blue+shoes&page=2&sort=price",
    "sql": "SELECT id, name FROM orders WHERE tenant_id = $1 LIMIT 50",
    "mongo_id": "507f1f77bcf86cd799439011",
    "pod": "checkout-service-7d9f8b6c5d-x2x9z",
    "build": "v1.2.3-rc.1+build.20240501",
    "arn": "arn:aws:iam::123456789012:role/AppRole",
    "snake": "customer_2024_05_invoice_000123_final",
    "k8s": "kube-system/coredns-5d78c9869d-abcde",
    "gcp": "projects/my-project-123/locations/europe-west1",
    "message_7": "Processed 1500 events in 12 batches (3 retries).",
    "max_tokens": 4096,
    "token_type": "Bearer",
    "status": 200,
    "enabled": True,
    "nothing": None,
}
