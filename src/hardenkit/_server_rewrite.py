"""Notice a server that rewrote ``scope["client"]`` from a forwarding header before hardenkit.

uvicorn (and gunicorn's uvicorn workers) run ``ProxyHeadersMiddleware`` by default: when
the peer is in ``--forwarded-allow-ips`` (loopback unless told otherwise) it replaces
``scope["client"]`` with an address from ``X-Forwarded-For``, by its own rules and from
that header only, before any ASGI middleware runs. hardenkit then sees an address the
client may have chosen and cannot tell it from a real peer, whatever
``HARDENKIT_TRUSTED_PROXIES`` says. Two things give the rewrite away:

- **At startup**, the lifespan call runs through the server's middleware: a uvicorn
  ``ProxyHeadersMiddleware`` that trusts some address is among the callers of hardenkit's
  lifespan handling.
- **On a request**, a rewritten client is ``(address, 0)`` with ``address`` one of the
  hops of the request's own ``X-Forwarded-For`` / ``Forwarded`` (or ``(address, port)``
  for a hop written with that port, which uvicorn keeps), or ``(text, 0)`` with ``text``
  a hop as written when it is no address (hypercorn's ``ProxyFixMiddleware`` and
  granian's proxy headers copy it): a TCP peer always has a port, and a proxy does not
  list itself in the header it sends.

The first detection logs a warning naming the fix; readiness reports it as the
``proxy_headers`` check and ``hardenkit doctor --url`` fails on it.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Final

import structlog
from starlette.types import Scope

from hardenkit._forwarding import parse_forwarded, parse_hop
from hardenkit.health import CheckResult, HealthStatus

__all__ = ["FIX", "RESOLVED_KEY", "ServerRewriteDetector"]

_logger = structlog.get_logger("hardenkit.proxies")

FIX: Final = (
    "run uvicorn with --no-proxy-headers (gunicorn uvicorn workers: forwarded_allow_ips=''; "
    "hypercorn, granian: drop their proxy-headers middleware) and list your proxies in "
    "HARDENKIT_TRUSTED_PROXIES, so only hardenkit reads the forwarding header"
)
RESOLVED_KEY: Final = "hardenkit.client_resolved"
"""Scope key set by ``TrustedProxyMiddleware`` when it rewrote the client itself."""

_UVICORN_REWRITER: Final = ("uvicorn.middleware.proxy_headers", "ProxyHeadersMiddleware")
_MAX_FRAMES: Final = 64
_FORWARDING: Final = frozenset({b"x-forwarded-for", b"forwarded"})


def _uvicorn_trusts_someone(middleware: object) -> bool:
    """Whether a uvicorn ProxyHeadersMiddleware would rewrite for some peer.

    ``--forwarded-allow-ips ''`` leaves the middleware installed but trusting nobody; an
    unknown shape (another uvicorn version) counts as trusting, to warn rather than miss.
    """
    hosts = getattr(middleware, "trusted_hosts", None)
    if hosts is None:
        return True
    if getattr(hosts, "always_trust", True):
        return True
    addresses = getattr(hosts, "trusted_hosts", True)
    networks = getattr(hosts, "trusted_networks", True)
    # An empty --forwarded-allow-ips parses to the literal "", which trusts nobody.
    literals = [literal for literal in getattr(hosts, "trusted_literals", ["?"]) if literal]
    return bool(addresses or networks or literals)


def _hops(scope: Scope) -> tuple[set[tuple[str, int]], set[str]]:
    """The hops of the request's forwarding headers: as addresses, and as written."""
    hops: list[str] = []
    for name, value in scope.get("headers", ()):
        if name not in _FORWARDING:
            continue
        text = value.decode("latin-1")
        if name == b"forwarded":
            hops.extend(hop for hop, _ in parse_forwarded(text))
        else:
            hops.extend(text.split(","))
    addresses = set()
    for hop in hops:
        parsed = parse_hop(hop)
        if parsed is not None:
            addresses.add((str(parsed[0]), parsed[1]))
    return addresses, {_as_written(hop) for hop in hops}


def _as_written(hop: str) -> str:
    return hop.strip().strip('"')


def _port(client: Sequence[object]) -> int | None:
    """The client's port (granian gives text), or ``None`` when there is none."""
    try:
        return int(str(client[1])) if len(client) > 1 else None
    except ValueError:
        return None


class ServerRewriteDetector:
    """Records whether the server rewrote the client before hardenkit could resolve it.

    Attributes:
        detected_by: How the rewrite was seen (``None`` while it has not been).
        rewritten_requests: Requests seen with a rewritten client.
    """

    def __init__(self) -> None:
        self.detected_by: str | None = None
        self.rewritten_requests = 0

    def inspect_server(self) -> None:
        """At lifespan startup: look for uvicorn's proxy-headers middleware among the callers."""
        frame = inspect.currentframe()
        depth = 0
        while frame is not None and depth < _MAX_FRAMES:
            candidate = frame.f_locals.get("self")
            kind = type(candidate)
            if (kind.__module__, kind.__qualname__) == _UVICORN_REWRITER:
                if _uvicorn_trusts_someone(candidate):
                    self._detected("uvicorn proxy headers are on (its default)")
                return
            frame = frame.f_back
            depth += 1

    def inspect_request(self, scope: Scope) -> bool:
        """Return whether ``scope["client"]`` was rewritten from the request's own header."""
        client = scope.get("client")
        if not client or scope.get(RESOLVED_KEY):
            return False
        addresses, written = _hops(scope)
        if not written:
            return False
        # A TCP peer always has a port. Servers that rewrite give port 0 (uvicorn: the
        # hop's own port when it has one), and keep the hop's text when it is no address
        # (hypercorn's ProxyFixMiddleware, granian's proxy headers).
        port = _port(client)
        parsed = parse_hop(str(client[0]))
        if port == 0 and _as_written(str(client[0])) in written:
            rewritten = True
        elif parsed is None:
            rewritten = False
        else:
            # str(ip_address(...)) is the canonical form, whatever spelling the header used.
            address = str(parsed[0])
            rewritten = any(hop == address and port in (0, hop_port) for hop, hop_port in addresses)
        if not rewritten:
            return False
        self.rewritten_requests += 1
        self._detected("a request's client address is a hop of its own forwarding header")
        return True

    def _detected(self, how: str) -> None:
        if self.detected_by is not None:
            return
        self.detected_by = how
        _logger.warning(
            "server_rewrote_client",
            detected_by=how,
            fix=FIX,
            message="the ASGI server chose the client address before hardenkit: rate "
            "limits and audit logs use an address the client may have picked",
        )

    async def health_check(self) -> CheckResult:
        """Readiness check ``proxy_headers``: degraded once a rewriting server is seen."""
        if self.detected_by is None:
            return CheckResult(HealthStatus.HEALTHY, {"client_resolved_by": "hardenkit"})
        return CheckResult(
            HealthStatus.DEGRADED,
            {
                "client_resolved_by": "server",
                "detected_by": self.detected_by,
                "rewritten_requests": self.rewritten_requests,
                "fix": FIX,
            },
        )
