"""Token factories for the auth tests: real keys, real signatures, hand-made bytes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from functools import cache
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

SECRET = "s3cret-for-tests-0123456789-abcdefghijklmnopqrstuvwxyz"
ISSUER = "https://issuer.test"
AUDIENCE = "orders-api"


def rsa_key(name: str = "main") -> rsa.RSAPrivateKey:
    """An RSA-2048 private key, one per name for the whole session."""
    return _rsa_key(name)


@cache
def _rsa_key(name: str) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def ec_key(name: str = "main") -> ec.EllipticCurvePrivateKey:
    return _ec_key(name)


@cache
def _ec_key(name: str) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def jwk_of(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    algorithm = jwt.algorithms.RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) else None
    if algorithm is not None:
        data = json.loads(algorithm.to_jwk(key.public_key()))
    else:
        data = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    data.update({"kid": kid, "use": "sig"})
    return data


def claims(**overrides: Any) -> dict[str, Any]:
    """Valid claims for the default policy; ``name=None`` removes a claim."""
    now = int(time.time())
    values: dict[str, Any] = {
        "sub": "user-1",
        "tenant_id": "acme",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 600,
        "roles": ["member"],
        "scope": "orders:read",
    }
    values.update(overrides)
    return {name: value for name, value in values.items() if value is not None}


def hs256(payload: dict[str, Any] | None = None, **headers: Any) -> str:
    return jwt.encode(payload or claims(), SECRET, algorithm="HS256", headers=headers or None)


def rs256(payload: dict[str, Any] | None = None, *, key_name: str = "main", **headers: Any) -> str:
    return jwt.encode(
        payload or claims(), rsa_key(key_name), algorithm="RS256", headers=headers or None
    )


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_hmac_token(header: bytes, payload: bytes, secret: str | bytes = SECRET) -> str:
    """Sign arbitrary header/payload bytes with HMAC-SHA256, exactly as given."""
    key = secret.encode() if isinstance(secret, str) else secret
    signing_input = f"{b64(header)}.{b64(payload)}".encode()
    signature = hmac.new(key, signing_input, hashlib.sha256).digest()
    return f"{signing_input.decode()}.{b64(signature)}"


def unsigned(header: dict[str, Any], payload: dict[str, Any] | None = None) -> str:
    head = b64(json.dumps(header).encode())
    body = b64(json.dumps(payload or claims()).encode())
    return f"{head}.{body}."
