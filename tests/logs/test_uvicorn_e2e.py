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
