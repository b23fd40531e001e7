"""What an attempt says about when to try again: the ``Retry-After`` it carries."""

from __future__ import annotations

import email.utils
import math
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tenacity import Future

__all__ = ["parse_retry_after", "retry_after_of"]

# A Retry-After beyond a day is a broken server, not a plan.
_MAX_RETRY_AFTER_VALUE = 86_400.0


def parse_retry_after(value: str | bytes, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delay-seconds or an HTTP date).

    Returns ``None`` for anything else (a malformed header is ignored, never trusted).
    A date in the past means 0.
    """
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        return min(float(text), _MAX_RETRY_AFTER_VALUE)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; obsolete formats parse naive
        return None
    seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(0.0, seconds), _MAX_RETRY_AFTER_VALUE)


def retry_after_of(outcome: Future | None) -> float | None:
    """The ``Retry-After`` carried by an attempt's result or exception, if any."""
    if outcome is None:
        return None
    if outcome.failed:
        error = outcome.exception()
        seconds = getattr(error, "retry_after", None)
        if isinstance(seconds, int | float) and not isinstance(seconds, bool):
            return float(seconds) if math.isfinite(seconds) and seconds >= 0 else None
        carrier = getattr(error, "response", None)
    else:
        carrier = outcome.result()
    headers = getattr(carrier, "headers", None)
    if headers is None:
        return None
    try:
        value = headers.get("retry-after")
    except (AttributeError, TypeError):
        return None
    return parse_retry_after(value) if isinstance(value, str | bytes) else None
