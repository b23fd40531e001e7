"""``configure_logging(settings)``: structlog and stdlib logging, one pipeline, redacted.

One call sets up:

* structlog, rendering through the stdlib so both end in the same handler;
* one handler on the root logger whose formatter runs every record (structlog's and
  foreign ones: uvicorn, httpx, your libraries) through the same processors: level,
  logger name, UTC timestamp, request context, tracebacks without locals, redaction,
  then JSON (production, staging) or console output;
* uvicorn's loggers stripped of their own handlers and propagating to that one handler,
  so every line, access log included, is printed once and redacted, without uvicorn's
  ANSI-coloured ``color_message`` copy;
* the ``hardenkit.audit`` logger always at INFO, optionally also writing a JSONL file
  rotated at midnight UTC.

Calling it again replaces what the previous call installed and nothing else.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from collections.abc import Callable
from typing import IO, TYPE_CHECKING

import structlog
from structlog.typing import Processor

from hardenkit.logs.audit import AUDIT_LOGGER_NAME
from hardenkit.logs.processors import (
    RedactingProcessor,
    add_request_context,
    drop_color_duplicates,
)
from hardenkit.logs.redactor import Redactor, get_default_redactor, set_default_redactor
from hardenkit.logs.stdlib import RedactedErrorReports

if TYPE_CHECKING:
    from hardenkit.settings import HardenSettings

__all__ = ["UVICORN_LOGGERS", "configure_logging", "read_settings_with", "structlog_redacts"]

UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
"""Loggers uvicorn configures with handlers of its own; routed to the root instead."""

_OWNED = "_hardenkit_handler"

_settings_loader: list[Callable[[], HardenSettings]] = []
"""How :func:`configure_logging` reads settings when given none (set by the settings)."""


def read_settings_with(load: Callable[[], HardenSettings]) -> None:
    """Set how :func:`configure_logging` called without settings reads them.

    :mod:`hardenkit.settings` registers its ``load_settings`` when it is imported (as
    ``import hardenkit`` does), so the settings, which compose the sections of features
    that log, are never imported from here.
    """
    _settings_loader[:] = [load]


def configure_logging(
    settings: HardenSettings | None = None, *, stream: IO[str] | None = None
) -> Redactor:
    """Route structlog and stdlib logging through hardenkit's processors and redaction.

    Args:
        settings: The settings in force (``HARDENKIT_LOG_*`` and ``HARDENKIT_ENV``); read
            from the environment when omitted.
        stream: Where lines go; ``sys.stdout`` when omitted.

    Returns:
        The :class:`Redactor` built from settings, also made the process default (used
        by :func:`sentry_before_send` and by filters built without one).
    """
    if settings is None:
        settings = _settings_loader[0]()
    redactor = Redactor.from_settings(settings)
    set_default_redactor(redactor)
    as_json = settings.log_format == "json" or (
        settings.log_format == "auto" and settings.env in ("production", "staging")
    )
    level = logging.getLevelName(settings.log_level)
    redacting = RedactingProcessor(redactor)

    # Both structlog events and foreign records get these before the final chain.
    pre_chain: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        add_request_context,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # Tracebacks are rendered (without locals) before redaction, so the redactor sees the
    # exception messages. structlog events are redacted before they become log records,
    # so every handler on the way (not only ours) receives the redacted event.
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *pre_chain,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            _tracebacks(as_json=as_json),
            redacting,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: configure_logging may run again (tests, reloads), and a cached
        # logger would keep the processors of the first call.
        cache_logger_on_first_use=False,
    )
    handler = _StreamHandler(stream if stream is not None else sys.stdout)
    handler.setFormatter(_formatter(pre_chain, redacting, as_json=as_json))
    handler.addFilter(_StructuredArguments(redactor))
    _install_root_handler(handler, level)
    _route_uvicorn_to_root()
    _configure_audit_logger(settings, pre_chain, redacting)
    return redactor


def structlog_redacts() -> bool:
    """Whether structlog's processors include hardenkit's redaction.

    True once :func:`configure_logging` ran, or when the app added
    :class:`~hardenkit.logs.processors.RedactingProcessor` to its own chain.
    """
    processors = structlog.get_config().get("processors", ())
    return any(isinstance(processor, RedactingProcessor) for processor in processors)


class _EncodableLines(logging.Handler):
    r"""Lines the stream's encoding can take: what it cannot is written escaped (``\ud800``).

    A Python string may hold a lone surrogate, which is no character (a JSON ``\ud800``
    escape, bytes decoded with ``surrogateescape``): a UTF-8 stream refuses the whole
    line, and the event, an audit event included, would be lost to a "Logging error"
    report. The JSON format escapes such text itself; the console format did not.
    """

    def format(self, record: logging.LogRecord) -> str:
        """The formatted line, with what the stream cannot encode backslash-escaped."""
        text = super().format(record)
        if text.isascii():
            return text
        stream = getattr(self, "stream", None)
        encoding = getattr(stream, "encoding", None) or getattr(self, "encoding", None)
        if not isinstance(encoding, str):
            return text  # a text buffer (StringIO) takes any string
        return text.encode(encoding, "backslashreplace").decode(encoding)


class _StreamHandler(_EncodableLines, RedactedErrorReports, logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler whose lines always encode and whose failures are reported redacted."""


class _AuditFileHandler(
    _EncodableLines, RedactedErrorReports, logging.handlers.TimedRotatingFileHandler
):
    """The audit file handler: lines that always encode, failures reported redacted."""


class _StructuredArguments(logging.Filter):
    """Redacts a stdlib record's structured arguments before its message is rendered.

    The formatter renders ``msg % args`` first and redacts the text; rendered, a
    ``dict.values()``, a NamedTuple or an argv list has lost the names and the items the
    redactor goes by. Plain strings and numbers are left to the rendered text.
    """

    def __init__(self, redactor: Redactor | None) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact container arguments in place; keep the record."""
        if isinstance(record.msg, dict):
            return True
        # A handler before this one may have rendered the message from the raw
        # arguments; it would be copied as an extra "message" field, a duplicate of the
        # event rendered without the arguments' structure.
        record.__dict__.pop("message", None)
        args = record.args
        if not args:
            return True
        redactor = self.redactor or get_default_redactor()
        if isinstance(args, tuple):
            if any(type(arg) not in _PLAIN_ARGUMENTS for arg in args):
                record.args = tuple(
                    arg if type(arg) in _PLAIN_ARGUMENTS else redactor.redact(arg) for arg in args
                )
        else:
            record.args = redactor.redact(args)
        return True


_PLAIN_ARGUMENTS = frozenset({str, int, float, bool, type(None)})


def _tracebacks(*, as_json: bool) -> Processor:
    if as_json:
        return structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        )
    return structlog.processors.format_exc_info


def _formatter(
    pre_chain: list[Processor], redacting: RedactingProcessor, *, as_json: bool
) -> structlog.stdlib.ProcessorFormatter:
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    return structlog.stdlib.ProcessorFormatter(
        # Only records that did not come through structlog (uvicorn, libraries) run this
        # chain; structlog's own events arrive here already redacted.
        foreign_pre_chain=[
            # A record's `extra` first: the level, logger name and timestamp written after
            # it replace whatever a caller passed under those names, as for structlog calls
            # (the redactor passes them through unscanned at the top level).
            structlog.stdlib.ExtraAdder(),
            *pre_chain,
            drop_color_duplicates,
            _tracebacks(as_json=as_json),
            redacting,
        ],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )


def _install_root_handler(handler: logging.Handler, level: int) -> None:
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, _OWNED, False):
            root.removeHandler(existing)
            existing.close()
    setattr(handler, _OWNED, True)
    root.addHandler(handler)
    root.setLevel(level)


def _route_uvicorn_to_root() -> None:
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        for existing in list(logger.handlers):
            logger.removeHandler(existing)
        logger.propagate = True
        # HARDENKIT_LOG_LEVEL rules uvicorn's lines too (uvicorn sets its own otherwise).
        logger.setLevel(logging.NOTSET)


def _configure_audit_logger(
    settings: HardenSettings, pre_chain: list[Processor], redacting: RedactingProcessor
) -> None:
    logger = logging.getLogger(AUDIT_LOGGER_NAME)
    # Audit events are kept whatever the application's verbosity.
    logger.setLevel(logging.INFO)
    for existing in list(logger.handlers):
        if getattr(existing, _OWNED, False):
            logger.removeHandler(existing)
            existing.close()
    if settings.log_audit_file is None:
        return
    handler = _AuditFileHandler(
        settings.log_audit_file, when="midnight", utc=True, encoding="utf-8", delay=True
    )
    handler.setFormatter(_formatter(pre_chain, redacting, as_json=True))
    handler.addFilter(_StructuredArguments(redacting.redactor))
    setattr(handler, _OWNED, True)
    logger.addHandler(handler)
