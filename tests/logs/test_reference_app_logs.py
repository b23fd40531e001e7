"""The reference app: a request full of secrets leaves log lines with none of them."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

from examples.reference_app.app import create_app
from examples.reference_app.settings import demo_settings

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhZGEiLCJ0ZW5hbnRfaWQiOiJhY21lIn0"
    ".Sflk-KxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw"
)
SECRETS = {
    "header_bearer": JWT,
    "header_api_key": "demo-key-9f8e7d6c5b4a",
    "header_cookie": "sess-7Hq2LxP9",
    "query_api_key": "sk_live_51H8qX2eZvKYlo2C0AbCdEfGh",
    "query_token": "tok-4Fz8Qw1R",
    "body_password": "correct horse battery staple 42",
    "body_card": "4242 4242 4242 4242",
    "body_note_token": "ghp_R2d2C3poR2d2C3poR2d2C3poR2d2C3po1234",
}


@pytest.mark.usefixtures("restore_logging")
def test_a_request_with_secrets_everywhere_logs_none_of_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # TestClient's peer is "testclient", no address: trust every caller's id here.
    app = create_app(demo_settings(log_format="json", request_id_trust="any"))
    client = TestClient(app, raise_server_exceptions=False)
    response = client.post(
        "/demo/logging",
        params={"api_key": SECRETS["query_api_key"], "token": SECRETS["query_token"], "page": "2"},
        headers={
            "Authorization": f"Bearer {SECRETS['header_bearer']}",
            "X-Api-Key": SECRETS["header_api_key"],
            "Cookie": f"session={SECRETS['header_cookie']}",
            "X-Request-ID": "req-logging-demo-1",
        },
        json={
            "user": "ada",
            "password": SECRETS["body_password"],
            "card": SECRETS["body_card"],
            "note": f"my token is {SECRETS['body_note_token']}",
        },
    )
    assert response.status_code == 500
    assert SECRETS["header_bearer"] not in response.text

    output = capsys.readouterr().out
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    events = {line["event"]: line for line in lines}
    received = events["demo_request_received"]
    crash = events["unhandled_exception"]
    assert received["request_id"] == crash["request_id"] == "req-logging-demo-1"
    # The lines still say what happened: the redaction removed values, not the story.
    assert received["body"]["user"] == "ada"
    assert received["query"]["page"] == "2"
    assert received["headers"]["authorization"] == "[REDACTED]"
    assert "DemoUpstreamError" in json.dumps(crash["exception"])
    leaks = {name: secret for name, secret in SECRETS.items() if secret in output}
    assert leaks == {}
    assert "4242 4242 4242 4242".replace(" ", "") not in output


@pytest.mark.usefixtures("restore_logging")
def test_a_request_body_with_positional_secrets_logs_none_of_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    secret, key = "hunter2xyz", "GawgguFyGrWKav7AX4VKUg"
    app = create_app(demo_settings(log_format="json", request_id_trust="any"))
    client = TestClient(app, raise_server_exceptions=False)
    client.post(
        "/demo/logging",
        json={
            "env": [{"name": "DB_PASSWORD", "value": secret}, {"name": "REGION", "value": "eu"}],
            "jwk": {"kty": "oct", "k": key},
            "export": f"name,password\nbob,{secret}",
            "sql": f"INSERT INTO users (name, password) VALUES ('bob', '{secret}')",  # noqa: S608
            "shell": f"echo '{secret}' | sudo -S ls",
        },
    )
    output = capsys.readouterr().out
    received = next(
        json.loads(line)
        for line in output.splitlines()
        if line.startswith("{") and json.loads(line)["event"] == "demo_request_received"
    )
    assert received["body"]["env"][1] == {"name": "REGION", "value": "eu"}
    assert secret not in output
    assert key not in output
