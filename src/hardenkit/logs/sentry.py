"""A Sentry ``before_send`` hook that runs events through the same redaction engine.

No Sentry dependency: the hook is a plain function on the event dict::

    import sentry_sdk
    from hardenkit import sentry_before_send

    sentry_sdk.init(dsn=..., before_send=sentry_before_send, send_default_pii=False)

Everything in the event is redacted: exception messages, stack frame locals (``vars``,
whose names follow the field-name rules), request headers, cookies, query string and
body, breadcrumbs, ``extra``, tags and contexts. Sentry's own identifiers (event, trace,
span and debug ids, release) are passed through so the event still groups and links, at
any depth, but only while they look like identifiers: a JWT under ``extra.level`` is
redacted like anywhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from hardenkit.logs.redactor import Redactor, get_default_redactor

__all__ = ["SENTRY_PASSTHROUGH_KEYS", "redacting_before_send", "sentry_before_send"]

SENTRY_PASSTHROUGH_KEYS = frozenset(
    {
        "event_id",
        "trace_id",
        "span_id",
        "parent_span_id",
        "debug_id",
        "code_id",
        "release",
        "dist",
        "timestamp",
        "start_timestamp",
        "platform",
        "level",
        "sdk",
        "image_addr",
        "instruction_addr",
    }
)
"""Sentry fields that are identifiers of Sentry's own and hold no user data."""


SentryHook = Callable[[dict[str, Any], Any], dict[str, Any]]
"""The shape of ``before_send``, ``before_send_transaction`` and ``before_breadcrumb``."""


@lru_cache(maxsize=8)
def _sentry_engine(redactor: Redactor) -> Redactor:
    # Sentry nests its ids (contexts.trace.trace_id, frames' instruction_addr): they pass
    # at any depth, and only when shaped like ids (see Redactor.with_passthrough).
    return redactor.with_passthrough(SENTRY_PASSTHROUGH_KEYS, at_any_depth=True)


def redacting_before_send(redactor: Redactor | None = None) -> SentryHook:
    """Return a ``before_send`` hook bound to ``redactor`` (the process default if omitted).

    The same function works as ``before_send_transaction`` and ``before_breadcrumb``.
    """

    def before_send(event: dict[str, Any], hint: Any = None) -> dict[str, Any]:
        return _sentry_engine(redactor or get_default_redactor()).redact_event(event)

    return before_send


def sentry_before_send(event: dict[str, Any], hint: Any = None) -> dict[str, Any]:
    """Sentry ``before_send`` hook: return ``event`` redacted by the process default engine.

    Args:
        event: The event Sentry is about to send.
        hint: Sentry's hint (the original exception); not used, never sent.
    """
    return _sentry_engine(get_default_redactor()).redact_event(event)
