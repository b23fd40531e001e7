r"""JSON from clients, held to RFC 8259: strings that are text, numbers that are finite.

Python's parser is more lenient, and what it lets in fails later, far from where it
came in, as a 500:

- it turns the escape ``"\ud800"``, and the bytes ``ED A0 80`` (it decodes with
  ``surrogatepass``), into a string holding a lone surrogate. That is no character:
  encoding it to UTF-8 raises, in the first response, log line or database write that
  carries it;
- it reads ``NaN``, ``Infinity`` and a number too large for a float (``1e999``, read as
  infinity), which no JSON response can carry (Starlette's refuses them).

Where client JSON enters (request bodies read with ``read_json``, a token's segments),
such input is refused instead, as not JSON.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Final

__all__ = ["decode_text", "loads_text"]

# The escapes \uD800 to \uDFFF. An escaped backslash before "ud800" matches too: that
# only costs the check in decode_text, which finds the text whole.
_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89a-fA-F]")
# A surrogate code point in a str: never text (Python keeps a pair as two of them).
_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError("a number out of a float's range")
    return value


_DECODER: Final = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite)


def decode_text(text: str) -> Any:
    """Parse JSON ``text``: its strings text, its numbers finite.

    Raises:
        ValueError: Not JSON, ``NaN``/``Infinity`` or a number out of range, or a
            string holding a lone surrogate.
        RecursionError: Nesting deeper than the parser's recursion limit.
    """
    if _SURROGATE.search(text) is not None:
        raise ValueError("a lone surrogate")
    value = _DECODER.decode(text)
    if _SURROGATE_ESCAPE.search(text) is not None:
        # Paired escapes ("\ud83d\ude00") were joined into one character; a lone one
        # fails to encode (UnicodeEncodeError, a ValueError).
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    return value


def loads_text(data: bytes | str) -> Any:
    """:func:`decode_text` of ``data``, bytes in a UTF encoding or text.

    The bytes are decoded strictly (UTF-8, or UTF-16/32 as ``json.loads`` detects them),
    never with ``surrogatepass``.

    Raises:
        ValueError: As :func:`decode_text`, or bytes in no UTF encoding.
        RecursionError: Nesting deeper than the parser's recursion limit.
    """
    text = data if isinstance(data, str) else data.decode(json.detect_encoding(data))
    return decode_text(text)
