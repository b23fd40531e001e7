"""The principal tests put in place of a verified token (``hardenkit.testing``).

Process-wide, as stamina's testing switch: a test client serves the app in another
thread, where the test's context variables do not reach. Only
:func:`hardenkit.testing.override_principal` sets it, and it refuses in production.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hardenkit.auth.principal import Principal

__all__ = ["PRINCIPAL_OVERRIDE", "PrincipalOverride"]


class PrincipalOverride:
    """Holds the principal every protected request is served as, or ``None`` (normal)."""

    __slots__ = ("principal",)

    def __init__(self) -> None:
        self.principal: Principal | None = None


PRINCIPAL_OVERRIDE = PrincipalOverride()
"""Read by :class:`~hardenkit.auth.middleware.AuthMiddleware` in place of a token."""
