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

This module is the ASGI flow; the header is parsed in ``_bearer``, the tenant bound in
``_binding`` (which finds path parameters through ``_route_params``, the one place that
knows how Starlette and FastAPI route), and a refusal is an ``_refusal.AuthRefusedError``
turned into a :class:`~hardenkit.errors.Refusal` when it is sent.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Literal

import structlog
from starlette.types import ASGIApp, Receive, Scope, Send

from hardenkit._late import JUDGED_KEY
from hardenkit._marks import PUBLIC, MarkedRoutes
from hardenkit._paths import PathPatterns, route_path
from hardenkit.auth._bearer import bearer_token
from hardenkit.auth._binding import TenantBinding
from hardenkit.auth._checkpoint import Checkpoints, Judge, Verdict, judged, verdicts_var
from hardenkit.auth._override import PRINCIPAL_OVERRIDE
from hardenkit.auth._refusal import (
    AuthRefusedError,
    record_refusal,
    unauthenticated,
    unavailable,
)
from hardenkit.auth.apikeys import APIKeyGuard
from hardenkit.auth.errors import KeysUnavailableError, RefusalReason, TokenRejectedError
from hardenkit.auth.principal import Principal
from hardenkit.auth.tenants import TenantStatusCache
from hardenkit.auth.verifier import JWTVerifier
from hardenkit.context import FACTS_KEY, REQUESTS, own_facts, principal_var
from hardenkit.errors import send_refusal

__all__ = ["AuthMiddleware", "AuthMode"]

AuthMode = Literal["enforced", "report_only", "off"]

_logger = structlog.get_logger("hardenkit.auth")

_AUTHORIZATION = b"authorization"


class AuthMiddleware:
    """Pure ASGI middleware enforcing tenant-bound JWT authentication.

    Args:
        app: The ASGI application to protect.
        verifier: The token verifier. ``None`` (no key source configured) refuses every
            protected request: auth fails closed, it is never silently skipped.
        mode: ``enforced`` (default), ``report_only`` (log and count refusals, let the
            request through) or ``off``.
        public_paths: Paths served without credentials (exact, or prefix with ``*``);
            routes whose endpoint is marked ``@public()`` are served the same way.
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
        self.public_routes = MarkedRoutes(PUBLIC)
        self.api_key_paths = PathPatterns(api_key_paths, any_case=True)
        if self.api_key_paths and api_key_guard is None:
            raise ValueError("api_key_paths need an api_key_guard")
        self.api_key_guard = api_key_guard
        self.tenant_header = tenant_header.lower().encode("latin-1")
        # Compared with `_` read as `-` (_dashed): one header to a WSGI app or Django.
        self._tenant_headers = frozenset(
            _dashed(name.lower().encode("latin-1"))
            for name in (tenant_header, *tenant_header_aliases)
        )
        self.binding = TenantBinding(
            path_params=(tenant_path_param,) if tenant_path_params is None else tenant_path_params,
            query_params=tenant_query_params,
            tenant_status=tenant_status,
        )
        self._checkpoints = Checkpoints()
        self._judge = Judge(
            self.public_paths,
            self.binding.routed_mismatch,
            self._refuse_at,
            self._principal_of,
            self.api_key_paths,
        )
        self.max_header_bytes = max_header_bytes
        if mode == "off":
            _logger.warning("auth_disabled", mode=mode)
        elif verifier is None:
            _logger.warning("auth_without_key_source_refuses_every_protected_request")

    @property
    def tenant_path_params(self) -> tuple[str, ...]:
        """Path parameters checked against the verified tenant."""
        return self.binding.path_params

    @property
    def tenant_query_params(self) -> frozenset[str]:
        """Query parameters checked against the verified tenant."""
        return self.binding.query_params

    @property
    def tenant_status(self) -> TenantStatusCache | None:
        """Cached tenant activity, if any."""
        return self.binding.tenant_status

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection."""
        if scope["type"] not in REQUESTS or self.mode == "off":
            await self.app(scope, receive, send)
            return
        if FACTS_KEY not in scope:  # the first hardenkit layer of this request
            await own_facts(self, scope, receive, send)
            return
        if (verdicts_var.get() or principal_var.get() is not None) and _inherited(scope):
            await self._afresh(scope, receive, send)
            return
        path = route_path(scope)
        enforced = self.mode == "enforced"
        if enforced:
            self._checkpoints.ensure(scope)
        if self.public_paths.matches(path) or self.public_routes.matches(scope):
            await self._public(scope, receive, send, enforced=enforced)
            return
        try:
            principal, new_scope = await self._principal_of(scope, path)
        except AuthRefusedError as refused:
            if enforced:
                await self._refuse(send, scope, refused, path)
                return
            let_through = self._let_through(refused, path)
            if let_through is None:
                await self.app(scope, receive, send)
                return
            principal, new_scope = let_through, scope
        await self._serve(new_scope, receive, send, principal, enforced=enforced)

    async def _public(self, scope: Scope, receive: Receive, send: Send, *, enforced: bool) -> None:
        """Serve a request to a public path (held to a public endpoint when enforced)."""
        if not enforced:
            await self.app(scope, receive, send)
            return
        # The endpoint reached must be public too (see _checkpoint).
        verdict_token = judged(self._verdict(scope, None))
        try:
            await self.app(scope, receive, send)
        finally:
            verdicts_var.reset(verdict_token)

    async def _afresh(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a request that inherited another request's verdicts or principal.

        uvicorn starts a pipelined request from inside the previous one's last send, so
        its task copies that request's context: its principal and verdicts. Only this
        request's own (an outer AuthMiddleware's, for an app mounted in another) are kept.
        """
        own = _own_verdicts(scope)
        principals = [verdict[1] for verdict in own if verdict[1] is not None]
        verdicts_token = verdicts_var.set(own)
        principal_token = principal_var.set(principals[-1] if principals else None)
        try:
            await self(scope, receive, send)
        finally:
            principal_var.reset(principal_token)
            verdicts_var.reset(verdicts_token)

    def _verdict(self, scope: Scope, principal: Principal | None) -> Verdict:
        """What the endpoint reached holds the request to (see ``_checkpoint``).

        With the scope passed on, where the layers note what they judged: a middleware
        below that rebuilds the scope cannot make the endpoint forget them.
        """
        if JUDGED_KEY not in scope:
            scope[JUDGED_KEY] = []  # the layers below note into this one list
        return (self._judge, principal, scope.get("root_path", ""), scope.get("path"), scope)

    def _let_through(self, refused: AuthRefusedError, path: str) -> Principal | None:
        """``report_only``: record what would have been refused; the principal, if any."""
        self._record(refused, path)
        _logger.warning(
            "auth_report_only_let_through",
            reason=str(refused.reason),  # a plain string: the redactor hides BAD_API_KEY
            path=path,
            status_if_enforced=refused.status,
        )
        return refused.principal

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        principal: Principal,
        *,
        enforced: bool,
    ) -> None:
        scope.setdefault("state", {})["principal"] = principal
        verdict_token = judged(self._verdict(scope, principal)) if enforced else None
        token = principal_var.set(principal)
        try:
            await self.app(scope, receive, send)
        finally:
            principal_var.reset(token)
            if verdict_token is not None:
                verdicts_var.reset(verdict_token)

    async def _refuse(self, send: Send, scope: Scope, refused: AuthRefusedError, path: str) -> None:
        on_sent = functools.partial(self._record, refused, path)
        await send_refusal(send, scope, refused.refusal(on_sent))

    async def _refuse_at(self, send: Send, scope: Scope, refused: AuthRefusedError) -> None:
        await self._refuse(send, scope, refused, route_path(scope))

    async def _principal_of(self, scope: Scope, path: str) -> tuple[Principal, Scope]:
        """The request's principal, bound to its tenant, and the scope to serve it with."""
        if self.api_key_paths and self.api_key_paths.matches(path):
            return await self._api_key_principal_bound(scope), scope
        return await self._authenticate(scope)

    async def _api_key_principal_bound(self, scope: Scope) -> Principal:
        """The key's principal, refused (403) for a request that names a tenant.

        A key acts for no tenant: a tenant in the header, path or query would otherwise
        pass through unchecked, the client's choice (a new-user review read every
        tenant's `/api/tenants/{tenant_id}/items` with one partner key).
        """
        principal = self._api_key_principal(scope)
        tenant_headers = self._tenant_headers
        tenant_values = [
            value
            for name, value in scope.get("headers", ())
            if name in tenant_headers or (b"_" in name and _dashed(name) in tenant_headers)
        ]
        if self.binding.requested_tenants(scope, tenant_values):
            # Judged as a token's would be: a tenant the credential does not hold is 403.
            principal = await self.binding.bind(scope, principal, tenant_values)
        return principal

    def _api_key_principal(self, scope: Scope) -> Principal:
        assert self.api_key_guard is not None  # noqa: S101 - checked at construction
        override = PRINCIPAL_OVERRIDE.principal  # hardenkit.testing.override_principal()
        if override is not None:
            return override
        try:
            return self.api_key_guard.authenticate_headers(scope.get("headers", ()))
        except TokenRejectedError as rejected:
            raise unauthenticated(rejected, "A valid API key is required.") from None

    async def _authenticate(self, scope: Scope) -> tuple[Principal, Scope]:
        headers: Sequence[tuple[bytes, bytes]] = scope.get("headers", ())
        authorization: list[bytes] = []
        tenant_values: list[bytes] = []
        tenant_headers = self._tenant_headers
        for name, value in headers:
            if name == _AUTHORIZATION:
                authorization.append(value)
            elif name in tenant_headers or (b"_" in name and _dashed(name) in tenant_headers):
                tenant_values.append(value)
        override = PRINCIPAL_OVERRIDE.principal  # hardenkit.testing.override_principal()
        principal = (
            override
            if override is not None
            else await self._verify(bearer_token(authorization, self.max_header_bytes))
        )
        principal = await self.binding.bind(scope, principal, tenant_values)
        tenant = principal.tenant
        if tenant is None or self.mode == "report_only":
            # report_only observes; it does not change what the application sees.
            return principal, scope
        new_headers = [
            (name, value)
            for name, value in headers
            if name not in tenant_headers and not (b"_" in name and _dashed(name) in tenant_headers)
        ]
        new_headers.append((self.tenant_header, tenant.encode("utf-8")))
        return principal, {**scope, "headers": new_headers}

    async def _verify(self, token: bytes) -> Principal:
        if self.verifier is None:
            raise unauthenticated(TokenRejectedError(RefusalReason.NO_KEY_SOURCE))
        try:
            return await self.verifier.verify(token)
        except KeysUnavailableError as keys_unavailable:
            raise unavailable(
                keys_unavailable.reason,
                "Credentials cannot be checked right now; retry shortly.",
                retry_after=keys_unavailable.retry_after,
            ) from None
        except TokenRejectedError as rejected:
            raise unauthenticated(rejected) from None

    def _record(self, refused: AuthRefusedError, path: str) -> None:
        """Count and audit one refusal, sent (enforced) or let through (report_only)."""
        record_refusal(refused, path, self.mode)


def _own_verdicts(scope: Scope) -> tuple[Verdict, ...]:
    """The verdicts of this request, told by the list the layers note into.

    Copies of a scope share it, and every verdict's scope holds it (an outer
    AuthMiddleware creates it); another request, even on the same connection, has its
    own.
    """
    notes = scope.get(JUDGED_KEY)
    if notes is None:
        return ()
    return tuple(verdict for verdict in verdicts_var.get() if verdict[4].get(JUDGED_KEY) is notes)


def _inherited(scope: Scope) -> bool:
    """Whether the context holds another request's verdicts or principal."""
    own = _own_verdicts(scope)
    if len(own) != len(verdicts_var.get()):
        return True
    return principal_var.get() is not None and all(verdict[1] is None for verdict in own)


def _dashed(name: bytes) -> bytes:
    """A header name as a CGI-style environ reads it: ``_`` and ``-`` alike (here, ``-``).

    Starlette's ``WSGIMiddleware``, a2wsgi and Django's ASGI handler read ``X_Tenant_ID``
    and ``X-Tenant-ID`` as one ``HTTP_X_TENANT_ID`` and join their values with a comma: a
    client's ``X_Tenant_ID: globex`` beside the verified ``X-Tenant-ID: acme`` gave a
    mounted WSGI app ``globex,acme`` (an attacker round). Every spelling is read and
    checked as the tenant header, then removed.
    """
    return name.replace(b"_", b"-")
