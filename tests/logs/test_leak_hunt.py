"""A generative leak hunt: secrets in every shape, hidden in every container, never logged.

Hypothesis builds secrets (JWTs, vendor keys from the detectors' own list, AWS key ids,
random passwords next to sensitive names, PEM blocks, Luhn-valid card numbers, hex keys
with a vendor's prefix or suffix, Django-style keys of symbols), wraps each in an
encoding a real log line carries (f-strings, reprs, bytes, command lines and argv
lists, ``CalledProcessError`` messages, URLs and DSNs, query strings, INI/YAML/XML,
JSON escaped up to two levels, every ``Authorization`` scheme, exception messages,
causes and notes), and hides the result in a random structure (dict keys and values at
random depth, lists, tuples, NamedTuples, dict views, floats). The events are rendered
through the structlog processor and through the real ``configure_logging`` JSON pipeline
(structlog and stdlib records, message, arguments and ``extra``). No part of any secret
may come out, and a control set of ordinary values placed next to them must come out
unchanged.

``HARDENKIT_TEST_HYPOTHESIS_PROFILE=thorough`` runs many more examples than CI does.
"""

from __future__ import annotations

import base64
import enum
import io
import json
import logging
import os
import shlex
import string
import subprocess
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple
from urllib.parse import quote

import pytest
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.processors import JSONRenderer

from hardenkit.logs import RedactingProcessor, Redactor, configure_logging
from hardenkit.logs._detectors import _VENDOR_PREFIXES
from hardenkit.settings import HardenSettings
from tests.logs._corpus import _luhn_complete
from tests.logs.conftest import restore_logging_state

_PROFILES = {"ci": 200, "thorough": 5000}
_PROFILE = os.environ.get("HARDENKIT_TEST_HYPOTHESIS_PROFILE", "ci")
if _PROFILE not in _PROFILES:
    raise ValueError(f"HARDENKIT_TEST_HYPOTHESIS_PROFILE must be one of {sorted(_PROFILES)}")
_HUNT = settings(
    max_examples=_PROFILES[_PROFILE],
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

_ALNUM = string.ascii_letters + string.digits
# Any part of a secret this long found in the output is a leak.
_WINDOW = 10
# Ordinary words around the secrets: lowercase only, while every secret window holds an
# uppercase letter or a digit, so a window found in the output can only have leaked.
_WORDS = st.sampled_from(
    ["upstream", "call", "failed", "retrying", "order", "created", "for", "tenant", "the"]
)
_FILLER = st.lists(_WORDS, min_size=1, max_size=4).map(" ".join)
_NEUTRAL_KEYS = st.sampled_from(["note", "detail", "items", "data", "meta", "attempts", "body"])
_PASSWORD_NAMES = st.sampled_from(
    ["password", "passwd", "db_password", "api_key", "client_secret", "access_token",
     "auth_token", "x-api-key", "secret", "private_key", "pw", "creds", "passcode", "db_pw",
     "userpass", "hmac_key", "license_key", "priv_key", "salt", "passphrase"]
)  # fmt: skip
_SCHEMES = ["Digest", "Token", "AWS4-HMAC-SHA256", "Negotiate", "ApiKey", "SSWS"]
# Runs of at most four letters or digits between symbols and digits: a secret's window
# must not be an ordinary word that the output holds anyway ("Connection" of a password
# is in "ConnectionError", which proved nothing about redaction).
_PASSWORD = st.lists(
    st.tuples(
        st.text(alphabet=_ALNUM, min_size=1, max_size=4), st.sampled_from("0123456789!*-_.~+@$%^")
    ),
    min_size=4,
    max_size=10,
).map(lambda parts: "".join(run + mark for run, mark in parts) + "Q7")
# Values that hold no secret, placed beside the secrets: each must come out as it went in.
CONTROLS: dict[str, object] = {
    "order_id": "o-48213",
    "user_id": 90211,
    "uuid": "123e4567-e89b-12d3-a456-426614174000",
    "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "content_md5": "9e107d9d372bb6826bd81d3542a419d6",
    "commit": "e83c5163316f89bfbde7d9ab23ca2e25604af290",
    "at": "2024-05-01T12:30:45.123456+00:00",
    "epoch_ms": 1714566645123,
    "word": "reconciliation",
    "route": "/tenants/{tenant_id}/orders/{order_id}",
    "version": "hardenkit 0.1.0 (python 3.11.9)",
    "pod": "checkout-service-7d9f8b6c5d-x2x9z",
    # Near misses: a secret word nearby, no secret (the attacker review's list).
    "tokens": 123,
    "tokenizer": "bert",
    "secretary": "Jane",
    "password_changed_at": "2026-01-01T00:00:00Z",
    "query": "code=404&key=&tokens=123&tokenizer=bert&secretary=Jane",
    "sql": "SELECT sessions.user_id FROM sessions WHERE sessions.id = $1",
    "payment": "pi_3MtwBwLkdIwHu7ix28a3tqPa",
    "customer": "cus_NffrFeUfNV2Hib",
    "charge": "ch_3MmlLrLkdIwHu7ix0snN0B15",
}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


_EC_KEY = (
    ec.generate_private_key(ec.SECP256R1())
    .private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    .decode()
)


class Secret:
    """A secret as it is written, and the distinctive part that must never be logged."""

    def __init__(
        self, text: str, distinctive: str | None = None, *, lowercase: bool = False
    ) -> None:
        self.text = text
        self.distinctive = text if distinctive is None else distinctive
        # Hex and Django keys are lowercase: their windows count unless all letters.
        self.lowercase = lowercase

    def windows(self) -> set[str]:
        part = self.distinctive
        if len(part) <= _WINDOW:
            return {part}
        windows = {part[index : index + _WINDOW] for index in range(len(part) - _WINDOW + 1)}
        if self.lowercase:
            return {window for window in windows if not window.isalpha()}
        return {window for window in windows if not window.islower()}


@st.composite
def _tokens(draw: st.DrawFn) -> Secret:
    """A credential recognisable by its format, wherever it sits."""
    kind = draw(st.sampled_from(["jwt", "vendor", "aws", "card", "pem", "hex"]))
    body = draw(st.text(alphabet=_ALNUM, min_size=24, max_size=40)) + "Z9"
    if kind == "hex":
        digits = draw(st.text(alphabet="0123456789abcdef", min_size=32, max_size=32))
        wrapped = draw(
            st.sampled_from(
                [f"dapi{digits}", f"shpat_{digits}", f"{digits}-us6", f"0x{digits}{digits[::-1]}"]
            )
        )
        return Secret(wrapped, digits, lowercase=True)
    if kind == "jwt":
        claims = {"sub": draw(st.text(alphabet=_ALNUM, min_size=3, max_size=12)), "tid": body}
        header = _b64url(b'{"alg":"HS256","typ":"JWT"}')
        token = f"{header}.{_b64url(json.dumps(claims).encode())}.{_b64url(body.encode())}"
        return Secret(token, token[len(header) :])
    if kind == "vendor":
        prefix = draw(st.sampled_from([p for p in _VENDOR_PREFIXES if p not in ("eyJ", "SG.")]))
        return Secret(prefix + body, body)
    if kind == "aws":
        key_id = "AKIA" + draw(
            st.text(alphabet=string.ascii_uppercase + "234567", min_size=16, max_size=16)
        )
        return Secret(key_id)
    if kind == "card":
        issuer = draw(st.sampled_from(["4", "51", "55", "37", "6011"]))
        digits = draw(
            st.text(alphabet=string.digits, min_size=15 - len(issuer), max_size=15 - len(issuer))
        )
        card = _luhn_complete(issuer + digits)
        spaced = " ".join(card[index : index + 4] for index in range(0, 16, 4))
        text = draw(st.sampled_from([card, spaced, spaced.replace(" ", "-")]))
        return Secret(text, card[:12])
    return Secret(_EC_KEY, "".join(_EC_KEY.splitlines()[1:-1]))


def _encodings_of_a_token(token: str, filler: str) -> list[str]:
    return [
        token,
        f"{filler} {token} {filler}",
        f"https://api.example.com/v1/hooks/{token}/deliver",
        f"{filler}: {json.dumps(json.dumps({'note': token}))}",
        f"Authorization: Bearer {token}",
        *(f"{filler} Authorization: {scheme} {token} {filler}" for scheme in _SCHEMES),
    ]


def _encodings_of_a_password(name: str, password: str, filler: str) -> list[str]:
    flag = name.replace("_", "-")
    return [
        f"{name}={quote(password, safe='')}",
        f"https://api.example.com/x?page=2&{name}={quote(password, safe='')}&q={filler}",
        f"postgres://app:{quote(password, safe='')}@db.internal:5432/orders",
        f"postgres://app:{password}@db.internal:5432/orders",
        f"{filler} {name}={password!r} {filler}",
        f'Config(user="app", {name}="{password}")',
        f"{name} = {password}",
        f"[db]\n{name} = {password}\nhost = db",
        f"db:\n  {name}: {password}\n",
        f"<{name}>{password}</{name}>",
        json.dumps({name: password}),
        json.dumps({"Message": json.dumps({name: password, "note": filler})}),
        json.dumps({"Records": [json.dumps({"Message": json.dumps({name: password})})]}),
        f"deploy --{flag}={shlex.quote(password)} --verbose",
        f"deploy --{flag} {shlex.quote(password)}",
        f"mysql -u root -p{shlex.quote(password)} orders",
        f"redis-cli -a {shlex.quote(password)} ping",
        f"curl -u deploy:{shlex.quote(password)} https://api.example.com",
        # The attacker review's shapes.
        f"{filler} {name}={filler} {password} next=1",
        f"{filler} {name}: {filler} {password}",
        f"{filler} Authorization: {_SCHEMES[len(filler) % len(_SCHEMES)]} {password} {filler}",
        str(subprocess.CalledProcessError(1, ["deploy", f"--{flag}", password])),
        str(subprocess.CalledProcessError(1, ["mysql", "-u", "root", f"-p{password}"])),
        f"running {['sshpass', '-p', password, 'ssh', 'deploy@host']}",
        f"running {('curl', '-u', 'deploy:' + password, 'https://x')}",
        str({name: password, "user": "app"}.items()),
        f"sqlplus -s app/{password}@orcl",
        f"dsn=app:{password}@tcp(db:3306)/orders",
        f"Driver={{ODBC 18}};Server=db;UID=sa;PWD={{{password}}};Database=orders",
        f"user%5B{name}%5D={quote(password, safe='')}&page=2",
        f"{name}:\n  - {password}\n  - {password[::-1]}\nuser: app",
        f"<{name}><![CDATA[{password}]]></{name}>",
        f"{name.replace('a', chr(0x430), 1)}={password}",
        # The final attacker pass: secrets told by their place.
        f"INSERT INTO users (user_name, {name}) VALUES ('app', '{password}')",  # noqa: S608
        f"(psycopg2.IntegrityError) duplicate key\n[SQL: INSERT INTO users (user_name, {name})"  # noqa: S608
        f" VALUES (%s, %s)]\n[parameters: ('app', '{password}')]",
        f"[SQL: UPDATE users SET {name}=? WHERE id = ?]\n[parameters: ('{password}', 7)]",  # noqa: S608
        f"user_name,{name},region\napp,{password},eu",
        json.dumps([{"name": name.upper(), "value": password}]),
        f"env:\n- name: {name.upper()}\n  value: {password}\n",
        f"1 validation error for Settings\n{name}\n  Value error [type=value_error,"
        f" input_value={password!r}, input_type=str]",
        f"smtp.login('app', {password!r}) failed",
        f"echo {shlex.quote(password)} | sudo -S systemctl restart app",
        f"db.internal:5432:orders:app:{password}",
        f"headers=[(b'{name}', b'{password}')]",
    ]


def _encodings_that_change_the_password(password: str) -> list[tuple[str, Secret]]:
    """URL passwords holding '/' or a space: the secret is the password as written."""
    cut = next(index for index, char in enumerate(password) if not char.isdigit()) + 1
    slashed = f"{password[:cut]}/{password[cut:]}"
    spaced = f"{password[:cut]} {password[cut:]}".replace("@", "")
    return [
        (f"postgres://app:{slashed}@db.internal:5432/orders", Secret(slashed)),
        (f"postgres://app:{spaced}@db.internal:5432/orders", Secret(spaced)),
    ]


_DJANGO_ALPHABET = string.ascii_lowercase + string.digits + "!@#$%^&*(-_=+)"


def _encodings_of_a_django_key(key: str) -> list[str]:
    return [
        f"SECRET_KEY = {key}",
        f"settings: {{'SECRET_KEY': {key!r}, 'DEBUG': False}}",
        json.dumps({"SECRET_KEY": key}),
        f"export DJANGO_SECRET_KEY='{key}'",
    ]


@st.composite
def _planted(draw: st.DrawFn) -> tuple[str, Secret]:
    """One secret written in one of the encodings a log line carries."""
    filler = draw(_FILLER)
    kind = draw(st.integers(0, 9))
    if kind < 4:
        secret = draw(_tokens())
        return draw(st.sampled_from(_encodings_of_a_token(secret.text, filler))), secret
    if kind == 4:
        key = draw(st.text(alphabet=_DJANGO_ALPHABET, min_size=50, max_size=50))
        text = draw(st.sampled_from(_encodings_of_a_django_key(key)))
        return text, Secret(key, lowercase=True)
    name, password = draw(_PASSWORD_NAMES), draw(_PASSWORD)
    if kind == 5:
        return draw(st.sampled_from(_encodings_that_change_the_password(password)))
    return draw(st.sampled_from(_encodings_of_a_password(name, password, filler))), Secret(password)


class Login(NamedTuple):
    """Settings kept in a NamedTuple: logged as a tuple unless its names are kept."""

    user: str
    password: str


@st.composite
def _structured(draw: st.DrawFn) -> tuple[Any, Secret]:
    """A secret in a structure a renderer prints: argv lists, NamedTuples, views, floats,
    name/value siblings, Enum members."""
    password, flag = draw(_PASSWORD), draw(_PASSWORD_NAMES).replace("_", "-")
    values: list[Any] = [
        ["deploy", f"--{flag}", password, "--verbose"],
        ("sshpass", "-p", password, "ssh", "deploy@host"),
        ["mysql", "-u", "root", f"-p{password}", "orders"],
        ["curl", "-s", "-u", f"deploy:{password}", "https://api.example.com"],
        Login("app", password),
        {"user": "app", "password": password}.items(),
        {"user": "app", "api_key": password}.values(),
        # A sibling names the secret; an Enum member holds it.
        [{"name": flag.upper(), "value": password}, {"name": "REGION", "value": "eu"}],
        {"Name": f"/prod/{flag}", "Type": "SecureString", "Value": password},
        enum.Enum("Backend", {"PROD": password}).PROD,
    ]
    secret = Secret(password)
    if draw(st.booleans()):
        card = _luhn_complete("4" + draw(st.text(alphabet=string.digits, min_size=14, max_size=14)))
        values.append(float(card))
        if draw(st.integers(0, len(values) - 1)) == len(values) - 1:
            return float(card), Secret(card, card[:12])
    return draw(st.sampled_from(values[:10])), secret


class Opaque:
    """An object hardenkit cannot walk: it is logged through its repr."""

    def __init__(self, note: str) -> None:
        self.note = note

    def __repr__(self) -> str:
        return f"Opaque(note={self.note!r})"


def _wrap(text: str, how: int) -> Any:
    if how == 0:
        return text.encode()
    if how == 1:
        return Opaque(text)
    if how == 2:
        return ("attempt", text)
    return text


@st.composite
def _event(draw: st.DrawFn) -> tuple[dict[str, Any], list[Secret], list[str]]:
    """A random nested event holding planted secrets and the control values."""
    secrets: list[Secret] = []
    controls = list(CONTROLS)

    def node(depth: int) -> Any:
        if draw(st.integers(0, 7)) == 0:
            value, secret = draw(_structured())
            secrets.append(secret)
            return value
        if depth >= 5 or draw(st.integers(0, 2)) == 0:
            text, secret = draw(_planted())
            secrets.append(secret)
            return _wrap(text, draw(st.integers(0, 5)))
        shape = draw(st.integers(0, 2))
        size = draw(st.integers(1, 3))
        if shape == 0:
            return [node(depth + 1) for _ in range(size)]
        if shape == 1:
            return tuple(node(depth + 1) for _ in range(size))
        result: dict[Any, Any] = {}
        for _ in range(size):
            if draw(st.integers(0, 3)) == 0:
                text, secret = draw(_planted())  # the secret is the key
                secrets.append(secret)
                result[text] = draw(_FILLER)
            else:
                result[draw(_NEUTRAL_KEYS)] = node(depth + 1)
        return result

    payload = node(0)
    event = {"payload": payload, **CONTROLS}
    return event, secrets, controls


def _leaked(secrets: list[Secret], output: str) -> list[str]:
    return [window for secret in secrets for window in secret.windows() if window in output]


def _controls_intact(controls: list[str], lines: list[dict[str, Any]]) -> list[str]:
    return [
        f"{name} in line {index}"
        for index, line in enumerate(lines)
        for name in controls
        if name in line and line[name] != CONTROLS[name]
    ]


@_HUNT
@given(_event())
def test_no_part_of_any_secret_survives_the_structlog_processor(
    planted: tuple[dict[str, Any], list[Secret], list[str]],
) -> None:
    event, secrets, controls = planted
    processor, renderer = RedactingProcessor(Redactor()), JSONRenderer()
    output = renderer(None, "info", processor(None, "info", {"event": "hunt", **event}))
    assert isinstance(output, str)
    assert _leaked(secrets, output) == []
    assert _controls_intact(controls, [json.loads(output)]) == []


@pytest.fixture(scope="module")
def json_pipeline() -> Iterator[io.StringIO]:
    """configure_logging in production JSON mode, once for all examples of a test."""
    with restore_logging_state():
        stream = io.StringIO()
        configure_logging(HardenSettings(env="production", log_format="json"), stream=stream)
        yield stream


def _raise_chain(message: str, cause: str, note: str) -> RuntimeError:
    try:
        try:
            raise ConnectionError(cause)
        except ConnectionError as error:
            failure = RuntimeError(message)
            failure.add_note(note)
            raise failure from error
    except RuntimeError as failure:
        return failure


def _log_through_the_pipeline(event: dict[str, Any], texts: list[str]) -> None:
    log = structlog.get_logger("tests.hunt")
    stdlib = logging.getLogger("tests.hunt.stdlib")
    log.info("hunt", **event)
    stdlib.warning("hunt %s %s", texts[0], event["payload"], extra={"context": event})
    stdlib.warning(texts[-1])
    failure = _raise_chain(texts[0], texts[-1], texts[len(texts) // 2])
    try:
        raise failure
    except RuntimeError:
        log.exception("hunt_failed", error=failure)
        stdlib.exception("hunt failed: %s", failure)


@_HUNT
@given(planted=_event(), texts=st.lists(_planted(), min_size=1, max_size=3))
def test_no_part_of_any_secret_reaches_the_configured_json_log(
    json_pipeline: io.StringIO,
    planted: tuple[dict[str, Any], list[Secret], list[str]],
    texts: list[tuple[str, Secret]],
) -> None:
    event, secrets, controls = planted
    json_pipeline.seek(0)
    json_pipeline.truncate()
    _log_through_the_pipeline(event, [text for text, _ in texts])
    output = json_pipeline.getvalue()
    lines = [json.loads(line) for line in output.splitlines()]
    assert len(lines) == 5
    assert _leaked([*secrets, *(secret for _, secret in texts)], output) == []
    assert _controls_intact(controls, lines) == []
    assert lines[0]["order_id"] == CONTROLS["order_id"]


def test_the_hunt_plants_every_encoding() -> None:
    """The strategies sample from these lists: a hunt that never hides a PEM block in
    escaped JSON, or a password in a command line, would prove little."""
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZGEifQ.c2lnbmF0dXJl"
    texts = [
        *_encodings_of_a_token(jwt, "call"),
        *_encodings_of_a_token(_EC_KEY, "call"),
        *_encodings_of_a_password("password", "hunter2XYZ7", "call"),
    ]
    shapes = {label for label, test in _SHAPES.items() if any(map(test, texts))}
    assert shapes == set(_SHAPES)


_SHAPES: dict[str, Callable[[str], bool]] = {
    "jwt": lambda text: "eyJ" in text,
    "pem": lambda text: "PRIVATE KEY" in text,
    "url userinfo": lambda text: "postgres://app:" in text,
    "escaped json": lambda text: '\\"' in text,
    "two levels": lambda text: '\\\\\\"' in text,
    "cli": lambda text: text.startswith(("mysql", "redis-cli", "curl", "deploy")),
    "xml": lambda text: text.startswith("<"),
    "ini": lambda text: text.startswith("[db]"),
    "argv repr": lambda text: text.startswith("Command '["),
    "authorization scheme": lambda text: "Authorization: Digest" in text,
    "spaced value": lambda text: text.endswith(" next=1"),
    "go dsn": lambda text: "@tcp(" in text,
    "odbc braces": lambda text: "PWD={" in text,
    "oracle": lambda text: text.startswith("sqlplus"),
    "yaml list": lambda text: ":\n  - " in text,
    "cdata": lambda text: "CDATA" in text,
    "percent-encoded name": lambda text: "%5B" in text,
    "lookalike name": lambda text: chr(0x430) in text,
    "pair repr": lambda text: text.startswith("dict_items"),
    "insert columns": lambda text: text.startswith("INSERT INTO"),
    "sqlalchemy parameters": lambda text: "[parameters: " in text,
    "csv column": lambda text: text.startswith("user_name,"),
    "name and value": lambda text: '"value": ' in text or "  value: " in text,
    "pydantic input": lambda text: "input_value=" in text,
    "login call": lambda text: ".login(" in text,
    "stdin password": lambda text: "| sudo -S" in text,
    "pgpass": lambda text: text.startswith("db.internal:5432:"),
    "bytes pair": lambda text: "(b'" in text,
}
