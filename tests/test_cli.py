from __future__ import annotations

import contextlib
import io
import json
import os
import string
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from hardenkit.cli import expected_headers, main
from hardenkit.headers import HeaderPolicy
from tests.auth.jwks_server import JWKSProvider
from tests.auth.support import jwk_of, rsa_key
from tests.support.redis_server import free_port
from tests.support.uvicorn_server import UvicornServer


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().out


def test_doctor_passes_on_a_clean_development_environment(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out = run(capsys, "doctor")
    assert code == 0
    assert "0 failed" in out


def test_doctor_lists_every_problem_of_a_broken_environment_and_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HARDENKIT_ENV", "production")
    monkeypatch.setenv("HARDENKIT_AUTH_MODE", "off")
    monkeypatch.setenv("HARDENKIT_RATE_LIMT_AUTH", "5/m")
    monkeypatch.setenv("HARDENKIT_REDIS_URL", "redis://:hunter2@127.0.0.1:1/0")
    code, out = run(capsys, "doctor", "--json")
    assert code == 1
    findings = {f["check"]: f for f in json.loads(out)}
    assert findings["HARDENKIT_RATE_LIMT_AUTH"]["status"] == "fail"
    assert findings["HARDENKIT_AUTH_MODE"]["status"] == "fail"
    assert findings["redis"]["status"] == "fail"
    assert "hunter2" not in out


def test_doctor_reports_unparsable_values_by_name_without_the_value(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HARDENKIT_REQUEST_TIMEOUT", "forever-and-a-secret")
    code, out = run(capsys, "doctor")
    assert code == 1
    assert "HARDENKIT_REQUEST_TIMEOUT" in out
    assert "forever-and-a-secret" not in out


def test_production_only_rules_are_warnings_outside_production(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HARDENKIT_AUTH_MODE", "off")
    code, out = run(capsys, "doctor", "--json")
    findings = {f["check"]: f for f in json.loads(out)}
    assert code == 0
    assert findings["HARDENKIT_AUTH_MODE"]["status"] == "warn"
    assert "refused in production" in findings["HARDENKIT_AUTH_MODE"]["detail"]


@pytest.mark.redis
def test_doctor_measures_redis_latency(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], redis_url: str
) -> None:
    monkeypatch.setenv("HARDENKIT_REDIS_URL", redis_url)
    monkeypatch.setenv("HARDENKIT_REDIS_SOCKET_TIMEOUT", "1")
    code, out = run(capsys, "doctor", "--json")
    findings = {f["check"]: f for f in json.loads(out)}
    assert findings["redis"]["status"] == "pass"
    assert "answered PING" in findings["redis"]["detail"]
    assert code == 0


@settings(max_examples=30, deadline=None)
@given(
    password=st.text(alphabet=string.ascii_letters + string.digits + "-._~", min_size=12),
    form=st.sampled_from(["user-info", "query", "sentinel query"]),
)
@example(password="HARDENKIT_CR", form="user-info")  # a setting name's prefix: not a leak
@example(password="s3cret-redis-pa55", form="query")
def test_doctor_never_prints_a_redis_password_however_the_url_carries_it(
    password: str, form: str
) -> None:
    """redis-py takes the password from the user-info or from ``?password=``; doctor's
    output ends up in CI logs, so neither form may reach it."""
    port = free_port()  # nothing listens: the finding shows the URL it could not reach

    def doctor_output(secret: str) -> str:
        url = {
            "user-info": f"redis://app:{secret}@127.0.0.1:{port}/0",
            "query": f"redis://127.0.0.1:{port}/0?db=0&password={secret}",
            "sentinel query": f"redis://127.0.0.1:{port}/0?sentinel_password={secret}",
        }[form]
        environment = {"HARDENKIT_REDIS_URL": url, "HARDENKIT_REDIS_SOCKET_TIMEOUT": "0.2"}
        with pytest.MonkeyPatch.context() as patch:
            for name, value in environment.items():
                patch.setenv(name, value)
            output = io.StringIO()
            with contextlib.redirect_stdout(output):
                main(["doctor", "--json"])
        return output.getvalue()

    # Doctor lists every setting's name: a generated password such as `HARDENKIT_CR` is
    # in its output whatever the URL says. Only a password the same report with another
    # password does not contain can show a leak.
    assume(password not in doctor_output("0ther-pa55word"))
    output = doctor_output(password)
    findings = {f["check"]: f for f in json.loads(output)}
    assert password not in output
    assert f"127.0.0.1:{port}" in findings["redis"]["detail"]  # the URL is still shown


# --- doctor: JWKS, --settings --------------------------------------------------------


@pytest.fixture
def jwks_provider() -> Iterator[JWKSProvider]:
    provider = JWKSProvider([jwk_of(rsa_key(), "k1"), jwk_of(rsa_key("second"), "k2")])
    provider.start()
    yield provider
    provider.stop()


def test_doctor_fetches_the_jwks_through_the_auth_client_and_counts_its_keys(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], jwks_provider: JWKSProvider
) -> None:
    monkeypatch.setenv("HARDENKIT_JWT_JWKS_URL", jwks_provider.url + "?tenant=secret-ish")
    monkeypatch.setenv("HARDENKIT_JWT_JWKS_ALLOW_HTTP_LOOPBACK", "true")
    code, out = run(capsys, "doctor", "--json")
    findings = {f["check"]: f for f in json.loads(out)}
    assert findings["jwks"]["status"] == "pass"
    assert "2 usable keys" in findings["jwks"]["detail"]
    assert "secret-ish" not in out
    assert jwks_provider.hits == 1
    assert code == 0


def test_doctor_fails_when_the_jwks_does_not_answer(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HARDENKIT_JWT_JWKS_URL", f"http://127.0.0.1:{free_port()}/jwks.json")
    monkeypatch.setenv("HARDENKIT_JWT_JWKS_ALLOW_HTTP_LOOPBACK", "true")
    monkeypatch.setenv("HARDENKIT_JWT_JWKS_TIMEOUT", "1")
    code, out = run(capsys, "doctor", "--json")
    findings = {f["check"]: f for f in json.loads(out)}
    assert findings["jwks"]["status"] == "fail"
    assert code == 1


def test_doctor_fails_when_the_jwks_serves_no_usable_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], jwks_provider: JWKSProvider
) -> None:
    jwks_provider.keys = [{"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}]  # never trusted
    monkeypatch.setenv("HARDENKIT_JWT_JWKS_URL", jwks_provider.url)
    monkeypatch.setenv("HARDENKIT_JWT_JWKS_ALLOW_HTTP_LOOPBACK", "true")
    code, out = run(capsys, "doctor", "--json")
    assert {f["check"]: f["status"] for f in json.loads(out)}["jwks"] == "fail"
    assert code == 1


def test_doctor_refuses_plain_http_jwks_outside_loopback_like_the_service(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HARDENKIT_JWT_JWKS_URL", "http://idp.example/jwks.json")
    code, out = run(capsys, "doctor", "--json")
    findings = {f["check"]: f for f in json.loads(out)}
    assert findings["jwks"]["status"] == "fail"
    assert "must use https" in findings["jwks"]["detail"]
    assert code == 1


def test_doctor_never_prints_the_credentials_of_a_jwks_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HARDENKIT_JWT_JWKS_URL", "https://u:LeakMe@idp.example/jwks.json")
    for arguments in (("doctor",), ("doctor", "--json")):
        code, out = run(capsys, *arguments)
        assert "LeakMe" not in out
        assert "***@idp.example/jwks.json" in out
        assert code == 1


def test_doctor_passes_the_reference_apps_demo_settings(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out = run(capsys, "doctor", "--settings", "examples.reference_app.settings:demo_settings")
    assert code == 0, out
    assert "0 failed" in out
    assert "demo-jwt-secret" not in out


def test_doctor_with_settings_lists_every_problem_of_a_broken_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HARDENKIT_ENV", "production")
    monkeypatch.setenv("HARDENKIT_AUTH_MODE", "off")
    monkeypatch.setenv("HARDENKIT_RATE_LIMT_AUTH", "5/m")
    code, out = run(
        capsys, "doctor", "--json", "--settings", "examples.reference_app.settings:demo_settings"
    )
    failed = {f["check"] for f in json.loads(out) if f["status"] == "fail"}
    assert code == 1
    assert {"HARDENKIT_RATE_LIMT_AUTH"} == failed  # load_settings stops at unknown names
    monkeypatch.delenv("HARDENKIT_RATE_LIMT_AUTH")
    monkeypatch.setenv("HARDENKIT_JWT_SECRET", "short")
    monkeypatch.setenv("HARDENKIT_CORS_ORIGINS", "*")
    monkeypatch.setenv("HARDENKIT_CORS_ALLOW_CREDENTIALS", "true")
    code, out = run(
        capsys, "doctor", "--json", "--settings", "examples.reference_app.settings:demo_settings"
    )
    failed = {f["check"] for f in json.loads(out) if f["status"] == "fail"}
    assert code == 1
    assert {"HARDENKIT_AUTH_MODE", "HARDENKIT_JWT_SECRET", "HARDENKIT_CORS_ORIGINS"} <= failed
    assert "demo-jwt-secret" not in out


@pytest.mark.parametrize(
    "spec", ["no-colon", "examples.reference_app.settings:nope", "no.such.module:thing"]
)
def test_doctor_settings_option_names_what_it_cannot_import(
    capsys: pytest.CaptureFixture[str], spec: str
) -> None:
    assert main(["doctor", "--settings", spec]) == 2
    assert spec in capsys.readouterr().err


def test_doctor_fails_a_settings_callable_that_returns_something_else(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out = run(capsys, "doctor", "--json", "--settings", "os:getcwd")
    assert code == 1
    assert {f["check"]: f["status"] for f in json.loads(out)}["settings"] == "fail"


# --- check-headers -------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference_server() -> Iterator[UvicornServer]:
    with UvicornServer(env={"HARDENKIT_REDIS_URL": ""}) as server:
        yield server


@pytest.mark.e2e
def test_check_headers_passes_every_header_of_the_reference_app(
    capsys: pytest.CaptureFixture[str], reference_server: UvicornServer
) -> None:
    for path, kind in (("/", "html"), ("/api/me", "api"), ("/healthz", "api")):
        code, out = run(capsys, "check-headers", "--json", reference_server.url + path)
        findings = {f["check"]: f for f in json.loads(out)}
        assert code == 0, out
        assert f"graded as {kind}" in findings["response"]["detail"]
        assert {f["status"] for f in findings.values()} == {"pass"}, out
        expected = expected_headers(HeaderPolicy(), kind, https=False)
        assert set(expected) <= set(findings)
        assert "content-security-policy" in findings


@pytest.mark.e2e
def test_check_headers_prints_a_table_for_people(
    capsys: pytest.CaptureFixture[str], reference_server: UvicornServer
) -> None:
    code, out = run(capsys, "check-headers", reference_server.url + "/")
    assert code == 0
    assert "x-content-type-options" in out
    assert "0 failed" in out


class BareHandler(BaseHTTPRequestHandler):
    """A service without hardenkit: a weak CSP, a framework banner, no nosniff."""

    headers_to_send: ClassVar[dict[str, str]] = {}

    def do_GET(self) -> None:
        body = b"<html><body>hi</body></html>"
        self.send_response(200)
        self.send_header("content-type", "text/html")
        for name, value in self.headers_to_send.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def bare_server() -> Iterator[tuple[str, type[BareHandler]]]:
    handler = type("Handler", (BareHandler,), {"headers_to_send": {}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=lambda: server.serve_forever(poll_interval=0.02), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", handler
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_check_headers_fails_a_service_without_the_essential_headers(
    capsys: pytest.CaptureFixture[str], bare_server: tuple[str, type[BareHandler]]
) -> None:
    url, handler = bare_server
    handler.headers_to_send = {"X-Powered-By": "Express", "Referrer-Policy": "unsafe-url"}
    code, out = run(capsys, "check-headers", "--json", url)
    findings = {f["check"]: f for f in json.loads(out)}
    assert code == 1
    assert findings["content-security-policy"]["status"] == "fail"
    assert findings["x-content-type-options"]["status"] == "fail"
    assert findings["x-frame-options"]["status"] == "warn"  # missing, not essential
    assert findings["referrer-policy"]["status"] == "warn"
    assert "no-referrer" in findings["referrer-policy"]["detail"]
    assert findings["x-powered-by"]["status"] == "warn"


@pytest.mark.parametrize(
    ("csp", "status"),
    [
        ("default-src 'self'; script-src 'self' 'unsafe-inline'", "fail"),
        ("default-src 'self'; script-src 'self' 'unsafe-eval'", "fail"),
        ("default-src *", "fail"),
        ("img-src 'self'", "fail"),
        ("default-src 'self'; script-src 'self' 'nonce-abc' 'unsafe-inline'", "warn"),
        ("default-src 'self'", "warn"),
    ],
)
def test_check_headers_grades_a_weak_csp_as_fail_and_a_different_one_as_warn(
    capsys: pytest.CaptureFixture[str],
    bare_server: tuple[str, type[BareHandler]],
    csp: str,
    status: str,
) -> None:
    url, handler = bare_server
    handler.headers_to_send = {"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff"}
    _, out = run(capsys, "check-headers", "--json", url)
    assert {f["check"]: f for f in json.loads(out)}["content-security-policy"]["status"] == status


def test_check_headers_warns_that_report_only_blocks_nothing(
    capsys: pytest.CaptureFixture[str], bare_server: tuple[str, type[BareHandler]]
) -> None:
    url, handler = bare_server
    handler.headers_to_send = {"Content-Security-Policy-Report-Only": "default-src 'self'"}
    _, out = run(capsys, "check-headers", "--json", url)
    findings = {f["check"]: f for f in json.loads(out)}
    assert findings["content-security-policy-report-only"]["status"] == "warn"
    assert findings["content-security-policy"]["status"] == "fail"


def test_check_headers_fails_when_nothing_answers(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "check-headers", "--json", f"http://127.0.0.1:{free_port()}/")
    assert code == 1
    assert json.loads(out)[0]["check"] == "response"


def test_check_headers_says_how_to_install_httpx_when_it_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "httpx", None)  # import httpx now raises ImportError
    assert main(["check-headers", "http://127.0.0.1:1/"]) == 2
    assert "pip install 'hardenkit[httpx]'" in capsys.readouterr().err


def test_doctor_shows_where_the_client_ip_and_the_request_id_come_from(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(capsys, "doctor", "--json")
    findings = {f["check"]: f for f in json.loads(out)}
    assert code == 0
    assert findings["client_ip"]["detail"].startswith("the connected peer")
    assert findings["request_id_trust"]["detail"].startswith("proxies:")
    monkeypatch.setenv("HARDENKIT_TRUSTED_PROXIES", "10.0.0.0/8")
    monkeypatch.setenv("HARDENKIT_FORWARDED_HEADER", "forwarded")
    monkeypatch.setenv("HARDENKIT_REQUEST_ID_TRUST", "none")
    code, out = run(capsys, "doctor", "--json")
    findings = {f["check"]: f for f in json.loads(out)}
    assert findings["client_ip"]["detail"].startswith("forwarded from 1 trusted proxy network")
    assert findings["request_id_trust"]["detail"].startswith("none:")


def test_doctor_url_fails_when_nothing_answers(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "doctor", "--json", "--url", f"http://127.0.0.1:{free_port()}")
    findings = {f["check"]: f for f in json.loads(out)}
    assert code == 1
    assert findings["proxy_headers"]["status"] == "fail"


def test_doctor_url_cannot_tell_for_a_service_without_the_readiness_check(
    capsys: pytest.CaptureFixture[str],
) -> None:
    class Ready(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"status": "healthy", "checks": {}}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Ready)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        code, out = run(
            capsys, "doctor", "--json", "--url", f"http://127.0.0.1:{server.server_port}"
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    findings = {f["check"]: f for f in json.loads(out)}
    assert code == 0
    assert findings["proxy_headers"]["status"] == "warn"
    assert "cannot tell" in findings["proxy_headers"]["detail"]


def test_doctor_json_stdout_is_only_the_report_when_the_app_logs_on_import() -> None:
    # No key source: install() on import warns, and a default structlog prints to stdout.
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARDENKIT_")}
    command = [
        sys.executable,
        "-c",
        "import sys; from hardenkit.cli import main; raise SystemExit(main(sys.argv[1:]))",
        "doctor",
        "--json",
        "--app",
        "tests.support.noisy_installed_app:app",
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=60, check=False
    )
    findings = json.loads(done.stdout)  # nothing but the report
    assert any(f["check"] == "HARDENKIT_TENANT_PATH_PARAMS" for f in findings)
    assert "setting_warning" in done.stderr  # the import's own warning went to stderr


ROOT = Path(__file__).resolve().parent.parent
