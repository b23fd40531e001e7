"""A Sentry ``before_send`` hook that runs events through the same redaction engine.

No Sentry dependency: the hook is a plain function on the event dict::

    import sentry_sdk
    from hardenkit import sentry_before_send

    sentry_sdk.init(
        dsn=...,
        before_send=sentry_before_send,
        data_collection={"user_info": False, "http_bodies": []},  # sentry-sdk 3
    )

(on sentry-sdk 2, ``send_default_pii=False`` instead of ``data_collection``.)

Everything in the event is redacted: exception messages, stack frame locals (``vars``,
whose names follow the field-name rules), request headers, cookies, query string and
body, breadcrumbs, ``extra``, tags and contexts. Sentry's own identifiers (event, trace,
span and debug ids, release) are passed through so the event still groups and links, at
any depth, but only while they look like identifiers: a JWT under ``extra.level`` is
redacted like anywhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Protocol, TypeVar, cast

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


_Event = TypeVar("_Event", bound=Mapping[str, Any])


class SentryHook(Protocol):
    """The shape of ``before_send``, ``before_send_transaction`` and ``before_breadcrumb``.

    Generic in the event: sentry-sdk types its events and breadcrumbs as ``TypedDict``
    (``Event``, ``Breadcrumb``), and a hook typed on ``dict[str, Any]`` fails
    ``mypy --strict`` where it is passed to ``sentry_sdk.init``.
    """

    def __call__(self, event: _Event, hint: Any = None) -> _Event:
        """Return ``event`` redacted."""
        ...


@lru_cache(maxsize=8)
def _sentry_engine(redactor: Redactor) -> Redactor:
    # Sentry nests its ids (contexts.trace.trace_id, frames' instruction_addr): they pass
    # at any depth, and only when shaped like ids (see Redactor.with_passthrough).
    return redactor.with_passthrough(SENTRY_PASSTHROUGH_KEYS, at_any_depth=True)


def redacting_before_send(redactor: Redactor | None = None) -> SentryHook:
    """Return a ``before_send`` hook bound to ``redactor`` (the process default if omitted).

    The same function works as ``before_send_transaction`` and ``before_breadcrumb``.
    """

    def before_send(event: _Event, hint: Any = None) -> _Event:
        redacted = _sentry_engine(redactor or get_default_redactor()).redact_event(event)
        return cast("_Event", redacted)  # the same members, their values redacted

    return before_send


def sentry_before_send(event: _Event, hint: Any = None) -> _Event:
    """Sentry ``before_send`` hook: return ``event`` redacted by the process default engine.

    Args:
        event: The event Sentry is about to send (a copy is returned, of the same keys).
        hint: Sentry's hint (the original exception); not used, never sent.
    """
    redacted = _sentry_engine(get_default_redactor()).redact_event(event)
    return cast("_Event", redacted)  # the same members, their values redacted
