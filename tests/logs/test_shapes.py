"""The shapes secrets take in real logs, redacted through every integration of the one engine.

Each shape is a line a careless handler writes; the secret in it must not reach structlog's
JSON output, a stdlib record (message, arguments, ``extra``), an exception's text or notes,
or a Sentry event.
"""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from hardenkit.logs import RedactingLogFilter, Redactor, sentry_before_send

SECRET = "hunter2xyz"
KEY = "k-123456"
# (what is logged, the substrings that must not survive)
SHAPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "libpq_single_quoted": ("host=db password='hunter2xyz' dbname=x", (SECRET,)),
    "double_quoted": ('password="hunter2xyz"', (SECRET,)),
    "object_repr": (
        "AttrsLike(user='app', password='hunter2xyz', api_key='abc123')",
        (SECRET, "abc123"),
    ),
    "call_repr": ("login(user='app', password='hunter2xyz') failed", (SECRET,)),
    "mysql_glued_and_long_flag": ("mysql -u root -phunter2xyz --password=hunter2xyz", (SECRET,)),
    "psql_spaced_long_flag": ("psql --password hunter2xyz", (SECRET,)),
    "redis_cli": ("redis-cli -h cache -a hunter2xyz ping", (SECRET,)),
    "curl_user": ("curl -u deploy:hunter2xyz https://api.example.com", (SECRET,)),
    "escaped_json_one_level": (
        json.dumps({"Message": json.dumps({"password": SECRET, "api_key": KEY})}),
        (SECRET, KEY),
    ),
    "escaped_json_two_levels": (
        json.dumps({"Records": json.dumps({"Message": json.dumps({"password": SECRET})})}),
        (SECRET,),
    ),
    "url_password_with_at": ("postgres://app:p@ssw0rd@db:5432/app", ("p@ssw0rd", "ssw0rd")),
    "ini": ("[db]\npassword = hunter2xyz\nhost = db", (SECRET,)),
    "ini_value_with_spaces": ("password = correct horse battery", ("correct", "horse", "battery")),
    "yaml": ("db:\n  user: app\n  password: hunter2xyz\n", (SECRET,)),
    "xml": ("<login><user>app</user><password>hunter2xyz</password></login>", (SECRET,)),
    "unterminated_quote": ("password='hunter2xyz", (SECRET,)),
}


def _leaks(secrets: tuple[str, ...], output: str) -> list[str]:
    return [secret for secret in secrets if secret in output]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_each_shape_is_redacted_by_the_text_scanner_keeping_its_surroundings(shape: str) -> None:
    text, secrets = SHAPES[shape]
    redacted = Redactor().redact_text(text)
    assert _leaks(secrets, redacted) == []
    assert "[REDACTED" in redacted


def test_the_non_secret_parts_of_a_line_survive() -> None:
    scan = Redactor().redact_text
    assert (
        scan("host=db password='hunter2xyz' dbname=x") == "host=db password='[REDACTED]' dbname=x"
    )
    assert scan("mysql -u root -phunter2xyz db") == "mysql -u root -p[REDACTED] db"
    assert scan("postgres://app:p@ssw0rd@db:5432/app") == "postgres://[REDACTED]@db:5432/app"
    assert scan("<user>app</user><password>x</password>") == (
        "<user>app</user><password>[REDACTED]</password>"
    )
    assert scan("curl -u deploy:hunter2xyz https://x") == "curl -u deploy:[REDACTED] https://x"


@pytest.mark.parametrize(
    "text",
    [
        "mysql -u root -p db",  # prompts: the next word is a database
        "docker run -p8080:80 app",
        "ssh -p2222 host",
        "psql --password --host db",
        "see https://example.com/@handle and https://host?next=a@b.example",
        "if password == expected: retry",
        "<code>E042</code> returned",
        "token: expired",
    ],
)
def test_lookalikes_of_the_shapes_are_left_alone(text: str) -> None:
    assert Redactor().redact_text(text) == text


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_each_shape_is_redacted_in_structlog_json_lines(json_log: io.StringIO, shape: str) -> None:
    text, secrets = SHAPES[shape]
    structlog.get_logger("app").info("careless", detail=text, nested={"body": {"note": text}})
    output = json_log.getvalue()
    assert json.loads(output)["event"] == "careless"
    assert _leaks(secrets, output) == []


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_each_shape_is_redacted_in_stdlib_message_arguments_and_extra(
    json_log: io.StringIO, shape: str
) -> None:
    text, secrets = SHAPES[shape]
    logger = logging.getLogger("tests.shapes")
    logger.warning(text)
    logger.warning("upstream said %s", text)
    logger.warning("failed", extra={"context": {"detail": text}})
    output = json_log.getvalue()
    assert len(output.splitlines()) == 3
    assert _leaks(secrets, output) == []


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_each_shape_is_redacted_by_the_logging_filter_on_a_handler_of_your_own(
    shape: str,
) -> None:
    text, secrets = SHAPES[shape]
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s %(context)s"))
    handler.addFilter(RedactingLogFilter(Redactor()))
    logger = logging.getLogger("tests.shapes.own")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.error("call failed: %s", text, extra={"context": {"detail": text}})
        try:
            raise RuntimeError(text)
        except RuntimeError as exc:
            exc.add_note(f"while retrying: {text}")
            logger.exception("boom", extra={"context": None})
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    output = stream.getvalue()
    assert "while retrying" in output
    assert _leaks(secrets, output) == []


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_each_shape_is_redacted_in_exception_messages_notes_and_chains(
    json_log: io.StringIO, shape: str
) -> None:
    text, secrets = SHAPES[shape]
    log = structlog.get_logger("app")
    try:
        try:
            raise ConnectionError(f"cause: {text}")
        except ConnectionError as cause:
            error = RuntimeError(f"login failed: {text}")
            error.add_note(f"note: {text}")
            raise error from cause
    except RuntimeError as exc:
        log.exception("upstream_failed")
        log.warning("upstream_failed_value", error=exc)
    output = json_log.getvalue()
    assert len(output.splitlines()) == 2
    assert "note: " in output
    assert _leaks(secrets, output) == []


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_each_shape_is_redacted_in_sentry_events(shape: str) -> None:
    text, secrets = SHAPES[shape]
    event = {
        "event_id": "fc6d8c0c43fc4630ad850ee518f1b9d0",
        "message": text,
        "exception": {"values": [{"type": "RuntimeError", "value": text}]},
        "breadcrumbs": {"values": [{"message": text, "data": {"level": text}}]},
        "extra": {"body": {text: 1}},
    }
    rendered = json.dumps(sentry_before_send(event, None))
    assert _leaks(secrets, rendered) == []
    assert "fc6d8c0c43fc4630ad850ee518f1b9d0" in rendered


def test_pass_through_names_a_stdlib_caller_sets_in_extra_are_replaced_not_kept(
    json_log: io.StringIO,
) -> None:
    stripe = "sk_live_51H8abcDEFghiJKLmnoPQRstuVWXyz0123456789"
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
    logging.getLogger("tests.shapes").warning(
        "event", extra={"timestamp": stripe, "level": "password=hunter2xyz", "logger": jwt}
    )
    line = json.loads(json_log.getvalue())
    assert (line["level"], line["logger"]) == ("warning", "tests.shapes")
    assert line["timestamp"].endswith("Z")
    assert _leaks([stripe, "hunter2xyz", jwt], json_log.getvalue()) == []
