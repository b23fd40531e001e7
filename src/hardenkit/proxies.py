"""Who the client is and which scheme it used, believing proxy headers only from proxies.

``X-Forwarded-For`` / ``Forwarded`` / ``X-Forwarded-Proto`` are read **only** when the
directly connected peer is inside one of the trusted proxy CIDRs
(``HARDENKIT_TRUSTED_PROXIES``). The client is the right-most hop that is not itself a
trusted proxy: everything left of it was written by the client and can be forged.
Rate-limit keys, audit events and the HSTS decision all use this one resolution.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Final

from starlette.types import ASGIApp, Receive, Scope, Send

from hardenkit.context import client_ip_var

__all__ = ["TrustedProxies", "TrustedProxyMiddleware"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_SCHEMES: Final = frozenset({"http", "https", "ws", "wss"})
_MAX_HOPS: Final = 32  # a longer chain is not a real proxy path; keep the work bounded


def _parse_ip(value: str) -> IPAddress | None:
    text = value.strip().strip('"')
    if text.startswith("["):  # [v6]:port
        end = text.find("]")
        text = text[1:end] if end != -1 else ""
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class TrustedProxies:
    """The proxy networks whose forwarding headers are believed.

    Args:
        cidrs: Networks or single addresses (``"10.0.0.0/8"``, ``"::1"``). An entry that
            is not a network raises ``ValueError`` naming it, at startup.
    """

    def __init__(self, cidrs: Iterable[str] = ()) -> None:
        networks: list[IPNetwork] = []
        for entry in cidrs:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                raise ValueError(
                    f"HARDENKIT_TRUSTED_PROXIES: {entry!r} is not an IP network (CIDR)"
                ) from None
        self.networks: tuple[IPNetwork, ...] = tuple(networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def is_trusted(self, address: IPAddress | None) -> bool:
        """Return whether ``address`` belongs to a trusted proxy."""
        return address is not None and any(address in network for network in self.networks)

    def resolve(self, scope: Scope) -> tuple[str | None, str]:
        """Return ``(client_ip, scheme)`` for the connection described by ``scope``."""
        client = scope.get("client")
        peer_host: str | None = client[0] if client else None
        scheme: str = scope.get("scheme", "http")
        if not self.networks or peer_host is None:
            return peer_host, scheme
        peer = _parse_ip(peer_host)
        if not self.is_trusted(peer):
            return peer_host, scheme

        hops, protos = _forwarding_chain(scope)
        hops = hops[-_MAX_HOPS:]
        protos = protos[-_MAX_HOPS:] if protos else []
        client_ip = peer_host
        chosen_proto: str | None = None
        for index in range(len(hops) - 1, -1, -1):
            address = _parse_ip(hops[index])
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


def _forwarding_chain(scope: Scope) -> tuple[list[str], list[str]]:
    """Return the hops and their protocols, from ``Forwarded`` or the ``X-Forwarded-*`` pair."""
    forwarded: list[bytes] = []
    x_forwarded_for: list[bytes] = []
    x_forwarded_proto: list[bytes] = []
    for name, value in scope.get("headers", ()):
        if name == b"forwarded":
            forwarded.append(value)
        elif name == b"x-forwarded-for":
            x_forwarded_for.append(value)
        elif name == b"x-forwarded-proto":
            x_forwarded_proto.append(value)
    if forwarded:
        return _parse_forwarded(b",".join(forwarded).decode("latin-1"))
    hops = [h for h in b",".join(x_forwarded_for).decode("latin-1").split(",") if h.strip()]
    protos = [
        p.strip().lower()
        for p in b",".join(x_forwarded_proto).decode("latin-1").split(",")
        if p.strip()
    ]
    if len(protos) != len(hops):  # one value set by the edge proxy, or none
        protos = [protos[-1]] * len(hops) if protos else []
    return hops, protos


def _parse_forwarded(value: str) -> tuple[list[str], list[str]]:
    """Return the ``for`` and ``proto`` of each element of an RFC 7239 ``Forwarded``."""
    hops: list[str] = []
    protos: list[str] = []
    for element in value.split(","):
        hop = ""
        proto = ""
        for pair in element.split(";"):
            key, _, raw = pair.partition("=")
            key = key.strip().lower()
            if key == "for":
                hop = raw.strip()
            elif key == "proto":
                proto = raw.strip().strip('"').lower()
        if hop:
            hops.append(hop)
            protos.append(proto)
    return hops, protos


class TrustedProxyMiddleware:
    """Resolve the real client and scheme once per request.

    Rewrites ``scope["client"]`` and ``scope["scheme"]`` when the peer is a trusted proxy
    (so ``request.client``, ``request.url`` and every inner piece agree) and puts the
    client ip in :data:`hardenkit.context.client_ip_var`. Headers from an untrusted peer
    change nothing.
    """

    def __init__(
        self, app: ASGIApp, *, trusted_proxies: TrustedProxies | Iterable[str] = ()
    ) -> None:
        self.app = app
        self.trusted = (
            trusted_proxies
            if isinstance(trusted_proxies, TrustedProxies)
            else TrustedProxies(trusted_proxies)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        client_ip, scheme = self.trusted.resolve(scope)
        if self.trusted:
            client = scope.get("client")
            if client_ip is not None and (client is None or client[0] != client_ip):
                scope = {**scope, "client": (client_ip, 0)}
            if scheme != scope.get("scheme"):
                scope = {**scope, "scheme": scheme}
        token = client_ip_var.set(client_ip)
        try:
            await self.app(scope, receive, send)
        finally:
            client_ip_var.reset(token)
