"""Reading the tenant, roles and scopes out of verified claims, with strict types.

A claim path is either a top-level claim name, exactly as written (``tenant_id``,
``tid``, ``org_id``, ``https://example.com/tenant``: dots and slashes are part of the
name), or, when it starts with ``/``, a JSON pointer (RFC 6901) into nested claims
(``/realm_access/roles`` for Keycloak).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from hardenkit.auth.errors import TokenRejectedError

__all__ = [
    "MAX_TENANT_LENGTH",
    "TENANT_ID_PATTERN",
    "ClaimPath",
    "read_string_set",
    "read_tenant",
]

MAX_TENANT_LENGTH = 256
# One encoding rule for tenant ids, end to end: ASCII letters and digits first, then also
# `. _ - : @`. The same text is then the same bytes in a header (latin-1 to Starlette),
# a path or query (UTF-8 percent-encoding), a Redis key and a log line; an id outside it
# is refused at verification (401 ``invalid_tenant_id``) instead of arriving as mojibake
# or failing a later comparison.
TENANT_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,255}")
MAX_MEMBERSHIPS = 1000
_MISSING = object()


class ClaimPath:
    """Where a value lives in a claim set.

    Args:
        path: A top-level claim name, or a JSON pointer starting with ``/``.

    Raises:
        ValueError: The path is empty.
    """

    __slots__ = ("parts", "path")

    def __init__(self, path: str) -> None:
        if not path or path == "/":
            raise ValueError("a claim path must name a claim")
        self.path = path
        if path.startswith("/"):
            self.parts = tuple(
                part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")
            )
        else:
            self.parts = (path,)

    def __repr__(self) -> str:
        return f"ClaimPath({self.path!r})"

    def read(self, claims: Mapping[str, Any]) -> Any:
        """Return the value at this path, or ``None`` when any step is missing."""
        value: Any = claims
        for part in self.parts:
            if not isinstance(value, dict):
                return None
            value = value.get(part, _MISSING)
            if value is _MISSING:
                return None
        return value


def _tenant_text(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TokenRejectedError("malformed_claims")
    text = str(value)
    if not text:
        raise TokenRejectedError("malformed_claims")
    if not TENANT_ID_PATTERN.fullmatch(text):
        raise TokenRejectedError("invalid_tenant_id")
    return text


def read_tenant(
    claims: Mapping[str, Any], path: ClaimPath, *, multi: bool
) -> tuple[str | None, frozenset[str]]:
    """Return ``(tenant, memberships)`` from the claims.

    A single tenant is a string matching :data:`TENANT_ID_PATTERN` (or an integer, read
    as its decimal text). A list is accepted only when ``multi`` is true; the tenant is
    then chosen per request among the memberships (``None`` here unless there is exactly
    one).

    Raises:
        TokenRejectedError: ``missing_tenant``, ``tenant_list_not_allowed``,
            ``invalid_tenant_id`` (outside the tenant id charset) or ``malformed_claims``.
    """
    value = path.read(claims)
    if value is None:
        raise TokenRejectedError("missing_tenant")
    if isinstance(value, list):
        if not multi:
            raise TokenRejectedError("tenant_list_not_allowed")
        if not value or len(value) > MAX_MEMBERSHIPS:
            raise TokenRejectedError("missing_tenant" if not value else "malformed_claims")
        tenants = frozenset(_tenant_text(item) for item in value)
        return (next(iter(tenants)) if len(tenants) == 1 else None), tenants
    tenant = _tenant_text(value)
    return tenant, frozenset((tenant,))


_EMPTY: Final = frozenset({""})


def read_string_set(claims: Mapping[str, Any], path: ClaimPath) -> frozenset[str]:
    """Return roles or scopes: a space-separated string or a list of strings.

    A string is split on the space (U+0020) only, as RFC 6749 separates scope tokens:
    any other whitespace is part of a name, so ``"member\u00a0admin"`` is one role,
    not ``admin``, which nobody granted.

    Raises:
        TokenRejectedError: ``malformed_claims`` for any other type.
    """
    value = path.read(claims)
    if value is None:
        return frozenset()
    if isinstance(value, str):
        return frozenset(value.split(" ")) - _EMPTY
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return frozenset(value)
    raise TokenRejectedError("malformed_claims")
