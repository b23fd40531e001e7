"""JWTVerifier: what it accepts, and every known attack it refuses with a stable reason."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest

from hardenkit.auth import JWTVerifier, TokenRejectedError
from tests.auth.support import (
    AUDIENCE,
    ISSUER,
    SECRET,
    b64,
    claims,
    ec_key,
    hs256,
    public_pem,
    raw_hmac_token,
    rs256,
    rsa_key,
    unsigned,
)


def hs_verifier(**options: Any) -> JWTVerifier:
    options.setdefault("issuer", ISSUER)
    options.setdefault("audience", [AUDIENCE])
    return JWTVerifier(secret=SECRET, **options)


def rs_verifier(**options: Any) -> JWTVerifier:
    options.setdefault("issuer", ISSUER)
    options.setdefault("audience", [AUDIENCE])
    return JWTVerifier(public_key=public_pem(rsa_key()), **options)


async def reason(verifier: JWTVerifier, token: str | bytes) -> str:
    with pytest.raises(TokenRejectedError) as caught:
        await verifier.verify(token)
    return caught.value.reason


async def test_a_valid_hs256_token_gives_its_principal() -> None:
    principal = await hs_verifier().verify(hs256(claims(roles=["admin"], scope="a b")))
    assert principal.subject == "user-1"
    assert principal.tenant == "acme"
    assert principal.roles == {"admin"}
    assert principal.scopes == {"a", "b"}
    assert principal.claims["iss"] == ISSUER
    assert principal.credential == "jwt"


@pytest.mark.parametrize("separator", ["\u00a0", "\u3000", "\u2028", "\x1f", "\t", "\n"])
async def test_a_space_separated_claim_splits_on_the_space_only(separator: str) -> None:
    # RFC 6749 3.3: scope tokens are separated by SP (U+0020). Split on every Unicode
    # whitespace, "member<NBSP>admin" gave the role admin, which nobody granted.
    principal = await hs_verifier().verify(
        hs256(claims(roles=f"member{separator}admin", scope=f"items:read{separator}items:admin"))
    )
    assert principal.roles == {f"member{separator}admin"}
    assert principal.scopes == {f"items:read{separator}items:admin"}


@pytest.mark.parametrize(
    ("claim", "value"),
    [("sub", "\ud800"), ("tenant_id", "acme\udfff"), ("roles", ["\udc80"]), ("x", {"\ud83d": 1})],
)
async def test_a_signed_claim_holding_a_lone_surrogate_is_malformed(
    claim: str, value: object
) -> None:
    # No character: accepted, such a subject made /api/me a 500 and every console audit
    # line about it a "Logging error" (an attacker review).
    payload = json.dumps(claims(**{claim: value})).encode()  # ensure_ascii: "\ud800" escapes
    token = raw_hmac_token(b'{"alg":"HS256","typ":"JWT"}', payload)
    assert await reason(hs_verifier(), token) == "malformed"


async def test_a_signed_claim_spelled_with_a_surrogate_pair_is_text() -> None:
    payload = json.dumps(claims(sub="user-\U0001f600")).encode()  # "\ud83d\ude00"
    token = raw_hmac_token(b'{"alg":"HS256","typ":"JWT"}', payload)
    assert (await hs_verifier().verify(token)).subject == "user-\U0001f600"


async def test_a_space_separated_claim_ignores_repeated_and_outer_spaces() -> None:
    principal = await hs_verifier().verify(hs256(claims(roles=" admin  member ", scope="")))
    assert principal.roles == {"admin", "member"}
    assert principal.scopes == frozenset()


async def test_a_valid_rs256_token_verifies_with_the_pem_public_key() -> None:
    principal = await rs_verifier().verify(rs256())
    assert principal.tenant == "acme"


async def test_an_es256_key_defaults_to_es256_only() -> None:
    verifier = JWTVerifier(public_key=public_pem(ec_key()), audience=[AUDIENCE], issuer=ISSUER)
    assert verifier.algorithms == ("ES256",)
    token = jwt.encode(claims(), ec_key(), algorithm="ES256")
    assert (await verifier.verify(token)).subject == "user-1"


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE", " none"])
async def test_alg_none_is_refused_in_every_casing(alg: str) -> None:
    assert await reason(hs_verifier(), unsigned({"alg": alg, "typ": "JWT"})) == "alg_none"


async def test_hs256_signed_with_the_rsa_public_key_is_refused() -> None:
    # The key-confusion attack: the public key (known to all) used as an HMAC secret.
    forged = raw_hmac_token(
        json.dumps({"alg": "HS256", "typ": "JWT"}).encode(),
        json.dumps(claims()).encode(),
        secret=public_pem(rsa_key()).encode(),
    )
    assert await reason(rs_verifier(), forged) == "alg_not_allowed"


def test_an_allow_list_mixing_hmac_and_rsa_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="shared secret"):
        JWTVerifier(secret=SECRET, algorithms=["HS256", "RS256"])
    with pytest.raises(ValueError, match="never mix"):
        JWTVerifier(public_key=public_pem(rsa_key()), algorithms=["RS256", "HS256"])
    with pytest.raises(ValueError, match="do not fit"):
        JWTVerifier(public_key=public_pem(rsa_key()), algorithms=["RS256", "ES256"])


@pytest.mark.parametrize("algorithms", [["none"], ["NoNe"], ["HS256", "none"]])
def test_none_in_the_allow_list_is_refused_at_construction(algorithms: list[str]) -> None:
    with pytest.raises(ValueError, match="none"):
        JWTVerifier(secret=SECRET, algorithms=algorithms)


@pytest.mark.parametrize(("algorithm", "length"), [("HS256", 31), ("HS384", 47), ("HS512", 63)])
def test_a_secret_shorter_than_the_algorithm_output_is_refused(algorithm: str, length: int) -> None:
    with pytest.raises(ValueError, match="at least"):
        JWTVerifier(secret="x" * length, algorithms=[algorithm])
    JWTVerifier(secret="x" * (length + 1), algorithms=[algorithm])


def test_a_private_key_given_as_the_public_key_is_refused() -> None:
    from cryptography.hazmat.primitives import serialization

    private_pem = (
        rsa_key()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    with pytest.raises(ValueError, match="private key"):
        JWTVerifier(public_key=private_pem)


def test_exactly_one_key_source_is_required() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        JWTVerifier()
    with pytest.raises(ValueError, match="exactly one"):
        JWTVerifier(secret=SECRET, public_key=public_pem(rsa_key()))


async def test_an_expired_token_is_refused_as_expired() -> None:
    old = int(time.time()) - 3600
    token = hs256(claims(iat=old, exp=old + 60))
    with pytest.raises(TokenRejectedError) as caught:
        await hs_verifier().verify(token)
    assert caught.value.reason == "expired"
    assert caught.value.public_reason == "expired"


async def test_expiry_within_the_leeway_is_still_accepted_and_beyond_it_refused() -> None:
    now = int(time.time())
    assert await hs_verifier(leeway=30).verify(hs256(claims(iat=now - 100, exp=now - 10)))
    assert await reason(hs_verifier(leeway=5), hs256(claims(iat=now - 100, exp=now - 10))) == (
        "expired"
    )


def test_leeway_above_300_seconds_is_refused() -> None:
    with pytest.raises(ValueError, match="leeway"):
        hs_verifier(leeway=301)


async def test_nbf_in_the_future_is_refused() -> None:
    token = hs256(claims(nbf=int(time.time()) + 3600))
    assert await reason(hs_verifier(), token) == "not_yet_valid"


async def test_iat_in_the_future_is_refused() -> None:
    token = hs256(claims(iat=int(time.time()) + 3600))
    assert await reason(hs_verifier(), token) == "issued_in_future"


async def test_a_token_older_than_max_age_is_refused() -> None:
    now = int(time.time())
    token = hs256(claims(iat=now - 7200, exp=now + 600))
    assert await reason(hs_verifier(max_age=3600), token) == "too_old"


@pytest.mark.parametrize("missing", ["exp", "iat", "sub"])
async def test_a_required_claim_missing_is_refused(missing: str) -> None:
    token = hs256(claims(**{missing: None}))
    assert await reason(hs_verifier(), token) == f"missing_{missing}"


async def test_wrong_issuer_is_refused() -> None:
    assert await reason(hs_verifier(), hs256(claims(iss="https://evil.test"))) == "wrong_issuer"


async def test_missing_issuer_is_refused_when_an_issuer_is_configured() -> None:
    assert await reason(hs_verifier(), hs256(claims(iss=None))) == "missing_iss"


async def test_wrong_audience_is_refused() -> None:
    assert await reason(hs_verifier(), hs256(claims(aud="billing-api"))) == "wrong_audience"


async def test_one_matching_audience_in_a_list_is_enough() -> None:
    assert await hs_verifier().verify(hs256(claims(aud=["billing-api", AUDIENCE])))


async def test_missing_audience_is_refused_when_an_audience_is_configured() -> None:
    assert await reason(hs_verifier(), hs256(claims(aud=None))) == "missing_aud"


async def test_missing_tenant_is_refused() -> None:
    assert await reason(hs_verifier(), hs256(claims(tenant_id=None))) == "missing_tenant"


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("exp", "9999999999"),
        ("exp", True),
        ("iat", [1]),
        ("nbf", {"a": 1}),
        ("sub", 42),
        ("sub", ""),
        ("tenant_id", {"id": "acme"}),
        ("tenant_id", True),
        ("tenant_id", ""),
        ("roles", {"admin": True}),
        ("roles", ["admin", 1]),
        ("scope", 7),
        ("aud", 5),
    ],
)
async def test_wrong_types_in_claims_are_refused(claim: str, value: object) -> None:
    refused = await reason(hs_verifier(), hs256(claims(**{claim: value})))
    assert refused in {"malformed_claims", "missing_sub"}


async def test_a_tenant_list_is_refused_unless_multi_membership_is_on() -> None:
    token = hs256(claims(tenant_id=["acme", "globex"]))
    assert await reason(hs_verifier(), token) == "tenant_list_not_allowed"
    principal = await hs_verifier(multi_tenant=True).verify(token)
    assert principal.tenants == {"acme", "globex"}
    assert principal.tenant is None


@pytest.mark.parametrize(
    ("claim_path", "payload"),
    [
        ("tid", {"tid": "acme"}),
        ("org_id", {"org_id": "acme"}),
        ("https://example.com/tenant", {"https://example.com/tenant": "acme"}),
        ("/organization/id", {"organization": {"id": "acme"}}),
    ],
)
async def test_the_tenant_claim_path_is_configurable(
    claim_path: str, payload: dict[str, Any]
) -> None:
    token = hs256(claims(tenant_id=None, **payload))
    assert (await hs_verifier(tenant_claim=claim_path).verify(token)).tenant == "acme"


async def test_unknown_crit_header_is_refused() -> None:
    token = hs256(crit=["exp-custom"], **{"exp-custom": 1})
    assert await reason(hs_verifier(), token) == "crit_unsupported"


@pytest.mark.parametrize(
    "header",
    [
        {"jku": "https://evil.test/jwks.json"},
        {"x5u": "https://evil.test/cert.pem"},
        {"jwk": {"kty": "oct", "k": "c2VjcmV0"}},
        {"x5c": ["MIIB..."]},
    ],
)
async def test_key_carrying_headers_are_never_trusted(header: dict[str, Any]) -> None:
    # Even correctly signed: a token naming where to get its key is refused outright.
    assert await reason(hs_verifier(), hs256(**header)) == "untrusted_key_header"


async def test_a_jku_token_signed_by_the_attackers_key_is_refused_by_rsa_verifier() -> None:
    forged = rs256(key_name="attacker", jku="https://evil.test/jwks.json")
    assert await reason(rs_verifier(), forged) == "untrusted_key_header"


async def test_a_token_of_100_kib_is_refused_before_parsing() -> None:
    token = hs256(claims(padding="x" * 100 * 1024))
    assert await reason(hs_verifier(), token) == "token_too_large"


async def test_1000_level_nested_claims_are_refused_not_crashed() -> None:
    nested = "[" * 1000 + "]" * 1000
    payload = json.dumps(claims()).encode()[:-1] + b',"deep":' + nested.encode() + b"}"
    token = raw_hmac_token(b'{"alg":"HS256","typ":"JWT"}', payload)
    assert await reason(hs_verifier(max_token_bytes=65536), token) == "malformed"


async def test_1000_level_nested_header_is_refused_not_crashed() -> None:
    header = b'{"alg":"HS256","x":' + b"[" * 1000 + b"]" * 1000 + b"}"
    token = raw_hmac_token(header, json.dumps(claims()).encode())
    assert await reason(hs_verifier(max_token_bytes=65536), token) == "malformed"


async def test_a_truncated_signature_is_refused() -> None:
    token = hs256()
    assert await reason(hs_verifier(), token[:-6]) in {"bad_signature", "malformed"}


async def test_a_signature_made_with_another_key_is_refused() -> None:
    other = jwt.encode(claims(), "another-secret-" + "y" * 40, algorithm="HS256")
    assert await reason(hs_verifier(), other) == "bad_signature"
    assert await reason(rs_verifier(), rs256(key_name="attacker")) == "bad_signature"


async def test_a_payload_swapped_under_a_valid_signature_is_refused() -> None:
    header, _, signature = hs256().split(".")
    evil = b64(json.dumps(claims(tenant_id="globex")).encode())
    assert await reason(hs_verifier(), f"{header}.{evil}.{signature}") == "bad_signature"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "....",
        "e30.e30.",
        "!!!.@@@.###",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0=.c2ln",
        "é.é.é",
    ],
)
async def test_garbage_is_refused_without_a_crash(token: str) -> None:
    # The signature is checked before the payload is even decoded, so garbage with a
    # plausible header ends as a bad signature.
    assert await reason(hs_verifier(), token) in {
        "malformed",
        "alg_not_allowed",
        "bad_signature",
        "jwe_refused",
    }


async def test_a_jwe_token_is_refused() -> None:
    assert await reason(hs_verifier(), "a.b.c.d.e") == "jwe_refused"


async def test_a_compressed_token_is_refused() -> None:
    assert await reason(hs_verifier(), hs256(zip="DEF")) == "compressed_refused"


async def test_non_finite_numbers_are_refused() -> None:
    payload = json.dumps(claims()).replace('"exp": ', '"exp": NaN, "x": ').encode()
    token = raw_hmac_token(b'{"alg":"HS256"}', payload)
    assert await reason(hs_verifier(), token) == "malformed"
    # A number past a float's range is infinity: refused by the parser, in any claim (an
    # attacker review: `"x": 1e999` made /api/me a 500, JSON cannot carry it back).
    for claim in ('"exp": ', '"x": '):
        huge = json.dumps({**claims(), "x": 1}).replace(claim, claim + '1e999, "y": ', 1)
        token = raw_hmac_token(b'{"alg":"HS256"}', huge.encode())
        assert await reason(hs_verifier(), token) == "malformed"
    # An integer past any float (a 500 before: OverflowError), in each time claim.
    for name in ("exp", "iat", "nbf"):
        past_float = json.dumps({**claims(), name: 10**400}).encode()
        token = raw_hmac_token(b'{"alg":"HS256"}', past_float)
        assert await reason(hs_verifier(), token) == "malformed_claims", name


async def test_non_canonical_base64_is_refused() -> None:
    token = hs256()
    header, payload, signature = token.split(".")
    # Flip the unused low bits of the last character: same bytes, different text.
    last = signature[-1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twin = alphabet[alphabet.index(last) ^ 1]
    assert await reason(hs_verifier(), f"{header}.{payload}.{signature[:-1]}{twin}") in {
        "malformed",
        "bad_signature",
    }


async def test_typ_is_checked_when_required() -> None:
    verifier = hs_verifier(token_type="at+jwt")
    assert await verifier.verify(hs256(typ="at+jwt"))
    assert await verifier.verify(hs256(typ="application/at+jwt"))
    assert await reason(verifier, hs256(typ="JWT")) == "wrong_typ"


async def test_a_repeated_token_is_served_from_the_cache() -> None:
    verifier = hs_verifier()
    token = hs256()
    first = await verifier.verify(token)
    assert len(verifier.cache) == 1
    assert await verifier.verify(token) is first


async def test_a_cached_token_stops_being_accepted_at_its_exp() -> None:
    now = [time.time()]
    verifier = hs_verifier(clock=lambda: now[0], leeway=0)
    exp = int(now[0]) + 10
    token = hs256(claims(exp=exp, iat=int(now[0])))
    await verifier.verify(token)
    now[0] = exp + 1
    assert await reason(verifier, token) == "expired"


async def test_the_cache_is_bounded_and_keyed_by_a_hash_not_the_token() -> None:
    verifier = hs_verifier(cache_size=3)
    tokens = [hs256(claims(sub=f"user-{index}")) for index in range(10)]
    for token in tokens:
        await verifier.verify(token)
    assert len(verifier.cache) == 3
    for key in verifier.cache._entries:
        assert len(key) == 32
        assert all(key not in token.encode() for token in tokens)


async def test_cache_ttl_caps_how_long_a_token_is_trusted_without_reverification() -> None:
    now = [time.time()]
    verifier = hs_verifier(clock=lambda: now[0], cache_ttl=5)
    token = hs256()
    first = await verifier.verify(token)
    now[0] += 6
    assert await verifier.verify(token) is not first
