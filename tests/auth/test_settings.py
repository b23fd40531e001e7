"""Auth settings: unsafe key material refused everywhere, production rules by name."""

from __future__ import annotations

from typing import Any

import pytest

from hardenkit import HardenSettings
from hardenkit.auth import hash_api_key
from tests.auth.support import ec_key, public_pem, rsa_key

STRONG = "Zq8vT2xL5nR9wK3pY7cH1bM4jF6dS0aG-u_e"


def errors(**values: Any) -> dict[str, str]:
    settings = HardenSettings(**values)
    return {problem.setting: problem.message for problem in settings.startup_errors()}


def production(**values: Any) -> dict[str, str]:
    values.setdefault("jwt_issuer", "https://issuer.test")
    values.setdefault("jwt_audience", ["api"])
    return errors(env="production", **values)


def test_a_strong_secret_with_issuer_and_audience_passes_production() -> None:
    assert production(jwt_secret=STRONG) == {}


def test_a_short_secret_is_refused_in_every_environment() -> None:
    assert "HARDENKIT_JWT_SECRET" in errors(jwt_secret="short")
    assert (
        "at least 64" in errors(jwt_secret=STRONG, jwt_algorithms=["HS512"])["HARDENKIT_JWT_SECRET"]
    )


def test_the_secret_never_appears_in_a_problem_message() -> None:
    for message in errors(jwt_secret="short-and-secret").values():
        assert "short-and-secret" not in message


@pytest.mark.parametrize(
    "secret",
    [
        "hardenkit-demo-jwt-secret-Qm8vT2xL5nR9wK3pZ7cY1hB4",
        "changeme-changeme-changeme-changeme",
        "a" * 64,
        "abababababababababababababababababab",
    ],
)
def test_placeholder_or_regular_secrets_are_refused_in_production(secret: str) -> None:
    assert "HARDENKIT_JWT_SECRET" in production(jwt_secret=secret)
    assert "HARDENKIT_JWT_SECRET" not in errors(jwt_secret=secret)


def test_no_key_source_is_refused_in_production_only() -> None:
    assert "HARDENKIT_JWT_SECRET" in production()
    assert errors() == {}


def test_auth_off_is_refused_in_production() -> None:
    assert "HARDENKIT_AUTH_MODE" in production(auth_mode="off")


def test_two_key_sources_are_refused_everywhere() -> None:
    assert errors(jwt_secret=STRONG, jwt_jwks_url="https://idp.example/jwks")


@pytest.mark.parametrize(
    "algorithms", [["none"], ["HS256", "RS256"], ["RS256"], ["HS257"], ["hs256"]]
)
def test_bad_algorithm_lists_for_a_secret_are_refused_everywhere(algorithms: list[str]) -> None:
    assert "HARDENKIT_JWT_ALGORITHMS" in errors(jwt_secret=STRONG, jwt_algorithms=algorithms)


def test_a_public_key_must_be_a_public_pem_fitting_its_algorithms() -> None:
    assert errors(jwt_public_key=public_pem(rsa_key())) == {}
    assert "HARDENKIT_JWT_PUBLIC_KEY" in errors(jwt_public_key="not a pem")
    pem = public_pem(ec_key())
    assert "HARDENKIT_JWT_ALGORITHMS" in errors(jwt_public_key=pem, jwt_algorithms=["RS256"])


def test_a_pem_with_escaped_newlines_is_accepted() -> None:
    escaped = public_pem(rsa_key()).replace("\n", "\\n")
    assert errors(jwt_public_key=escaped) == {}


def test_asymmetric_keys_require_issuer_and_audience_in_production() -> None:
    problems = errors(env="production", jwt_jwks_url="https://idp.example/jwks")
    assert "HARDENKIT_JWT_AUDIENCE" in problems
    assert "HARDENKIT_JWT_ISSUER" in problems


def test_a_secret_without_issuer_or_audience_only_warns() -> None:
    settings = HardenSettings(env="production", jwt_secret=STRONG)
    assert settings.startup_errors() == []
    warned = {problem.setting for problem in settings.problems() if problem.severity == "warning"}
    assert {"HARDENKIT_JWT_AUDIENCE", "HARDENKIT_JWT_ISSUER"} <= warned


def test_plain_http_jwks_is_refused_unless_loopback_and_allowed() -> None:
    assert "HARDENKIT_JWT_JWKS_URL" in errors(jwt_jwks_url="http://idp.example/jwks")
    assert "HARDENKIT_JWT_JWKS_URL" in errors(jwt_jwks_url="http://127.0.0.1:9000/jwks")
    loopback = {"jwt_jwks_url": "http://127.0.0.1:9000/jwks", "jwt_jwks_allow_http_loopback": True}
    assert errors(**loopback) == {}
    assert "HARDENKIT_JWT_JWKS_ALLOW_HTTP_LOOPBACK" in production(**loopback)


def test_api_key_paths_without_keys_are_refused_in_production() -> None:
    problems = production(jwt_secret=STRONG, api_key_paths=["/internal/*"])
    assert "HARDENKIT_API_KEYS" in problems
    keys = [f"ops:{hash_api_key('k' * 40)}"]
    assert production(jwt_secret=STRONG, api_key_paths=["/internal/*"], api_keys=keys) == {}


def test_api_key_entries_must_be_hashes_and_are_never_echoed() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as caught:
        HardenSettings(api_keys=["ops:my-raw-api-key-oops"])
    assert "my-raw-api-key-oops" not in str(caught.value)


def test_leeway_is_capped_at_300_seconds() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        HardenSettings(jwt_leeway=301)


def test_tenant_header_aliases_must_be_header_names() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        HardenSettings(tenant_header_aliases=["X Client"])
    assert HardenSettings(tenant_header_aliases="X-Client-ID").tenant_header_aliases == [
        "X-Client-ID"
    ]
