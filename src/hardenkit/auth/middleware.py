"""AuthMiddleware: every protected request carries a verified JWT bound to its tenant.

For ``http`` and ``websocket`` scopes, outside the public paths:

1. The ``Authorization: Bearer`` header is capped in size and parsed (one header only).
2. :class:`~hardenkit.auth.verifier.JWTVerifier` verifies the token.
3. The tenant is the verified claim. A tenant header (and its aliases), a bound path
   parameter (``tenant_path_params``, default ``tenant_id``) or a bound query parameter
   (``tenant_query_params``, default ``tenant_id``) that says otherwise gets 403
   ``TENANT_MISMATCH``, audited with the tenant asked for and where it was asked.
4. An inactive tenant (per the optional :class:`~hardenkit.auth.tenants.TenantResolver`)
   gets 403.
5. The tenant header is overwritten with the verified value, and the
   :class:`~hardenkit.auth.principal.Principal` goes into ``principal_var`` and
   ``request.state.principal``.

Each refusal emits one audit event and one ``hardenkit.auth.failures`` count. A 401
carries ``WWW-Authenticate: Bearer`` (RFC 6750) and says only ``missing``, ``invalid`` or
``expired``; no response or log line ever holds the token. ``report_only`` lets refused
requests through, logging a warning for each; ``off`` passes everything.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any, Literal
from urllib.parse import parse_qsl

import structlog
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from hardenkit._paths import PathPatterns, route_path
from hardenkit._routes import inner_routes
from hardenkit.auth.apikeys import APIKeyGuard
from hardenkit.auth.claims import MAX_TENANT_LENGTH
from hardenkit.auth.errors import KeysUnavailableError, PublicReason, TokenRejectedError
from hardenkit.auth.principal import Principal
from hardenkit.auth.tenants import TenantStatusCache
from hardenkit.auth.verifier import JWTVerifier
from hardenkit.context import principal_var
from hardenkit.errors import ErrorCode, send_problem
from hardenkit.logs.audit import AuditEventType, audit
from hardenkit.telemetry import auth_failures, tenant_mismatches

__all__ = ["AuthMiddleware", "AuthMode"]

AuthMode = Literal["enforced", "report_only", "off"]

_logger = structlog.get_logger("hardenkit.auth")

_AUTHORIZATION = b"authorization"
_DESCRIPTIONS: dict[PublicReason, str] = {
    "missing": "Authentication is required.",
    "invalid": "The access token is invalid.",
    "expired": "The access token expired.",
}
# Reasons that deserve their own words: the client can fix them.
_REASON_DETAILS = {
    "invalid_tenant_id": "The access token's tenant id is not a valid tenant id "
    "(letters, digits and . _ - : @ only).",
}
_MAX_ROUTE_DEPTH = 8
# Tenants one request may name that are compared and audited. Each source is deduplicated
# and adds at most one value when all agree (header, path, query), so a request naming
# more always names two different tenants and is refused whatever the rest say: capping
# keeps `?tenant_id=` x 2000 against hundreds of memberships from costing a million
# comparisons, and its audit event small.
_MAX_TENANT_REQUESTS = 8


class _RefusalError(Exception):
    """A decision to refuse, with everything the response and the audit event need."""

    def __init__(
        self,
        status: int,
        code: ErrorCode,
        reason: str,
        detail: str,
        *,
        public_reason: PublicReason = "invalid",
        event_type: AuditEventType = AuditEventType.AUTH,
        subject: str | None = None,
        tenant: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.code = code
        self.reason = reason
        self.detail = detail
        self.public_reason: PublicReason = public_reason
        self.event_type = event_type
        self.subject = subject
        self.tenant = tenant
        self.principal: Principal | None = None
        self.details: dict[str, Any] = {}


class AuthMiddleware:
    """Pure ASGI middleware enforcing tenant-bound JWT authentication.

    Args:
        app: The ASGI application to protect.
        verifier: The token verifier. ``None`` (no key source configured) refuses every
            protected request: auth fails closed, it is never silently skipped.
        mode: ``enforced`` (default), ``report_only`` (log and count refusals, let the
            request through) or ``off``.
        public_paths: Paths served without credentials (exact, or prefix with ``*``).
        tenant_header: The header a client may name its tenant in.
        tenant_header_aliases: Other headers read (and overwritten) as the tenant header.
        tenant_path_param: Path parameter checked against the verified tenant (kept
            for compatibility; ``tenant_path_params`` wins when given).
        tenant_path_params: Path parameters checked against the verified tenant.
        tenant_query_params: Query parameters checked against the verified tenant.
        max_header_bytes: Longest ``Authorization`` header accepted.
        tenant_status: Cached :class:`TenantResolver` answers; inactive tenants get 403.
        api_key_guard: Authenticates ``api_key_paths`` by API key instead of a JWT.
        api_key_paths: Paths that take an API key (exact, or prefix with ``*``).

    Raises:
        ValueError: An unknown mode, a bad path pattern or header name, or API-key paths
            without a guard.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        verifier: JWTVerifier | None,
        mode: AuthMode = "enforced",
        public_paths: Iterable[str] = ("/healthz", "/readyz"),
        tenant_header: str = "X-Tenant-ID",
        tenant_header_aliases: Iterable[str] = (),
        tenant_path_param: str = "tenant_id",
        tenant_path_params: Iterable[str] | None = None,
        tenant_query_params: Iterable[str] = ("tenant_id",),
        max_header_bytes: int = 8192,
        tenant_status: TenantStatusCache | None = None,
        api_key_guard: APIKeyGuard | None = None,
        api_key_paths: Iterable[str] = (),
    ) -> None:
        if mode not in ("enforced", "report_only", "off"):
            raise ValueError(f"unknown auth mode {mode!r}")
        if max_header_bytes < 64:
            raise ValueError("max_header_bytes is too small for any bearer token")
        self.app = app
        self.verifier = verifier
        self.mode: AuthMode = mode
        self.public_paths = PathPatterns(public_paths)
        self.api_key_paths = PathPatterns(api_key_paths)
        if self.api_key_paths and api_key_guard is None:
            raise ValueError("api_key_paths need an api_key_guard")
        self.api_key_guard = api_key_guard
        self.tenant_header = tenant_header.lower().encode("latin-1")
        self._tenant_headers = frozenset(
            {self.tenant_header}
            | {alias.lower().encode("latin-1") for alias in tenant_header_aliases}
        )
        self.tenant_path_params = tuple(
            (tenant_path_param,) if tenant_path_params is None else tenant_path_params
        )
        self.tenant_query_params = frozenset(tenant_query_params)
        self._query_names = tuple(name.encode() for name in self.tenant_query_params)
        self.max_header_bytes = max_header_bytes
        self.tenant_status = tenant_status
        if mode == "off":
            _logger.warning("auth_disabled", mode=mode)
        elif verifier is None:
            _logger.warning("auth_without_key_source_refuses_every_protected_request")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection."""
        kind = scope["type"]
        if kind not in ("http", "websocket") or self.mode == "off":
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        if self.public_paths.matches(path):
            await self.app(scope, receive, send)
            return
        try:
            if self.api_key_paths and self.api_key_paths.matches(path):
                principal = self._api_key_principal(scope)
                new_scope = scope
            else:
                principal, new_scope = await self._authenticate(scope)
        except _RefusalError as refusal:
            self._record(refusal, path)
            if self.mode == "enforced":
                await self._deny(scope, send, refusal)
                return
            _logger.warning(
                "auth_report_only_let_through",
                reason=refusal.reason,
                path=path,
                status_if_enforced=refusal.status,
            )
            if refusal.principal is None:
                await self.app(scope, receive, send)
                return
            principal, new_scope = refusal.principal, scope
        new_scope.setdefault("state", {})["principal"] = principal
        token = principal_var.set(principal)
        try:
            await self.app(new_scope, receive, send)
        finally:
            principal_var.reset(token)

    def _api_key_principal(self, scope: Scope) -> Principal:
        assert self.api_key_guard is not None  # noqa: S101 - checked at construction
        try:
            return self.api_key_guard.authenticate_headers(scope.get("headers", ()))
        except TokenRejectedError as rejected:
            raise _RefusalError(
                401,
                ErrorCode.AUTHENTICATION_ERROR,
                rejected.reason,
                "A valid API key is required.",
                public_reason=rejected.public_reason,
            ) from None

    async def _authenticate(self, scope: Scope) -> tuple[Principal, Scope]:
        headers: Sequence[tuple[bytes, bytes]] = scope.get("headers", ())
        authorization: list[bytes] = []
        tenant_values: list[bytes] = []
        for name, value in headers:
            if name == _AUTHORIZATION:
                authorization.append(value)
            elif name in self._tenant_headers:
                tenant_values.append(value)
        token = self._bearer_token(authorization)
        principal = await self._verify(token)
        principal = await self._bind_tenant(scope, principal, tenant_values)
        tenant = principal.tenant
        if tenant is None or self.mode == "report_only":
            # report_only observes; it does not change what the application sees.
            return principal, scope
        new_headers = [(name, value) for name, value in headers if name not in self._tenant_headers]
        new_headers.append((self.tenant_header, tenant.encode("utf-8")))
        new_scope = dict(scope)
        new_scope["headers"] = new_headers
        return principal, new_scope

    def _bearer_token(self, values: list[bytes]) -> bytes:
        if not values:
            raise self._unauthenticated(TokenRejectedError("missing", "missing"))
        if len(values) > 1:
            raise self._unauthenticated(TokenRejectedError("ambiguous_credentials"))
        value = values[0]
        if len(value) > self.max_header_bytes:
            raise self._unauthenticated(TokenRejectedError("header_too_large"))
        scheme, _, token = value.partition(b" ")
        token = token.strip(b" ")
        if scheme.lower() != b"bearer" or not token or b" " in token:
            raise self._unauthenticated(TokenRejectedError("malformed_header"))
        return token

    async def _verify(self, token: bytes) -> Principal:
        if self.verifier is None:
            raise self._unauthenticated(TokenRejectedError("no_key_source"))
        try:
            return await self.verifier.verify(token)
        except KeysUnavailableError as unavailable:
            raise _RefusalError(
                503,
                ErrorCode.SERVICE_UNAVAILABLE,
                unavailable.reason,
                "Credentials cannot be checked right now; retry shortly.",
            ) from None
        except TokenRejectedError as rejected:
            raise self._unauthenticated(rejected) from None

    @staticmethod
    def _unauthenticated(rejected: TokenRejectedError) -> _RefusalError:
        return _RefusalError(
            401,
            ErrorCode.AUTHENTICATION_ERROR,
            rejected.reason,
            _REASON_DETAILS.get(rejected.reason, _DESCRIPTIONS[rejected.public_reason]),
            public_reason=rejected.public_reason,
        )

    async def _bind_tenant(
        self, scope: Scope, principal: Principal, header_values: list[bytes]
    ) -> Principal:
        requests = self._requested_tenants(scope, header_values)
        # A list, not a generator: every membership is compared, whatever matches.
        for source, value in requests:
            if not any([_same(value, member) for member in principal.tenants]):  # noqa: C419
                raise self._mismatch(principal, source, requests, value)
        distinct = {value for _, value in requests}
        if len(distinct) > 1:
            # Each names a tenant of the token, but not the same one: which is meant?
            source, value = next((s, v) for s, v in requests if v != requests[0][1])
            raise self._mismatch(principal, source, requests, value, conflict=True)
        if requests:
            tenant = requests[0][1]
        elif principal.tenant is not None:
            tenant = principal.tenant
        else:
            raise _RefusalError(
                403,
                ErrorCode.AUTHORIZATION_ERROR,
                "tenant_not_selected",
                "Name the tenant to act for in the tenant header.",
                subject=principal.subject,
            )
        if tenant != principal.tenant:
            principal = replace(principal, tenant=tenant)
        await self._check_active(principal, tenant)
        return principal

    def _requested_tenants(self, scope: Scope, header_values: list[bytes]) -> list[tuple[str, str]]:
        """Every tenant the request names, with where: header, path or query."""
        # Header bytes read as UTF-8 (a valid tenant id is ASCII, so any reading of a
        # valid one agrees); anything else is shown as the client meant it, never as
        # latin-1 mojibake, and can match no tenant.
        requests = [
            ("header", value.decode("utf-8", "replace")) for value in dict.fromkeys(header_values)
        ]
        requests += [("path", value) for value in self._path_tenants(scope)]
        query_string: bytes = scope.get("query_string", b"")
        # Only a query that may hold a bound name is parsed (an encoded name has a `%`).
        if query_string and (
            b"%" in query_string or any(name in query_string for name in self._query_names)
        ):
            # Parsed as Starlette's QueryParams parses it, so the app reads what was checked.
            values = [
                value
                for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
                if name in self.tenant_query_params
            ]
            requests += [("query", value) for value in dict.fromkeys(values)]
        return requests[:_MAX_TENANT_REQUESTS]

    async def _check_active(self, principal: Principal, tenant: str) -> None:
        if self.tenant_status is None:
            return
        try:
            active = await self.tenant_status.is_active(tenant)
        except Exception as error:  # noqa: BLE001 - unknown status fails closed
            _logger.warning("tenant_status_unavailable", error=type(error).__name__)
            raise _RefusalError(
                503,
                ErrorCode.SERVICE_UNAVAILABLE,
                "tenant_status_unavailable",
                "The tenant cannot be checked right now; retry shortly.",
                subject=principal.subject,
                tenant=tenant,
            ) from None
        if not active:
            refusal = _RefusalError(
                403,
                ErrorCode.AUTHORIZATION_ERROR,
                "tenant_inactive",
                "This tenant may not use the service.",
                subject=principal.subject,
                tenant=tenant,
            )
            refusal.principal = principal
            raise refusal

    def _mismatch(
        self,
        principal: Principal,
        source: str,
        requests: list[tuple[str, str]],
        requested: str,
        *,
        conflict: bool = False,
    ) -> _RefusalError:
        tenant_mismatches.add(1, {"source": source, "mode": self.mode})
        if source == "header" and sum(name == "header" for name, _ in requests) > 1:
            reason = "conflicting_tenant_headers"
        elif conflict:
            reason = "conflicting_tenant_requests"
        else:
            reason = f"tenant_{source}_mismatch"
        refusal = _RefusalError(
            403,
            ErrorCode.TENANT_MISMATCH,
            reason,
            "The tenant of the request does not match the credential.",
            event_type=AuditEventType.TENANT_MISMATCH,
            subject=principal.subject,
            tenant=principal.tenant,
        )
        refusal.principal = principal
        refusal.details["requested_tenant"] = requested[:MAX_TENANT_LENGTH]
        refusal.details["requested_from"] = source
        if len(requests) > 1:
            refusal.details["requested_tenants"] = [
                {"from": name, "tenant": value[:MAX_TENANT_LENGTH]} for name, value in requests
            ]
        return refusal

    def _path_tenants(self, scope: Scope) -> list[str]:
        if not self.tenant_path_params:
            return []
        app = scope.get("app")
        router = getattr(app, "router", None)
        routes = getattr(router, "routes", None)
        if not routes:
            return []
        params = _match_path_params(routes, scope, 0)
        if not params:
            return []
        values = (params.get(name) for name in self.tenant_path_params)
        return list(dict.fromkeys(str(value) for value in values if value is not None))

    def _record(self, refusal: _RefusalError, path: str) -> None:
        outcome = "denied" if self.mode == "enforced" else "report_only_allowed"
        auth_failures.add(1, {"reason": refusal.reason, "mode": self.mode})
        audit(
            refusal.event_type,
            outcome,
            reason=refusal.reason,
            actor=refusal.subject,
            tenant=refusal.tenant,
            details={"path": path, "status": refusal.status, **refusal.details},
        )

    async def _deny(self, scope: Scope, send: Send, refusal: _RefusalError) -> None:
        headers: list[tuple[bytes, bytes]] = []
        if refusal.status == 401:
            headers.append((b"www-authenticate", _challenge(refusal)))
        elif refusal.status == 503:
            headers.append((b"retry-after", b"5"))
        await send_problem(
            send, scope, refusal.status, refusal.code, detail=refusal.detail, headers=headers
        )


def _same(left: str, right: str) -> bool:
    return hmac.compare_digest(left.encode("utf-8"), right.encode("utf-8"))


def _challenge(refusal: _RefusalError) -> bytes:
    if refusal.reason in ("missing_api_key", "bad_api_key"):
        return b"ApiKey"
    if refusal.public_reason == "missing":
        return b'Bearer realm="api"'
    description = _DESCRIPTIONS[refusal.public_reason]
    return f'Bearer realm="api", error="invalid_token", error_description="{description}"'.encode()


def _match_path_params(routes: Sequence[Any], scope: Scope, depth: int) -> dict[str, Any] | None:
    """Find the path parameters the router will give this request, without routing it."""
    for route in routes:
        matches = getattr(route, "matches", None)
        if matches is None:
            continue
        match, child = matches(scope)
        if match is not Match.FULL:
            continue
        params = dict((child or {}).get("path_params") or {})
        inner = inner_routes(route)
        if inner and depth < _MAX_ROUTE_DEPTH:
            nested = _match_path_params(inner, {**scope, **child}, depth + 1)
            if nested:
                params.update(nested)
        return params
    return None
