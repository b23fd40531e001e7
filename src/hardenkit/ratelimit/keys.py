"""Who a limit counts: functions from an ASGI scope to a key, or ``None`` (rule skipped).

Keys that identify a caller come only from facts hardenkit has verified: the client ip
after trusted-proxy resolution, the principal set by the auth middleware. A header a
client can change freely would let it start a fresh bucket per request.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import structlog
from starlette.types import Scope

from hardenkit._forwarding import peer_host
from hardenkit._paths import route_path
from hardenkit.context import client_ip_var, principal_var

_logger = structlog.get_logger("hardenkit.ratelimit")

__all__ = [
    "ClientIpKey",
    "KeyFunction",
    "api_key",
    "client_ip",
    "combine",
    "needs_principal",
    "route",
    "subject",
    "tenant",
]

KeyFunction = Callable[[Scope], str | None]
"""Maps a request to the key it is counted under; ``None`` means the rule does not apply."""


class ClientIpKey:
    """The client ip (after trusted-proxy resolution), IPv6 grouped by network.

    One IPv6 subscriber usually holds a whole /64, so counting single addresses would give
    it 2⁶⁴ buckets. The ip comes from :data:`hardenkit.context.client_ip_var`, which
    :class:`~hardenkit.proxies.TrustedProxyMiddleware` (or :class:`RateLimitMiddleware`
    when used alone) sets; the raw peer address is the last resort.

    Args:
        ipv6_prefix_length: Prefix length IPv6 addresses are grouped by (default 64).
    """

    def __init__(self, ipv6_prefix_length: int = 64) -> None:
        if not 1 <= ipv6_prefix_length <= 128:
            raise ValueError("ipv6_prefix_length must be between 1 and 128")
        self.ipv6_prefix_length = ipv6_prefix_length

    def __call__(self, scope: Scope) -> str | None:
        """Return the key of the client that sent ``scope``."""
        ip = client_ip_var.get()
        if ip is None:
            ip = peer_host(scope.get("client"))
            if ip is None:
                return _unknown_client()
        if ":" not in ip:
            return ip
        try:
            address = ipaddress.IPv6Address(ip.split("%", 1)[0])
        except ValueError:
            return ip  # not an address (a unix socket path): hashed like any key
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        network = ipaddress.IPv6Network((address, self.ipv6_prefix_length), strict=False)
        return str(network)

    def __repr__(self) -> str:
        return f"ClientIpKey(ipv6_prefix_length={self.ipv6_prefix_length})"


UNKNOWN_CLIENT = "unknown-client"
"""The key of every request without a client address: they share one bucket."""
_warned_unknown = False


def _unknown_client() -> str:
    """No address (a unix socket whose proxy is not trusted): one shared key, never a skip.

    Skipping the rule would turn every per-ip limit off (the login limit included) for a
    service behind a proxy on a unix socket. Sharing one bucket keeps them on, too
    strictly: the warning, once per process, says how to name the clients.
    """
    global _warned_unknown  # noqa: PLW0603 - once per process
    if not _warned_unknown:
        _warned_unknown = True
        _logger.warning(
            "rate_limit_client_unknown",
            setting="HARDENKIT_TRUSTED_PROXIES",
            message=(
                "a request came without a client address (a unix socket): every such "
                "request shares one per-ip rate-limit bucket"
            ),
            fix=(
                "add `unix` to HARDENKIT_TRUSTED_PROXIES so the proxy's forwarding header "
                "names each client"
            ),
        )
    return UNKNOWN_CLIENT


client_ip: KeyFunction = ClientIpKey()
"""The client ip, IPv6 grouped by /64."""


_NEEDS_PRINCIPAL = "hardenkit_needs_principal"


def needs_principal(function: KeyFunction) -> bool:
    """Whether ``function`` counts the verified caller (``None`` where no one was verified).

    True for :func:`tenant`, :func:`subject`, :func:`api_key` and any :func:`combine` of
    one of them. A route limit keyed so on a public route would count no one: startup
    refuses it (see docs/ratelimit.md).
    """
    return getattr(function, _NEEDS_PRINCIPAL, False) is True


def _counts_principal(function: KeyFunction) -> KeyFunction:
    setattr(function, _NEEDS_PRINCIPAL, True)
    return function


@_counts_principal
def tenant(scope: Scope) -> str | None:
    """The verified tenant; ``None`` (rule skipped) before auth or for tenant-less callers."""
    principal = principal_var.get()
    return principal.tenant if principal is not None else None


@_counts_principal
def subject(scope: Scope) -> str | None:
    """The verified subject (``sub`` claim or API key name)."""
    principal = principal_var.get()
    return principal.subject if principal is not None else None


@_counts_principal
def api_key(scope: Scope) -> str | None:
    """The verified API key's name, for callers that authenticated with one."""
    principal = principal_var.get()
    if principal is None or principal.credential != "api_key":
        return None
    return principal.subject


def route(scope: Scope) -> str | None:
    """The method and path: one shared budget per endpoint, across all callers."""
    return f"{scope.get('method', '')} {route_path(scope)}"


def combine(*functions: KeyFunction) -> KeyFunction:
    """Return a key made of several (e.g. ``combine(tenant, route)``); ``None`` if any is."""
    if not functions:
        raise ValueError("combine() needs at least one key function")

    def combined(scope: Scope) -> str | None:
        parts = []
        for function in functions:
            part = function(scope)
            if part is None:
                return None
            parts.append(part)
        # The separator cannot be confused with a part: the whole key is hashed and each
        # part is length-prefixed.
        return "".join(f"{len(part)}:{part}" for part in parts)

    if any(needs_principal(function) for function in functions):
        _counts_principal(combined)
    return combined
