r"""JSON from clients whose strings are text: no lone surrogate, however it was spelled.

Python's parser turns the escape ``"\ud800"``, and the bytes ``ED A0 80`` (it decodes
with ``surrogatepass``), into a string holding a lone surrogate. That is no character
(RFC 8259 8.2 leaves what such a string does unpredictable): encoding it to UTF-8
raises, so the first response, log line or database write that carries it fails with a
500, far from where it came in. Where client JSON enters (request bodies read with
``read_json``, a token's segments), such text is refused instead, as not JSON text.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

__all__ = ["ensure_text", "has_surrogate_escape", "loads_text"]

# \uD800 to \uDFFF. An escaped backslash before "ud800" matches too: that only costs the
# check below, which finds the text whole.
_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89a-fA-F]")


def has_surrogate_escape(text: str) -> bool:
    """Whether JSON ``text`` may spell a surrogate with an escape (paired or not)."""
    return _SURROGATE_ESCAPE.search(text) is not None


def ensure_text(value: Any) -> None:
    r"""Raise ``ValueError`` when a string in the parsed JSON ``value`` is no text.

    Paired surrogate escapes (``"\ud83d\ude00"``) were joined by the parser into one
    character and pass.

    Raises:
        ValueError: A key or string holds a lone surrogate (``UnicodeEncodeError``).
    """
    json.dumps(value, ensure_ascii=False).encode("utf-8")


def loads_text(data: bytes) -> Any:
    """``json.loads`` of ``data`` in a UTF encoding, refusing strings that are no text.

    The bytes are decoded strictly (UTF-8, or UTF-16/32 as ``json.loads`` detects them),
    and a string spelled with surrogate escapes must come out whole.

    Raises:
        ValueError: Not JSON, bytes in no UTF encoding, or a lone surrogate.
        RecursionError: Nesting deeper than the parser's recursion limit.
    """
    text = data.decode(json.detect_encoding(data))
    value = json.loads(text)
    if has_surrogate_escape(text):
        ensure_text(value)
    return value
