"""Parsers of the forwarding headers: one hop, an RFC 7239 ``Forwarded`` value.

Pure functions over text a client may have written: they never raise, and what does
not parse as an address is ``None`` (the caller decides what that means).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Final, Literal

from starlette.types import Scope

__all__ = [
    "MAX_HOPS",
    "ForwardedHeader",
    "IPAddress",
    "forwarding_values",
    "last_items",
    "parse_forwarded",
    "parse_hop",
    "parse_ip",
    "peer_host",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_HOPS: Final = 32
"""The most hops read from a forwarding header (the last ones): a longer chain is no
real proxy path, and the work a client's header costs stays bounded."""

_MAX_PAIRS: Final = 16
"""The most ``key=value`` pairs of one ``Forwarded`` element (RFC 7239 defines four)."""

_MAX_QUOTE_AWARE: Final = 2048
"""The longest ``Forwarded`` line split with its quoted strings respected, character by
character in Python. 32 elements of an IPv6 address, port and protocol fit; a longer
line is split on every separator (as one with a quote left open): only a client's part
of it, left of what the proxies appended, could hold a quoted separator."""

ForwardedHeader = Literal["x-forwarded-for", "forwarded"]
"""The forwarding header the proxies write: ``x-forwarded-for`` or ``forwarded``."""


def peer_host(client: Sequence[object] | None) -> str | None:
    """The host of ``scope["client"]``, or ``None`` when the peer has no address.

    On a unix socket uvicorn and hypercorn give no client, granian ``("", "0")``: an
    empty host is no address either (counted as one client, it put every client of a
    proxy in one rate-limit bucket, and the ``unix`` trusted-proxy entry never applied).
    """
    if not client:
        return None
    host = client[0]
    return str(host) if host else None


def parse_hop(value: str) -> tuple[IPAddress, int] | None:
    """Return the address and port (``0`` when absent) of one forwarding hop, or ``None``.

    Accepts ``v4``, ``v4:port``, ``v6``, ``[v6]`` and ``[v6]:port``, quoted or not; an
    IPv4-mapped IPv6 address is the IPv4 address. Anything else (``unknown``, an
    obfuscated ``_id``, garbage) is ``None``.
    """
    text = value.strip().strip('"')
    port_text = ""
    if text.startswith("["):
        end = text.find("]")
        if end == -1:
            return None
        text, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                return None
            port_text = rest[1:]
    elif text.count(":") == 1:
        text, port_text = text.split(":", 1)
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    port = 0
    if port_text:
        # ASCII digits only: "²" (a latin-1 header byte) is isdigit() and int() raises.
        if (
            not (port_text.isascii() and port_text.isdigit())
            or len(port_text) > 5
            or int(port_text) > 65535
        ):
            return None
        port = int(port_text)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped, port
    return address, port


def parse_ip(value: str) -> IPAddress | None:
    """Return the address of one hop (or of a peer), ignoring any port; ``None`` if none."""
    hop = parse_hop(value)
    return hop[0] if hop is not None else None


def _split_unquoted(text: str, separator: str) -> list[str]:
    """Split ``text`` on ``separator`` outside RFC 7230 quoted strings (backslash escapes).

    A quoted string left open is malformed, and must not swallow what follows it: that
    is where a proxy appended its element, after a client's own. So ``text`` with an
    unterminated quote is split on every ``separator``, quotes or not.
    """
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    if quoted:
        return text.split(separator)
    parts.append("".join(current))
    return parts


def _unquote(value: str) -> str:
    text = value.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
        out: list[str] = []
        escaped = False
        for char in text:
            if not escaped and char == "\\":
                escaped = True
                continue
            escaped = False
            out.append(char)
        return "".join(out)
    return text


def last_items(text: str, separator: str = ",") -> list[str]:
    """The non-empty items among the last :data:`MAX_HOPS` of ``text`` split on ``separator``.

    ``rsplit`` stops after them: the cost is the tail's, not the whole header's.
    """
    return [item for item in text.rsplit(separator, MAX_HOPS)[-MAX_HOPS:] if item.strip()]


def parse_forwarded(value: str) -> list[tuple[str, str]]:
    """Return ``(for, proto)`` of the last elements of an RFC 7239 ``Forwarded`` value.

    Elements are separated by commas and their pairs by semicolons, both outside quoted
    strings (pass one header line at a time: a quote never spans lines); ``proto`` is
    lowercased and empty when absent. An element without ``for``
    is kept as ``("", proto)``, so the hops stay aligned with the proxies that wrote
    them (an empty hop never parses as an address). At most the last :data:`MAX_HOPS`
    elements are returned, for work bounded by them rather than by the header's size
    (round 18: a 1 MB value took 300 ms). Never raises.
    """
    quote_aware = '"' in value and len(value) <= _MAX_QUOTE_AWARE
    split = _split_unquoted(value, ",")[-MAX_HOPS:] if quote_aware else last_items(value)
    return [_element(element, quote_aware=quote_aware) for element in split if element.strip()]


_NO_ADDRESS: Final = ("", "")


def _element(element: str, *, quote_aware: bool) -> tuple[str, str]:
    """``(for, proto)`` of one element; ``("", "")`` for one no proxy wrote as it reads.

    No address: more pairs than any proxy writes, a parameter named twice (RFC 7239
    allows one of each; a proxy that writes a client's Host unescaped into a quoted
    ``host=`` lets the client add a ``for`` after the proxy's own), or, split without
    regard to quotes, quotes that do not pair up (the line was cut inside a quoted
    string: ``host="a,for=6.6.6.6"`` gave ``for=6.6.6.6"``, round 19).
    """
    if quote_aware:
        pairs = _split_unquoted(element, ";")
    elif element.count('"') % 2:
        return _NO_ADDRESS
    else:
        pairs = element.split(";", _MAX_PAIRS)
    if len(pairs) > _MAX_PAIRS:
        return _NO_ADDRESS
    found: dict[str, str] = {}
    for pair in pairs:
        key, _, raw = pair.partition("=")
        key = key.strip().lower()
        if not key:  # an empty pair (";;", a trailing ";")
            continue
        if key in found:
            return _NO_ADDRESS
        found[key] = _unquote(raw) if quote_aware else raw.strip().strip('"')
    return found.get("for", ""), found.get("proto", "").lower()


def forwarding_values(scope: Scope, header: bytes) -> list[bytes]:
    """Return the raw values of every ``header`` line in ``scope``, in order."""
    return [value for name, value in scope.get("headers", ()) if name == header]
