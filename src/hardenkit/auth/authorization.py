"""``require_roles`` / ``require_scopes``: route-level checks on the verified principal."""

from __future__ import annotations

import functools
from collections.abc import Iterable

from starlette.requests import HTTPConnection

from hardenkit.auth._guard import EndpointGuard
from hardenkit.auth._refusal import AuthRefusedError, record_refusal
from hardenkit.auth.errors import RefusalReason
from hardenkit.auth.principal import Principal
from hardenkit.context import principal_var
from hardenkit.errors import ErrorCode, HardenError

__all__ = [
    "Requirement",
    "authentication_required",
    "principal_of",
    "require_roles",
    "require_scopes",
]


def principal_of(connection: HTTPConnection) -> Principal | None:
    """Return the verified principal of a request, or ``None``."""
    state = connection.scope.get("state")
    principal = state.get("principal") if isinstance(state, dict) else None
    if isinstance(principal, Principal):
        return principal
    return principal_var.get()


def _missing_principal() -> AuthRefusedError:
    return AuthRefusedError(
        401,
        ErrorCode.AUTHENTICATION_ERROR,
        RefusalReason.MISSING,
        "Authentication is required.",
        public_reason="missing",
        challenge="Bearer",
    )


def authentication_required(path: str) -> HardenError:
    """The 401 for a request that reached a handler needing a principal without one.

    Counted and audited as an auth refusal when it is sent.
    """
    refused = _missing_principal()
    return refused.refusal(functools.partial(record_refusal, refused, path)).error()


class Requirement(EndpointGuard):
    """The principal must hold every one (or, with ``any_of``, one) of some roles/scopes.

    Use :func:`require_roles` or :func:`require_scopes` to build one.
    """

    # What the OpenAPI document of an installed FastAPI app lists for a route using it.
    hardenkit_responses = (401, 403)

    def __init__(self, kind: str, required: Iterable[str], *, any_of: bool = False) -> None:
        self.kind = kind
        self.required = frozenset(required)
        self.any_of = any_of
        if not self.required:
            raise ValueError(f"require at least one of the {kind}")

    def __repr__(self) -> str:
        return f"require_{self.kind}({', '.join(sorted(self.required))}, any_of={self.any_of})"

    def check(self, connection: HTTPConnection) -> Principal:
        """Return the principal if it satisfies the requirement.

        Raises:
            HardenError: 401 ``AUTHENTICATION_ERROR`` without a principal, 403
                ``AUTHORIZATION_ERROR`` when a role or scope is missing.
        """
        principal = principal_of(connection)
        if principal is None:
            refused = _missing_principal()
        else:
            held = principal.roles if self.kind == "roles" else principal.scopes
            allowed = bool(held & self.required) if self.any_of else self.required <= held
            if allowed:
                return principal
            refused = self._missing(principal)
        on_sent = functools.partial(record_refusal, refused, connection.url.path)
        raise refused.refusal(on_sent).error()

    def _missing(self, principal: Principal) -> AuthRefusedError:
        refused = AuthRefusedError(
            403,
            ErrorCode.AUTHORIZATION_ERROR,
            RefusalReason(f"missing_{self.kind}"),
            f"The caller lacks a required {self.kind[:-1]}.",
            subject=principal.subject,
            tenant=principal.tenant,
            challenge=(
                f'Bearer error="insufficient_scope", scope="{" ".join(sorted(self.required))}"'
                if self.kind == "scopes"
                else None
            ),
        )
        refused.details["required"] = sorted(self.required)
        return refused


def require_roles(*roles: str, any_of: bool = False) -> Requirement:
    """Require roles of the verified principal.

    Use it as a Starlette endpoint decorator (``@require_roles("admin")``) or a FastAPI
    dependency (``Depends(require_roles("admin"))``, which also hands you the principal).

    Args:
        roles: The roles required.
        any_of: Accept a principal holding any one of them instead of all.
    """
    return Requirement("roles", roles, any_of=any_of)


def require_scopes(*scopes: str, any_of: bool = False) -> Requirement:
    """Require OAuth scopes of the verified principal; see :func:`require_roles`.

    A 403 carries ``WWW-Authenticate: Bearer error="insufficient_scope"`` (RFC 6750).
    """
    return Requirement("scopes", scopes, any_of=any_of)
