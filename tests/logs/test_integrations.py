"""Every integration runs the same engine: structlog, stdlib logging, uvicorn, Sentry."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
import structlog
from uvicorn.logging import AccessFormatter

from hardenkit.auth.principal import Principal
from hardenkit.context import principal_var, request_id_var
from hardenkit.logs import (
    RedactingLogFilter,
    RedactingProcessor,
    Redactor,
    audit,
    configure_logging,
    sentry_before_send,
)
from hardenkit.logs.sentry import redacting_before_send
from hardenkit.settings import HardenSettings, SettingsError

GITHUB_TOKEN = "ghp_" + "Zx9" * 12
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZGEifQ.c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWc"


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_the_structlog_processor_redacts_and_renders_tracebacks_without_locals() -> None:
    processor = RedactingProcessor(Redactor())
    password = "hunter2-local"  # a local the traceback must not show
    try:
        raise ValueError(f"login failed with {GITHUB_TOKEN}")
    except ValueError as exc:
        event = processor(None, "error", {"event": "x", "exc_info": exc, "password": password})
    assert "exc_info" not in event
    assert GITHUB_TOKEN not in event["exception"]
    assert "ValueError: login failed with [REDACTED:api_key]" in event["exception"]
    assert "hunter2-local" not in json.dumps(event)


def test_json_lines_carry_request_context_and_are_redacted(json_log: io.StringIO) -> None:
    tokens = (request_id_var.set("req-12345678"), principal_var.set(Principal("ada", "acme")))
    try:
        structlog.get_logger("app").info("login", password="p", detail=f"got {JWT}")
    finally:
        principal_var.reset(tokens[1])
        request_id_var.reset(tokens[0])
    [line] = _lines(json_log)
    assert line["request_id"] == "req-12345678"
    assert line["tenant"] == "acme"
    assert line["subject"] == "ada"
    assert line["password"] == "[REDACTED]"
    assert line["detail"] == "got [REDACTED:jwt]"
    assert line["level"] == "info"
    assert line["logger"] == "app"
    assert str(line["timestamp"]).endswith("Z")


def test_stdlib_and_uvicorn_records_go_through_the_same_processors_once(
    json_log: io.StringIO,
) -> None:
    uvicorn_handler = logging.StreamHandler(io.StringIO())
    logging.getLogger("uvicorn.access").addHandler(uvicorn_handler)  # as uvicorn does
    configure_logging(HardenSettings(env="production"), stream=json_log)  # called again
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d',
        "203.0.113.9:5000",
        "GET",
        "/x?access_token=abc123&p=1",
        "1.1",
        200,
    )
    logging.getLogger("httpx").warning("retrying https://svc:%s@api.example.com", "pw-123")
    lines = _lines(json_log)
    assert len(lines) == 2  # once each: no handler left on uvicorn's logger, no second root handler
    assert (
        lines[0]["event"] == '203.0.113.9:5000 - "GET /x?access_token=[REDACTED]&p=1 HTTP/1.1" 200'
    )
    assert lines[0]["logger"] == "uvicorn.access"
    assert lines[1]["event"] == "retrying https://[REDACTED]@api.example.com"
    assert not logging.getLogger("uvicorn.access").handlers


def test_the_log_level_comes_from_settings(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging(HardenSettings(env="production", log_level="WARNING"), stream=stream)
    structlog.get_logger("app").info("hidden")
    logging.getLogger("lib").info("hidden too")
    structlog.get_logger("app").warning("shown")
    assert [line["event"] for line in _lines(stream)] == ["shown"]


def test_without_settings_the_environment_is_read_and_checked(
    restore_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HARDENKIT_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("HARDENKIT_LOG_FORMAT", "json")
    stream = io.StringIO()
    configure_logging(stream=stream)
    structlog.get_logger("app").info("hidden")
    structlog.get_logger("app").warning("shown")
    assert [line["event"] for line in _lines(stream)] == ["shown"]
    monkeypatch.setenv("HARDENKIT_LOG_LEVLE", "DEBUG")  # a typo refuses, as load_settings does
    with pytest.raises(SettingsError, match="HARDENKIT_LOG_LEVLE"):
        configure_logging(stream=stream)


def test_development_renders_console_lines_also_redacted(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging(HardenSettings(env="development"), stream=stream)
    structlog.get_logger("app").info("hello", api_key="k-1")
    output = stream.getvalue()
    assert "hello" in output
    assert "api_key=[REDACTED]" in output
    assert not output.startswith("{")


def test_the_logging_filter_keeps_uvicorns_access_formatter_working() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("203.0.113.9:5000", "GET", "/cb?code=oauth-code-1&state=s", "1.1", 302),
        None,
    )
    assert RedactingLogFilter(Redactor()).filter(record)
    line = AccessFormatter('%(client_addr)s "%(request_line)s" %(status_code)s').format(record)
    assert line == '203.0.113.9:5000 "GET /cb?code=[REDACTED]&state=s HTTP/1.1" 302 Found'


def test_the_logging_filter_redacts_messages_extras_and_tracebacks() -> None:
    logger = logging.getLogger("tests.filter")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingLogFilter(Redactor()))
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("token=%s", "abc123", extra={"client_secret": "s-1"})
        try:
            raise RuntimeError(f"boom {GITHUB_TOKEN}")
        except RuntimeError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    output = stream.getvalue()
    assert "token=[REDACTED]" in output
    assert "abc123" not in output
    assert GITHUB_TOKEN not in output
    assert "RuntimeError: boom [REDACTED:api_key]" in output


def test_the_sentry_hook_redacts_a_realistic_event_and_keeps_sentry_ids() -> None:
    event = {
        "event_id": "fc6d8c0c43fc4630ad850ee518f1b9d0",
        "level": "error",
        "platform": "python",
        "release": "4e8e2a1f9c0b7d6e5f4a3b2c1d0e9f8a7b6c5d4e",
        "timestamp": "2024-05-01T12:30:45.123456Z",
        "exception": {
            "values": [
                {
                    "type": "HTTPStatusError",
                    "value": f"401 for https://api.example.com/v1?api_key=k-987 with {JWT}",
                    "stacktrace": {
                        "frames": [
                            {
                                "filename": "app/billing.py",
                                "function": "charge",
                                "lineno": 42,
                                "context_line": "    resp = client.post(url, headers=headers)",
                                "vars": {
                                    "self": "<BillingClient object at 0x7f>",
                                    "api_key": "'sk_live_" + "a1B2" * 6 + "'",
                                    "headers": {"Authorization": f"'Bearer {JWT}'"},
                                    "card": "'4111111111111111'",
                                },
                            }
                        ]
                    },
                }
            ]
        },
        "request": {
            "url": "https://shop.example.com/checkout",
            "method": "POST",
            "query_string": "session_token=st-123&step=2",
            "headers": [["Authorization", "Basic YWRhOmh1bnRlcjI="], ["Accept", "*/*"]],
            "cookies": "sessionid=abc; csrftoken=def",
            "data": {"email": "ada@example.com", "password": "hunter2"},
        },
        "breadcrumbs": {
            "values": [
                {"category": "httplib", "data": {"url": "https://u:pw@api.example.com/"}},
            ]
        },
        "contexts": {
            "trace": {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7"}
        },
        "extra": {"stripe_key": "sk_live_" + "Q" * 24},
    }
    rendered = json.dumps(sentry_before_send(event, {"exc_info": None}))
    for secret in (
        "k-987",
        JWT,
        "a1B2a1B2",
        "4111111111111111",
        "st-123",
        "YWRhOmh1bnRlcjI=",
        "sessionid=abc",
        "hunter2",
        "u:pw@",
        "sk_live_",
    ):
        assert secret not in rendered, secret
    redacted = json.loads(rendered)
    assert redacted["event_id"] == event["event_id"]
    assert redacted["release"] == event["release"]
    assert redacted["contexts"]["trace"] == event["contexts"]["trace"]
    assert redacted["request"]["query_string"] == "session_token=[REDACTED]&step=2"
    assert redacted["request"]["headers"][1] == ["Accept", "*/*"]
    assert redacted["request"]["data"]["email"] == "ada@example.com"
    assert redacted["exception"]["values"][0]["stacktrace"]["frames"][0]["lineno"] == 42
    assert redacting_before_send(Redactor())(event, None) == redacted


def test_audit_events_are_typed_json_lines_and_go_to_the_daily_file_too(
    restore_logging: None, tmp_path: Path
) -> None:
    stream = io.StringIO()
    audit_file = tmp_path / "audit.jsonl"
    configure_logging(
        HardenSettings(env="development", log_level="ERROR", log_audit_file=str(audit_file)),
        stream=stream,
    )
    token = request_id_var.set("req-audit-42")
    try:
        event = audit("auth", "denied", reason="expired", actor="ada", details={"token": "t-1"})
    finally:
        request_id_var.reset(token)
    assert event.request_id == "req-audit-42"
    assert "expired" in stream.getvalue()  # the level does not silence audit events
    [line] = [json.loads(text) for text in audit_file.read_text().splitlines()]
    assert line["audit"] is True
    assert line["event_type"] == "auth"
    assert line["outcome"] == "denied"
    assert line["reason"] == "expired"
    assert line["actor"] == "ada"
    assert line["request_id"] == "req-audit-42"
    assert line["details"] == {"token": "[REDACTED]"}
    assert "t-1" not in audit_file.read_text()


def test_uvicorn_color_message_is_dropped_from_json_lines(json_log: io.StringIO) -> None:
    # As uvicorn logs its startup lines: the plain template, and a coloured copy in extra.
    logging.getLogger("uvicorn.error").info(
        "Started server process [%d]",
        4242,
        extra={"color_message": "Started server process [\x1b[36m%d\x1b[0m]"},
    )
    logging.getLogger("uvicorn.error").info(
        "ready", extra={"banner": "\x1b[1mready\x1b[0m", "note": "\x1b[1mnot a copy\x1b[0m"}
    )
    started, ready = _lines(json_log)
    assert started["event"] == "Started server process [4242]"
    assert "color_message" not in started
    assert "\x1b" not in json.dumps(started)
    assert "banner" not in ready  # a coloured duplicate of the message
    assert ready["note"] == "\x1b[1mnot a copy\x1b[0m"  # coloured, but no duplicate


def test_the_filter_drops_color_message_when_it_collapses_a_record() -> None:
    record = logging.LogRecord(
        "uvicorn.error", logging.INFO, __file__, 1, "token=%s", ("abc123",), None
    )
    record.color_message = "\x1b[1mtoken=%s\x1b[0m"
    RedactingLogFilter(Redactor()).filter(record)
    assert record.getMessage() == "token=[REDACTED]"
    assert not hasattr(record, "color_message")


def test_a_production_install_without_redacting_logs_warns_naming_the_fix(
    restore_logging: None,
) -> None:
    """The README's quickstart once left configure_logging() out: in production, tokens and
    passwords were logged in clear and nothing said so (new-user review)."""
    from starlette.applications import Starlette

    from hardenkit import HardenSettings, configure_logging, install
    from tests.test_policy import SAFE

    production = HardenSettings(**{**SAFE, "env": "production"})
    plain = io.StringIO()
    structlog.reset_defaults()
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=plain))
    install(Starlette(), production)
    assert "logging_not_redacted" in plain.getvalue()
    assert "hardenkit.configure_logging()" in plain.getvalue()

    redacted = io.StringIO()
    configure_logging(production, stream=redacted)
    install(Starlette(), production)
    assert "logging_not_redacted" not in redacted.getvalue()
