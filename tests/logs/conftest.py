from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import structlog

from hardenkit.logs.redactor import get_default_redactor, set_default_redactor
from hardenkit.logs.setup import UVICORN_LOGGERS


@contextmanager
def restore_logging_state() -> Iterator[None]:
    """Put global logging back as it was: configure_logging changes process-wide state."""
    config = structlog.get_config()
    root = logging.getLogger()
    root_handlers, root_level = list(root.handlers), root.level
    named = {
        name: (list(lg.handlers), lg.propagate, lg.level)
        for name in (*UVICORN_LOGGERS, "hardenkit.audit")
        for lg in [logging.getLogger(name)]
    }
    redactor = get_default_redactor()
    try:
        yield
    finally:
        for handler in root.handlers:
            if handler not in root_handlers:
                handler.close()
        root.handlers[:] = root_handlers
        root.setLevel(root_level)
        for name, (handlers, propagate, level) in named.items():
            logger = logging.getLogger(name)
            for handler in logger.handlers:
                if handler not in handlers:
                    handler.close()
            logger.handlers[:] = handlers
            logger.propagate = propagate
            logger.setLevel(level)
        structlog.configure(**config)
        set_default_redactor(redactor)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put global logging back as it was after the test."""
    with restore_logging_state():
        yield


@pytest.fixture
def json_log(restore_logging: None) -> io.StringIO:
    """configure_logging in production JSON mode, writing to a buffer the test reads."""
    from hardenkit.logs import configure_logging
    from hardenkit.settings import HardenSettings

    stream = io.StringIO()
    configure_logging(HardenSettings(env="production", log_format="json"), stream=stream)
    return stream
