"""A ``logging.Filter`` that redacts stdlib records: uvicorn, httpx, any library.

Attach it to a handler (it then sees records from every logger that propagates there) or
to a logger such as ``uvicorn.access`` whose records never reach the root. The access
log's request line, query string included, is one of the record's arguments: arguments
are redacted one by one, so formatters that unpack them (uvicorn's ``AccessFormatter``)
keep working; if the rendered message still reveals something only the whole line shows
(``"token=%s" % secret``), the record is collapsed to its redacted message.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import traceback
from typing import Any

from hardenkit.logs.redactor import Redactor, get_default_redactor

__all__ = ["RedactedErrorReports", "RedactingLogFilter"]

_STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "color_message",
    "taskName",
}


class RedactingLogFilter(logging.Filter):
    """Redact each record's message, arguments, extra fields and traceback in place.

    Never drops a record. Tracebacks are rendered without locals, redacted, and stored as
    ``exc_text`` (``exc_info`` is cleared so no formatter renders the raw one again).

    Args:
        redactor: The engine; the process default when omitted, looked up per record.
    """

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place and keep it."""
        redactor = self.redactor or get_default_redactor()
        if isinstance(record.msg, dict):  # a structlog event on its way to a formatter
            record.msg = redactor.redact_event(record.msg)
        else:
            _redact_message(record, redactor)
        extra = {
            name: value
            for name, value in vars(record).items()
            if name not in _STANDARD_ATTRIBUTES and not name.startswith("_")
        }
        if extra:
            for name in extra:
                delattr(record, name)
            # One event of the extra fields: a name that is itself a secret comes back
            # as a numbered marker, like a dict key anywhere else.
            for name, value in redactor.redact_event(extra).items():
                setattr(record, name, value)
        if record.exc_info and record.exc_info[0] is not None:
            text = "".join(traceback.format_exception(*record.exc_info))
            record.exc_text = redactor.redact_text(text.rstrip("\n"))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redactor.redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redactor.redact_text(record.stack_info)
        return True


def _redact_message(record: logging.LogRecord, redactor: Redactor) -> None:
    template = record.msg if isinstance(record.msg, str) else str(record.msg)
    args: Any = record.args
    if isinstance(args, dict):
        args = redactor.redact(args)
    elif isinstance(args, tuple):
        args = tuple(redactor.redact(arg) for arg in args)
    try:
        rendered = template % args if args else template
    except (TypeError, ValueError, KeyError):
        # The arguments cannot be placed, so the names in front of them cannot be read
        # ("password=%s %s"): they are not shown.
        _collapse(record, redactor.redact_text(template) + _arguments_not_shown(args))
        return
    final = redactor.redact_text(rendered)
    if final != rendered:
        # Something only the whole line reveals ("token=%s" % secret): keep the redacted
        # line and drop the arguments.
        _collapse(record, final)
    else:
        record.msg, record.args = template, args


def _collapse(record: logging.LogRecord, message: str) -> None:
    record.msg, record.args = message, ()
    # uvicorn's coloured copy of the template would be filled with the arguments again.
    record.__dict__.pop("color_message", None)


def _arguments_not_shown(args: object) -> str:
    count = len(args) if isinstance(args, tuple | dict) else 1
    return f" [{count} logging argument(s) not shown: the message could not be formatted]"


class RedactedErrorReports(logging.Handler):
    """A handler whose report of a failed ``emit`` shows nothing unredacted.

    The standard ``Handler.handleError`` prints the record's message template and raw
    arguments to stderr when formatting fails (``log.info("password=%s %s", pw)``);
    this one prints the error, where the call was made, the redacted template and only
    the number of arguments. Mix it in before the handler class.
    """

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - stdlib name
        """Report the failure to stderr, redacted, when ``logging.raiseExceptions``."""
        if not logging.raiseExceptions or sys.stderr is None:
            return
        redactor = get_default_redactor()
        error = sys.exc_info()[1]
        template = record.msg if isinstance(record.msg, str) else repr(record.msg)
        report = (
            "--- Logging error ---\n"
            f"{type(error).__name__}: {redactor.redact_text(str(error))}\n"
            f"Logged from {record.pathname}:{record.lineno} ({record.name})\n"
            f"Message: {redactor.redact_text(template)!r}\n"
            f"Arguments:{_arguments_not_shown(record.args)}\n"
        )
        with contextlib.suppress(OSError):  # stderr closed: nowhere left to say it
            sys.stderr.write(report)
