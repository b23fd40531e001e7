"""JWT verification against PyJWT's own ``jwt.decode``, in the same run.

- a repeated token, through the verified-token cache (target: at most 0.1x PyJWT);
- a fresh token each call, through the whole verifier: strict parsing, allow-list,
  signature, claims, tenant, roles, cache insert (target: at most 1.2x PyJWT);
- the same for RS256 with a PEM key, reported.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from benchmarks._harness import Row, compare_async
from hardenkit import JWTVerifier

SECRET = "bench-secret-Zq8vT2xL5nR9wK3pY7cH1bM4jF6dS0aG"
ISSUER = "https://issuer.bench"
AUDIENCE = "bench-api"


def _claims(index: int) -> dict[str, Any]:
    now = int(time.time())
    return {
        "sub": f"user-{index}",
        "tenant_id": f"tenant-{index % 50}",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 3600,
        "roles": ["member"],
        "scope": "orders:read orders:write",
    }


def _pyjwt(key: Any, algorithm: str) -> Callable[[str], object]:
    def decode(token: str) -> object:
        return jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub"]},
        )

    return decode


def _cycle(tokens: list[str]) -> Iterator[str]:
    return itertools.cycle(tokens)


def run(quick: bool) -> list[Row]:
    number, repeat = (2_000, 5) if quick else (10_000, 9)
    rows: list[Row] = []

    hs_tokens = [jwt.encode(_claims(i), SECRET, algorithm="HS256") for i in range(4096)]
    decode_hs = _pyjwt(SECRET, "HS256")

    cached = JWTVerifier(secret=SECRET, issuer=ISSUER, audience=[AUDIENCE])
    repeated = hs_tokens[0]

    async def ours_cached() -> None:
        await cached.verify(repeated)

    async def pyjwt_repeated() -> None:
        decode_hs(repeated)

    times = compare_async(
        {"hardenkit": ours_cached, "pyjwt": pyjwt_repeated}, number=number, repeat=repeat
    )
    rows.append(
        Row(
            piece="auth",
            figure="repeated HS256 token (verified-token cache)",
            ours=times["hardenkit"] * 1e6,
            peer_name="PyJWT jwt.decode",
            peer=times["pyjwt"] * 1e6,
            max_ratio=0.1,
        )
    )

    # A pool four times the cache size, cycled: every call is a miss plus an eviction.
    fresh = JWTVerifier(secret=SECRET, issuer=ISSUER, audience=[AUDIENCE], cache_size=1024)
    ours_tokens, peer_tokens = _cycle(hs_tokens), _cycle(hs_tokens)

    async def ours_fresh() -> None:
        await fresh.verify(next(ours_tokens))

    async def pyjwt_fresh() -> None:
        decode_hs(next(peer_tokens))

    times = compare_async(
        {"hardenkit": ours_fresh, "pyjwt": pyjwt_fresh}, number=number, repeat=repeat
    )
    rows.append(
        Row(
            piece="auth",
            figure="fresh HS256 token, full verification",
            ours=times["hardenkit"] * 1e6,
            peer_name="PyJWT jwt.decode",
            peer=times["pyjwt"] * 1e6,
            max_ratio=1.2,
        )
    )

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    rs_tokens = [jwt.encode(_claims(i), private, algorithm="RS256") for i in range(512)]
    rs_verifier = JWTVerifier(public_key=pem, issuer=ISSUER, audience=[AUDIENCE], cache_size=0)
    # PyJWT gets the key object loaded once, as a careful caller would do.
    decode_rs = _pyjwt(private.public_key(), "RS256")
    ours_rs, peer_rs = _cycle(rs_tokens), _cycle(rs_tokens)

    async def ours_rsa() -> None:
        await rs_verifier.verify(next(ours_rs))

    async def pyjwt_rsa() -> None:
        decode_rs(next(peer_rs))

    times = compare_async(
        {"hardenkit": ours_rsa, "pyjwt": pyjwt_rsa},
        number=max(200, number // 10),
        repeat=repeat,
    )
    rows.append(
        Row(
            piece="auth",
            figure="fresh RS256 token (PEM key), full verification",
            ours=times["hardenkit"] * 1e6,
            peer_name="PyJWT jwt.decode (key object)",
            peer=times["pyjwt"] * 1e6,
        )
    )
    return rows
