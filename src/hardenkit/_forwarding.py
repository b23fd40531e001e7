"""Parsers of the forwarding headers: one hop, an RFC 7239 ``Forwarded`` value.

Pure functions over text a client may have written: they never raise, and what does
not parse as an address is ``None`` (the caller decides what that means).
"""

from __future__ import annotations

import ipaddress
import re
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

_OBFUSCATED_PORT: Final = re.compile(r"_[A-Za-z0-9._-]{1,64}")

_MAX_PAIRS: Final = 16
"""The most ``key=value`` pairs of one ``Forwarded`` element (RFC 7239 defines four)."""

# RFC 7239 section 4: pairs of a token and a value, the value a quoted string or
# unquoted. Unquoted, any character but whitespace, the separators, a quote or a
# backslash: wider than a token, as proxies write ("connection=https/1.1", Apache
# Traffic Server; an unquoted IPv6 node, hand-made nginx configurations), and none of
# those four can move an element's bounds. Each space run belongs to one quantifier:
# overlapping runs made the match time double with every " ;" (round 21).
_KEY: Final = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_VALUE: Final = r'(?:[^\s,;"\\]+|"(?:[^"\\]|\\.)*")'
_ANY_PAIR: Final = rf"{_KEY}[ \t]*=[ \t]*{_VALUE}[ \t]*"
_PAIR: Final = re.compile(rf"(?P<key>{_KEY})[ \t]*=[ \t]*(?P<value>{_VALUE})")
_ELEMENT: Final = re.compile(rf"[ \t]*(?:{_ANY_PAIR})?(?:;[ \t]*(?:{_ANY_PAIR})?)*")

_MAX_QUOTE_AWARE: Final = 2048
"""The longest ``Forwarded`` line split with its quoted strings respected, character by
character in Python. 32 elements of an IPv6 address, port and protocol fit; a longer
line is split on every comma (as one with a quote left open), and an element cut inside
a quoted string that way is outside the grammar: no address (:func:`_element`)."""

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

    Accepts ``v4``, ``v4:port``, ``v6``, ``[v6]`` and ``[v6]:port``, quoted or not, the
    port in ASCII digits or obfuscated (RFC 7239's ``_p0rt``, read as ``0``); an
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
    if _OBFUSCATED_PORT.fullmatch(port_text):
        pass  # RFC 7239's "_" port: no number, the address stands (HAProxy for_port-expr)
    elif port_text:
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
    return [_element(element) for element in split if element.strip()]


_NO_ADDRESS: Final = ("", "")


def _element(element: str) -> tuple[str, str]:
    """``(for, proto)`` of one element; ``("", "")`` for one no proxy wrote as it reads.

    An element must be RFC 7239's grammar: ``key=value`` pairs separated by ``;``, each
    value a quoted string or unquoted (any character but whitespace, ``,``, ``;``, a
    quote or a backslash: see ``_VALUE``). Outside it the
    element's bounds are not where its writer put them: a quote or backslash outside a
    quoted string, a quote left open, a space inside a value. A proxy that writes a
    client's Host into its own element lets the Host end a quoted string there, or, in
    a line split on every comma, leave half of one; the client then picked the address
    (rounds 19 and 20). Also no address: an element over 2 KB, more pairs than any
    proxy writes, or a parameter named twice (RFC 7239 allows one of each; the last
    ``for`` won).
    """
    if len(element) > _MAX_QUOTE_AWARE or _ELEMENT.fullmatch(element) is None:
        return _NO_ADDRESS
    found: dict[str, str] = {}
    for pair in _PAIR.finditer(element):
        key = pair["key"].lower()
        if key in found or len(found) == _MAX_PAIRS:
            return _NO_ADDRESS
        found[key] = _unquote(pair["value"])
    return found.get("for", ""), found.get("proto", "").lower()


def forwarding_values(scope: Scope, header: bytes) -> list[bytes]:
    """Return the raw values of every ``header`` line in ``scope``, in order."""
    return [value for name, value in scope.get("headers", ()) if name == header]
