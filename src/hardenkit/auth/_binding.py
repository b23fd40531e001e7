"""Tenant binding: the tenant a request acts for is one the verified credential holds.

A request names tenants in the tenant header (and its aliases), in bound path parameters
and in bound query parameters. Every one must be a tenant of the principal, and all must
agree; with none named, the token's own tenant is used. An inactive tenant (per the
optional :class:`~hardenkit.auth.tenants.TenantStatusCache`) is refused.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import replace
from urllib.parse import parse_qsl

import structlog
from starlette.types import Scope

from hardenkit.auth._refusal import AuthRefusedError, unavailable
from hardenkit.auth._route_params import RouteParamNames, route_path_params
from hardenkit.auth.claims import MAX_TENANT_LENGTH
from hardenkit.auth.errors import RefusalReason
from hardenkit.auth.principal import Principal
from hardenkit.auth.tenants import TenantStatusCache
from hardenkit.errors import ErrorCode
from hardenkit.logs.audit import AuditEventType

__all__ = ["TenantBinding"]

_logger = structlog.get_logger("hardenkit.auth")

# Tenants one request may name that are compared and audited. Each source is deduplicated
# and adds at most one value when all agree (header, path, query), so a request naming
# more always names two different tenants and is refused whatever the rest say: capping
# keeps `?tenant_id=` x 2000 against hundreds of memberships from costing a million
# comparisons, and its audit event small.
_MAX_TENANT_REQUESTS = 8
_MISMATCH = {
    "header": RefusalReason.TENANT_HEADER_MISMATCH,
    "path": RefusalReason.TENANT_PATH_MISMATCH,
    "query": RefusalReason.TENANT_QUERY_MISMATCH,
}


class TenantBinding:
    """Binds a verified principal to the one tenant its request acts for.

    Args:
        path_params: Path parameters checked against the verified tenant.
        query_params: Query parameters checked against the verified tenant.
        tenant_status: Cached tenant activity; inactive tenants get 403.
    """

    def __init__(
        self,
        *,
        path_params: Iterable[str],
        query_params: Iterable[str],
        tenant_status: TenantStatusCache | None,
    ) -> None:
        self.path_params = tuple(path_params)
        self._routes_with_params = RouteParamNames(self.path_params)
        self.query_params = frozenset(query_params)
        self._query_names = tuple(name.encode() for name in self.query_params)
        self.tenant_status = tenant_status

    async def bind(
        self, scope: Scope, principal: Principal, header_values: list[bytes]
    ) -> Principal:
        """Return ``principal`` acting for the requested tenant.

        Raises:
            AuthRefusedError: A tenant the credential does not hold, tenants that
                disagree, no tenant at all, or an inactive or unknown-status tenant.
        """
        requests = self.requested_tenants(scope, header_values)
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
            raise AuthRefusedError(
                403,
                ErrorCode.AUTHORIZATION_ERROR,
                RefusalReason.TENANT_NOT_SELECTED,
                "Name the tenant to act for in the tenant header.",
                subject=principal.subject,
            )
        if tenant != principal.tenant:
            principal = replace(principal, tenant=tenant)
        await self._check_active(principal, tenant)
        return principal

    def requested_tenants(self, scope: Scope, header_values: list[bytes]) -> list[tuple[str, str]]:
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
                if name in self.query_params
            ]
            requests += [("query", value) for value in dict.fromkeys(values)]
        return requests[:_MAX_TENANT_REQUESTS]

    def routed_mismatch(self, scope: Scope, principal: Principal) -> AuthRefusedError | None:
        """The refusal for a routed tenant path parameter that is not the principal's.

        ``None`` when every bound path parameter in ``scope["path_params"]`` is
        ``principal``'s tenant, or the router gave none.

        :meth:`bind` finds the path parameters before the request is routed, by
        predicting the route (:func:`~hardenkit.auth._route_params.route_path_params`);
        this reads what the router gave, at the endpoint
        (:mod:`hardenkit.auth._checkpoint`), so a request routed otherwise than
        predicted is refused, not served for the tenant in its path.
        """
        params = scope.get("path_params")
        if not params:
            return None
        for name in self.path_params:
            value = params.get(name)
            if value is None:
                continue
            text = str(value)
            if principal.tenant is None or not _same(text, principal.tenant):
                # A bug in the prediction, or a router it does not know: said loudly.
                _logger.error(
                    "tenant_binding_missed_the_route",
                    param=name,
                    path=scope.get("path"),
                    detail="the router gave a tenant path parameter that binding did not "
                    "check before routing; the request is refused",
                )
                return self._mismatch(principal, "path", [("path", text)], text)
        return None

    def _path_tenants(self, scope: Scope) -> list[str]:
        values: list[object] = []
        # Routed already, outside this app: a Mount("/tenants/{tenant_id}", app=api)
        # around the app install() hardened, whose own routes name no tenant.
        incoming = scope.get("path_params")
        if incoming:
            values += [incoming.get(name) for name in self.path_params]
        if self._routes_with_params.in_app_of(scope):
            params = route_path_params(scope)
            if params:
                values += [params.get(name) for name in self.path_params]
        return list(dict.fromkeys(str(value) for value in values if value is not None))

    async def _check_active(self, principal: Principal, tenant: str) -> None:
        if self.tenant_status is None:
            return
        try:
            active = await self.tenant_status.is_active(tenant)
        except Exception as error:  # noqa: BLE001 - unknown status fails closed
            _logger.warning("tenant_status_unavailable", error=type(error).__name__)
            raise unavailable(
                RefusalReason.TENANT_STATUS_UNAVAILABLE,
                "The tenant cannot be checked right now; retry shortly.",
                subject=principal.subject,
                tenant=tenant,
            ) from None
        if not active:
            raise AuthRefusedError(
                403,
                ErrorCode.AUTHORIZATION_ERROR,
                RefusalReason.TENANT_INACTIVE,
                "This tenant may not use the service.",
                subject=principal.subject,
                tenant=tenant,
                principal=principal,
            )

    @staticmethod
    def _mismatch(
        principal: Principal,
        source: str,
        requests: list[tuple[str, str]],
        requested: str,
        *,
        conflict: bool = False,
    ) -> AuthRefusedError:
        if source == "header" and sum(name == "header" for name, _ in requests) > 1:
            reason = RefusalReason.CONFLICTING_TENANT_HEADERS
        elif conflict:
            reason = RefusalReason.CONFLICTING_TENANT_REQUESTS
        else:
            reason = _MISMATCH[source]
            _say_if_spelled_otherwise(principal, source, requested)
        refusal = AuthRefusedError(
            403,
            ErrorCode.TENANT_MISMATCH,
            reason,
            "The tenant of the request does not match the credential.",
            event_type=AuditEventType.TENANT_MISMATCH,
            subject=principal.subject,
            tenant=principal.tenant,
            principal=principal,
        )
        refusal.details["requested_tenant"] = requested[:MAX_TENANT_LENGTH]
        refusal.details["requested_from"] = source
        if len(requests) > 1:
            refusal.details["requested_tenants"] = [
                {"from": name, "tenant": value[:MAX_TENANT_LENGTH]} for name, value in requests
            ]
        return refusal


def _say_if_spelled_otherwise(principal: Principal, source: str, requested: str) -> None:
    """Warn when a refused tenant is one of the credential's in another letter case.

    Tenants compare exactly: an identity provider may hold ``Acme`` and ``acme`` (or a
    UUID in upper and in lower case) as two tenants, so equal-but-for-case is refused.
    Said, because it is often not an attack but a route's converter: ``{tenant_id:uuid}``
    prints lower case whatever the path or the claim say.
    """
    folded = requested.casefold()
    if any(member.casefold() == folded for member in principal.tenants):
        _logger.warning(
            "tenant_named_in_another_case",
            requested_from=source,
            detail="refused: the request names a tenant of the credential in another "
            "letter case, and tenants compare exactly (a {tenant_id:uuid} route reads "
            "lower case); issue the claim as the paths spell it, or use an untyped "
            "path parameter",
        )


def _same(left: str, right: str) -> bool:
    return hmac.compare_digest(left.encode("utf-8"), right.encode("utf-8"))
