"""Header, CORS and timeout settings: unsafe values refuse to start, naming the variable."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette

from hardenkit import HardenSettings, SettingsError, install, load_settings
from hardenkit.headers._install import policy_from_settings


def startup_error(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for name, value in env.items():
        monkeypatch.setenv(f"HARDENKIT_{name.upper()}", value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    return str(caught.value)


def test_unquoted_keyword_in_the_csp_names_the_variable_and_the_mistake(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = startup_error(monkeypatch, csp_html="default-src self")
    assert "HARDENKIT_CSP_HTML" in message
    assert "must be quoted" in message


def test_csp_without_default_src_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    message = startup_error(monkeypatch, csp_api="frame-ancestors 'none'")
    assert "HARDENKIT_CSP_API" in message
    assert "default-src is missing" in message


def test_hsts_preload_without_prerequisites_refuses_to_start_everywhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = startup_error(monkeypatch, hsts_preload="true", hsts_max_age="86400")
    assert "HARDENKIT_HSTS_PRELOAD" in message
    message = startup_error(monkeypatch, hsts_max_age="63072000", hsts_include_subdomains="false")
    assert "HARDENKIT_HSTS_PRELOAD" in message


def test_cors_wildcard_with_credentials_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    message = startup_error(monkeypatch, cors_origins="*", cors_allow_credentials="true")
    assert "HARDENKIT_CORS_ORIGINS" in message
    assert "HARDENKIT_CORS_ALLOW_CREDENTIALS" in message


@pytest.mark.parametrize(
    ("origin", "reason"),
    [
        ("https://app.example/", "no path or trailing slash"),
        ("app.example", "is not an origin"),
        ("null", "sandboxed"),
        ("https://App.example", "lower-case"),
        ("ftp://app.example", "is not an origin"),
    ],
)
def test_cors_origins_that_never_match_a_browser_refuse_to_start(
    monkeypatch: pytest.MonkeyPatch, origin: str, reason: str
) -> None:
    message = startup_error(monkeypatch, cors_origins=origin)
    assert "HARDENKIT_CORS_ORIGINS" in message
    assert reason in message


def test_install_refuses_unsafe_settings_passed_directly() -> None:
    settings = HardenSettings(cors_origins=["*"], cors_allow_credentials=True)
    with pytest.raises(SettingsError, match="HARDENKIT_CORS_ORIGINS"):
        install(Starlette(), settings)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("request_timeout_routes", '{"reports": 10}'),
        ("request_timeout_routes", '{"/a*b": 10}'),
        ("request_timeout_routes", '{"/x": 0}'),
        ("csp_report_path", "//evil.example"),
        ("request_timeout_status", "500"),
        ("referrer_policy", "never"),
        ("permissions_policy", "camera=()\r\nSet-Cookie: x=1"),
    ],
)
def test_bad_header_and_timeout_values_name_their_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    assert f"HARDENKIT_{name.upper()}" in startup_error(monkeypatch, **{name: value})


def test_report_only_in_production_is_a_warning_not_an_error() -> None:
    settings = HardenSettings(env="production", csp_report_only=True, csp_report_path="/r")
    warnings = [p for p in settings.problems() if p.setting == "HARDENKIT_CSP_REPORT_ONLY"]
    assert [p.severity for p in warnings] == ["warning"]


def test_settings_become_the_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = HardenSettings(
        referrer_policy="strict-origin-when-cross-origin",
        frame_options="SAMEORIGIN",
        cross_origin_embedder_policy="credentialless",
        hsts_preload=True,
        csp_html="default-src 'self'; script-src 'self' 'nonce-{nonce}'",
        permissions_policy="camera=()",
        request_timeout_routes={"/api/reports/*": 120},
    )
    policy = policy_from_settings(settings)
    assert policy.referrer_policy == "strict-origin-when-cross-origin"
    assert policy.frame_options == "SAMEORIGIN"
    assert policy.cross_origin_embedder_policy == "credentialless"
    assert policy.hsts_preload
    assert policy.html_csp is not None
    assert policy.html_csp.uses_nonce
    assert policy.permissions_policy == "camera=()"
    assert policy_from_settings(HardenSettings()).cross_origin_embedder_policy is None
