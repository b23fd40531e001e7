"""On a real uvicorn: each line printed once, uvicorn's access log included, none with a secret."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.support.uvicorn_server import UvicornServer

pytestmark = pytest.mark.e2e

QUERY_TOKEN = "tok-Q7w2E9r4T1y6"
API_KEY = "sk_live_51H8qX2eZvKYlo2C0AbCdEfGh"
PASSWORD = "correct horse battery staple 42"


def test_uvicorn_lines_are_json_printed_once_and_redacted(tmp_path: Path) -> None:
    log_path = tmp_path / "uvicorn.log"
    with (
        UvicornServer(log_path=log_path, env={"HARDENKIT_LOG_FORMAT": "json"}) as server,
        httpx.Client(base_url=server.url, timeout=5) as client,
    ):
        ok = client.get(f"/healthz?token={QUERY_TOKEN}", headers={"X-Request-ID": "e2e-log-0001"})
        assert ok.status_code == 200
        crash = client.post(
            f"/demo/logging?api_key={API_KEY}",
            headers={"X-Request-ID": "e2e-log-0002", "Authorization": f"Bearer {API_KEY}"},
            json={"user": "ada", "password": PASSWORD},
        )
        assert crash.status_code == 500
    output = log_path.read_text()
    for secret in (QUERY_TOKEN, API_KEY, PASSWORD):
        assert secret not in output
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("logger") == "uvicorn.access"]
    health_lines = [line for line in access if "/healthz?token=" in str(line["event"])]
    assert len(health_lines) == 1  # once: uvicorn's own handler no longer prints it
    assert "/healthz?token=[REDACTED]" in str(health_lines[0]["event"])
    assert any(line.get("event") == "demo_request_received" for line in lines)
    assert any(line.get("logger") == "uvicorn.error" for line in lines)  # startup lines
    # Nothing was printed outside the JSON pipeline (uvicorn's plain format).
    assert [line for line in output.splitlines() if line and not line.startswith("{")] == []


def test_the_leaked_shapes_of_issue_16_stay_out_of_a_live_servers_json_lines(
    tmp_path: Path,
) -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZGEifQ.c2lnbmF0dXJlX3NpZ25hdHVyZQ"
    password = "hunter2xyz"
    body = {
        "users": {jwt: "bob"},
        "cache": {API_KEY: 1},
        "body": {"level": jwt, "timestamp": API_KEY},
        "dsn": f"host=db password='{password}' dbname=x",
        "quoted": f'password="{password}"',
        "repr": f"AttrsLike(user='app', password='{password}', api_key='abc123')",
        "call": f"login(user='app', password='{password}') failed",
        "cli": f"mysql -u root -p{password} --password={password}; psql --password {password}",
        "sns": {"Message": json.dumps({"password": password, "api_key": "k-123456"})},
        "sns_text": json.dumps({"Message": json.dumps({"password": password})}),
        "url": "postgres://app:p@ssw0rd@db:5432/app",
        "ini": f"[db]\npassword = {password}\n",
        "xml": f"<password>{password}</password>",
    }
    log_path = tmp_path / "uvicorn.log"
    with (
        UvicornServer(log_path=log_path, env={"HARDENKIT_LOG_FORMAT": "json"}) as server,
        httpx.Client(base_url=server.url, timeout=5) as client,
    ):
        crash = client.post("/demo/logging", json=body, headers={"X-Request-ID": "e2e-log-0003"})
        assert crash.status_code == 500
    output = log_path.read_text()
    for secret in (jwt, API_KEY, password, "abc123", "k-123456", "ssw0rd"):
        assert secret not in output
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    [received] = [line for line in lines if line.get("event") == "demo_request_received"]
    assert received["body"]["users"] == {"[REDACTED:1]": "bob"}
    assert received["body"]["url"] == "postgres://[REDACTED]@db:5432/app"
    # Both the message (the traceback) and the structured body were seen by the engine.
    assert any("DemoUpstreamError" in json.dumps(line) for line in lines)
    # uvicorn's startup lines are in JSON without their ANSI-coloured duplicate.
    assert any(str(line.get("event")).startswith("Started server process") for line in lines)
    assert "color_message" not in output
    assert "\\u001b[" not in output
