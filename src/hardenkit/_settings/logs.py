"""Logging settings (issue: redacting structured logs, audit, metrics)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from hardenkit._settings._base import Section

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LogFormat = Literal["auto", "json", "console"]


class LoggingSettings(Section):
    """What the logs may say and how they are rendered."""

    log_level: LogLevel = Field(default="INFO", description="Minimum level logged.")
    log_format: LogFormat = Field(
        default="auto", description="`auto`: JSON in production/staging, console otherwise."
    )
