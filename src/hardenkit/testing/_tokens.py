"""``TokenIssuer``: a key set for tests that mints tokens the app's settings accept."""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

__all__ = ["TokenIssuer"]

Algorithm = Literal["HS256", "RS256", "ES256"]

_ISSUER = "https://issuer.hardenkit.test"
_AUDIENCE = "hardenkit-test-api"


@dataclass(frozen=True, slots=True)
class TokenIssuer:
    """A test identity provider: one signing key, the settings that trust it, and ``mint``.

    Build one with :meth:`hs256`, :meth:`rs256` or :meth:`es256`; pass :meth:`settings`
    to ``HardenSettings(...)`` (or serve :meth:`jwks` from a
    :class:`~hardenkit.testing.JWKSServer`), then send ``Authorization: Bearer`` with
    :meth:`mint`'s tokens. Keys are generated per issuer and never leave the process.

    Attributes:
        algorithm: ``HS256``, ``RS256`` or ``ES256``.
        kid: The key id put in every token's header and in the JWKS.
        issuer: The ``iss`` of every token (and ``HARDENKIT_JWT_ISSUER``).
        audience: The ``aud`` of every token (and ``HARDENKIT_JWT_AUDIENCE``).
        tenant_claim: Where the tenant goes (``HARDENKIT_TENANT_CLAIM``).
        roles_claim: Where roles go (``HARDENKIT_JWT_ROLES_CLAIM``).
        scopes_claim: Where scopes go, space-separated (``HARDENKIT_JWT_SCOPES_CLAIM``).
    """

    algorithm: Algorithm
    signing_key: str | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = field(repr=False)
    kid: str = field(default_factory=lambda: f"test-{uuid.uuid4().hex[:12]}")
    issuer: str = _ISSUER
    audience: str = _AUDIENCE
    tenant_claim: str = "tenant_id"
    roles_claim: str = "roles"
    scopes_claim: str = "scope"

    @classmethod
    def hs256(cls, secret: str | None = None, **options: Any) -> TokenIssuer:
        """An issuer with a shared secret (random and 64 characters long by default)."""
        return cls("HS256", secret if secret is not None else secrets.token_urlsafe(48), **options)

    @classmethod
    def rs256(cls, **options: Any) -> TokenIssuer:
        """An issuer with a fresh 2048-bit RSA key."""
        return cls(
            "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048), **options
        )

    @classmethod
    def es256(cls, **options: Any) -> TokenIssuer:
        """An issuer with a fresh P-256 key."""
        return cls("ES256", ec.generate_private_key(ec.SECP256R1()), **options)

    @property
    def symmetric(self) -> bool:
        """Whether tokens are signed with a shared secret."""
        return self.algorithm == "HS256"

    def mint(
        self,
        subject: str = "user-1",
        *,
        tenant: str | Iterable[str] | None = "tenant-1",
        roles: Iterable[str] = (),
        scopes: Iterable[str] = (),
        expires_in: float = 300.0,
        claims: Mapping[str, Any] | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> str:
        """Return a signed token for ``subject`` in ``tenant``.

        Args:
            subject: The ``sub`` claim.
            tenant: The tenant claim; a list for multi-membership tokens, ``None`` for
                none (a tenant-less service token).
            roles: Put in the roles claim, as a list.
            scopes: Put in the scopes claim, space-separated (OAuth 2.0).
            expires_in: Seconds until ``exp``; negative mints an expired token.
            claims: More claims, or replacements (``{"aud": "other-api"}``); a value of
                ``None`` removes the claim.
            headers: More JOSE header fields (``{"typ": "at+jwt"}``).
        """
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "iat": now,
            "nbf": now,
            "exp": int(now + expires_in),
            "jti": uuid.uuid4().hex,
        }
        if tenant is not None:
            payload[self.tenant_claim] = tenant if isinstance(tenant, str) else list(tenant)
        if roles:
            payload[self.roles_claim] = sorted(roles)
        if scopes:
            payload[self.scopes_claim] = " ".join(sorted(scopes))
        for name, value in (claims or {}).items():
            if value is None:
                payload.pop(name, None)
            else:
                payload[name] = value
        header = {"kid": self.kid, **(headers or {})}
        return jwt.encode(payload, self.signing_key, algorithm=self.algorithm, headers=header)

    def public_key_pem(self) -> str:
        """The public key in PEM (asymmetric issuers only).

        Raises:
            TypeError: The issuer uses a shared secret (never published).
        """
        return (
            self._private_key()
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode("ascii")
        )

    def jwk(self) -> dict[str, Any]:
        """The public key as a JWK with ``kid``, ``alg`` and ``use`` (asymmetric only).

        Raises:
            TypeError: The issuer uses a shared secret (never published).
        """
        public = self._private_key().public_key()
        encoded = (
            RSAAlgorithm.to_jwk(public)
            if isinstance(public, rsa.RSAPublicKey)
            else ECAlgorithm.to_jwk(public)
        )
        jwk: dict[str, Any] = json.loads(encoded)
        return {**jwk, "kid": self.kid, "alg": self.algorithm, "use": "sig"}

    def _private_key(self) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
        if isinstance(self.signing_key, str):
            raise TypeError("an HS256 issuer's secret is never published")
        return self.signing_key

    def jwks(self) -> dict[str, Any]:
        """A JWKS document holding this issuer's public key."""
        return {"keys": [self.jwk()]}

    def settings(self) -> dict[str, Any]:
        """``HardenSettings`` values that trust this issuer's tokens and only them.

        HS256 gives ``jwt_secret``, the others ``jwt_public_key``; both give the
        algorithm, issuer and audience (and the claim names when they are not the
        defaults). ``HardenSettings(**issuer.settings(), env="test")``.
        """
        values: dict[str, Any] = {
            "jwt_algorithms": [self.algorithm],
            "jwt_issuer": self.issuer,
            "jwt_audience": [self.audience],
            "tenant_claim": self.tenant_claim,
            "jwt_roles_claim": self.roles_claim,
            "jwt_scopes_claim": self.scopes_claim,
        }
        if self.symmetric:
            values["jwt_secret"] = self.signing_key
        else:
            values["jwt_public_key"] = self.public_key_pem()
        return values
