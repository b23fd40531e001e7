"""The redaction engine: one :class:`Redactor`, used by every log integration.

Two kinds of rules apply, recursively through dicts, lists, tuples, sets, dataclasses,
pydantic models and exceptions:

* **names**: a value under a name such as ``password``, ``clientSecret`` or
  ``X-Api-Key`` is replaced whole, whatever it looks like;
* **values**: strings are scanned for secrets wherever they sit (JWTs, bearer
  credentials, PEM keys, vendor API keys, URL passwords, ``name=value`` pairs in any
  notation, card numbers, long random strings). Dict keys are values too: a key that
  holds a secret becomes ``[REDACTED:1]``, ``[REDACTED:2]``, ... so entries stay apart.

Pass-through names (``level``, ``timestamp``, ``request_id``, ...) are honoured at the
top level of an event only, where hardenkit and structlog write them; anywhere else they
are ordinary names. Those a caller can set (``request_id``) keep only id-shaped values.

Below the depth cap everything is replaced (it fails closed). Anything the engine does
not know how to walk is turned into its ``repr`` and scanned, so an unknown object cannot
smuggle a secret into a renderer that would call ``repr`` on it later.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
from collections.abc import ItemsView, Iterable, KeysView, Mapping, ValuesView
from enum import Enum
from typing import TYPE_CHECKING, Any

from hardenkit.logs._argv import looks_like_argv, named_values, redact_argv
from hardenkit.logs._detectors import (
    HEX_OR_TIMESTAMP,
    PASSTHROUGH_SHAPE,
    TextScanner,
    marker,
)
from hardenkit.logs._keys import DEFAULT_ALLOWED_KEYS, KeyClassifier, normalise_key
from hardenkit.logs._positional import JWK_PRIVATE_MEMBERS

if TYPE_CHECKING:
    from hardenkit.settings import HardenSettings

__all__ = [
    "DEFAULT_PASSTHROUGH_KEYS",
    "REDACTED",
    "Redactor",
    "get_default_redactor",
    "set_default_redactor",
]

REDACTED = "[REDACTED]"
"""What replaces a value held under a secret name."""

DEFAULT_PASSTHROUGH_KEYS: frozenset[str] = frozenset(
    {
        "request_id",
        "trace_id",
        "span_id",
        "timestamp",
        "level",
        "logger",
        "logger_name",
        "_record",
        "_from_structlog",
    }
)
"""Fields written by hardenkit and structlog themselves, in formats they validated: passed
through unscanned (a request id is 32 hex characters, which would otherwise look random).
``_record`` and ``_from_structlog`` are structlog's bookkeeping, removed before rendering."""

_SHORTEST_SECRET = 8  # nothing any detector finds fits in fewer characters
_SHORTEST_CARD = 10**12
_CLEAN_CACHE_SIZE = 4096
_CLEAN_CACHE_MAX_LENGTH = 256
_DECISION_CACHE_SIZE = 4096
_DEPTH_MARKER = marker("depth")
# A field that names the secret held by its sibling.
_NAME_VALUE_KEYS = (
    ("name", "value"),
    ("key", "value"),
    ("Name", "Value"),
    ("Key", "Value"),
    ("ParameterKey", "ParameterValue"),
)
# Per-name decisions (see Redactor._decision).
_SCAN, _REDACT, _KEEP, _PASS, _PSEUDONYMIZE, _SECRET_NAME, _HASH, _COUNT, _QUERY = range(9)
# Names of a request's query parameters as a mapping ({"query": {"code": ...}}): its
# names follow the query rules, where "code", "key" and "sig" are capabilities (OAuth
# codes, Google's key=, presigned URLs), as they are in a logged URL.
_QUERY_CONTAINERS = frozenset(
    {"query", "queryparams", "querystring", "queryargs", "params", "searchparams", "qs"}
)
# Pass-through names that structlog's own processors (TimeStamper, add_log_level,
# add_logger_name) write over whatever the call passed: kept as they are at the top
# level. Other pass-through names (request_id, ...) may come from the caller: kept only
# when shaped like ids.
_WRITTEN_BY_PROCESSORS = frozenset(
    {"timestamp", "level", "logger", "logger_name", "_record", "_from_structlog"}
)
# Under a name that says "digest" (sha256, etag, commit), hex is what the name says.
_ANY_HEX = re.compile(r"[0-9a-fA-F]{32,128}")
_hex_or_timestamp = HEX_OR_TIMESTAMP.fullmatch
# What a secret cut by truncation is made of: the unfinished run at the cut is dropped,
# so half a key is never left short enough to pass as ordinary text.
_SECRET_CHARACTERS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_+/=.~-!@#$%^&*()"
)


class Redactor:
    """Replaces secrets in log events, strings and nested structures.

    Build one from settings with :meth:`from_settings`; the defaults are safe on their
    own. Instances are immutable after construction and safe to share between threads.

    Args:
        extra_keys: More field names holding secrets, matched anywhere in the normalised
            name (``iban`` also redacts ``payout_iban``).
        allow_keys: Field names that contain a secret term but hold none (``token_type``);
            their values are still scanned. Added to :data:`DEFAULT_ALLOWED_KEYS`.
        allow_patterns: Regular expressions for long random-looking values that are not
            secrets, such as ``[0-9a-f]{32}`` for content hashes. Vendor keys, JWTs and
            the other specific detectors ignore this list.
        passthrough_keys: Field names whose values are emitted unscanned. Keep this to
            values your own code produced and validated.
        pseudonymize_keys: Field names whose values are replaced by a keyed hash
            (``pseudonym:`` + 16 hex characters): joinable across lines, not readable.
        pseudonymization_key: The HMAC-SHA256 key; required with ``pseudonymize_keys``.
        max_depth: Containers nested deeper than this are replaced whole.
        max_string_length: Longer strings are cut to this length before scanning.

    Raises:
        ValueError: ``pseudonymize_keys`` without a key, or a limit out of range.
    """

    def __init__(
        self,
        *,
        extra_keys: Iterable[str] = (),
        allow_keys: Iterable[str] = (),
        allow_patterns: Iterable[str | re.Pattern[str]] = (),
        passthrough_keys: Iterable[str] = DEFAULT_PASSTHROUGH_KEYS,
        pseudonymize_keys: Iterable[str] = (),
        pseudonymization_key: bytes | str | None = None,
        max_depth: int = 16,
        max_string_length: int = 65_536,
    ) -> None:
        if max_depth < 1:
            raise ValueError("max_depth must be at least 1")
        if max_string_length < 64:
            raise ValueError("max_string_length must be at least 64")
        self._keys = KeyClassifier(extra_keys, (*DEFAULT_ALLOWED_KEYS, *allow_keys))
        patterns = tuple(
            pattern if isinstance(pattern, re.Pattern) else re.compile(pattern)
            for pattern in allow_patterns
        )
        self._scanner = TextScanner(self._keys, patterns)
        self._hash_scanner = TextScanner(self._keys, (*patterns, _ANY_HEX))
        self._passthrough = frozenset(passthrough_keys)
        self._pseudonymized = frozenset("".join(normalise_key(key)) for key in pseudonymize_keys)
        if isinstance(pseudonymization_key, str):
            pseudonymization_key = pseudonymization_key.encode()
        if self._pseudonymized and not pseudonymization_key:
            raise ValueError("pseudonymize_keys needs a pseudonymization_key")
        self._hmac_key = pseudonymization_key
        self.max_depth = max_depth
        self.max_string_length = max_string_length
        self._passthrough_anywhere: frozenset[str] = frozenset()
        # Per-name decisions, one table for an event's top level (where pass-through
        # names count) and one for everything below. Names that are themselves secrets
        # are never cached.
        self._top_decisions: dict[Any, int] = {}
        self._decisions: dict[Any, int] = {}
        # Short strings already scanned and found clean. Log values repeat (event names,
        # routes, user agents, tenants); a string that held a secret is never kept here.
        self._clean: dict[str, None] = {}
        # Values under pass-through names already found shaped like ids or names.
        self._passed: dict[str, None] = {}

    @classmethod
    def from_settings(cls, settings: HardenSettings) -> Redactor:
        """Build the redactor the ``HARDENKIT_LOG_*`` settings describe."""
        key = settings.log_pseudonymization_key
        return cls(
            extra_keys=settings.log_redact_keys,
            allow_keys=settings.log_allow_keys,
            allow_patterns=settings.log_allow_patterns,
            pseudonymize_keys=settings.log_pseudonymize_keys,
            pseudonymization_key=key.get_secret_value() if key is not None else None,
            max_depth=settings.log_max_depth,
            max_string_length=settings.log_max_string_length,
        )

    def with_passthrough(self, keys: Iterable[str], *, at_any_depth: bool = False) -> Redactor:
        """Return a copy that also passes the values of ``keys`` through unscanned.

        Args:
            keys: More pass-through names.
            at_any_depth: Honour them at every depth, not only at the event's top level
                (Sentry nests its own ids). Either way, only values shaped like ids,
                timestamps or names pass; anything else under such a name is scanned.
        """
        clone = object.__new__(Redactor)
        clone.__dict__.update(self.__dict__)
        if at_any_depth:
            clone._passthrough_anywhere = self._passthrough_anywhere | frozenset(keys)
        else:
            clone._passthrough = self._passthrough | frozenset(keys)
        clone._top_decisions = {}
        clone._decisions = {}
        clone._clean = {}
        clone._passed = {}
        return clone

    def is_sensitive_key(self, name: str) -> bool:
        """Return whether a field called ``name`` has its value redacted whole."""
        return self._keys.is_sensitive(name)

    def pseudonymize(self, value: object) -> str:
        """Return the keyed pseudonym of ``value`` (``pseudonym:`` + 16 hex characters).

        Raises:
            ValueError: No pseudonymization key is configured.
        """
        if not self._hmac_key:
            raise ValueError("no pseudonymization key configured")
        text = value if isinstance(value, str) else str(value)
        digest = hmac.new(self._hmac_key, text.encode(), hashlib.sha256).hexdigest()
        return f"pseudonym:{digest[:16]}"

    def redact_text(self, text: str) -> str:
        """Return ``text`` with every secret the value detectors find replaced."""
        length = len(text)
        if length < _SHORTEST_SECRET or text in self._clean:
            return text
        if length > self.max_string_length:
            text = _cut(text, self.max_string_length) + "…[truncated]"
        scanned = self._scanner.scan(text)
        if length <= _CLEAN_CACHE_MAX_LENGTH and scanned == text:
            clean = self._clean
            if len(clean) >= _CLEAN_CACHE_SIZE:
                clean.clear()
            clean[text] = None
        return scanned

    def redact_event(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Return a redacted copy of a log event (a mapping of field name to value).

        Pass-through names are honoured here, at the event's top level, and nowhere else.
        """
        return self._mapping(event, 1, top=True)

    def redact(self, value: Any) -> Any:
        """Return a redacted copy of any value: text, containers, models, exceptions."""
        return self._value(value, 0)

    def _decision(self, key: Any, *, top: bool) -> int:
        decisions = self._top_decisions if top else self._decisions
        try:
            return decisions[key]
        except KeyError:
            pass
        decision = self._judge_key(key, top=top)
        # A key that is itself a secret is never cached: the cache would hold the secret.
        if decision != _SECRET_NAME and len(decisions) < _DECISION_CACHE_SIZE:
            decisions[key] = decision
        return decision

    def _judge_key(self, key: Any, *, top: bool) -> int:  # noqa: PLR0911 - one verdict per rule
        if not isinstance(key, str | bytes):
            # Numbers, tuples, enums: judged by what a renderer would print.
            if key is None or isinstance(key, bool | float) or not self._key_holds_secret(key):
                return _SCAN
            return _SECRET_NAME
        name = key if isinstance(key, str) else key.decode("latin-1")
        if top and name in self._passthrough:
            return _KEEP if name in _WRITTEN_BY_PROCESSORS else _PASS
        if name in self._passthrough_anywhere:
            return _PASS
        if len(name) >= _SHORTEST_SECRET and self.redact_text(name) != name:
            return _SECRET_NAME
        if self._pseudonymized and "".join(normalise_key(name)) in self._pseudonymized:
            return _PSEUDONYMIZE
        if self._keys.is_sensitive(name):
            # "tokens": 123 is a count; anything else under it is redacted.
            return _COUNT if self._keys.names_a_count(name) else _REDACT
        if self._keys.names_a_hash(name):
            return _HASH
        if "".join(normalise_key(name)) in _QUERY_CONTAINERS:
            return _QUERY
        return _SCAN

    def _key_holds_secret(self, key: Any) -> bool:
        if isinstance(key, int):
            return bool(self._integer(int(key)) != key)
        text = _safe_repr(key)
        return self.redact_text(text) != text

    def _mapping(  # noqa: PLR0912 - the hot path, inlined on purpose
        self, mapping: Mapping[Any, Any], depth: int, *, top: bool = False
    ) -> dict[Any, Any]:
        # The hot path of every log line: plain strings and numbers under ordinary names
        # are handled inline, without a method call per field.
        result: dict[Any, Any] = {}
        decisions = self._top_decisions if top else self._decisions
        clean = self._clean
        redact_text = self.redact_text
        secret_names = 0
        # Verdicts as literals (see _SCAN and the others): no global lookup per field.
        for key, value in mapping.items():
            verdict = decisions.get(key)
            if verdict is None:
                verdict = self._decision(key, top=top)
            if verdict == 0:  # _SCAN
                kind = type(value)
                if kind is str:
                    if len(value) >= _SHORTEST_SECRET and value not in clean:
                        result[key] = redact_text(value)
                    else:
                        result[key] = value
                elif (
                    kind is bool
                    or value is None
                    or ((kind is int or kind is float) and value < _SHORTEST_CARD)
                ):
                    result[key] = value
                else:
                    result[key] = self._value(value, depth)
            elif verdict == 1:  # _REDACT
                result[key] = (
                    value if value is None or value is True or value is False else REDACTED
                )
            elif verdict == _COUNT:
                result[key] = value if type(value) is int else REDACTED
            elif verdict == 2:  # _KEEP
                result[key] = value
            elif verdict == 3:  # _PASS
                if type(value) is str and (
                    len(value) < _SHORTEST_SECRET
                    or _hex_or_timestamp(value) is not None
                    or value in self._passed
                ):
                    result[key] = value
                else:
                    result[key] = self._passthrough_value(value, depth, top=top)
            elif verdict == _PSEUDONYMIZE:
                result[key] = None if value is None else self.pseudonymize(value)
            elif verdict == _HASH:
                result[key] = self._digest(value, depth)
            elif verdict == _QUERY:
                result[key] = self._query(value, depth)
            else:
                # The name itself is a secret: a numbered marker keeps entries apart.
                secret_names += 1
                result[marker(str(secret_names))] = self._value(value, depth)
        if not top and ("value" in result or "Value" in result or "kty" in result):
            self._sibling_named(result)
        return result

    def _sibling_named(self, result: dict[Any, Any]) -> None:
        """Redact what a sibling field names as secret, in place.

        ``{"name": "DB_PASSWORD", "value": ...}`` (Kubernetes env, AWS parameters) and a
        JSON Web Key's private members (``{"kty": "oct", "k": ...}``).
        """
        if "kty" in result:
            for member in JWK_PRIVATE_MEMBERS.intersection(result):
                if result[member] is not None:
                    result[member] = REDACTED
        for name_key, value_key in _NAME_VALUE_KEYS:
            name = result.get(name_key)
            if (
                value_key in result
                and isinstance(name, str)
                and self._keys.is_sensitive(name)
                and result[value_key] is not None
            ):
                result[value_key] = REDACTED

    def _query(self, value: Any, depth: int) -> Any:
        """Query parameters: a mapping's names judged as parameter names, then as usual."""
        redacted = self._value(value, depth)
        if type(value) is dict and type(redacted) is dict:
            is_capability = self._keys.is_sensitive_parameter
            for name, item in value.items():
                if isinstance(name, str) and item is not None and is_capability(name):
                    redacted[name] = REDACTED
        return redacted

    def _digest(self, value: Any, depth: int) -> Any:
        if type(value) is str and _SHORTEST_SECRET <= len(value) <= self.max_string_length:
            return self._hash_scanner.scan(value)
        return self._value(value, depth)

    def _passthrough_value(self, value: Any, depth: int, *, top: bool) -> Any:
        # A value not shaped like an id, a timestamp or a name is scanned like any other.
        if type(value) is str:
            # Four colons: a .pgpass line ("db:5432:orders:app:pw") is id-shaped too.
            if PASSTHROUGH_SHAPE.fullmatch(value) is None or value.count(":") >= 4:
                return self.redact_text(value)
            passed = self._passed
            if len(passed) >= _CLEAN_CACHE_SIZE:
                passed.clear()
            passed[value] = None
            return value
        if top or value is None or type(value) in (int, float, bool):
            # structlog's bookkeeping (``_record``) and Sentry's own structures.
            return value
        return self._value(value, depth)

    def _value(self, value: Any, depth: int) -> Any:  # noqa: PLR0911 - one branch per type
        kind = type(value)
        if kind is str:
            if len(value) < _SHORTEST_SECRET:
                return value
            return self.redact_text(value)
        if value is None or kind is bool:
            return value
        if kind is int:
            return self._integer(value)
        if kind is float:
            return self._float(value)
        if depth >= self.max_depth:
            return _DEPTH_MARKER
        if kind is dict:
            return self._mapping(value, depth + 1)
        if kind is list or kind is tuple:
            return self._sequence(value, depth + 1)
        return self._other(value, depth)

    def _integer(self, value: int) -> Any:
        if value < _SHORTEST_CARD:
            return value
        redacted = self.redact_text(str(value))
        return value if redacted == str(value) else redacted

    def _float(self, value: float) -> Any:
        # A card number stored as a float (4111111111111111.0) is still a card number.
        if not value >= _SHORTEST_CARD or value == float("inf"):
            return value
        text = str(int(value)) if value.is_integer() else repr(value)
        redacted = self.redact_text(text)
        return value if redacted == text else redacted

    def _sequence(self, items: list[Any] | tuple[Any, ...], depth: int) -> Any:
        # A (name, value) pair, like ASGI headers or Sentry's header lists, follows the
        # name rules: ("authorization", "...") is redacted like {"authorization": "..."}.
        if len(items) == 2 and isinstance(items[0], str | bytes):
            verdict = self._decision(items[0], top=False)
            pair: list[Any] | None = None
            if verdict == _REDACT and items[1] is not None:
                pair = [self._value(items[0], depth), REDACTED]
            elif verdict == _PSEUDONYMIZE and items[1] is not None:
                pair = [items[0], self.pseudonymize(items[1])]
            if pair is not None:
                return pair if type(items) is list else tuple(pair)
        argv = looks_like_argv(items)
        named = named_values(items, self._names_secret, argv=argv) if len(items) > 2 else {}
        if argv:
            # A command: a flag and its value sit in separate items.
            redacted = redact_argv(items, self.redact_text)
            if isinstance(redacted, str):
                return redacted
        else:
            redacted = [self._value(item, depth) for item in items]
        # A name and its value side by side: CONFIG SET requirepass <x>, flat header lists.
        for index, name in named.items():
            pseudonymized = self._decision(name, top=False) == _PSEUDONYMIZE
            redacted[index] = self.pseudonymize(items[index]) if pseudonymized else REDACTED
        return redacted if type(items) is list else tuple(redacted)

    def _names_secret(self, name: str) -> bool:
        return self._decision(name, top=False) in (_REDACT, _PSEUDONYMIZE)

    def _other(  # noqa: PLR0911, PLR0912 - one branch per type
        self, value: Any, depth: int
    ) -> Any:
        if isinstance(value, Enum) and not isinstance(value, int):
            return self._enum_member(value)
        if isinstance(value, str):  # str subclasses
            return self.redact_text(str(value))
        if isinstance(value, bytes | bytearray | memoryview):
            return self.redact_text(bytes(value).decode("utf-8", "replace"))
        if isinstance(value, bool | float):
            return value
        if isinstance(value, int):
            return self._integer(int(value))
        if isinstance(value, Mapping):
            return self._mapping(value, depth + 1)
        as_dict = getattr(value, "_asdict", None)
        if isinstance(value, tuple) and callable(as_dict):
            # A NamedTuple: its field names are names like a dict's keys.
            fields = as_dict()
            if isinstance(fields, Mapping):
                return self._mapping(fields, depth + 1)
        if isinstance(value, ItemsView | ValuesView | KeysView):
            return self._view(value, depth)
        if isinstance(value, list | tuple):
            return self._sequence(list(value), depth + 1)
        if isinstance(value, set | frozenset):
            return [self._value(item, depth + 1) for item in value]
        if isinstance(value, BaseException):
            return self.redact_exception(value)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            fields = {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
            return self._mapping(fields, depth + 1)
        model_dump = getattr(value, "model_dump", None)
        if callable(model_dump) and not isinstance(value, type):
            try:
                dumped = model_dump(mode="json")
            except Exception:  # noqa: BLE001 - a broken model is logged as its repr
                dumped = None
            if isinstance(dumped, Mapping):
                return self._mapping(dumped, depth + 1)
        return self.redact_text(_safe_repr(value))

    def _enum_member(self, member: Enum) -> str:
        # A member is logged by its name: its value is in the code. A StrEnum's value is
        # what it prints, so it is kept unless the member's or the class's name is secret.
        name = f"{type(member).__name__}.{member.name}"
        if not isinstance(member, str):
            return self.redact_text(name)
        if self._keys.is_sensitive(member.name) or self._keys.is_sensitive(type(member).__name__):
            return REDACTED
        return self.redact_text(str(member.value))

    def _view(self, view: ItemsView[Any, Any] | ValuesView[Any] | KeysView[Any], depth: int) -> Any:
        if isinstance(view, ItemsView):
            return self._mapping(dict(view), depth + 1)
        if isinstance(view, ValuesView):
            # dict.values() keeps its dict (``.mapping``): the values keep their names.
            source = getattr(view, "mapping", None)
            if isinstance(source, Mapping):
                return list(self._mapping(source, depth + 1).values())
        return [self._value(item, depth + 1) for item in view]

    def redact_exception(self, exc: BaseException) -> str:
        """Return ``"ExceptionType: message"`` and its notes (PEP 678), redacted."""
        text = f"{type(exc).__name__}: {_safe_str(exc)}"
        notes = getattr(exc, "__notes__", None)
        if isinstance(notes, list | tuple):
            text += "".join(f"\n{_safe_str(note)}" for note in notes)
        return self.redact_text(text)


def _cut(text: str, length: int) -> str:
    head = text[:length]
    end = length
    while end > 0 and head[end - 1] in _SECRET_CHARACTERS:
        end -= 1
    return head[:end]


def _safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception:  # noqa: BLE001 - a failing __repr__ must not break logging
        return f"<{type(value).__name__} (repr failed)>"


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:  # noqa: BLE001 - a failing __str__ must not break logging
        return "(str failed)"


_default_redactor = Redactor()


def get_default_redactor() -> Redactor:
    """Return the redactor used by integrations built without an explicit one.

    :func:`hardenkit.configure_logging` replaces it with one built from settings.
    """
    return _default_redactor


def set_default_redactor(redactor: Redactor) -> None:
    """Make ``redactor`` the one integrations built without an explicit one use."""
    global _default_redactor  # noqa: PLW0603 - one process-wide default, set at startup
    _default_redactor = redactor
