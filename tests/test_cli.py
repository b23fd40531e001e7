from __future__ import annotations

import json

import pytest

from hardenkit.cli import main


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
