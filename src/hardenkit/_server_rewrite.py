"""Notice a server that rewrote ``scope["client"]`` from a forwarding header before hardenkit.

uvicorn (and gunicorn's uvicorn workers) run ``ProxyHeadersMiddleware`` by default: when
the peer is in ``--forwarded-allow-ips`` (loopback unless told otherwise) it replaces
``scope["client"]`` with an address from ``X-Forwarded-For``, by its own rules and from
that header only, before any ASGI middleware runs. hardenkit then sees an address the
client may have chosen and cannot tell it from a real peer, whatever
``HARDENKIT_TRUSTED_PROXIES`` says. Two things give the rewrite away:

- **At startup**, the lifespan call runs through the server's middleware: a uvicorn
  ``ProxyHeadersMiddleware`` that trusts some address is among the callers of hardenkit's
  lifespan handling (when it is not, the first request looks again).
- **On a request**, a rewritten client is ``(address, 0)`` with ``address`` one of the
  hops of the request's own ``X-Forwarded-For`` / ``Forwarded`` (anywhere in them), or
  ``(text, 0)`` with ``text`` a hop as written (hypercorn's ``ProxyFixMiddleware`` and
  granian's proxy headers copy it, address or not, port and all): a TCP peer always has
  a port. uvicorn keeps a hop's own port (``203.0.113.9:4444`` becomes
  ``("203.0.113.9", 4444)``), which a real peer listing itself also shows, so that one
  is found among the callers, on the first request when no lifespan ran.

The first detection logs a warning naming the fix; readiness reports it as the
``proxy_headers`` check and ``hardenkit doctor --url`` fails on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import re
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import Any, Final

import structlog
from starlette.types import Scope

from hardenkit._forwarding import MAX_HOPS, IPAddress, parse_hop, peer_host
from hardenkit.health import CheckResult, HealthStatus

__all__ = ["FIX", "RESOLVED_KEY", "ServerRewriteDetector"]

_logger = structlog.get_logger("hardenkit.proxies")

FIX: Final = (
    "run uvicorn with --no-proxy-headers (gunicorn uvicorn workers: forwarded_allow_ips=''; "
    "hypercorn, granian: drop their proxy-headers middleware; daphne: no --proxy-headers) "
    "and list your proxies in "
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
    scope (and may change ``server``, virtual-host style, or drop it: an abstract unix
    socket has none); the socket (``server``) tells a second server of the process
    apart. No socket on either side is no match: two servers on unix sockets both have
    none (round 18).
    """
    if served.get("headers") is scope.get("headers"):
        return True
    server = scope.get("server")
    return server is not None and served.get("server") == server


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


_BEFORE_HOP: Final = frozenset(' \t,;="[')
_AFTER_HOP: Final = frozenset(' \t,;"]:')
_MAX_OCCURRENCES: Final = 64
_MAX_PARSED_HOPS: Final = 4 * MAX_HOPS
_SEPARATORS: Final = re.compile("[,;]")


def _forwarding_text(scope: Scope) -> str:
    """Every forwarding header line of the request, one lowercase text."""
    lines = [value for name, value in scope.get("headers", ()) if name in _FORWARDING]
    return b",".join(lines).decode("latin-1").lower()


def _written_in(text: str, hop: str) -> bool:
    """Whether ``hop`` stands in ``text`` as a hop of its own, not inside another.

    Found wherever it is: a server may take the leftmost hop, the rightmost, the last
    one it does not trust, or read only one of the two headers, and every hop after the
    chosen one would push it out of a window of the last ones (round 18). A hop written
    more times than any header holds counts as found: a rewritten client still.
    """
    start = 0
    end_of_text = len(text)
    for _ in range(_MAX_OCCURRENCES):
        found = text.find(hop, start)
        if found < 0:
            return False
        end = found + len(hop)
        if (found == 0 or _delimits(text[found - 1], _BEFORE_HOP)) and (
            end == end_of_text or _delimits(text[end], _AFTER_HOP)
        ):
            return True
        start = found + 1
    return True


def _delimits(char: str, delimiters: frozenset[str]) -> bool:
    """Whether ``char`` can end a hop: a separator, or whitespace as ``str.strip()`` sees it.

    hypercorn and granian ``strip()`` each hop decoded as latin-1, which removes NBSP,
    NEL and the separators 0x1C to 0x1F too (round 19: a hop between two NBSPs became
    the client as plain text, unseen).
    """
    return char in delimiters or char.isspace()


def _readings(host: str) -> set[str]:
    """How ``host`` may stand in the header's latin-1 text, lowercased.

    With its quotes or without (a hop of quotes only is nothing without them, round 20),
    and as a server that decoded UTF-8 named it.
    """
    readings = set()
    for written in {host.strip(), _as_written(host)} - {""}:
        readings.add(written.lower())
        with contextlib.suppress(UnicodeEncodeError):  # a lone surrogate no decoding gives
            readings.add(written.encode("utf-8", "surrogateescape").decode("latin-1").lower())
    return readings


def _chosen_from_header(host: str, scope: Scope) -> bool:
    """Whether ``host`` (a port-0 client's) is a hop of the request's forwarding headers.

    As written (hypercorn and granian copy the text, port and quotes and all: hypercorn's
    modern mode splits on every comma, quoted or not), as the address in its canonical
    form, or as the same address in another spelling. The last needs the hops parsed:
    past :data:`_MAX_PARSED_HOPS` of them a port-0 client's address counts as chosen,
    which fails toward a warning. Text searches run in C over the whole header, so a
    client's header costs no more than its size in ``find``.
    """
    text = _forwarding_text(scope)
    if not text:
        return False
    readings = _readings(host)
    if any(_written_in(text, reading) for reading in readings):
        return True
    parsed = parse_hop(host)
    if parsed is None:
        return False
    address = parsed[0]
    if str(address) not in readings and _written_in(text, str(address)):
        return True
    return _spelled_otherwise_in(text, address)


def _spelled_otherwise_in(text: str, address: IPAddress) -> bool:
    """Whether a hop of ``text`` is ``address`` in another spelling (``0:0::1``, ``::1``)."""
    if text.count(",") + text.count(";") >= _MAX_PARSED_HOPS:
        return True
    for hop in _SEPARATORS.split(text):
        _, equals, value = hop.partition("=")
        candidate = parse_hop(value if equals else hop)
        if candidate is not None and candidate[0] == address:
            return True
    return False


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

        A lifespan that found no server's middleware is not the last look: a parent app
        may run it in a task of its own (asgi-lifespan's ``LifespanManager``), outside
        the server's middleware (round 18), so the first request looks again.
        """
        for frame in _callers():
            found = _rewriter(frame)
            if found is not None:
                self._server_inspected = True
                if _uvicorn_trusts_someone(found):
                    self._detected(_UVICORN_ON)
                return
        if scope is None:
            return
        self._server_inspected = True
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
        if not _chosen_from_header(host, scope):
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
