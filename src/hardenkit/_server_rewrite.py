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
  hops of the request's own ``X-Forwarded-For`` / ``Forwarded``, or ``(text, 0)`` with
  ``text`` a hop as written (hypercorn's ``ProxyFixMiddleware`` and granian's proxy
  headers copy it, address or not, port and all): a TCP peer always has a port. uvicorn
  keeps a hop's own port (``203.0.113.9:4444`` becomes ``("203.0.113.9", 4444)``), which
  a real peer listing itself also shows, so that one is found among the callers, on
  the first request when no lifespan ran.

The first detection logs a warning naming the fix; readiness reports it as the
``proxy_headers`` check and ``hardenkit doctor --url`` fails on it.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import Any, Final

import structlog
from starlette.types import Scope

from hardenkit._forwarding import MAX_HOPS, parse_forwarded, parse_hop, peer_host
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
_MAX_FRAMES: Final = 512  # a deep stack of middleware (seen: 70 layers) is still read
_MAX_TASKS: Final = 1024
_FORWARDING: Final = frozenset({b"x-forwarded-for", b"forwarded"})
_UVICORN_ON: Final = "uvicorn proxy headers are on (its default)"


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


def _callers() -> Iterator[FrameType]:
    frame = inspect.currentframe()
    for _ in range(_MAX_FRAMES):
        if frame is None:
            return
        yield frame
        frame = frame.f_back


def _rewriter(frame: FrameType) -> object | None:
    """The uvicorn proxy-headers middleware ``frame`` runs in, if it is one's."""
    candidate = frame.f_locals.get("self")
    kind = type(candidate)
    return candidate if (kind.__module__, kind.__qualname__) == _UVICORN_REWRITER else None


def _same(served: dict[str, Any], scope: Scope) -> bool:
    """Whether the server's ``served`` scope is this request's, or its listening socket's.

    The request's header list travels unchanged through a middleware that copies the
    scope (and may change ``server``, virtual-host style); the socket (``server``,
    ``None`` for an abstract unix socket) tells a second server of the process apart.
    """
    return served.get("headers") is scope.get("headers") or served.get("server") == scope.get(
        "server"
    )


def _other_tasks() -> list[asyncio.Task[Any]]:
    try:
        current = asyncio.current_task()
        return [task for task in asyncio.all_tasks() if task is not current][:_MAX_TASKS]
    except RuntimeError:  # no asyncio loop running: its callers are all there is
        return []


def _awaiting(task: asyncio.Task[Any]) -> Iterator[FrameType]:
    """The frames of the coroutines ``task`` is suspended in, outermost first."""
    awaited: Any = task.get_coro()
    for _ in range(_MAX_FRAMES):
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is None:
            return
        yield frame
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)


def _hops(scope: Scope) -> tuple[set[str], set[str]]:
    """The last hops of the request's forwarding headers: as addresses, and as written.

    Empty hops (``X-Forwarded-For: ,``, a ``Forwarded`` element without ``for=``) are
    none: they would match a client with no host.
    """
    hops: list[str] = []
    for name, value in scope.get("headers", ()):
        if name not in _FORWARDING:
            continue
        text = value.decode("latin-1")
        if name == b"forwarded":
            hops.extend(hop for hop, _ in parse_forwarded(text))
        else:
            hops.extend(text.split(","))
    written = [text for text in map(_as_written, hops) if text][-MAX_HOPS:]
    addresses = set()
    for hop in written:
        parsed = parse_hop(hop)
        if parsed is not None:
            addresses.add(str(parsed[0]))
    return addresses, set(written)


def _as_written(hop: str) -> str:
    return hop.strip().strip('"')


def _port_zero(client: Sequence[object]) -> bool:
    """Whether the client's port is 0 (granian gives ports as text)."""
    return len(client) > 1 and client[1] in (0, "0")


class ServerRewriteDetector:
    """Records whether the server rewrote the client before hardenkit could resolve it.

    Attributes:
        detected_by: How the rewrite was seen (``None`` while it has not been).
        rewritten_requests: Requests seen with a rewritten client.
    """

    def __init__(self) -> None:
        self.detected_by: str | None = None
        self.rewritten_requests = 0
        self._server_inspected = False

    def inspect_server(self, scope: Scope | None = None) -> None:
        """Look for uvicorn's proxy-headers middleware among the callers (once).

        At lifespan startup, or on the first request (``scope``) when no lifespan ran (a
        mounted app never gets one): both pass through the server's middleware. The
        callers are this call's frames and, for a request, since a
        ``BaseHTTPMiddleware`` (or anything else) may run the app in a task of its own,
        what the loop's other tasks await: there only a middleware serving a request to
        this request or the same listening socket counts (:func:`_same`), not another
        server's of the same process (round 16).
        """
        self._server_inspected = True
        for frame in _callers():
            found = _rewriter(frame)
            if found is not None:
                if _uvicorn_trusts_someone(found):
                    self._detected(_UVICORN_ON)
                return
        if scope is None:
            return
        for frame in itertools.chain.from_iterable(map(_awaiting, _other_tasks())):
            found = _rewriter(frame)
            if found is None:
                continue
            served: object = frame.f_locals.get("scope")
            if isinstance(served, dict) and _same(served, scope) and _uvicorn_trusts_someone(found):
                self._detected(_UVICORN_ON)
                return

    def inspect_request(self, scope: Scope) -> bool:
        """Return whether ``scope["client"]`` was rewritten from the request's own header.

        Only a rewrite gives a client with a host and port 0 (uvicorn for a hop without
        a port, hypercorn and granian always): a TCP peer has a port, a unix socket no
        host. A client chooses its header, never its port, so nothing it sends makes a
        real peer look rewritten; uvicorn keeping a hop's port is found by looking for
        it among the callers (:meth:`inspect_server`), on the first request when no
        lifespan ran.
        """
        if not self._server_inspected:
            self.inspect_server(scope)
        client: Sequence[object] | None = scope.get("client")
        host = peer_host(client)
        if client is None or host is None or scope.get(RESOLVED_KEY) or not _port_zero(client):
            return False
        addresses, written = _hops(scope)
        parsed = parse_hop(host)
        # The hop as written (hypercorn, granian copy it), or its address in any
        # spelling: str(ip_address(...)) is the canonical form.
        rewritten = _as_written(host) in written or (
            parsed is not None and str(parsed[0]) in addresses
        )
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
