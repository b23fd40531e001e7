"""Who the client is and which scheme it used, believing one proxy header, from proxies only.

The operator names the one forwarding header its proxies write
(``HARDENKIT_FORWARDED_HEADER``): ``x-forwarded-for`` (the default; the scheme then comes
from ``X-Forwarded-Proto``) or ``forwarded`` (RFC 7239; the scheme from its ``proto=``).
The other kind is never read: nginx, ALB, HAProxy and Envoy pass a client's own
``Forwarded`` (or ``X-Forwarded-For``) through untouched, so reading both lets a client
pick its address. The header is read **only** when the directly connected peer is inside
one of the trusted proxy CIDRs (``HARDENKIT_TRUSTED_PROXIES``). The client is the
right-most hop that is not itself a trusted proxy: everything left of it was written by
the client and can be forged. Rate-limit keys, audit events and the HSTS decision all
use this one resolution.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence
from typing import Final, get_args

import structlog
from starlette.types import ASGIApp, Receive, Scope, Send

from hardenkit._forwarding import (
    MAX_HOPS,
    ForwardedHeader,
    IPAddress,
    forwarding_values,
    last_items,
    parse_forwarded,
    parse_ip,
    peer_host,
)
from hardenkit._server_rewrite import RESOLVED_KEY, ServerRewriteDetector
from hardenkit.context import FACTS_KEY, client_ip_var, own_facts

__all__ = ["UNIX_SOCKET", "ForwardedHeader", "TrustedProxies", "TrustedProxyMiddleware"]

UNIX_SOCKET: Final = "unix"
"""The ``HARDENKIT_TRUSTED_PROXIES`` entry for a proxy connected over a unix socket."""

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_logger = structlog.get_logger("hardenkit.proxies")

_SCHEMES: Final = frozenset({"http", "https", "ws", "wss"})


def _joined(values: Sequence[bytes]) -> str:
    return b",".join(values).decode("latin-1")


class TrustedProxies:
    """The proxy networks whose forwarding header is believed, and which header that is.

    Args:
        cidrs: Networks or single addresses (``"10.0.0.0/8"``, ``"::1"``), or ``"unix"``:
            a peer connected over a unix socket (``uvicorn --uds``, which gives no client
            address) is the proxy. An entry that is not a network raises ``ValueError``
            naming it, at startup.
        header: The one forwarding header the proxies write (``HARDENKIT_FORWARDED_HEADER``):
            ``"x-forwarded-for"`` (with ``X-Forwarded-Proto``) or ``"forwarded"``.
            The other header is never read.
    """

    def __init__(
        self, cidrs: Iterable[str] = (), *, header: ForwardedHeader = "x-forwarded-for"
    ) -> None:
        networks: list[IPNetwork] = []
        unix = False
        for entry in cidrs:
            if entry.strip().lower() == UNIX_SOCKET:
                unix = True
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                raise ValueError(
                    f"HARDENKIT_TRUSTED_PROXIES: {entry!r} is not an IP network (CIDR)"
                ) from None
        if header not in get_args(ForwardedHeader):
            raise ValueError(
                f"HARDENKIT_FORWARDED_HEADER: {header!r} is not one of "
                f"{', '.join(get_args(ForwardedHeader))}"
            )
        self.networks: tuple[IPNetwork, ...] = tuple(networks)
        self.unix = unix
        """Whether a peer on a unix socket (no client address) is a trusted proxy."""
        self.header: ForwardedHeader = header
        # Peers are few (the load balancers, or the clients themselves): parsing an
        # address costs microseconds, a cached answer a dict lookup.
        self._peer_trust = functools.lru_cache(maxsize=4096)(self._compute_peer_trust)

    def __bool__(self) -> bool:
        return bool(self.networks) or self.unix

    def __repr__(self) -> str:
        entries = [str(network) for network in self.networks] + ([UNIX_SOCKET] * self.unix)
        return f"TrustedProxies([{', '.join(entries)}], header={self.header!r})"

    def is_trusted(self, address: IPAddress | None) -> bool:
        """Return whether ``address`` belongs to a trusted proxy."""
        return address is not None and any(address in network for network in self.networks)

    def trusts_peer(self, host: str) -> bool:
        """Return whether the connected peer ``host`` (``scope["client"][0]``) is trusted."""
        return bool(self.networks) and self._peer_trust(host)

    def trusts_client(self, client: Sequence[object] | None) -> bool:
        """Return whether the peer ``scope["client"]`` describes is a trusted proxy.

        No address (a unix socket: ``None``, or an empty host) is trusted when ``unix``
        is listed.
        """
        host = peer_host(client)
        if host is None:
            return self.unix
        return self.trusts_peer(host)

    def _compute_peer_trust(self, host: str) -> bool:
        return self.is_trusted(parse_ip(host))

    def resolve(self, scope: Scope) -> tuple[str | None, str]:
        """Return ``(client_ip, scheme)`` for the connection described by ``scope``."""
        peer = peer_host(scope.get("client"))
        scheme: str = scope.get("scheme", "http")
        if peer is None:
            if not self.unix:
                return None, scheme
        elif not self.networks or not self.trusts_peer(peer):
            return peer, scheme

        hops, protos = self._chain(scope)
        client_ip = peer
        chosen_proto: str | None = None
        for index in range(len(hops) - 1, -1, -1):
            address = parse_ip(hops[index])
            if address is None:
                break  # garbage from the hop before: keep the last address a proxy vouched for
            client_ip = str(address)
            chosen_proto = protos[index] if index < len(protos) else None
            if not self.is_trusted(address):
                break
        if chosen_proto in _SCHEMES:
            if scope.get("type") == "websocket":
                chosen_proto = chosen_proto.replace("http", "ws")
            scheme = chosen_proto
        return client_ip, scheme

    def _chain(self, scope: Scope) -> tuple[list[str], list[str]]:
        """Return the last hops of the chosen header and the protocol each one reports."""
        if self.header == "forwarded":
            elements: list[tuple[str, str]] = []
            # The last lines first, until they hold MAX_HOPS elements: a client's many
            # lines cost no more than its last ones.
            for line in reversed(forwarding_values(scope, b"forwarded")):
                elements[:0] = parse_forwarded(line.decode("latin-1"))
                if len(elements) >= MAX_HOPS:
                    break
            elements = elements[-MAX_HOPS:]
            return [hop for hop, _ in elements], [proto for _, proto in elements]
        hops = last_items(_joined(forwarding_values(scope, b"x-forwarded-for")))
        protos = [
            proto.strip().lower()
            for proto in last_items(_joined(forwarding_values(scope, b"x-forwarded-proto")))
        ]
        if len(protos) != len(hops):  # one value set by the edge proxy, or none
            protos = [protos[-1]] * len(hops) if protos else []
        return hops, protos


class TrustedProxyMiddleware:
    """Resolve the real client and scheme once per request.

    Rewrites ``scope["client"]`` and ``scope["scheme"]`` when the peer is a trusted proxy
    (so ``request.client``, ``request.url`` and every inner piece agree) and puts the
    client ip in :data:`hardenkit.context.client_ip_var`. Headers from an untrusted peer
    change nothing.

    A server that already rewrote ``scope["client"]`` from a forwarding header (uvicorn
    does by default, trusting loopback) decides the client before this middleware can;
    the detector (one is made when none is passed) notices it at startup and on requests
    and logs a warning naming the fix (see :mod:`hardenkit._server_rewrite`).

    Args:
        app: The ASGI application to wrap.
        trusted_proxies: The proxies (and their header) to believe.
        forwarded_header: The header, when ``trusted_proxies`` is a list of CIDRs.
        detector: Where detections of a rewriting server are recorded (``install()``
            reports its findings in readiness).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        trusted_proxies: TrustedProxies | Iterable[str] = (),
        forwarded_header: ForwardedHeader = "x-forwarded-for",
        detector: ServerRewriteDetector | None = None,
    ) -> None:
        self.app = app
        self.trusted = (
            trusted_proxies
            if isinstance(trusted_proxies, TrustedProxies)
            else TrustedProxies(trusted_proxies, header=forwarded_header)
        )
        self.detector = detector if detector is not None else ServerRewriteDetector()
        self._mismatch_reported = False
        self._unreadable_reported = False

    def _report_other_header(self, scope: Scope) -> None:
        """Warn once when a trusted proxy writes the other header than the one chosen.

        Every client then resolves to the proxy itself and shares one rate-limit bucket:
        not a hole, but a setting to fix, and nothing else would say so.
        """
        peer = peer_host(scope.get("client"))
        if peer is None or not self.trusted.trusts_peer(peer):
            return
        chosen = self.trusted.header.encode()
        other = b"forwarded" if chosen == b"x-forwarded-for" else b"x-forwarded-for"
        names = {name for name, _ in scope.get("headers", ())}
        if chosen in names or other not in names:
            return
        self._mismatch_reported = True
        _logger.warning(
            "forwarded_header_mismatch",
            setting="HARDENKIT_FORWARDED_HEADER",
            chosen=self.trusted.header,
            received=other.decode(),
            message="a trusted proxy sent the other forwarding header only: every client "
            "resolves to the proxy; set HARDENKIT_FORWARDED_HEADER to what the proxies write",
        )

    def _report_unreadable_hop(self, scope: Scope) -> None:
        """Warn once when a trusted proxy's last hop is no address.

        Every client it forwards then resolves to the proxy, one shared bucket: strict,
        not a hole, but a proxy that writes garbage (or client text, such as the Host,
        into its own ``Forwarded`` element) is worth fixing, and nothing else says so.
        """
        if not self.trusted.trusts_client(scope.get("client")):
            return
        hops, _ = self.trusted._chain(scope)
        if not hops or parse_ip(hops[-1]) is not None:
            return
        self._unreadable_reported = True
        _logger.warning(
            "forwarded_hop_unreadable",
            header=self.trusted.header,
            message="a trusted proxy's last forwarding hop is not an address: every client "
            "it forwards shares its rate-limit bucket; check what the proxy writes "
            "(an address per hop; no client text such as the Host in Forwarded)",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection."""
        scope_type = scope["type"]
        if scope_type not in ("http", "websocket"):
            if scope_type == "lifespan":
                self.detector.inspect_server()
            await self.app(scope, receive, send)
            return
        self.detector.inspect_request(scope)
        if FACTS_KEY not in scope:  # the first hardenkit layer of this request
            await own_facts(self, scope, receive, send)
            return
        client_ip, scheme = self.trusted.resolve(scope)
        if self.trusted:
            client = scope.get("client")
            if client_ip is not None and (client is None or client[0] != client_ip):
                scope = {**scope, "client": (client_ip, 0), RESOLVED_KEY: True}
            else:
                if not self._mismatch_reported:
                    self._report_other_header(scope)
                if not self._unreadable_reported:
                    self._report_unreadable_hop(scope)
            if scheme != scope.get("scheme"):
                scope = {**scope, "scheme": scheme}
        token = client_ip_var.set(client_ip)
        try:
            await self.app(scope, receive, send)
        finally:
            client_ip_var.reset(token)
