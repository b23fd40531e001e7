"""``load_settings()`` reads ``HARDENKIT_*`` lines of a ``.env`` file, typos refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hardenkit import HardenSettings, SettingsError, load_settings
from hardenkit.cli import main


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HARDENKIT_ENV_FILE", raising=False)
    return tmp_path


def test_dot_env_in_the_working_directory_is_read(workdir: Path) -> None:
    (workdir / ".env").write_text("HARDENKIT_REQUEST_TIMEOUT=7.5\nDATABASE_URL=x\n")
    assert load_settings().request_timeout == 7.5


def test_the_environment_wins_over_the_file(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (workdir / ".env").write_text("HARDENKIT_REQUEST_TIMEOUT=7.5\n")
    monkeypatch.setenv("HARDENKIT_REQUEST_TIMEOUT", "3")
    assert load_settings().request_timeout == 3.0


def test_explicit_overrides_win_over_both(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (workdir / ".env").write_text("HARDENKIT_REQUEST_TIMEOUT=7.5\n")
    monkeypatch.setenv("HARDENKIT_REQUEST_TIMEOUT", "3")
    assert load_settings(request_timeout=1.0).request_timeout == 1.0


def test_a_typo_in_the_file_is_refused_naming_the_variable_and_the_file(workdir: Path) -> None:
    (workdir / ".env").write_text("HARDENKIT_REQEUST_TIMEOUT=5\n")
    with pytest.raises(SettingsError, match=r"HARDENKIT_REQEUST_TIMEOUT: unknown setting.*\.env"):
        load_settings()


def test_a_lower_case_typo_in_the_file_is_refused(workdir: Path) -> None:
    (workdir / ".env").write_text("hardenkit_jwt_secrte=x\n")
    with pytest.raises(SettingsError, match="HARDENKIT_JWT_SECRTE"):
        load_settings()


def test_a_value_that_does_not_parse_names_the_variable_and_hides_the_value(
    workdir: Path,
) -> None:
    (workdir / ".env").write_text("HARDENKIT_REQUEST_TIMEOUT=secret-looking-value\n")
    with pytest.raises(SettingsError, match="HARDENKIT_REQUEST_TIMEOUT") as refused:
        load_settings()
    assert "secret-looking-value" not in str(refused.value)


def test_the_file_can_be_named_by_argument(workdir: Path) -> None:
    other = workdir / "conf" / "service.env"
    other.parent.mkdir()
    other.write_text("HARDENKIT_REQUEST_TIMEOUT=4\n")
    (workdir / ".env").write_text("HARDENKIT_REQUEST_TIMEOUT=9\n")
    assert load_settings(env_file=other).request_timeout == 4.0


def test_the_file_can_be_named_by_hardenkit_env_file(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (workdir / "service.env").write_text("HARDENKIT_JWT_ALGORITHMS=RS256,ES256\n")
    monkeypatch.setenv("HARDENKIT_ENV_FILE", str(workdir / "service.env"))
    assert load_settings().jwt_algorithms == ["RS256", "ES256"]


def test_an_empty_hardenkit_env_file_reads_no_file(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (workdir / ".env").write_text("HARDENKIT_REQEUST_TIMEOUT=5\n")
    monkeypatch.setenv("HARDENKIT_ENV_FILE", "")
    assert load_settings().request_timeout == 30.0


def test_a_named_file_that_does_not_exist_fails_naming_the_setting(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HARDENKIT_ENV_FILE", str(workdir / "missing.env"))
    with pytest.raises(SettingsError, match="HARDENKIT_ENV_FILE: no such file"):
        load_settings()
    with pytest.raises(SettingsError, match="env_file: no such file"):
        load_settings(env_file=workdir / "missing.env")


def test_per_name_resilience_overrides_are_refused_in_the_file(workdir: Path) -> None:
    # resilient(name) reads them from the environment when it is decorated, not from here.
    (workdir / ".env").write_text("HARDENKIT_RESILIENT_OPENAI_TIMEOUT=10\n")
    with pytest.raises(SettingsError, match="HARDENKIT_RESILIENT_OPENAI_TIMEOUT: read from the"):
        load_settings()


def test_production_rules_apply_to_values_from_the_file(workdir: Path) -> None:
    (workdir / ".env").write_text("HARDENKIT_ENV=production\nHARDENKIT_AUTH_MODE=off\n")
    with pytest.raises(SettingsError, match="HARDENKIT_AUTH_MODE"):
        load_settings()


def test_settings_constructed_directly_read_the_file_too(workdir: Path) -> None:
    (workdir / ".env").write_text("HARDENKIT_REQUEST_TIMEOUT=7.5\nHARDENKIT_REQEUST_TYPO=1\n")
    # The typo is judged where names are judged (load_settings, the doctor), not here.
    assert HardenSettings().request_timeout == 7.5


def test_the_doctor_fails_a_typo_in_the_file_and_reads_its_values(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / ".env").write_text("HARDENKIT_ENV=production\nHARDENKIT_REQEUST_TIMEOUT=5\n")
    code = main(["doctor", "--json"])
    findings = {f["check"]: f for f in json.loads(capsys.readouterr().out)}
    assert code == 1
    assert findings["HARDENKIT_REQEUST_TIMEOUT"]["status"] == "fail"
    assert ".env" in findings["HARDENKIT_REQEUST_TIMEOUT"]["detail"]


def test_the_doctor_fails_a_named_file_that_does_not_exist(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HARDENKIT_ENV_FILE", str(workdir / "missing.env"))
    code = main(["doctor", "--json"])
    findings = {f["check"]: f for f in json.loads(capsys.readouterr().out)}
    assert code == 1
    assert findings["HARDENKIT_ENV_FILE"]["status"] == "fail"
