"""JWTVerifier: a bearer token in, a verified :class:`Principal` out, or a refusal.

Order of checks, cheapest and least trusting first::

    size cap -> cache (hash of the whole token) -> exactly three segments
    -> header: strict base64url + JSON; alg on the allow-list (never `none`), no `crit`,
       no `zip`/`enc`, no key-carrying headers (jku, x5u, jwk, x5c), typ when required
    -> key: configured secret / PEM, or the JWKS by kid
    -> signature (PyJWT's algorithm implementations) over the raw segments
    -> claims: only now is the payload parsed; exp, iat, sub required; nbf, iss, aud,
       max age; tenant, roles, scopes with strict types

Every refusal is a :class:`~hardenkit.auth.errors.TokenRejectedError` with a stable reason;
nothing else escapes, whatever the bytes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from hardenkit.auth import _compact
from hardenkit.auth._cache import VerifiedTokenCache, token_digest
from hardenkit.auth.algorithms import is_none_algorithm
from hardenkit.auth.claims import ClaimPath, read_string_set, read_tenant
from hardenkit.auth.errors import TokenRejectedError
from hardenkit.auth.jwks import JWKSClient
from hardenkit.auth.keys import StaticKeys, VerificationKey
from hardenkit.auth.principal import Principal

if TYPE_CHECKING:
    from hardenkit.settings import HardenSettings

__all__ = ["JWTVerifier"]

MAX_LEEWAY = 300.0
MAX_HEADER_SEGMENT = 2048
_KEY_HEADERS = frozenset({"jku", "x5u", "jwk", "x5c"})
_REFUSED_HEADERS = frozenset({"crit", "zip", "enc", "b64"}) | _KEY_HEADERS


class JWTVerifier:
    """Verifies bearer JWTs against one key source and one claims policy.

    Args:
        secret: Shared HMAC secret (HS256/384/512), at least the algorithm's output size.
        public_key: PEM public key (RSA >= 2048 bits, EC P-256/384/521, Ed25519/Ed448).
        jwks: A :class:`JWKSClient` for the identity provider's key set.
        algorithms: Allow-list for a secret or PEM key (a JWKS client has its own);
            empty picks the safe default of the key source.
        issuer: Required ``iss``, when set.
        audience: Accepted ``aud`` values; when non-empty, one must be in the token.
        leeway: Clock skew tolerated on ``exp``/``nbf``/``iat``, 0 to 300 seconds.
        max_age: When set, tokens issued (``iat``) longer ago than this are refused.
        token_type: When set (``"at+jwt"``, RFC 9068), the header ``typ`` must match.
        tenant_claim: Claim holding the tenant: a top-level name (``tenant_id``, ``tid``,
            ``https://example.com/tenant``) or a JSON pointer (``/org/id``).
        multi_tenant: Accept a list of tenants in the claim (membership mode).
        roles_claim: Claim holding roles (a list, or a space-separated string).
        scopes_claim: Claim holding scopes (``scope`` string or ``scp`` list).
        max_token_bytes: Longest token accepted, checked before anything else.
        cache_size: Verified tokens remembered (0 disables the cache).
        cache_ttl: Longest time a verified token is trusted without re-verification.
        clock: Wall clock (``time.time``), replaceable in tests.

    Raises:
        ValueError: No key source, more than one, or an unsafe key/algorithm combination.
    """

    def __init__(
        self,
        *,
        secret: str | bytes | None = None,
        public_key: str | None = None,
        jwks: JWKSClient | None = None,
        algorithms: Iterable[str] = (),
        issuer: str | None = None,
        audience: Iterable[str] = (),
        leeway: float = 30.0,
        max_age: float | None = None,
        token_type: str | None = None,
        tenant_claim: str = "tenant_id",
        multi_tenant: bool = False,
        roles_claim: str = "roles",
        scopes_claim: str = "scope",
        max_token_bytes: int = 8192,
        cache_size: int = 10_000,
        cache_ttl: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        sources = [source for source in (secret, public_key, jwks) if source is not None]
        if len(sources) != 1:
            raise ValueError("configure exactly one key source: secret, public key or JWKS")
        if not 0 <= leeway <= MAX_LEEWAY:
            raise ValueError(f"leeway must be between 0 and {MAX_LEEWAY:g} seconds")
        if max_age is not None and max_age <= 0:
            raise ValueError("max_age must be positive")
        if max_token_bytes < 64:
            raise ValueError("max_token_bytes is too small for any JWT")
        self._static: StaticKeys | None = None
        self._jwks = jwks
        if jwks is None:
            self._static = StaticKeys(secret=secret, public_key=public_key, algorithms=algorithms)
            self.algorithms = self._static.algorithms
        else:
            if list(algorithms):
                raise ValueError("give the JWKS allow-list to JWKSClient(algorithms=...)")
            self.algorithms = jwks.algorithms
        self._allowed = frozenset(self.algorithms)
        self.issuer = issuer
        self.audience = frozenset(audience)
        self.leeway = float(leeway)
        self.max_age = max_age
        self.token_type = _normalise_typ(token_type) if token_type else None
        self.tenant_claim = ClaimPath(tenant_claim)
        self.multi_tenant = multi_tenant
        self.roles_claim = ClaimPath(roles_claim)
        self.scopes_claim = ClaimPath(scopes_claim)
        self.max_token_bytes = max_token_bytes
        self._clock = clock
        self.cache = VerifiedTokenCache(cache_size, cache_ttl, clock)
        if jwks is not None:
            jwks.on_keys_changed(self.cache.clear)

    @classmethod
    def from_settings(
        cls, settings: HardenSettings, *, jwks: JWKSClient | None = None
    ) -> JWTVerifier:
        """Build the verifier ``HARDENKIT_JWT_*`` / ``HARDENKIT_TENANT_*`` describe.

        Raises:
            ValueError: No key source is configured (names the settings).
        """
        secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
        if jwks is None and settings.jwt_jwks_url:
            jwks = JWKSClient(
                settings.jwt_jwks_url,
                algorithms=settings.jwt_algorithms,
                allow_http_loopback=settings.jwt_jwks_allow_http_loopback,
                timeout=settings.jwt_jwks_timeout,
                cache_ttl=settings.jwt_jwks_cache_ttl,
                refresh_cooldown=settings.jwt_jwks_refresh_cooldown,
            )
        if secret is None and settings.jwt_public_key is None and jwks is None:
            raise ValueError(
                "no key source: set HARDENKIT_JWT_SECRET, HARDENKIT_JWT_PUBLIC_KEY "
                "or HARDENKIT_JWT_JWKS_URL"
            )
        return cls(
            secret=secret,
            public_key=settings.jwt_public_key,
            jwks=jwks,
            algorithms=() if jwks is not None else settings.jwt_algorithms,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            leeway=settings.jwt_leeway,
            max_age=settings.jwt_max_age,
            token_type=settings.jwt_token_type,
            tenant_claim=settings.tenant_claim,
            multi_tenant=settings.tenant_multi_membership,
            roles_claim=settings.jwt_roles_claim,
            scopes_claim=settings.jwt_scopes_claim,
            max_token_bytes=settings.auth_max_header_bytes,
            cache_size=settings.jwt_cache_size,
            cache_ttl=settings.jwt_cache_ttl,
        )

    @property
    def jwks(self) -> JWKSClient | None:
        """The JWKS client, when keys come from a JWKS URL."""
        return self._jwks

    async def verify(self, token: str | bytes) -> Principal:
        """Return the principal of a valid ``token``.

        Raises:
            TokenRejectedError: The token must not be trusted; ``reason`` says why.
            KeysUnavailableError: The JWKS could never be loaded (answer 503, not 401).
        """
        if len(token) > self.max_token_bytes:
            raise TokenRejectedError("token_too_large")
        if isinstance(token, str):
            try:
                token = token.encode("ascii")
            except UnicodeEncodeError:
                raise TokenRejectedError("malformed") from None
        digest = token_digest(token)
        principal = self.cache.get(digest)
        if principal is not None:
            return principal
        principal, valid_until = await self._verify_uncached(token)
        self.cache.put(digest, principal, valid_until)
        return principal

    async def _verify_uncached(self, token: bytes) -> tuple[Principal, float]:
        header_segment, payload_segment, signature_segment = _compact.split_token(token)
        if len(header_segment) > MAX_HEADER_SEGMENT:
            raise TokenRejectedError("malformed")
        header = _compact.json_object(_compact.b64url_decode(header_segment))
        key = await self._key_for(header)
        signature = _compact.b64url_decode(signature_segment)
        signing_input = token[: len(header_segment) + 1 + len(payload_segment)]
        if not key.verify(signing_input, signature):
            raise TokenRejectedError("bad_signature")
        claims = _compact.json_object(_compact.b64url_decode(payload_segment))
        valid_until = self._check_time_claims(claims)
        return self._principal(claims), valid_until

    async def _key_for(self, header: Mapping[str, Any]) -> VerificationKey:
        algorithm = header.get("alg")
        if not isinstance(algorithm, str):
            raise TokenRejectedError("malformed")
        if is_none_algorithm(algorithm):
            raise TokenRejectedError("alg_none")
        if algorithm not in self._allowed:
            raise TokenRejectedError("alg_not_allowed")
        refused = _REFUSED_HEADERS.intersection(header)
        if refused:
            raise TokenRejectedError(_refusal_for(refused))
        if self.token_type is not None:
            typ = header.get("typ")
            if not isinstance(typ, str) or _normalise_typ(typ) != self.token_type:
                raise TokenRejectedError("wrong_typ")
        kid = header.get("kid")
        if kid is not None and (not isinstance(kid, str) or len(kid) > 256):
            raise TokenRejectedError("malformed")
        if self._static is not None:
            key = self._static.key_for(algorithm)
            if key is None:  # pragma: no cover - the allow-list check above covers it
                raise TokenRejectedError("alg_not_allowed")
            return key
        assert self._jwks is not None  # noqa: S101 - one of the two is set at construction
        return await self._jwks.key_for(kid, algorithm)

    def _check_time_claims(self, claims: Mapping[str, Any]) -> float:
        now = self._clock()
        leeway = self.leeway
        exp = _required_number(claims, "exp")
        iat = _required_number(claims, "iat")
        nbf = _number(claims, "nbf", required=False)
        if now > exp + leeway:
            raise TokenRejectedError("expired", "expired")
        if nbf is not None and now + leeway < nbf:
            raise TokenRejectedError("not_yet_valid")
        if now + leeway < iat:
            raise TokenRejectedError("issued_in_future")
        valid_until = exp
        if self.max_age is not None:
            if now - iat > self.max_age + leeway:
                raise TokenRejectedError("too_old", "expired")
            valid_until = min(valid_until, iat + self.max_age)
        return valid_until

    def _principal(self, claims: dict[str, Any]) -> Principal:
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise TokenRejectedError("missing_sub" if subject is None else "malformed_claims")
        if self.issuer is not None:
            issuer = claims.get("iss")
            if issuer is None:
                raise TokenRejectedError("missing_iss")
            if issuer != self.issuer:
                raise TokenRejectedError("wrong_issuer")
        if self.audience:
            self._check_audience(claims.get("aud"))
        tenant, tenants = read_tenant(claims, self.tenant_claim, multi=self.multi_tenant)
        return Principal(
            subject=subject,
            tenant=tenant,
            roles=read_string_set(claims, self.roles_claim),
            scopes=read_string_set(claims, self.scopes_claim),
            claims=MappingProxyType(claims),
            tenants=tenants,
        )

    def _check_audience(self, audience: Any) -> None:
        if audience is None:
            raise TokenRejectedError("missing_aud")
        if isinstance(audience, str):
            audience = [audience]
        if not isinstance(audience, list) or not all(isinstance(a, str) for a in audience):
            raise TokenRejectedError("malformed_claims")
        if self.audience.isdisjoint(audience):
            raise TokenRejectedError("wrong_audience")


def _number(claims: Mapping[str, Any], name: str, *, required: bool) -> float | None:
    value = claims.get(name)
    if value is None:
        if required:
            raise TokenRejectedError(f"missing_{name}")
        return None
    # bool is an int subclass; strings are never numbers here.
    if type(value) not in (int, float):
        raise TokenRejectedError("malformed_claims")
    try:
        number = float(value)
    except OverflowError:  # an int past any float (10**400): JSON allows it
        raise TokenRejectedError("malformed_claims") from None
    if not math.isfinite(number):
        raise TokenRejectedError("malformed_claims")
    return number


def _required_number(claims: Mapping[str, Any], name: str) -> float:
    value = _number(claims, name, required=True)
    assert value is not None  # noqa: S101 - required=True raises instead of returning None
    return value


def _normalise_typ(typ: str) -> str:
    typ = typ.strip().lower()
    return typ.removeprefix("application/")


def _refusal_for(headers: set[str] | frozenset[str]) -> str:
    if "crit" in headers:
        return "crit_unsupported"
    if "enc" in headers:
        return "jwe_refused"
    if "zip" in headers:
        return "compressed_refused"
    if "b64" in headers:
        return "unencoded_payload_refused"
    return "untrusted_key_header"
