"""The reference app's signed routes: /webhooks/demo and /api/agents/messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from examples.reference_app.app import create_app
from examples.reference_app.settings import DEMO_DEFAULTS, demo_settings
from hardenkit import _published, sign_message, sign_webhook, verify_message
from hardenkit.settings import HardenSettings, SettingsError
from hardenkit.signing import generate_private_key, load_private_key, public_key_text

ROOT = Path(__file__).resolve().parents[2]
# The demo agent's private key, as docs/signing.md prints it for curl examples.
DEMO_AGENT = load_private_key(_published.DEMO_AGENT_PRIVATE_KEY)


@pytest.fixture
def client() -> TestClient:
    return TestClient(create_app(demo_settings()))


def test_the_demo_starts_with_no_environment_and_verifies_the_demo_secret(
    client: TestClient,
) -> None:
    body = b'{"type":"demo.ping","data":{"n":1}}'
    headers = sign_webhook(body, DEMO_DEFAULTS["webhook_secret"], webhook_id="msg_demo_1")
    first = client.post("/webhooks/demo", content=body, headers=headers)
    assert first.status_code == 200
    assert first.json() == {
        "status": "processed",
        "processed": True,
        "webhook_id": "msg_demo_1",
        "body_bytes": len(body),
    }
    again = client.post("/webhooks/demo", content=body, headers=headers)
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    assert again.json()["processed"] is False


def test_the_demo_webhook_refuses_unsigned_and_tampered_deliveries(client: TestClient) -> None:
    body = b'{"type":"demo.ping"}'
    headers = sign_webhook(body, DEMO_DEFAULTS["webhook_secret"])
    assert client.post("/webhooks/demo", content=body).json()["code"] == "SIGNATURE_INVALID"
    tampered = client.post(
        "/webhooks/demo", content=body.replace(b"ping", b"pong"), headers=headers
    )
    assert (tampered.status_code, tampered.json()["code"]) == (401, "SIGNATURE_INVALID")


def test_the_demo_secret_comes_from_the_environment_and_rotates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hardenkit.signing._secret import encode_standard_secret

    new, old = encode_standard_secret(b"n" * 32), encode_standard_secret(b"o" * 32)
    monkeypatch.setenv("HARDENKIT_WEBHOOK_SECRET", f"{new},{old}")
    client = TestClient(create_app(demo_settings()))
    body = b"{}"
    for secret in (new, old):
        assert (
            client.post(
                "/webhooks/demo", content=body, headers=sign_webhook(body, secret)
            ).status_code
            == 200
        )
    demo = sign_webhook(body, DEMO_DEFAULTS["webhook_secret"])
    assert client.post("/webhooks/demo", content=body, headers=demo).status_code == 401


def test_agent_messages_from_the_trusted_demo_agent_are_accepted_with_a_signed_receipt(
    client: TestClient,
) -> None:
    message = sign_message({"task": "reindex"}, DEMO_AGENT, key_id="demo-agent")
    response = client.post("/api/agents/messages", json=message)
    assert response.status_code == 200
    assert response.json()["from"] == "demo-agent"
    receipt = response.json()["receipt"]
    service_key = {"reference-app": _published.DEMO_SERVICE_PUBLIC_KEY}
    import asyncio

    verified = asyncio.run(verify_message(receipt, service_key, replay_store=None))
    assert verified.payload == {"accepted_nonce": message["nonce"], "from": "demo-agent"}


def test_agent_messages_are_refused_when_untrusted_self_keyed_or_replayed(
    client: TestClient,
) -> None:
    stranger = generate_private_key()
    untrusted = sign_message({"task": "x"}, stranger, key_id="stranger")
    response = client.post("/api/agents/messages", json=untrusted)
    assert (response.status_code, response.json()["code"]) == (401, "SIGNATURE_INVALID")

    self_keyed = sign_message({"task": "x"}, stranger, key_id="demo-agent")
    self_keyed["public_key"] = public_key_text(stranger)
    response = client.post("/api/agents/messages", json=self_keyed)
    assert (response.status_code, response.json()["code"]) == (400, "SIGNATURE_INVALID")

    message = sign_message({"task": "x"}, DEMO_AGENT, key_id="demo-agent")
    assert client.post("/api/agents/messages", json=message).status_code == 200
    replay = client.post("/api/agents/messages", json=message)
    assert (replay.status_code, replay.json()["code"]) == (401, "SIGNATURE_INVALID")

    garbage = client.post("/api/agents/messages", content=b"\x00not json")
    assert garbage.status_code == 400


def test_production_refuses_every_demo_signing_value() -> None:
    signing = {
        name: DEMO_DEFAULTS[name]
        for name in (
            "webhook_secret",
            "message_trusted_keys",
            "message_signing_key",
            "message_key_id",
        )
    }
    refused = {
        problem.setting for problem in HardenSettings(env="production", **signing).startup_errors()
    }
    assert {
        "HARDENKIT_WEBHOOK_SECRET",
        "HARDENKIT_MESSAGE_SIGNING_KEY",
        "HARDENKIT_MESSAGE_TRUSTED_KEYS",
    } <= refused
    development = HardenSettings(env="development", **signing).startup_errors()
    assert not [
        problem
        for problem in development
        if "MESSAGE" in problem.setting or "WEBHOOK" in problem.setting
    ]


def test_the_demo_does_not_start_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARDENKIT_ENV", "production")
    with pytest.raises(SettingsError) as caught:
        demo_settings()
    assert DEMO_DEFAULTS["webhook_secret"] not in str(caught.value)


@pytest.mark.redis
@pytest.mark.slow
def test_duplicates_across_two_processes_sharing_redis_are_processed_once(
    redis_url: str, key_prefix: str
) -> None:
    body = '{"type":"demo.ping","data":{"n":2}}'
    headers = sign_webhook(
        body.encode(), DEMO_DEFAULTS["webhook_secret"], webhook_id="msg_two_proc"
    )
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("HARDENKIT_")}
    command = [
        sys.executable,
        "-m",
        "tests.signing._deliver",
        redis_url,
        key_prefix,
        body,
        json.dumps(headers),
        "4",
    ]
    workers = [
        subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    results = []
    for worker in workers:
        stdout, stderr = worker.communicate(timeout=60)
        assert worker.returncode == 0, stderr[-2000:]
        results += [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    assert len(results) == 8
    processed = [r for r in results if r["status"] == 200 and r["body"].get("processed") is True]
    assert len(processed) == 1
    others = [r for r in results if r not in processed]
    assert all(
        (r["status"] == 200 and r["body"]["status"] == "duplicate") or r["status"] == 409
        for r in others
    )
