"""A static API-key guard for admin and service routes.

Settings hold only SHA-256 hashes of the keys (``name:hex``), so a leaked config file
does not leak a key. Keys must be random (``secrets.token_urlsafe(32)``); a fast hash is
then enough, because there is nothing to guess. Every stored hash is compared in constant
time, all of them, every time.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Iterable
from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection

from hardenkit.auth._guard import EndpointGuard
from hardenkit.auth._refusal import record_refusal, unauthenticated
from hardenkit.auth.errors import RefusalReason, TokenRejectedError
from hardenkit.auth.principal import Principal
from hardenkit.errors import ConfigurationError

if TYPE_CHECKING:
    from hardenkit.settings import HardenSettings

__all__ = ["APIKeyGuard", "hash_api_key"]

MAX_API_KEY_LENGTH = 512


def hash_api_key(key: str) -> str:
    """Return the hex SHA-256 of ``key``, the form ``HARDENKIT_API_KEYS`` stores."""
    return hashlib.sha256(key.encode()).hexdigest()


class APIKeyGuard(EndpointGuard):
    """Lets a request through only with one of the configured API keys.

    Use it as ``@guard`` on an endpoint, ``Depends(guard)`` in FastAPI, or give it to
    :class:`~hardenkit.auth.middleware.AuthMiddleware` with ``api_key_paths``. The
    principal it produces has the key's name as ``subject``, no tenant, and
    ``credential="api_key"``.

    Args:
        hashed_keys: ``name:sha256-hex`` entries. Empty refuses every request.
        header: The header carrying the key.
        roles: Roles granted to a principal authenticated by key.
    """

    def __init__(
        self,
        hashed_keys: Iterable[str],
        *,
        header: str = "X-API-Key",
        roles: Iterable[str] = (),
    ) -> None:
        entries: list[tuple[str, bytes]] = []
        for index, entry in enumerate(hashed_keys):
            name, _, digest = entry.partition(":")
            try:
                raw = bytes.fromhex(digest)
            except ValueError:
                raw = b""
            if not name or len(raw) != 32:
                raise ValueError(f"API key entry {index + 1} is not `name:<sha256 hex>`")
            entries.append((name, raw))
        self._entries = tuple(entries)
        self.header = header
        self._header_key = header.lower().encode("latin-1")
        self.roles = frozenset(roles)

    @classmethod
    def from_settings(cls, settings: HardenSettings) -> APIKeyGuard:
        """Build the guard from ``HARDENKIT_API_KEYS`` / ``HARDENKIT_API_KEY_HEADER``.

        Raises:
            ConfigurationError: In production with no keys configured.
        """
        if settings.is_production and not settings.api_keys:
            raise ConfigurationError(
                "HARDENKIT_API_KEYS: empty in production, where an API-key guard is used"
            )
        return cls(settings.api_keys, header=settings.api_key_header)

    def __len__(self) -> int:
        return len(self._entries)

    def authenticate(self, presented: bytes | str | None) -> Principal:
        """Return the principal of a valid key.

        Raises:
            TokenRejectedError: ``missing`` or ``bad_api_key``.
        """
        if not presented:
            raise TokenRejectedError(RefusalReason.MISSING_API_KEY, "missing")
        if isinstance(presented, str):
            presented = presented.encode("utf-8", "replace")
        if len(presented) > MAX_API_KEY_LENGTH:
            raise TokenRejectedError(RefusalReason.BAD_API_KEY)
        digest = hashlib.sha256(presented).digest()
        matched: str | None = None
        for name, expected in self._entries:
            # No early exit: the time taken does not say which entry (if any) matched.
            if hmac.compare_digest(digest, expected) and matched is None:
                matched = name
        if matched is None:
            raise TokenRejectedError(RefusalReason.BAD_API_KEY)
        return Principal(subject=matched, roles=self.roles, credential="api_key")

    def authenticate_headers(self, headers: Iterable[tuple[bytes, bytes]]) -> Principal:
        """Find the key header in raw ASGI headers and authenticate it."""
        values = [value for name, value in headers if name == self._header_key]
        if len(values) > 1:
            raise TokenRejectedError(RefusalReason.AMBIGUOUS_CREDENTIALS)
        return self.authenticate(values[0] if values else None)

    def check(self, connection: HTTPConnection) -> Principal:
        """Return the key's principal, or raise a 401 ``HardenError``."""
        try:
            principal = self.authenticate_headers(connection.scope.get("headers", ()))
        except TokenRejectedError as rejected:
            refused = unauthenticated(rejected, "A valid API key is required.")
            refused.challenge = f'ApiKey header="{self.header}"'
            refused.details["credential"] = "api_key"
            on_sent = functools.partial(record_refusal, refused, connection.url.path)
            raise refused.refusal(on_sent).error() from None
        state = connection.scope.setdefault("state", {})
        if isinstance(state, dict):
            state["principal"] = principal
        return principal
