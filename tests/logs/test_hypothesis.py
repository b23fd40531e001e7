"""Random nested structures with planted secrets: none survives redaction and rendering."""

from __future__ import annotations

import base64
import json
import random
import string
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hardenkit.logs import Redactor
from tests.logs._corpus import _luhn_complete

_ALNUM = string.ascii_letters + string.digits
# Filler text never contains a digit, an uppercase letter or "_", and every planted secret
# does, so a secret found in the output can only have leaked, not been typed twice.
_FILLER = st.text(alphabet=string.ascii_lowercase + " .,!?", max_size=40)
_NEUTRAL_KEYS = st.sampled_from(
    ["note", "detail", "items", "user", "path", "message", "extra", "data", "meta", "attempts"]
)
_SENSITIVE_KEYS = st.sampled_from(
    [
        "password",
        "clientSecret",
        "X-Api-Key",
        "ACCESS_TOKEN",
        "refresh-token",
        "Authorization",
        "set-cookie",
        "private_key",
        "card_number",
        "cvv",
        "db_passwd",
        "sessionId",
        "aws_secret_access_key",
    ]
)
_SECRET_TEXT = st.text(alphabet=_ALNUM, min_size=10, max_size=40).map(lambda text: text + "7Q")


def _luhn_digit(body: str) -> str:
    return _luhn_complete(body)[-1]


@st.composite
def _secrets(draw: st.DrawFn) -> tuple[str, str]:  # noqa: PLR0911 - one branch per kind
    """Return (text to plant, substring that must not survive)."""
    kind = draw(st.integers(0, 9))
    body = draw(st.text(alphabet=_ALNUM, min_size=36, max_size=48))
    if kind == 0:
        prefix = draw(st.sampled_from(["ghp_", "gho_", "glpat-", "sk_live_", "npm_", "xoxb-"]))
        token = prefix + body
        return token, token
    if kind == 1:
        token = f"eyJ{body[:20]}.eyJ{body[20:]}.{body[::-1]}"
        return token, token
    if kind == 2:
        token = "AKIA" + "".join(
            draw(st.sampled_from(string.ascii_uppercase + "234567")) for _ in range(16)
        )
        return token, token
    if kind == 3:
        number = "4" + "".join(str(draw(st.integers(0, 9))) for _ in range(14))
        card = number + _luhn_digit(number)
        spaced = " ".join(card[i : i + 4] for i in range(0, 16, 4))
        return spaced, card[:12]
    if kind == 4:
        password = draw(_SECRET_TEXT)
        return f"https://svc:{password}@db.example.com/x", password
    if kind == 5:
        value = draw(_SECRET_TEXT)
        name = draw(st.sampled_from(["token", "api_key", "access_token", "sig", "password"]))
        return f"https://api.example.com/v1/x?page=2&{name}={value}", value
    if kind == 6:
        value = draw(_SECRET_TEXT)
        return f"Bearer {value}", value
    if kind == 7:
        seed = draw(st.integers(0, 2**32))
        blob = base64.b64encode(random.Random(seed).randbytes(32)).decode()
        return blob, blob
    if kind == 8:
        seed = draw(st.integers(0, 2**32))
        digest = random.Random(seed).randbytes(32).hex()
        return digest, digest
    token = "sk-proj-" + body
    return token, token


@st.composite
def _planted_structure(draw: st.DrawFn) -> tuple[Any, list[str]]:
    """A random nested structure and the secrets planted somewhere in it."""
    planted: list[str] = []

    def leaf() -> Any:
        choice = draw(st.integers(0, 5))
        if choice == 0:
            text, secret = draw(_secrets())
            planted.append(secret)
            return text
        if choice == 1:
            text, secret = draw(_secrets())
            planted.append(secret)
            return f"{draw(_FILLER)} {text} {draw(_FILLER)}"
        if choice == 2:
            return draw(st.integers(-1000, 1000))
        return draw(_FILLER)

    def node(depth: int) -> Any:
        if depth >= 6 or draw(st.integers(0, 3)) == 0:
            return leaf()
        shape = draw(st.integers(0, 3))
        size = draw(st.integers(1, 4))
        if shape == 0:
            return [node(depth + 1) for _ in range(size)]
        if shape == 1:
            return tuple(node(depth + 1) for _ in range(size))
        result: dict[str, Any] = {}
        for _ in range(size):
            if draw(st.booleans()):
                key = draw(_SENSITIVE_KEYS)
                secret = draw(_SECRET_TEXT)
                planted.append(secret)
                result[key] = secret
            else:
                result[draw(_NEUTRAL_KEYS)] = node(depth + 1)
        return result

    return {"event": "random", "payload": node(0)}, planted


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_planted_structure())
def test_no_planted_secret_survives_in_random_nested_structures(
    planted_structure: tuple[Any, list[str]],
) -> None:
    structure, planted = planted_structure
    rendered = json.dumps(Redactor().redact_event(structure), default=str)
    assert [secret for secret in planted if secret in rendered] == []


def _names_a_secret(structure: Any) -> bool:
    """Whether a list holds a secret name followed by an item, such as ["pw", "x"] or
    ["a", "connectionstring", ""]: the item is its value, redacted like {"pw": "x"} by
    design, so this is not text without secrets."""
    if not isinstance(structure, list):
        return False
    redactor = Redactor()
    if any(isinstance(item, str) and redactor.is_sensitive_key(item) for item in structure[:-1]):
        return True
    return any(_names_a_secret(item) for item in structure)


@settings(max_examples=100, deadline=None)
@given(st.recursive(_FILLER, lambda inner: st.lists(inner, max_size=3), max_leaves=20))
def test_text_without_secrets_comes_out_unchanged(structure: Any) -> None:
    assume(not _names_a_secret(structure))
    assert Redactor().redact(structure) == structure


_WORDS = st.sampled_from(["get", "set", "user", "bob", "region", "eu", "host", "db", "x1", "ok"])


@settings(max_examples=200, deadline=None)
@given(
    before=st.lists(_WORDS, max_size=6),
    after=st.lists(_WORDS, max_size=6),
    name=_SENSITIVE_KEYS,
    secret=_SECRET_TEXT,
    as_bytes=st.booleans(),
)
def test_a_secret_named_by_the_item_before_it_in_a_flat_list_never_survives(
    before: list[str], after: list[str], name: str, secret: str, as_bytes: bool
) -> None:
    # Redis commands and flat header lists: [..., "password", "<secret>", ...]. The
    # words around it are kept (none is a secret name), the secret never is.
    items: list[Any] = [*before, name, secret, *after]
    if as_bytes:
        items = [item.encode() for item in items]
    redactor = Redactor()
    redacted = redactor.redact_event({"command": items})["command"]
    assert secret not in json.dumps(redacted)
    assert redacted[: len(before)] == before
    assert redacted[len(before) + 2 :] == after
    if not as_bytes and len(items) > 2:  # a list's repr in a message, as exceptions print it
        assert secret not in redactor.redact_text(f"failed: {items!r}")
