from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hardenkit import HardenSettings, SettingsError, load_settings
from hardenkit._section import SettingProblem
from hardenkit.errors import ConfigurationError


def test_defaults_are_valid_outside_production() -> None:
    settings = load_settings()
    assert settings.env == "development"
    assert settings.request_timeout == 30.0
    assert settings.redis_url is None


def test_flat_env_names_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARDENKIT_REQUEST_TIMEOUT", "12.5")
    monkeypatch.setenv("HARDENKIT_REDIS_URL", "redis://:pw@127.0.0.1:6379/0")
    settings = load_settings()
    assert settings.request_timeout == 12.5
    assert settings.redis_url is not None
    assert "pw" not in repr(settings)


def test_empty_redis_url_means_memory_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARDENKIT_REDIS_URL", "")
    assert load_settings().redis_url is None


def test_unknown_variable_is_refused_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARDENKIT_REQEUST_TIMEOUT", "5")
    with pytest.raises(SettingsError, match="HARDENKIT_REQEUST_TIMEOUT: unknown setting"):
        load_settings()


@pytest.mark.parametrize(
    ("written", "meant"),
    [
        ("HARDENKIT_ENVIRONMENT", "HARDENKIT_ENV"),
        ("HARDENKIT_REQEUST_TIMEOUT", "HARDENKIT_REQUEST_TIMEOUT"),
        ("HARDENKIT_TRUSTED_PROXY", "HARDENKIT_TRUSTED_PROXIES"),
        ("HARDENKIT_RATE_LIMIT_DEFAULTS", "HARDENKIT_RATE_LIMIT_DEFAULT"),
    ],
)
def test_an_unknown_variable_close_to_a_setting_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, written: str, meant: str
) -> None:
    monkeypatch.setenv(written, "x")
    with pytest.raises(
        SettingsError, match=f"{written}: unknown setting .*did you mean {meant}\\)"
    ):
        load_settings()


def test_an_unknown_variable_far_from_every_setting_gets_no_suggestion(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HARDENKIT_FAVOURITE_COLOUR", "x")
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert "did you mean" not in str(refused.value)


def test_unknown_variable_check_is_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("hardenkit_jwt_secrte", "x")
    with pytest.raises(SettingsError, match="HARDENKIT_JWT_SECRTE"):
        load_settings()


def test_reserved_and_dynamic_prefixes_are_not_typos(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARDENKIT_TEST_REDIS_URL", "redis://127.0.0.1:1")
    monkeypatch.setenv("HARDENKIT_RESILIENT_OPENAI_TIMEOUT", "10")
    assert HardenSettings.unknown_variables() == []


def test_comma_separated_and_json_lists_both_work(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARDENKIT_JWT_ALGORITHMS", "RS256, ES256")
    assert load_settings().jwt_algorithms == ["RS256", "ES256"]
    monkeypatch.setenv("HARDENKIT_JWT_ALGORITHMS", '["PS256","EdDSA"]')
    assert load_settings().jwt_algorithms == ["PS256", "EdDSA"]


def test_ipv6_sentinels_in_brackets_are_a_comma_list_not_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HARDENKIT_REDIS_URL", "redis://sentinel/0")
    monkeypatch.setenv("HARDENKIT_REDIS_SENTINEL_MASTER", "main")
    monkeypatch.setenv("HARDENKIT_REDIS_SENTINELS", "[::1]:26379, [fd00::7]:26380")
    assert load_settings().redis_sentinels == ["[::1]:26379", "[fd00::7]:26380"]
    monkeypatch.setenv("HARDENKIT_REDIS_SENTINELS", '["[::1]:26379"]')  # JSON still works
    assert load_settings().redis_sentinels == ["[::1]:26379"]
    monkeypatch.setenv("HARDENKIT_REDIS_CLUSTER", "true")  # a Cluster has no sentinels
    with pytest.raises(SettingsError, match="HARDENKIT_REDIS_SENTINELS: set with"):
        load_settings()
    monkeypatch.delenv("HARDENKIT_REDIS_CLUSTER")
    monkeypatch.setenv("HARDENKIT_REDIS_SENTINELS", "[]")
    monkeypatch.delenv("HARDENKIT_REDIS_SENTINEL_MASTER")
    assert load_settings().redis_sentinels == []


@given(st.lists(st.from_regex(r"[A-Za-z0-9/*._-]{1,20}", fullmatch=True), max_size=6))
def test_comma_lists_round_trip(items: list[str]) -> None:
    settings = HardenSettings(cors_origins=",".join(items))  # type: ignore[arg-type]
    assert settings.cors_origins == items


def test_multiline_pem_works_with_real_or_escaped_newlines(monkeypatch: pytest.MonkeyPatch) -> None:
    pem = (
        "-----BEGIN PUBLIC KEY-----\n"
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEgVA0aNJB2gVDLiuElny5u80kNwVO\n"
        "x91e++b0jvkx/o9wJxMo0GAtwgMqp1bdc1TKz112D/p8f5xjCUBQAISSdw==\n"
        "-----END PUBLIC KEY-----\n"
    )
    monkeypatch.setenv("HARDENKIT_JWT_PUBLIC_KEY", pem)
    assert load_settings().jwt_public_key == pem
    monkeypatch.setenv("HARDENKIT_JWT_PUBLIC_KEY", pem.replace("\n", "\\n"))
    assert load_settings().jwt_public_key == pem


def test_malformed_value_names_the_variable_and_hides_the_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HARDENKIT_REQUEST_TIMEOUT", "soon-ish-secretvalue")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "HARDENKIT_REQUEST_TIMEOUT" in str(caught.value)
    assert "secretvalue" not in str(caught.value)


def test_out_of_range_value_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARDENKIT_JWT_LEEWAY", "301")
    with pytest.raises(SettingsError, match="HARDENKIT_JWT_LEEWAY"):
        load_settings()


def test_production_refuses_auth_off_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARDENKIT_ENV", "production")
    monkeypatch.setenv("HARDENKIT_AUTH_MODE", "off")
    with pytest.raises(SettingsError, match="HARDENKIT_AUTH_MODE"):
        load_settings()


def test_auth_off_is_allowed_in_development(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARDENKIT_AUTH_MODE", "off")
    assert load_settings().auth_mode == "off"


def test_settings_error_is_a_configuration_error() -> None:
    assert issubclass(SettingsError, ConfigurationError)


def test_settings_are_immutable() -> None:
    settings = HardenSettings()
    with pytest.raises(Exception, match="frozen"):
        settings.env = "production"  # type: ignore[misc]


def test_install_refuses_production_unsafe_settings() -> None:
    from starlette.applications import Starlette

    from hardenkit import install

    with pytest.raises(SettingsError, match="HARDENKIT_AUTH_MODE"):
        install(Starlette(), HardenSettings(env="production", auth_mode="off"))


def test_forwarded_header_is_one_of_the_two_headers_case_insensitively(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings().forwarded_header == "x-forwarded-for"
    monkeypatch.setenv("HARDENKIT_FORWARDED_HEADER", "Forwarded")
    assert load_settings().forwarded_header == "forwarded"
    monkeypatch.setenv("HARDENKIT_FORWARDED_HEADER", "x-real-ip")
    with pytest.raises(SettingsError, match="HARDENKIT_FORWARDED_HEADER"):
        load_settings()


def test_request_id_trust_defaults_to_proxies_and_refuses_other_words(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings().request_id_trust == "proxies"
    monkeypatch.setenv("HARDENKIT_REQUEST_ID_TRUST", "everyone")
    with pytest.raises(SettingsError, match="HARDENKIT_REQUEST_ID_TRUST"):
        load_settings()


def test_production_refuses_trusting_every_address_as_a_proxy() -> None:
    for everything in ("0.0.0.0/0", "::/0"):
        settings = HardenSettings(env="production", trusted_proxies=["10.0.0.0/8", everything])
        assert "HARDENKIT_TRUSTED_PROXIES" in {p.setting for p in settings.startup_errors()}
    development = HardenSettings(trusted_proxies=["0.0.0.0/0"])
    assert "HARDENKIT_TRUSTED_PROXIES" in {p.setting for p in development.problems()}
    assert development.startup_errors() == []


def test_production_warns_at_startup_when_any_client_may_choose_its_request_id() -> None:
    settings = HardenSettings(env="production", request_id_trust="any")
    assert "HARDENKIT_REQUEST_ID_TRUST" in {p.setting for p in settings.startup_warnings()}
    default = HardenSettings(env="production")
    assert "HARDENKIT_REQUEST_ID_TRUST" not in {p.setting for p in default.startup_warnings()}


def test_install_judges_the_settings_once_pem_parsing_included(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from starlette.applications import Starlette

    from hardenkit import install
    from hardenkit.auth import _settings as auth_section
    from tests.auth.support import public_pem, rsa_key

    settings = HardenSettings(jwt_public_key=public_pem(rsa_key()), jwt_algorithms=["RS256"])
    chains: list[int] = []
    parsed: list[str] = []
    chain = HardenSettings.collect_problems
    parse = auth_section.load_public_key

    def counted_chain(self: HardenSettings) -> list[SettingProblem]:
        chains.append(1)
        return chain(self)

    def counted_parse(pem: str) -> Any:
        parsed.append(pem)
        return parse(pem)

    monkeypatch.setattr(HardenSettings, "collect_problems", counted_chain)
    monkeypatch.setattr(auth_section, "load_public_key", counted_parse)

    install(Starlette(), settings)
    install(Starlette(), settings)  # a second app with the same settings object

    assert len(chains) == 1
    assert len(parsed) == 1


def test_a_copy_with_other_values_is_judged_afresh() -> None:
    development = HardenSettings(auth_mode="off")
    assert development.startup_errors() == []

    production = development.model_copy(update={"env": "production"})

    assert "HARDENKIT_AUTH_MODE" in {problem.setting for problem in production.startup_errors()}
    assert development.startup_errors() == []


def test_unix_is_a_trusted_proxy_entry_and_not_a_wide_network() -> None:
    settings = HardenSettings(env="production", trusted_proxies=["unix", "10.0.0.0/8"])
    assert "HARDENKIT_TRUSTED_PROXIES" not in {p.setting for p in settings.startup_errors()}
    assert "HARDENKIT_TRUSTED_PROXIES" not in {p.setting for p in settings.problems()}
    with pytest.raises(ValueError, match="nor `unix`"):
        HardenSettings(trusted_proxies=["unix-socket"])


@pytest.mark.parametrize(
    "url",
    [
        "redis://:Xy7kLm9pQ2/rest@127.0.0.1:6381/0",  # an unescaped `/` in the password
        "redis://:Xy7kLm9pQ2#rest@127.0.0.1:6381/0",
        "http://:Xy7kLm9pQ2@127.0.0.1:6381/0",
        "redis://:Xy7kLm9pQ2@[::1",
    ],
)
def test_a_redis_url_redis_py_cannot_read_is_refused_naming_the_setting_never_the_value(
    url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HARDENKIT_REDIS_URL", url)
    with pytest.raises(SettingsError, match="HARDENKIT_REDIS_URL") as refused:
        load_settings()
    assert "Xy7kLm9pQ2" not in str(refused.value)
    from hardenkit.cli import main

    for arguments in (["doctor"], ["doctor", "--json"]):
        assert main(arguments) == 1
        out = capsys.readouterr().out
        assert "HARDENKIT_REDIS_URL" in out
        assert "Xy7kLm9pQ2" not in out


def test_a_catch_all_body_limit_over_64_mib_is_warned_like_the_global_one() -> None:
    settings = HardenSettings(max_body_bytes_paths={"/*": 99_999_999_999_999})
    warned = [p for p in settings.problems() if p.setting == "HARDENKIT_MAX_BODY_BYTES_PATHS"]
    assert [problem.severity for problem in warned] == ["warning"]
    narrow = HardenSettings(max_body_bytes_paths={"/api/uploads/*": 99_999_999_999_999})
    assert "HARDENKIT_MAX_BODY_BYTES_PATHS" not in {p.setting for p in narrow.problems()}


def test_public_proxy_ranges_are_judged_together_as_the_docs_say() -> None:
    # Three public /17s are 98,304 addresses: wider than a /16, though none is alone.
    pieces = HardenSettings(
        env="production", trusted_proxies=["1.0.0.0/17", "3.0.0.0/17", "5.0.0.0/17"]
    )
    assert "HARDENKIT_TRUSTED_PROXIES" in {p.setting for p in pieces.startup_errors()}
    two = HardenSettings(env="production", trusted_proxies=["1.0.0.0/17", "3.0.0.0/17"])
    assert "HARDENKIT_TRUSTED_PROXIES" not in {p.setting for p in two.startup_errors()}
    private = HardenSettings(env="production", trusted_proxies=["10.0.0.0/8", "1.0.0.0/16"])
    assert "HARDENKIT_TRUSTED_PROXIES" not in {p.setting for p in private.startup_errors()}


def test_json_that_does_not_parse_names_the_variable_in_startup_and_doctor(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """pydantic-settings raised its own error naming the field (new-user review), and
    doctor crashed with a traceback."""
    monkeypatch.setenv("HARDENKIT_REQUEST_TIMEOUT_ROUTES", '{"/api/*": 12, oops-Xy7k')
    with pytest.raises(SettingsError, match="HARDENKIT_REQUEST_TIMEOUT_ROUTES") as refused:
        load_settings()
    assert "Xy7k" not in str(refused.value)
    from hardenkit.cli import main

    assert main(["doctor", "--json"]) == 1
    out = capsys.readouterr().out
    assert '"check": "HARDENKIT_REQUEST_TIMEOUT_ROUTES"' in out
    assert "Xy7k" not in out


def test_an_empty_key_source_is_unset_not_a_second_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARDENKIT_JWT_SECRET", "")
    monkeypatch.setenv("HARDENKIT_JWT_JWKS_URL", "https://idp.example/jwks.json")
    settings = HardenSettings()
    assert settings.jwt_secret is None
    assert not [p for p in settings.problems() if "only one key source" in p.message]


def test_no_settings_validator_is_shadowed_by_another_sections() -> None:
    """Two sections' validators of one name: the class assembled from them keeps one, and
    the other's fields go unchecked (new-user review: `_paths` of the rate-limit section
    was replaced by auth's, and a bad HARDENKIT_RATE_LIMIT_EXEMPT_PATHS crashed install())."""
    assembled = HardenSettings.__pydantic_decorators__.field_validators
    for section in HardenSettings.__mro__[1:]:
        own = getattr(section, "__pydantic_decorators__", None)
        if own is None:
            continue
        for name, validator in own.field_validators.items():
            assert name in assembled, f"{section.__name__}.{name}"
            assert assembled[name].info.fields == validator.info.fields, (
                f"{section.__name__}.{name} is shadowed: {assembled[name].info.fields} "
                f"instead of {validator.info.fields}"
            )


@pytest.mark.parametrize(
    "variable",
    [
        "HARDENKIT_RATE_LIMIT_EXEMPT_PATHS",
        "HARDENKIT_AUTH_PATHS",
        "HARDENKIT_STREAMING_PATHS",
        "HARDENKIT_PUBLIC_PATHS",
        "HARDENKIT_API_KEY_PATHS",
        "HARDENKIT_WEBHOOK_PATHS",
    ],
)
def test_a_malformed_path_pattern_is_refused_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "/api/*/health")
    monkeypatch.setenv("HARDENKIT_WEBHOOK_SECRET", "whsec_" + "A" * 43 + "=")
    with pytest.raises(SettingsError, match=f"{variable}: .*only (allowed )?at the end"):
        load_settings()


def test_half_of_a_sentinel_setup_names_the_missing_setting_and_what_goes_in_it() -> None:
    with pytest.raises(SettingsError, match=r"HARDENKIT_REDIS_SENTINEL_MASTER: .*sentinel monitor"):
        HardenSettings(
            redis_url="redis://sentinel/0", redis_sentinels=["127.0.0.1:26379"]
        ).raise_for_errors()
    with pytest.raises(SettingsError, match=r"HARDENKIT_REDIS_SENTINELS: .*26379"):
        HardenSettings(
            redis_url="redis://sentinel/0", redis_sentinel_master="mymaster"
        ).raise_for_errors()
