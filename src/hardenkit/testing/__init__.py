"""Testing an application built on hardenkit: tokens, a JWKS server, switches, fixtures.

* :class:`TokenIssuer` mints tokens for a test key set (HS256, RS256, ES256) and gives
  the settings that trust it; :class:`JWKSServer` serves its keys on loopback.
* :func:`override_principal` serves protected requests as a principal without a token;
  :func:`limits_disabled` turns every rate limit off; :func:`reset` /
  :func:`areset` empty limits, breakers and replay ids between tests.
* The pytest fixtures (``hardenkit_issuer``, ``hardenkit_jwks_server``,
  ``hardenkit_reset``...) live in :mod:`hardenkit.testing.plugin`, which pytest loads by
  itself. Retry waits are switched off by :mod:`hardenkit.resilience.testing`.

docs/testing.md has a full example test of an application.
"""

from hardenkit.testing._jwks import JWKSServer
from hardenkit.testing._switches import areset, limits_disabled, override_principal, reset
from hardenkit.testing._tokens import TokenIssuer

__all__ = [
    "JWKSServer",
    "TokenIssuer",
    "areset",
    "limits_disabled",
    "override_principal",
    "reset",
]
