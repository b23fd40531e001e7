"""Security header, timeout and CORS settings (issue: headers and request timeouts)."""

from __future__ import annotations

from pydantic import Field

from hardenkit._settings._base import CommaList, Section


class HeadersSettings(Section):
    """What responses carry and how long requests may take."""

    request_timeout: float = Field(
        default=30.0, gt=0, le=3600, description="Seconds a request may take before a 504."
    )
    cors_origins: CommaList = Field(
        default_factory=list, description="Origins allowed by CORS; empty disables CORS."
    )
