"""One production policy: every refused configuration is refused by startup AND by doctor.

Each case is a configuration a careless deployer would try. It must refuse
``load_settings()``/``install()`` in production, fail ``hardenkit doctor`` with the same
variable named, be a warning outside production, and (for the risks that have an id)
start once ``HARDENKIT_ACCEPT_RISKS`` names exactly that id, with doctor warning about the
acceptance on every run.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi import Depends, FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from structlog.testing import capture_logs

from hardenkit import HardenSettings, SettingsError, install, load_settings
from hardenkit._marks import exempt, public
from hardenkit._risks import RISKS, risks_table
from hardenkit._section import env_name
from hardenkit.auth import Principal
from hardenkit.cli import doctor, main
from hardenkit.errors import ConfigurationError
from hardenkit.signing._secret import encode_standard_secret

ROOT = Path(__file__).resolve().parent.parent
SECRET = "qE7vN2pXcL9tRw4ZbH6mKd1YsJ8uFg3AoT5iVy0"  # random, not published
SAFE: dict[str, Any] = {
    "jwt_secret": SECRET,
    "jwt_issuer": "https://issuer.test",
    "jwt_audience": ["orders-api"],
    "redis_url": None,
}


async def ok(request: Request) -> Response:
    return JSONResponse({"ok": True})


def current_principal(request: Request) -> Principal:
    principal: Principal = request.state.principal
    return principal


def new_endpoint() -> Callable[[Request], Awaitable[Response]]:
    # A mark stays on its function: each case marks a function of its own.
    async def endpoint(request: Request) -> Response:
        return await ok(request)

    return endpoint


def starlette_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/auth/login", ok, methods=["POST"]),
            Route("/api/tenants/{tenant_id}/items", ok),
            Route("/api/public-news", ok),
        ]
    )


def fastapi_app() -> FastAPI:
    app = FastAPI()

    @app.get("/api/me")
    def me(principal: Principal = Depends(current_principal)) -> dict[str, Any]:  # noqa: B008
        return {"sub": principal.subject}

    @app.get("/news/today")
    def news() -> dict[str, Any]:
        return {}

    return app


def public_principal_app() -> FastAPI:
    app = FastAPI()

    @app.get("/feed")
    @public()
    def feed(principal: Principal = Depends(current_principal)) -> dict[str, Any]:  # noqa: B008
        return {"sub": principal.subject}

    return app


# Weak secrets a deployer might believe strong: keyboard walks, phrases, encodings of weak
# text, digests of common passwords, placeholder variants.
WEAK_SECRETS = [
    "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p",
    "zaq12wsxcde34rfvbgt56yhnmju78ik,lo9.;p0",
    "qazwsxedcrfvtgbyhnujmikolpQAZWSXEDCRFV",
    "thequickbrownfoxjumpsoverthelazydog",
    "mysupersecretjwtkeyforproductionuse",
    "ThisIsMyVerySecretJwtSigningKeyForProd2024!",
    "correct-horse-battery-staple-is-my-jwt-key",
    "lorem ipsum dolor sit amet consectetur adipiscing",
    "c3VwZXJzZWNyZXRwYXNzd29yZDEyMyEh",  # base64 of a weak password
    b"supersecretpassword123!!".hex(),
    hashlib.sha256(b"password").hexdigest(),
    hashlib.sha1(b"changeme").hexdigest(),  # noqa: S324
    hashlib.md5(b"letmein").hexdigest(),  # noqa: S324 - the digest people paste
    "your_256_bit_secret your_256_bit_secret",
    "YOUR 256 BIT SECRET and more words here",
    "a-string-secret-at-least-256-bits-lonk",  # one edit from jwt.io's placeholder
    "my-secret-key-at-least-256-bits-long-ok",
    "replace-with-a-long-random-string-in-production",
    "sk_test_4eC39HqLyjWDarjtT1zdp7dc",  # Stripe's docs test key
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSx",  # Standard Webhooks' example, one char changed
]
WEAK_API_KEYS = [
    "password",
    "123456",
    "api_key",
    "YOUR_API_KEY",
    "",
    "demo-key-9f8e7d6c5b4a",
    "sk_live_51H8FAKEFAKEFAKE",
]


@dataclass(frozen=True)
class Case:
    name: str
    settings: dict[str, Any]
    variable: str
    risk: str | None
    app: Any = field(default=None, compare=False)


WEBHOOK_SECRET = encode_standard_secret(hashlib.sha256(b"policy test webhook").digest())

CASES = [
    Case(
        "public /*", {"public_paths": ["/*"]}, "HARDENKIT_PUBLIC_PATHS", "public-paths-everything"
    ),
    Case(
        "public /api/* over a tenant route",
        {"public_paths": ["/healthz", "/api/*"]},
        "HARDENKIT_PUBLIC_PATHS",
        "public-paths-protected-prefix",
        app=starlette_app,
    ),
    Case(
        "public /api/* over a FastAPI route that needs the principal",
        {"public_paths": ["/api/*"]},
        "HARDENKIT_PUBLIC_PATHS",
        "public-paths-protected-prefix",
        app=fastapi_app,
    ),
    Case(
        "@public() on a route with a tenant parameter",
        {},
        "HARDENKIT_PUBLIC_PATHS",
        "public-route-protected",
        app=lambda: Starlette(
            routes=[Route("/api/tenants/{tenant_id}/feed", public()(new_endpoint()))]
        ),
    ),
    Case(
        "@public() on a FastAPI route that needs the principal",
        {},
        "HARDENKIT_PUBLIC_PATHS",
        "public-route-protected",
        app=public_principal_app,
    ),
    Case(
        "trusted proxies 0.0.0.0/0",
        {"trusted_proxies": ["0.0.0.0/0"]},
        "HARDENKIT_TRUSTED_PROXIES",
        "trusted-proxies-too-wide",
    ),
    Case(
        "trusted proxies ::/0",
        {"trusted_proxies": ["::/0"]},
        "HARDENKIT_TRUSTED_PROXIES",
        "trusted-proxies-too-wide",
    ),
    Case(
        "trusted proxies: a public /8",
        {"trusted_proxies": ["10.0.0.0/8", "8.0.0.0/8"]},
        "HARDENKIT_TRUSTED_PROXIES",
        "trusted-proxies-too-wide",
    ),
    Case(
        "trusted proxies: 256 public /16s that together are a /8",
        {"trusted_proxies": [f"8.{n}.0.0/16" for n in range(256)]},
        "HARDENKIT_TRUSTED_PROXIES",
        "trusted-proxies-too-wide",
    ),
    Case(
        "trusted proxies: NAT64, every IPv4 client as IPv6",
        {"trusted_proxies": ["64:ff9b::/96"]},
        "HARDENKIT_TRUSTED_PROXIES",
        "trusted-proxies-too-wide",
    ),
    Case(
        "a login route outside the auth paths",
        {},
        "HARDENKIT_AUTH_PATHS",
        "login-route-unlimited",
        app=lambda: Starlette(routes=[Route("/login", ok, methods=["POST"])]),
    ),
    Case(
        "a one-time-code route outside the auth paths",
        {},
        "HARDENKIT_AUTH_PATHS",
        "login-route-unlimited",
        app=lambda: Starlette(routes=[Route("/account/mfa/verify", ok, methods=["POST"])]),
    ),
    Case(
        "a password-reset route outside the auth paths",
        {},
        "HARDENKIT_AUTH_PATHS",
        "login-route-unlimited",
        app=lambda: Starlette(routes=[Route("/password-reset", ok, methods=["POST"])]),
    ),
    Case(
        "a login route in the exempt paths",
        {"rate_limit_exempt_paths": ["/auth/login"]},
        "HARDENKIT_RATE_LIMIT_EXEMPT_PATHS",
        "login-route-unlimited",
        app=starlette_app,
    ),
    Case(
        "a login route marked @exempt()",
        {},
        "HARDENKIT_RATE_LIMIT_EXEMPT_PATHS",
        "login-route-unlimited",
        app=lambda: Starlette(
            routes=[Route("/auth/login", exempt()(new_endpoint()), methods=["POST"])]
        ),
    ),
    Case(
        "auth report_only",
        {"auth_mode": "report_only"},
        "HARDENKIT_AUTH_MODE",
        "auth-report-only",
    ),
    Case(
        "exempt *",
        {"rate_limit_exempt_paths": ["*"]},
        "HARDENKIT_RATE_LIMIT_EXEMPT_PATHS",
        "rate-limit-exempt-everything",
    ),
    Case(
        "streaming /*",
        {"streaming_paths": ["/*"]},
        "HARDENKIT_STREAMING_PATHS",
        "streaming-paths-everything",
    ),
    Case(
        "timeout route /* for a day",
        {"request_timeout_routes": {"/*": 86400}},
        "HARDENKIT_REQUEST_TIMEOUT_ROUTES",
        "request-timeout-catch-all-long",
    ),
    Case(
        "empty auth paths with a login route",
        {"auth_paths": []},
        "HARDENKIT_AUTH_PATHS",
        "auth-paths-empty",
        app=starlette_app,
    ),
    Case(
        "redis down open",
        {"rate_limit_redis_down": "open"},
        "HARDENKIT_RATE_LIMIT_REDIS_DOWN",
        "rate-limit-open-when-redis-down",
    ),
    Case(
        "a fixed outage share with Redis",
        {"rate_limit_fallback_share": 1.0, "redis_url": "redis://127.0.0.1:1/0"},
        "HARDENKIT_RATE_LIMIT_FALLBACK_SHARE",
        "rate-limit-fallback-share-fixed",
    ),
    Case(
        "a webhook path among the streaming paths",
        {
            "webhook_secret": WEBHOOK_SECRET,
            "webhook_paths": ["/webhooks/*"],
            "public_paths": ["/webhooks/*"],
            "streaming_paths": ["/webhooks/live"],
        },
        "HARDENKIT_STREAMING_PATHS",
        "webhook-path-untimed",
        app=lambda: Starlette(routes=[Route("/webhooks/live", ok, methods=["POST"])]),
    ),
    Case(
        "a webhook path written without the router's prefix",
        {
            "webhook_secret": WEBHOOK_SECRET,
            "webhook_paths": ["/webhooks/*"],
            "public_paths": ["/webhooks/*", "/api/v1/webhooks/*"],
        },
        "HARDENKIT_WEBHOOK_PATHS",
        "webhook-path-unserved",
        app=lambda: Starlette(
            routes=[Mount("/api/v1", routes=[Route("/webhooks/in", ok, methods=["POST"])])]
        ),
    ),
    Case(
        "a webhook route served by a plain def handler",
        {
            "webhook_secret": WEBHOOK_SECRET,
            "webhook_paths": ["/webhooks/*"],
            "public_paths": ["/webhooks/*"],
        },
        "HARDENKIT_WEBHOOK_PATHS",
        "webhook-handler-sync",
        app=lambda: Starlette(
            routes=[Route("/webhooks/in", lambda request: Response(), methods=["POST"])]
        ),
    ),
    Case(
        "rediss with the certificate check off in the URL",
        {"redis_url": "rediss://127.0.0.1:1/0?ssl_cert_reqs=none"},
        "HARDENKIT_REDIS_URL",
        "redis-tls-unverified",
    ),
    Case(
        "http origin with credentials",
        {"cors_origins": ["http://app.example.com"], "cors_allow_credentials": True},
        "HARDENKIT_CORS_ORIGINS",
        "cors-http-credentials",
    ),
    Case(
        "script-src *",
        {"csp_html": "default-src 'self'; script-src * 'nonce-{nonce}'"},
        "HARDENKIT_CSP_HTML",
        "csp-script-anywhere",
    ),
    Case(
        "script-src unsafe-inline without nonce",
        {"csp_html": "default-src 'self'; script-src 'self' 'unsafe-inline'"},
        "HARDENKIT_CSP_HTML",
        "csp-unsafe-inline",
    ),
    Case(
        "script-src unsafe-eval",
        {"csp_api": "default-src 'none'; script-src 'self' 'unsafe-eval'"},
        "HARDENKIT_CSP_API",
        "csp-unsafe-eval",
    ),
    *(
        Case(f"csp {value}", {"csp_html": value}, "HARDENKIT_CSP_HTML", risk)
        for value, risk in [
            # CSP3 script-src-elem/-attr override script-src: each is judged on its own.
            ("default-src 'self'; script-src-elem *", "csp-script-anywhere"),
            ("default-src 'self'; script-src-elem 'unsafe-inline'", "csp-unsafe-inline"),
            ("default-src 'self'; script-src-attr 'unsafe-inline'", "csp-unsafe-inline"),
            ("default-src 'self'; script-src-elem 'self' 'unsafe-eval'", "csp-unsafe-eval"),
            (
                "default-src 'self'; script-src 'nonce-{nonce}'; script-src-elem 'self' https:",
                "csp-script-anywhere",
            ),
            # Every spelling of "any host", and schemes/keywords in any case.
            ("default-src 'self'; script-src https://*", "csp-script-anywhere"),
            ("default-src 'self'; script-src http://*", "csp-script-anywhere"),
            ("default-src 'self'; script-src *:*", "csp-script-anywhere"),
            ("default-src 'self'; script-src https://*:*", "csp-script-anywhere"),
            ("default-src https://*", "csp-script-anywhere"),
            ("default-src 'self'; script-src HTTPS:", "csp-script-anywhere"),
            ("default-src 'self'; script-src HTTP:", "csp-script-anywhere"),
            ("default-src 'self'; script-src Data:", "csp-script-anywhere"),
            ("default-src 'self'; script-src 'self' blob:", "csp-script-anywhere"),
        ]
    ),
    Case(
        "jwt secret: the alphabet",
        {"jwt_secret": "abcdefghijklmnopqrstuvwxyz0123456789"},
        "HARDENKIT_JWT_SECRET",
        None,
    ),
    Case(
        "jwt secret: jwt.io placeholder doubled",
        {"jwt_secret": "your-256-bit-secret" * 2},
        "HARDENKIT_JWT_SECRET",
        None,
    ),
    Case(
        "stripe webhook secret of 16 a",
        {"webhook_secret": "a" * 16, "webhook_scheme": "stripe"},
        "HARDENKIT_WEBHOOK_SECRET",
        None,
    ),
    Case(
        "standard webhook secret of zero bytes",
        {"webhook_secret": "whsec_" + "A" * 44},
        "HARDENKIT_WEBHOOK_SECRET",
        None,
    ),
    Case(
        "api key: the hash of `changeme`",
        {"api_keys": ["ops:057ba03d6c44104863dc7361fe4578965d1887360f90a0895882e58a6248fc86"]},
        "HARDENKIT_API_KEYS",
        None,
    ),
    *(
        Case(f"jwt secret: {secret}", {"jwt_secret": secret}, "HARDENKIT_JWT_SECRET", None)
        for secret in WEAK_SECRETS
    ),
    *(
        Case(
            f"api key: the hash of {key!r}",
            {"api_keys": ["ops:" + hashlib.sha256(key.encode()).hexdigest()]},
            "HARDENKIT_API_KEYS",
            None,
        )
        for key in WEAK_API_KEYS
    ),
    Case(
        "stripe webhook secret: Stripe's docs test key",
        {"webhook_secret": "sk_test_4eC39HqLyjWDarjtT1zdp7dc", "webhook_scheme": "stripe"},
        "HARDENKIT_WEBHOOK_SECRET",
        None,
    ),
    Case(
        "standard webhook secret: the spec's example with one character changed",
        {"webhook_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSx"},
        "HARDENKIT_WEBHOOK_SECRET",
        None,
    ),
    Case(
        "an unbound org_id path parameter",
        {},
        "HARDENKIT_TENANT_PATH_PARAMS",
        None,
        app=lambda: Starlette(routes=[Route("/orgs/{org_id}/things", ok)]),
    ),
]


def settings_for(case: Case, **extra: Any) -> dict[str, Any]:
    return {**SAFE, "env": "production", **case.settings, **extra}


def findings(case: Case, **extra: Any) -> dict[str, list[str]]:
    app = case.app() if case.app else None
    values = settings_for(case, **extra)
    found: dict[str, list[str]] = {}
    for finding in doctor(lambda: HardenSettings(**values), app):
        found.setdefault(finding.status, []).append(f"{finding.check}: {finding.detail}")
    return found


def refuse_at_startup(case: Case, **extra: Any) -> SettingsError:
    values = settings_for(case, **extra)
    if case.app is None:
        with pytest.raises(SettingsError) as refused:
            load_settings(**values)
        return refused.value
    app = case.app()
    settings = HardenSettings(**values)
    with pytest.raises(SettingsError) as refused:
        start(app, settings)
    return refused.value


def start(app: Starlette, settings: HardenSettings) -> None:
    """install(), then what lifespan startup judges: some rules need the complete app."""
    kit = install(app, settings)
    assert kit.app_check is not None
    kit.app_check.run_final()


def test_the_safe_baseline_starts_and_passes_doctor() -> None:
    settings = load_settings(**{**SAFE, "env": "production"})
    install(starlette_app(), settings)
    assert "fail" not in findings(Case("baseline", {}, "", None, app=starlette_app))


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_every_refused_configuration_fails_startup_and_doctor_alike(case: Case) -> None:
    refused = refuse_at_startup(case)
    assert case.variable in {problem.setting for problem in refused.problems}
    startup = [str(p) for p in refused.problems if p.setting == case.variable]
    failed = [line for line in findings(case).get("fail", []) if line.startswith(case.variable)]
    assert failed, f"doctor passed what startup refuses: {startup}"
    # Each says what is wrong and how to fix it.
    assert all("fix:" in line for line in startup + failed)
    if case.risk is not None:
        assert all(f"HARDENKIT_ACCEPT_RISKS={case.risk}" in line for line in startup + failed)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_outside_production_each_is_a_warning_that_says_it_would_be_refused(
    case: Case,
) -> None:
    found = findings(case, env="staging")
    assert not [line for line in found.get("fail", []) if line.startswith(case.variable)]
    assert any(
        line.startswith(case.variable) and "refused in production" in line
        for line in found.get("warn", [])
    )


@pytest.mark.parametrize("case", [case for case in CASES if case.risk], ids=lambda case: case.name)
def test_an_accepted_risk_starts_and_doctor_warns_about_it_every_run(case: Case) -> None:
    assert case.risk is not None
    values = settings_for(case, accept_risks=[case.risk])
    settings = load_settings(**values)
    with capture_logs() as logs:
        kit = install((case.app or starlette_app)(), settings)
        assert kit.app_check is not None
        kit.app_check.run_final()
    accepted = [
        entry
        for entry in logs
        if entry.get("setting") == case.variable and case.risk in str(entry.get("message"))
    ]
    assert len(accepted) == 1, "the accepted risk is logged once at startup"
    assert accepted[0]["log_level"] == "warning"
    for _ in range(2):
        found = findings(case, accept_risks=[case.risk])
        assert not [line for line in found.get("fail", []) if line.startswith(case.variable)]
        assert any(
            line.startswith(case.variable)
            and f"risk accepted: HARDENKIT_ACCEPT_RISKS holds {case.risk}" in line
            for line in found.get("warn", [])
        )


def test_accepting_one_risk_does_not_accept_another() -> None:
    values = {
        **SAFE,
        "env": "production",
        "public_paths": ["/*"],
        "rate_limit_redis_down": "open",
        "accept_risks": ["rate-limit-open-when-redis-down"],
    }
    with pytest.raises(SettingsError) as refused:
        load_settings(**values)
    assert [p.setting for p in refused.value.problems] == ["HARDENKIT_PUBLIC_PATHS"]


@pytest.mark.parametrize("value", ["*", "all", "public-paths", "public-paths-everything,yes"])
def test_unknown_or_wildcard_risk_ids_are_refused_in_every_environment(value: str) -> None:
    for env in ("development", "production"):
        with pytest.raises(SettingsError) as refused:
            load_settings(env=env, accept_risks=value)
        assert refused.value.problems[0].setting == "HARDENKIT_ACCEPT_RISKS"


def test_an_acceptance_the_configuration_does_not_need_is_warned() -> None:
    settings = load_settings(**SAFE, env="production", accept_risks=["csp-unsafe-eval"])
    warnings = [str(p) for p in settings.startup_warnings()]
    assert any(
        "accepts csp-unsafe-eval, which this configuration does not have" in w for w in warnings
    )


def test_every_risk_has_a_case_in_the_table_above() -> None:
    assert {case.risk for case in CASES if case.risk} == set(RISKS)


def test_the_refused_in_production_table_in_the_docs_is_the_policys_own() -> None:
    assert risks_table() in (ROOT / "docs" / "settings.md").read_text()


def test_doctor_cli_with_app_runs_the_route_rules(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HARDENKIT_TENANT_PATH_PARAMS", "tenant_id")
    code = main(["doctor", "--json", "--app", "tests.test_policy:UNBOUND_APP"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0  # development: a warning
    assert any(
        f["check"] == "HARDENKIT_TENANT_PATH_PARAMS"
        and f["status"] == "warn"
        and "org_id" in f["detail"]
        for f in out
    )
    monkeypatch.setenv("HARDENKIT_ENV", "production")
    for name, value in SAFE.items():
        if value is not None:
            monkeypatch.setenv(
                f"HARDENKIT_{name.upper()}", ",".join(value) if isinstance(value, list) else value
            )
    code = main(["doctor", "--json", "--app", "tests.test_policy:UNBOUND_APP"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1
    assert {f["check"] for f in out if f["status"] == "fail"} == {"HARDENKIT_TENANT_PATH_PARAMS"}


def test_a_second_install_on_the_same_app_is_refused() -> None:
    app = starlette_app()
    install(app, HardenSettings(**SAFE))
    layers = len(app.user_middleware)
    with pytest.raises(ConfigurationError, match="install\\(\\) already ran"):
        install(app, HardenSettings(**SAFE))
    assert len(app.user_middleware) == layers


UNBOUND_APP = Starlette(routes=[Route("/orgs/{org_id}/things", ok)])


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.ip_addresses(v=4).flatmap(
            lambda address: st.integers(0, 32).map(lambda bits: (address, bits))
        ),
        st.ip_addresses(v=6).flatmap(
            lambda address: st.integers(0, 128).map(lambda bits: (address, bits))
        ),
    )
)
def test_a_trusted_proxy_range_is_refused_exactly_when_public_and_wide(
    network: tuple[Any, int],
) -> None:
    address, bits = network
    cidr = ipaddress.ip_network(f"{address}/{bits}", strict=False)
    widest = 16 if cidr.version == 4 else 32
    nat64 = ipaddress.ip_network("64:ff9b::/96")
    # A NAT64 range is as wide as the IPv4 range it maps: 64:ff9b::/96 is all of IPv4.
    maps_wide_ipv4 = cidr.version == 6 and cidr.overlaps(nat64) and max(bits, 96) - 96 < 16
    wide = bits == 0 or (not cidr.is_private and bits < widest) or maps_wide_ipv4
    found = HardenSettings(**SAFE, env="production", trusted_proxies=[str(cidr)]).problems()
    assert any(p.risk == "trusted-proxies-too-wide" for p in found) == wide


# A case with its own Redis URL makes the doctor connect, and no Redis answers it here.
_VARIABLES = {case.variable for case in CASES}


def _sets_another_cases_variable(case: Case) -> bool:
    """Whether ``case`` needs a setting another case spoils (a valid webhook secret)."""
    return any(
        env_name(name) != case.variable and env_name(name) in _VARIABLES for name in case.settings
    )


# Mixed freely: no Redis (a URL changes what other cases mean), and no case that sets
# another case's variable (mixed with that case, one of the two would be undone).
SETTINGS_ONLY = [
    case
    for case in CASES
    if case.app is None
    and "redis_url" not in case.settings
    and not _sets_another_cases_variable(case)
]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from(SETTINGS_ONLY), unique_by=lambda case: case.name, max_size=6),
    st.sampled_from(["production", "staging"]),
)
def test_doctor_fails_exactly_what_startup_refuses_for_any_mix_of_cases(
    cases: list[Case], env: str
) -> None:
    values: dict[str, Any] = {**SAFE, "env": env}
    for case in cases:
        values.update(case.settings)
    try:
        load_settings(**values)
    except SettingsError as error:
        refused = {problem.setting for problem in error.problems}
    else:
        refused = set()
    failed = {
        finding.check
        for finding in doctor(lambda: HardenSettings(**values))
        if finding.status == "fail"
    }
    assert failed == refused
    if env == "production":
        assert {case.variable for case in cases} <= refused


@pytest.mark.parametrize("secret", WEAK_SECRETS)
def test_a_weak_secret_is_refused_by_name_and_fix_without_repeating_it(secret: str) -> None:
    case = Case("weak", {"jwt_secret": secret}, "HARDENKIT_JWT_SECRET", None)
    startup = [str(p) for p in refuse_at_startup(case).problems]
    failed = findings(case).get("fail", [])
    lines = [line for line in startup + failed if line.startswith("HARDENKIT_JWT_SECRET")]
    assert len(lines) == 2
    assert all("fix:" in line and secret.lower() not in line.lower() for line in lines)


def test_an_exempt_prefix_over_protected_routes_or_most_of_the_app_is_warned_about() -> None:
    """New-user review: HARDENKIT_RATE_LIMIT_EXEMPT_PATHS=/api/* turned the limits off for
    the whole API and said nothing (and, at first, only a prefix over half the app did)."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from hardenkit import install
    from hardenkit._app_policy import app_problems

    async def ok(request: object) -> PlainTextResponse:
        return PlainTextResponse("ok")

    paths = ["/api/v1/orders", "/api/v1/items", "/static/logo", "/static/icon"]
    paths += [f"/site/page{index}" for index in range(6)]

    def warned(*exempt: str) -> list[str]:
        app = Starlette(routes=[Route(path, ok) for path in paths])
        values = {**SAFE, "rate_limit_exempt_paths": list(exempt)}
        settings = HardenSettings(**{**values, "public_paths": ["/static/*", "/site/*"]})
        install(app, settings)
        return [
            problem.message
            for problem in app_problems(settings, app)
            if problem.setting == "HARDENKIT_RATE_LIMIT_EXEMPT_PATHS"
        ]

    (message,) = warned("/api/*")  # 2 of 10 routes, both behind auth
    assert message.startswith("/api/* exempts 2 of the app's 10 routes")
    assert "2 of them behind auth" in message
    assert warned("/static/*") == []  # public assets: what exempt paths are for
    assert warned("/api/v1/orders") == []  # exact paths are chosen one by one
    (most,) = warned("/site/*")  # public, but 6 of 10 routes
    assert "0 of them behind auth" in most


def test_a_prefix_taking_the_timeout_off_more_than_a_few_routes_is_warned_about() -> None:
    """New-user review: HARDENKIT_STREAMING_PATHS=/tenants/* (or a one-day budget for it)
    took the request timeout off the whole tenant API, with nothing said; only the
    catch-all forms were refused."""
    from starlette.responses import PlainTextResponse

    from hardenkit._app_policy import app_problems

    async def ok(request: object) -> PlainTextResponse:
        return PlainTextResponse("ok")

    paths = [f"/tenants/{{tenant_id}}/{name}" for name in ("orders", "items", "users")]
    paths += ["/streams/tail", "/streams/export", "/health/page"]

    def warned(**values: Any) -> list[str]:
        app = Starlette(routes=[Route(path, ok) for path in paths])
        settings = HardenSettings(**{**SAFE, **values})
        install(app, settings)
        return [
            f"{problem.setting}: {problem.message}"
            for problem in app_problems(settings, app)
            if problem.setting in ("HARDENKIT_STREAMING_PATHS", "HARDENKIT_REQUEST_TIMEOUT_ROUTES")
        ]

    (streaming,) = warned(streaming_paths=["/tenants/*"])
    assert streaming.startswith(
        "HARDENKIT_STREAMING_PATHS: /tenants/* take the request timeout off 3 of the app's 6"
    )
    (long,) = warned(request_timeout_routes={"/tenants/*": 86400})
    assert long.startswith("HARDENKIT_REQUEST_TIMEOUT_ROUTES: /tenants/* lift the request")
    assert warned(streaming_paths=["/streams/*"]) == []  # two streams: what it is for
    assert warned(streaming_paths=["/tenants/{tenant_id}/orders"]) == []  # chosen one by one
    assert warned(request_timeout_routes={"/tenants/*": 600}) == []  # within the cap
    # Prefixes of one route each count together (an attacker round: ten of them were
    # ten routes without a timeout, and nothing said).
    (split,) = warned(streaming_paths=["/tenants/{tenant_id}/o*", "/tenants/{tenant_id}/i*", "/h*"])
    assert "3 of the app's 6 HTTP routes" in split


def test_websocket_routes_under_a_streaming_prefix_are_not_counted() -> None:
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket

    from hardenkit._app_policy import app_problems

    async def stream(request: Request) -> Response:
        return JSONResponse({})

    async def socket(websocket: WebSocket) -> None:
        await websocket.close()

    routes: list[Any] = [Route("/live/feed", stream), Route("/other", stream)]
    routes += [WebSocketRoute("/live/chat", socket), WebSocketRoute("/live/ticks", socket)]
    app = Starlette(routes=routes)
    settings = HardenSettings(**{**SAFE, "streaming_paths": ["/live/*"]})
    install(app, settings)
    assert not [p for p in app_problems(settings, app) if p.setting == "HARDENKIT_STREAMING_PATHS"]


@pytest.mark.parametrize(
    ("rate", "warned"),
    [
        ("5/15m", False),
        ("10/1m", False),
        ("30/1m", False),
        ("31/1m", True),
        ("1/s", True),  # 86,400 a day (an attacker round: it passed at 60 a minute)
        ("1000000/1s", True),
        ("200/1d", True),  # 200 at once
    ],
)
def test_a_login_limit_too_loose_to_slow_guessing_is_warned_about(rate: str, warned: bool) -> None:
    """New-user review: HARDENKIT_RATE_LIMIT_AUTH=1000000/1s was taken without a word."""
    problems = [
        problem
        for problem in HardenSettings(**{**SAFE, "rate_limit_auth": rate}).startup_warnings()
        if problem.setting == "HARDENKIT_RATE_LIMIT_AUTH"
    ]
    assert bool(problems) is warned
    if warned:
        assert problems[0].message.startswith(f"`{rate}` lets one client make")
        assert "5/15m" in str(problems[0])


def test_a_mark_on_a_function_that_serves_several_paths_is_warned_about() -> None:
    """Round 11: ``public()(handler)`` marks the function, so the same handler added at a
    second path (``/admin/status``) made that route public too, with nothing said."""
    from starlette.testclient import TestClient

    from hardenkit._app_policy import app_problems

    async def status(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def quota(request: Request) -> Response:
        return JSONResponse({"ok": True})

    marked = public()(status)
    app = Starlette(
        routes=[
            Route("/status", marked, methods=["GET"]),
            Route("/status", marked, methods=["POST"]),  # one path: no surprise
            Route("/admin/status", status),
            Route("/quota", exempt()(quota)),
            Route("/v2/quota", quota),
        ]
    )
    settings = HardenSettings(**SAFE)
    install(app, settings)
    problems = {problem.setting: problem for problem in app_problems(settings, app)}
    public_problem = problems["HARDENKIT_PUBLIC_PATHS"]
    assert public_problem.severity == "warning"
    assert not public_problem.production_only
    assert "/status, /admin/status" in public_problem.message
    assert "@public()" in public_problem.message
    exempt_problem = problems["HARDENKIT_RATE_LIMIT_EXEMPT_PATHS"]
    assert "/quota, /v2/quota" in exempt_problem.message
    assert "@exempt()" in exempt_problem.message
    with capture_logs() as logs, TestClient(app) as client:
        assert client.get("/admin/status").status_code == 200  # what the warning is about
    warned = " ".join(str(log) for log in logs if log["log_level"] == "warning")
    assert "/status, /admin/status" in warned
    assert "/quota, /v2/quota" in warned


def test_a_marked_function_on_one_path_only_is_not_warned_about() -> None:
    """Round 14: a trailing-slash alias is one path; paths listed in the setting are
    meant (the way to say so for a router included under two prefixes)."""
    from hardenkit._app_policy import app_problems

    status, ping = public()(new_endpoint()), public()(new_endpoint())
    app = Starlette(
        routes=[
            Route("/status", status),
            Route("/status/", status),
            Route("/v1/ping", ping),
            Route("/v2/ping", ping),
        ]
    )
    settings = HardenSettings(**{**SAFE, "public_paths": ["/v1/ping", "/v2/ping"]})
    install(app, settings)
    assert [problem for problem in app_problems(settings, app) if "marks" in problem.message] == []
    # Round 15: listing only the path meant left the other public with nothing said.
    settings = HardenSettings(**{**SAFE, "public_paths": ["/v1/ping"]})
    (warning,) = [problem for problem in app_problems(settings, app) if "marks" in problem.message]
    assert warning.message.endswith("/v2/ping by the mark alone")
