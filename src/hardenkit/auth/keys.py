"""Verification keys from configuration: a shared secret or a PEM public key.

Each key is prepared once, at construction, together with its algorithm allow-list, so
verifying a token never parses a key. A configuration that cannot be safe (a secret
shorter than the algorithm's output, a private key where a public one belongs, an RSA key
under 2048 bits, an algorithm that does not fit the key) raises ``ValueError`` here, at
startup.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.algorithms import Algorithm, get_default_algorithms

from hardenkit.auth.algorithms import (
    EC_CURVES,
    HMAC_MIN_SECRET_BYTES,
    OKP_ALGORITHMS,
    RSA_ALGORITHMS,
    allowed_algorithms,
)

__all__ = ["MIN_RSA_BITS", "StaticKeys", "VerificationKey", "public_key_algorithms"]

MIN_RSA_BITS = 2048

_ALGORITHMS: Mapping[str, Algorithm] = get_default_algorithms()
_CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A prepared key bound to the one algorithm it verifies."""

    algorithm: str
    verifier: Algorithm
    key: Any

    def verify(self, signing_input: bytes, signature: bytes) -> bool:
        """Return whether ``signature`` is valid for ``signing_input``; never raises."""
        try:
            return bool(self.verifier.verify(signing_input, self.key, signature))
        except Exception:  # noqa: BLE001 - a malformed signature is just a bad signature
            return False


def bind(algorithm: str, key: Any) -> VerificationKey:
    """Return ``key`` bound to ``algorithm`` with PyJWT's implementation of it."""
    return VerificationKey(algorithm, _ALGORITHMS[algorithm], key)


def public_key_algorithms(key: Any, configured: Iterable[str]) -> tuple[str, ...]:
    """Return the algorithms a public key may verify, or raise ``ValueError``.

    An empty ``configured`` picks the key's natural algorithm: RS256 for RSA, the curve's
    ES algorithm for EC, EdDSA for Ed25519/Ed448.
    """
    configured = [name for name in configured if name.strip()]
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"RSA keys under {MIN_RSA_BITS} bits are refused")
        family, default = RSA_ALGORITHMS, ("RS256",)
    elif isinstance(key, ec.EllipticCurvePublicKey):
        curve = _CURVE_NAMES.get(key.curve.name)
        fitting = [name for name, name_curve in EC_CURVES.items() if name_curve == curve]
        if not fitting:
            raise ValueError(f"unsupported EC curve {key.curve.name}")
        family, default = frozenset(fitting), (fitting[0],)
    elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        family, default = OKP_ALGORITHMS, ("EdDSA",)
    else:
        raise ValueError("unsupported public key type")
    if not configured:
        return default
    names = allowed_algorithms("public_key", configured)
    unfit = [name for name in names if name not in family]
    if unfit:
        raise ValueError(f"algorithm(s) {', '.join(unfit)} do not fit this key")
    return names


def load_public_key(pem: str) -> Any:
    """Load a PEM public key, refusing private keys and certificates with a clear message."""
    if "PRIVATE KEY" in pem:
        raise ValueError("is a private key; configure the public key only")
    try:
        return load_pem_public_key(pem.strip().encode())
    except (ValueError, TypeError):
        raise ValueError("is not a PEM public key (-----BEGIN PUBLIC KEY-----)") from None


def check_secret(secret: bytes, algorithms: Iterable[str]) -> None:
    """Raise ``ValueError`` if ``secret`` is shorter than any algorithm's output size."""
    for name in algorithms:
        needed = HMAC_MIN_SECRET_BYTES[name]
        if len(secret) < needed:
            raise ValueError(f"{name} needs a secret of at least {needed} bytes")


class StaticKeys:
    """Keys fixed in configuration: exactly one shared secret or one PEM public key.

    Args:
        secret: The HMAC secret (HS256/384/512).
        public_key: A PEM public key (RSA, EC, Ed25519/Ed448).
        algorithms: The allow-list; empty picks the source's safe default.

    Raises:
        ValueError: Neither or both sources given, or any unsafe combination.
    """

    def __init__(
        self,
        *,
        secret: str | bytes | None = None,
        public_key: str | None = None,
        algorithms: Iterable[str] = (),
    ) -> None:
        if (secret is None) == (public_key is None):
            raise ValueError("give exactly one of a shared secret or a public key")
        if secret is not None:
            secret_bytes = secret.encode() if isinstance(secret, str) else bytes(secret)
            self.algorithms = allowed_algorithms("secret", algorithms)
            check_secret(secret_bytes, self.algorithms)
            key: Any = secret_bytes
        else:
            assert public_key is not None  # noqa: S101 - narrowed by the check above
            key = load_public_key(public_key)
            self.algorithms = public_key_algorithms(key, algorithms)
        self._keys = {name: bind(name, key) for name in self.algorithms}

    def key_for(self, algorithm: str) -> VerificationKey | None:
        """Return the key for ``algorithm``, or ``None`` when it is not allowed."""
        return self._keys.get(algorithm)
