"""The verified caller of a request."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts for, taken only from a verified credential.

    Attributes:
        subject: The ``sub`` claim (or the API key's name).
        tenant: The verified tenant id, ``None`` for tenant-less service credentials.
        roles: Roles granted by the credential.
        scopes: OAuth scopes granted by the credential.
        claims: The verified claims as they were in the token.
        credential: How the caller proved who it is (``"jwt"`` or ``"api_key"``).
        tenants: Every tenant the credential is a member of (one, unless the tenant
            claim is a list in multi-membership mode).
    """

    subject: str
    tenant: str | None = None
    roles: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    claims: Mapping[str, Any] = field(default_factory=dict, repr=False)
    credential: str = "jwt"
    tenants: frozenset[str] = frozenset()
