"""``hardenkit doctor`` explains the demo and keeps checking after a settings failure."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hardenkit.cli import main
from tests.auth.jwks_server import JWKSProvider
from tests.auth.support import jwk_of, rsa_key
from tests.support.redis_server import free_port

DEMO = "examples.reference_app.settings:demo_settings"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict[str, Any]]]:
    code = main(["doctor", "--json", *args])
    return code, json.loads(capsys.readouterr().out)


def test_doctor_names_every_published_demo_secret_and_key_in_production(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HARDENKIT_ENV", "production")
    code, findings = run(capsys, "--settings", DEMO)
    failed = {f["check"]: f["detail"] for f in findings if f["status"] == "fail"}
    assert code == 1
    assert set(failed) == {
        "HARDENKIT_JWT_SECRET",
        "HARDENKIT_WEBHOOK_SECRET",
        "HARDENKIT_MESSAGE_SIGNING_KEY",
        "HARDENKIT_MESSAGE_TRUSTED_KEYS",
    }
    assert all("published" in detail for detail in failed.values())
    assert "no key source" not in json.dumps(findings)
    # Its connectivity checks ran too.
    assert any(f["check"] == "redis" for f in findings)
    assert "Qm8vT2xL5nR9wK3pZ7cY1hB4" not in json.dumps(findings)


def test_doctor_checks_redis_and_the_jwks_after_settings_fail_to_parse(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    provider = JWKSProvider([jwk_of(rsa_key(), "k1")])
    provider.start()
    try:
        monkeypatch.setenv("HARDENKIT_JWT_JWKS_URL", provider.url)
        monkeypatch.setenv("HARDENKIT_JWT_JWKS_ALLOW_HTTP_LOOPBACK", "true")
        monkeypatch.setenv("HARDENKIT_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
        monkeypatch.setenv("HARDENKIT_REQUEST_TIMEOUT", "forever")
        monkeypatch.setenv("HARDENKIT_RATE_LIMIT_DEFAULT", "lots")
        for args in ((), ("--settings", DEMO)):
            code, findings = run(capsys, *args)
            statuses = {f["check"]: f["status"] for f in findings}
            assert code == 1
            assert statuses["HARDENKIT_REQUEST_TIMEOUT"] == "fail"
            assert statuses["HARDENKIT_RATE_LIMIT_DEFAULT"] == "fail"
            assert statuses["redis"] == "fail"  # nothing listens there: checked, not skipped
            assert statuses["jwks"] == "pass"
    finally:
        provider.stop()


def test_doctor_reports_an_app_whose_install_refuses_on_import(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HARDENKIT_ENV", "production")
    monkeypatch.setenv("HARDENKIT_PUBLIC_PATHS", "/*")
    code, findings = run(capsys, "--app", "tests.test_doctor_policy:refused_app")
    assert code == 1
    assert "HARDENKIT_PUBLIC_PATHS" in {f["check"] for f in findings if f["status"] == "fail"}


def __getattr__(name: str) -> Any:
    # Built on first access, under the environment the test above set.
    if name == "refused_app":
        from starlette.applications import Starlette

        from hardenkit import install

        app = Starlette()
        install(app)
        return app
    if name == "refused_app_with_routes":
        return _app_with_routes()
    if name == "refused_app_loading_settings":  # the app reads its settings itself
        from hardenkit import load_settings

        return _app_with_routes(load_settings())
    raise AttributeError(name)


@pytest.mark.parametrize("app", ["refused_app_with_routes", "refused_app_loading_settings"])
def test_doctor_lists_refused_settings_and_the_routes_problems_in_one_run(
    app: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # install() refuses the settings on import; the routes are judged all the same, so a
    # user fixes both before running the doctor again (a new-user review needed three).
    monkeypatch.setenv("HARDENKIT_ENV", "production")
    monkeypatch.setenv("HARDENKIT_PUBLIC_PATHS", "/*")
    monkeypatch.setenv("HARDENKIT_RATE_LIMT_DEFAULT", "5/minute")  # a typo, refused too
    code, findings = run(capsys, "--app", f"tests.test_doctor_policy:{app}")
    failed = [f["check"] for f in findings if f["status"] == "fail"]
    assert code == 1
    assert "HARDENKIT_PUBLIC_PATHS" in failed
    assert "HARDENKIT_RATE_LIMT_DEFAULT" in failed
    assert "HARDENKIT_TENANT_PATH_PARAMS" in failed  # the route's unbound {org_id}
    assert len(failed) == len(set(failed))  # each refusal once, however it was found


def test_an_app_refused_outside_the_doctor_still_fails_to_import(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hardenkit import SettingsError, load_settings

    monkeypatch.setenv("HARDENKIT_ENV", "production")
    monkeypatch.setenv("HARDENKIT_PUBLIC_PATHS", "/*")
    with pytest.raises(SettingsError, match="HARDENKIT_PUBLIC_PATHS"):
        _app_with_routes()
    with pytest.raises(SettingsError, match="HARDENKIT_PUBLIC_PATHS"):
        load_settings()


def _app_with_routes(settings: Any = None) -> Any:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from hardenkit import install

    async def items(request: Any) -> PlainTextResponse:
        return PlainTextResponse("")

    app = Starlette(routes=[Route("/orgs/{org_id}/items", items)])
    install(app, settings)
    return app


def test_doctor_says_the_routes_went_unchecked_when_a_setting_does_not_parse(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A new-user review: one unparsable value stopped the app's import, the report showed
    # that one failure and nothing about the routes, which read as if they passed.
    monkeypatch.setenv("HARDENKIT_STREAMING_PATHS", "/api/v1/tenants/*/export")
    code, findings = run(capsys, "--app", "tests.test_doctor_policy:refused_app_with_routes")
    failed = {f["check"]: f["detail"] for f in findings if f["status"] == "fail"}
    assert code == 1
    assert "HARDENKIT_STREAMING_PATHS" in failed
    assert "routes were not checked" in failed["app"]
    assert "refused_app_with_routes" in failed["app"]
