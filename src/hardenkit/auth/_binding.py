"""Tenant binding: the tenant a request acts for is one the verified credential holds.

A request names tenants in the tenant header (and its aliases), in bound path parameters
and in bound query parameters. Every one must be a tenant of the principal, and all must
agree; with none named, the token's own tenant is used. An inactive tenant (per the
optional :class:`~hardenkit.auth.tenants.TenantStatusCache`) is refused.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Collection, Iterable
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
        requests = self.requested_tenants(scope, header_values, principal.tenants)
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

    def requested_tenants(
        self, scope: Scope, header_values: list[bytes], members: Collection[str] = ()
    ) -> list[tuple[str, str]]:
        """Every tenant the request names, with where: header, path or query.

        A typed path parameter is spelled as the membership of ``members`` it names, if
        any (:func:`_as_member`).
        """
        # Header bytes read as UTF-8 (a valid tenant id is ASCII, so any reading of a
        # valid one agrees); anything else is shown as the client meant it, never as
        # latin-1 mojibake, and can match no tenant.
        requests = [
            ("header", value.decode("utf-8", "replace")) for value in dict.fromkeys(header_values)
        ]
        requests += [
            ("path", text)
            for text in dict.fromkeys(
                _as_member(value, members) for value in self._path_tenants(scope)
            )
        ]
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
            tenant = principal.tenant
            text = _as_member(value, () if tenant is None else (tenant,))
            if tenant is None or not _same(text, tenant):
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

    def _path_tenants(self, scope: Scope) -> list[object]:
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
        return [value for value in values if value is not None]

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


def _same(left: str, right: str) -> bool:
    return hmac.compare_digest(left.encode("utf-8"), right.encode("utf-8"))


def _as_member(value: object, members: Collection[str]) -> str:
    """The tenant a routed path parameter names, spelled as the membership that holds it.

    A converter hands the handler a typed value, and that is the tenant the handler acts
    for. A ``{tenant_id:uuid}`` value is a UUID, which is the same UUID in either case
    (RFC 9562), so a membership spelled in upper case names the lower-case path. The
    exact spelling wins; a UUID two memberships spell is left as the converter prints it,
    and refused unless that is one of them: the tenant meant is not guessed. Every other
    value compares as the text it prints: ``{tenant_id:int}`` gives ``7`` for ``/007``,
    and a claim ``007`` is refused there, since an identity provider may hold ``007``
    and ``7`` as two tenants.
    """
    text = str(value)
    if not isinstance(value, uuid.UUID):
        return text
    if any([_same(text, member) for member in members]):  # noqa: C419 - compare all
        return text
    named = [member for member in members if _uuid_or_none(member) == value]
    return named[0] if len(named) == 1 else text


def _uuid_or_none(text: str) -> uuid.UUID | None:
    """The UUID ``text`` spells in the hyphenated form a path carries, else ``None``."""
    if len(text) != _UUID_LENGTH or text.count("-") != _UUID_HYPHENS:
        return None
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


_UUID_LENGTH = 36
_UUID_HYPHENS = 4
