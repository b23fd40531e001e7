"""`hardenkit doctor` on Redis settings it cannot use, and on what Redis keeps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hardenkit import HardenSettings
from hardenkit.cli import main
from hardenkit.settings import SettingsError, load_settings
from tests.support.redis_server import RedisCluster, RedisServer, one_node_cluster
from tests.support.tls import TlsFiles
from tests.test_redis_tls_sentinel import tls_redis  # noqa: F401 - the fixture

pytestmark = pytest.mark.redis

Findings = dict[str, dict[str, str]]


def doctor(capsys: pytest.CaptureFixture[str]) -> tuple[int, Findings]:
    capsys.readouterr()
    code = main(["doctor", "--json"])
    return code, {finding["check"]: finding for finding in json.loads(capsys.readouterr().out)}


def test_sentinels_without_a_master_name_are_a_finding_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HARDENKIT_REDIS_URL", "redis://sentinel/0")
    monkeypatch.setenv("HARDENKIT_REDIS_SENTINELS", "127.0.0.1:26379")
    code, findings = doctor(capsys)
    assert code == 1
    assert findings["HARDENKIT_REDIS_SENTINEL_MASTER"]["status"] == "fail"
    assert findings["redis"] == {
        "check": "redis",
        "status": "fail",
        "detail": "redis://sentinel/0 not checked: fix HARDENKIT_REDIS_SENTINEL_MASTER first",
    }


def test_tls_files_with_a_plain_url_name_the_setting_instead_of_a_type_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked before the URL is fixed")
    monkeypatch.setenv("HARDENKIT_REDIS_URL", "redis://127.0.0.1:6390/0")
    monkeypatch.setenv("HARDENKIT_REDIS_TLS_CA_FILE", str(ca))
    _, findings = doctor(capsys)
    assert "not rediss://" in findings["HARDENKIT_REDIS_URL"]["detail"]
    assert findings["redis"]["detail"].endswith("not checked: fix HARDENKIT_REDIS_URL first")
    assert "TypeError" not in findings["redis"]["detail"]


def test_rediss_without_the_ca_says_certificate_verification_failed(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tls_redis: tuple[int, TlsFiles],  # noqa: F811 - the imported fixture
) -> None:
    port, _ = tls_redis
    monkeypatch.setenv("HARDENKIT_REDIS_URL", f"rediss://127.0.0.1:{port}/0")
    _, findings = doctor(capsys)
    assert findings["redis"]["status"] == "fail"
    assert "certificate verification failed" in findings["redis"]["detail"]
    assert "HARDENKIT_REDIS_TLS_CA_FILE" in findings["redis"]["detail"]


@pytest.mark.parametrize(
    "query",
    [
        "ssl_cert_reqs=none",
        "ssl_cert_reqs=optional",
        "ssl_check_hostname=false",
        "ssl_check_hostname=0",
    ],
)
@pytest.mark.parametrize("scheme", ["rediss", "Rediss", "REDISS"])  # redis-py: TLS all three
def test_turning_off_the_redis_certificate_check_in_the_url_is_a_refused_risk(
    query: str, scheme: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"{scheme}://:s3cret@127.0.0.1:1/0?{query}"
    development = HardenSettings(redis_url=url)  # type: ignore[arg-type]
    (problem,) = [p for p in development.problems() if p.risk == "redis-tls-unverified"]
    assert problem.setting == "HARDENKIT_REDIS_URL"
    assert query in problem.message
    assert "s3cret" not in str(problem)
    monkeypatch.setenv("HARDENKIT_ENV", "production")
    monkeypatch.setenv("HARDENKIT_REDIS_URL", url)
    with pytest.raises(SettingsError, match="redis-tls-unverified"):
        load_settings()
    monkeypatch.setenv("HARDENKIT_ACCEPT_RISKS", "redis-tls-unverified")
    monkeypatch.setenv("HARDENKIT_ENV", "development")
    _, findings = doctor(capsys)
    assert findings["HARDENKIT_REDIS_URL"]["status"] == "warn"
    assert query in findings["HARDENKIT_REDIS_URL"]["detail"]


@pytest.mark.parametrize("scheme", ["rediss", "Rediss", "REDISS"])
def test_tls_files_with_a_rediss_url_in_any_case_are_accepted(scheme: str, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("read when connecting")
    settings = HardenSettings(redis_url=f"{scheme}://127.0.0.1:1/0", redis_tls_ca_file=str(ca))  # type: ignore[arg-type]
    assert not [p for p in settings.problems() if "rediss" in p.message]


def test_a_verified_rediss_url_is_no_risk() -> None:
    url = "rediss://127.0.0.1:1/0?ssl_cert_reqs=required&ssl_check_hostname=true"
    settings = HardenSettings(redis_url=url)  # type: ignore[arg-type]
    assert not [p for p in settings.problems() if p.risk == "redis-tls-unverified"]


@pytest.mark.parametrize("value", ["AUTO", "Auto", " auto "])
def test_the_fallback_share_auto_is_accepted_in_any_case(value: str) -> None:
    assert HardenSettings(rate_limit_fallback_share=value).rate_limit_fallback_share == "auto"


@pytest.mark.parametrize(
    "case",
    [
        ([], "warn", "no persistence"),
        (["--appendonly", "yes"], "pass", "AOF"),
        (["--save", "900 1"], "pass", "RDB"),
        (["--rename-command", "CONFIG", ""], "warn", "unknown: Redis refused CONFIG GET"),
    ],
)
def test_doctor_says_whether_redis_keeps_its_data_for_rate_limits_and_replay(
    case: tuple[list[str], str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    extra_args, status, says = case
    server = RedisServer(tmp_path / "redis", extra_args=extra_args)
    server.start()
    try:
        monkeypatch.setenv("HARDENKIT_REDIS_URL", server.url)
        monkeypatch.setenv("HARDENKIT_REPLAY_REDIS_DOWN", "fallback")
        limits_only = doctor(capsys)[1]["redis_persistence"]  # rate limits rely on it
        monkeypatch.setenv("HARDENKIT_REPLAY_REDIS_DOWN", "closed")
        persistence = doctor(capsys)[1]["redis_persistence"]
    finally:
        server.stop()
    for finding in (limits_only, persistence):
        assert finding["status"] == status
        assert says in finding["detail"]
    if status == "warn":
        assert "rate limits" in limits_only["detail"]
        assert "replay" not in limits_only["detail"]
        assert "replay `closed`" in persistence["detail"]


def test_doctor_says_a_redis_that_refuses_two_slots_cannot_hold_decisions(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Behind a plain client, a slot-enforcing Redis leaves the store without its epoch
    (it logs so at startup): without persistence, the doctor says what a restart costs."""
    server = one_node_cluster(tmp_path / "cluster-mode")
    try:
        monkeypatch.setenv("HARDENKIT_REDIS_URL", server.url)
        finding = doctor(capsys)[1]["redis_persistence"]
    finally:
        server.stop()
    assert finding["status"] == "warn"
    assert "no epoch on this Redis" in finding["detail"]
    assert "handed out again" in finding["detail"]


def test_sentinels_that_name_no_master_are_explained_by_the_settings_to_check(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """New-user review: the doctor said ``MasterNotFoundError`` and nothing else."""
    from tests.support.redis_server import free_port

    monkeypatch.setenv("HARDENKIT_REDIS_URL", "redis://sentinel/0")
    monkeypatch.setenv("HARDENKIT_REDIS_SENTINELS", f"127.0.0.1:{free_port()}")  # nobody
    monkeypatch.setenv("HARDENKIT_REDIS_SENTINEL_MASTER", "mymaster")
    code, findings = doctor(capsys)
    assert code == 1
    detail = findings["redis"]["detail"]
    assert "MasterNotFoundError" in detail
    assert "HARDENKIT_REDIS_SENTINELS" in detail
    assert "HARDENKIT_REDIS_SENTINEL_MASTER" in detail


@pytest.mark.cluster
def test_a_cluster_behind_a_plain_client_names_the_cluster_setting(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    redis_cluster: RedisCluster,
) -> None:
    """New-user review: the doctor said MovedError, and every route answered 503."""
    monkeypatch.setenv("HARDENKIT_REDIS_URL", redis_cluster.url)
    _, findings = doctor(capsys)
    assert "HARDENKIT_REDIS_CLUSTER=true" in findings["instances"]["detail"]
