"""The CSP report endpoint: size-limited, logged without query strings or code samples.

Browsers post violations in two formats: ``application/csp-report`` (``report-uri``, one
``{"csp-report": {...}}`` object) and ``application/reports+json`` (the Reporting API,
``report-to``: a list of ``{"type": "csp-violation", "body": {...}}``). Both are
accepted. A report is attacker-controlled input: the body is bounded before it is read
in full, URLs lose their query string and fragment (tokens live there), script samples
are dropped, every field is cut to a short length, and at most a few reports per post
are logged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import structlog
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hardenkit.bodylimit import read_json
from hardenkit.errors import ErrorCode, HardenError

__all__ = ["csp_report_endpoint", "csp_report_route"]

_logger = structlog.get_logger("hardenkit.headers.csp")

_CONTENT_TYPES: Final = frozenset(
    {"application/csp-report", "application/reports+json", "application/json"}
)
_MAX_REPORTS_PER_POST: Final = 10
_MAX_FIELD_CHARS: Final = 200
# Field names in both formats (report-uri uses dashes, the Reporting API camelCase).
_URL_FIELDS: Final = {
    "document-uri": "document",
    "documentURL": "document",
    "blocked-uri": "blocked",
    "blockedURL": "blocked",
    "source-file": "source_file",
    "sourceFile": "source_file",
    "referrer": "referrer",
}
_PLAIN_FIELDS: Final = {
    "effective-directive": "effective_directive",
    "effectiveDirective": "effective_directive",
    "violated-directive": "violated_directive",
    "disposition": "disposition",
    "line-number": "line",
    "lineNumber": "line",
    "column-number": "column",
    "columnNumber": "column",
    "status-code": "status_code",
    "statusCode": "status_code",
}


def csp_report_endpoint(max_bytes: int = 8192) -> Any:
    """Return a Starlette endpoint that accepts CSP reports and logs them redacted.

    It answers ``204`` to a valid report, ``413`` to a body over ``max_bytes``, ``415``
    to another content type and ``400`` to a body that is not a report, all as
    problem+json. Each violation is logged as ``csp_violation`` (warning).

    Args:
        max_bytes: Largest body read; browsers send well under 4 KiB per report.
    """
    if not 256 <= max_bytes <= 1_048_576:
        raise ValueError("max_bytes must be between 256 and 1048576")

    async def csp_report(request: Request) -> Response:
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type not in _CONTENT_TYPES:
            raise HardenError(
                ErrorCode.UNSUPPORTED_MEDIA_TYPE,
                status=415,
                detail="Send application/csp-report or application/reports+json.",
            )
        # Bounded before it is read; invalid, badly encoded or 4,000-deep JSON is a 400.
        payload = await read_json(request, max_bytes)
        reports = _reports(payload)
        if reports is None:
            raise HardenError(
                ErrorCode.BAD_REQUEST, status=400, detail="The body is not a CSP report."
            )
        for report in reports[:_MAX_REPORTS_PER_POST]:
            _logger.warning("csp_violation", **_redacted(report))
        if len(reports) > _MAX_REPORTS_PER_POST:
            _logger.warning("csp_reports_dropped", count=len(reports) - _MAX_REPORTS_PER_POST)
        return Response(status_code=204)

    return csp_report


def csp_report_route(path: str = "/csp-report", max_bytes: int = 8192) -> Route:
    """Return the ``POST`` route serving :func:`csp_report_endpoint` at ``path``."""
    return Route(path, csp_report_endpoint(max_bytes), methods=["POST"], include_in_schema=False)


def _reports(payload: Any) -> list[Mapping[str, Any]] | None:
    if isinstance(payload, dict) and isinstance(payload.get("csp-report"), dict):
        return [payload["csp-report"]]
    if isinstance(payload, list) and all(
        isinstance(item, dict) and isinstance(item.get("type"), str) for item in payload
    ):
        # Other report types (deprecation, intervention) may share the endpoint: ignored.
        return [
            item["body"]
            for item in payload
            if item["type"] == "csp-violation" and isinstance(item.get("body"), dict)
        ]
    return None


def _redacted(report: Mapping[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key, name in _URL_FIELDS.items():
        value = report.get(key)
        if isinstance(value, str) and name not in fields:
            fields[name] = _without_query(value)
    for key, name in _PLAIN_FIELDS.items():
        value = report.get(key)
        if name in fields:
            continue
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            fields[name] = value
        elif isinstance(value, str):
            fields[name] = _printable(value)
    sample = report.get("script-sample", report.get("sample"))
    if isinstance(sample, str) and sample:
        fields["sample_length"] = len(sample)  # the sample itself may hold user data
    return fields


def _without_query(value: str) -> str:
    """Keep scheme, host and path of a URL; keywords such as ``inline`` pass as they are."""
    text = _printable(value)
    try:
        parts = urlsplit(text)
    except ValueError:
        return "<unparsable>"
    if not parts.scheme or not parts.netloc:
        return text.split("?", 1)[0].split("#", 1)[0]
    host = parts.hostname or ""
    port = f":{parts.port}" if _port(parts) else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"[:_MAX_FIELD_CHARS]


def _port(parts: Any) -> int | None:
    try:
        port: int | None = parts.port
    except ValueError:
        return None
    return port


def _printable(value: str) -> str:
    return "".join(char if char.isprintable() else "?" for char in value[:_MAX_FIELD_CHARS])
