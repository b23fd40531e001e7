"""Which signature algorithms a key source may accept, fixed when it is configured.

The allow-list is never taken from a token. HMAC (a shared secret) and the asymmetric
families are never mixed: an allow-list that holds ``HS256`` next to ``RS256`` would let a
token signed with the *public* key as an HMAC secret pass (the classic key-confusion
attack). ``none`` is refused in every casing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "EC_CURVES",
    "HMAC_MIN_SECRET_BYTES",
    "KeySourceKind",
    "allowed_algorithms",
    "is_none_algorithm",
]

KeySourceKind = Literal["secret", "public_key", "jwks"]

HMAC_MIN_SECRET_BYTES: dict[str, int] = {"HS256": 32, "HS384": 48, "HS512": 64}
"""Smallest secret for each HMAC algorithm: its output size (RFC 7518 §3.2)."""

RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
EC_CURVES: dict[str, str] = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
"""The one curve each ECDSA algorithm is defined on (RFC 7518 §3.4)."""
OKP_ALGORITHMS = frozenset({"EdDSA"})
ASYMMETRIC_ALGORITHMS = RSA_ALGORITHMS | frozenset(EC_CURVES) | OKP_ALGORITHMS

_DEFAULTS: dict[KeySourceKind, tuple[str, ...]] = {
    "secret": ("HS256",),
    "jwks": ("RS256",),
}


def is_none_algorithm(name: object) -> bool:
    """Whether ``name`` is the unsigned ``none`` algorithm, in any casing or padding."""
    return isinstance(name, str) and name.strip().lower() == "none"


def allowed_algorithms(kind: KeySourceKind, configured: Iterable[str]) -> tuple[str, ...]:
    """Return the allow-list for a key source, or raise ``ValueError`` saying why not.

    Args:
        kind: The key source: a shared secret, a PEM public key or a JWKS URL.
        configured: The algorithms asked for; empty picks the default of the source
            (``HS256`` for a secret, ``RS256`` for a JWKS; a PEM key's default comes from
            its key type and is chosen by the caller).
    """
    names = tuple(dict.fromkeys(name.strip() for name in configured if name.strip()))
    if not names:
        default = _DEFAULTS.get(kind)
        if default is None:
            raise ValueError("no default algorithm for a public key; derive it from the key")
        return default
    for name in names:
        if is_none_algorithm(name):
            raise ValueError("`none` is never accepted")
        if name not in HMAC_MIN_SECRET_BYTES and name not in ASYMMETRIC_ALGORITHMS:
            raise ValueError(f"unknown or unsupported algorithm {name!r}")
    hmac = [name for name in names if name in HMAC_MIN_SECRET_BYTES]
    if kind == "secret" and len(hmac) != len(names):
        raise ValueError("a shared secret accepts HS256/HS384/HS512 only")
    if kind != "secret" and hmac:
        raise ValueError("HMAC algorithms need a shared secret; never mix them with public keys")
    return names
