"""Tenant-claim JWT authentication (see docs/auth.md).

The public names are re-exported from :mod:`hardenkit`; the modules hold one concern
each: ``verifier`` (tokens), ``jwks`` (provider keys), ``keys`` and ``algorithms``
(configured keys and their allow-lists), ``claims`` (tenant/roles/scopes), ``tenants``
(tenant activity), ``authorization`` (roles and scopes on routes), ``apikeys`` and
``middleware``.
"""

from hardenkit.auth.apikeys import APIKeyGuard, hash_api_key
from hardenkit.auth.authorization import principal_of, require_roles, require_scopes
from hardenkit.auth.errors import KeysUnavailableError, TokenRejectedError
from hardenkit.auth.jwks import JWKSClient
from hardenkit.auth.middleware import AuthMiddleware
from hardenkit.auth.principal import Principal
from hardenkit.auth.tenants import TenantResolver, TenantStatusCache
from hardenkit.auth.verifier import JWTVerifier

__all__ = [
    "APIKeyGuard",
    "AuthMiddleware",
    "JWKSClient",
    "JWTVerifier",
    "KeysUnavailableError",
    "Principal",
    "TenantResolver",
    "TenantStatusCache",
    "TokenRejectedError",
    "hash_api_key",
    "principal_of",
    "require_roles",
    "require_scopes",
]
