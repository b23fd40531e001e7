"""The OpenAPI document of a FastAPI app, made to say what the hardened app really answers.

FastAPI documents what the handlers declare; the layers around them answer too, with
``application/problem+json`` bodies it does not know about. :func:`document_errors`
(called by :func:`hardenkit.install` for any app with an ``openapi()`` method) wraps the
app's document builder so that the document has:

- one ``Problem`` schema (RFC 9457 plus ``code`` and ``request_id``), and every 422 as a
  problem+json ``Problem`` instead of FastAPI's ``{"detail": [...]}``;
- the bearer scheme (and the API-key scheme when ``HARDENKIT_API_KEY_PATHS`` is set)
  registered once, and required on every protected operation (``require_roles`` /
  ``require_scopes`` list their roles or scopes, as OpenAPI 3.1 allows);
- 401 (with ``WWW-Authenticate``) and 403 on protected operations (while
  ``HARDENKIT_AUTH_MODE=enforced``), 401 on a public one that takes ``CurrentPrincipal``,
  429 on limited ones (the stack's rules or a route limit), whose 2xx and 429 answers
  declare ``RateLimit``/``RateLimit-Policy``, 413 where a body is accepted, 503
  where a dependency of the stack can be down (JWKS, a ``closed`` limit's Redis, the
  replay store), and the timeout's status
  (``HARDENKIT_REQUEST_TIMEOUT_STATUS``) everywhere but the streaming paths.

Which operations are protected, limited or public is read the way the layers decide it:
the same path settings and the ``public()``/``exempt()`` marks on the routes. A response
the app already documents for a status is left as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final

from hardenkit._marks import EXEMPT, PUBLIC, marks_of
from hardenkit._paths import PathPatterns
from hardenkit._routes import RouteInfo, iter_routes
from hardenkit.errors import PROBLEM_CONTENT_TYPE

if TYPE_CHECKING:
    from hardenkit.settings import HardenSettings

__all__ = ["PROBLEM_SCHEMA", "document_errors", "problem_response"]

BEARER: Final = "HTTPBearer"
API_KEY: Final = "APIKeyHeader"
_PROBLEM_REF: Final = {"$ref": "#/components/schemas/Problem"}
_MAX_DEPENDANTS: Final = 1000

PROBLEM_SCHEMA: Final[dict[str, Any]] = {
    "title": "Problem",
    "type": "object",
    "description": (
        "An RFC 9457 problem: every error this service answers, from its handlers or from "
        "the hardening layers, has this shape and `application/problem+json`."
    ),
    "required": ["type", "title", "status", "code", "request_id"],
    "properties": {
        "type": {"type": "string", "description": "URI naming the kind of problem."},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string", "description": "Written for the client."},
        "instance": {"type": "string", "description": "The path (never the query)."},
        "code": {"type": "string", "description": "Stable machine code (`RATE_LIMITED`)."},
        "request_id": {
            "type": ["string", "null"],
            "description": "Ties the answer to the service's log lines.",
        },
        "retry_after": {"type": "integer", "minimum": 1, "description": "Seconds (429)."},
        "errors": {
            "type": "array",
            "description": "What was invalid (422); never the rejected input.",
            "items": {
                "type": "object",
                "required": ["loc", "msg", "type"],
                "properties": {
                    "loc": {"type": "array", "items": {"type": "string"}},
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
}

_WHY: Final[dict[int, str]] = {
    401: "No valid credentials (`AUTHENTICATION_ERROR`).",
    403: "The caller may not do this: a missing role or scope, or another tenant "
    "(`AUTHORIZATION_ERROR`, `TENANT_MISMATCH`).",
    413: "The body is larger than the route accepts (`PAYLOAD_TOO_LARGE`).",
    422: "The request is not valid (`VALIDATION_ERROR`); `errors` says where.",
    429: "Too many requests (`RATE_LIMITED`); wait `Retry-After` seconds.",
    503: "A dependency of the service is unavailable; retry later.",
}
_RETRY_AFTER: Final = {
    "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}
}
_WWW_AUTHENTICATE: Final = {
    "WWW-Authenticate": {
        "description": "The scheme to authenticate with (RFC 6750: `Bearer`, with `error`).",
        "schema": {"type": "string"},
    }
}
_RATE_LIMIT: Final = {
    "RateLimit": {
        "description": "What is left of each limit that applied: "
        '`"<name>";r=<remaining>;t=<seconds to a full budget>`, comma-separated.',
        "schema": {"type": "string"},
    },
    "RateLimit-Policy": {
        "description": 'Each limit that applied: `"<name>";q=<quota>;w=<window seconds>`.',
        "schema": {"type": "string"},
    },
}
_BODY_METHODS: Final = frozenset({"post", "put", "patch"})


@dataclass(frozen=True, slots=True)
class _Operation:
    """What the layers and the route's dependencies can answer for one operation."""

    protected: bool
    refused: bool  # protected, and the auth layer refuses (not report_only)
    limited: bool
    statuses: frozenset[int]
    roles: tuple[str, ...]
    api_key: bool


def document_errors(app: Any, settings: HardenSettings) -> None:
    """Make ``app.openapi()`` document the stack's answers (no-op for a non-FastAPI app)."""
    build: Callable[[], dict[str, Any]] | None = getattr(app, "openapi", None)
    if build is None or not hasattr(app, "openapi_schema"):
        return

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            cached: dict[str, Any] = app.openapi_schema
            return cached
        document = build()
        _amend(document, app, settings)
        app.openapi_schema = document
        return document

    app.openapi = openapi


def _amend(document: dict[str, Any], app: Any, settings: HardenSettings) -> None:
    components = document.setdefault("components", {})
    components.setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    auth_on = settings.auth_mode != "off"
    if auth_on:
        schemes = components.setdefault("securitySchemes", {})
        schemes.setdefault(BEARER, {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
        if settings.api_key_paths:
            schemes.setdefault(
                API_KEY, {"type": "apiKey", "in": "header", "name": settings.api_key_header}
            )
    operations = _operations(app, settings)
    streaming = PathPatterns(settings.streaming_paths)
    for path, methods in document.get("paths", {}).items():
        for method, operation in methods.items():
            found = operations.get((path, method.upper()))
            if found is not None and isinstance(operation, dict):
                timeout = None if streaming.matches(path) else settings.request_timeout_status
                _amend_operation(operation, method, found, timeout)
    _drop_unused(
        components.get("schemas", {}), document, ("HTTPValidationError", "ValidationError")
    )


def _amend_operation(
    operation: dict[str, Any], method: str, found: _Operation, timeout_status: int | None
) -> None:
    responses = operation.setdefault("responses", {})
    if "422" in responses:
        responses["422"] = problem_response(422)
    statuses = set(found.statuses)
    if found.refused:
        statuses |= {401, 403}
    if found.protected and "security" not in operation:
        scheme = API_KEY if found.api_key else BEARER
        operation["security"] = [{scheme: list(found.roles)}]
    if found.limited:
        statuses.add(429)
    if method in _BODY_METHODS or "requestBody" in operation:
        statuses.add(413)
    if timeout_status is not None:
        statuses.add(timeout_status)
    for status in sorted(statuses):
        responses.setdefault(str(status), problem_response(status))
    if found.limited:
        for status, response in responses.items():
            if (status.startswith("2") or status == "429") and isinstance(response, dict):
                headers = response.setdefault("headers", {})
                for name, header in _RATE_LIMIT.items():
                    headers.setdefault(name, header)


def problem_response(status: int) -> dict[str, Any]:
    """The OpenAPI response object of a problem+json answer of ``status``."""
    response: dict[str, Any] = {
        "description": _WHY.get(status) or HTTPStatus(status).phrase,
        "content": {PROBLEM_CONTENT_TYPE: {"schema": dict(_PROBLEM_REF)}},
    }
    if status in (429, 503):
        response["headers"] = dict(_RETRY_AFTER)
    if status == 401:
        response["headers"] = dict(_WWW_AUTHENTICATE)
    return response


def _operations(app: Any, settings: HardenSettings) -> dict[tuple[str, str], _Operation]:
    auth_on = settings.auth_mode != "off"
    public = PathPatterns([*settings.public_paths, settings.health_path, settings.ready_path])
    api_key_paths = PathPatterns(settings.api_key_paths)
    exempt = PathPatterns(
        [settings.health_path, settings.ready_path, *settings.rate_limit_exempt_paths]
    )
    keys_can_be_down = settings.jwt_jwks_url is not None
    limits_closed = settings.rate_limit_redis_down == "closed"
    webhooks = PathPatterns(settings.webhook_paths if settings.webhook_secret else ())
    found: dict[tuple[str, str], _Operation] = {}
    for route in iter_routes(app):
        marks = marks_of(route.endpoint)
        calls = list(_dependency_calls(route))
        statuses = {status for call in calls for status in _responses_of(call)}
        roles = tuple(sorted({role for call in calls for role in _required(call)}))
        protected = auth_on and PUBLIC not in marks and not public.matches(route.path)
        limited = EXEMPT not in marks and not exempt.matches(route.path)
        if (protected and keys_can_be_down) or (limited and limits_closed):
            statuses.add(503)
        if webhooks.matches(route.path):
            statuses |= {401, 503}  # an unsigned delivery; the replay store down
        operation = _Operation(
            protected=protected,
            refused=protected and settings.auth_mode == "enforced",
            limited=limited or 429 in statuses,
            statuses=frozenset(statuses),
            roles=roles,
            api_key=api_key_paths.matches(route.path),
        )
        for method in getattr(route.route, "methods", None) or ():
            found[(route.path, method)] = operation
    return found


def _dependency_calls(route: RouteInfo) -> Iterator[Any]:
    """The callables of a FastAPI route's dependencies, at any depth (none for Starlette)."""
    original = getattr(route.route, "original_route", route.route)
    dependant = getattr(original, "dependant", None)
    pending = [dependant] if dependant is not None else []
    seen = 0
    while pending and seen < _MAX_DEPENDANTS:
        current = pending.pop()
        seen += 1
        for dependency in getattr(current, "dependencies", ()):
            call = getattr(dependency, "call", None)
            if call is not None:
                yield call
            pending.append(dependency)


def _responses_of(call: Any) -> tuple[int, ...]:
    statuses = getattr(call, "hardenkit_responses", ())
    return tuple(status for status in statuses if isinstance(status, int))


def _required(call: Any) -> frozenset[str]:
    required = getattr(call, "required", None)
    kind = getattr(call, "kind", None)
    if kind in ("roles", "scopes") and isinstance(required, frozenset):
        return frozenset(str(item) for item in required)
    return frozenset()


def _drop_unused(schemas: dict[str, Any], document: dict[str, Any], names: tuple[str, ...]) -> None:
    """Remove FastAPI's validation schemas once nothing refers to them any more."""
    text = repr(document.get("paths", {})) + repr(
        {name: schema for name, schema in schemas.items() if name not in names}
    )
    for name in names:
        if f"#/components/schemas/{name}'" not in text:
            schemas.pop(name, None)
